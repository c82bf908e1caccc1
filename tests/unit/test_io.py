"""The reader's side effects on resume keys: a file read once is hashed once, and correctly."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import soundfile as sf

from remotemedia_ray.dataset.keys import content_key
from remotemedia_ray.dataset.readers import AudioFileReader, ContentKey


def test_the_key_of_a_file_just_read_is_its_sha256_and_follows_changes(tmp_path: Path) -> None:
    path = tmp_path / "a.wav"
    sf.write(path, np.zeros((1600, 1), np.float32), 16000)
    reader, key = AudioFileReader(), ContentKey()
    reader.initialize({})
    key.initialize({})
    item = {"path": str(path), "row": None}
    reader.execute(item)
    assert key.execute(item) == hashlib.sha256(path.read_bytes()).hexdigest()

    sf.write(path, np.ones((1600, 1), np.float32) * 0.5, 16000)  # same size, new content
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert content_key(str(path)) == hashlib.sha256(path.read_bytes()).hexdigest()
    assert key.execute(item) == hashlib.sha256(path.read_bytes()).hexdigest()
