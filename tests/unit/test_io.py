"""The reader's side effects on resume keys: a file read once is hashed once, and correctly."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import soundfile as sf
import xxhash

import remotemedia_ray as rm
from remotemedia_ray.dataset.keys import bytes_key, content_key, row_key
from remotemedia_ray.dataset.readers import AudioFileReader, ContentKey


def _xxh3(data: bytes) -> str:
    """The key of ``data`` by the reference implementation of XXH3-128 (xxhash)."""
    return "xxh3:" + xxhash.xxh3_128_hexdigest(data)


def test_the_key_of_a_file_just_read_is_its_digest_and_follows_changes(tmp_path: Path) -> None:
    path = tmp_path / "a.wav"
    sf.write(path, np.zeros((1600, 1), np.float32), 16000)
    reader, key = AudioFileReader(), ContentKey()
    reader.initialize({})
    key.initialize({})
    item = {"path": str(path), "row": None}
    reader.execute(item)
    assert key.execute(item) == _xxh3(path.read_bytes())

    sf.write(path, np.ones((1600, 1), np.float32) * 0.5, 16000)  # same size, new content
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert content_key(str(path)) == _xxh3(path.read_bytes())
    assert key.execute(item) == _xxh3(path.read_bytes())


@pytest.mark.parametrize("size", [0, 1, 240, (1 << 20) + 3, 5 << 20])
def test_keys_equal_the_reference_xxh3_whatever_the_size(tmp_path: Path, size: int) -> None:
    """Files read in 1 MiB blocks, bytes held whole, and Parquet rows' samples."""
    data = np.random.default_rng(size).integers(0, 256, size, dtype=np.uint8).tobytes()
    path = tmp_path / "blob"
    path.write_bytes(data)
    assert content_key(str(path)) == bytes_key(data) == _xxh3(data)
    samples = np.frombuffer(data[: size // 4 * 4], np.int16).reshape(-1, 2)
    audio = rm.AudioBuffer.from_numpy(samples, 8000)
    assert row_key(audio) == _xxh3(b"i16:8000:2:" + samples.tobytes())
    sliced = rm.AudioBuffer.from_arrow(pa.array(np.arange(10, dtype=np.int16)).slice(2, 6), 8000)
    assert row_key(sliced) == _xxh3(b"i16:8000:1:" + np.arange(2, 8, dtype=np.int16).tobytes())
