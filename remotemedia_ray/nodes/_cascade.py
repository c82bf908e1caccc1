"""The energy-then-neural cascade of ``VADNode(refine="silero")``.

The energy VAD measures every model window (512 samples at 16 kHz) of the
model's input with its own rules (decision energy with context, fixed and
adaptive threshold, the level of
:func:`remotemedia_ray.nodes.reference.decision_level`); ``rel`` is a
window's decision energy over that level, in dB. Windows with ``rel > 0`` are
its speech; speech runs closer than ``bridge_ms`` are joined into one run.
The energy VAD is trusted where it is sure:

* inside a run whose loudest window is more than ``speech_db`` above the
  level, the windows it called speech: speech, from where the model finds
  speech in them on (below);
* in a gap between runs, a window more than ``silence_db`` below the level:
  silence (probability 0);
* every other window is uncertain: ``edge_ms`` on each side of where a run
  starts and after where it ends (where the two detectors place a boundary
  differently; a run's own last windows stay sure speech: a lane started
  there would begin cold on the end of speech, which the model then reads as
  less likely speech than it does in the stream), whole runs
  that never get loud (music, noise bursts, faint speech), gap windows
  close to the level (speech the energy VAD may miss), and, inside a loud
  run, every stretch the energy VAD called silent that is long enough for
  Silero's ``min_silence_duration_ms`` to end a segment there (with
  ``edge_ms`` on each side), so that the model, not the bridging, decides
  whether speech pauses there.

The model scores the uncertain stretches, all of a file's side by side in
one batch, each run from ``context_ms`` earlier (``edge_context_ms`` for a
stretch that is only run edges) so that its state has settled when the
stretch begins; stretches closer than that are scored as one, with the
windows between them (so a short stretch of sure speech between two
uncertain ones may be scored whole). Loudness is not speech (a tone, a door,
music is loud too), so the model also reads each stretch of sure speech from
its start: the lane that scores the uncertain windows before it goes on into
it, window by window, until the model finds speech (Silero's ``threshold``),
with the state it has there. Where it finds speech within ``reread_ms`` of
the stretch's start, all of the stretch is speech, with the probability the
model gave there (the windows before were its state settling); where it
finds speech later, the stretch is speech from there on; where it finds none,
it has scored all of the stretch. A stretch whose first window, or the
uncertain window before it, is speech costs one window or none; a tone costs
its length. What a lane read for longer without finding speech (a whole
stretch, or a tone before the first word) is read once more in a second run,
from ``retry_context_ms`` earlier (the lane's state may have been far from
the stream's: in noise and music the model needs a second to settle), and
keeps what that reading finds, by the same rule.

A lane starts cold, as a stream does, and in noise or music a cold model
needs seconds to hear quiet speech that the model in the stream, having
heard the speaker in that noise, calls speech at once (and a pause between
two words silence). So in a file whose loudest window is less than
``prime_below_db`` above its noise floor, the model first reads the file's
loudest stretch of sure speech (its last ``prime_ms``, then
``prime_tail_ms`` after it; loudest is not speech, so that may be a tone,
which primes less well), one short run for all the files of a batch, and
every lane that decides audio after the file's first stretch of sure speech,
second readings included, starts from the state it has then (lanes before
it start cold: the stream has heard no speech there yet), with
``primed_context_ms`` of context before the stretches it decides (run edges
keep ``edge_context_ms``, second readings ``retry_context_ms``). A file none
of whose lanes would start primed is not primed. The priming run counts in
the model's work, not in the ``whole_share`` tests below.

Where the uncertain stretches would be more than ``whole_share`` of the file
(noisy audio), or they, what the model read past them and the second readings
would, or the file is noisy (its noise floor sets the decision level) and
none of it is ``clear_db`` above that level (quieter speech may then be under
the noise, where the energy VAD cannot see it: it is sure of no silence
either), the model scores the whole file in one piece instead, as
SileroVADNode does, and the result is SileroVADNode's (after a first run that
read much of the file, for more model work than SileroVADNode's). The
probabilities then go through Silero's segmenting rule
(:mod:`remotemedia_ray.nodes.speech_timestamps`), as SileroVADNode's do.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from remotemedia_ray.nodes import reference
from remotemedia_ray.nodes._silero_model import Lane, SileroModel, State, window_samples
from remotemedia_ray.nodes.reference import VadSettings
from remotemedia_ray.nodes.speech_timestamps import SpeechSettings

if TYPE_CHECKING:
    from remotemedia_ray.nodes.builtin import KernelBackend

__all__ = [
    "CascadePlan",
    "CascadeResult",
    "CascadeSettings",
    "Levels",
    "cascade_many",
    "cascade_probabilities",
    "plan_windows",
    "relative_levels",
]

_FLOOR_PERCENTILE = 20.0
"""The noise floor's percentile for :attr:`Levels.snr_db` where the energy VAD has none."""


