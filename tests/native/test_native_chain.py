"""The fused native chain: consecutive native nodes run in one native call.

A batch run with chains (one call per item, or per batch where a batching node
makes the batch run node by node) must give exactly what the same executor
gives node by node: every output bit for bit, every failure naming the same
node with the same message, on generated pipelines and inputs (empty,
one-sample, multi-channel, every format, extreme and non-finite samples), and
each node's metrics must count its items.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import remotemedia_ray as rm
from remotemedia_ray._runtime.execution import ItemFailure, PipelineOutput
from remotemedia_ray._runtime.local import LocalExecutor
from remotemedia_ray._runtime.plan import PipelinePlan
from remotemedia_ray.audio import AudioChunks, BufferChunks
from remotemedia_ray.nodes.native import NativeChain, chain_link

pytestmark = pytest.mark.skipif(not rm.native_available(), reason="native extension not built")

SPEECH_PREP = rm.Manifest.from_file("examples/speech_prep.json")
CHAINED_TYPES = [
    "ChannelMixNode",
    "ResampleNode",
    "VADNode",
    "FormatConverterNode",
    "MultiplyNode",
    "AddNode",
]


@rm.register_node("TestChainOutsider")
class Outsider(rm.NodeExecutor):
    """A Python node: the frame count of its audio; fails on audio of 3 frames."""

    def initialize(self, params: Mapping[str, Any]) -> None:
        pass

    def execute(self, input: Any) -> int:
        if input.num_frames == 3:
            raise ValueError("three frames are refused")
        return int(input.num_frames)


@rm.register_node("TestChainBatched")
class Batched(rm.NodeExecutor):
    """A node that batches (``execute_many``): its audio as it is."""

    def initialize(self, params: Mapping[str, Any]) -> None:
        pass

    def execute(self, input: Any) -> Any:
        return input

    def execute_many(self, inputs: Sequence[Any]) -> list[Any]:
        return list(inputs)


@rm.register_node("TestChainToChunks")
class ToChunks(rm.NodeExecutor):
    """Serves its audio as chunks of 2 frames (as a reader of long files does)."""

    def initialize(self, params: Mapping[str, Any]) -> None:
        pass

    def execute(self, input: Any) -> Any:
        return BufferChunks(input, 2)


@contextlib.contextmanager
def executors(
    manifest: rm.Manifest, **options: Any
) -> Iterator[tuple[LocalExecutor, LocalExecutor]]:
    """The manifest's executor with chains and without, started, closed afterwards."""
    plan = PipelinePlan.build(manifest, "auto")
    fused = LocalExecutor(plan, **options)
    plain = LocalExecutor(plan, native_chains=False, **options)
    fused.start()
    plain.start()
    try:
        yield fused, plain
    finally:
        fused.close()
        plain.close()


def count_calls(chain: Any) -> list[int]:
    """The sizes of the calls into ``chain``'s native chain from now on."""
    calls: list[int] = []
    run = chain.native.run

    def spy(values: Any) -> Any:
        calls.append(len(values))
        return run(values)

    chain.native.run = spy
    return calls


def batching_first(manifest: rm.Manifest, first: str) -> rm.Manifest:
    """``manifest`` behind a batching node feeding ``first``: batches run node by node."""
    return manifest_of(
        [{"id": "model", "node_type": "TestChainBatched"}]
        + [n.model_dump(exclude_none=True) for n in manifest.nodes],
        [("model", first)] + [(c.from_, c.to) for c in manifest.connections],
    )


def assert_same(
    got: list[PipelineOutput | ItemFailure], want: list[PipelineOutput | ItemFailure]
) -> None:
    assert [type(r) for r in got] == [type(r) for r in want]
    for a, b in zip(got, want, strict=True):
        assert a.item_id == b.item_id
        if isinstance(b, ItemFailure):
            assert isinstance(a, ItemFailure)
            assert (a.node_id, type(a.error), str(a.error)) == (
                b.node_id,
                type(b.error),
                str(b.error),
            )
            continue
        assert isinstance(a, PipelineOutput)
        assert set(a) == set(b)
        for key, value in b.items():
            got = a[key]
            if isinstance(value, AudioChunks):  # compare what they serve
                got, value = got.read_all(), value.read_all()
            if isinstance(value, rm.AudioBuffer):
                x, y = got.to_numpy_2d(), value.to_numpy_2d()
                assert got.sample_rate == value.sample_rate, key
                assert x.dtype == y.dtype and x.shape == y.shape, key
                assert x.tobytes() == y.tobytes(), key
            else:
                assert got == value, key


