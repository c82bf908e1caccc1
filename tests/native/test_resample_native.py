"""The native resampler (``_native.Resampler`` / ``_native.resample``).

It meets the ``high`` spec of DESIGN.md section 3 on the four spec rate pairs
(passband +-0.01 dB to 0.9 x the lower Nyquist, >= 120 dB rejection from
1.05 x, SINAD >= 130 dB at 997 Hz, no delay), agrees with the numpy reference
(:mod:`remotemedia_ray.nodes.resampling`) to well under 1e-6 for every preset,
channel count and dtype, streams bit-identically to one call for any chunking,
and refuses bad arguments with errors that name them.
"""

from __future__ import annotations

import copy
import math
import os
import pickle
import subprocess
import sys
import threading

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from resample_spec import (
    AMPLITUDE,
    DURATION_S,
    OTHER_PAIRS,
    SPEC_PAIRS,
    db,
    fit_sine,
    interior,
    pair_id,
    rms,
    tone,
)

from remotemedia_ray.errors import AudioFormatError, ConfigError
from remotemedia_ray.nodes import resampling
from remotemedia_ray.nodes.resampling import ResampleSettings

_native = pytest.importorskip("remotemedia_ray._native")

ALL_PAIRS = SPEC_PAIRS + OTHER_PAIRS
QUALITIES = resampling.QUALITIES
DTYPES = [np.float32, np.float64, np.int16, np.int32]
# Both runtimes round to float32 at the end; f32 coefficients, inputs and
# sums move the native result by a few float32 ulps of a full-scale signal.
AGREEMENT = 1e-6


def noise(frames: int, channels: int = 1, seed: int = 0) -> np.ndarray:
    """Full-scale float64 noise in [-1, 1)."""
    return np.random.default_rng(seed).uniform(-1.0, 1.0, (frames, channels))


def audio_of(dtype: type, frames: int, channels: int, seed: int) -> np.ndarray:
    """Full-scale noise of a dtype (integers over their whole range)."""
    rng = np.random.default_rng(seed)
    if np.dtype(dtype).kind == "i":
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max, (frames, channels), dtype=dtype, endpoint=True)
    return rng.uniform(-1.0, 1.0, (frames, channels)).astype(dtype)


def stream(
    x: np.ndarray, source: int, target: int, sizes: list[int], quality: str = "high"
) -> tuple[np.ndarray, list[int]]:
    """Native output of ``x`` fed in chunks of ``sizes`` (then the rest); frames per call."""
    r = _native.Resampler(source, x.shape[1], ResampleSettings(target, quality))
    pieces, start = [], 0
    for size in [*sizes, len(x)]:
        pieces.append(r.process(x[start : start + size]))
        start += size
    pieces.append(r.flush())
    return np.concatenate(pieces), [len(p) for p in pieces]


# --- the high spec ------------------------------------------------------------


@pytest.mark.parametrize("pair", SPEC_PAIRS, ids=pair_id)
def test_passband_is_flat_within_a_hundredth_of_a_db(pair: tuple[int, int]) -> None:
    source, target = pair
    nyq_low = min(source, target) / 2
    for freq in (50.0, 997.0, 0.3 * nyq_low, 0.6 * nyq_low, 0.8 * nyq_low, 0.9 * nyq_low):
        amplitude, _ = fit_sine(
            _native.resample(tone(freq, source), source, ResampleSettings(target)), freq, target
        )
        gain_db = db(amplitude / AMPLITUDE)
        assert abs(gain_db) <= 0.01, f"{freq:.1f} Hz: gain {gain_db:+.6f} dB"


@pytest.mark.parametrize("pair", [p for p in SPEC_PAIRS if p[1] < p[0]], ids=pair_id)
def test_downsampling_rejects_tones_above_output_nyquist_by_120_db(pair: tuple[int, int]) -> None:
    source, target = pair
    nyq_out, nyq_in = target / 2, source / 2
    freqs = [1.05 * nyq_out, 1.07 * nyq_out, 1.1 * nyq_out]
    freqs += list(np.linspace(1.15 * nyq_out, 0.995 * nyq_in, 7))
    for freq in freqs:
        seg, _ = interior(
            _native.resample(tone(freq, source), source, ResampleSettings(target)), target
        )
        level = db(rms(seg) / (AMPLITUDE / math.sqrt(2)))
        assert level <= -120, f"{freq:.1f} Hz leaks at {level:.1f} dB"


