"""Pipeline(runtime="ray"): same outputs as local, streaming, zero-copy, metrics, cleanup."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import pytest
import soundfile as sf
from helpers import manifest

import remotemedia_ray as rm
from remotemedia_ray.metrics import millis

pytestmark = pytest.mark.usefixtures("ray_session")

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
# Written by hand from the seed's Rust types (data model section 5).
SEED_SCHEMA = json.loads((EXAMPLES.parent / "tests" / "seed_metrics.schema.json").read_text())


def example_audio() -> list[rm.AudioBuffer]:
    out = []
    for path in sorted((EXAMPLES / "audio").glob("*.*")):
        samples, rate = sf.read(path, dtype="float32", always_2d=True)
        out.append(rm.AudioBuffer.from_numpy(samples, rate))
    return out


def run_both(m: Any, items: list[Any], **ray_options: Any) -> tuple[list[Any], list[Any]]:
    with rm.Pipeline(m, runtime="local") as p:
        local = list(p.map(items))
    with rm.Pipeline(m, runtime="ray", **ray_options) as p:
        remote = list(p.map(items))
    return local, remote


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.json")), ids=lambda p: p.stem)
def test_example_manifests_equal_local(path: Path) -> None:
    audio = example_audio()
    local, remote = run_both(path, audio, batch_size=2)
    assert [r.item_id for r in remote] == [r.item_id for r in local]
    assert remote == local


GRAPHS = {
    "branching": manifest(
        [
            ("src", "AddNode", {"addend": 1}),
            ("x2", "MultiplyNode", {"factor": 2}),
            ("x10", "MultiplyNode", {"factor": 10}),
        ],
        [("src", "x2"), ("src", "x10")],
    ),
    "diamond": manifest(
        [
            ("src", "AddNode", {"addend": 1}),
            ("a", "MultiplyNode", {"factor": 2}),
            ("b", "MultiplyNode", {"factor": 3}),
            ("join", "AddNode", {"addend": 0.5}),
        ],
        [("src", "a"), ("src", "b"), ("b", "join"), ("a", "join")],
    ),
    "merging": manifest(
        [
            ("a", "MultiplyNode", {"factor": 2}),
            ("b", "AddNode", {"addend": 5}),
            ("prod", "MultiplyNode", {"factor": 1}),
        ],
        [("a", "prod"), ("b", "prod")],
    ),
}


@pytest.mark.parametrize("name", sorted(GRAPHS))
@pytest.mark.parametrize("batch_size", [1, 3])
def test_graphs_on_numbers_lists_arrays_equal_local(name: str, batch_size: int) -> None:
    items: list[Any] = [1.0, 2.5, [1, 2, 3], np.arange(4, dtype=np.float32), -3]
    local, remote = run_both(GRAPHS[name], items, batch_size=batch_size)
    assert len(remote) == len(items)
    for a, b in zip(local, remote, strict=True):
        assert a.item_id == b.item_id
        for sink in a:
            np.testing.assert_array_equal(np.asarray(a[sink]), np.asarray(b[sink]))


def test_unordered_map_yields_every_item_once() -> None:
    m = GRAPHS["diamond"]
    with rm.Pipeline(m, runtime="ray", batch_size=2, max_in_flight=3) as p:
        results = list(p.map(range(25), ordered=False))
    assert sorted(int(r.item_id) for r in results) == list(range(25))
    by_id = {int(r.item_id): r["join"] for r in results}
    assert all(by_id[i] == (i + 1) * 5 + 0.5 for i in range(25))


def test_run_returns_sink_outputs_and_raises_item_errors() -> None:
    with rm.Pipeline(GRAPHS["branching"], runtime="ray") as p:
        assert p.run(1.0) == {"x2": 4.0, "x10": 20.0}
        with pytest.raises(rm.MarshalingError) as info:
            p.run("text", item_id="bad-item")
        assert info.value.node_id == "src" and info.value.item_id == "bad-item"
        # Named by its node type, as on the local runtime (an actor unpickles the
        # class without the registry that names it).
        assert " AddNode takes numbers" in str(info.value)
        assert "Native" not in str(info.value)
        assert p.run(2.0) == {"x2": 6.0, "x10": 30.0}


def test_record_policy_keeps_the_other_items() -> None:
    with rm.Pipeline(GRAPHS["diamond"], runtime="ray", on_error="record", batch_size=4) as p:
        results = list(p.map([1.0, "x", 2.0, None, 3.0]))
        metrics = p.metrics
    assert [r.item_id for r in results] == ["0", "2", "4"]
    assert [(f.item_id, f.node_id) for f in p.failures] == [("1", "src"), ("3", "src")]
    assert metrics.items == 3 and metrics.items_failed == 2
    assert metrics.node("src").items_failed == 2
    assert metrics.node("join").items == 3


def placement(array: np.ndarray) -> tuple[str, int]:
    """(file backing the memory, offset in that file) of an array's first byte."""
    address = array.ctypes.data
    with open("/proc/self/maps") as maps:
        for line in maps:
            parts = line.split()
            lo, hi = (int(v, 16) for v in parts[0].split("-"))
            if lo <= address < hi:
                path = parts[5] if len(parts) > 5 else ""
                return path, address - lo + int(parts[2], 16)
    return "", address


