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


def test_folders_and_globs_list_each_file_with_its_size(tmp_path: Path) -> None:
    from remotemedia_ray.dataset.inputs import list_inputs

    (tmp_path / "sub").mkdir()
    for name, frames in (("a.wav", 100), ("sub/b.wav", 300)):
        sf.write(tmp_path / name, np.zeros(frames, np.int16), 8000, subtype="PCM_16")
    sizes = {"a.wav": (tmp_path / "a.wav").stat().st_size}
    sizes["sub/b.wav"] = (tmp_path / "sub" / "b.wav").stat().st_size
    assert {i.item_id: i.size for i in list_inputs(str(tmp_path))} == sizes
    assert {i.item_id: i.size for i in list_inputs(str(tmp_path / "**" / "*.wav"))} == sizes
    listed = tmp_path / "list.txt"
    listed.write_text("a.wav\nsub/b.wav\n")
    assert [i.size for i in list_inputs(str(listed))] == [sizes["a.wav"], sizes["sub/b.wav"]]
    assert list_inputs(str(tmp_path))[0].to_value()["size"] == sizes["a.wav"]


def test_a_batch_ends_at_its_count_or_its_bytes() -> None:
    from remotemedia_ray._runtime.execution import ItemSource

    pairs = [(str(n), {"size": size}) for n, size in enumerate([5, 5, 30, None, 1, 1])]

    def batches(count: int, budget: int | None) -> list[list[str]]:
        source = ItemSource(pairs)
        out = []
        while chunk := source.take(count, lambda v: v["size"], budget):
            out.append([item_id for item_id, _ in chunk])
        return out

    assert batches(10, 10) == [["0", "1"], ["2"], ["3", "4", "5"]]  # unknown counts as 0
    assert batches(2, 10) == [["0", "1"], ["2"], ["3", "4"], ["5"]]
    assert batches(3, None) == [["0", "1", "2"], ["3", "4", "5"]]
    assert batches(10, 1) == [[str(n)] for n in range(3)] + [["3", "4"], ["5"]]


@pytest.mark.parametrize(
    "pattern",
    [
        "**/*.wav",
        "**",
        "a/**/*.wav",
        "*/**/x*.wav",
        "**/b/*.wav",
        "a/**/b/**/*.wav",
        "**/.h*/*.wav",
        "**/.*.wav",
        "?/**/[xy].wav",
        "a/**/[!x].wav",
        "a/*.wav",
    ],
)
def test_a_recursive_glob_lists_what_glob_does_without_links(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pattern: str
) -> None:
    import glob

    from remotemedia_ray.dataset.inputs import _glob_paths

    for rel in (
        "x.wav", "a/x.wav", "a/y.wav", "a/b/x.wav", "a/b/c/y.wav", "a/b/c/b/z.wav",
        "a/.hidden/x.wav", "a/.x.wav", ".h/x.wav", "b/x.wav", "c/b/y.wav",
    ):  # fmt: skip
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"")
    monkeypatch.chdir(tmp_path)
    for spec in (pattern, str(tmp_path / pattern)):
        files = {p for p in glob.glob(spec, recursive=True) if os.path.isfile(p)}
        assert set(_glob_paths(spec, lambda _: True)) == files, spec


def test_a_recursive_glob_through_links_lists_what_glob_does_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import glob

    from remotemedia_ray.dataset.inputs import list_inputs

    for rel in ("corpus/v3/a.wav", "speakers/spk1/b.wav", "speakers/spk2/c.wav"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"")
    (tmp_path / "corpus" / ".latest").symlink_to("v3")  # a hidden second name
    views = tmp_path / "views" / "by_lang" / "en"
    views.mkdir(parents=True)
    for spk in ("spk1", "spk2"):
        (views / spk).symlink_to(tmp_path / "speakers" / spk)  # a folder of links only
    (views / "loop").symlink_to(tmp_path / "views")  # back up the tree
    monkeypatch.chdir(tmp_path)
    for pattern in ("corpus/**/*.wav", "views/b*/**/spk*/*.wav"):
        want = {os.path.realpath(p) for p in glob.glob(pattern, recursive=True)}
        got = [i.path for i in list_inputs(pattern) if i.error is None]
        assert len(got) == len(set(got)) and set(got) == want, pattern
    assert [i.item_id for i in list_inputs("corpus/**/*.wav")] == ["v3/a.wav"]
