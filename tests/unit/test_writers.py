"""The job's writers, done log and storage in this process (no Ray, no server)."""

from __future__ import annotations

import dataclasses
import io
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import soundfile as sf
from hypothesis import given, settings
from hypothesis import strategies as st

import remotemedia_ray as rm
from remotemedia_ray.audio import pcm_column
from remotemedia_ray.columns import sink_table, stored_table
from remotemedia_ray.dataset.audiofiles import audio_path
from remotemedia_ray.dataset.donelog import DoneLog, compact, drop_items, load_done, sweep
from remotemedia_ray.dataset.storage import Location, is_uri, redact, resolve
from remotemedia_ray.dataset.writers import OutputWriter, parquet_options, shard_name

SEGMENTS = [{"start_ms": 0.0, "end_ms": 30.0, "energy_db": -12.0, "confidence": 0.9}]


def outputs(n: int) -> list[dict[str, object]]:
    tone = (0.25 * np.sin(np.arange(1600) / 5)).astype(np.float32)
    return [
        {
            "pcm": rm.AudioBuffer.from_numpy((tone * 1000 * (i + 1)).astype(np.int16), 16000),
            "vad": SEGMENTS,
            "job:key": f"key-{i}",
            "job:duration": 0.1,
        }
        for i in range(n)
    ]


def writer(root: Path, fmt: str | None = None) -> OutputWriter:
    return OutputWriter(
        resolve(root, role="output"),
        ("pcm", "vad"),
        "run1",
        key_node="job:key",
        duration_node="job:duration",
        write_audio=fmt,
    )


def test_a_batch_becomes_one_shard_per_sink_and_a_small_commit(tmp_path: Path) -> None:
    commit = writer(tmp_path, "flac").write(outputs(3), ["a.wav", "b/c.wav", "d.flac"])

    name = shard_name("run1", ["a.wav", "b/c.wav", "d.flac"])
    assert commit.shard == name
    assert sorted(commit.files) == sorted(
        [
            f"pcm/{name}",
            f"vad/{name}",
            "pcm.audio/a.wav.flac",
            "pcm.audio/b/c.wav.flac",
            "pcm.audio/d.flac.flac",
        ]
    )
    assert commit.items == {"a.wav": "key-0", "b/c.wav": "key-1", "d.flac": "key-2"}
    assert commit.audio_seconds == pytest.approx(0.3)
    pcm = pq.read_table(tmp_path / "pcm")
    assert pcm.column("id").to_pylist() == ["a.wav", "b/c.wav", "d.flac"]
    assert pq.read_table(tmp_path / "vad").column("segments").to_pylist() == [SEGMENTS] * 3
    samples, rate = sf.read(tmp_path / "pcm.audio" / "b" / "c.wav.flac", dtype="int16")
    np.testing.assert_array_equal(samples, outputs(3)[1]["pcm"].to_numpy())  # type: ignore[union-attr]
    assert rate == 16000
    assert not [p for p in tmp_path.rglob(".*")], "temporary files left"


@pytest.mark.parametrize("codec", ["zstd", "lz4", "snappy", "none"])
def test_shards_are_written_with_the_codec_asked_for(tmp_path: Path, codec: str) -> None:
    dataclasses.replace(writer(tmp_path), compression=codec).write(outputs(3), ["a", "b", "c"])
    [shard] = (tmp_path / "pcm").glob("*.parquet")
    meta = pq.ParquetFile(shard).metadata.row_group(0)
    codecs = {
        meta.column(i).path_in_schema: meta.column(i).compression for i in range(meta.num_columns)
    }
    assert codecs["audio"] == {"none": "UNCOMPRESSED"}.get(codec, codec.upper())
    table = pq.read_table(tmp_path / "pcm")
    reference = writer(tmp_path / "ref")
    reference.write(outputs(3), ["a", "b", "c"])
    assert table.equals(pq.read_table(tmp_path / "ref" / "pcm"))


def test_an_unknown_codec_is_refused_naming_the_flag() -> None:
    with pytest.raises(rm.ConfigError, match="--compression must be one of zstd, lz4"):
        parquet_options(pa.table({"audio": [b""]}), "brotli")


