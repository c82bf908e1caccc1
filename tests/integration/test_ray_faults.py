"""Faults on Ray: dead actors, lost nodes, retries, failing items, and cleanup.

These tests never use the session's shared Ray: the two that kill processes
(an actor's worker, a whole Ray node) start a Ray of their own each, the rest
share one Ray owned by this module. A shared Ray that was running before is
shut down first and started again afterwards, so later modules still find it.
"""

from __future__ import annotations

import itertools
import os
import signal
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import own_ray

import remotemedia_ray as rm

pytestmark = pytest.mark.slow

RATE = 16_000


# -- user nodes (shipped to the actors by value) -------------------------------------


@rm.register_node("TestFaultsSlowPass")
class SlowPass(rm.NodeExecutor):
    """Passes its input through after ``delay_s``: keeps a stream running long enough."""

    def initialize(self, params: Mapping[str, Any]) -> None:
        self.delay_s = float(params.get("delay_s", 0.05))

    def execute(self, input: Any) -> Any:
        time.sleep(self.delay_s)
        return input


@rm.register_node("TestFaultsFlaky")
class Flaky(rm.NodeExecutor):
    """Raises RetryableError on its first ``fail_times`` calls; then returns the call times."""

    def initialize(self, params: Mapping[str, Any]) -> None:
        self.fail_times = int(params["fail_times"])
        self.calls: list[float] = []

    def execute(self, input: Any) -> Any:
        self.calls.append(time.monotonic())
        if len(self.calls) <= self.fail_times:
            raise rm.RetryableError(f"service busy (call {len(self.calls)})")
        return {"value": input, "calls": list(self.calls)}


@rm.register_node("TestFaultsFailOn")
class FailOn(rm.NodeExecutor):
    """Raises ValueError (not retryable) on the input equal to ``bad``."""

    def initialize(self, params: Mapping[str, Any]) -> None:
        self.bad = float(params["bad"])

    def execute(self, input: Any) -> Any:
        if input == self.bad:
            raise ValueError(f"cannot handle {input!r}")
        return input


@rm.register_node("TestFaultsBadInit")
class BadInit(rm.NodeExecutor):
    """Fails in ``initialize``, as a node whose model file is missing would."""

    def initialize(self, params: Mapping[str, Any]) -> None:
        raise FileNotFoundError("model file weights.bin not found")

    def execute(self, input: Any) -> Any:  # pragma: no cover - never initialized
        return input


@rm.register_node("TestFaultsCleanupMarker")
class CleanupMarker(rm.NodeExecutor):
    """Pass-through that writes a file named after its pid into ``dir`` on cleanup."""

    def initialize(self, params: Mapping[str, Any]) -> None:
        self.dir = Path(params["dir"])

    def execute(self, input: Any) -> Any:
        return input

    def cleanup(self) -> None:
        (self.dir / f"cleaned-{os.getpid()}").write_text("ok")


# -- helpers --------------------------------------------------------------------------


