"""The dataset job over compressed audio: every codec, corrupt files, long files in windows.

Files are encoded here with PyAV (``benchmarks.suites._common.encode``, the
codecs of :data:`~benchmarks.suites._common.CODECS`) into ``tmp_path``:

* a corpus of every codec, mono and stereo, with one corrupt file per codec,
  runs through ``examples/speech_prep.json`` on both runtimes: the good files
  give the rows of the local :class:`~remotemedia_ray.Pipeline` on
  :func:`~remotemedia_ray.dataset.codecs.decode_audio` of their bytes, the
  corrupt ones one ``errors.jsonl`` line each;
* a 3-hour Ogg Opus file (packets of 20 s of audio muxed over and over, so
  it costs seconds to build) runs in a subprocess whose peak memory is read:
  it must stay far below the decoded file's size;
* windowed and whole-file processing of 2-minute Opus and M4A files give
  the same rows.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import av
import numpy as np
import pyarrow.parquet as pq
import pytest
from helpers import ids_exactly_once, row_samples, run_cli, sink_table

import remotemedia_ray as rm
from benchmarks.suites._common import CODECS, RATES, encode, speech_like
from remotemedia_ray.dataset.codecs import decode_audio, probe
from remotemedia_ray.dataset.readers import FileChunks

ROOT = Path(__file__).resolve().parents[2]
MANIFEST = ROOT / "examples" / "speech_prep.json"
SINKS = ("pcm16", "vad")
OUT_RATE = 16000  # speech_prep's resampler

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


# -- reading outputs back ---------------------------------------------------------------


def error_lines(outdir: Path) -> list[dict[str, Any]]:
    path = outdir / "errors.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def job_cli(source: Path, outdir: Path, *options: str) -> tuple[int, str, str]:
    return run_cli("run", str(MANIFEST), "-i", str(source), "-o", str(outdir), "--quiet", *options)


# -- 1. every codec, and a corrupt file of each -----------------------------------------


def corrupt(data: bytes, seed: int) -> bytes:
    """The header and the last bytes kept, everything between them random."""
    body = np.random.default_rng(seed).bytes(len(data) - 400)
    return data[:200] + body + data[-200:]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str], list[str]]:
    """Every codec mono at 44.1 kHz and stereo at 48 kHz (Opus: both 48 kHz), 1.2-1.9 s,
    and ``bad/broken.<ext>`` of each; returns the folder, the good and the corrupt ids.

    The corrupt files sort together (six failures in a row, then good files): a
    corpus's broken folder must not stop the files listed after it.
    """
    root = tmp_path_factory.mktemp("codecs")
    good, bad = [], []
    for n, ext in enumerate(CODECS):
        (root / ext).mkdir()
        for channels, rate in ((1, 44100), (2, 48000)):
            rate = RATES.get(ext, rate)
            seconds = 1.2 + 0.1 * n + 0.05 * channels
            data = encode(speech_like(rate, seconds, channels, seed=n), rate, ext)
            rel = f"{ext}/{'mono' if channels == 1 else 'stereo'}_{rate}.{ext}"
            (root / rel).write_bytes(data)
            good.append(rel)
        rel = f"bad/broken.{ext}"
        (root / "bad").mkdir(exist_ok=True)
        (root / rel).write_bytes(corrupt((root / good[-1]).read_bytes(), seed=n))
        bad.append(rel)
    return root, sorted(good), sorted(bad)


def test_every_codec_and_a_corrupt_file_of_each_on_either_runtime(
    job_runtime: str, corpus: tuple[Path, list[str], list[str]], tmp_path: Path
) -> None:
    root, good, bad = corpus
    decoded = {i: decode_audio((root / i).read_bytes(), i) for i in good}
    assert {b.channels for b in decoded.values()} == {1, 2}
    assert {b.sample_rate for b in decoded.values()} == {44100, 48000}
    outdir = tmp_path / "out"

    code, stdout, stderr = job_cli(root, outdir, "--runtime", job_runtime)

    assert code == 0, stderr  # bad files are recorded, the job succeeds
    assert f"{len(good)} file(s) done, 0 skipped, {len(bad)} failed" in stdout
    pcm16, vad = sink_table(outdir, "pcm16"), sink_table(outdir, "vad")
    assert ids_exactly_once(pcm16) == good
    assert ids_exactly_once(vad) == good
    assert set(pcm16.column("sample_rate").to_pylist()) == {OUT_RATE}
    assert set(pcm16.column("channels").to_pylist()) == {1}

    errors = error_lines(outdir)
    assert sorted(e["item_id"] for e in errors) == bad  # one line each, no other
    for entry in errors:
        assert Path(entry["path"]) == (root / entry["item_id"]).resolve()
        assert entry["node"] == "job:read"
        assert entry["error_type"] == "AudioFormatError"
        assert entry["item_id"] in entry["error"], entry  # the message names the file

    with rm.Pipeline(MANIFEST, runtime="local") as pipeline:
        expected = {o.item_id: dict(o) for o in pipeline.map(list(decoded.values()), ids=good)}
    for row in pcm16.to_pylist():
        source = decoded[row["id"]]
        # The row is as long as the decoded file (resampled to 16 kHz).
        assert len(row_samples(row)) == round(source.num_frames * OUT_RATE / source.sample_rate)
        want = expected[row["id"]]["pcm16"].to_numpy().reshape(-1)
        np.testing.assert_array_equal(row_samples(row), want, err_msg=row["id"])
    for row in vad.to_pylist():
        assert row["segments"] == expected[row["id"]]["vad"], row["id"]
    assert sum(bool(row["segments"]) for row in vad.to_pylist()) == len(good)

    metrics = json.loads((outdir / "metrics.json").read_text())
    assert (metrics["items"], metrics["items_failed"]) == (len(good), len(bad))
    seconds = sum(b.num_frames / b.sample_rate for b in decoded.values())
    assert metrics["audio_seconds"] == pytest.approx(seconds, rel=1e-12, abs=1e-9)


# -- 2. a 3-hour Ogg Opus file streams in bounded memory --------------------------------

SEGMENT_S = 20
"""Seconds of audio encoded once, then muxed again and again."""
PACKET = 960  # an Opus packet of 20 ms at 48 kHz
PRE_SKIP = 312  # libopus's priming, dropped by the decoder

DRIVER = """
import json, sys
from pathlib import Path
from remotemedia_ray.cli import main
code = main(sys.argv[1:])
status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
print(json.dumps({"code": code, "peak_mb": int(status["VmHWM"].split()[0]) / 1024}))
"""
"""The CLI in a fresh process that reports its peak resident memory.