@dataclass(frozen=True, slots=True)
class CascadeSettings:
    """How far from the energy VAD's decision level a window is sure, and the model's context.

    Attributes:
        energy: The energy VAD's settings (threshold, context, noise floor).
        speech: Silero's segmenting rule (its ``threshold`` is speech found in a
            stretch of sure speech, its ``min_silence_duration_ms`` says which
            pauses the model checks).
        silence_db: A gap window this far below the decision level is silence, dB.
        speech_db: A run whose loudest window is this far above the level is sure
            speech (from where the model first finds speech in it), dB.
        edge_ms: Uncertain on each side of a run's start and after its end, ms.
        bridge_ms: Speech runs closer than this are one run, ms.
        context_ms: Audio the model runs before each stretch it decides (pauses,
            weak runs, near-level gaps), ms: it needs a few hundred ms to
            settle in noise and music.
        edge_context_ms: ... and before a stretch that is only run edges, ms.
        retry_context_ms: Audio the model runs before what it reads again, ms (in
            noise and music its state needs a second to settle).
        reread_ms: Where a lane reads more than this of a stretch of sure speech
            before it finds speech, the model reads that part again, ms; a
            shorter start (the model's state settling) is speech with the rest.
        clear_db: In a noisy signal (its noise floor sets the decision level),
            the energy VAD is sure of silence only if its loudest window is this
            far above the level, dB: speech that barely clears the noise may
            have quieter speech beside it that does not.
        prime_below_db: In a signal whose loudest window is less than this above
            its noise floor (audible noise or music), lanes that decide audio
            after its first stretch of sure speech start primed, dB (see the
            module docs).
        prime_ms: The priming run reads this much of the end of the loudest
            stretch of sure speech, ms ...
        prime_tail_ms: ... and this much after it, ms.
        primed_context_ms: Audio a primed lane runs before a stretch it
            decides (``context_ms`` for a cold one), ms.
        whole_share: When the uncertain stretches with their context (or they,
            what the model read past them and the second readings) are more
            than this share of a file, the model runs on all of it in one piece
            (SileroVADNode's result; after the first run, for more work than
            SileroVADNode's).
    """

    energy: VadSettings
    speech: SpeechSettings = field(default_factory=SpeechSettings)
    silence_db: float = 1.5
    speech_db: float = 6.0
    edge_ms: float = 32.0
    bridge_ms: float = 320.0
    context_ms: float = 320.0
    edge_context_ms: float = 96.0
    retry_context_ms: float = 1024.0
    reread_ms: float = 320.0
    clear_db: float = 10.0
    prime_below_db: float = 40.0
    prime_ms: float = 640.0
    prime_tail_ms: float = 320.0
    primed_context_ms: float = 160.0
    whole_share: float = 0.5


@dataclass(frozen=True, slots=True)
class CascadePlan:
    """What the energy VAD decides per window, before the model runs.

    Attributes:
        speech: Sure speech (speech from where the model first finds speech in it).
        uncertain: Windows the model scores.
        decided: Of those, the windows the model decides, not just run edges
            (their lanes get ``context_ms``, the rest ``edge_context_ms``).
        stretches: The stretches of sure speech, half-open window ranges.
        blind: The signal is noisy and none of it is ``clear_db`` above the
            decision level: quieter speech may be under the noise, where the
            energy VAD cannot see it, so it is sure of no silence either; the
            model scores all of it.
        primer: The windows the model reads for the state primed lanes start
            from (half-open), or None: every lane starts cold.
        primed_from: With a primer, lanes that decide windows from this one on
            (the end of the first stretch of sure speech) start primed.
    """

    speech: npt.NDArray[np.bool_]
    uncertain: npt.NDArray[np.bool_]
    decided: npt.NDArray[np.bool_]
    stretches: list[tuple[int, int]]
    blind: bool = False
    primer: tuple[int, int] | None = None
    primed_from: int = 0


