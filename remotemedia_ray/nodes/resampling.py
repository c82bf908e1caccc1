"""Polyphase sample-rate conversion: the numpy reference of ``ResampleNode``.

This module is the specification-by-code of the resampler. A native twin is
written to the same design and must meet the same quality specification (it
need not be bit-identical), so the design is stated here in full.

Ratio
    ``L / M = target_rate / source_rate`` reduced by their gcd (``L`` the
    up-sampling and ``M`` the down-sampling factor). ``L`` and ``M`` must each
    be at most :data:`MAX_RATIO_TERM` so the filter tables stay small; rates
    must be ints in ``[1, MAX_RATE]``. Equal rates bypass the filter: the
    output is the input converted to float32.

Input and output
    ``samples`` is 2-D ``(frames, channels)``; float32/float64 are used as is,
    int16/int32 are scaled by ``1 / 2**(bits-1)``. All arithmetic is float64;
    the result is cast (round to nearest even) to float32, C-contiguous.
    The output has ``frames_out = (2*frames*L + M) // (2*M)`` frames, which is
    ``round_half_up(frames * target_rate / source_rate)`` in integer arithmetic
    (see :func:`output_frames`).

Time alignment (no added delay)
    Output frame ``k`` is the band-limited interpolation of the input at input
    time ``k * M / L`` (in input frames). The input is taken as zero outside
    ``[0, frames)``. With ``g`` the zero-phase filter defined below, and
    ``x[i] = 0`` outside the input::

        y[k] = sum_i g[k*M - i*L] * x[i]

    This is up-sampling by ``L`` (zero stuffing), filtering with the
    linear-phase FIR, advancing by its group delay ``D`` (an integer number of
    up-sampled samples because the length is odd) and keeping every ``M``-th
    sample: the delay is compensated exactly.

Prototype filter (windowed sinc at the up-sampled rate ``L * source_rate``)
    Each quality preset (:data:`QUALITY_PRESETS`) gives the passband edge
    ``fp``, the stopband edge ``fs`` (both as fractions of the lower Nyquist
    ``min(source_rate, target_rate) / 2``) and a design attenuation ``A`` (dB):

    ====================  ======  ======  =======  =========================
    quality               ``fp``  ``fs``  ``A``    purpose
    ====================  ======  ======  =======  =========================
    ``low``               0.80    1.05    60 dB    fast previews
    ``medium``            0.85    1.05    100 dB   16-bit material
    ``high`` (default)    0.90    1.05    140 dB   spec: +-0.01 dB, 120 dB
    ``very_high``         0.95    1.00    160 dB   stopband at Nyquist
    ====================  ======  ======  =======  =========================

    In cycles per up-sampled sample, with ``R = max(L, M)`` (the lower
    Nyquist is ``1 / (2R)`` there)::

        fc    = (fp + fs) / 2 / (2R)          # cutoff mid-transition
        width = (fs - fp) / (2R)              # transition width
        N     = ceil((A - 7.95) / (2.285 * 2*pi * width) + 1)   # Kaiser
        N     = N + 1 if N is even            # odd length
        D     = (N - 1) / 2                   # group delay, integer
        beta  = 0.1102 * (A - 8.7)                              if A > 50
                0.5842 * (A - 21)**0.4 + 0.07886 * (A - 21)     if 21 <= A <= 50
                0                                               if A < 21
        w[n]  = I0(beta * sqrt(1 - ((n - D) / D)**2)) / I0(beta),  n = 0..N-1
        h[n]  = L * 2*fc * sinc(2*fc * (n - D)) * w[n]   # sinc(x) = sin(pi x)/(pi x)
        g[m]  = h[m + D],  m = -D..D           (zero for |m| > D)

    The gain ``L`` restores unit passband gain after zero stuffing. The
    Kaiser formulas for ``N`` and ``beta`` are those of Kaiser (1974), as in
    ``scipy.signal.kaiserord``/``kaiser_beta``. Because the filter depends
    only on ``(L, M, quality)``, tables are cached per that triple.

Phase table
    Write ``k*M = q*L + r`` (``q = floor(k*M / L)``, ``0 <= r < L``). Then
    ``y[k] = sum_{t=0}^{T-1} P[r, t] * x[q + s_min + t]`` with::

        s_min = -floor(D / L)                   # first input offset (<= 0)
        s_max = floor((L - 1 + D) / L)          # last input offset (lookahead)
        T     = s_max - s_min + 1               # taps per output (per phase)
        P[r, t] = g[r - (s_min + t) * L]        # an (L, T) float64 array

    ``P`` is stored row-major; entries whose index falls outside ``[-D, D]``
    are zero (at most one per row at each end). Each output is the product
    for ``t = 0`` plus the products for ``t = 1..T-1`` added one at a time in
    increasing ``t`` (oldest input first): one IEEE float64 multiply and one
    add per tap, no fused multiply-add, no BLAS or pairwise sums. So each
    output's rounding never depends on how the input was chunked or batched.

Streaming
    :class:`StreamingResampler` keeps only the inputs from
    ``q(next output) + s_min`` on (at most ``T - 1`` frames plus the newest
    chunk) and emits output ``k`` as soon as input ``q + s_max`` has arrived
    (and ``k`` is below the output length of the frames received so far).
    :meth:`StreamingResampler.flush` zero-extends the input to finish the
    tail. :func:`resample` is one ``process`` plus ``flush``, so the two can
    never disagree: any chunking gives bit-identical output.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import operator
from typing import Final, Protocol

import numpy as np
import numpy.typing as npt

from remotemedia_ray.audio import AudioFormat
from remotemedia_ray.errors import AudioFormatError, ConfigError

__all__ = [
    "MAX_RATE",
    "MAX_RATIO_TERM",
    "QUALITIES",
    "QUALITY_PRESETS",
    "ChunkResampler",
    "FilterDesign",
    "QualityPreset",
    "ResampleSettings",
    "StreamingResampler",
    "design_filter",
    "output_frames",
    "resample",
]

QUALITIES: Final = ("low", "medium", "high", "very_high")
"""The quality names, cheapest first."""

MAX_RATE: Final = 1_536_000
"""The highest sample rate accepted, in Hz."""

MAX_RATIO_TERM: Final = 8192
"""The largest ``L`` or ``M`` of the reduced ratio ``target/source = L/M``."""

# A batch of n outputs uses one slice per (residue class, tap) when every class
# has about this many outputs, else gathers each output's input window.
_SLICED_MIN_OUTPUTS: Final = 600
# Products formed at once by the windowed strategy (bounds its memory).
_WINDOWED_BLOCK_ELEMENTS: Final = 1 << 16


@dataclasses.dataclass(frozen=True)
class QualityPreset:
    """The design targets of one quality name.

    Attributes:
        passband: Passband edge as a fraction of the lower Nyquist frequency.
        stopband: Stopband edge as a fraction of the lower Nyquist frequency.
        attenuation_db: Kaiser design attenuation (and passband ripple
            ``10**(-A/20)``), in dB.
    """

    passband: float
    stopband: float
    attenuation_db: float


QUALITY_PRESETS: Final[dict[str, QualityPreset]] = {
    "low": QualityPreset(passband=0.80, stopband=1.05, attenuation_db=60.0),
    "medium": QualityPreset(passband=0.85, stopband=1.05, attenuation_db=100.0),
    "high": QualityPreset(passband=0.90, stopband=1.05, attenuation_db=140.0),
    "very_high": QualityPreset(passband=0.95, stopband=1.00, attenuation_db=160.0),
}
"""The filter design targets per quality name (see the module docstring)."""


@dataclasses.dataclass(frozen=True, eq=False)
class FilterDesign:
    """A designed polyphase filter for one reduced ratio and quality.

    Attributes:
        up: ``L``, the up-sampling factor of the reduced ratio.
        down: ``M``, the down-sampling factor of the reduced ratio.
        quality: The quality name it was designed for.
        preset: The design targets of that quality.
        cutoff: Cutoff ``fc`` in cycles per up-sampled sample.
        beta: Kaiser window parameter.
        num_taps: ``N``, the odd prototype length at the up-sampled rate.
        delay: ``D = (N - 1) / 2``, the group delay in up-sampled samples.
        first_offset: ``s_min``, the offset of the first input of an output.
        taps_per_phase: ``T``, the taps applied per output sample.
        prototype: The ``N`` prototype taps ``h`` (read-only, gain ``L``).
        phases: The ``(L, T)`` phase table ``P`` (read-only).
    """

    up: int
    down: int
    quality: str
    preset: QualityPreset
    cutoff: float
    beta: float
    num_taps: int
    delay: int
    first_offset: int
    taps_per_phase: int
    prototype: npt.NDArray[np.float64]
    phases: npt.NDArray[np.float64]

    @property
    def lookahead(self) -> int:
        """``s_max``: input frames past ``floor(k*M/L)`` that output ``k`` needs."""
        return self.first_offset + self.taps_per_phase - 1


@dataclasses.dataclass(frozen=True, slots=True)
class ResampleSettings:
    """The settings of the resampler, one object from the node to either kernel.

    ``ResampleNode`` builds one from its params when it is initialized; the
    numpy resampler reads it here, the Rust one converts it once when a
    resampler is made. The resamplers check both values (and name a bad one).

    Attributes:
        target_rate: The output sample rate in Hz, an int in ``[1, MAX_RATE]``.
        quality: One of :data:`QUALITIES`.
    """

    target_rate: int
    quality: str = "high"


def output_frames(frames: int, source_rate: int, target_rate: int) -> int:
    """The output length: ``round_half_up(frames * target_rate / source_rate)``.

    Computed as ``(2*frames*target_rate + source_rate) // (2*source_rate)``.
    """
    return (2 * frames * target_rate + source_rate) // (2 * source_rate)


def design_filter(source_rate: int, target_rate: int, quality: str = "high") -> FilterDesign:
    """The polyphase filter :func:`resample` uses for these rates and quality.

    Raises:
        AudioFormatError: A rate is not an int in ``[1, MAX_RATE]``, the
            reduced ratio is too large, or the quality is unknown.
    """
    up, down = _reduced_ratio(source_rate, target_rate)
    return _design(up, down, _check_quality(quality))


def resample(
    samples: np.ndarray, source_rate: int, settings: ResampleSettings
) -> npt.NDArray[np.float32]:
    """Resample ``(frames, channels)`` audio from ``source_rate`` to ``settings.target_rate``.

    Args:
        samples: 2-D ``(frames, channels)`` float32, float64, int16 or int32
            audio; integers are scaled by ``1 / 2**(bits-1)``.
        source_rate: The input sample rate in Hz.
        settings: The target rate and quality.

    Returns:
        float32 ``(output_frames(frames, source_rate, target_rate), channels)``,
        C-contiguous, time-aligned with the input (no delay).

    Raises:
        ConfigError: A bad target rate or quality, or a ratio too large.
        AudioFormatError: A bad source rate, shape or dtype, or a NaN or
            infinite sample (the message names its frame and channel).
    """
    channels = samples.shape[1] if isinstance(samples, np.ndarray) and samples.ndim == 2 else 1
    streamer = StreamingResampler(source_rate, max(channels, 1), settings)
    head = streamer._process(samples, "samples")
    tail = streamer.flush()
    if len(tail) == 0:
        return head
    if len(head) == 0:
        return tail
    return np.concatenate([head, tail])


class ChunkResampler(Protocol):
    """A resampler fed a stream chunk by chunk: :class:`StreamingResampler`
    here, ``remotemedia_ray._native.Resampler`` in Rust."""

    def process(self, chunk: np.ndarray) -> npt.NDArray[np.float32]:
        """Feed the next ``(frames, channels)`` chunk; return the outputs now complete."""

    def flush(self) -> npt.NDArray[np.float32]:
        """End the stream; return the last outputs."""


class StreamingResampler:
    """Resample a stream chunk by chunk, bit-identically to :func:`resample`.

    ``np.concatenate([r.process(c) for c in chunks] + [r.flush()])`` equals
    ``resample(np.concatenate(chunks), ...)`` bit for bit for any chunking.
    Only the last ``taps_per_phase - 1`` input frames (plus the chunk being
    processed) are kept, so memory does not grow with the stream's length.

    Args:
        source_rate: The input sample rate in Hz.
        channels: The number of channels every chunk must have.
        settings: The target rate and quality.

    Raises:
        ConfigError: A bad target rate or quality, or a ratio too large.
        AudioFormatError: A bad source rate or channel count.
    """

    def __init__(self, source_rate: int, channels: int, settings: ResampleSettings) -> None:
        if not isinstance(settings, ResampleSettings):
            raise ConfigError(f"settings must be a ResampleSettings, got {type(settings).__name__}")
        quality = self._quality = _check_quality(settings.quality)
        up, down = _reduced_ratio(source_rate, settings.target_rate)
        self._source_rate = int(source_rate)
        self._target_rate = int(settings.target_rate)
        self._channels = _check_channels(channels)
        self._design: FilterDesign | None = None if up == down else _design(up, down, quality)
        self._received = 0
        self._emitted = 0
        self._flushed = False
        # _history holds input frames [_history_start, _received); the frames
        # before 0 are the zeros the signal is taken to have there.
        self._history_start = 0 if self._design is None else self._design.first_offset
        self._history = np.zeros((-self._history_start, self._channels), dtype=np.float64)

    @property
    def source_rate(self) -> int:
        """The input sample rate in Hz."""
        return self._source_rate

    @property
    def target_rate(self) -> int:
        """The output sample rate in Hz."""
        return self._target_rate

    @property
    def channels(self) -> int:
        """The number of channels of every chunk."""
        return self._channels

    @property
    def quality(self) -> str:
        """The quality name."""
        return self._quality

    @property
    def design(self) -> FilterDesign | None:
        """The filter in use, or None when the rates are equal (no filtering)."""
        return self._design

    @property
    def lookahead(self) -> int:
        """Input frames past an output's instant needed before it is emitted."""
        return 0 if self._design is None else self._design.lookahead

    @property
    def frames_in(self) -> int:
        """Input frames received so far."""
        return self._received

    @property
    def frames_out(self) -> int:
        """Output frames emitted so far."""
        return self._emitted

    @property
    def buffered_frames(self) -> int:
        """Input frames held for outputs not yet emitted (fewer than ``taps_per_phase``)."""
        if self._design is None or self._flushed:
            return 0
        return self._received - max(self._history_start, 0)

    def process(self, chunk: np.ndarray) -> npt.NDArray[np.float32]:
        """Feed the next ``(frames, channels)`` chunk; return the outputs now complete.

        The chunk may have 0 frames. Outputs are emitted as soon as the input
        they need has arrived; the rest come from later calls or :meth:`flush`.

        Raises:
            AudioFormatError: The stream was flushed, or the chunk has a bad
                shape, dtype or channel count, or a NaN or infinite sample (the
                message names its frame within the stream and its channel). A
                rejected chunk leaves the stream unchanged.
        """
        return self._process(chunk, "chunk")

    def _process(self, chunk: object, name: str) -> npt.NDArray[np.float32]:
        if self._flushed:
            raise AudioFormatError("StreamingResampler.process() called after flush()")
        samples = _as_float64(chunk, name, self._channels, self._received)
        if self._design is None:
            self._received += len(samples)
            self._emitted += len(samples)
            return samples.astype(np.float32)
        design = self._design
        self._received += len(samples)
        if len(samples):
            self._history = np.concatenate([self._history, samples])
        ready_until = _outputs_with_input(self._received - 1 - design.lookahead, design)
        end = min(ready_until, self._output_frames(self._received))
        return self._emit(max(end, self._emitted))

    def flush(self) -> npt.NDArray[np.float32]:
        """End the stream (the signal is zero after it) and return the last outputs.

        After ``flush()``, :meth:`process` raises; calling ``flush()`` again
        returns no frames.
        """
        if self._flushed:
            return np.zeros((0, self._channels), dtype=np.float32)
        self._flushed = True
        design = self._design
        if design is None:
            return np.zeros((0, self._channels), dtype=np.float32)
        end = self._output_frames(self._received)
        if end > self._emitted:
            last_input = (end - 1) * design.down // design.up + design.lookahead
            missing = last_input + 1 - self._received
            if missing > 0:
                zeros = np.zeros((missing, self._channels), dtype=np.float64)
                self._history = np.concatenate([self._history, zeros])
        out = self._emit(max(end, self._emitted))
        self._history = np.zeros((0, self._channels), dtype=np.float64)
        return out

    def _output_frames(self, frames: int) -> int:
        assert self._design is not None
        return output_frames(frames, self._design.down, self._design.up)

    def _emit(self, end: int) -> npt.NDArray[np.float32]:
        """Compute outputs ``[_emitted, end)`` and drop history no longer needed."""
        design = self._design
        assert design is not None
        start = self._emitted
        out = _render(design, self._history, self._history_start, start, end)
        self._emitted = end
        keep_from = end * design.down // design.up + design.first_offset
        drop = keep_from - self._history_start
        if drop > 0:
            self._history = self._history[drop:]
            self._history_start = keep_from
        return out