def counts(executor: LocalExecutor) -> dict[str, tuple[int, int, int]]:
    """Each node's items done, failed and retried."""
    return {m.node_id: (m.items, m.items_failed, m.retry_count) for m in executor.node_metrics()}


def test_speech_prep_runs_as_one_chain_keeping_what_leaves_it() -> None:
    with executors(SPEECH_PREP) as (fused, plain):
        [chain] = fused.chains
        assert chain.nodes == ("mono", "resample", "vad", "pcm16")
        assert chain.keep == ("vad", "pcm16")
        assert plain.chains == []
        calls = count_calls(chain)
        rng = np.random.default_rng(3)
        items = [
            (f"f{k}", rm.AudioBuffer.from_numpy(x, 48000))
            for k, x in enumerate(
                [
                    (rng.standard_normal((48000, 2)) * 3000).astype(np.int16),
                    (rng.standard_normal((4800, 1)) * 0.1).astype(np.float32),
                    np.zeros((0, 2), np.int16),
                    np.zeros((1, 1), np.float64),
                ]
            )
        ]
        assert_same(fused.run_batch(items), plain.run_batch(items))
        assert calls == [1, 1, 1, 1]  # one call per item for all four nodes
        counts = {m.node_id: m.items for m in fused.node_metrics()}
        assert counts == {"mono": 4, "resample": 4, "vad": 4, "pcm16": 4}
        assert all(m.execution_time_us > 0 for m in fused.node_metrics() if m.node_id != "mono")


def manifest_of(nodes: list[dict[str, Any]], connections: list[tuple[str, str]]) -> rm.Manifest:
    return rm.Manifest.from_dict(
        {
            "version": "v1",
            "metadata": {"name": "chain"},
            "nodes": nodes,
            "connections": [{"from": a, "to": b} for a, b in connections],
        }
    )


@st.composite
def pipelines(draw: st.DrawFn) -> rm.Manifest:
    """A random tree of chainable nodes (and sometimes a Python node, a batching
    node or one serving chunks) over one input; a node may read any earlier node."""
    count = draw(st.integers(1, 6))
    nodes: list[dict[str, Any]] = [
        {"id": "in", "node_type": "MultiplyNode", "params": {"factor": 1.0}}
    ]
    earlier = ["in"]
    connections: list[tuple[str, str]] = []
    for i in range(count):
        kind = draw(
            st.sampled_from(
                [*CHAINED_TYPES, "TestChainOutsider", "TestChainBatched", "TestChainToChunks"]
            )
        )
        params: dict[str, Any] = {}
        if kind == "ChannelMixNode":
            params = draw(
                st.sampled_from(
                    [{}, {"mode": "select", "channel": 0}, {"mode": "select", "channel": 1}]
                )
            )
        elif kind == "ResampleNode":
            params = {
                "target_rate": draw(st.sampled_from([8000, 16000, 22050])),
                "quality": draw(st.sampled_from(["low", "high"])),
            }
        elif kind == "VADNode":
            params = draw(
                st.sampled_from(
                    [
                        {},
                        {"threshold": -60.0, "noise_floor_percentile": 20, "hangover_ms": 90},
                        {"sample_rate": 16000},
                    ]
                )
            )
        elif kind == "FormatConverterNode":
            params = {"target_format": draw(st.sampled_from(["f32", "f64", "i16", "i32"]))}
        elif kind == "MultiplyNode":
            params = {"factor": draw(st.sampled_from([0.5, 2.0, -1.0, 1e30]))}
        elif kind == "AddNode":
            params = {"addend": draw(st.sampled_from([0.0, 0.25, -3.0]))}
        node_id = f"n{i}"
        nodes.append({"id": node_id, "node_type": kind, "params": params})
        connections.append((draw(st.sampled_from(earlier)), node_id))
        earlier.append(node_id)
    return manifest_of(nodes, connections)