VmHWM, not ``getrusage(RUSAGE_SELF).ru_maxrss``: Linux carries ``ru_maxrss``
across ``execve``, and ``subprocess`` starts children with ``vfork``, so a
child's ``ru_maxrss`` starts at the peak of the test process that spawned it
(hundreds of MB after the Ray tests). VmHWM belongs to the process's own
address space, which ``execve`` makes new.
"""


def long_opus(path: Path, segments: int) -> int:
    """An Ogg Opus file (mono, 48 kHz) of ``segments`` x 20 s; returns the frames it decodes to.

    20 s are encoded once; their packets (all but the last, which is cut short) are
    then muxed ``segments`` times with shifted timestamps: seconds for hours of audio.
    """
    seg = encode(speech_like(48000, SEGMENT_S + 0.1, 1, seed=5), 48000, "opus")
    per_segment = SEGMENT_S * 48000 // PACKET
    with av.open(io.BytesIO(seg)) as source:
        stream = source.streams.audio[0]
        packets = [p for p in source.demux(stream) if p.size][:per_segment]
        assert len(packets) == per_segment
        assert [p.duration for p in packets] == [PACKET] * per_segment
        assert packets[0].pts == -PRE_SKIP
        with av.open(str(path), "w", format="ogg") as out:
            target = out.add_stream_from_template(stream)
            for k in range(segments):
                shift = k * per_segment * PACKET
                for packet in packets:
                    copy = av.Packet(bytes(packet))
                    copy.pts = copy.dts = packet.pts + shift
                    copy.duration = PACKET
                    copy.time_base = stream.time_base
                    copy.stream = target
                    out.mux(copy)
    return segments * per_segment * PACKET - PRE_SKIP


def streamed_frames(path: Path, window_s: float = 60.0) -> int:
    """The frames the file decodes to, counted window by window (never held whole)."""
    found = probe(str(path), str(path))
    chunks = FileChunks(str(path), window_frames=int(window_s * found.sample_rate), probed=found)
    return sum(chunk.num_frames for chunk in chunks.chunks())


def run_measured(manifest: Path, source: Path, outdir: Path) -> tuple[float, str]:
    """The job on ``source`` in a subprocess; returns its peak RSS (MiB) and its stdout."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["RAY_AUTH_MODE"] = "disabled"
    args = [
        sys.executable, "-c", DRIVER, "run", str(manifest), "-i", str(source), "-o", str(outdir),
        "--runtime", "local", "--window-seconds", "60", "--quiet",
    ]  # fmt: skip
    proc = subprocess.run(args, env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["code"] == 0, proc.stderr[-3000:]
    return float(report["peak_mb"]), proc.stdout


def test_a_three_hour_opus_file_streams_in_bounded_memory(tmp_path: Path) -> None:
    """Decoding and processing a long file hold one window, whatever its length.

    The manifest keeps only the VAD's segments, so what the job holds is the
    decode, the nodes and the VAD's 16 bytes per frame. (An audio sink's row of
    a long file is one Parquet cell: it is held whole and writing it costs
    several times its size; the two-minute test below checks its rows.)
    """
    hours = 3
    long_file, short_file = tmp_path / "long" / "meeting.opus", tmp_path / "short" / "one.opus"
    long_file.parent.mkdir()
    short_file.parent.mkdir()
    frames = long_opus(long_file, segments=hours * 3600 // SEGMENT_S)
    short_frames = long_opus(short_file, segments=60 // SEGMENT_S)  # one minute
    assert streamed_frames(long_file) == frames
    assert (
        streamed_frames(short_file)
        == short_frames
        == decode_audio(short_file.read_bytes(), "one.opus").num_frames
    )
    assert long_file.stat().st_size > 4 << 20  # the reader looks at the header first
    spec = json.loads(MANIFEST.read_text())
    spec["nodes"] = [n for n in spec["nodes"] if n["id"] != "pcm16"]
    spec["connections"] = [c for c in spec["connections"] if c["to"] != "pcm16"]
    vad_only = tmp_path / "vad_only.json"
    vad_only.write_text(json.dumps(spec))

    short_peak, _ = run_measured(vad_only, short_file, tmp_path / "out-short")
    long_peak, stdout = run_measured(vad_only, long_file, tmp_path / "out-long")

    assert "1 file(s) done, 0 skipped, 0 failed" in stdout
    metrics = json.loads((tmp_path / "out-long" / "metrics.json").read_text())
    assert abs(metrics["audio_seconds"] * 48000 - frames) <= 1, metrics["audio_seconds"]
    assert metrics["audio_seconds"] == pytest.approx(hours * 3600, abs=0.01)
    (vad,) = pq.read_table(tmp_path / "out-long" / "vad").to_pylist()
    assert len(vad["segments"]) > 1000  # bursts every ~0.5 s, over the whole file
    assert vad["segments"][-1]["end_ms"] > (hours * 3600 - SEGMENT_S) * 1000

    # The whole file decoded is 1.98 GiB of float32 at 48 kHz; one 60 s window 11 MiB.
    decoded_mb = frames * 4 / 2**20
    assert long_peak < 0.15 * decoded_mb, (short_peak, long_peak, decoded_mb)
    assert long_peak - short_peak < 100, (short_peak, long_peak)


# -- 3. windows give the whole file's rows ----------------------------------------------


def test_compressed_files_in_windows_give_the_whole_file_rows(tmp_path: Path) -> None:
    root = tmp_path / "in"
    root.mkdir()
    for ext, channels in (("opus", 1), ("m4a", 2)):
        rate = RATES.get(ext, 44100)
        data = encode(speech_like(rate, 121.3, channels, seed=11), rate, ext)
        (root / f"talk.{ext}").write_bytes(data)
    ids = ["talk.m4a", "talk.opus"]
    lengths = {i: decode_audio((root / i).read_bytes(), i) for i in ids}

    rows = {}
    for name, window in (("windows", "7"), ("whole", "100000")):
        code, stdout, stderr = job_cli(
            root, tmp_path / name, "--runtime", "local", "--window-seconds", window
        )
        assert code == 0, stderr
        assert "2 file(s) done, 0 skipped, 0 failed" in stdout
        rows[name] = {sink: sink_table(tmp_path / name, sink) for sink in SINKS}
        assert ids_exactly_once(rows[name]["pcm16"]) == ids
        metrics = json.loads((tmp_path / name / "metrics.json").read_text())
        seconds = sum(b.num_frames / b.sample_rate for b in lengths.values())
        assert metrics["audio_seconds"] == pytest.approx(seconds, rel=1e-12)

    for sink in SINKS:
        windows, whole = rows["windows"][sink], rows["whole"][sink]
        assert windows.column_names == whole.column_names, sink
        for column in whole.column_names:
            assert windows.column(column).equals(whole.column(column)), (sink, column)
    for row in rows["whole"]["pcm16"].to_pylist():
        source = lengths[row["id"]]
        assert len(row_samples(row)) == round(source.num_frames * OUT_RATE / source.sample_rate)
    assert all(len(r["segments"]) > 20 for r in rows["whole"]["vad"].to_pylist())
