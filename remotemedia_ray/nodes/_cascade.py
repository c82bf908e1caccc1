"""The energy-then-neural cascade of ``VADNode(refine="silero")``.

The energy VAD measures every model window (512 samples at 16 kHz) of the
model's input with its own rules (decision energy with context, fixed and
adaptive threshold, the level of
:func:`remotemedia_ray.nodes.reference.decision_level`); ``rel`` is a
window's decision energy over that level, in dB. Windows with ``rel > 0`` are
its speech; speech runs closer than ``bridge_ms`` are joined into one run.
The energy VAD is trusted where it is sure:

* inside a run whose loudest window is more than ``speech_db`` above the
  level, the windows it called speech: speech (probability 1), once the model
  has agreed (below);
* in a gap between runs, a window more than ``silence_db`` below the level:
  silence (probability 0);
* every other window is uncertain: ``edge_ms`` on each side of every run
  boundary (where the two detectors place a boundary differently), whole runs
  that never get loud (music, noise bursts, faint speech), gap windows
  close to the level (speech the energy VAD may miss), and, inside a loud
  run, every stretch the energy VAD called silent that is long enough for
  Silero's ``min_silence_duration_ms`` to end a segment there (with
  ``edge_ms`` on each side), so that the model, not the bridging, decides
  whether speech pauses there.

Loudness is not speech (a tone, a door, music is loud too), so the model
checks each stretch of sure speech. The model first scores the uncertain
stretches, all of a file in one batch, each run from ``context_ms`` earlier
(``edge_context_ms`` for a stretch that is only run edges) so that its state
has settled when the stretch begins; stretches closer than that are scored
as one, with the windows between them (so a short stretch of sure speech
between two uncertain ones may be scored whole). A stretch of sure speech in
or next to which the model found speech (``>= threshold``) is confirmed; one
the model scored in full keeps the model's probabilities; every other one is
*probed*: the model scores ``probe_windows`` windows at its loudest window,
after ``probe_context_ms`` of the audio before. A stretch whose probe stays
below Silero's ``threshold`` is uncertain after all, and the model scores the
rest of it.

Where the uncertain stretches, or they with the probes and the stretches
that failed them, would be more than ``whole_share`` of the file (noisy
audio), the model scores the whole file in one piece instead, as
SileroVADNode does, and the result is SileroVADNode's. The probabilities then
go through Silero's segmenting rule
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
from remotemedia_ray.nodes._silero_model import Lane, SileroModel, window_samples
from remotemedia_ray.nodes.reference import VadSettings
from remotemedia_ray.nodes.speech_timestamps import SpeechSettings

if TYPE_CHECKING:
    from remotemedia_ray.nodes.builtin import KernelBackend

__all__ = [
    "CascadePlan",
    "CascadeResult",
    "CascadeSettings",
    "cascade_many",
    "cascade_probabilities",
    "plan_windows",
    "relative_levels",
]


@dataclass(frozen=True, slots=True)
class CascadeSettings:
    """How far from the energy VAD's decision level a window is sure, and the model's context.

    Attributes:
        energy: The energy VAD's settings (threshold, context, noise floor).
        speech: Silero's segmenting rule (its ``threshold`` judges the probes,
            its ``min_silence_duration_ms`` which pauses the model checks).
        silence_db: A gap window this far below the decision level is silence, dB.
        speech_db: A run whose loudest window is this far above the level is speech, dB.
        edge_ms: Uncertain on each side of a run boundary, ms.
        bridge_ms: Speech runs closer than this are one run, ms.
        context_ms: Audio the model runs before each stretch it decides (pauses,
            weak runs, near-level gaps), ms: it needs a few hundred ms to
            settle in noise and music.
        edge_context_ms: ... and before a stretch that is only run edges, ms.
        probe_windows: Windows the model scores in each stretch of sure speech.
        probe_context_ms: Audio the model runs before each probe, ms (longer
            than ``context_ms``: the model needs about half a second of
            speech before it says speech with confidence).
        whole_share: When the model would run on more than this share of a
            file anyway, it runs on all of it in one piece (SileroVADNode's
            result, for a little more work).
    """

    energy: VadSettings
    speech: SpeechSettings = field(default_factory=SpeechSettings)
    silence_db: float = 1.5
    speech_db: float = 6.0
    edge_ms: float = 64.0
    bridge_ms: float = 320.0
    context_ms: float = 320.0
    edge_context_ms: float = 96.0
    probe_windows: int = 2
    probe_context_ms: float = 512.0
    whole_share: float = 0.5


@dataclass(frozen=True, slots=True)
class CascadePlan:
    """What the energy VAD decides per window, before the model runs.

    Attributes:
        speech: Sure speech (probability 1 unless its probe fails).
        uncertain: Windows the model scores.
        decided: Of those, the windows the model decides, not just run edges
            (their lanes get ``context_ms``, the rest ``edge_context_ms``).
        stretches: The stretches of sure speech, half-open window ranges.
        probes: For each stretch, the first window of its probe.
    """

    speech: npt.NDArray[np.bool_]
    uncertain: npt.NDArray[np.bool_]
    decided: npt.NDArray[np.bool_]
    stretches: list[tuple[int, int]]
    probes: list[int]


@dataclass(frozen=True, slots=True)
class CascadeResult:
    """The cascade's per-window speech probabilities and what the model did.

    Attributes:
        probs: One probability per window (1/0 where the energy VAD decided).
        scored: True for the windows whose probability is the model's.
        model_windows: Windows the model ran, warm-up and probes included.
    """

    probs: npt.NDArray[np.float32]
    scored: npt.NDArray[np.bool_]
    model_windows: int


def relative_levels(
    signal: npt.NDArray[np.float32], rate: int, kernels: KernelBackend, energy: VadSettings
) -> npt.NDArray[np.float64]:
    """Each model window's decision energy over the energy VAD's decision level, dB.

    The level is :func:`remotemedia_ray.nodes.reference.decision_level` of the
    windows' decision energies (``frame_length_ms`` does not apply: the frames
    are the model's windows).
    """
    window = window_samples(rate)
    if signal.size == 0:
        return np.zeros(0, np.float64)
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
    with np.errstate(all="ignore"):
        return np.asarray(10.0 * np.log10(d / level), dtype=np.float64)


def plan_windows(
    rel: npt.NDArray[np.float64], window_ms: float, settings: CascadeSettings
) -> CascadePlan:
    """What the energy VAD is sure of, from the relative levels (see the module docs)."""
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
        unsure[max(0, b - edge) : b + edge] = True
    decided |= ~runs & (rel >= -settings.silence_db)
    unsure |= decided
    speech &= ~unsure
    stretches = reference.true_runs(speech)
    probes = [
        min(a + int(np.argmax(rel[a:b])), max(a, b - settings.probe_windows)) for a, b in stretches
    ]
    return CascadePlan(speech, unsure, decided, stretches, probes)


def _lanes(
    mask: npt.NDArray[np.bool_],
    warmup: int,
    decided: npt.NDArray[np.bool_] | None = None,
    edge_warmup: int = 0,
) -> list[Lane]:
    """The stretches of ``mask`` as lanes, each started ``warmup`` windows early
    (``edge_warmup`` for a stretch with no ``decided`` window); stretches whose
    warm-up would overlap the one before are one lane."""
    lanes: list[Lane] = []
    for a, b in reference.true_runs(mask):
        w = warmup if decided is None or bool(decided[a:b].any()) else edge_warmup
        if lanes and a - lanes[-1].stop <= w:
            lanes[-1] = Lane(0, lanes[-1].start, b, lanes[-1].warmup)
        else:
            lanes.append(Lane(0, a, b, min(a, w)))
    return lanes


def _cost(lanes: list[Lane]) -> int:
    return sum(lane.stop - lane.start + lane.warmup for lane in lanes)


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


@dataclass
class _Signal:
    """One signal's cascade while the model runs: its plan and what is known so far."""

    signal: npt.NDArray[np.float32]
    plan: CascadePlan
    probs: npt.NDArray[np.float32]
    scored: npt.NDArray[np.bool_]
    lanes: list[Lane]
    """The lanes of the model's next run for this signal."""
    cost: int = 0
    """Windows the model ran for it so far."""
    done: bool = False
    """Its probabilities are final (the model scored all of it)."""
    unconfirmed: list[tuple[int, int]] = field(default_factory=list)
    """The stretches of sure speech that the model's run did not confirm (probed next)."""

    def take(self, found: Sequence[npt.NDArray[np.float32]]) -> None:
        """Record the model's probabilities for the lanes of its last run."""
        for lane, p in zip(self.lanes, found, strict=True):
            self.probs[lane.start : lane.stop] = p
            self.scored[lane.start : lane.stop] = True

    def whole(self) -> None:
        """Let the model score the whole signal in its next run (SileroVADNode's result)."""
        n = self.plan.speech.size
        self.lanes, self.done = [Lane(0, 0, n, 0)], True
        self.cost += n


