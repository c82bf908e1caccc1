"""Long audio processed in chunks gives exactly the whole-audio result.

Every built-in node that streams (resample, VAD, format conversion,
channel mix, multiply/add) is fed generated audio cut into random chunks,
in both runtimes, and must return what ``execute`` returns on the whole
audio, bit for bit. Pipelines given :class:`AudioChunks` stream through the
nodes that can and give the whole-audio outputs; a long file read by the
dataset job's reader is decoded window by window with bounded memory.
"""

from __future__ import annotations

import logging
import pickle
import tracemalloc
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import remotemedia_ray as rm
from remotemedia_ray.audio import AudioChunks, BufferChunks, concat_audio
from remotemedia_ray.dataset.codecs import decode_audio
from remotemedia_ray.dataset.readers import AudioDuration, AudioFileReader, FileChunks
from remotemedia_ray.nodes import reference
from remotemedia_ray.nodes.builtin import BUILTIN_NODES
from remotemedia_ray.nodes.native import NATIVE_NODES
from remotemedia_ray.nodes.reference import VadSettings

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
RUNTIMES = [
    "cpython",
    pytest.param(
        "rust_native",
        marks=pytest.mark.skipif(not rm.native_available(), reason="native extension not built"),
    ),
]
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
DTYPES = [np.float32, np.float64, np.int16, np.int32]


def node(node_type: str, runtime: str, params: Mapping[str, Any] | None = None) -> rm.NodeExecutor:
    classes = NATIVE_NODES if runtime == "rust_native" else BUILTIN_NODES
    executor = classes[node_type]()
    executor.node_id = node_type.lower()
    executor.initialize(params or {})
    return executor


def streamed(executor: rm.NodeExecutor, audio: rm.AudioBuffer, sizes: list[int]) -> Any:
    """``executor``'s output for ``audio`` pushed as chunks of ``sizes`` frames."""
    stream = executor.open_stream()
    assert stream is not None
    pieces = []
    for chunk in BufferChunks(audio, sizes).chunks():
        out = stream.push(chunk)
        if out is not None:
            pieces.append(out)
    last = stream.finish()
    if not stream.emits_audio:
        assert pieces == []
        return last
    if last is not None:
        pieces.append(last)
    return concat_audio(pieces)


def same_output(a: Any, b: Any) -> bool:
    if isinstance(a, rm.AudioBuffer):
        x, y = a.to_numpy(), b.to_numpy()
        return (
            (a.sample_rate, a.channels, a.format) == (b.sample_rate, b.channels, b.format)
            and x.shape == y.shape
            and x.tobytes() == y.tobytes()
        )
    return bool(a == b)