@st.composite
def inputs(draw: st.DrawFn) -> list[tuple[str, rm.AudioBuffer]]:
    items = []
    for k in range(draw(st.integers(1, 5))):
        dtype = draw(st.sampled_from([np.float32, np.float64, np.int16, np.int32]))
        frames = draw(st.sampled_from([0, 1, 3, 160, 2000]))
        channels = draw(st.integers(1, 3))
        rng = np.random.default_rng(draw(st.integers(0, 2**16)))
        if np.dtype(dtype).kind == "f":
            gain = draw(st.sampled_from([0.0, 1e-4, 0.3, 1.0, 1e30]))
            x = (rng.standard_normal((frames, channels)) * gain).astype(dtype)
            if frames and draw(st.booleans()):
                x.flat[draw(st.integers(0, x.size - 1))] = draw(
                    st.sampled_from([np.nan, np.inf, -np.inf])
                )
        else:
            info = np.iinfo(dtype)
            x = rng.integers(info.min, info.max, (frames, channels), dtype=dtype, endpoint=True)
        rate = draw(st.sampled_from([8000, 16000, 44100, 48000]))
        items.append((f"item{k}", rm.AudioBuffer.from_numpy(x, rate)))
    return items


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(manifest=pipelines(), batches=st.lists(inputs(), min_size=1, max_size=2))
def test_chains_give_what_the_nodes_give_one_by_one(
    manifest: rm.Manifest, batches: list[list[tuple[str, rm.AudioBuffer]]]
) -> None:
    with executors(manifest) as (fused, plain):
        for items in batches:  # a second batch runs on reused buffers
            assert_same(fused.run_batch(items), plain.run_batch(items))
            for item_id, item in items:  # one at a time, as Pipeline.run and map do
                assert_same([fused._outcome(item_id, item)], [plain._outcome(item_id, item)])
        assert counts(fused) == counts(plain)


def test_a_failure_names_the_node_the_node_by_node_path_names() -> None:
    # Execution order: mono, check, gain, pcm. The chain (mono, gain, pcm) runs at
    # mono's place; an input it refuses in gain runs node by node, where the
    # Python node `check`, earlier in execution order, fails first.
    manifest = manifest_of(
        [
            {"id": "mono", "node_type": "ChannelMixNode"},
            {"id": "check", "node_type": "TestChainOutsider"},
            {"id": "gain", "node_type": "MultiplyNode", "params": {"factor": 2.0}},
            {"id": "pcm", "node_type": "FormatConverterNode", "params": {"target_format": "i16"}},
        ],
        [("mono", "check"), ("mono", "gain"), ("gain", "pcm")],
    )
    with executors(manifest) as (fused, plain):
        [chain] = fused.chains
        assert chain.nodes == ("mono", "gain", "pcm")
        assert chain.keep == ("mono", "pcm")  # mono: read by check
        bad = np.array([[0.1], [np.nan], [0.2]], np.float32)  # 3 frames and a NaN
        nan_only = np.array([[0.1], [np.nan]], np.float32)
        items = [
            ("ok", rm.AudioBuffer.from_numpy(np.full((5, 2), 0.25, np.float32), 8000)),
            ("both", rm.AudioBuffer.from_numpy(bad, 8000)),
            ("nan", rm.AudioBuffer.from_numpy(nan_only, 8000)),
        ]
        got, want = fused.run_batch(items), plain.run_batch(items)
        assert_same(got, want)
        assert [getattr(r, "node_id", None) for r in got] == [None, "check", "pcm"]


def test_what_cannot_enter_a_chain_stays_out() -> None:
    manifest = manifest_of(
        [
            {"id": "mono", "node_type": "ChannelMixNode"},
            {"id": "vad", "node_type": "VADNode", "params": {"refine": "silero"}},
            {"id": "merge", "node_type": "AddNode"},
            {"id": "a", "node_type": "MultiplyNode", "params": {"factor": 2.0}},
            {"id": "b", "node_type": "MultiplyNode", "params": {"factor": 3.0}},
        ],
        [("mono", "vad"), ("mono", "a"), ("mono", "b"), ("a", "merge"), ("b", "merge")],
    )
    plan = PipelinePlan.build(manifest, "auto")
    if any(n.cls.__name__ == "NativeVADNode" for n in plan.nodes.values()):
        pytest.importorskip("onnxruntime")
    fused = LocalExecutor(plan)
    fused.start()
    try:
        [chain] = fused.chains
        assert chain.nodes == ("mono", "a", "b")  # not the model's VAD, not a two-input Add
        assert chain_link(fused.runner("vad").executor) is None
        assert chain_link(fused.runner("merge").executor) == ("combine", ("add", 0.0))
    finally:
        fused.close()