@dataclass(frozen=True, slots=True)
class CascadeResult:
    """The cascade's per-window speech probabilities and what the model did.

    Attributes:
        probs: One probability per window (1/0 where the energy VAD decided).
        scored: True for the windows whose probability is the model's: those it
            scored, and the stretches of sure speech it found speech in, which
            carry the probability of the window where it found it.
        model_windows: Windows the model ran, warm-up included.
    """

    probs: npt.NDArray[np.float32]
    scored: npt.NDArray[np.bool_]
    model_windows: int


@dataclass(frozen=True, slots=True)
class Levels:
    """The energy VAD's view of a signal, per model window.

    Attributes:
        rel: Each window's decision energy over the decision level, dB.
        noisy: The noise floor, not the fixed threshold, sets the level.
        snr_db: The loudest window's decision energy over the noise floor (the
            energy VAD's ``noise_floor_percentile``-th percentile, the 20th where
            it has none), dB; inf where that floor is 0 (digital silence: a file
            with long stretches of exact zeros).
    """

    rel: npt.NDArray[np.float64]
    noisy: bool = False
    snr_db: float = math.inf


def relative_levels(
    signal: npt.NDArray[np.float32], rate: int, kernels: KernelBackend, energy: VadSettings
) -> Levels:
    """Each model window's decision energy over the energy VAD's decision level, dB,
    whether the signal's noise floor sets that level, and how far its loudest
    window is above that floor.

    The level is :func:`remotemedia_ray.nodes.reference.decision_level` of the
    windows' decision energies (``frame_length_ms`` does not apply: the frames
    are the model's windows).
    """
    window = window_samples(rate)
    if signal.size == 0:
        return Levels(np.zeros(0, np.float64))
    sums, counts = kernels.vad_frame_energies(signal.reshape(-1, 1), window)
    window_ms = window * 1000.0 / rate
    d = reference.decision_energies(
        sums, counts, reference.smoothing_frames(energy.context_ms, window_ms)
    )
    level = reference.decision_level(
        d,
        energy.threshold_db,
        noise_floor_percentile=energy.noise_floor_percentile,
        noise_floor_margin_db=energy.noise_floor_margin_db,
    )
    fixed = reference.decision_level(d, energy.threshold_db)  # without the noise floor
    percentile = energy.noise_floor_percentile
    floor = reference.noise_floor(d, _FLOOR_PERCENTILE if percentile is None else percentile)
    loudest = float(np.max(d))
    snr_db = 10.0 * math.log10(loudest / floor) if floor > 0.0 else math.inf
    with np.errstate(all="ignore"):
        rel = np.asarray(10.0 * np.log10(d / level), dtype=np.float64)
    return Levels(rel, level > fixed, snr_db)


def plan_windows(levels: Levels, window_ms: float, settings: CascadeSettings) -> CascadePlan:
    """What the energy VAD is sure of, from the relative levels (see the module docs)."""
    rel = levels.rel
    n = rel.size
    loud = rel > 0.0
    runs = reference.smooth_decisions(
        loud, min_silence_frames=math.ceil(settings.bridge_ms / window_ms)
    )
    speech = np.zeros(n, np.bool_)
    unsure = np.zeros(n, np.bool_)
    decided = np.zeros(n, np.bool_)
    edge = math.ceil(settings.edge_ms / window_ms)
    # A pause of this many windows can end a segment under Silero's rule (the window
    # that starts it, then min_silence_duration_ms more); shorter ones cannot.
    pause = math.ceil(settings.speech.min_silence_duration_ms / window_ms) + 1
    for a, b in reference.true_runs(runs):
        if float(np.max(rel[a:b])) > settings.speech_db:
            speech[a:b] = True
            for g0, g1 in reference.true_runs(~loud[a:b]):
                if g1 - g0 >= pause:
                    decided[max(0, a + g0 - edge) : a + g1 + edge] = True
        else:
            decided[a:b] = True
        unsure[max(0, a - edge) : a + edge] = True
        unsure[b : b + edge] = True
    decided |= ~runs & (rel >= -settings.silence_db)
    unsure |= decided
    speech &= ~unsure
    blind = levels.noisy and n > 0 and not float(np.max(rel)) >= settings.clear_db
    stretches = reference.true_runs(speech)
    if blind or not stretches or not levels.snr_db < settings.prime_below_db:
        return CascadePlan(speech, unsure, decided, stretches, blind)
    span = math.ceil(settings.prime_ms / window_ms)

    def loudness(stretch: tuple[int, int]) -> float:  # of what the primer would read
        a, b = stretch
        return float(np.sum(np.clip(rel[max(a, b - span) : b], 0.0, None)))

    a, b = max(stretches, key=loudness)
    primer = (max(a, b - span), min(n, b + math.ceil(settings.prime_tail_ms / window_ms)))
    return CascadePlan(speech, unsure, decided, stretches, blind, primer, stretches[0][1])


