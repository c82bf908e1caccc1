"""Training-ready outputs (--format), each opened by the library its users use.

A small speech corpus (espeak-ng, in WAV, FLAC, MP3 and Opus) runs through
examples/speech_prep.json (whole items with VAD segments) and
examples/speech_utterances.json (one clip per utterance); every format must
hold exactly the rows of the job's own Parquet output, and its audio must
decode to the same samples.
"""

from __future__ import annotations

import gc
import gzip
import io
import json
import shutil
import subprocess
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import soundfile as sf
from helpers import row_samples

from benchmarks.suites._common import encode
from benchmarks.vad_accuracy import SENTENCES
from remotemedia_ray.dataset import JobConfig, run_job

ROOT = Path(__file__).resolve().parents[2]
PREP = ROOT / "examples" / "speech_prep.json"
UTTERANCES = ROOT / "examples" / "speech_utterances.json"
ALL = ("parquet", "hf", "webdataset", "lhotse", "nemo")

pytestmark = pytest.mark.skipif(
    shutil.which("espeak-ng") is None,
    reason="espeak-ng is not installed (`make test-deps` installs it); it speaks the corpus",
)


def _speech(index: int) -> tuple[np.ndarray, int]:
    """Two sentences with silence around and between them, mono float32."""
    pieces = []
    rate = 22050
    for sentence in (SENTENCES[2 * index], SENTENCES[2 * index + 1]):
        wav = subprocess.run(
            ["espeak-ng", "--stdout"], input=sentence.encode(), capture_output=True, check=True
        ).stdout
        x, rate = sf.read(io.BytesIO(wav), dtype="float32")
        pieces += [np.zeros(rate // 2, np.float32), x, np.zeros(rate, np.float32)]
    return np.concatenate(pieces), rate


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("corpus")
    for index, ext in enumerate(("wav", "flac", "mp3", "opus")):
        x, rate = _speech(index)
        if ext == "opus":  # Opus encodes 48 kHz
            from scipy.signal import resample_poly

            x, rate = resample_poly(x, 320, 147).astype(np.float32), 48000
        path = root / f"talk{index}.{ext}"
        if ext in ("wav", "flac"):
            sf.write(path, x, rate, subtype="PCM_16")
        else:
            path.write_bytes(encode(x[:, None], rate, ext))
    return root


def _run(manifest: Path, corpus: Path, out: Path, *formats: str, **options: Any) -> None:
    config = JobConfig(
        manifest=manifest,
        input=str(corpus),
        outdir=out,
        runtime=options.pop("runtime", "local"),
        formats=formats,
        progress="off",
        **options,
    )
    result = run_job(config, stream=io.StringIO())
    assert result.exit_code == 0 and result.items_failed == 0, result.summary


@pytest.fixture(scope="module")
def prep(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("prep") / "out"
    _run(PREP, corpus, out, *ALL, shard_rows=3)
    return out


@pytest.fixture(scope="module")
def utterances(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("utt") / "out"
    _run(UTTERANCES, corpus, out, *ALL, shard_rows=3)
    return out


def _samples(urls: list[str]) -> list[dict[str, Any]]:
    """The samples of WebDataset tars, read by the webdataset library.

    webdataset leaves its tar files for the garbage collector to close: their
    ResourceWarnings are silenced here, and the files collected before leaving.
    """
    import webdataset as wds

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        samples = list(wds.WebDataset(urls, shardshuffle=False))
        gc.collect()
    return samples


def _rows(out: Path, sink: str) -> dict[str, dict[str, Any]]:
    """A sink's rows by id, the audio bytes read as samples."""
    rows = {r["id"]: r for r in pq.read_table(out / sink).to_pylist()}
    for row in rows.values():
        if "sample_format" in row:
            row["audio"] = row_samples(row)
    return rows


def _flac(data: bytes) -> np.ndarray:
    samples, _ = sf.read(io.BytesIO(data), dtype="int16", always_2d=True)
    return samples.reshape(-1)


def test_hf_parquet_loads_with_datasets_and_an_audio_feature(prep: Path, utterances: Path) -> None:
    import datasets

    for out, sink in ((prep, "pcm16"), (utterances, "clips")):
        expected = _rows(out, sink)
        files = sorted(str(p) for p in (out / "format.hf").glob("*.parquet"))
        ds = datasets.load_dataset("parquet", data_files=files, split="train")
        assert isinstance(ds.features["audio"], datasets.Audio)
        ds = ds.cast_column("audio", datasets.Audio(decode=False))
        assert sorted(ds["id"]) == sorted(expected)
        for row in ds:
            want = expected[row["id"]]
            np.testing.assert_array_equal(_flac(row["audio"]["bytes"]), want["audio"])
            assert row["audio"]["path"].endswith(".flac")
            if "parent_id" in want:
                assert (row["parent_id"], row["start_s"]) == (want["parent_id"], want["start_s"])
    vad = _rows(prep, "vad")
    ds = datasets.load_dataset(
        "parquet", data_files=[str(p) for p in (prep / "format.hf").glob("*.parquet")]
    )["train"]
    assert {r["id"]: r["vad"] for r in ds.remove_columns("audio")} == {
        i: r["segments"] for i, r in vad.items()
    }


def test_webdataset_tars_iterate_with_webdataset(prep: Path, utterances: Path) -> None:
    for out, sink in ((prep, "pcm16"), (utterances, "clips")):
        expected = _rows(out, sink)
        urls = sorted(str(p) for p in (out / "format.webdataset").glob("*.tar"))
        seen = []
        for sample in _samples(urls):
            info = json.loads(sample["json"])
            seen.append(info["id"])
            np.testing.assert_array_equal(_flac(sample["flac"]), expected[info["id"]]["audio"])
            assert info["sample_rate"] == 16000
        assert sorted(seen) == sorted(expected)  # every row once


def test_webdataset_json_gives_each_audio_sink_its_own_rate(corpus: Path, tmp_path: Path) -> None:
    nodes = [
        {"id": "mono", "node_type": "ChannelMixNode", "params": {"mode": "mean"}},
        {"id": "r8k", "node_type": "ResampleNode", "params": {"target_rate": 8000}},
        {"id": "low", "node_type": "FormatConverterNode", "params": {"target_format": "i16"}},
        {"id": "src", "node_type": "FormatConverterNode", "params": {"target_format": "i16"}},
    ]
    edges = [("mono", "r8k"), ("r8k", "low"), ("mono", "src")]
    manifest = tmp_path / "two.json"
    manifest.write_text(
        json.dumps(
            {
                "version": "v1",
                "nodes": nodes,
                "connections": [{"from": a, "to": b} for a, b in edges],
            }
        )
    )
    out = tmp_path / "out"
    _run(manifest, corpus, out, "parquet", "webdataset")
    sources = _rows(out, "src")
    urls = sorted(str(p) for p in (out / "format.webdataset").glob("*.tar"))
    samples = _samples(urls)
    assert len(samples) == 4
    for sample in samples:
        info = json.loads(sample["json"])
        assert info["sample_rate"] == {"low": 8000, "src": sources[info["id"]]["sample_rate"]}
        assert info["channels"] == {"low": 1, "src": 1}
        for sink in ("low", "src"):
            rate = sf.info(io.BytesIO(sample[f"{sink}.flac"])).samplerate
            assert rate == info["sample_rate"][sink]


def test_a_webdataset_tar_holds_at_most_shard_size(corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    _run(UTTERANCES, corpus, out, "webdataset", shard_size="2", shard_rows=8)
    tars = sorted((out / "format.webdataset").glob("*.tar"))
    counts = [len(_samples([str(t)])) for t in tars]
    assert counts and max(counts) <= 2
    out = tmp_path / "bytes"
    _run(UTTERANCES, corpus, out, "webdataset", shard_size="100kB", shard_rows=8)
    tars = sorted((out / "format.webdataset").glob("*.tar"))
    assert len(tars) > 1
    for tar in tars:
        members = len(_samples([str(tar)]))
        # at most the bound (members and their headers; the tar's end adds 1 KiB),
        # unless one record alone is larger
        assert members == 1 or tar.stat().st_size <= 100_000 + 10240


def test_lhotse_manifests_load_and_their_cuts_play(prep: Path, utterances: Path) -> None:
    lhotse = pytest.importorskip("lhotse", reason="`make test` installs the lhotse extra")

    for out, sink, supervisions in (
        (prep, "pcm16", sum(len(r["segments"]) for r in _rows(prep, "vad").values())),
        (utterances, "clips", len(_rows(utterances, "clips"))),
    ):
        folder = out / "format.lhotse"
        recordings = lhotse.load_manifest(folder / "recordings.jsonl.gz")
        sups = lhotse.load_manifest(folder / "supervisions.jsonl.gz")
        expected = _rows(out, sink)
        assert sorted(r.id for r in recordings) == sorted(expected)
        assert len(sups) == supervisions
        cuts = lhotse.CutSet.from_manifests(recordings=recordings, supervisions=sups)
        for cut in cuts:
            audio = cut.load_audio()  # plays: decodes from the FLAC file
            want = np.asarray(expected[cut.recording_id]["audio"], np.float64) / 32768
            np.testing.assert_allclose(audio[0], want, atol=1e-6)
            assert len(cut.supervisions) >= 1


def test_nemo_manifest_lines_point_at_audio_with_offsets_and_durations(
    prep: Path, utterances: Path
) -> None:
    vad = _rows(prep, "vad")
    lines = [
        json.loads(x)
        for x in (prep / "format.nemo" / "manifest.jsonl").read_text().split("\n")
        if x
    ]
    assert len(lines) == sum(len(r["segments"]) for r in vad.values())
    for line in lines:
        segment = next(
            s for s in vad[line["id"]]["segments"] if s["start_ms"] / 1000 == line["offset"]
        )
        assert line["duration"] == pytest.approx((segment["end_ms"] - segment["start_ms"]) / 1000)
        info = sf.info(prep / "format.nemo" / line["audio_filepath"])
        assert info.samplerate == 16000 and line["offset"] + line["duration"] <= info.duration
    clips = _rows(utterances, "clips")
    lines = [
        json.loads(x)
        for x in (utterances / "format.nemo" / "manifest.jsonl").read_text().split("\n")
        if x
    ]
    assert sorted(x["id"] for x in lines) == sorted(clips)
    for line in lines:
        info = sf.info(utterances / "format.nemo" / line["audio_filepath"])
        assert line["offset"] == 0.0 and line["duration"] == pytest.approx(info.duration)
        assert line["parent_id"] == clips[line["id"]]["parent_id"]


def test_formats_are_written_by_ray_workers_exactly_once_and_resumed(
    corpus: Path, tmp_path: Path, ray_session: None
) -> None:
    out = tmp_path / "out"
    _run(UTTERANCES, corpus, out, "hf", "nemo", "lhotse", runtime="ray", batch_size=2)
    first = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    clips = _rows_hf(out)
    # a file changes: --resume runs it (and its batch) again; nothing doubles
    talk = corpus / "talk0.wav"
    backup = talk.read_bytes()
    try:
        x, rate = sf.read(talk, dtype="float32")
        sf.write(talk, x[: len(x) // 2], rate, subtype="PCM_16")
        _run(UTTERANCES, corpus, out, "hf", "nemo", "lhotse", runtime="ray", resume=True)
    finally:
        talk.write_bytes(backup)
    again = _rows_hf(out)
    assert len(again) == len(set(again))  # no id twice
    assert {i for i in again if not i.startswith("talk0.wav/")} == {
        i for i in clips if not i.startswith("talk0.wav/")
    }
    lines = (out / "format.nemo" / "manifest.jsonl").read_text().splitlines()
    assert sorted(json.loads(x)["id"] for x in lines) == sorted(again)
    with gzip.open(out / "format.lhotse" / "recordings.jsonl.gz", "rt") as handle:
        assert sorted(json.loads(x)["id"] for x in handle) == sorted(again)
    assert first  # the first run wrote files


def _rows_hf(out: Path) -> list[str]:
    return [
        i
        for p in sorted((out / "format.hf").glob("*.parquet"))
        for i in pq.read_table(p)["id"].to_pylist()
    ]


def test_bad_format_options_are_usage_errors(corpus: Path, tmp_path: Path) -> None:
    import remotemedia_ray as rm

    for options, needle in (
        ({"formats": ("tfrecord",)}, "--format must be one of"),
        ({"formats": ()}, "at least one output format"),
        ({"shard_size": "lots"}, "--shard-size"),
        ({"shard_size": "0"}, "--shard-size"),
    ):
        config = JobConfig(
            manifest=PREP, input=str(corpus), outdir=tmp_path / "x", runtime="local", **options
        )
        with pytest.raises(rm.ConfigError, match=needle):
            run_job(config, stream=io.StringIO())


def test_a_dataset_in_the_hf_audio_layout_is_read_in_the_workers(
    corpus: Path, tmp_path: Path, ray_session: None
) -> None:
    import datasets

    import remotemedia_ray as rm
    from remotemedia_ray.dataset import decode_audio

    files = sorted(corpus.iterdir())
    rows = [
        {"id": f"row-{i}", "audio": {"bytes": p.read_bytes(), "path": p.name}, "text": p.stem}
        for i, p in enumerate(files)
    ]
    ds = datasets.Dataset.from_list(rows).cast_column("audio", datasets.Audio(decode=False))
    hub = tmp_path / "hub"
    hub.mkdir()
    ds.to_parquet(str(hub / "train-00000-of-00001.parquet"))
    # a row that names its file instead of holding it (datasets would open the path)
    table = pq.read_table(hub / "train-00000-of-00001.parquet")
    broken = {"id": ["broken"], "audio": [{"bytes": None, "path": "elsewhere.wav"}], "text": [""]}
    table = pa.concat_tables([table, pa.table(broken, schema=table.schema)])
    pq.write_table(table, hub / "train-00000-of-00001.parquet")
    out = tmp_path / "out"
    config = JobConfig(manifest=PREP, input=str(hub), outdir=out, runtime="ray", progress="off")
    result = run_job(config, stream=io.StringIO())
    assert (result.exit_code, result.items_done, result.items_failed) == (0, len(files), 1)
    errors = [json.loads(x) for x in (out / "errors.jsonl").read_text().splitlines()]
    assert [e["item_id"] for e in errors] == ["broken"]
    assert "holds no bytes (only a path, 'elsewhere.wav')" in errors[0]["error"]
    got = _rows(out, "pcm16")
    with rm.Pipeline(PREP, runtime="local") as pipeline:
        for i, path in enumerate(files):
            want = pipeline.run(decode_audio(path.read_bytes(), path.name))["pcm16"]
            np.testing.assert_array_equal(got[f"row-{i}"]["audio"], want.to_numpy().reshape(-1))


def test_the_hf_output_is_an_input_again(prep: Path, tmp_path: Path) -> None:
    out = tmp_path / "again"
    _run(PREP, prep / "format.hf", out, "parquet")
    first, second = _rows(prep, "pcm16"), _rows(out, "pcm16")
    assert sorted(second) == sorted(first)
    for item_id, row in second.items():  # 16 kHz int16 through the same chain: unchanged
        np.testing.assert_array_equal(row["audio"], first[item_id]["audio"])


def test_a_sink_named_like_a_record_field_is_refused_with_formats(
    corpus: Path, tmp_path: Path
) -> None:
    import remotemedia_ray as rm

    spec = json.loads(PREP.read_text())
    for node in spec["nodes"]:
        node["id"] = {"pcm16": "channels"}.get(node["id"], node["id"])
    for edge in spec["connections"]:
        edge["to"] = {"pcm16": "channels"}.get(edge["to"], edge["to"])
    manifest = tmp_path / "clash.json"
    manifest.write_text(json.dumps(spec))
    config = JobConfig(
        manifest=manifest, input=str(corpus), outdir=tmp_path / "x", formats=("webdataset",)
    )
    with pytest.raises(rm.ConfigError, match="sink 'channels' has the name of a field"):
        run_job(config, stream=io.StringIO())
    assert not (tmp_path / "x").exists()