def manifest(
    nodes: list[tuple[str, str, dict[str, Any]]], execution: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """A chain of nodes, in order."""
    return {
        "version": "v1",
        "metadata": {"name": "faults"},
        "nodes": [
            {"id": i, "node_type": t, "params": p, "execution": dict(execution or {})}
            for i, t, p in nodes
        ],
        "connections": [{"from": a[0], "to": b[0]} for a, b in itertools.pairwise(nodes)],
    }


def audio_items(n: int, frames: int = 4_000) -> Iterator[rm.AudioBuffer]:
    """``n`` distinct deterministic mono clips, made lazily."""
    t = np.arange(frames, dtype=np.float32) / RATE
    for i in range(n):
        tone = 0.01 * (i + 1) * np.sin(2 * np.pi * (200 + 10 * i) * t)
        yield rm.AudioBuffer.from_numpy(tone.astype(np.float32), RATE)


def local_outputs(m: Mapping[str, Any], items: Iterable[Any], ids: list[str]) -> list[Any]:
    with rm.Pipeline(m, runtime="local") as p:
        return list(p.map(items, ids=ids))


def node_pids(p: rm.Pipeline) -> dict[str, int]:
    """The worker pid of replica 0 of every node (its readiness probe answers it)."""
    import ray

    pipeline_id = p.pipeline_id
    return {
        node_id: ray.get(ray.get_actor(f"rm:{pipeline_id}:{node_id}:0").ready.remote(), timeout=60)
        for node_id in p.graph.nodes
    }


def live_actor_names(pipeline_id: str) -> list[str]:
    """Named actors of a pipeline (every pipeline: ``""``) not dead: alive, pending, restarting."""
    import ray

    prefix = f"rm:{pipeline_id}:" if pipeline_id else "rm:"
    return sorted(
        a["name"]
        for a in ray.util.list_named_actors(all_namespaces=True)
        if a["name"].startswith(prefix)
    )


def wait_no_live_actors(pipeline_id: str, timeout_s: float = 20.0) -> list[str]:
    """Poll until no actor of the pipeline is left (ending an actor is asynchronous)."""
    deadline = time.monotonic() + timeout_s
    while (left := live_actor_names(pipeline_id)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


def _init_local_ray(num_cpus: int = 2) -> None:
    import ray

    ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, configure_logging=False)


@pytest.fixture(scope="module")
def module_ray() -> Iterator[None]:
    """A Ray for this module's tests that do not kill anything."""
    with own_ray(_init_local_ray):
        yield


# -- a dead actor, a lost node ----------------------------------------------------------

KILL_CHAIN = [
    ("scale", "MultiplyNode", {"factor": 3.0}),
    ("slow", "TestFaultsSlowPass", {"delay_s": 0.04}),
    ("offset", "AddNode", {"addend": 0.25}),
]


def test_killed_actor_is_restarted_and_no_item_is_lost_or_repeated() -> None:
    m = manifest(KILL_CHAIN)
    n = 40
    ids = [f"clip-{i}" for i in range(n)]
    expected = local_outputs(m, audio_items(n), ids)
    with own_ray(_init_local_ray), rm.Pipeline(m, runtime="ray", batch_size=2) as p:
        before = node_pids(p)
        results = []
        stream = p.map(audio_items(n), ids=ids)
        for result in stream:
            results.append(result)
            if len(results) == 4:  # mid-stream: most batches are still to run
                os.kill(before["slow"], signal.SIGKILL)
        after = node_pids(p)
        metrics = p.metrics
    assert after["slow"] != before["slow"], "the slow node's actor was not restarted"
    assert after["scale"] == before["scale"] and after["offset"] == before["offset"]
    assert [r.item_id for r in results] == ids  # each item exactly once, in order
    assert results == expected
    assert p.failures == []
    assert metrics.items == n and metrics.items_failed == 0


def test_actor_dead_for_good_fails_its_items_at_its_node_and_loses_none() -> None:
    m = manifest(KILL_CHAIN)
    m["nodes"][1]["execution"] = {"max_restarts": 0, "max_task_retries": 0}
    n = 40
    ids = [f"clip-{i}" for i in range(n)]
    with (
        own_ray(_init_local_ray),
        rm.Pipeline(m, runtime="ray", batch_size=2, on_error="record") as p,
    ):
        pid = node_pids(p)["slow"]
        results = []
        for result in p.map(audio_items(n), ids=ids):
            results.append(result)
            if len(results) == 4:
                os.kill(pid, signal.SIGKILL)
    failed = [f.item_id for f in p.failures]
    assert sorted([r.item_id for r in results] + failed) == sorted(ids)  # each exactly once
    assert len(failed) >= n - 4 - 2 * 4  # at most max_in_flight batches were done already
    assert {f.node_id for f in p.failures} == {"slow"}
    assert all(isinstance(f.error, rm.NodeExecutionError) for f in p.failures)
    assert all(f.error.item_id == f.item_id for f in p.failures)


def test_removed_node_moves_actors_to_the_head_and_no_item_is_lost_or_repeated() -> None:
    import ray
    from ray.cluster_utils import Cluster

    m = manifest(KILL_CHAIN, execution={"num_cpus": 1})
    n = 40
    ids = [f"clip-{i}" for i in range(n)]
    expected = local_outputs(m, audio_items(n), ids)

    def start_cluster() -> Cluster:
        cluster = Cluster(
            initialize_head=True,
            head_node_args={"num_cpus": 3, "resources": {"head": 1}, "include_dashboard": False},
        )
        try:
            cluster.add_node(num_cpus=3)
            cluster.wait_for_nodes()
            ray.init(address=cluster.address, configure_logging=False)
        except BaseException:
            cluster.shutdown()
            raise
        return cluster

    with own_ray(start_cluster, stop=lambda cluster: cluster.shutdown()) as cluster:
        (worker,) = cluster.worker_nodes

        # Hold every head CPU so the pipeline's three actors (1 CPU each) land on the
        # worker; let go before removing the worker so they can come back on the head.
        @ray.remote(num_cpus=3, resources={"head": 1})
        class HoldHead:
            def ping(self) -> bool:
                return True

        hold = HoldHead.remote()  # type: ignore[attr-defined]
        assert ray.get(hold.ping.remote(), timeout=60)
        with rm.Pipeline(m, runtime="ray", batch_size=2) as p:
            before = node_pids(p)
            ray.kill(hold)
            results = []
            for result in p.map(audio_items(n), ids=ids):
                results.append(result)
                if len(results) == 4:
                    cluster.remove_node(worker)
            after = node_pids(p)
    assert all(after[node] != before[node] for node in before), (before, after)
    assert [r.item_id for r in results] == ids
    assert results == expected
    assert p.failures == []


# -- retries and failing items -----------------------------------------------------------


@pytest.mark.usefixtures("module_ray")
def test_retryable_error_is_retried_with_backoff_and_recovers() -> None:
    policy = rm.RetryPolicy(max_retries=3, initial_backoff_s=0.05, multiplier=2.0)
    m = manifest([("flaky", "TestFaultsFlaky", {"fail_times": 2})])
    with rm.Pipeline(m, runtime="ray", retry_policy=policy) as p:
        out = p.run(7.0, item_id="x")
        metrics = p.metrics.node("flaky")
    assert out.item_id == "x"
    assert out["flaky"]["value"] == 7.0
    calls = out["flaky"]["calls"]
    assert len(calls) == 3  # two failures, then success
    gaps = np.diff(calls)
    assert gaps[0] >= policy.backoff(1) and gaps[1] >= policy.backoff(2), gaps
    assert metrics.retry_count == 2
    assert metrics.status == "success"


@pytest.mark.usefixtures("module_ray")
def test_retryable_error_gives_up_after_max_retries_naming_node_and_item() -> None:
    policy = rm.RetryPolicy(max_retries=2, initial_backoff_s=0.01)
    m = manifest([("flaky", "TestFaultsFlaky", {"fail_times": 10})])
    with rm.Pipeline(m, runtime="ray", retry_policy=policy) as p:
        with pytest.raises(rm.RetryableError) as info:
            p.run(1.0, item_id="stubborn")
        metrics = p.metrics.node("flaky")
    assert (info.value.node_id, info.value.item_id) == ("flaky", "stubborn")
    assert (info.value.attempt, info.value.max_attempts) == (3, 3)
    assert metrics.retry_count == 2
    assert metrics.status == "failed"


FAIL_CHAIN = [
    ("scale", "MultiplyNode", {"factor": 2.0}),
    ("check", "TestFaultsFailOn", {"bad": 6.0}),
    ("offset", "AddNode", {"addend": 1.0}),
]


@pytest.mark.usefixtures("module_ray")
def test_failing_item_is_recorded_and_the_others_are_unaffected() -> None:
    m = manifest(FAIL_CHAIN)
    items = [float(i) for i in range(8)]
    ids = [f"n{i}" for i in range(8)]
    with rm.Pipeline(m, runtime="local", on_error="record") as p:
        expected = list(p.map(items, ids=ids))
    with rm.Pipeline(m, runtime="ray", on_error="record", batch_size=2) as p:
        results = list(p.map(items, ids=ids))
        metrics = p.metrics
    assert results == expected
    assert [r.item_id for r in results] == [i for i in ids if i != "n3"]
    assert [r["offset"] for r in results] == [2 * x + 1 for x in items if x != 3.0]
    (failure,) = p.failures
    assert (failure.item_id, failure.node_id) == ("n3", "check")
    assert isinstance(failure.error, rm.PythonError)
    assert "ValueError: cannot handle 6.0" in str(failure.error)
    assert failure.to_dict()["item_id"] == "n3"
    assert metrics.node("check").status == "failed"
    assert metrics.node("offset").items == 7  # the failed item skipped the node after
    assert metrics.items == 7 and metrics.items_failed == 1


@pytest.mark.usefixtures("module_ray")
def test_failing_item_raises_by_default_naming_node_and_item() -> None:
    m = manifest(FAIL_CHAIN)
    with rm.Pipeline(m, runtime="ray", batch_size=2) as p:
        assert p.run(1.0, item_id="fine") == {"offset": 3.0}
        with pytest.raises(rm.PythonError) as info:
            p.run(3.0, item_id="bad-clip")
        assert (info.value.node_id, info.value.item_id) == ("check", "bad-clip")
        assert "'check'" in str(info.value) and "'bad-clip'" in str(info.value)
        assert isinstance(info.value, RuntimeError)

        seen = []
        with pytest.raises(rm.PythonError) as info:
            for result in p.map([0.0, 1.0, 2.0, 3.0, 4.0], ids=["a", "b", "c", "d", "e"]):
                seen.append(result.item_id)
        assert seen == ["a", "b", "c"]  # in order, up to the failing item
        assert info.value.item_id == "d"


# -- building and cleaning up --------------------------------------------------------------


@pytest.mark.usefixtures("module_ray")
def test_failing_initialize_fails_open_naming_the_node_and_leaves_no_actor() -> None:
    m = manifest([("scale", "MultiplyNode", {}), ("loader", "TestFaultsBadInit", {})])
    p = rm.Pipeline(m, runtime="ray", ready_timeout_s=60)
    with pytest.raises(rm.NodeExecutionError) as info:
        p.open()
    assert info.value.node_id == "loader"
    assert "'loader'" in str(info.value)
    assert "weights.bin not found" in str(info.value)
    assert p.state is rm.PipelineState.FAILED
    # The failed build left no executor to ask for its id: no actor of any pipeline may
    # be left (this module's Ray runs one test at a time, each closing its pipelines).
    assert wait_no_live_actors("") == []


def _cleanup_manifest(tmp_path: Path) -> dict[str, Any]:
    return manifest(
        [
            ("scale", "MultiplyNode", {"factor": 2.0}),
            ("check", "TestFaultsFailOn", {"bad": 6.0}),
            ("marker", "TestFaultsCleanupMarker", {"dir": str(tmp_path)}),
        ]
    )


def _pipeline_id(p: rm.Pipeline) -> str:
    assert p.pipeline_id is not None, "the pipeline is not open on Ray"
    return p.pipeline_id


@pytest.mark.usefixtures("module_ray")
def test_close_cleans_up_and_ends_every_actor(tmp_path: Path) -> None:
    with rm.Pipeline(_cleanup_manifest(tmp_path), runtime="ray") as p:
        assert list(p.map([1.0, 2.0])) == [{"marker": 2.0}, {"marker": 4.0}]
        pipeline_id = _pipeline_id(p)
        assert len(live_actor_names(pipeline_id)) == 3
    assert wait_no_live_actors(pipeline_id) == []
    assert len(list(tmp_path.glob("cleaned-*"))) == 1


@pytest.mark.usefixtures("module_ray")
def test_no_actor_is_left_after_an_error(tmp_path: Path) -> None:
    with (
        pytest.raises(rm.PythonError),
        rm.Pipeline(_cleanup_manifest(tmp_path), runtime="ray") as p,
    ):
        pipeline_id = _pipeline_id(p.open())
        list(p.map([1.0, 2.0, 3.0, 4.0]))
    assert wait_no_live_actors(pipeline_id) == []
    assert len(list(tmp_path.glob("cleaned-*"))) == 1


@pytest.mark.usefixtures("module_ray")
def test_no_actor_is_left_after_keyboard_interrupt_inside_iteration(tmp_path: Path) -> None:
    def items() -> Iterator[float]:
        yield from (1.0, 2.0, 4.0, 5.0, 7.0)
        raise KeyboardInterrupt  # Ctrl-C while the pipeline pulls its next input

    # One batch in flight: the two full batches come back before the third is pulled.
    p = rm.Pipeline(_cleanup_manifest(tmp_path), runtime="ray", batch_size=2, max_in_flight=1)
    pipeline_id = _pipeline_id(p.open())
    seen = []
    with pytest.raises(KeyboardInterrupt):
        for result in p.map(items()):
            seen.append(result["marker"])
    # No close() here: the pipeline closed itself on the way out.
    assert p.state is rm.PipelineState.FAILED
    assert wait_no_live_actors(pipeline_id) == []
    assert len(list(tmp_path.glob("cleaned-*"))) == 1
    assert seen == [2.0, 4.0, 8.0, 10.0]


@pytest.mark.usefixtures("module_ray")
def test_no_actor_is_left_after_keyboard_interrupt_in_the_caller(tmp_path: Path) -> None:
    with (
        pytest.raises(KeyboardInterrupt),
        rm.Pipeline(_cleanup_manifest(tmp_path), runtime="ray", batch_size=2) as p,
    ):
        pipeline_id = _pipeline_id(p.open())
        for i, _ in enumerate(p.map(float(x) for x in range(100) if x != 3)):
            if i == 2:
                raise KeyboardInterrupt
    assert wait_no_live_actors(pipeline_id) == []
    assert len(list(tmp_path.glob("cleaned-*"))) == 1
