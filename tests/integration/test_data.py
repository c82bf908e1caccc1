"""Ray Data glue: read_audio decodes in workers; map_pipeline equals the local pipeline."""

from __future__ import annotations

import io
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import soundfile as sf

import remotemedia_ray as rm
from remotemedia_ray.data import map_pipeline, read_audio

pytestmark = pytest.mark.usefixtures("ray_session")

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
AUDIO_FILES = sorted((EXAMPLES / "audio").glob("*.*"))

# Nodes whose two runtimes are bit-identical (Resample only meets one quality spec).
EXACT_PIPELINE = {
    "version": "v1",
    "metadata": {"name": "exact"},
    "nodes": [
        {"id": "mono", "node_type": "ChannelMixNode"},
        {"id": "gain", "node_type": "MultiplyNode", "params": {"factor": 0.8}},
        {"id": "vad", "node_type": "VADNode", "params": {"threshold": -35}},
        {"id": "pcm", "node_type": "FormatConverterNode", "params": {"target_format": "i16"}},
    ],
    "connections": [
        {"from": "mono", "to": "gain"},
        {"from": "gain", "to": "vad"},
        {"from": "gain", "to": "pcm"},
    ],
}

TO_I16 = {
    "version": "v1",
    "metadata": {"name": "to-i16"},
    "nodes": [
        {"id": "to_i16", "node_type": "FormatConverterNode", "params": {"target_format": "i16"}}
    ],
    "connections": [],
}


def load(path: Path) -> rm.AudioBuffer:
    samples, rate = sf.read(path, dtype="float32", always_2d=True)
    return rm.AudioBuffer.from_numpy(samples, rate)


def local_outputs(
    manifest: Any, files: list[Path] = AUDIO_FILES, **options: Any
) -> dict[str, rm.PipelineOutput]:
    with rm.Pipeline(manifest, runtime="local", **options) as p:
        outputs = p.map((load(f) for f in files), ids=(str(f) for f in files))
        return {out.item_id: out for out in outputs}


def rows_by_id(ds: Any) -> dict[str, dict[str, Any]]:
    return {row["id"]: row for row in ds.take_all()}


def samples(values: Any, dtype: Any) -> np.ndarray:
    return np.asarray(values, dtype=dtype)


# -- read_audio -------------------------------------------------------------------------


def test_read_audio_rows_match_soundfile() -> None:
    ds = read_audio(EXAMPLES / "audio")
    rows = rows_by_id(ds)

    assert sorted(rows) == [str(f) for f in AUDIO_FILES]
    for path in AUDIO_FILES:
        row, info = rows[str(path)], sf.info(path)
        assert row["path"] == str(path)
        assert (row["sample_rate"], row["channels"], row["frames"]) == (
            info.samplerate,
            info.channels,
            info.frames,
        )
        expected, _ = sf.read(path, dtype="float32", always_2d=True)
        np.testing.assert_array_equal(samples(row["audio"], np.float32), expected.reshape(-1))


def test_read_audio_schema_is_the_audio_batch_schema() -> None:
    batch = read_audio([AUDIO_FILES[0]]).take_batch(batch_format="pyarrow")
    assert batch.schema == pa.schema(
        [
            ("id", pa.string()),
            ("path", pa.string()),
            ("audio", pa.large_list(pa.float32())),
            ("sample_rate", pa.int32()),
            ("channels", pa.int16()),
            ("frames", pa.int64()),
        ]
    )
    assert "path" not in read_audio(AUDIO_FILES[0], include_paths=False).columns()


