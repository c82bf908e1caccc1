"""The numpy reference resampler meets the ``high`` quality spec and streams exactly.

Spec (DESIGN.md section 3): passband flat within +-0.01 dB up to 0.9 x the
lower Nyquist, tones at or above 1.05 x the lower Nyquist (downsampling) and
images of in-band tones (upsampling) attenuated >= 120 dB, SINAD >= 130 dB at
997 Hz, no added delay, and chunked output bit-identical to one call.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
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
from remotemedia_ray.nodes.resampling import (
    QUALITIES,
    ResampleSettings,
    StreamingResampler,
    design_filter,
    output_frames,
    resample,
)

# --- quality ---------------------------------------------------------------


@pytest.mark.parametrize("pair", SPEC_PAIRS + OTHER_PAIRS, ids=pair_id)
def test_output_length_rounds_half_up(pair: tuple[int, int]) -> None:
    source, target = pair
    for frames in (0, 1, 2, 3, 147, 441, 1000, source // 2 + 1):
        y = resample(np.zeros((frames, 1), dtype=np.float32), source, ResampleSettings(target))
        assert len(y) == (2 * frames * target + source) // (2 * source)
        assert len(y) == output_frames(frames, source, target)
        assert len(y) == math.floor(frames * target / source + 0.5)


def test_output_length_exact_half_rounds_up() -> None:
    # 3 frames at 48k -> 16k is exactly 1.0; 3 frames 16k -> 8k is 1.5 -> 2.
    assert len(resample(np.zeros((3, 1)), 48000, ResampleSettings(16000))) == 1
    assert len(resample(np.zeros((3, 1)), 16000, ResampleSettings(8000))) == 2
    assert len(resample(np.zeros((1, 1)), 16000, ResampleSettings(8000))) == 1  # 0.5 -> 1


@pytest.mark.parametrize("pair", SPEC_PAIRS, ids=pair_id)
def test_passband_is_flat_within_a_hundredth_of_a_db(pair: tuple[int, int]) -> None:
    source, target = pair
    nyq_low = min(source, target) / 2
    for freq in (50.0, 997.0, 0.3 * nyq_low, 0.6 * nyq_low, 0.8 * nyq_low, 0.9 * nyq_low):
        amplitude, _ = fit_sine(
            resample(tone(freq, source), source, ResampleSettings(target)), freq, target
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
        seg, _ = interior(resample(tone(freq, source), source, ResampleSettings(target)), target)
        level = db(rms(seg) / (AMPLITUDE / math.sqrt(2)))
        assert level <= -120, f"{freq:.1f} Hz leaks at {level:.1f} dB"


@pytest.mark.parametrize("pair", [p for p in SPEC_PAIRS if p[1] > p[0]], ids=pair_id)
def test_upsampling_images_are_120_db_down(pair: tuple[int, int]) -> None:
    source, target = pair
    nyq_low = source / 2
    for freq in (997.0, 0.25 * nyq_low, 0.5 * nyq_low, 0.75 * nyq_low, 0.9 * nyq_low):
        amplitude, residual = fit_sine(
            resample(tone(freq, source), source, ResampleSettings(target)), freq, target
        )
        level = db(rms(residual) / (amplitude / math.sqrt(2)))
        assert level <= -120, f"images of {freq:.1f} Hz at {level:.1f} dB"


@pytest.mark.parametrize("pair", SPEC_PAIRS, ids=pair_id)
def test_sinad_of_997_hz_tone_is_at_least_130_db(pair: tuple[int, int]) -> None:
    source, target = pair
    amplitude, residual = fit_sine(
        resample(tone(997.0, source), source, ResampleSettings(target)), 997.0, target
    )
    sinad = db((amplitude / math.sqrt(2)) / rms(residual))
    assert sinad >= 130, f"SINAD {sinad:.1f} dB"


@pytest.mark.parametrize("pair", SPEC_PAIRS + OTHER_PAIRS[1:], ids=pair_id)
def test_output_is_time_aligned_with_no_delay(pair: tuple[int, int]) -> None:
    source, target = pair
    nyq_low = min(source, target) / 2
    parts = [(100.0, 0.3, 0.2), (1234.5, 1.1, 0.15), (0.7 * nyq_low, 2.0, 0.1)]
    n = np.arange(round(DURATION_S * source))
    x = sum(a * np.sin(2 * np.pi * f * n / source + ph) for f, ph, a in parts)
    seg, k = interior(resample(x[:, None], source, ResampleSettings(target)), target)
    expected = sum(a * np.sin(2 * np.pi * f * k / target + ph) for f, ph, a in parts)
    assert np.max(np.abs(seg - expected)) < 2e-6


@pytest.mark.parametrize(
    "pair", [(44100, 16000), (16000, 44100), (48000, 16000), (8000, 16000)], ids=pair_id
)
def test_matches_the_documented_formula_including_edges(pair: tuple[int, int]) -> None:
    # y[k] = sum_i g[k*M - i*L] x[i], g the zero-phase prototype, x = 0 outside.
    source, target = pair
    design = design_filter(source, target)
    up, down, delay, proto = design.up, design.down, design.delay, design.prototype
    x = np.random.default_rng(7).uniform(-1, 1, (300, 1))
    y = resample(x, source, ResampleSettings(target))
    expected = np.zeros(len(y))
    for k in range(len(y)):
        for i in range(len(x)):
            j = k * down - i * up + delay
            if 0 <= j < len(proto):
                expected[k] += proto[j] * x[i, 0]
    np.testing.assert_allclose(y[:, 0], expected, rtol=0, atol=2e-7)


def test_high_design_meets_its_stated_parameters() -> None:
    design = design_filter(48000, 16000, "high")
    assert (design.up, design.down) == (1, 3)
    assert design.num_taps % 2 == 1 and design.delay == (design.num_taps - 1) // 2
    assert design.taps_per_phase <= 400
    assert design_filter(44100, 16000, "high").taps_per_phase <= 400
    assert design.phases.shape == (design.up, design.taps_per_phase)
    assert not design.phases.flags.writeable


@pytest.mark.parametrize("quality", QUALITIES)
def test_every_quality_passes_a_997_hz_tone(quality: str) -> None:
    y = resample(tone(997.0, 44100), 44100, ResampleSettings(16000, quality))
    amplitude, residual = fit_sine(y, 997.0, 16000)
    assert abs(db(amplitude / AMPLITUDE)) < 0.1
    assert db(rms(residual) / AMPLITUDE) < -50


def test_better_quality_rejects_more() -> None:
    levels = []
    for quality in QUALITIES:
        seg, _ = interior(
            resample(tone(8600.0, 48000), 48000, ResampleSettings(16000, quality)), 16000
        )
        levels.append(db(rms(seg) / AMPLITUDE))
    assert levels == sorted(levels, reverse=True)
    assert levels[0] < -55


@pytest.mark.parametrize("pair", OTHER_PAIRS, ids=pair_id)
def test_other_rate_pairs_pass_a_997_hz_tone(pair: tuple[int, int]) -> None:
    source, target = pair
    x = tone(997.0, source)
    y = resample(x, source, ResampleSettings(target))
    assert y.shape == (output_frames(len(x), source, target), 1)
    amplitude, residual = fit_sine(y, 997.0, target)
    assert abs(db(amplitude / AMPLITUDE)) <= 0.01
    assert db(rms(residual) / AMPLITUDE) < -125


def test_equal_rates_return_the_input_as_float32() -> None:
    x = np.asfortranarray(np.random.default_rng(1).uniform(-1, 1, (1000, 2)))
    y = resample(x, 16000, ResampleSettings(16000))
    assert y.dtype == np.float32 and y.flags.c_contiguous
    np.testing.assert_array_equal(y, x.astype(np.float32))
    ints = np.array([[-32768], [0], [16384]], dtype=np.int16)
    np.testing.assert_array_equal(
        resample(ints, 8000, ResampleSettings(8000)), [[-1.0], [0.0], [0.5]]
    )


# --- streaming -------------------------------------------------------------


def stream(
    x: np.ndarray, source: int, target: int, sizes: list[int], quality: str = "high"
) -> np.ndarray:
    r = StreamingResampler(source, x.shape[1], ResampleSettings(target, quality))
    pieces, start = [], 0
    for size in sizes:
        pieces.append(r.process(x[start : start + size]))
        start += size
    pieces.append(r.process(x[start:]))
    pieces.append(r.flush())
    return np.concatenate(pieces)


def noise(frames: int, channels: int = 1, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-0.9, 0.9, (frames, channels))


ALL_PAIRS = SPEC_PAIRS + OTHER_PAIRS


@pytest.mark.parametrize("pair", ALL_PAIRS, ids=pair_id)
def test_size_one_chunks_are_bit_identical_to_one_call(pair: tuple[int, int]) -> None:
    source, target = pair
    x = noise(source // 50)  # 20 ms
    out = stream(x, source, target, [1] * len(x))
    np.testing.assert_array_equal(out, resample(x, source, ResampleSettings(target)))


@pytest.mark.parametrize("pair", ALL_PAIRS, ids=pair_id)
def test_prime_huge_and_empty_chunks_are_bit_identical(pair: tuple[int, int]) -> None:
    source, target = pair
    x = noise(source // 4, seed=3)
    whole = resample(x, source, ResampleSettings(target))
    for sizes in ([7] * 50 + [13, 0, 0, 101, 1009], [0, len(x) + 5], [len(x) - 1], [2, 3, 5, 7919]):
        out = stream(x, source, target, sizes)
        assert out.dtype == np.float32 and out.flags.c_contiguous
        np.testing.assert_array_equal(out, whole)


@settings(max_examples=25, deadline=None, derandomize=True)
@given(
    pair=st.sampled_from(ALL_PAIRS),
    sizes=st.lists(st.integers(0, 3000), max_size=12),
    quality=st.sampled_from(QUALITIES),
)
def test_random_chunkings_are_bit_identical(
    pair: tuple[int, int], sizes: list[int], quality: str
) -> None:
    source, target = pair
    x = noise(source // 8, channels=2, seed=len(sizes))
    out = stream(x, source, target, sizes, quality)
    np.testing.assert_array_equal(out, resample(x, source, ResampleSettings(target, quality)))


@pytest.mark.parametrize("quality", ["low", "high"])
@pytest.mark.parametrize("pair", [(44100, 16000), (48000, 16000), (16000, 44100)], ids=pair_id)
def test_batching_strategies_round_every_output_identically_in_float64(
    pair: tuple[int, int], quality: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Large batches slice per polyphase residue class, small ones gather each
    # output's window. Both must do the same float64 operations per output, in
    # any batch split; compared before the float32 cast, which would hide most
    # summation-order differences.
    design = design_filter(*pair, quality=quality)
    history = noise(4000, channels=2, seed=11)
    end = (len(history) - design.taps_per_phase) * design.up // design.down
    start = 5

    def render(strategy: str, bounds: list[int]) -> np.ndarray:
        fn = getattr(resampling, f"_render_{strategy}")
        return np.concatenate([fn(design, history, a, b, 0) for a, b in itertools.pairwise(bounds)])

    monkeypatch.setattr(resampling, "_WINDOWED_BLOCK_ELEMENTS", 5000)
    reference = render("sliced", [start, end])
    assert reference.shape == (end - start, 2)
    splits = [start, start + 1, start + 2, start + 163, end // 2, end - 1, end]
    for strategy in ("sliced", "windowed"):
        for bounds in ([start, end], splits):
            np.testing.assert_array_equal(render(strategy, bounds), reference)


def test_stream_memory_stays_bounded() -> None:
    r = StreamingResampler(44100, 1, ResampleSettings(16000))
    design = r.design
    assert design is not None
    x = noise(441 * 200)
    emitted = 0
    for start in range(0, len(x), 441):
        emitted += len(r.process(x[start : start + 441]))
        assert r.buffered_frames < design.taps_per_phase
    assert emitted + len(r.flush()) == output_frames(len(x), 44100, 16000)
    assert r.buffered_frames == 0


def test_outputs_are_emitted_once_their_lookahead_has_arrived() -> None:
    r = StreamingResampler(48000, 1, ResampleSettings(16000))
    n = 3000
    out = r.process(noise(n))
    # Output k needs inputs up to 3k + lookahead.
    assert len(out) == (n - 1 - r.lookahead) // 3 + 1
    assert r.frames_in == n and r.frames_out == len(out)


def test_process_after_flush_raises() -> None:
    r = StreamingResampler(48000, 1, ResampleSettings(16000))
    r.process(noise(100))
    r.flush()
    assert len(r.flush()) == 0
    with pytest.raises(AudioFormatError, match="after flush"):
        r.process(noise(10))


# --- channels, dtypes, edge cases ------------------------------------------


@pytest.mark.parametrize("pair", [(44100, 16000), (16000, 48000)], ids=pair_id)
def test_channels_are_independent_and_equal_to_mono(pair: tuple[int, int]) -> None:
    source, target = pair
    x = noise(source // 10, channels=3, seed=5)
    y = resample(x, source, ResampleSettings(target))
    assert y.shape == (output_frames(len(x), source, target), 3)
    for c in range(3):
        np.testing.assert_array_equal(
            y[:, c : c + 1], resample(x[:, c : c + 1], source, ResampleSettings(target))
        )
    np.testing.assert_array_equal(stream(x, source, target, [1, 10, 100] * 5), y)
    from_fortran = resample(np.asfortranarray(x), source, ResampleSettings(target))
    assert from_fortran.flags.c_contiguous
    np.testing.assert_array_equal(from_fortran, y)


def test_empty_input_gives_empty_output() -> None:
    for source, target in ALL_PAIRS:
        y = resample(np.zeros((0, 2), dtype=np.int16), source, ResampleSettings(target))
        assert y.shape == (0, 2) and y.dtype == np.float32


def test_one_sample_input() -> None:
    x = np.array([[0.5]])
    assert resample(x, 48000, ResampleSettings(16000)).shape == (0, 1)
    up = resample(x, 16000, ResampleSettings(48000))
    assert up.shape == (3, 1)
    g = design_filter(16000, 48000).prototype
    d = design_filter(16000, 48000).delay
    np.testing.assert_array_equal(up[:, 0], (0.5 * g[[d, d + 1, d + 2]]).astype(np.float32))


@pytest.mark.parametrize("dtype", [np.int16, np.int32])
def test_integer_input_is_scaled_to_unit_range(dtype: type) -> None:
    bits = np.iinfo(dtype).bits
    ints = np.random.default_rng(2).integers(
        np.iinfo(dtype).min, np.iinfo(dtype).max, (4410, 2), dtype=dtype, endpoint=True
    )
    expected = resample(ints.astype(np.float64) / 2 ** (bits - 1), 44100, ResampleSettings(16000))
    np.testing.assert_array_equal(resample(ints, 44100, ResampleSettings(16000)), expected)
    np.testing.assert_array_equal(stream(ints, 44100, 16000, [333] * 10), expected)


def test_float32_input_matches_float64_of_same_values() -> None:
    x = noise(4800).astype(np.float32)
    np.testing.assert_array_equal(
        resample(x, 48000, ResampleSettings(16000)),
        resample(x.astype(np.float64), 48000, ResampleSettings(16000)),
    )


def test_nan_input_error_names_frame_and_channel() -> None:
    x = noise(1000, channels=2)
    x[123, 1] = np.nan
    with pytest.raises(AudioFormatError, match=r"frame 123, channel 1"):
        resample(x, 48000, ResampleSettings(16000))


def test_infinite_sample_in_a_later_chunk_names_its_stream_frame() -> None:
    x = noise(1000)
    r = StreamingResampler(48000, 1, ResampleSettings(16000))
    first = r.process(x[:600])
    bad = x[600:].copy()
    bad[10, 0] = np.inf
    with pytest.raises(AudioFormatError, match=r"frame 610, channel 0"):
        r.process(bad)
    # The rejected chunk left the stream as it was.
    rest = np.concatenate([r.process(x[600:]), r.flush()])
    np.testing.assert_array_equal(
        np.concatenate([first, rest]), resample(x, 48000, ResampleSettings(16000))
    )


@pytest.mark.parametrize(
    ("source", "target", "match"),
    [
        (0, 16000, "source_rate"),
        (-8000, 16000, "source_rate"),
        (16000.0, 8000, "source_rate"),
        (True, 8000, "source_rate"),
        (16000, 0, "target_rate"),
        (16000, 2_000_000, "target_rate"),
        (44100, 48001, "ratio"),
    ],
)
def test_bad_rates_raise_naming_the_parameter(source: object, target: object, match: str) -> None:
    # the target rate (and the ratio it makes) is a parameter; the source rate is the audio's
    error = AudioFormatError if match.startswith("source_rate") else ConfigError
    with pytest.raises(error, match=match):
        resample(np.zeros((10, 1)), source, ResampleSettings(target))  # type: ignore[arg-type]
    with pytest.raises(error, match=match):
        StreamingResampler(source, 1, ResampleSettings(target))  # type: ignore[arg-type]


def test_unknown_quality_names_the_allowed_values() -> None:
    with pytest.raises(ConfigError, match="quality.*'low', 'medium', 'high', 'very_high'"):
        resample(np.zeros((10, 1)), 48000, ResampleSettings(16000, "ultra"))
    with pytest.raises(ConfigError, match="quality"):
        StreamingResampler(48000, 1, ResampleSettings(16000, "HIGH"))


@pytest.mark.parametrize(
    ("samples", "match"),
    [
        (np.zeros(10), "2-D"),
        (np.zeros((10, 1, 1)), "2-D"),
        (np.zeros((10, 0)), "at least one channel"),
        (np.zeros((10, 1), dtype=np.int8), "int8"),
        (np.zeros((10, 1), dtype=np.complex64), "complex64"),
        ([[0.0]], "numpy array"),
    ],
)
def test_malformed_samples_raise(samples: object, match: str) -> None:
    with pytest.raises(AudioFormatError, match=match):
        resample(samples, 48000, ResampleSettings(16000))  # type: ignore[arg-type]


def test_stream_rejects_chunks_with_other_channel_counts() -> None:
    r = StreamingResampler(48000, 2, ResampleSettings(16000))
    with pytest.raises(AudioFormatError, match="3 channels, expected 2"):
        r.process(np.zeros((10, 3)))
    with pytest.raises(AudioFormatError, match="channels"):
        StreamingResampler(48000, 0, ResampleSettings(16000))