def _primed(plan: CascadePlan, start: int) -> bool:
    """Whether a lane that decides windows from ``start`` on starts primed."""
    return plan.primer is not None and start >= plan.primed_from


def _lanes(plan: CascadePlan, warmup: int, edge_warmup: int, primed_warmup: int) -> list[Lane]:
    """The uncertain stretches of a plan as lanes, each started ``warmup`` windows
    early (``primed_warmup`` where it starts primed; ``edge_warmup`` for a stretch
    with no decided window); stretches whose warm-up would overlap the one before
    are one lane."""
    lanes: list[Lane] = []
    for a, b in reference.true_runs(plan.uncertain):
        if not plan.decided[a:b].any():
            w = edge_warmup
        else:
            w = primed_warmup if _primed(plan, a) else warmup
        if lanes and a - lanes[-1].stop <= w:
            lanes[-1] = Lane(0, lanes[-1].start, b, lanes[-1].warmup)
        else:
            lanes.append(Lane(0, a, b, min(a, w)))
    return lanes


def _cost(lanes: list[Lane]) -> int:
    return sum(lane.stop + lane.extend - lane.start + lane.warmup for lane in lanes)


def cascade_probabilities(
    signal: npt.NDArray[np.float32],
    rate: int,
    kernels: KernelBackend,
    model: SileroModel,
    settings: CascadeSettings,
) -> CascadeResult:
    """Per-window speech probabilities of the cascade for one signal, and what the
    model ran (:func:`cascade_many` of one)."""
    (result,) = cascade_many([signal], rate, kernels, model, settings)
    return result


def _confirming(lanes: list[Lane], stretches: list[tuple[int, int]], warmup: int) -> list[Lane]:
    """``lanes`` with each stretch of sure speech that none of them covers read on from
    its start: the lane that ends where it starts goes on into it (a new lane, started
    ``warmup`` windows early, where none does)."""
    out = list(lanes)
    ending = {lane.stop: k for k, lane in enumerate(out)}
    covered = [(lane.start, lane.stop) for lane in out]
    for a, b in stretches:
        if any(lo <= a and b <= hi for lo, hi in covered):
            continue  # scored whole, between two uncertain stretches run as one
        k = ending.get(a)
        if k is None:
            out.append(Lane(0, a, a, min(a, warmup), b - a))
        else:
            out[k] = Lane(0, out[k].start, a, out[k].warmup, b - a)
    return out