def cascade_many(
    signals: Sequence[npt.NDArray[np.float32]],
    rate: int,
    kernels: KernelBackend,
    model: SileroModel,
    settings: CascadeSettings,
) -> list[CascadeResult]:
    """Per-window speech probabilities of the cascade for each signal, and what the
    model ran; each signal's result is the one it gets alone.

    The model runs at most three times over all the signals, each run one
    batch of lanes: the uncertain stretches (or, where they would exceed
    ``whole_share`` of a signal, the whole signal), then the probes of the
    stretches of sure speech that run did not confirm, then the stretches whose
    probe failed (or the whole signal). Every lane of a run shares the model's
    steps, which cost more than its windows do.

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
    probe_warmup = math.ceil(settings.probe_context_ms / window_ms)
    threshold = settings.speech.threshold
    states = []
    for signal in signals:
        plan = plan_windows(
            relative_levels(signal, rate, kernels, settings.energy), window_ms, settings
        )
        n = plan.speech.size
        state = _Signal(signal, plan, plan.speech.astype(np.float32), np.zeros(n, np.bool_), [])
        lanes = _lanes(plan.uncertain, warmup, plan.decided, edge_warmup)
        if _cost(lanes) > settings.whole_share * n:
            state.whole()
        else:
            state.lanes, state.cost = lanes, _cost(lanes)
        states.append(state)

    # 1. The uncertain stretches.
    for state, found in zip(states, _score(model, states, rate), strict=True):
        state.take(found)
        if state.done:
            state.lanes = []
            continue
        n = state.plan.speech.size
        state.unconfirmed = []
        state.lanes = []
        for (a, b), q in zip(state.plan.stretches, state.plan.probes, strict=True):
            # A stretch in or next to which the model found speech needs no probe, and
            # one the model scored in full (between two lanes it joined) has its answer.
            lo, hi = max(0, a - 1), min(n, b + 1)
            if bool(np.any(state.scored[lo:hi] & (state.probs[lo:hi] >= threshold))) or bool(
                state.scored[a:b].all()
            ):
                continue
            state.unconfirmed.append((a, b))
            state.lanes.append(Lane(0, q, min(n, q + settings.probe_windows), min(q, probe_warmup)))
        state.cost += _cost(state.lanes)

    # 2. The probes: loud is not speech.
    for state, found in zip(states, _score(model, states, rate), strict=True):
        if state.done:
            continue
        state.take(found)
        n = state.plan.speech.size
        rejected = np.zeros(n, np.bool_)
        for (a, b), p in zip(state.unconfirmed, found, strict=True):
            if p.size == 0 or float(np.max(p)) < threshold:
                rejected[a:b] = True
        retry = _lanes(rejected & ~state.scored, warmup)
        if state.cost + _cost(retry) > settings.whole_share * n:
            state.whole()
        else:
            state.lanes = retry
            state.cost += _cost(retry)

    # 3. The stretches whose probe failed, or the whole signal.
    for state, found in zip(states, _score(model, states, rate), strict=True):
        state.take(found)
    return [CascadeResult(s.probs, s.scored, s.cost) for s in states]


def _score(
    model: SileroModel, states: Sequence[_Signal], rate: int
) -> list[list[npt.NDArray[np.float32]]]:
    """Every signal's ``lanes`` scored in one batch; per signal, one array per lane."""
    batch = [
        Lane(k, lane.start, lane.stop, lane.warmup)
        for k, state in enumerate(states)
        for lane in state.lanes
    ]
    found = iter(model.score([s.signal for s in states], rate, batch) if batch else [])
    return [[next(found) for _ in state.lanes] for state in states]
