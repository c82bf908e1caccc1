"""SegmentNode: speech cut into utterance clips, and what a node of many outputs per input does."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from helpers import manifest

import remotemedia_ray as rm
from remotemedia_ray.columns import CLIP_COLUMNS, sink_table
from remotemedia_ray.nodes.builtin import BUILTIN_NODES
from remotemedia_ray.nodes.reference import SegmentSettings, segment_bounds

SR = 1000  # one frame per ms keeps the arithmetic readable


def bounds(x: np.ndarray, segments: list[tuple[float, float]], **settings: object) -> list:
    s, e = segment_bounds(
        x,
        SR,
        [a for a, _ in segments],
        [b for _, b in segments],
        SegmentSettings(**settings),  # type: ignore[arg-type]
    )
    return list(zip(s.tolist(), e.tolist(), strict=True))


LOUD = np.full((10_000, 1), 0.5, np.float32)
PLAIN = {"merge_gap_ms": 0.0, "pad_ms": 0.0, "min_s": 0.0, "max_s": 100.0}


def test_segments_become_frames_clamped_to_the_input_and_ordered() -> None:
    got = bounds(
        LOUD, [(3000.4, 3100.6), (-50.0, 20.0), (9990.0, 12000.0), (500.0, 500.2)], **PLAIN
    )
    assert got == [(0, 20), (3000, 3101), (9990, 10000)]  # the empty one is dropped


def test_segments_closer_than_the_gap_merge() -> None:
    segs = [(100.0, 200.0), (299.0, 400.0), (700.0, 800.0)]
    assert bounds(LOUD, segs, **(PLAIN | {"merge_gap_ms": 100.0})) == [(100, 400), (700, 800)]
    assert bounds(LOUD, segs, **(PLAIN | {"merge_gap_ms": 99.0})) == [
        (100, 200),
        (299, 400),
        (700, 800),
    ]


def test_padding_widens_clips_and_joins_those_that_then_overlap() -> None:
    segs = [(100.0, 200.0), (260.0, 300.0), (5000.0, 9980.0)]
    got = bounds(LOUD, segs, **(PLAIN | {"pad_ms": 40.0}))
    assert got == [(60, 340), (4960, 10000)]


def test_a_long_clip_is_split_at_its_quietest_frame() -> None:
    x = LOUD.copy()
    x[2_400:2_420] = 0.0  # a 20 ms pause, within max_s of the start
    got = bounds(x, [(0.0, 4_000.0)], **(PLAIN | {"max_s": 3.0, "split_frame_ms": 20.0}))
    assert got == [(0, 2_410), (2_410, 4_000)]  # cut in the middle of the pause


def test_a_split_keeps_the_first_part_at_least_min_s_long() -> None:
    x = LOUD.copy()
    x[100:120] = 0.0  # the quietest frame is too early to cut at
    x[1_500:1_520] = 0.01
    got = bounds(x, [(0.0, 4_000.0)], **(PLAIN | {"max_s": 3.0, "min_s": 1.0}))
    assert got[0] == (0, 1_510)


def test_short_clips_are_dropped_or_merged_into_the_nearer_neighbour() -> None:
    segs = [(100.0, 1_300.0), (1_400.0, 1_500.0), (3_000.0, 4_500.0)]
    short = {"min_s": 1.0, "max_s": 10.0, "merge_gap_ms": 0.0, "pad_ms": 0.0}
    assert bounds(LOUD, segs, **short) == [(100, 1_300), (3_000, 4_500)]
    assert bounds(LOUD, segs, **(short | {"short": "merge"})) == [(100, 1_500), (3_000, 4_500)]
    # nearer to the next one: joins it
    segs = [(100.0, 1_300.0), (2_800.0, 2_900.0), (3_000.0, 4_500.0)]
    assert bounds(LOUD, segs, **(short | {"short": "merge"})) == [(100, 1_300), (2_800, 4_500)]
    # a merge that would pass max_s is not made
    assert bounds(LOUD, segs, **(short | {"short": "merge", "max_s": 1.6})) == [
        (100, 1_300),
        (3_000, 4_500),
    ]


def test_no_speech_gives_no_clips_and_empty_audio_is_fine() -> None:
    assert bounds(LOUD, []) == []
    assert bounds(np.zeros((0, 2), np.int16), [(0.0, 100.0)]) == []


@pytest.mark.parametrize(
    ("segments", "needle"),
    [([(float("nan"), 1.0)], "segment 0"), ([(1.0, 2.0), (3.0, float("inf"))], "segment 1")],
)
def test_non_finite_segment_bounds_are_named(
    segments: list[tuple[float, float]], needle: str
) -> None:
    with pytest.raises(rm.AudioFormatError, match=needle):
        bounds(LOUD, segments)


def _node(**params: object) -> rm.NodeExecutor:
    node = BUILTIN_NODES["SegmentNode"]()
    node.node_id = "cut"
    node.initialize(params)
    return node


def test_the_node_takes_audio_and_segments_and_gives_clips_of_its_audio() -> None:
    x = np.arange(16000 * 4, dtype=np.int16).reshape(-1, 1)
    audio = rm.AudioBuffer.from_numpy(x, 16000)
    segments = [{"start_ms": 500.0, "end_ms": 2_000.0, "energy_db": -10.0, "confidence": 1.0}]
    clips = _node(pad_ms=0, min_s=0.5).execute({"vad": segments, "audio": audio})
    assert isinstance(clips, rm.Clips) and len(clips) == 1
    [clip] = clips
    assert (clip.start_s, clip.end_s) == (0.5, 2.0)
    np.testing.assert_array_equal(clip.value.to_numpy_2d(), x[8000:32000])


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        (rm.AudioBuffer.from_numpy(np.zeros((10, 1), np.float32), 16000), "two inputs"),
        ({"a": [], "b": []}, "one audio input and one list"),
        (
            {
                "a": rm.AudioBuffer.from_numpy(np.zeros((10, 1), np.float32), 16000),
                "vad": [{"start_ms": 0.0}],
            },
            "segment 0 from 'vad'",
        ),
    ],
)
def test_the_node_names_what_is_wrong_with_its_inputs(value: object, needle: str) -> None:
    with pytest.raises(rm.MarshalingError, match=needle):
        _node().execute(value)


def test_params_are_checked_when_the_manifest_is_loaded() -> None:
    with pytest.raises(rm.ManifestError, match="min_s"):
        _node(min_s=5.0, max_s=2.0)
    with pytest.raises(rm.ManifestError, match="short"):
        _node(short="keep")


UTTERANCES = manifest(
    [
        ("mono", "ChannelMixNode", {}),
        ("vad", "VADNode", {"threshold": -30.0}),
        ("cut", "SegmentNode", {"pad_ms": 0, "min_s": 0.2, "merge_gap_ms": 50}),
        ("gain", "MultiplyNode", {"factor": 0.5}),
        ("pcm", "FormatConverterNode", {"target_format": "i16"}),
    ],
    [("mono", "vad"), ("mono", "cut"), ("vad", "cut"), ("cut", "gain"), ("gain", "pcm")],
)


def _bursts() -> rm.AudioBuffer:
    x = np.zeros((16000 * 3, 1), np.float32)
    x[8000:16000] = 0.5  # 0.5-1.0 s
    x[32000:40000] = -0.25  # 2.0-2.5 s
    return rm.AudioBuffer.from_numpy(x, 16000)


@pytest.mark.parametrize("node_runtime", ["cpython", "rust_native"])
def test_nodes_after_the_cutter_run_once_per_clip(node_runtime: str) -> None:
    if node_runtime == "rust_native" and not rm.native_available():
        pytest.fail("the native extension is not built (make build)")
    with rm.Pipeline(UTTERANCES, runtime="local", node_runtime=node_runtime) as pipeline:
        out = pipeline.run(_bursts(), item_id="talk.wav")
    clips = out["pcm"]
    assert [(c.start_s, c.end_s) for c in clips] == [(0.48, 1.02), (1.98, 2.52)]
    values = [np.unique(c.value.to_numpy()) for c in clips]
    assert [set(v.tolist()) for v in values] == [{0, 8192}, {-4096, 0}]  # x0.5, then int16


def test_merging_clips_with_other_inputs_is_refused_clearly() -> None:
    spec = manifest(
        [
            ("mono", "ChannelMixNode", {}),
            ("vad", "VADNode", {"threshold": -30.0}),
            ("cut", "SegmentNode", {"pad_ms": 0, "min_s": 0.2}),
            ("mix", "AddNode", {}),
        ],
        [("mono", "vad"), ("mono", "cut"), ("vad", "cut"), ("cut", "mix"), ("mono", "mix")],
    )
    with (
        rm.Pipeline(spec, runtime="local") as pipeline,
        pytest.raises(rm.MarshalingError, match="some are clips"),
    ):
        pipeline.run(_bursts(), item_id="talk.wav")


def test_a_clip_sink_gives_a_row_per_clip_with_its_parent_and_bounds() -> None:
    audio = rm.AudioBuffer.from_numpy(np.zeros((100, 1), np.int16), 1000)
    rows = [
        ("a.wav", rm.Clips((rm.Clip(audio, 0.0, 0.1), rm.Clip(audio, 0.2, 0.3)))),
        ("b.wav", rm.Clips()),
        ("c.wav", rm.Clips((rm.Clip(audio, 1.0, 1.1),))),
    ]
    table = sink_table(rows)
    assert table.column_names[:4] == ["id", *CLIP_COLUMNS]
    assert table.column("id").to_pylist() == ["a.wav/0", "a.wav/1", "c.wav/0"]
    assert table.column("parent_id").to_pylist() == ["a.wav", "a.wav", "c.wav"]
    assert table.column("start_s").to_pylist() == [0.0, 0.2, 1.0]
    assert table.schema.field("audio").type == pa.large_list(pa.int16())
    with pytest.raises(rm.AudioFormatError, match="mix clips"):
        sink_table([*rows, ("d.wav", audio)])
