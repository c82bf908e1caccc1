"""Native (Rust) kernels give exactly the numpy reference's answers.

FormatConverter, Multiply/Add, ChannelMix and VAD are compared bit for bit on
generated inputs: empty, one-sample and odd lengths, 1-8 channels, every
format, extreme and non-finite values, read-only and non-contiguous arrays.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import remotemedia_ray as rm
from remotemedia_ray.nodes import native
from remotemedia_ray.nodes.builtin import ReferenceKernels
from remotemedia_ray.nodes.reference import SegmentSettings, VadSettings

pytestmark = pytest.mark.skipif(not rm.native_available(), reason="native extension not built")

REF = ReferenceKernels()
NAT = native.NativeKernels()
DTYPES = [np.float32, np.float64, np.int16, np.int32]
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def same(a: np.ndarray, b: np.ndarray) -> bool:
    return (
        a.dtype == b.dtype
        and a.shape == b.shape
        and bool(np.array_equal(a, b, equal_nan=a.dtype.kind == "f"))
        and a.tobytes() == b.tobytes()
    )


def outcome(fn: Any, *args: Any, **kwargs: Any) -> tuple[str, Any]:
    """("ok", value) or (error class name, message) so errors can be compared too."""
    try:
        return "ok", fn(*args, **kwargs)
    except rm.RemoteMediaError as exc:
        return type(exc).__name__, str(exc)


@st.composite
def audio(draw: st.DrawFn, *, finite: bool = True, max_frames: int = 300) -> np.ndarray:
    dtype = draw(st.sampled_from(DTYPES))
    frames = draw(st.one_of(st.sampled_from([0, 1, 2, 7, 8, 9]), st.integers(0, max_frames)))
    channels = draw(st.integers(1, 8))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    if np.dtype(dtype).kind == "f":
        gain = draw(st.sampled_from([0.0, 1e-6, 1e-3, 0.1, 0.9, 1.0, 1.5, 1e30]))
        x = (rng.standard_normal((frames, channels)) * gain).astype(dtype)
        if frames and draw(st.booleans()):  # exact edge values
            edges = np.array([1.0, -1.0, 0.5 / 32768, 1.5 / 32768, -0.0, 1.0000001], dtype=dtype)
            x.flat[: min(x.size, edges.size)] = edges[: min(x.size, edges.size)]
        if not finite and frames:
            x.flat[draw(st.integers(0, x.size - 1))] = draw(
                st.sampled_from([np.nan, np.inf, -np.inf])
            )
    else:
        info = np.iinfo(dtype)
        x = rng.integers(info.min, info.max, size=(frames, channels), endpoint=True, dtype=dtype)
        if frames and draw(st.booleans()):
            x.flat[0] = info.min
            x.flat[-1] = info.max
    layout = draw(st.sampled_from(["c", "readonly", "fortran", "strided"]))
    if layout == "readonly":
        x.flags.writeable = False
    elif layout == "fortran":
        x = np.asfortranarray(x)
    elif layout == "strided" and frames:
        wide = np.repeat(x, 2, axis=0)
        x = wide[::2]
    return x


@SETTINGS
@given(x=audio(finite=False), target=st.sampled_from(list(rm.AudioFormat)))
def test_convert_format_is_bit_identical(x: np.ndarray, target: rm.AudioFormat) -> None:
    ref = outcome(REF.convert_format, x, target)
    nat = outcome(NAT.convert_format, x, target)
    assert ref[0] == nat[0], (ref, nat)
    if ref[0] == "ok":
        assert same(ref[1], nat[1])
    else:
        assert ref[1] == nat[1]


def test_every_int16_value_roundtrips_natively() -> None:
    values = np.arange(-32768, 32768, dtype=np.int16).reshape(-1, 1)
    as_float = NAT.convert_format(values, rm.AudioFormat.F32)
    assert same(NAT.convert_format(as_float, rm.AudioFormat.I16), values)


@SETTINGS
@given(
    data=st.data(),
    n_inputs=st.integers(1, 4),
    op=st.sampled_from(["add", "multiply"]),
    param=st.sampled_from([0.0, 1.0, -1.0, 2.0, 0.5, 3.7, 1e-9, 1e9, -32768.5]),
)
def test_combine_is_bit_identical(
    data: st.DataObject, n_inputs: int, op: str, param: float
) -> None:
    first = data.draw(audio())
    others = []
    for _ in range(n_inputs - 1):
        rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
        if first.dtype.kind == "f":
            other = rng.standard_normal(first.shape).astype(first.dtype)
        else:
            info = np.iinfo(first.dtype)
            other = rng.integers(info.min, info.max, size=first.shape, dtype=first.dtype)
        others.append(other)
    arrays = [first, *others]
    ref = outcome(REF.combine, arrays, op, param)
    nat = outcome(NAT.combine, arrays, op, param)
    assert ref[0] == nat[0] == "ok"
    assert same(ref[1], nat[1])


@pytest.mark.parametrize("dtype", [np.int8, np.int64, np.uint16, np.float16, np.bool_])
def test_combine_on_other_dtypes_matches_reference(dtype: type) -> None:
    x = np.arange(6).astype(dtype).reshape(2, 3)
    ref = outcome(REF.combine, [x], "multiply", 3.0)
    nat = outcome(NAT.combine, [x], "multiply", 3.0)
    assert ref[0] == nat[0]
    if ref[0] == "ok":
        assert same(ref[1], nat[1])


def test_combine_non_finite_floats_propagate_identically() -> None:
    x = np.array([[np.nan], [np.inf], [-np.inf], [1.0]], dtype=np.float32)
    assert same(REF.combine([x, x], "add", 1.0), NAT.combine([x, x], "add", 1.0))


@SETTINGS
@given(x=audio(finite=False), mode=st.sampled_from(["mean", "select"]), channel=st.integers(0, 8))
def test_channel_mix_is_bit_identical(x: np.ndarray, mode: Any, channel: int) -> None:
    ref = outcome(REF.channel_mix, x, mode, channel)
    nat = outcome(NAT.channel_mix, x, mode, channel)
    assert ref[0] == nat[0], (ref, nat)
    if ref[0] == "ok":
        assert same(ref[1], nat[1])


@st.composite
def speechy(draw: st.DrawFn) -> tuple[np.ndarray, int]:
    """Audio whose frames alternate between silence and sound at many levels."""
    rate = draw(st.sampled_from([8000, 16000, 22050, 44100, 48000]))
    dtype = draw(st.sampled_from(DTYPES))
    channels = draw(st.integers(1, 4))
    blocks = draw(st.lists(st.sampled_from([0.0, 1e-4, 3e-3, 0.03, 0.3, 1.0]), max_size=12))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    parts = []
    for gain in blocks:
        n = draw(st.integers(0, rate // 10))
        parts.append(rng.standard_normal((n, channels)) * gain)
    x = np.concatenate(parts) if parts else np.zeros((0, channels))
    x = np.clip(x, -1.0, 1.0)
    if np.dtype(dtype).kind == "i":
        x = np.rint(x * (np.iinfo(dtype).max)).astype(dtype)
    else:
        x = x.astype(dtype)
    return x, rate


@SETTINGS
@given(
    case=speechy(),
    threshold=st.sampled_from([-60.0, -45.5, -30.0, -20.0, -10.0, 0.0]),
    frame_ms=st.sampled_from([10.0, 20.0, 30.0, 25.7, 1.0]),
    hangover=st.sampled_from([0.0, 30.0, 100.0]),
    min_speech=st.sampled_from([0.0, 20.0, 90.0]),
    min_silence=st.sampled_from([0.0, 50.0, 200.0]),
    context=st.sampled_from([0.0, 10.0, 30.0, 95.0, 1e9]),
    percentile=st.one_of(
        st.none(), st.sampled_from([0.0, 20.0, 50.0, 100.0]), st.floats(0.0, 100.0)
    ),
    margin=st.one_of(st.sampled_from([0.0, 3.0, 6.0, 5000.0]), st.floats(0.0, 60.0)),
)
def test_vad_segments_are_bit_identical(
    case: tuple[np.ndarray, int],
    threshold: float,
    frame_ms: float,
    hangover: float,
    min_speech: float,
    min_silence: float,
    context: float,
    percentile: float | None,
    margin: float,
) -> None:
    x, rate = case
    kwargs = dict(
        threshold_db=threshold,
        frame_length_ms=frame_ms,
        hangover_ms=hangover,
        min_speech_ms=min_speech,
        min_silence_ms=min_silence,
        context_ms=context,
        noise_floor_percentile=percentile,
        noise_floor_margin_db=margin,
    )
    ref = REF.vad_segments(x, rate, VadSettings(**kwargs))
    nat = NAT.vad_segments(x, rate, VadSettings(**kwargs))
    assert nat == ref


def test_a_silent_noise_floor_with_a_huge_margin_leaves_the_fixed_threshold() -> None:
    # 10^(5000/10) overflows to inf: the floor of digital silence (0) must stay 0 in
    # both runtimes, not NaN (hypothesis found native saying no speech here)
    x = np.zeros((82, 1), np.float32)
    x[80:, 0] = (0.00056556, -0.00189958)
    settings = VadSettings(
        threshold_db=-60.0, frame_length_ms=10.0, hangover_ms=0.0, min_speech_ms=0.0,
        min_silence_ms=0.0, context_ms=0.0, noise_floor_percentile=0.0,
        noise_floor_margin_db=5000.0,
    )  # fmt: skip
    ref = REF.vad_segments(x, 8000, settings)
    assert [(s["start_ms"], s["end_ms"]) for s in ref] == [(10.0, 10.25)]
    assert NAT.vad_segments(x, 8000, settings) == ref


@SETTINGS
@given(x=audio(finite=False, max_frames=2000))
def test_vad_errors_and_results_match_on_any_audio(x: np.ndarray) -> None:
    ref = outcome(REF.vad_segments, x, 16000)
    nat = outcome(NAT.vad_segments, x, 16000)
    assert ref == nat


@pytest.mark.parametrize(
    "kwargs",
    [
        {"frame_length_ms": 0.0},
        {"frame_length_ms": float("nan")},
        {"threshold_db": float("inf")},
        {"hangover_ms": -1.0},
        {"min_silence_ms": float("nan")},
        {"context_ms": -1.0},
        {"noise_floor_percentile": 101.0},
        {"noise_floor_percentile": float("nan")},
        {"noise_floor_margin_db": -0.5},
        {"noise_floor_margin_db": float("inf")},
    ],
)
def test_vad_rejects_bad_parameters_in_both_runtimes(kwargs: dict[str, float]) -> None:
    x = np.zeros((100, 1), np.float32)
    for kernels in (REF, NAT):
        with pytest.raises(rm.ConfigError, match=next(iter(kwargs))):
            kernels.vad_segments(x, 16000, VadSettings(**kwargs))
    for kernels in (REF, NAT):
        with pytest.raises(rm.AudioFormatError, match="sample_rate"):
            kernels.vad_segments(x, 0)


def test_settings_travel_as_one_object_in_both_runtimes() -> None:
    x = np.zeros((100, 1), np.float32)
    for kernels in (REF, NAT):
        with pytest.raises(rm.ConfigError, match="VadSettings"):
            kernels.vad_segments(x, 16000, {"threshold_db": -30.0})  # type: ignore[arg-type]
        with pytest.raises(rm.ConfigError, match="ResampleSettings"):
            kernels.resample(x, 48000, 16000)  # type: ignore[arg-type]
        with pytest.raises(rm.ConfigError, match="ResampleSettings"):
            kernels.stream_resampler(48000, 1, {"target_rate": 16000})  # type: ignore[arg-type]
    quiet = VadSettings(threshold_db=-90.0, min_speech_ms=60.0)
    tone = (0.01 * np.sin(np.arange(16000) / 5.0)).astype(np.float32)[:, None]
    assert REF.vad_segments(tone, 16000, quiet) == NAT.vad_segments(tone, 16000, quiet) != []


def test_native_nodes_equal_numpy_nodes_through_a_pipeline() -> None:
    manifest = {
        "version": "v1",
        "metadata": {"name": "parity"},
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
    rng = np.random.default_rng(7)
    x = rng.standard_normal((48000, 2)) * np.repeat([0.001, 0.2, 0.001], 16000)[:, None]
    buf = rm.AudioBuffer.from_numpy(x.astype(np.float32), 48000)
    results = {}
    for runtime in ("cpython", "rust_native"):
        with rm.Pipeline(manifest, runtime="local", node_runtime=runtime) as p:
            results[runtime] = p.run(buf)
            assert {n.runtime for n in p.metrics.nodes} == {runtime}
    assert results["cpython"]["vad"] == results["rust_native"]["vad"]
    assert results["cpython"]["pcm"] == results["rust_native"]["pcm"]


@st.composite
def segmenting(draw: st.DrawFn) -> SegmentSettings:
    max_s = draw(st.sampled_from([0.001, 0.01, 0.05, 0.2, 1.0, 1e9]))
    return SegmentSettings(
        merge_gap_ms=draw(st.sampled_from([0.0, 1.0, 5.0, 30.0, 1e9])),
        pad_ms=draw(st.sampled_from([0.0, 0.5, 2.0, 10.0, 1e9])),
        min_s=draw(st.sampled_from([0.0, 0.0005, 0.003, 0.02, max_s])),
        max_s=max_s,
        short=draw(st.sampled_from(["drop", "merge"])),
        split_frame_ms=draw(st.sampled_from([0.001, 0.3, 1.0, 2.5, 20.0])),
    )


@SETTINGS
@given(
    x=audio(finite=False, max_frames=3000),
    rate=st.sampled_from([1, 8000, 16000, 44100]),
    bounds=st.lists(
        st.tuples(
            st.one_of(st.floats(-50.0, 400.0), st.sampled_from([0.0, float("nan"), 1e300])),
            st.floats(-10.0, 500.0),
        ),
        max_size=12,
    ),
    settings_=segmenting(),
)
def test_segment_bounds_are_identical(
    x: np.ndarray, rate: int, bounds: list[tuple[float, float]], settings_: SegmentSettings
) -> None:
    starts = np.array([a for a, _ in bounds], np.float64)
    ends = np.array([b for _, b in bounds], np.float64)
    ref = outcome(REF.segment_bounds, x, rate, starts, ends, settings_)
    nat = outcome(NAT.segment_bounds, x, rate, starts, ends, settings_)
    if ref[0] != "ok" or nat[0] != "ok":
        assert ref[0] == nat[0], (ref, nat)  # the same kind of refusal
        return
    assert same(ref[1][0], nat[1][0]) and same(ref[1][1], nat[1][1])
    s, e = ref[1]
    assert (np.diff(s) > 0).all() and (e > s).all() and (e[:-1] <= s[1:]).all()


@pytest.mark.parametrize(
    "bad",
    [
        {"max_s": 0.0},
        {"min_s": -1.0},
        {"pad_ms": float("nan")},
        {"merge_gap_ms": float("inf")},
        {"split_frame_ms": 0.0},
        {"min_s": 30.0},
        {"short": "keep"},
    ],
)
def test_segment_settings_are_refused_alike(bad: dict[str, Any]) -> None:
    x = np.zeros((100, 1), np.float32)
    name = next(iter(bad))
    for kernels in (REF, NAT):
        with pytest.raises(rm.ConfigError, match=name):
            kernels.segment_bounds(x, 16000, np.zeros(0), np.zeros(0), SegmentSettings(**bad))