@settings(max_examples=40, deadline=None)
@given(
    fmt=st.sampled_from(list(rm.AudioFormat)),
    shapes=st.lists(st.tuples(st.integers(0, 50), st.integers(1, 3)), min_size=1, max_size=5),
    failed=st.sets(st.integers(0, 4)),
)
def test_stored_audio_reads_back_exactly(
    fmt: rm.AudioFormat, shapes: list[tuple[int, int]], failed: set[int]
) -> None:
    """Shards store audio as bytes beside sample_format: every sample (extremes and
    NaN included), empty and one-sample rows, and failed (null) rows come back."""
    rng = np.random.default_rng(len(shapes))
    buffers = []
    for frames, channels in shapes:
        if fmt.dtype.kind == "f":
            x = rng.standard_normal((frames, channels)).astype(fmt.dtype)
            if x.size:
                x.flat[0] = np.nan
        else:
            info = np.iinfo(fmt.dtype)
            x = rng.integers(info.min, info.max, (frames, channels), endpoint=True, dtype=fmt.dtype)
        buffers.append(rm.AudioBuffer.from_numpy(x, 16000))
    failed -= {0}  # a batch of failures only has no layout to store
    rows = [(f"i{n}", None if n in failed else b) for n, b in enumerate(buffers)]
    stored = stored_table(sink_table(rows))
    assert stored.schema.field("audio").type == pa.large_binary()
    assert stored.column_names[:5] == ["id", "audio", "sample_rate", "channels", "sample_format"]
    sink = io.BytesIO()
    pq.write_table(stored, sink, **parquet_options(stored))
    table = pq.read_table(io.BytesIO(sink.getvalue()))
    for n, (buffer, row) in enumerate(zip(buffers, table.to_pylist(), strict=True)):
        if n in failed:
            assert row["audio"] is None and row["sample_format"] is None
            continue
        assert row["sample_format"] == fmt.dtype.name
        got = rm.AudioBuffer.from_table_row(table, n)
        assert (got.format, got.channels) == (fmt, buffer.channels)
        np.testing.assert_array_equal(got.to_numpy_2d(), buffer.to_numpy_2d())
        plain = np.frombuffer(row["audio"], row["sample_format"]).reshape(-1, row["channels"])
        np.testing.assert_array_equal(plain, buffer.to_numpy_2d())


def test_a_sliced_list_column_is_stored_without_its_neighbours() -> None:
    lists = pa.array([[1, 2], [3, 4, 5], [6]], pa.large_list(pa.int16())).slice(1, 2)
    column, name = pcm_column(pa.chunked_array([lists]))
    assert name == "int16"
    assert [np.frombuffer(c, name).tolist() for c in column.to_pylist()] == [[3, 4, 5], [6]]


def test_stored_audio_without_its_format_or_of_partial_samples_is_refused() -> None:
    table = pa.table(
        {
            "audio": pa.array([b"\x01\x00\x02"], pa.large_binary()),
            "sample_rate": [8000],
            "channels": pa.array([1], pa.int16()),
        }
    )
    with pytest.raises(rm.AudioFormatError, match="no 'sample_format' column"):
        rm.AudioBuffer.from_table_row(table, 0)
    table = table.append_column("sample_format", pa.array(["int16"]))
    with pytest.raises(rm.AudioFormatError, match="3 bytes of audio are not whole int16"):
        rm.AudioBuffer.from_table_row(table, 0)
    table = table.set_column(3, "sample_format", pa.array(["complex64"]))
    with pytest.raises(rm.AudioFormatError, match="unknown sample_format 'complex64'"):
        rm.AudioBuffer.from_table_row(table, 0)


def test_writing_a_batch_again_overwrites_it(tmp_path: Path) -> None:
    w = writer(tmp_path)
    first = w.write(outputs(2), ["x", "y"])
    again = w.write(outputs(2), ["y", "x"][::-1])  # a retry: same items, same names
    assert first.files == again.files
    assert sorted(p.name for p in (tmp_path / "pcm").iterdir()) == [first.shard]
    assert pq.read_table(tmp_path / "pcm").num_rows == 2


def test_audio_paths_are_distinct_and_safe() -> None:
    assert audio_path("a/x.wav", "flac").as_posix() == "a/x.wav.flac"
    assert audio_path("x.flac", "flac").as_posix() == "x.flac.flac"
    unsafe = [audio_path(i, "wav").as_posix() for i in ("a b.wav", "a_b.wav", "../../etc/x", "..")]
    assert len(set(unsafe)) == len(unsafe)
    assert unsafe[1] == "a_b.wav.wav"
    assert all(not p.startswith(("/", "..")) and "/../" not in p for p in unsafe)


def test_the_done_log_names_what_exists_and_the_sweep_removes_the_rest(tmp_path: Path) -> None:
    out = resolve(tmp_path, role="output")
    w = writer(tmp_path, "wav")
    log = DoneLog(out, "run1")
    kept = w.write(outputs(2), ["a", "b"])
    log.add(kept)
    log.flush()
    orphan = w.write(outputs(1), ["c"])  # its commit never reached the driver
    (tmp_path / "pcm" / ".part-x.tmp-1").write_bytes(b"half")

    state = load_done(out)
    assert state.items == {"a": "key-0", "b": "key-1"}
    assert state.files == set(kept.files)
    removed = sweep(out, ["pcm", "vad"], state.files)

    assert removed == len(orphan.files) + 1
    left = {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()}
    assert {f for f in left if not f.startswith("_done/")} == set(kept.files)