@rm.register_node("TestWhereIsMyInput")
class WhereIsMyInput(rm.NodeExecutor):
    """Reports where its input's samples live, and whether a native kernel reads them in place."""

    def initialize(self, params: Mapping[str, Any]) -> None:
        pass

    def execute(self, input: Any) -> Any:
        from remotemedia_ray.nodes import native

        view = input.to_numpy_2d()
        path, offset = placement(view)
        kernel_view = native._kernel_input(view)
        return {
            "pid": os.getpid(),
            "path": path,
            "offset": offset,
            "writeable": bool(view.flags.writeable),
            "kernel_reads_in_place": kernel_view is view
            and native.native_module()._testing.input_address(kernel_view) == view.ctypes.data,
        }


@pytest.mark.skipif(not rm.native_available(), reason="native extension not built")
def test_consumers_read_the_batch_in_the_object_store_without_copies() -> None:
    m = manifest(
        [
            ("gain", "MultiplyNode", {"factor": 0.5}),
            ("left", "TestWhereIsMyInput", {}),
            ("right", "TestWhereIsMyInput", {}),
        ],
        [("gain", "left"), ("gain", "right")],
    )
    x = np.linspace(-1, 1, 200_000, dtype=np.float32)
    with rm.Pipeline(m, runtime="ray", node_runtime="auto") as p:
        out = p.run(rm.AudioBuffer.from_numpy(x, 16000))
    left, right = out["left"], out["right"]
    assert left["pid"] != right["pid"]  # two actors, two processes
    for seen in (left, right):
        assert "plasma" in seen["path"], seen  # the object store's shared memory
        assert seen["writeable"] is False
        assert seen["kernel_reads_in_place"] is True
    # Same file, same offset: both consumers read the one copy the producer wrote.
    assert (left["path"], left["offset"]) == (right["path"], right["offset"])


def test_metrics_are_gathered_from_the_actors() -> None:
    audio = example_audio()
    with rm.Pipeline(EXAMPLES / "speech_prep.json", runtime="ray", batch_size=2) as p:
        list(p.map(audio))
        metrics = p.metrics
    assert metrics.node_count == 4 and metrics.items == len(audio)
    assert metrics.audio_seconds == pytest.approx(sum(a.duration_seconds for a in audio))
    for node in metrics.nodes:
        assert node.status == "success" and node.items == len(audio)
        assert node.memory_mb > 10  # peak RSS of an actor process
        assert node.execution_time_us > 0
        assert node.execution_time_ms == millis(node.execution_time_us)
    expected = "rust_native" if rm.native_available() else "cpython"
    assert {n.runtime for n in metrics.nodes} == {expected}
    assert metrics.summary() == (
        f"Pipeline completed in {metrics.total_time_ms}ms "
        f"(4 nodes, {metrics.total_memory_mb:.2f}MB peak memory)"
    )
    # The seed's types, checked on the JSON text (floats parse as Decimal, so that
    # 5.0 would not pass as an integer).
    data = json.loads(metrics.to_json(), parse_float=Decimal)
    jsonschema.validate(data, SEED_SCHEMA)
    assert all(type(n["execution_time_ms"]) is int for n in data["nodes"])


def alive(names: list[str]) -> list[str]:
    """The named actors Ray can still hand out (a dead actor's name is released)."""
    import ray

    found = []
    for name in names:
        try:
            ray.get_actor(name)
        except ValueError:
            continue
        found.append(name)
    return found


