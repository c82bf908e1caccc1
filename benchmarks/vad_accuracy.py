"""Frame-level accuracy of VADNode against webrtcvad on a synthetic speech corpus.

    python benchmarks/vad_accuracy.py [--utterances 30] [--seed 0]
                                      [--manifest examples/speech_prep.json]

The corpus is built in memory with espeak-ng (Debian's ``espeak-ng``) and is
the same for the same ``--utterances`` and ``--seed``:

- Utterances: sentences spoken by varied voices, speeds and pitches, resampled
  from espeak's 22050 Hz to 16 kHz and each scaled to a random peak level in
  ``--level-range`` dBFS (default -30..-6, so the loudest and the quietest
  utterance differ by up to 24 dB and no single fixed threshold fits all).
- Labels: an utterance is speech from its first to its last sample whose
  magnitude exceeds -50 dB relative to its own peak (espeak pads with exact
  zeros and ends with a slowly decaying tail; the tail below that is cut off
  the audio, so the signal outside the labels is exactly zero). Pauses between
  words inside an utterance count as speech.
- Silences of a random length in 0.2..1.5 s come before, between and after the
  utterances.
- Noise: white (Gaussian) or pink (the white noise through Julius O. Smith's
  fourth-order 1/f filter), added over the whole signal at a set SNR relative
  to the speech power, which is the mean square over the labelled samples
  (one stationary noise for the whole corpus, so the quiet utterances sit
  below the nominal SNR). A mix that would clip is scaled down as a whole,
  which keeps its SNR.

Scoring is on a 10 ms grid: a cell is speech when its centre lies inside a
labelled interval, and predicted speech when its centre lies inside a segment
(ours) or a speech frame (webrtcvad, mode 2, 30 ms frames on int16 audio).
Our VAD runs with the "vad" node's params of ``--manifest`` through both
runtimes, which must agree exactly. Targets: F1 >= 0.95 clean and at 20 dB
SNR, and an F1 no lower than webrtcvad's at 10 dB and 0 dB SNR, in white and
in pink noise.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import soundfile as sf
from scipy import signal

import remotemedia_ray as rm

RATE = 16000
"""Sample rate of the corpus, Hz."""

CELL_MS = 10.0
"""Scoring grid, ms."""

LABEL_FLOOR_DB = -50.0
"""An utterance starts and ends at its first/last sample above this, dB re its peak."""

TARGET_F1 = 0.95
"""F1 required clean and at 20 dB SNR."""

MANIFEST = Path(__file__).resolve().parent.parent / "examples" / "speech_prep.json"
"""The example manifest whose VAD settings are the recommended ones."""

SENTENCES = (
    "The birch canoe slid on the smooth planks.",
    "Glue the sheet to the dark blue background.",
    "It is easy to tell the depth of a well.",
    "These days a chicken leg is a rare dish.",
    "Rice is often served in round bowls.",
    "The juice of lemons makes fine punch.",
    "The box was thrown beside the parked truck.",
    "Four hours of steady work faced us.",
    "A large size in stockings is hard to sell.",
    "The boy was there when the sun rose.",
    "A rod is used to catch pink salmon.",
    "The source of the huge river is the clear spring.",
    "Kick the ball straight and follow through.",
    "Help the woman get back to her feet.",
    "A pot of tea helps to pass the evening.",
    "Smoky fires lack flame and heat.",
    "The soft cushion broke the man's fall.",
    "The salt breeze came across from the sea.",
    "The girl at the booth sold fifty bonds.",
    "The small pup gnawed a hole in the sock.",
    "The fish twisted and turned on the bent hook.",
    "Press the pants and sew a button on the vest.",
    "The swan dive was far short of perfect.",
    "The beauty of the view stunned the young boy.",
    "Two blue fish swam in the tank.",
    "Her purse was full of useless trash.",
    "The colt reared and threw the tall rider.",
    "It snowed, rained, and hailed the same morning.",
    "Read verse out loud for pleasure.",
    "Hoist the load to your left shoulder.",
    "Take the winding path to reach the lake.",
    "Note closely the size of the gas tank.",
    "Wipe the grease off his dirty face.",
    "Mend the coat before you go out.",
    "The wrist was badly strained and hung limp.",
    "The stray cat gave birth to kittens.",
    "The young girl gave no clear response.",
    "The meal was cooked before the bell rang.",
    "What joy there is in living.",
    "A king ruled the state in the early days.",
)
"""Harvard sentences (IEEE 1969 recommended practice, lists 1-4)."""

VOICES = (
    "en-us",
    "en-gb",
    "en-us+f2",
    "en-gb+f3",
    "en-us+m3",
    "en-gb-scotland+f4",
    "en-029+m5",
    "en-gb-x-rp+m7",
    "en-us+klatt",
    "en+f5",
)
"""espeak-ng voices and variants (male and female, several accents)."""

PINK_B = (0.049922035, -0.095993537, 0.050612699, -0.004408786)
PINK_A = (1.0, -2.494956002, 2.017265875, -0.522189400)
"""A 1/f (-3 dB/octave within +-0.3 dB over 9 octaves) IIR filter, J. O. Smith."""

Interval = tuple[int, int]


@dataclass(frozen=True)
class Utterance:
    """What espeak-ng is asked to say, and how."""

    text: str
    voice: str
    speed: int
    pitch: int
    peak_dbfs: float


@dataclass(frozen=True)
class Corpus:
    """Clean speech with silences between utterances, and the speech labels."""

    speech: npt.NDArray[np.float64]
    labels: tuple[Interval, ...]
    """Half-open ``[start, end)`` sample ranges of the utterances."""
    utterances: tuple[Utterance, ...]

    @property
    def speech_power(self) -> float:
        """Mean square over the labelled samples."""
        total = sum(float(np.dot(self.speech[a:b], self.speech[a:b])) for a, b in self.labels)
        return total / sum(b - a for a, b in self.labels)

    @property
    def seconds(self) -> float:
        """Length of the corpus, s."""
        return self.speech.size / RATE


@dataclass(frozen=True)
class Scores:
    """Frame-level precision, recall and F1 of the speech class."""

    precision: float
    recall: float
    f1: float

    def __str__(self) -> str:
        return f"{self.precision:.3f} {self.recall:.3f} {self.f1:.3f}"


@dataclass(frozen=True)
class Condition:
    """One noise condition: ``noise`` "none", "white" or "pink"; ``snr_db`` None when clean."""

    noise: str
    snr_db: float | None

    @property
    def name(self) -> str:
        """E.g. ``clean`` or ``pink 10 dB``."""
        return "clean" if self.snr_db is None else f"{self.noise} {self.snr_db:g} dB"

    @property
    def needs_f1_target(self) -> bool:
        """Whether the absolute F1 target applies (clean and 20 dB SNR and above)."""
        return self.snr_db is None or self.snr_db >= 20.0


CONDITIONS = (
    Condition("none", None),
    Condition("white", 20.0),
    Condition("pink", 20.0),
    Condition("white", 10.0),
    Condition("pink", 10.0),
    Condition("white", 0.0),
    Condition("pink", 0.0),
)


@dataclass(frozen=True)
class Result:
    """Scores of both detectors under one condition."""

    condition: Condition
    ours: Scores
    webrtc: Scores

    @property
    def passed(self) -> bool:
        """Whether our VAD meets the target of this condition."""
        if self.condition.needs_f1_target:
            return self.ours.f1 >= TARGET_F1
        return self.ours.f1 >= self.webrtc.f1


# -- corpus --------------------------------------------------------------------


def espeak_available() -> bool:
    """Whether the ``espeak-ng`` program is on PATH."""
    return shutil.which("espeak-ng") is not None


def synthesize(utt: Utterance) -> npt.NDArray[np.float64]:
    """One utterance at 16 kHz, trimmed to its label extent and scaled to its peak level."""
    wav = subprocess.run(
        ["espeak-ng", "-v", utt.voice, "-s", str(utt.speed), "-p", str(utt.pitch), "--stdout"],
        input=utt.text.encode(),
        capture_output=True,
        check=True,
    ).stdout
    raw, rate = sf.read(io.BytesIO(wav), dtype="float64")
    if raw.ndim > 1:
        raw = raw[:, 0]
    g = math.gcd(RATE, int(rate))
    x = signal.resample_poly(raw, RATE // g, int(rate) // g)
    peak = float(np.max(np.abs(x)))
    loud = np.flatnonzero(np.abs(x) > peak * 10.0 ** (LABEL_FLOOR_DB / 20.0))
    x = x[loud[0] : loud[-1] + 1]
    return np.asarray(x * (10.0 ** (utt.peak_dbfs / 20.0) / peak), dtype=np.float64)


def plan_corpus(
    n_utterances: int, seed: int = 0, level_range: tuple[float, float] = (-30.0, -6.0)
) -> tuple[list[Utterance], list[int]]:
    """The utterances and the ``n_utterances + 1`` silence lengths (samples) of a corpus."""
    rng = np.random.default_rng(seed)
    utts = [
        Utterance(
            text=SENTENCES[i % len(SENTENCES)],
            voice=VOICES[int(rng.integers(len(VOICES)))],
            speed=int(rng.integers(130, 211)),
            pitch=int(rng.integers(25, 76)),
            peak_dbfs=float(rng.uniform(*level_range)),
        )
        for i in range(n_utterances)
    ]
    gaps = [int(rng.integers(int(0.2 * RATE), int(1.5 * RATE) + 1)) for _ in range(n_utterances + 1)]
    return utts, gaps


def build_corpus(
    n_utterances: int = 30, seed: int = 0, level_range: tuple[float, float] = (-30.0, -6.0)
) -> Corpus:
    """Synthesize a labelled corpus (deterministic for the same arguments)."""
    utts, gaps = plan_corpus(n_utterances, seed, level_range)
    with ThreadPoolExecutor(max_workers=8) as pool:
        audio = list(pool.map(synthesize, utts))
    pieces: list[npt.NDArray[np.float64]] = [np.zeros(gaps[0])]
    labels: list[Interval] = []
    pos = gaps[0]
    for x, gap in zip(audio, gaps[1:], strict=True):
        labels.append((pos, pos + x.size))
        pieces += [x, np.zeros(gap)]
        pos += x.size + gap
    return Corpus(np.concatenate(pieces), tuple(labels), tuple(utts))


def noise(kind: str, n: int, seed: int) -> npt.NDArray[np.float64]:
    """Unit-power white or pink noise of ``n`` samples (deterministic for ``seed``)."""
    rng = np.random.default_rng(seed)
    if kind == "white":
        x = rng.standard_normal(n)
    elif kind == "pink":
        warm = RATE  # let the filter settle before the samples we keep
        x = signal.lfilter(PINK_B, PINK_A, rng.standard_normal(n + warm))[warm:]
    else:
        raise ValueError(f"unknown noise {kind!r}; expected 'white' or 'pink'")
    return np.asarray(x / math.sqrt(float(np.mean(x * x))), dtype=np.float64)


def noisy(corpus: Corpus, condition: Condition, seed: int = 0) -> npt.NDArray[np.float32]:
    """The corpus with the condition's noise added, as float32 in [-1, 1]."""
    x = corpus.speech.copy()
    if condition.snr_db is not None:
        n = noise(condition.noise, x.size, seed + (1 if condition.noise == "white" else 2))
        x += n * math.sqrt(corpus.speech_power / 10.0 ** (condition.snr_db / 10.0))
    peak = float(np.max(np.abs(x)))
    if peak > 0.99:
        x *= 0.99 / peak
    return x.astype(np.float32)


