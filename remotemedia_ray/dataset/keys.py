"""Resume keys: what an earlier run's record of an item is compared with.

An audio file's key is a digest of its bytes (:func:`content_key`); a
Parquet row's is a digest of its samples, rate and channels (:func:`row_key`).
``--resume`` skips an item only when its id *and* key are recorded as done.
"""

from __future__ import annotations

import hashlib
import os

import numpy as np
import pyarrow.fs as pafs

from remotemedia_ray.audio import AudioBuffer

__all__ = ["bytes_key", "content_key", "remember_key", "row_key"]

_RECENT_KEYS: dict[str, tuple[tuple[int, int], str]] = {}
_RECENT_LIMIT = 1024


def content_key(path: str, fs: pafs.FileSystem | None = None) -> str:
    """A digest of a file's bytes (SHA-256, hex): the resume key of an audio file.

    ``fs`` is the filesystem of a file in a store (None: a local path). A file
    this process has just read whole (the job's reader does) is not read
    again: its digest is remembered with its size and modification time
    (:func:`remember_key`), and used while both are unchanged.
    """
    stamp: tuple[int, int] | None
    if fs is None:
        try:
            stat = os.stat(path)
            stamp = (stat.st_size, stat.st_mtime_ns)
        except OSError:
            stamp = None
    else:
        info = fs.get_file_info(path)
        if info.type == pafs.FileType.NotFound:
            raise FileNotFoundError(2, "no such file")
        stamp = (int(info.size or 0), int(info.mtime_ns or 0))
    if stamp is not None:
        known = _RECENT_KEYS.get(path)
        if known is not None and known[0] == stamp:
            return known[1]
    digest = hashlib.sha256()
    with open(path, "rb") if fs is None else fs.open_input_stream(path) as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def remember_key(path: str, stamp: tuple[int, int], data: bytes) -> None:
    """Remember the digest of a file just read whole, with its (size, mtime_ns)."""
    if len(_RECENT_KEYS) >= _RECENT_LIMIT:
        _RECENT_KEYS.pop(next(iter(_RECENT_KEYS)))
    _RECENT_KEYS[path] = (stamp, hashlib.sha256(data).hexdigest())


def bytes_key(data: bytes) -> str:
    """A digest of an encoded file held in a Parquet row (the HuggingFace Audio layout)."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def row_key(audio: AudioBuffer) -> str:
    """A digest of one Parquet row's audio (samples, rate, channels): its resume key."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(f"{audio.format.value}:{audio.sample_rate}:{audio.channels}:".encode())
    digest.update(np.ascontiguousarray(audio.to_numpy()).data)
    return digest.hexdigest()