@pytest.mark.parametrize("pair", [p for p in SPEC_PAIRS if p[1] > p[0]], ids=pair_id)
def test_upsampling_images_are_120_db_down(pair: tuple[int, int]) -> None:
    source, target = pair
    nyq_low = source / 2
    for freq in (997.0, 0.25 * nyq_low, 0.5 * nyq_low, 0.75 * nyq_low, 0.9 * nyq_low):
        y = _native.resample(tone(freq, source), source, ResampleSettings(target))
        amplitude, residual = fit_sine(y, freq, target)
        level = db(rms(residual) / (amplitude / math.sqrt(2)))
        assert level <= -120, f"images of {freq:.1f} Hz at {level:.1f} dB"


@pytest.mark.parametrize("pair", SPEC_PAIRS, ids=pair_id)
def test_sinad_of_997_hz_tone_is_at_least_130_db(pair: tuple[int, int]) -> None:
    source, target = pair
    y = _native.resample(tone(997.0, source), source, ResampleSettings(target))
    amplitude, residual = fit_sine(y, 997.0, target)
    sinad = db((amplitude / math.sqrt(2)) / rms(residual))
    assert sinad >= 130, f"SINAD {sinad:.1f} dB"


@pytest.mark.parametrize("pair", SPEC_PAIRS + OTHER_PAIRS[1:], ids=pair_id)
def test_output_is_time_aligned_with_no_delay(pair: tuple[int, int]) -> None:
    source, target = pair
    nyq_low = min(source, target) / 2
    parts = [(100.0, 0.3, 0.2), (1234.5, 1.1, 0.15), (0.7 * nyq_low, 2.0, 0.1)]
    n = np.arange(round(DURATION_S * source))
    x = np.sum([a * np.sin(2 * np.pi * f * n / source + ph) for f, ph, a in parts], axis=0)
    seg, k = interior(_native.resample(x[:, None], source, ResampleSettings(target)), target)
    expected = sum(a * np.sin(2 * np.pi * f * k / target + ph) for f, ph, a in parts)
    assert np.max(np.abs(seg - expected)) < 2e-6


# --- agreement with the numpy reference --------------------------------------


@pytest.mark.parametrize("quality", QUALITIES)
@pytest.mark.parametrize(
    "pair",
    [*SPEC_PAIRS, (8000, 16000), (16000, 44100), (96000, 48000), (44100, 48000), (48000, 8000)],
    ids=pair_id,
)
def test_agrees_with_the_numpy_reference(pair: tuple[int, int], quality: str) -> None:
    source, target = pair
    for channels, dtype in [(1, np.float32), (2, np.float64), (3, np.int16), (8, np.int32)]:
        x = audio_of(dtype, source // 25, channels, seed=channels)
        got = _native.resample(x, source, ResampleSettings(target, quality))
        expected = resampling.resample(x, source, ResampleSettings(target, quality))
        assert got.shape == expected.shape and got.dtype == np.float32
        worst = float(np.max(np.abs(got - expected)))
        assert worst < AGREEMENT, f"{channels} x {np.dtype(dtype).name}: {worst:.2e}"


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    pair=st.sampled_from(ALL_PAIRS),
    quality=st.sampled_from(QUALITIES),
    dtype=st.sampled_from(DTYPES),
    channels=st.integers(1, 8),
    frames=st.one_of(st.sampled_from([0, 1, 2, 3, 7]), st.integers(0, 3000)),
)
def test_agrees_with_the_numpy_reference_on_any_shape(
    pair: tuple[int, int], quality: str, dtype: type, channels: int, frames: int
) -> None:
    source, target = pair
    x = audio_of(dtype, frames, channels, seed=frames)
    got = _native.resample(x, source, ResampleSettings(target, quality))
    expected = resampling.resample(x, source, ResampleSettings(target, quality))
    assert (
        got.shape == expected.shape == (resampling.output_frames(frames, source, target), channels)
    )
    if got.size:
        assert float(np.max(np.abs(got - expected))) < AGREEMENT


