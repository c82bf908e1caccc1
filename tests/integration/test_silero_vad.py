"""SileroVADNode and VADNode(refine="silero") on Ray, in the dataset job, and on the
synthetic corpus of ``benchmarks/vad_accuracy.py``.

The corpus is the benchmark's own (8 recordings of 5 espeak-ng utterances,
seed 0, 127 s; see its docstring), scored the same way. The cascade's targets
on real speech are the benchmark's to report; here it must beat the energy
VAD it refines where that VAD is weak (0 dB SNR, music at 0 dB).

Issue #15's target "the cascade is never worse than the energy VAD on the
synthetic corpus" holds on this corpus, narrowly: the Silero model itself is
below the energy VAD in white and pink noise at 10 dB (by 0.005-0.010 F1),
and in white noise at 10 dB the cascade, which lets the model decide the
boundaries, is above it by only 0.0002 (on corpora of other seeds it is up
to 0.006 below). A margin of two 10 ms cells may not survive floating point
that differs in the last digits on another machine, so the tests below
allow 0.002 below the energy VAD, and none below SileroVADNode (the figures:
README, "Neural VAD").
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from helpers import ids_exactly_once, manifest, run_cli, sink_table

import remotemedia_ray as rm

pytestmark = pytest.mark.skipif(
    shutil.which("espeak-ng") is None,
    reason="espeak-ng is not installed (`make test-deps` installs it); it speaks the test audio",
)

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "speech_prep_silero.json"


@pytest.fixture(scope="module")
def corpus() -> Any:
    from benchmarks import vad_accuracy as bench

    return bench.build_corpus(bench.CorpusSpec())


@pytest.fixture(scope="module")
def scores(corpus: Any) -> dict[str, dict[str, float]]:
    """F1 per condition name of each system of the benchmark."""
    from benchmarks import vad_accuracy as bench

    results = bench.compare_systems(corpus, bench.manifest_vad_params(), repeat=1)
    out: dict[str, dict[str, float]] = {}
    for r in results:
        out.setdefault(r.condition.name, {})[r.system] = r.scores.f1
    return out


CONDITIONS = [
    "clean",
    "white 20 dB",
    "pink 20 dB",
    "white 10 dB",
    "pink 10 dB",
    "white 0 dB",
    "pink 0 dB",
    "music 10 dB",
    "music 0 dB",
]


@pytest.mark.parametrize("condition", CONDITIONS)
def test_cascade_is_at_most_a_hair_below_the_energy_vad_on_the_synthetic_corpus(
    scores: dict[str, dict[str, float]], condition: str
) -> None:
    # The target (never below the energy VAD) with room for another machine's
    # floating point: see the module docstring.
    f1 = scores[condition]
    assert f1["cascade"] >= f1["energy"] - 0.002, f1
    assert f1["cascade"] >= f1["silero"], f1


def test_in_noise_the_cascade_hears_a_quiet_utterance_after_louder_ones() -> None:
    # Recording 7 of the corpus of seed 2 in pink noise at 10 dB SNR: its last utterance
    # is its quietest. A lane of the model that starts cold there hears none of it (the
    # model in noise needs seconds, and the speaker, to hear quiet speech); SileroVADNode
    # reading the whole file, and the cascade's lanes started from the state the model
    # has after the file's loudest speech, hear it all.
    import dataclasses

    from benchmarks import vad_accuracy as bench
    from remotemedia_ray.nodes.reference import true_runs

    recording = bench.build_corpus(bench.CorpusSpec(seed=2))[7]
    x = bench.noisy(recording, bench.Condition("pink", 10.0), (2, 7))
    audio = rm.AudioBuffer.from_numpy(x.reshape(-1, 1), 16000)
    truth = bench.truth_grid(recording)
    params = bench.cascade_params(bench.manifest_vad_params())
    primed = rm.create_node("VADNode")
    primed.initialize(params)
    cold = rm.create_node("VADNode")
    cold.initialize(params)
    cold.cascade = dataclasses.replace(cold.cascade, prime_below_db=0.0)  # no priming
    silero = rm.create_node("SileroVADNode")
    silero.initialize({})
    utterances = true_runs(truth)
    assert len(utterances) == 5

    def heard(node: Any) -> list[float]:
        found = bench.grid(bench._spans(node.execute(audio)), truth.size)
        return [float(found[a:b].mean()) for a, b in utterances]

    assert heard(silero)[-1] > 0.9
    assert min(heard(primed)) > 0.9
    assert heard(cold)[-1] < 0.1


@pytest.mark.parametrize("condition", ["white 0 dB", "pink 0 dB", "music 0 dB"])
def test_cascade_beats_the_energy_vad_where_that_is_weak(
    scores: dict[str, dict[str, float]], condition: str
) -> None:
    f1 = scores[condition]
    assert f1["cascade"] > f1["energy"], f1


@pytest.mark.parametrize("condition", ["white 0 dB", "pink 0 dB"])
def test_silero_beats_webrtcvad_in_loud_noise(
    scores: dict[str, dict[str, float]], condition: str
) -> None:
    f1 = scores[condition]
    assert f1["silero"] > f1["webrtcvad"], f1


def _speech_items(corpus: Any) -> list[rm.AudioBuffer]:
    from benchmarks import vad_accuracy as bench

    items = []
    for index, recording in enumerate(corpus[:3]):
        x = bench.noisy(recording, bench.Condition("white", 10.0), (0, index))
        stereo = np.stack([x, x], axis=1)  # a stereo file: the nodes downmix it
        items.append(rm.AudioBuffer.from_numpy(stereo, 16000))
    return items


def test_silero_and_the_cascade_on_ray_equal_the_local_runtime(
    ray_session: None, corpus: Any
) -> None:
    m = manifest(
        [
            ("silero", "SileroVADNode", {"threshold": 0.5}),
            (
                "cascade",
                "VADNode",
                {"threshold": -60.0, "noise_floor_percentile": 20, "refine": "silero"},
            ),
        ],
        [],
    )
    items = _speech_items(corpus)
    with rm.Pipeline(m, runtime="local") as p:
        local = list(p.map(items))
    with rm.Pipeline(m, runtime="ray", batch_size=2) as p:
        remote = list(p.map(items))
    assert [r.item_id for r in remote] == [r.item_id for r in local]
    assert remote == local
    for result in remote:
        assert result["silero"], "the Silero node found no speech"
        assert result["cascade"], "the cascade found no speech"


def test_the_dataset_job_runs_the_refined_example_manifest_on_ray(
    ray_session: None, corpus: Any, tmp_path: Path
) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    for index, item in enumerate(_speech_items(corpus)):
        sf.write(inputs / f"rec{index}.wav", item.to_numpy(), 16000, subtype="PCM_16")
    code, _, stderr = run_cli(
        "run", str(EXAMPLE), "-i", str(inputs), "-o", str(tmp_path / "out"),
        "--runtime", "ray", "--batch-size", "2",
    )  # fmt: skip
    assert code == 0, stderr
    vad = sink_table(tmp_path / "out", "vad")
    assert ids_exactly_once(vad) == ["rec0.wav", "rec1.wav", "rec2.wav"]
    for row in vad.to_pylist():
        assert row["segments"], row["id"]
        assert all(0.0 <= s["confidence"] <= 1.0 for s in row["segments"])