# -- scoring -------------------------------------------------------------------


def grid(intervals_ms: Sequence[tuple[float, float]], n_cells: int) -> npt.NDArray[np.bool_]:
    """Cells of the 10 ms grid whose centre lies in one of the half-open intervals."""
    centres = (np.arange(n_cells) + 0.5) * CELL_MS
    out = np.zeros(n_cells, dtype=bool)
    for start, end in intervals_ms:
        out |= (centres >= start) & (centres < end)
    return out


def score(truth: npt.NDArray[np.bool_], pred: npt.NDArray[np.bool_]) -> Scores:
    """Precision, recall and F1 of ``pred`` against ``truth`` (speech is positive)."""
    tp = int(np.sum(truth & pred))
    fp = int(np.sum(~truth & pred))
    fn = int(np.sum(truth & ~pred))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return Scores(precision, recall, f1)


def n_cells(corpus: Corpus) -> int:
    """Cells of the scoring grid over the corpus."""
    return int(corpus.speech.size * 1000 / RATE // CELL_MS)


def truth_grid(corpus: Corpus) -> npt.NDArray[np.bool_]:
    """The labels on the scoring grid."""
    ms = [(a * 1000.0 / RATE, b * 1000.0 / RATE) for a, b in corpus.labels]
    return grid(ms, n_cells(corpus))


# -- detectors -----------------------------------------------------------------


def manifest_vad_params(path: Path = MANIFEST) -> dict[str, Any]:
    """The params of the "vad" node of a manifest."""
    manifest = json.loads(path.read_text())
    [node] = [n for n in manifest["nodes"] if n["id"] == "vad"]
    return dict(node["params"])


def our_segments(
    x: npt.NDArray[np.float32], params: Mapping[str, Any], runtime: str
) -> list[dict[str, float]]:
    """Segments of VADNode with ``params`` on mono 16 kHz audio, in one runtime."""
    node = rm.create_node("VADNode", runtime=runtime)
    node.initialize(params)
    try:
        segments: list[dict[str, float]] = node.execute(
            rm.AudioBuffer.from_numpy(x.reshape(-1, 1), RATE)
        )
    finally:
        node.cleanup()
    return segments


def webrtc_intervals(x: npt.NDArray[np.float32], mode: int = 2, frame_ms: int = 30) -> list[
    tuple[float, float]
]:
    """Speech frames of webrtcvad on the audio as int16 (the last partial frame is dropped)."""
    import webrtcvad

    vad = webrtcvad.Vad(mode)
    pcm = np.clip(np.rint(x.astype(np.float64) * 32768.0), -32768, 32767).astype("<i2")
    step = RATE * frame_ms // 1000
    out: list[tuple[float, float]] = []
    for i in range(pcm.size // step):
        if vad.is_speech(pcm[i * step : (i + 1) * step].tobytes(), RATE):
            out.append((i * frame_ms, (i + 1) * frame_ms))
    return out


def evaluate(
    corpus: Corpus,
    params: Mapping[str, Any],
    conditions: Sequence[Condition] = CONDITIONS,
    seed: int = 0,
    runtimes: Sequence[str] = ("cpython", "rust_native"),
) -> list[Result]:
    """Score our VAD (every runtime in ``runtimes``, which must agree) and webrtcvad."""
    truth = truth_grid(corpus)
    cells = truth.size
    results = []
    for condition in conditions:
        x = noisy(corpus, condition, seed)
        runs = [our_segments(x, params, runtime) for runtime in runtimes]
        for runtime, segs in zip(runtimes[1:], runs[1:], strict=True):
            if segs != runs[0]:
                raise AssertionError(f"{runtime} and {runtimes[0]} disagree on {condition.name}")
        ours = grid([(s["start_ms"], s["end_ms"]) for s in runs[0]], cells)
        theirs = grid(webrtc_intervals(x), cells)
        results.append(Result(condition, score(truth, ours), score(truth, theirs)))
    return results


def table(results: Sequence[Result]) -> str:
    """The results as a fixed-width text table."""
    lines = [
        f"{'condition':<13} {'ours P':>7} {'R':>5} {'F1':>5}   {'webrtc P':>8} {'R':>5} "
        f"{'F1':>5}   {'target':<16} result",
    ]
    for r in results:
        target = f"F1 >= {TARGET_F1}" if r.condition.needs_f1_target else "F1 >= webrtcvad"
        lines.append(
            f"{r.condition.name:<13} {r.ours.precision:7.3f} {r.ours.recall:5.3f} "
            f"{r.ours.f1:5.3f}   {r.webrtc.precision:8.3f} {r.webrtc.recall:5.3f} "
            f"{r.webrtc.f1:5.3f}   {target:<16} {'pass' if r.passed else 'FAIL'}"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Build the corpus, score both VADs, print the table; exit 1 if a target is missed."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--utterances", type=int, default=30, help="utterances in the corpus")
    parser.add_argument("--seed", type=int, default=0, help="seed of the corpus and the noise")
    parser.add_argument(
        "--level-range",
        type=float,
        nargs=2,
        default=(-30.0, -6.0),
        metavar=("LO", "HI"),
        help="utterance peak levels, dBFS",
    )
    parser.add_argument("--manifest", type=Path, default=MANIFEST, help="VAD settings from here")
    parser.add_argument(
        "--runtime",
        action="append",
        choices=("cpython", "rust_native"),
        help="runtime(s) of our VAD (default: both, compared for equality)",
    )
    args = parser.parse_args(argv)
    if not espeak_available():
        print("espeak-ng is not installed (apt-get install espeak-ng)", file=sys.stderr)
        return 2
    runtimes = args.runtime or (["cpython", "rust_native"] if rm.native_available() else ["cpython"])
    params = manifest_vad_params(args.manifest)
    start = time.perf_counter()
    corpus = build_corpus(args.utterances, args.seed, tuple(args.level_range))
    built = time.perf_counter() - start
    speech_s = sum(b - a for a, b in corpus.labels) / RATE
    print(
        f"corpus: {len(corpus.labels)} utterances, {corpus.seconds:.1f} s "
        f"({speech_s / corpus.seconds:.0%} speech), speech power "
        f"{10 * math.log10(corpus.speech_power):.1f} dBFS, built in {built:.1f} s"
    )
    print(f"ours: VADNode {json.dumps(params)} ({', '.join(runtimes)})")
    print("webrtcvad: mode 2, 30 ms frames, int16\n")
    results = evaluate(corpus, params, seed=args.seed, runtimes=runtimes)
    print(table(results))
    print(f"\n{time.perf_counter() - start:.1f} s in all")
    return 0 if all(r.passed for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