def test_only_the_built_in_native_nodes_are_chained() -> None:
    plan = PipelinePlan.build(SPEECH_PREP, "cpython")
    numpy_nodes = LocalExecutor(plan)
    numpy_nodes.start()
    try:
        assert numpy_nodes.chains == []
        assert chain_link(numpy_nodes.runner("resample").executor) is None
    finally:
        numpy_nodes.close()


def test_a_chain_refuses_links_it_cannot_run() -> None:
    with pytest.raises(rm.ConfigError, match="unknown kind"):
        NativeChain([("fft", -1, None)], [True])
    with pytest.raises(rm.ConfigError, match="does not run before it"):
        NativeChain([("mix", 0, None)], [True])
    with pytest.raises(rm.ConfigError, match="keep flags"):
        NativeChain([("mix", -1, None)], [])
    assert not NativeChain.accepts(np.zeros((3, 1), np.float32))
    assert NativeChain.accepts(rm.AudioBuffer.from_numpy(np.zeros((3, 1), np.int16), 8000))


def test_a_batch_that_runs_node_by_node_goes_through_the_chain_in_one_call() -> None:
    manifest = manifest_of(
        [
            {"id": "model", "node_type": "TestChainBatched"},
            {"id": "mono", "node_type": "ChannelMixNode"},
            {"id": "gain", "node_type": "MultiplyNode", "params": {"factor": 0.5}},
            {"id": "pcm", "node_type": "FormatConverterNode", "params": {"target_format": "i16"}},
        ],
        [("model", "mono"), ("mono", "gain"), ("gain", "pcm")],
    )
    with executors(manifest) as (fused, plain):
        [chain] = fused.chains
        calls = count_calls(chain)
        items = [
            (f"i{k}", rm.AudioBuffer.from_numpy(np.full((50 + k, 2), 0.1 * k, np.float32), 8000))
            for k in range(3)
        ]
        items.append(("nan", rm.AudioBuffer.from_numpy(np.full((4, 1), np.nan, np.float32), 8000)))
        got = fused.run_batch(items)
        assert_same(got, plain.run_batch(items))
        assert calls == [4]
        assert isinstance(got[-1], ItemFailure) and got[-1].node_id == "pcm"


def test_a_node_reading_a_vad_is_not_chained_to_it() -> None:
    manifest = manifest_of(
        [
            {"id": "gain", "node_type": "MultiplyNode", "params": {"factor": 2.0}},
            {"id": "vad", "node_type": "VADNode"},
            {"id": "scale", "node_type": "MultiplyNode", "params": {"factor": 3.0}},
        ],
        [("gain", "vad"), ("vad", "scale")],
    )
    with executors(manifest) as (fused, plain):  # starts: the chain is (gain, vad) only
        assert [c.nodes for c in fused.chains] == [("gain", "vad")]
        quiet = rm.AudioBuffer.from_numpy(np.zeros((800, 1), np.float32), 8000)
        loud = rm.AudioBuffer.from_numpy(np.full((800, 1), 0.5, np.float32), 8000)
        items = [("quiet", quiet), ("loud", loud)]
        got = fused.run_batch(items)
        assert_same(got, plain.run_batch(items))
        assert got[0] == {"scale": []}  # no segments: the product of none
        assert counts(fused) == counts(plain)


def test_audio_turning_into_chunks_between_chain_nodes_streams_the_rest() -> None:
    # Order a, p, c, x, b; the chain (a, c, b) runs at a; p serves chunks, so x and
    # what follows stream, without the chain nodes computed already.
    manifest = manifest_of(
        [
            {"id": "a", "node_type": "MultiplyNode", "params": {"factor": 2.0}},
            {"id": "p", "node_type": "TestChainToChunks"},
            {"id": "c", "node_type": "AddNode", "params": {"addend": 1.0}},
            {"id": "x", "node_type": "TestChainOutsider"},
            {"id": "b", "node_type": "MultiplyNode", "params": {"factor": 3.0}},
        ],
        [("a", "p"), ("a", "c"), ("p", "x"), ("c", "b")],
    )
    for batching in (False, True):
        m = batching_first(manifest, "a") if batching else manifest
        with executors(m) as (fused, plain):
            assert [c.nodes for c in fused.chains] == [("a", "c", "b")]
            x = rm.AudioBuffer.from_numpy(np.ones((6, 1), np.float32), 8000)
            items = [("i", x), ("three", rm.AudioBuffer.from_numpy(np.ones((3, 1)), 8000))]
            got = fused.run_batch(items)
            assert_same(got, plain.run_batch(items))
            assert isinstance(got[0], PipelineOutput) and got[0]["x"] == 6
            assert isinstance(got[1], ItemFailure) and got[1].node_id == "x"
            assert_same([fused._outcome("i", x)], [plain._outcome("i", x)])
            assert counts(fused) == counts(plain)