def test_no_actor_outlives_the_pipeline() -> None:
    m = GRAPHS["diamond"]
    with rm.Pipeline(m, runtime="ray") as p:
        p.run(1.0)
        pipeline_id = p.pipeline_id
        assert pipeline_id is not None
        names = [f"rm:{pipeline_id}:{node['id']}:0" for node in m["nodes"]]
        assert alive(names) == names
    assert alive(names) == []


def test_replicas_share_the_work() -> None:
    m = manifest([("n", "TestWhereIsMyInput", {})], [])
    m["nodes"][0]["execution"] = {"replicas": 2}
    buf = rm.AudioBuffer.from_numpy(np.zeros(100, np.float32), 8000)
    with rm.Pipeline(m, runtime="ray", batch_size=1) as p:
        pids = {r["n"]["pid"] for r in p.map([buf] * 6)}
    assert len(pids) == 2


def test_unknown_ray_option_is_rejected_before_anything_starts() -> None:
    with pytest.raises(rm.ConfigError, match="unknown Ray option 'batch_sise'"):
        rm.Pipeline(GRAPHS["diamond"], runtime="ray", batch_sise=3)


@pytest.mark.parametrize("name", sorted(GRAPHS))
def test_fusion_changes_nothing_but_the_placement(name: str) -> None:
    items: list[Any] = [1.0, 2.5, [1, 2, 3], np.arange(4, dtype=np.float32), "bad"]
    with rm.Pipeline(GRAPHS[name], runtime="local", on_error="record") as p:
        local = list(p.map(items))
        local_failures = [(f.item_id, f.node_id) for f in p.failures]
    with rm.Pipeline(
        GRAPHS[name], runtime="ray", on_error="record", fuse=True, fused_replicas=2, batch_size=2
    ) as p:
        fused = list(p.map(items))
        fused_failures = [(f.item_id, f.node_id) for f in p.failures]
        metrics = p.metrics
    assert fused_failures == local_failures
    assert [r.item_id for r in fused] == [r.item_id for r in local]
    for a, b in zip(local, fused, strict=True):
        for sink in a:
            np.testing.assert_array_equal(np.asarray(a[sink]), np.asarray(b[sink]))
    assert metrics.node_count == len(GRAPHS[name]["nodes"])
    assert [n.items for n in metrics.nodes] == [4] * len(metrics.nodes)  # "bad" fails at a source


def test_fused_speech_prep_equals_local() -> None:
    audio = example_audio()
    local, fused = run_both(EXAMPLES / "speech_prep.json", audio, fuse=True, batch_size=1)
    assert fused == local


@pytest.mark.parametrize("fuse", [False, True])
def test_every_call_of_a_batch_in_flight_can_be_cancelled(fuse: bool) -> None:
    import ray

    from remotemedia_ray._runtime.ray_executor import RayExecutor

    m = manifest(
        [("a", "MultiplyNode", {"factor": 2.0}), ("b", "AddNode", {"addend": 1.0})], [("a", "b")]
    )
    with rm.Pipeline(m, runtime="ray", fuse=fuse, fused_replicas=1) as p:
        p.run(1.0)  # builds the actors
        executor = p._executor
        assert isinstance(executor, RayExecutor)
        batch = executor._submit(ray, [("x", 1.0), ("y", 2.0)])
        calls = 1 if fuse else 2  # the fused actor's one call, or one call per node
        assert len(batch.all_refs) == calls
        assert set(batch.sink_refs.values()) <= set(batch.all_refs)
        ray.get(batch.all_refs)


@rm.register_node("TestRayBatched")
class RayBatched(rm.NodeExecutor):
    """Doubles audio; says how many items the call that computed it held."""

    def initialize(self, params: Mapping[str, Any]) -> None:
        pass

    def execute(self, input: Any) -> dict[str, Any]:
        return self.execute_many([input])[0]

    def execute_many(self, inputs: list[Any]) -> list[dict[str, Any]]:
        return [
            {"audio": rm.AudioBuffer.from_numpy(a.to_numpy() * 2, a.sample_rate), "n": len(inputs)}
            for a in inputs
        ]


class BatchSizes:
    """A sink whose record is, per item, the size of the batched call and the samples' sum."""

    node_id = "sizes"

    def write(
        self, outputs: list[Mapping[str, Any]], item_ids: list[str]
    ) -> dict[str, tuple[int, float]]:
        return {
            i: (o["batched"]["n"], float(o["batched"]["audio"].to_numpy().sum()))
            for i, o in zip(item_ids, outputs, strict=True)
        }