def _outputs_with_input(last_input: int, design: FilterDesign) -> int:
    """How many outputs ``k`` have ``floor(k*M/L) <= last_input``."""
    if last_input < 0:
        return 0
    # floor(k*M/L) <= Q  <=>  k*M < (Q+1)*L  <=>  k < ceil((Q+1)*L/M)
    return -(-(last_input + 1) * design.up // design.down)


def _render(
    design: FilterDesign,
    history: npt.NDArray[np.float64],
    history_start: int,
    start: int,
    end: int,
) -> npt.NDArray[np.float32]:
    """Outputs ``[start, end)`` from ``history`` (input frames from ``history_start``).

    Every output is ``P[r, 0]*x[q+s_min]``, then ``+ P[r, t]*x[q+s_min+t]``
    for ``t = 1..T-1`` in order, each product and sum rounded to float64. The
    two strategies below only group outputs differently into numpy calls; the
    float operations of every output are the same, so chunking never shows.
    """
    count = end - start
    channels = history.shape[1]
    if count <= 0:
        return np.zeros((0, channels), dtype=np.float32)
    if count >= _SLICED_MIN_OUTPUTS * min(design.up, count):
        out = _render_sliced(design, history, start, end, design.first_offset - history_start)
    else:
        out = _render_windowed(design, history, start, end, design.first_offset - history_start)
    return out.astype(np.float32)


def _render_sliced(
    design: FilterDesign,
    history: npt.NDArray[np.float64],
    start: int,
    end: int,
    offset: int,
) -> npt.NDArray[np.float64]:
    """Many outputs per phase: one contiguous slice per (residue class, tap).

    Outputs k, k+L, k+2L, ... share the phase r and read inputs M apart. The
    history is de-interleaved into M lanes (lane u holds inputs u, u+M, ...)
    so each class reads one contiguous slice per tap.
    """
    up, down = design.up, design.down
    lanes = _deinterleave(history, down)
    out = np.empty((end - start, history.shape[1]), dtype=np.float64)
    for first in range(start, min(start + up, end)):
        n = (end - first + up - 1) // up
        q, r = divmod(first * down, up)
        row = design.phases[r]
        base = q + offset
        col, lane = divmod(base, down)
        acc = lanes[lane, col : col + n] * row[0]
        prod = np.empty_like(acc)
        for t in range(1, design.taps_per_phase):
            col, lane = divmod(base + t, down)
            np.multiply(lanes[lane, col : col + n], row[t], out=prod)
            acc += prod
        out[first - start :: up] = acc
    return out


def _render_windowed(
    design: FilterDesign,
    history: npt.NDArray[np.float64],
    start: int,
    end: int,
    offset: int,
) -> npt.NDArray[np.float64]:
    """Few outputs per phase: gather each output's input window and taps.

    The products of a block of outputs are formed at once and summed over the
    taps with ``np.cumsum``, which adds strictly left to right.
    """
    taps = design.taps_per_phase
    channels = history.shape[1]
    windows = np.lib.stride_tricks.sliding_window_view(history, taps, axis=0)  # (., C, T)
    block = max(1, _WINDOWED_BLOCK_ELEMENTS // (taps * channels))
    out = np.empty((end - start, channels), dtype=np.float64)
    for first in range(start, end, block):
        last = min(first + block, end)
        q, r = np.divmod(np.arange(first, last, dtype=np.int64) * design.down, design.up)
        prod = windows[q + offset] * design.phases[r][:, None, :]
        out[first - start : last - start] = np.cumsum(prod, axis=2)[:, :, -1]
    return out


def _deinterleave(history: npt.NDArray[np.float64], down: int) -> npt.NDArray[np.float64]:
    """``lanes[u, c] = history[c*down + u]``: shape ``(down, ceil(frames/down), channels)``."""
    if down == 1:
        return history[None]
    frames, channels = history.shape
    rows = -(-frames // down)
    padded = np.zeros((rows * down, channels), dtype=np.float64)
    padded[:frames] = history
    return np.ascontiguousarray(padded.reshape(rows, down, channels).transpose(1, 0, 2))


@functools.lru_cache(maxsize=16)
def _design(up: int, down: int, quality: str) -> FilterDesign:
    """Design the prototype and phase table for ``L = up``, ``M = down``."""
    preset = QUALITY_PRESETS[quality]
    span = 2 * max(up, down)  # the lower Nyquist is 1/span cycles per up-sampled sample
    cutoff = (preset.passband + preset.stopband) / 2 / span
    width = (preset.stopband - preset.passband) / span
    attenuation = preset.attenuation_db
    num_taps = math.ceil((attenuation - 7.95) / (2.285 * 2 * math.pi * width) + 1)
    num_taps += 1 - num_taps % 2
    delay = (num_taps - 1) // 2
    beta = _kaiser_beta(attenuation)
    m = np.arange(-delay, delay + 1, dtype=np.float64)
    window = np.kaiser(num_taps, beta)
    prototype = up * 2 * cutoff * np.sinc(2 * cutoff * m) * window

    first_offset = -(delay // up)
    last_offset = (up - 1 + delay) // up
    taps = last_offset - first_offset + 1
    # P[r, t] = g[r - (s_min + t) * L], g[m] = prototype[m + D] for |m| <= D.
    index = np.arange(up)[:, None] - (first_offset + np.arange(taps))[None, :] * up + delay
    valid = (index >= 0) & (index < num_taps)
    phases = np.where(valid, prototype[np.clip(index, 0, num_taps - 1)], 0.0)
    prototype.setflags(write=False)
    phases = np.ascontiguousarray(phases)
    phases.setflags(write=False)
    return FilterDesign(
        up=up,
        down=down,
        quality=quality,
        preset=preset,
        cutoff=cutoff,
        beta=beta,
        num_taps=num_taps,
        delay=delay,
        first_offset=first_offset,
        taps_per_phase=taps,
        prototype=prototype,
        phases=phases,
    )


def _kaiser_beta(attenuation_db: float) -> float:
    """Kaiser's window parameter for a stopband attenuation in dB."""
    if attenuation_db > 50:
        return 0.1102 * (attenuation_db - 8.7)
    if attenuation_db >= 21:
        return 0.5842 * float((attenuation_db - 21) ** 0.4) + 0.07886 * (attenuation_db - 21)
    return 0.0


def _check_rate(rate: object, name: str) -> int:
    # The target rate is the node's parameter; the source rate is the audio's.
    error = ConfigError if name == "target_rate" else AudioFormatError
    if isinstance(rate, bool) or not isinstance(rate, (int, np.integer)):
        raise error(f"{name} must be an int number of Hz, got {rate!r}")
    value = operator.index(rate)
    if not 1 <= value <= MAX_RATE:
        raise error(f"{name} must be between 1 and {MAX_RATE} Hz, got {value}")
    return value


def _reduced_ratio(source_rate: object, target_rate: object) -> tuple[int, int]:
    """``(L, M)`` with ``target/source = L/M`` in lowest terms, both bounded."""
    source = _check_rate(source_rate, "source_rate")
    target = _check_rate(target_rate, "target_rate")
    common = math.gcd(source, target)
    up, down = target // common, source // common
    if max(up, down) > MAX_RATIO_TERM:
        raise ConfigError(
            f"source_rate {source} -> target_rate {target} reduces to the ratio {up}/{down}; "
            f"its terms must be at most {MAX_RATIO_TERM} (pick rates with a larger common divisor)"
        )
    return up, down


def _check_quality(quality: object) -> str:
    if not isinstance(quality, str) or quality not in QUALITY_PRESETS:
        allowed = ", ".join(repr(q) for q in QUALITIES)
        raise ConfigError(f"quality must be one of {allowed}, got {quality!r}")
    return quality


def _check_channels(channels: object) -> int:
    if isinstance(channels, bool) or not isinstance(channels, (int, np.integer)):
        raise AudioFormatError(f"channels must be an int, got {channels!r}")
    if channels < 1:
        raise AudioFormatError(f"channels must be at least 1, got {channels}")
    return int(channels)


def _as_float64(
    samples: object, name: str, channels: int, first_frame: int
) -> npt.NDArray[np.float64]:
    """Validate ``(frames, channels)`` audio and return it as float64 in [-1, 1] scale."""
    if not isinstance(samples, np.ndarray):
        raise AudioFormatError(f"{name} must be a numpy array, got {type(samples).__name__}")
    if samples.ndim != 2:
        raise AudioFormatError(f"{name} must be 2-D (frames, channels), got shape {samples.shape}")
    if samples.shape[1] < 1:
        raise AudioFormatError(f"{name} must have at least one channel, got shape {samples.shape}")
    if samples.shape[1] != channels:
        raise AudioFormatError(f"{name} has {samples.shape[1]} channels, expected {channels}")
    try:
        fmt = AudioFormat.from_dtype(samples.dtype)
    except AudioFormatError as err:
        raise AudioFormatError(f"{name}: {err.message}") from None
    if not fmt.is_float:
        return np.ascontiguousarray(samples, dtype=np.float64) / float(2 ** (fmt.bits - 1))
    finite = np.isfinite(samples)
    if not finite.all():
        frame, channel = (int(i) for i in np.argwhere(~finite)[0])
        raise AudioFormatError(
            f"{name} has a non-finite sample ({samples[frame, channel]}) at frame "
            f"{first_frame + frame}, channel {channel}"
        )
    return np.ascontiguousarray(samples, dtype=np.float64)