@pytest.mark.parametrize("rate", [2**31, 2**32 - 1])
def test_the_largest_rates_run_as_node_by_node(rate: int) -> None:
    manifest = manifest_of(
        [
            {"id": "a", "node_type": "MultiplyNode", "params": {"factor": 2.0}},
            {"id": "b", "node_type": "AddNode", "params": {"addend": 1.0}},
        ],
        [("a", "b")],
    )
    with executors(manifest) as (fused, plain):
        items = [
            ("ok", rm.AudioBuffer.from_numpy(np.ones((4, 1), np.float32), 8000)),
            ("big", rm.AudioBuffer.from_numpy(np.ones((4, 1), np.float32), rate)),
        ]
        assert_same(fused.run_batch(items), plain.run_batch(items))
        assert_same([fused._outcome("big", items[1][1])], [plain._outcome("big", items[1][1])])


def test_threads_sharing_an_executor_take_turns_in_the_chain() -> None:
    with executors(SPEECH_PREP) as (fused, plain):
        x = rm.AudioBuffer.from_numpy(
            (np.arange(96000).reshape(-1, 2) % 300).astype(np.int16), 48000
        )
        want = plain.run_item("x", x)
        errors: list[BaseException] = []
        results: list[PipelineOutput] = []

        def work() -> None:
            for _ in range(5):
                try:
                    results.append(fused.run_item("x", x))
                except BaseException as exc:
                    errors.append(exc)

        threads = [threading.Thread(target=work) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert len(results) == 20
        for got in results:
            assert_same([got], [want])


def test_breakers_and_metrics_move_as_node_by_node() -> None:
    # `check` (Python) sits between the chain's nodes in execution order: an item it
    # fails never reaches `right`, whose breaker (threshold 2) must then stay as it was.
    manifest = manifest_of(
        [
            {"id": "gain", "node_type": "MultiplyNode", "params": {"factor": 2.0}},
            {"id": "check", "node_type": "TestChainOutsider"},
            {
                "id": "right",
                "node_type": "ChannelMixNode",
                "params": {"mode": "select", "channel": 1},
            },
        ],
        [("gain", "check"), ("gain", "right")],
    )
    mono = rm.AudioBuffer.from_numpy(np.zeros((5, 1), np.float32), 8000)  # right refuses
    stereo3 = rm.AudioBuffer.from_numpy(np.zeros((3, 2), np.float32), 8000)  # check refuses
    stereo = rm.AudioBuffer.from_numpy(np.zeros((5, 2), np.float32), 8000)  # all fine
    items = [("m1", mono), ("s3", stereo3), ("m2", mono), ("s", stereo), ("m3", mono)]
    for batching in (False, True):
        m = batching_first(manifest, "gain") if batching else manifest
        with executors(m, breaker_threshold=2) as (fused, plain):
            if batching:
                assert_same(fused.run_batch(items), plain.run_batch(items))
            for item_id, item in items:
                assert_same([fused._outcome(item_id, item)], [plain._outcome(item_id, item)])
            assert counts(fused) == counts(plain)
            assert fused.runner("right").breaker.state == plain.runner("right").breaker.state


def test_a_closed_executor_runs_no_chain() -> None:
    with executors(SPEECH_PREP) as (fused, plain):
        assert fused.chains
    assert fused.chains == []  # closed
    x = rm.AudioBuffer.from_numpy(np.zeros((480, 1), np.int16), 48000)
    assert_same([fused._outcome("x", x)], [plain._outcome("x", x)])
    assert isinstance(fused._outcome("x", x), ItemFailure)