@pytest.mark.parametrize("fuse", [True, False], ids=["fused", "unfused"])
def test_a_batching_node_gets_each_batch_in_one_call_on_ray(fuse: bool) -> None:
    m = manifest(
        [("gain", "MultiplyNode", {"factor": 0.5}), ("batched", "TestRayBatched", {})],
        [("gain", "batched")],
    )
    items = [rm.AudioBuffer.from_numpy(np.full(10 + n, n, np.float32), 8000) for n in range(8)]
    ids = [f"i{n}" for n in range(8)]
    with rm.Pipeline(m, runtime="ray", batch_size=4, fuse=fuse) as pipeline:
        records: dict[str, tuple[int, float]] = {}
        for commit in pipeline.write(items, BatchSizes(), ids=ids):
            records.update(commit.record)
    assert sorted(records) == ids
    assert {n for n, _ in records.values()} == {4}
    for n, item_id in enumerate(ids):  # x 0.5, then x 2
        assert records[item_id][1] == pytest.approx(n * (10 + n))


def test_fused_nodes_with_their_own_replicas_run_as_a_pool_of_their_own() -> None:
    m = manifest(
        [
            ("src", "AddNode", {"addend": 1}),
            ("wide", "MultiplyNode", {"factor": 3}),
            ("tail", "AddNode", {"addend": -2}),
            ("side", "MultiplyNode", {"factor": 10}),
        ],
        [("src", "wide"), ("wide", "tail"), ("src", "side")],
    )
    m["nodes"][1]["execution"] = {"replicas": 2}
    items: list[Any] = [1.0, np.arange(3, dtype=np.float32), "bad", 4.0]
    with rm.Pipeline(m, runtime="local", on_error="record") as p:
        local = list(p.map(items))
    with rm.Pipeline(m, runtime="ray", fuse=True, on_error="record", batch_size=1) as p:
        layout = p.plan()
        pooled = list(p.map(items))
        failures = [(f.item_id, f.node_id) for f in p.failures]
        names = [
            f"rm:{p.pipeline_id}:{pool.name}:{r}"
            for pool in layout.pools
            for r in range(pool.replicas)
        ]
        assert alive(names) == names
        metrics = p.metrics
    assert [set(pool.nodes) for pool in layout.pools] == [{"src"}, {"wide"}, {"tail", "side"}]
    assert [pool.replicas for pool in layout.pools][1] == 2
    assert set(layout.pools[2].inputs) == {"wide", "src"}  # the tail reads wide, the side src
    assert failures == [("2", "src")]
    assert [r.item_id for r in pooled] == [r.item_id for r in local]
    for a, b in zip(local, pooled, strict=True):
        for sink in a:
            np.testing.assert_array_equal(np.asarray(a[sink]), np.asarray(b[sink]))
    assert [n.items for n in metrics.nodes] == [3, 3, 3, 3]
    assert alive(names) == []


def test_items_read_before_the_input_raises_still_run_on_ray() -> None:
    def source() -> Any:
        yield 1.0
        yield 2.0
        raise RuntimeError("the source broke")

    got = []
    with rm.Pipeline(GRAPHS["branching"], runtime="ray", batch_size=8) as p:
        with pytest.raises(RuntimeError, match="the source broke"):
            for out in p.map(source()):
                got.append(out["x2"])
        assert got == [4.0, 6.0]  # as the local runtime gives them
        assert p.run(1.0) == {"x2": 4.0, "x10": 20.0}


def test_one_ray_pipeline_serves_threads_one_stream_at_a_time() -> None:
    import threading

    errors: list[BaseException] = []
    results: dict[str, Any] = {}
    with rm.Pipeline(GRAPHS["branching"], runtime="ray") as p:

        def work(t: int) -> None:
            for n in range(5):
                try:
                    results[f"{t}-{n}"] = p.run(float(n), item_id=f"{t}-{n}")
                except BaseException as exc:
                    errors.append(exc)

        threads = [threading.Thread(target=work, args=(t,)) for t in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not errors
        assert results == {
            f"{t}-{n}": {"x2": (n + 1) * 2.0, "x10": (n + 1) * 10.0}
            for t in range(3)
            for n in range(5)
        }
        # Two iterators read in turn by one thread would wait for each other: refused.
        first = p.map([1.0, 2.0])
        assert next(first)["x2"] == 4.0
        with pytest.raises(rm.ConfigError, match="one map/write at a time"):
            next(p.map([3.0]))
        assert [o["x2"] for o in first] == [6.0]
        assert p.metrics.node("src").items == p.metrics.items