def cascade_many(
    signals: Sequence[npt.NDArray[np.float32]],
    rate: int,
    kernels: KernelBackend,
    model: SileroModel,
    settings: CascadeSettings,
) -> list[CascadeResult]:
    """Per-window speech probabilities of the cascade for each signal, and what the
    model ran; each signal's result is the one it gets alone.

    The model runs once over all the signals, one batch of lanes: each signal's
    uncertain stretches, each going on into the stretch of sure speech after it
    until the model finds speech there, or, where the uncertain stretches would
    exceed ``whole_share`` of a signal, the whole signal. It runs a second time
    only where a lane read a whole stretch, or more than ``reread_ms`` of one,
    without finding speech: those windows again, or the whole signal. Every
    lane of a run shares the model's steps, which cost more than its windows
    do.

    Args:
        signals: Mono float32 signals at ``rate`` (8000 or 16000 Hz).
        rate: The model's rate.
        kernels: The calling node's backend (frame energies).
        model: The loaded Silero model.
        settings: The cascade's settings.
    """
    window_ms = window_samples(rate) * 1000.0 / rate
    warmup = math.ceil(settings.context_ms / window_ms)
    edge_warmup = math.ceil(settings.edge_context_ms / window_ms)
    retry_warmup = math.ceil(settings.retry_context_ms / window_ms)
    primed_warmup = math.ceil(settings.primed_context_ms / window_ms)
    plans: list[CascadePlan] = []
    batch: list[Lane] = []
    primers: list[Lane] = []
    for k, signal in enumerate(signals):
        plan = plan_windows(
            relative_levels(signal, rate, kernels, settings.energy), window_ms, settings
        )
        lanes = _lanes(plan, warmup, edge_warmup, primed_warmup)
        if plan.blind or _cost(lanes) > settings.whole_share * plan.speech.size:
            lanes = [Lane(0, 0, plan.speech.size)]  # noisy: SileroVADNode's result
        else:
            lanes = _confirming(lanes, plan.stretches, edge_warmup)
            if plan.primer is not None and any(_primed(plan, lane.start) for lane in lanes):
                primers.append(Lane(k, *plan.primer))
        plans.append(plan)
        batch.extend(Lane(k, lane.start, lane.stop, lane.warmup, lane.extend) for lane in lanes)
    found = _Found(plans, settings.speech.threshold, math.ceil(settings.reread_ms / window_ms))
    # 0. The state primed lanes start from: the model after each primed signal's loudest
    # speech (one short run for all of them; not counted against whole_share below).
    primed: dict[int, State] = {}
    priming = [0] * len(signals)
    if primers:
        for lane, state in zip(primers, model.final_states(signals, rate, primers), strict=True):
            primed[lane.signal] = state
            priming[lane.signal] = lane.stop - lane.start

    def states(lanes: Sequence[Lane]) -> list[State | None]:
        return [
            primed.get(lane.signal) if _primed(plans[lane.signal], lane.start) else None
            for lane in lanes
        ]

    # 1. The uncertain stretches, each going on into the sure speech after it.
    unfound = found.take(
        batch, model.score(signals, rate, batch, until=found.threshold, states=states(batch))
    )
    # 2. What it read of sure speech without finding speech (a whole stretch, or more
    # than reread_ms of one), once more from further back (the model's state may have
    # been far from the stream's), or the whole signal where that and what it ran
    # already would be more than whole_share.
    retry: list[Lane] = []
    for k, plan in enumerate(plans):
        lanes = [Lane(k, a, a, min(a, retry_warmup), b - a) for j, a, b in unfound if j == k]
        if lanes and found.cost[k] + _cost(lanes) > settings.whole_share * plan.speech.size:
            lanes = [Lane(k, 0, plan.speech.size)]
        retry.extend(lanes)
    if retry:
        found.take(
            retry, model.score(signals, rate, retry, until=found.threshold, states=states(retry))
        )
    return [
        CascadeResult(probs, scored, cost + extra)
        for probs, scored, cost, extra in zip(
            found.probs, found.scored, found.cost, priming, strict=True
        )
    ]


class _Found:
    """What the model found in each signal so far: per-window probabilities (the energy
    VAD's 1 and 0 where it has not run), the windows it scored, and its windows run."""

    def __init__(self, plans: Sequence[CascadePlan], threshold: float, reread: int) -> None:
        self.probs = [plan.speech.astype(np.float32) for plan in plans]
        self.scored = [np.zeros(plan.speech.size, np.bool_) for plan in plans]
        self.cost = [0] * len(plans)
        self.threshold = threshold
        self.reread = reread

    def take(
        self, lanes: Sequence[Lane], found: Sequence[npt.NDArray[np.float32]]
    ) -> list[tuple[int, int, int]]:
        """Record a run of the model; return the windows of sure speech (signal, start,
        stop) that a lane read without finding speech: a whole stretch, or the part
        of one before the window where it found speech."""
        unfound = []
        for lane, p in zip(lanes, found, strict=True):
            k, own = lane.signal, lane.stop - lane.start
            self.cost[k] += p.size + min(lane.warmup, lane.start)
            if lane.extend and p.size and p[-1] >= self.threshold:
                # Speech found: the rest of the stretch is speech, as likely as that.
                at = lane.start + p.size - 1
                if at - lane.stop > self.reread:  # long without speech first: read again
                    unfound.append((k, lane.stop, at))
                else:  # found soon: all of the stretch
                    at = min(at, lane.stop)
                rest = slice(at, lane.stop + lane.extend)
                self.probs[k][rest], self.scored[k][rest] = p[-1], True
                p = p[: at - lane.start]
            elif lane.extend and p.size == own + lane.extend:
                unfound.append((k, lane.stop, lane.stop + lane.extend))
            self.probs[k][lane.start : lane.start + p.size] = p
            self.scored[k][lane.start : lane.start + p.size] = True
        return unfound
