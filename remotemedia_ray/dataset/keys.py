"""Resume keys: what an earlier run's record of an item is compared with.

An audio file's key is a digest of its bytes (:func:`content_key`); a
Parquet row's is a digest of its samples, rate and channels (:func:`row_key`).
``--resume`` skips an item only when its id *and* key are recorded as done.
"""

from __future__ import annotations

import hashlib
import os

import numpy as np

from remotemedia_ray.audio import AudioBuffer

__all__ = ["content_key", "remember_key", "row_key"]

_RECENT_KEYS: dict[str, tuple[tuple[int, int], str]] = {}
_RECENT_LIMIT = 1024


def content_key(path: str) -> str:
    """A digest of a file's bytes (SHA-256, hex): the resume key of an audio file.

    A file this process has just read whole (the job's reader does) is not
    read again: its digest is remembered with its size and modification
    time (:func:`remember_key`), and used while both are unchanged.
    """
    try:
        stat = os.stat(path)
    except OSError:
        stat = None
    if stat is not None:
        known = _RECENT_KEYS.get(path)
        if known is not None and known[0] == (stat.st_size, stat.st_mtime_ns):
            return known[1]
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def remember_key(path: str, stat: os.stat_result, data: bytes) -> None:
    """Remember the digest of a file just read whole (see :func:`content_key`)."""
    if len(_RECENT_KEYS) >= _RECENT_LIMIT:
        _RECENT_KEYS.pop(next(iter(_RECENT_KEYS)))
    _RECENT_KEYS[path] = ((stat.st_size, stat.st_mtime_ns), hashlib.sha256(data).hexdigest())


def row_key(audio: AudioBuffer) -> str:
    """A digest of one Parquet row's audio (samples, rate, channels): its resume key."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(f"{audio.format.value}:{audio.sample_rate}:{audio.channels}:".encode())
    digest.update(np.ascontiguousarray(audio.to_numpy()).data)
    return digest.hexdigest()