@st.composite
def long_audio(draw: st.DrawFn, *, dtypes: list[Any] = DTYPES) -> tuple[rm.AudioBuffer, list[int]]:
    """Audio (empty, one frame, up to ~0.2 s; 1-4 channels; every format) and a chunking."""
    dtype = draw(st.sampled_from(dtypes))
    frames = draw(st.one_of(st.sampled_from([0, 1, 2, 479, 480, 481]), st.integers(0, 3000)))
    channels = draw(st.integers(1, 4))
    rate = draw(st.sampled_from([8000, 16000, 22050, 44100, 48000]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if np.dtype(dtype).kind == "f":
        gain = draw(st.sampled_from([0.0, 1e-4, 0.01, 0.5, 1.0]))
        x = (rng.standard_normal((frames, channels)) * gain).astype(dtype)
        if frames > 40 and draw(st.booleans()):  # loud bursts: speech-like structure
            start = draw(st.integers(0, frames - 20))
            x[start : start + frames // 3] *= 50
    else:
        info = np.iinfo(dtype)
        x = (rng.standard_normal((frames, channels)) * info.max / 8).astype(dtype)
        if frames and draw(st.booleans()):
            x.flat[0] = info.min
            x.flat[-1] = info.max
    cuts = sorted(draw(st.lists(st.integers(0, frames), max_size=6)))
    sizes = [b - a for a, b in zip([0, *cuts], [*cuts, frames], strict=True)]
    return rm.AudioBuffer.from_numpy(x, rate), sizes


@pytest.mark.parametrize("runtime", RUNTIMES)
@SETTINGS
@given(
    data=long_audio(),
    params=st.fixed_dictionaries(
        {
            "threshold": st.sampled_from([-200.0, -60.0, -30.0, -6.0, 0.0]),
            "frame_length_ms": st.sampled_from([1.0, 10.0, 30.0, 33.3]),
            "hangover_ms": st.sampled_from([0.0, 30.0, 90.0]),
            "min_speech_ms": st.sampled_from([0.0, 20.0]),
            "min_silence_ms": st.sampled_from([0.0, 200.0]),
            "context_ms": st.sampled_from([0.0, 10.0, 30.0]),
            "noise_floor_percentile": st.sampled_from([None, 0.0, 20.0, 100.0]),
            "noise_floor_margin_db": st.sampled_from([0.0, 3.0]),
        }
    ),
)
def test_vad_stream_equals_whole(
    runtime: str, data: tuple[rm.AudioBuffer, list[int]], params: dict[str, Any]
) -> None:
    audio, sizes = data
    vad = node("VADNode", runtime, params)
    assert streamed(vad, audio, sizes) == vad.execute(audio)


@pytest.mark.parametrize("runtime", RUNTIMES)
@SETTINGS
@given(
    data=long_audio(),
    target=st.sampled_from([8000, 16000, 44100, 48000]),
    quality=st.sampled_from(["low", "high"]),
)
def test_resample_stream_equals_whole(
    runtime: str, data: tuple[rm.AudioBuffer, list[int]], target: int, quality: str
) -> None:
    audio, sizes = data
    resample = node("ResampleNode", runtime, {"target_rate": target, "quality": quality})
    assert same_output(streamed(resample, audio, sizes), resample.execute(audio))


@pytest.mark.parametrize("runtime", RUNTIMES)
@SETTINGS
@given(
    data=long_audio(),
    case=st.sampled_from(
        [
            ("FormatConverterNode", {"target_format": "i16"}),
            ("FormatConverterNode", {"target_format": "f32"}),
            ("FormatConverterNode", {"target_format": "i32"}),
            ("ChannelMixNode", {"mode": "mean"}),
            ("ChannelMixNode", {"mode": "select", "channel": 0}),
            ("MultiplyNode", {"factor": 0.5}),
            ("AddNode", {"addend": 0.25}),
        ]
    ),
)
def test_map_streams_equal_whole(
    runtime: str, data: tuple[rm.AudioBuffer, list[int]], case: tuple[str, dict[str, Any]]
) -> None:
    audio, sizes = data
    executor = node(case[0], runtime, case[1])
    assert same_output(streamed(executor, audio, sizes), executor.execute(audio))


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_vad_energies_of_pieces_give_whole_segments(runtime: str) -> None:
    """The two VAD kernels behind the stream, against the one-call kernel."""
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((16_037, 2)) * 0.01).astype(np.float32)
    x[4000:9000] *= 40
    kernels = node("VADNode", runtime).kernels
    frame_len = reference.vad_frame_len(16000, 30.0)
    settings_ = {"context_ms": 30.0, "noise_floor_percentile": 20.0, "hangover_ms": 90.0}
    whole = kernels.vad_segments(x, 16000, VadSettings(**settings_))
    cut = 7 * frame_len
    first = kernels.vad_frame_energies(x[:cut], frame_len, 0)
    rest = kernels.vad_frame_energies(x[cut:], frame_len, cut)
    sums = np.concatenate([first[0], rest[0]])
    counts = np.concatenate([first[1], rest[1]])
    assert sums.dtype == np.float64 and counts.dtype == np.int64
    assert (
        kernels.vad_segments_from_energies(sums, counts, len(x), 16000, VadSettings(**settings_))
        == whole
    )
    assert whole  # the loud part is found
    with pytest.raises(rm.AudioFormatError, match="do not describe"):
        kernels.vad_segments_from_energies(sums[1:], counts[1:], len(x), 16000)
    with pytest.raises(rm.AudioFormatError, match="count"):
        kernels.vad_segments_from_energies(sums, np.zeros_like(counts), len(x), 16000)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_native_and_numpy_vad_energies_are_bit_identical(runtime: str) -> None:
    rng = np.random.default_rng(5)
    for dtype in DTYPES:
        x = (rng.standard_normal((4801, 3)) * 0.3).astype(dtype)
        got = node("VADNode", runtime).kernels.vad_frame_energies(x, 480, 10)
        want = reference.vad_frame_energies(x, 480, 10)
        assert got[0].tobytes() == want[0].tobytes()
        assert np.array_equal(got[1], want[1])


@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize(
    ("node_type", "params"),
    [("VADNode", {}), ("FormatConverterNode", {"target_format": "i16"})],
)
def test_a_bad_sample_is_named_by_its_place_in_the_stream(
    runtime: str, node_type: str, params: dict[str, Any]
) -> None:
    x = np.zeros((10_000, 2), dtype=np.float32)
    x[7_777, 1] = np.nan
    audio = rm.AudioBuffer.from_numpy(x, 16000)
    executor = node(node_type, runtime, params)
    with pytest.raises(rm.AudioFormatError) as whole:
        executor.execute(audio)
    assert "frame 7777, channel 1" in str(whole.value)
    with pytest.raises(rm.AudioFormatError) as chunked:
        streamed(executor, audio, [3000, 3000, 4000])
    text = str(chunked.value)
    if node_type == "VADNode":
        assert "frame 7777, channel 1" in text
    else:  # the chunk's own position, plus where the chunk starts
        assert "frame 1777, channel 1" in text and "chunk starting at frame 6000" in text


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_chunks_must_keep_one_rate_and_layout(runtime: str) -> None:
    for node_type in ("VADNode", "ResampleNode"):
        stream = node(node_type, runtime).open_stream()
        assert stream is not None
        stream.push(rm.AudioBuffer.from_numpy(np.zeros((100, 1), np.float32), 16000))
        with pytest.raises(rm.AudioFormatError, match="unlike the stream's first chunk"):
            stream.push(rm.AudioBuffer.from_numpy(np.zeros((100, 2), np.float32), 16000))


def test_buffer_chunks_views_and_checks() -> None:
    audio = rm.AudioBuffer.from_numpy(np.arange(10, dtype=np.float32), 8000)
    chunks = list(BufferChunks(audio, 4).chunks())
    assert [c.num_frames for c in chunks] == [4, 4, 2]
    assert np.shares_memory(chunks[1].to_numpy(), audio.to_numpy())
    assert [c.num_frames for c in BufferChunks(audio, [0, 10]).chunks()] == [0, 10]
    empty = rm.AudioBuffer.from_numpy(np.zeros((0, 2), np.int16), 8000)
    assert [c.num_frames for c in BufferChunks(empty, 5).chunks()] == [0]  # always one chunk
    with pytest.raises(rm.AudioFormatError, match="add up to 10"):
        BufferChunks(audio, [3, 3])
    with pytest.raises(rm.AudioFormatError, match=">= 1"):
        BufferChunks(audio, 0)
    assert BufferChunks(audio, 3).read_all() == audio
    with pytest.raises(rm.AudioFormatError, match="unlike piece 0"):
        concat_audio([audio, empty])


def speechlike(seconds: float, rate: int, channels: int, seed: int = 0) -> np.ndarray:
    """Noise with louder bursts every few seconds (VAD finds segments in it)."""
    rng = np.random.default_rng(seed)
    n = int(seconds * rate)
    x = rng.standard_normal((n, channels)) * 0.002
    t = np.arange(n) / rate
    bursts = (np.sin(2 * np.pi * t / 3.7) > 0.3).astype(np.float64)
    x += (0.3 * np.sin(2 * np.pi * 220 * t) * bursts)[:, None]
    return np.clip(x, -1, 1).astype(np.float32)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_pipeline_streams_chunks_to_the_whole_audio_result(runtime: str) -> None:
    x = speechlike(21.3, 48000, 2)
    audio = rm.AudioBuffer.from_numpy(x, 48000)
    with rm.Pipeline(
        EXAMPLES / "speech_prep.json", runtime="local", node_runtime=runtime
    ) as pipeline:
        whole = pipeline.run(audio)
        assert len(whole["vad"]) >= 3
        for sizes in (48000 * 5, 12_345, [len(x) - 1, 1]):
            out = pipeline.run(BufferChunks(audio, sizes))
            assert out["vad"] == whole["vad"]
            assert same_output(out["pcm16"], whole["pcm16"])
        metrics = {m.node_id: m for m in pipeline.metrics.nodes}
        assert metrics["vad"].items == 4 and metrics["resample"].items_failed == 0


SEEN_FRAMES: list[int] = []


@rm.register_node("TestStreamingWholeFrames")
class WholeFrames(rm.NodeExecutor):
    """Records the length of the audio it gets (it cannot stream)."""

    def initialize(self, params: Mapping[str, Any]) -> None:
        pass

    def execute(self, input: Any) -> Any:
        assert isinstance(input, rm.AudioBuffer)
        SEEN_FRAMES.append(input.num_frames)
        return input


def test_a_node_that_cannot_stream_gets_the_whole_audio(
    caplog: pytest.LogCaptureFixture,
) -> None:
    manifest = {
        "version": "v1",
        "metadata": {"name": "mixed"},
        "nodes": [
            {"id": "gain", "node_type": "MultiplyNode", "params": {"factor": 0.5}},
            {"id": "whole", "node_type": "TestStreamingWholeFrames"},
            {"id": "pcm", "node_type": "FormatConverterNode", "params": {"target_format": "i16"}},
        ],
        "connections": [{"from": "gain", "to": "whole"}, {"from": "whole", "to": "pcm"}],
    }
    audio = rm.AudioBuffer.from_numpy(speechlike(2.0, 16000, 1), 16000)
    with caplog.at_level(logging.WARNING), rm.Pipeline(manifest, runtime="local") as pipeline:
        whole = pipeline.run(audio)
        out = pipeline.run(BufferChunks(audio, 5000))
    assert SEEN_FRAMES == [32000, 32000]
    assert same_output(out["pcm"], whole["pcm"])
    assert "cannot stream" in caplog.text


def test_a_failing_chunk_source_fails_the_item_naming_the_node() -> None:
    class Broken(AudioChunks):
        sample_rate, channels, num_frames = 16000, 1, 20000
        format = rm.AudioFormat.F32

        def chunks(self) -> Any:
            yield rm.AudioBuffer.from_numpy(np.zeros((10000, 1), np.float32), 16000)
            raise rm.AudioFormatError("disk went away")

    manifest = EXAMPLES / "speech_prep.json"
    with (
        rm.Pipeline(manifest, runtime="local") as pipeline,
        pytest.raises(rm.AudioFormatError, match="disk went away") as failed,
    ):
        pipeline.run(Broken(), item_id="broken")
    assert failed.value.item_id == "broken" and failed.value.node_id is None
    with rm.Pipeline(manifest, runtime="local", on_error="record") as pipeline:
        good = rm.AudioBuffer.from_numpy(np.zeros((4800, 1), np.float32), 48000)
        outputs = list(pipeline.map([Broken(), good], ids=["b", "g"]))
        assert [o.item_id for o in outputs] == ["g"]
        assert [(f.item_id, f.node_id) for f in pipeline.failures] == [("b", None)]


# -- long files -------------------------------------------------------------------------


def write(path: Path, x: np.ndarray, rate: int, subtype: str) -> Path:
    sf.write(path, x, rate, subtype=subtype)
    return path


@pytest.mark.parametrize(
    ("suffix", "subtype", "dtype"),
    [("wav", "PCM_16", np.int16), ("flac", "PCM_24", np.float32), ("wav", "FLOAT", np.float32)],
)
def test_file_chunks_decode_like_the_whole_file(
    tmp_path: Path, suffix: str, subtype: str, dtype: Any
) -> None:
    x = speechlike(3.1, 22050, 2)
    path = write(tmp_path / f"a.{suffix}", x, 22050, subtype)
    whole = decode_audio(path.read_bytes(), str(path))
    reader = AudioFileReader()
    reader.initialize({"window_s": 1.0})
    chunks = reader.execute({"path": str(path), "item_id": "a", "row": None})
    assert isinstance(chunks, FileChunks)
    assert (chunks.num_frames, chunks.channels, chunks.format.dtype) == (len(x), 2, dtype)
    assert [c.num_frames for c in chunks.chunks()] == [22050, 22050, 22050, len(x) - 66150]
    assert chunks.read_all() == whole
    assert pickle.loads(pickle.dumps(chunks)).read_all() == whole
    duration = AudioDuration()
    duration.initialize({})
    counter = duration.open_stream()
    for chunk in chunks.chunks():
        counter.push(chunk)
    assert counter.finish() == whole.duration_seconds == duration.execute(whole)
    reader_whole = AudioFileReader()
    reader_whole.initialize({"window_s": 10.0})
    assert reader_whole.execute({"path": str(path), "row": None}) == whole


def test_reader_window_is_validated() -> None:
    reader = AudioFileReader()
    with pytest.raises(rm.ManifestError, match="window_s"):
        reader.initialize({"window_s": 0})


def test_streaming_a_long_file_keeps_memory_bounded(tmp_path: Path) -> None:
    """numpy allocations (tracemalloc) stay near one window, far below the file's size."""
    rate, seconds, window_s = 16000, 240.0, 8.0
    path = write(tmp_path / "long.wav", speechlike(seconds, rate, 2), rate, "PCM_16")
    manifest = {
        "version": "v1",
        "metadata": {"name": "mono-vad"},
        "nodes": [
            {"id": "mono", "node_type": "ChannelMixNode"},
            {"id": "float", "node_type": "FormatConverterNode", "params": {"target_format": "f32"}},
            {"id": "vad", "node_type": "VADNode", "params": {"threshold": -40.0}},
        ],
        "connections": [{"from": "mono", "to": "float"}, {"from": "float", "to": "vad"}],
    }
    whole_bytes = int(seconds * rate) * 4  # the mono float32 signal alone

    def peak(window: float | None) -> tuple[int, Any]:
        reader = AudioFileReader()
        reader.initialize({"window_s": window})
        with rm.Pipeline(manifest, runtime="local", node_runtime="cpython") as pipeline:
            tracemalloc.start()
            try:
                value = reader.execute({"path": str(path), "row": None})
                result = pipeline.run(value)
                return tracemalloc.get_traced_memory()[1], result
            finally:
                tracemalloc.stop()

    streamed_peak, streamed_result = peak(window_s)
    whole_peak, whole_result = peak(None)
    assert streamed_result["vad"] == whole_result["vad"]
    assert len(whole_result["vad"]) > 20
    assert whole_peak > whole_bytes  # the whole file is in memory at once
    window_bytes = int(window_s * rate) * 2 * 8  # one stereo window as float64
    assert streamed_peak < 4 * window_bytes < whole_bytes