def test_dropping_items_removes_their_rows_files_and_records(tmp_path: Path) -> None:
    out = resolve(tmp_path, role="output")
    log = DoneLog(out, "run1")
    log.add(writer(tmp_path, "wav").write(outputs(3), ["a", "b", "c"]))
    log.flush()
    state = load_done(out)

    drop_items(out, state, {"b"}, "run2")

    assert pq.read_table(tmp_path / "pcm").column("id").to_pylist() == ["a", "c"]
    assert not (tmp_path / "pcm.audio" / "b.wav").exists()
    assert (tmp_path / "pcm.audio" / "a.wav").exists()
    again = load_done(out)
    assert again.items == {"a": "key-0", "c": "key-2"}
    assert len(again.segments) == 1


def test_resume_never_drops_a_batch_holding_an_item_it_does_not_list(tmp_path: Path) -> None:
    out = resolve(tmp_path, role="output")
    (tmp_path / "format.nemo").mkdir()
    (tmp_path / "format.nemo" / "part-x.jsonl").write_text('{"id": "a"}\n{"id": "b"}\n')
    record = {
        "shard": "part-x",
        "files": ["format.nemo/part-x.jsonl"],
        "items": {"a": "k", "b": "k"},
    }
    (tmp_path / "_done").mkdir()
    (tmp_path / "_done" / "1-r-000000.jsonl").write_text(json.dumps(record) + "\n")
    state = load_done(out)
    with pytest.raises(rm.ConfigError, match="'b', an input this run does not list"):
        drop_items(out, state, {"a"}, "run2", listed={"a"})
    assert (tmp_path / "format.nemo" / "part-x.jsonl").exists()
    assert drop_items(out, load_done(out), {"a"}, "run2", listed={"a", "b"}) == {"a", "b"}
    assert not (tmp_path / "format.nemo" / "part-x.jsonl").exists()


def test_a_torn_segment_line_is_not_counted(tmp_path: Path) -> None:
    out = resolve(tmp_path, role="output")
    (tmp_path / "_done").mkdir()
    record = {"shard": "s", "files": ["pcm/s"], "items": {"a": "k"}}
    (tmp_path / "_done" / "1-r-000000.jsonl").write_text(
        json.dumps(record) + '\n{"shard": "t", "fi'
    )
    assert load_done(out).items == {"a": "k"}


def test_redact_hides_secrets_in_uris_and_keeps_the_rest() -> None:
    text = (
        "cannot read s3://AKIA:s3cr3t@bucket/x?endpoint_override=h:9000&secret_key=s3cr3t"
        "&access_key=AKIA&scheme=http: denied"
    )
    shown = redact(text)
    assert "s3cr3t" not in shown and "AKIA" not in shown
    assert "bucket/x" in shown and "endpoint_override=h:9000" in shown and "scheme=http" in shown
    assert shown.endswith(": denied")


def test_local_paths_and_file_uris_are_local_locations(tmp_path: Path) -> None:
    for spec in (str(tmp_path), f"file://{tmp_path}"):
        location = resolve(spec, role="input")
        assert isinstance(location, Location) and location.local
        assert location.path == str(tmp_path.resolve())
    assert is_uri("s3://b/p") and not is_uri(str(tmp_path)) and not is_uri("C:/x")


def test_an_unknown_scheme_or_an_s3_uri_without_a_bucket_is_refused() -> None:
    with pytest.raises(rm.InputError, match="nosuch://x"):
        resolve("nosuch://x", role="input")
    with pytest.raises(rm.ConfigError, match="names a bucket"):
        resolve("s3://", role="output")
    with pytest.raises(rm.ConfigError, match="unknown S3 option 'colour'"):
        resolve("s3://bucket/p?colour=red", role="output")


def test_writes_are_atomic_locally(tmp_path: Path) -> None:
    out = resolve(tmp_path, role="output")
    target = out.join("a", "b.bin")
    out.write_bytes(target, b"one")
    out.write_bytes(target, b"two")
    assert Path(target).read_bytes() == b"two"
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["b.bin"]
    with pytest.raises(rm.ConfigError, match="outside"):
        out.inside(str(tmp_path.parent / "elsewhere"))
    assert io.BytesIO(out.read_bytes(target)).read() == b"two"


def test_compacting_the_log_keeps_every_record_in_one_segment(tmp_path: Path) -> None:
    out = resolve(tmp_path, role="output")
    w = writer(tmp_path)
    for n in range(5):
        log = DoneLog(out, f"run{n}")
        log.add(w.write(outputs(1), [f"item-{n}"]))
        log.flush()
    state = load_done(out)
    assert len(state.segments) == 5

    compact(out, state, "run9")

    again = load_done(out)
    assert len(again.segments) == 1 and again.segments == state.segments
    assert again.items == {f"item-{n}": "key-0" for n in range(5)}
    assert again.files == state.files