def test_read_audio_decodes_in_workers_not_on_the_driver(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("decoded on the driver")

    monkeypatch.setattr(sf, "read", refuse)
    monkeypatch.setattr(sf, "SoundFile", refuse)
    assert read_audio(AUDIO_FILES).count() == len(AUDIO_FILES)


def test_corrupt_file_raises_naming_it_by_default(tmp_path: Path) -> None:
    shutil.copy(AUDIO_FILES[0], tmp_path / "good.wav")
    (tmp_path / "x.wav").write_bytes(b"this is not audio" * 64)

    with pytest.raises(Exception, match=r"cannot decode audio file .*x\.wav"):
        read_audio(tmp_path).take_all()


def test_corrupt_file_is_skipped_with_on_error_skip(tmp_path: Path) -> None:
    shutil.copy(AUDIO_FILES[0], tmp_path / "good.wav")
    (tmp_path / "x.wav").write_bytes(b"this is not audio" * 64)

    rows = read_audio(tmp_path, on_error="skip").take_all()

    assert [Path(r["path"]).name for r in rows] == ["good.wav"]


# -- map_pipeline -----------------------------------------------------------------------


def test_map_pipeline_equals_the_local_pipeline(tmp_path: Path) -> None:
    manifest = EXAMPLES / "speech_prep.json"
    silent = tmp_path / "silent.wav"  # no speech: its batch has only an empty segment list
    sf.write(silent, np.zeros(16000, np.float32), 16000)
    files = [silent, *AUDIO_FILES]
    expected = local_outputs(manifest, files)

    mapped = map_pipeline(read_audio(files), manifest, batch_size=1, concurrency=1)
    mapped.write_parquet(tmp_path / "out")
    table = pq.read_table(tmp_path / "out")  # every batch wrote the same columns and types
    rows = {row["id"]: row for row in table.to_pylist()}

    assert table.column_names == [
        "id",
        "path",
        "vad",
        "pcm16_audio",
        "pcm16_sample_rate",
        "pcm16_channels",
    ]
    assert sorted(rows) == sorted(expected)
    assert expected[str(silent)]["vad"] == []
    for item_id, out in expected.items():
        row = rows[item_id]
        assert row["path"] == item_id
        pcm16: rm.AudioBuffer = out["pcm16"]
        assert (row["pcm16_sample_rate"], row["pcm16_channels"]) == (16000, 1)
        np.testing.assert_array_equal(
            samples(row["pcm16_audio"], np.int16), pcm16.to_numpy().reshape(-1)
        )
        assert row["vad"] == out["vad"]
        assert out["vad"] or item_id == str(silent), "the example clips contain speech"


def test_node_runtimes_give_equal_outputs() -> None:
    if not rm.native_available():
        pytest.skip("native extension not built")
    ds = read_audio(AUDIO_FILES)
    by_runtime = {
        runtime: rows_by_id(map_pipeline(ds, EXACT_PIPELINE, runtime=runtime, concurrency=1))
        for runtime in ("cpython", "rust_native")
    }

    cpython, native = by_runtime["cpython"], by_runtime["rust_native"]
    assert sorted(cpython) == sorted(native) == [str(f) for f in AUDIO_FILES]
    for item_id, row in cpython.items():
        np.testing.assert_array_equal(
            samples(row["pcm_audio"], np.int16), samples(native[item_id]["pcm_audio"], np.int16)
        )
        assert [dict(s) for s in row["vad"]] == [dict(s) for s in native[item_id]["vad"]]


def bad_item_dataset() -> tuple[Any, list[rm.AudioBuffer]]:
    import ray.data

    good = [load(f) for f in AUDIO_FILES[:2]]
    bad = np.zeros(1000, np.float32)
    bad[123] = np.nan
    ids = ["bad", "good0", "good1"]
    table = rm.audio_table(ids, [rm.AudioBuffer.from_numpy(bad, 16000), *good])
    return ray.data.from_arrow(table), good


def test_failing_item_is_recorded_and_the_others_are_intact(tmp_path: Path) -> None:
    ds, good = bad_item_dataset()

    # One item per batch: the failed item's batch must still carry every column.
    mapped = map_pipeline(ds, TO_I16, on_error="record", batch_size=1, concurrency=1)
    mapped.write_parquet(tmp_path)
    table = pq.read_table(tmp_path)
    rows = {row["id"]: row for row in table.to_pylist()}

    assert table.column_names == [
        "id",
        "to_i16_audio",
        "to_i16_sample_rate",
        "to_i16_channels",
        "error",
    ]
    assert table.schema.field("to_i16_audio").type == pa.large_list(pa.int16())
    bad = rows["bad"]
    assert bad["error"].startswith("to_i16: ")
    assert "123" in bad["error"]
    assert (bad["to_i16_audio"], bad["to_i16_sample_rate"], bad["to_i16_channels"]) == (
        None,
        None,
        None,
    )
    with rm.Pipeline(TO_I16, runtime="local") as p:
        for i, buffer in enumerate(good):
            row, out = rows[f"good{i}"], p.run(buffer)["to_i16"]
            assert row["error"] is None
            assert (row["to_i16_sample_rate"], row["to_i16_channels"]) == (
                out.sample_rate,
                out.channels,
            )
            np.testing.assert_array_equal(
                samples(row["to_i16_audio"], np.int16), out.to_numpy().reshape(-1)
            )


def test_failing_item_raises_naming_node_and_item_by_default() -> None:
    ds, _ = bad_item_dataset()

    with pytest.raises(Exception, match=r"node 'to_i16', item 'bad'"):
        map_pipeline(ds, TO_I16, concurrency=1).take_all()


def test_bad_manifest_fails_on_the_driver_naming_the_node() -> None:
    broken = {**TO_I16, "nodes": [{**TO_I16["nodes"][0], "params": {"target_format": "u8"}}]}

    with pytest.raises(rm.ManifestError, match="to_i16"):
        map_pipeline(read_audio(AUDIO_FILES), broken)


def test_map_pipeline_views_input_rows_without_copying() -> None:
    from remotemedia_ray.data import _input_buffers

    table = rm.audio_table(["a", "b"], [load(f) for f in AUDIO_FILES[:2]])
    values = table.column("audio").chunk(0).values
    start = values.buffers()[1].address

    buffers = _input_buffers(table)

    first = buffers[0].to_numpy()
    second = buffers[1].to_numpy()
    assert first.__array_interface__["data"][0] == start
    assert second.__array_interface__["data"][0] == start + first.nbytes
    assert not first.flags.writeable


def test_map_pipeline_and_the_job_store_each_sink_in_the_same_types(tmp_path: Path) -> None:
    """One module (remotemedia_ray.columns) turns sink values into columns for both."""
    import ray

    from remotemedia_ray.dataset import JobConfig, run_job

    manifest = rm.Manifest.from_dict(EXACT_PIPELINE)
    outdir = tmp_path / "job"
    config = JobConfig(
        manifest=manifest, input=str(EXAMPLES / "audio"), outdir=outdir, runtime="local"
    )
    assert run_job(config, stream=io.StringIO()).exit_code == 0
    ds = map_pipeline(read_audio(EXAMPLES / "audio"), manifest)
    mapped = pa.concat_tables(ray.get(ds.to_arrow_refs()))
    pcm, vad = pq.read_table(outdir / "pcm"), pq.read_table(outdir / "vad")

    # stored as the samples' bytes (the job's shards), in memory as a list (Ray Data)
    assert pcm.schema.field("audio").type == pa.large_binary()
    assert mapped.schema.field("pcm_audio").type == pa.large_list(pa.int16())
    assert set(pcm.column("sample_format").to_pylist()) == {"int16"}
    lengths = {
        Path(p).name: len(a)
        for p, a in zip(*mapped.select(["path", "pcm_audio"]).to_pydict().values(), strict=True)
    }
    for row in range(pcm.num_rows):
        audio = rm.AudioBuffer.from_table_row(pcm, row)
        assert audio.format is rm.AudioFormat.I16
        assert audio.num_frames == lengths[pcm["id"][row].as_py()]
    assert pcm.schema.field("sample_rate").type == mapped.schema.field("pcm_sample_rate").type
    assert pcm.schema.field("channels").type == mapped.schema.field("pcm_channels").type
    assert vad.schema.field("segments").type == mapped.schema.field("vad").type
    assert pcm.num_rows == vad.num_rows == mapped.num_rows == len(AUDIO_FILES)
    by_name = {Path(row["path"]).name: row for row in mapped.to_pylist()}
    for row in vad.to_pylist():  # the job keeps 16-bit PCM as int16; read_audio gives float32
        mapped_segments = by_name[row["id"]]["vad"]
        assert [(s["start_ms"], s["end_ms"]) for s in row["segments"]] == [
            (s["start_ms"], s["end_ms"]) for s in mapped_segments
        ], row["id"]
        for ours, theirs in zip(row["segments"], mapped_segments, strict=True):
            assert ours["energy_db"] == pytest.approx(theirs["energy_db"], abs=1e-3)