def test_equal_rates_are_bit_identical_to_the_reference() -> None:
    for dtype in DTYPES:
        x = audio_of(dtype, 1000, 2, seed=4)
        np.testing.assert_array_equal(
            _native.resample(x, 16000, ResampleSettings(16000)),
            resampling.resample(x, 16000, ResampleSettings(16000)),
        )


def test_integer_input_is_scaled_to_unit_range() -> None:
    ints = audio_of(np.int16, 4410, 2, seed=2)
    floats = ints.astype(np.float32) / 32768
    np.testing.assert_array_equal(
        _native.resample(ints, 44100, ResampleSettings(16000)),
        _native.resample(floats, 44100, ResampleSettings(16000)),
    )
    np.testing.assert_array_equal(
        _native.resample(ints.astype(np.int32) << 16, 44100, ResampleSettings(16000)),
        _native.resample(floats, 44100, ResampleSettings(16000)),
    )


# --- streaming ---------------------------------------------------------------


@settings(max_examples=30, deadline=None, derandomize=True)
@given(
    pair=st.sampled_from(ALL_PAIRS),
    sizes=st.lists(st.integers(0, 3000), max_size=12),
    quality=st.sampled_from(QUALITIES),
    channels=st.integers(1, 3),
)
def test_random_chunkings_are_bit_identical_to_one_call(
    pair: tuple[int, int], sizes: list[int], quality: str, channels: int
) -> None:
    source, target = pair
    x = noise(source // 8, channels, seed=len(sizes)).astype(np.float32)
    out, _ = stream(x, source, target, sizes, quality)
    np.testing.assert_array_equal(
        out, _native.resample(x, source, ResampleSettings(target, quality))
    )


@pytest.mark.parametrize("pair", ALL_PAIRS, ids=pair_id)
def test_size_one_prime_huge_and_empty_chunks_are_bit_identical(pair: tuple[int, int]) -> None:
    source, target = pair
    x = noise(source // 4, 2, seed=3)
    whole = _native.resample(x, source, ResampleSettings(target))
    for sizes in ([1] * 500, [7] * 50 + [13, 0, 0, 101, 1009], [0, len(x) + 5], [2, 3, 5, 7919]):
        out, _ = stream(x, source, target, sizes)
        assert out.dtype == np.float32 and out.flags.c_contiguous
        np.testing.assert_array_equal(out, whole)


@pytest.mark.parametrize("pair", [(48000, 16000), (44100, 16000), (16000, 48000)], ids=pair_id)
def test_emits_as_many_frames_per_call_as_the_numpy_stream(pair: tuple[int, int]) -> None:
    source, target = pair
    x = noise(source // 5, 1, seed=8)
    sizes = [1, 200, 0, 999, 37, 4000]
    _, native_counts = stream(x, source, target, sizes)
    reference = resampling.StreamingResampler(source, 1, ResampleSettings(target))
    counts, start = [], 0
    for size in [*sizes, len(x)]:
        counts.append(len(reference.process(x[start : start + size])))
        start += size
    counts.append(len(reference.flush()))
    assert native_counts == counts


def test_long_stream_in_small_chunks_matches_one_call() -> None:
    # Longer than the kernel's internal blocks, fed as 10 ms chunks.
    x = noise(44100 * 4, 2, seed=6).astype(np.float32)
    out, _ = stream(x, 44100, 16000, [441] * 400)
    np.testing.assert_array_equal(out, _native.resample(x, 44100, ResampleSettings(16000)))


def test_flush_ends_the_stream() -> None:
    r = _native.Resampler(48000, 1, ResampleSettings(16000))
    r.process(noise(100))
    assert len(r.flush()) > 0
    assert r.flush().shape == (0, 1)
    with pytest.raises(AudioFormatError, match="after flush"):
        r.process(noise(10))


def test_resampler_describes_itself() -> None:
    r = _native.Resampler(44100, 2, ResampleSettings(16000, "very_high"))
    assert (r.source_rate, r.target_rate, r.channels, r.quality) == (44100, 16000, 2, "very_high")
    assert _native.Resampler(48000, 1, ResampleSettings(16000)).quality == "high"
    assert (
        repr(r)
        == "Resampler(source_rate=44100, target_rate=16000, channels=2, quality='very_high')"
    )
    r.process(noise(441, 2))
    assert (r.frames_in, r.frames_out) == (441, 0)  # the filter's lookahead is longer


# --- shapes, dtypes and memory -----------------------------------------------


def test_empty_input_gives_empty_output() -> None:
    for source, target in ALL_PAIRS:
        y = _native.resample(np.zeros((0, 2), dtype=np.int16), source, ResampleSettings(target))
        assert y.shape == (0, 2) and y.dtype == np.float32
        r = _native.Resampler(source, 3, ResampleSettings(target))
        assert r.process(np.zeros((0, 3), dtype=np.float32)).shape == (0, 3)
        assert r.flush().shape == (0, 3)


def test_one_sample_input() -> None:
    x = np.array([[0.5]])
    assert _native.resample(x, 48000, ResampleSettings(16000)).shape == (0, 1)
    up = _native.resample(x, 16000, ResampleSettings(48000))
    design = resampling.design_filter(16000, 48000)
    g, d = design.prototype, design.delay
    np.testing.assert_allclose(up[:, 0], 0.5 * g[[d, d + 1, d + 2]], rtol=0, atol=1e-7)


def test_output_is_a_c_contiguous_float32_array_owning_the_rust_buffer() -> None:
    x = noise(4800, 2)
    for y in (
        _native.resample(x, 48000, ResampleSettings(16000)),
        _native.Resampler(48000, 2, ResampleSettings(16000)).process(x),
    ):
        assert y.dtype == np.float32 and y.flags.c_contiguous and y.flags.writeable
        assert type(y.base).__name__ == "PySliceContainer"  # the Vec, handed over without a copy
        assert not np.shares_memory(y, x)


@pytest.mark.parametrize("dtype", DTYPES)
def test_read_only_input_is_read_in_place(dtype: type) -> None:
    x = audio_of(dtype, 2000, 2, seed=1)
    expected = _native.resample(x.copy(), 44100, ResampleSettings(16000))
    x.flags.writeable = False
    np.testing.assert_array_equal(_native.resample(x, 44100, ResampleSettings(16000)), expected)
    r = _native.Resampler(44100, 2, ResampleSettings(16000))
    out = np.concatenate([r.process(x), r.flush()])
    np.testing.assert_array_equal(out, expected)


def test_other_layouts_are_copied_and_give_the_same_result() -> None:
    x = noise(3000, 2, seed=2)
    expected = _native.resample(x, 48000, ResampleSettings(16000))
    np.testing.assert_array_equal(
        _native.resample(np.asfortranarray(x), 48000, ResampleSettings(16000)), expected
    )
    np.testing.assert_array_equal(
        _native.resample(x.astype(">f8"), 48000, ResampleSettings(16000)), expected
    )
    wide = np.zeros((3000, 4))
    wide[:, ::2] = x
    np.testing.assert_array_equal(
        _native.resample(wide[:, ::2], 48000, ResampleSettings(16000)), expected
    )
    raw = np.zeros(3000 * 2 * 8 + 1, dtype=np.uint8)
    unaligned = raw[1:].view(np.float64).reshape(3000, 2)
    unaligned[:] = x
    assert not unaligned.flags.aligned
    np.testing.assert_array_equal(
        _native.resample(unaligned, 48000, ResampleSettings(16000)), expected
    )


def test_channels_are_independent_and_equal_to_mono() -> None:
    x = noise(4410, 3, seed=5)
    y = _native.resample(x, 44100, ResampleSettings(16000))
    for c in range(3):
        np.testing.assert_array_equal(
            y[:, c : c + 1], _native.resample(x[:, c : c + 1], 44100, ResampleSettings(16000))
        )


def test_a_resampler_can_be_used_from_another_thread() -> None:
    r = _native.Resampler(48000, 1, ResampleSettings(16000))
    x = noise(9600)
    results: list[np.ndarray] = []
    worker = threading.Thread(
        target=lambda: results.append(np.concatenate([r.process(x), r.flush()]))
    )
    worker.start()
    worker.join()
    np.testing.assert_array_equal(results[0], _native.resample(x, 48000, ResampleSettings(16000)))


def test_resampler_refuses_to_be_pickled_or_copied() -> None:
    r = _native.Resampler(48000, 1, ResampleSettings(16000))
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(r)
    with pytest.raises(TypeError, match="create one inside each Ray worker"):
        copy.copy(r)
    assert pickle.loads(pickle.dumps(_native.resample)) is _native.resample


# --- errors --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "target", "match"),
    [
        (0, 16000, "source_rate"),
        (-8000, 16000, "source_rate"),
        (16000.0, 8000, "source_rate: must be an int number of Hz, got 16000.0"),
        (True, 8000, "source_rate"),
        ("16000", 8000, "source_rate"),
        (10**30, 8000, "source_rate: must be between 1 and 1536000 Hz"),
        (16000, 0, "target_rate"),
        (16000, 2_000_000, "target_rate: must be between 1 and 1536000 Hz, got 2000000"),
        (44100, 48001, "ratio 48001/44100"),
    ],
)
def test_bad_rates_raise_naming_the_parameter(source: object, target: object, match: str) -> None:
    # the target rate (and the ratio it makes) is a parameter; the source rate is the audio's
    error = AudioFormatError if match.startswith("source_rate") else ConfigError
    with pytest.raises(error, match=match):
        _native.resample(np.zeros((10, 1)), source, ResampleSettings(target))
    with pytest.raises(error, match=match):
        _native.Resampler(source, 1, ResampleSettings(target))


def test_numpy_integer_rates_are_accepted() -> None:
    y = _native.resample(np.zeros((30, 1)), np.int64(48000), ResampleSettings(np.int32(16000)))
    assert y.shape == (10, 1)


def test_unknown_quality_names_the_allowed_values() -> None:
    allowed = "quality.*'low', 'medium', 'high', 'very_high', got 'ultra'"
    with pytest.raises(ConfigError, match=allowed):
        _native.resample(np.zeros((10, 1)), 48000, ResampleSettings(16000, "ultra"))
    with pytest.raises(ConfigError, match="quality"):
        _native.Resampler(48000, 1, ResampleSettings(16000, "HIGH"))
    with pytest.raises(TypeError):
        _native.Resampler(48000, 1, ResampleSettings(16000, 3))


@pytest.mark.parametrize("channels", [0, -1, True, 1.0, 70000, 10**30])
def test_bad_channel_counts_raise(channels: object) -> None:
    with pytest.raises(AudioFormatError, match="channels"):
        _native.Resampler(48000, channels, ResampleSettings(16000))


@pytest.mark.parametrize(
    ("samples", "match"),
    [
        (np.zeros(10), "2-D"),
        (np.zeros((10, 1, 1)), "2-D"),
        (np.zeros((10, 0)), "at least one channel"),
        (
            np.zeros((10, 1), dtype=np.uint8),
            "unsupported dtype uint8; expected float32, float64, int16 or int32",
        ),
        (np.zeros((10, 1), dtype=np.int64), "unsupported dtype int64"),
        (np.zeros((10, 1), dtype=np.float16), "unsupported dtype"),
        (np.zeros((10, 1), dtype=np.complex64), "unsupported dtype"),
        ([[0.0]], "numpy array, got list"),
    ],
)
def test_malformed_samples_raise(samples: object, match: str) -> None:
    with pytest.raises(AudioFormatError, match=match):
        _native.resample(samples, 48000, ResampleSettings(16000))
    with pytest.raises(AudioFormatError, match=match):
        _native.Resampler(48000, 1, ResampleSettings(16000)).process(samples)


def test_process_rejects_chunks_with_other_channel_counts() -> None:
    r = _native.Resampler(48000, 2, ResampleSettings(16000))
    with pytest.raises(AudioFormatError, match="3 channels, expected 2"):
        r.process(np.zeros((10, 3)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_nan_input_error_names_frame_and_channel(dtype: type) -> None:
    x: np.ndarray = noise(1000, 2).astype(dtype)
    x[123, 1] = np.nan
    with pytest.raises(AudioFormatError, match=r"nan\) at index 247 \(frame 123, channel 1\)"):
        _native.resample(x, 48000, ResampleSettings(16000))
    with pytest.raises(AudioFormatError, match=r"frame 123, channel 1"):
        _native.resample(x, 16000, ResampleSettings(16000))


def test_infinite_sample_in_a_later_chunk_names_its_stream_frame() -> None:
    x = noise(1000)
    r = _native.Resampler(48000, 1, ResampleSettings(16000))
    first = r.process(x[:600])
    bad = x[600:].copy()
    bad[10, 0] = -np.inf
    with pytest.raises(AudioFormatError, match=r"-inf\) at index 610 \(frame 610, channel 0\)"):
        r.process(bad)
    rest = np.concatenate([r.process(x[600:]), r.flush()])  # the stream is unchanged
    np.testing.assert_array_equal(
        np.concatenate([first, rest]), _native.resample(x, 48000, ResampleSettings(16000))
    )


def test_float64_beyond_float32_range_is_refused() -> None:
    x = np.zeros((100, 1))
    x[50, 0] = 1e300
    with pytest.raises(AudioFormatError, match="overflows float32"):
        _native.resample(x, 48000, ResampleSettings(16000))


def _resampled_with(kernel: str | None) -> np.ndarray:
    """48 kHz noise resampled to 16 kHz (``high``) in a fresh process whose
    resampling kernel is capped by REMOTEMEDIA_RAY_RESAMPLE_KERNEL."""
    env = {k: v for k, v in os.environ.items() if k != "REMOTEMEDIA_RAY_RESAMPLE_KERNEL"}
    if kernel is not None:
        env["REMOTEMEDIA_RAY_RESAMPLE_KERNEL"] = kernel
    code = (
        "import sys, numpy as np; from remotemedia_ray import _native; "
        "from remotemedia_ray.nodes.resampling import ResampleSettings; "
        "x = np.random.default_rng(7).uniform(-1, 1, (48000, 1)).astype(np.float32); "
        "y = _native.resample(x, 48000, ResampleSettings(target_rate=16000, quality='high')); "
        "sys.stdout.buffer.write(np.ascontiguousarray(y).tobytes())"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, check=True)
    return np.frombuffer(out.stdout, np.float32)


def test_every_resampling_kernel_agrees_and_the_cap_takes_effect() -> None:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            flags = set(info.read().split())
    except OSError:
        flags = set()  # not Linux: the kernels still agree, which kernel ran is unknown
    chosen = _resampled_with(None)
    results = {k: _resampled_with(k) for k in ("portable", "avx2", "avx512")}
    assert all(y.shape == chosen.shape == (16000,) for y in results.values())
    for kernel, y in results.items():
        assert np.max(np.abs(y - chosen)) < 1e-6, kernel  # a few float32 ulps of 1.0
    # The portable kernel multiplies then adds; the SIMD ones fuse (FMA): they round apart.
    if {"avx2", "fma"} <= flags:
        assert not np.array_equal(results["portable"], chosen)
    if "avx512f" in flags:
        assert np.array_equal(results["avx512"], chosen)
        assert not np.array_equal(results["avx2"], chosen)


def test_an_unknown_kernel_cap_is_named_in_a_warning() -> None:
    env = {**os.environ, "REMOTEMEDIA_RAY_RESAMPLE_KERNEL": "AVX-2"}
    code = "import remotemedia_ray.nodes.native"
    done = subprocess.run(
        [sys.executable, "-W", "error::RuntimeWarning", "-c", code],
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode != 0
    assert "REMOTEMEDIA_RAY_RESAMPLE_KERNEL='AVX-2' is ignored" in done.stderr
    assert "portable, avx2, avx512" in done.stderr
