"""Resume keys: what an earlier run's record of an item is compared with.

An audio file's key is a digest of its bytes (:func:`content_key`); a
Parquet row's is a digest of its samples, rate and channels (:func:`row_key`).
``--resume`` skips an item only when its id *and* key are recorded as done.

The digest is XXH3-128 from the native extension (a key only tells whether
an input changed, and every input is hashed once: XXH3 reads bytes about
twenty times faster than SHA-256), or SHA-256 where the extension is missing.
The two give keys of different prefixes, so a run never takes one for the
other: its items simply run again.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

import numpy as np
import pyarrow.fs as pafs

from remotemedia_ray.audio import AudioBuffer
from remotemedia_ray.nodes.native import content_digest, native_available

__all__ = ["bytes_key", "content_key", "remember_key", "row_key"]

_RECENT_KEYS: dict[str, tuple[tuple[int, int], str]] = {}
_RECENT_LIMIT = 1024


class _Digest:
    """The keys' digest: ``update`` with bytes (or uint8 arrays), ``key()`` when done."""

    def __init__(self) -> None:
        if native_available():
            self._state: Any = content_digest()
            self._prefix = "xxh3:"
        else:
            self._state = hashlib.sha256()
            self._prefix = "sha256:"

    def update(self, data: bytes | np.ndarray) -> None:
        self._state.update(data)

    def key(self) -> str:
        return self._prefix + str(self._state.hexdigest())


def _key_of(data: bytes) -> str:
    digest = _Digest()
    digest.update(data)
    return digest.key()


def content_key(path: str, fs: pafs.FileSystem | None = None) -> str:
    """A digest of a file's bytes: the resume key of an audio file.

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
    digest = _Digest()
    with open(path, "rb") if fs is None else fs.open_input_stream(path) as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.key()


def remember_key(path: str, stamp: tuple[int, int], data: bytes) -> None:
    """Remember the digest of a file just read whole, with its (size, mtime_ns)."""
    if len(_RECENT_KEYS) >= _RECENT_LIMIT:
        _RECENT_KEYS.pop(next(iter(_RECENT_KEYS)))
    _RECENT_KEYS[path] = (stamp, _key_of(data))


def bytes_key(data: bytes) -> str:
    """A digest of an encoded file held in a Parquet row (the HuggingFace Audio layout)."""
    return _key_of(data)


def row_key(audio: AudioBuffer) -> str:
    """A digest of one Parquet row's audio (samples, rate, channels): its resume key."""
    digest = _Digest()
    digest.update(f"{audio.format.value}:{audio.sample_rate}:{audio.channels}:".encode())
    digest.update(np.ascontiguousarray(audio.to_numpy()).reshape(-1).view(np.uint8))
    return digest.key()
