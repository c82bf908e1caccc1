"""Pipeline(runtime="local"): data flow, errors, retries, metrics, cleanup, states."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import numpy as np
import pytest
from helpers import manifest

import remotemedia_ray as rm

FAST = rm.RetryPolicy(initial_backoff_s=0.001, max_backoff_s=0.004)
EVENTS: list[tuple[str, str]] = []


@rm.register_node("TestTracked")
class Tracked(rm.NodeExecutor):
    """Records lifecycle events; fails on request."""

    def initialize(self, params: Mapping[str, Any]) -> None:
        self.fail_on = params.get("fail_on")
        self.retryable_failures = params.get("retryable_failures", 0)
        self.interrupt_on = params.get("interrupt_on")
        if params.get("fail_init"):
            raise OSError("device not found")
        EVENTS.append(("initialize", self.node_id or ""))

    def execute(self, input: Any) -> Any:
        if self.retryable_failures:
            self.retryable_failures -= 1
            raise rm.RetryableError("flaky backend")
        if input == self.interrupt_on:
            raise KeyboardInterrupt
        if input == self.fail_on:
            raise ValueError(f"cannot handle {input}")
        return input

    def cleanup(self) -> None:
        EVENTS.append(("cleanup", self.node_id or ""))


@pytest.fixture(autouse=True)
def clear_events() -> None:
    EVENTS.clear()


def run_local(m: dict, item: Any, **kw: Any) -> dict[str, Any]:
    with rm.Pipeline(m, runtime="local", retry_policy=FAST, **kw) as p:
        return dict(p.run(item))


LINEAR = manifest(
    [("mul", "MultiplyNode", {"factor": 3}), ("add", "AddNode", {"addend": 1})], [("mul", "add")]
)


@pytest.mark.parametrize(
    ("item", "expected"),
    [(2, 7.0), (0.5, 2.5), ([1, 2], [4.0, 7.0])],
)
def test_linear_numbers_and_lists(item: Any, expected: Any) -> None:
    assert run_local(LINEAR, item) == {"add": expected}


def test_linear_arrays_keep_dtype() -> None:
    out = run_local(LINEAR, np.array([1.0, 2.0], dtype=np.float32))["add"]
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, [4.0, 7.0])


def test_branching_gives_every_sink() -> None:
    m = manifest(
        [
            ("src", "AddNode", {"addend": 1}),
            ("x2", "MultiplyNode", {"factor": 2}),
            ("x10", "MultiplyNode", {"factor": 10}),
        ],
        [("src", "x2"), ("src", "x10")],
    )
    assert run_local(m, 1) == {"x2": 4.0, "x10": 20.0}


def test_diamond_merges_in_connection_order() -> None:
    m = manifest(
        [
            ("src", "AddNode", {"addend": 1}),
            ("a", "MultiplyNode", {"factor": 2}),
            ("b", "MultiplyNode", {"factor": 3}),
            ("join", "AddNode", {"addend": 0.5}),
        ],
        [("src", "a"), ("src", "b"), ("b", "join"), ("a", "join")],
    )
    assert run_local(m, 1) == {"join": 10.5}  # (1+1)*3 + (1+1)*2 + 0.5


def test_merging_two_sources_each_get_the_input() -> None:
    m = manifest(
        [
            ("a", "MultiplyNode", {"factor": 2}),
            ("b", "AddNode", {"addend": 5}),
            ("prod", "MultiplyNode", {"factor": 1}),
        ],
        [("a", "prod"), ("b", "prod")],
    )
    assert run_local(m, [1, 2]) == {"prod": [12.0, 28.0]}  # [2,4] * [6,7]


def test_fan_in_dict_follows_connection_order_for_user_nodes() -> None:
    @rm.register_node("TestKeys")
    class Keys(rm.NodeExecutor):
        def initialize(self, params: Mapping[str, Any]) -> None:
            pass

        def execute(self, input: Any) -> Any:
            return list(input)

    m = manifest(
        [("z", "AddNode", {}), ("y", "AddNode", {}), ("k", "TestKeys", {})],
        [("y", "k"), ("z", "k")],
    )
    assert run_local(m, 1) == {"k": ["y", "z"]}


def test_cycle_and_self_loop_are_rejected_before_running() -> None:
    cyc = manifest([("a", "AddNode", {}), ("b", "AddNode", {})], [("a", "b"), ("b", "a")])
    with pytest.raises(rm.CycleError) as info:
        rm.Pipeline(cyc, runtime="local")
    assert info.value.nodes == ["a", "b"]
    loop = manifest([("a", "AddNode", {}), ("s", "AddNode", {})], [("a", "s"), ("s", "s")])
    with pytest.raises(rm.CycleError) as info:
        rm.Pipeline(loop, runtime="local")
    assert info.value.nodes == ["s"]


def test_a_node_wired_to_more_or_fewer_parents_than_it_takes_is_refused_at_build() -> None:
    two_into_vad = manifest(
        [("a", "ResampleNode", {}), ("b", "ChannelMixNode", {}), ("v", "VADNode", {})],
        [("a", "v"), ("b", "v")],
    )
    with pytest.raises(
        rm.ManifestError,
        match=r"^\[node 'v'\] VADNode takes exactly 1 input, but it is connected from 2 "
        r"nodes \('a', 'b'\)$",
    ):
        rm.Pipeline(two_into_vad, runtime="local")
    one_into_segment = manifest([("v", "VADNode", {}), ("s", "SegmentNode", {})], [("v", "s")])
    with pytest.raises(rm.ManifestError, match=r"SegmentNode takes exactly 2 inputs.* 1 node"):
        rm.Pipeline(one_into_segment, runtime="local")
    # Merging nodes take any number; a source's input is the caller's.
    fan_in = manifest(
        [
            ("a", "MultiplyNode", {"factor": 1.0}),
            ("b", "MultiplyNode", {"factor": 1.0}),
            ("c", "MultiplyNode", {"factor": 1.0}),
            ("s", "AddNode", {}),
        ],
        [("a", "s"), ("b", "s"), ("c", "s")],
    )
    with rm.Pipeline(fan_in, runtime="local") as pipeline:
        assert pipeline.run(2.0) == {"s": 6.0}
    assert rm.Pipeline(manifest([("s", "SegmentNode", {})], []), runtime="local")


def test_every_bad_node_is_named_at_once_when_built() -> None:
    bad = manifest(
        [
            ("a", "MultiplyNode", {"factor": "x"}),
            ("b", "Nope", {}),
            ("ok", "AddNode", {}),
            ("c", "ResampleNode", {"target_rate": -1}),
        ],
        [],
    )
    with pytest.raises(rm.ManifestError) as info:
        rm.Pipeline(bad, runtime="local")
    lines = str(info.value).splitlines()
    assert lines[0] == "invalid pipeline:"
    assert [line.split("]")[0].strip() for line in lines[1:]] == [
        "[node 'a'",
        "[node 'b'",
        "[node 'c'",
    ]
    assert "unknown node type 'Nope'" in lines[2]


@pytest.mark.parametrize("value", ["rust", "", "CPYTHON"])
def test_a_bad_node_runtime_is_a_config_error_naming_the_option(value: str) -> None:
    with pytest.raises(rm.ConfigError, match=f"^node_runtime must be one of .*got {value!r}$"):
        rm.Pipeline(manifest([("a", "AddNode", {})], []), runtime="local", node_runtime=value)  # type: ignore[arg-type]
    with pytest.raises(rm.ConfigError, match="node_runtime"):
        rm.Pipeline(manifest([], []), runtime="local", node_runtime=value)  # type: ignore[arg-type]


def test_unknown_node_type_and_bad_params_rejected_at_build() -> None:
    with pytest.raises(rm.UnknownNodeType, match=r"^\[node 'x'\] unknown node type 'Foo'"):
        rm.Pipeline(manifest([("x", "Foo", {})], []), runtime="local")
    with pytest.raises(rm.ManifestError, match=r"^\[node 'r'\] unknown param 'rate'$"):
        rm.Pipeline(manifest([("r", "ResampleNode", {"rate": 1})], []), runtime="local")


def test_manifest_from_path_and_json_text(tmp_path: Any) -> None:
    path = tmp_path / "m.json"
    path.write_text(json.dumps(LINEAR))
    with rm.Pipeline(path, runtime="local") as p:
        assert p.run(1) == {"add": 4.0}
    with rm.Pipeline(json.dumps(LINEAR), runtime="local") as p:
        assert p.run(1) == {"add": 4.0}


def test_error_names_node_and_item_and_wraps_python_errors() -> None:
    m = manifest([("a", "AddNode", {}), ("t", "TestTracked", {"fail_on": 3.0})], [("a", "t")])
    with rm.Pipeline(m, runtime="local") as p, pytest.raises(rm.PythonError) as info:
        p.run(3.0, item_id="clip-7")
    err = info.value
    assert err.node_id == "t" and err.item_id == "clip-7"
    assert "ValueError: cannot handle 3.0" in str(err)
    assert "node 't'" in str(err) and "item 'clip-7'" in str(err)
    assert "Traceback" in err.traceback
    assert isinstance(err.__cause__, ValueError)
    assert not err.is_retryable()


def test_bad_input_does_not_kill_the_pipeline() -> None:
    with rm.Pipeline(LINEAR, runtime="local") as p:
        with pytest.raises(rm.MarshalingError) as info:
            p.run("not a number")
        assert info.value.node_id == "mul"
        assert p.state is rm.PipelineState.FAILED
        assert p.run(1) == {"add": 4.0}
        assert p.state is rm.PipelineState.COMPLETE


def test_retryable_errors_are_retried_and_recover() -> None:
    m = manifest([("t", "TestTracked", {"retryable_failures": 2})], [])
    with rm.Pipeline(m, runtime="local", retry_policy=FAST) as p:
        assert p.run(5) == {"t": 5}
        node = p.metrics.node("t")
    assert node.retry_count == 2 and node.status == "success"


def test_retries_give_up_after_max_retries() -> None:
    m = manifest([("t", "TestTracked", {"retryable_failures": 10})], [])
    with rm.Pipeline(m, runtime="local", retry_policy=FAST) as p:
        with pytest.raises(rm.RetryableError) as info:
            p.run(1)
        assert (info.value.attempt, info.value.max_attempts) == (4, 4)
        assert p.metrics.node("t").retry_count == 3


def test_non_retryable_error_fails_at_once() -> None:
    m = manifest([("t", "TestTracked", {"fail_on": 1})], [])
    with rm.Pipeline(m, runtime="local", retry_policy=FAST) as p:
        with pytest.raises(rm.PythonError):
            p.run(1)
        assert p.metrics.node("t").retry_count == 0


def test_record_policy_skips_failed_items_and_keeps_going() -> None:
    m = manifest(
        [("t", "TestTracked", {"fail_on": 2}), ("mul", "MultiplyNode", {"factor": 10})],
        [("t", "mul")],
    )
    with rm.Pipeline(m, runtime="local", on_error="record") as p:
        results = list(p.map([1, 2, 3], ids=["a", "b", "c"]))
        metrics = p.metrics
    assert [(r.item_id, r["mul"]) for r in results] == [("a", 10.0), ("c", 30.0)]
    assert [(f.item_id, f.node_id) for f in p.failures] == [("b", "t")]
    assert p.failures[0].to_dict()["error_type"] == "PythonError"
    assert metrics.items == 2 and metrics.items_failed == 1
    t = metrics.node("t")
    assert t.status == "failed" and t.items == 2 and t.items_failed == 1
    assert t.error is not None and "cannot handle 2" in t.error
    assert metrics.node("mul").status == "success"


def test_map_raise_policy_raises_on_first_failure() -> None:
    m = manifest([("t", "TestTracked", {"fail_on": 2})], [])
    with rm.Pipeline(m, runtime="local") as p:
        seen = []
        with pytest.raises(rm.PythonError) as info:
            for r in p.map([1, 2, 3]):
                seen.append(r["t"])
        assert seen == [1] and info.value.item_id == "1"


def test_metrics_aggregate_over_items_and_summary() -> None:
    m = manifest(
        [
            ("t", "TestTracked", {"fail_on": 99}),
            ("never", "TestTracked", {}),
            ("mul", "MultiplyNode", {"factor": 2}),
        ],
        [("t", "mul"), ("never", "mul")],
    )
    with rm.Pipeline(m, runtime="local", on_error="record") as p:
        list(p.map([99, 99]))
        metrics = p.metrics
    assert metrics.node_count == 3
    assert metrics.node("mul").status == "skipped"  # every item failed upstream
    assert metrics.node("t").status == "failed" and metrics.node("t").items_failed == 2
    assert metrics.total_memory_mb > 0
    assert metrics.summary() == (
        f"Pipeline completed in {metrics.total_time_ms}ms "
        f"(3 nodes, {metrics.total_memory_mb:.2f}MB peak memory)"
    )
    assert type(metrics.total_time_ms) is int and type(metrics.node("t").execution_time_ms) is int
    data = json.loads(metrics.to_json())
    assert set(data["nodes"][0]) >= {
        "node_id",
        "node_type",
        "runtime",
        "execution_time_ms",
        "memory_mb",
        "status",
        "retry_count",
        "error",
    }


def test_audio_seconds_and_realtime_factor() -> None:
    m = manifest([("mul", "MultiplyNode", {"factor": 0.5})], [])
    buf = rm.AudioBuffer.from_numpy(np.zeros(16000, np.float32), 16000)
    with rm.Pipeline(m, runtime="local") as p:
        list(p.map([buf, buf]))
        metrics = p.metrics
    assert metrics.audio_seconds == pytest.approx(2.0)
    assert metrics.realtime_factor is not None and metrics.realtime_factor > 0


def test_cleanup_on_success() -> None:
    m = manifest([("a", "TestTracked", {}), ("b", "TestTracked", {})], [("a", "b")])
    with rm.Pipeline(m, runtime="local") as p:
        p.run(1)
    assert EVENTS == [("initialize", "a"), ("initialize", "b"), ("cleanup", "b"), ("cleanup", "a")]


def test_cleanup_on_error() -> None:
    m = manifest([("a", "TestTracked", {}), ("b", "TestTracked", {"fail_on": 1})], [("a", "b")])
    with pytest.raises(rm.PythonError), rm.Pipeline(m, runtime="local") as p:
        p.run(1)
    assert sorted(e for e in EVENTS if e[0] == "cleanup") == [("cleanup", "a"), ("cleanup", "b")]


def test_cleanup_on_keyboard_interrupt_even_without_context_manager() -> None:
    m = manifest(
        [("a", "TestTracked", {}), ("b", "TestTracked", {"interrupt_on": 2})], [("a", "b")]
    )
    p = rm.Pipeline(m, runtime="local")
    with pytest.raises(KeyboardInterrupt):
        list(p.map([1, 2, 3]))
    assert sorted(e for e in EVENTS if e[0] == "cleanup") == [("cleanup", "a"), ("cleanup", "b")]
    assert p.state is rm.PipelineState.FAILED


def test_failed_initialize_names_node_and_cleans_up_the_others() -> None:
    m = manifest(
        [("ok", "TestTracked", {}), ("bad", "TestTracked", {"fail_init": True})], [("ok", "bad")]
    )
    p = rm.Pipeline(m, runtime="local")
    with pytest.raises(rm.NodeExecutionError, match="node 'bad'.*failed to initialize.*OSError"):
        p.open()
    assert ("cleanup", "ok") in EVENTS
    assert p.state is rm.PipelineState.FAILED


def test_circuit_breaker_opens_after_repeated_failures() -> None:
    m = manifest([("t", "TestTracked", {"fail_on": 0})], [])
    with rm.Pipeline(m, runtime="local", on_error="record") as p:
        list(p.map([0] * 7))
    errors = [type(f.error).__name__ for f in p.failures]
    assert errors == ["PythonError"] * 5 + ["CircuitOpenError"] * 2


def test_states_move_through_the_lifecycle() -> None:
    p = rm.Pipeline(LINEAR, runtime="local")
    assert p.state is rm.PipelineState.IDLE
    with p:
        assert p.state is rm.PipelineState.IDLE
        p.run(1)
        assert p.state is rm.PipelineState.COMPLETE
    with pytest.raises(rm.RemoteMediaError, match="closed"):
        p.run(1)


def test_local_rejects_ray_options() -> None:
    with pytest.raises(rm.ConfigError, match="address"):
        rm.Pipeline(LINEAR, runtime="local", address="ray://x:1")
    with pytest.raises(rm.ConfigError, match="batch_size"):
        rm.Pipeline(LINEAR, runtime="local", batch_size=2)
    with pytest.raises(rm.ConfigError, match="runtime must be"):
        rm.Pipeline(LINEAR, runtime="spark")  # type: ignore[arg-type]


def test_the_pipeline_is_collecting_while_metrics_are_gathered() -> None:
    m = manifest([("gain", "MultiplyNode", {"factor": 2.0})], [])
    with rm.Pipeline(m, runtime="local") as p:
        p.run(1.0)
        assert p.state is rm.PipelineState.COMPLETE
        executor = p._executor
        assert executor is not None
        seen = []
        gather = executor.node_metrics

        def watched() -> list[rm.NodeMetrics]:
            seen.append(p.state)
            return gather()

        executor.node_metrics = watched  # type: ignore[method-assign]
        assert p.metrics.items == 1
        assert seen == [rm.PipelineState.COLLECTING]
        assert p.state is rm.PipelineState.COMPLETE


def test_a_node_that_requires_a_gpu_is_refused_where_there_is_none(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    spec = {
        "version": "v1",
        "nodes": [
            {
                "id": "gain",
                "node_type": "MultiplyNode",
                "params": {"factor": 2.0},
                "capabilities": {"gpu": {"type": "cuda", "required": True}},
            }
        ],
        "connections": [],
    }
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    with pytest.raises(rm.ManifestError, match="node 'gain' needs 1 GPU.* this machine has 0"):
        rm.Pipeline(spec, runtime="local").open()
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")  # one visible: it may run
    with rm.Pipeline(spec, runtime="local") as pipeline:
        assert pipeline.run(3.0)["gain"] == 6.0
    spec["nodes"][0]["capabilities"]["gpu"]["required"] = False  # GPU optional: runs anywhere
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    with rm.Pipeline(spec, runtime="local") as pipeline:
        assert pipeline.run(3.0)["gain"] == 6.0


def test_ids_that_run_out_are_a_config_error_after_the_items_they_named() -> None:
    with rm.Pipeline(LINEAR, runtime="local") as p:
        got = []
        with pytest.raises(rm.ConfigError, match="ids holds 2 id.s. but items has more"):
            for out in p.map([1, 2, 3], ids=["a", "b"]):
                got.append(out.item_id)
        assert got == ["a", "b"]
        assert p.run(1) == {"add": 4.0}


def test_leaving_a_map_early_fails_nothing_and_the_caller_time_is_not_counted() -> None:
    import time

    with rm.Pipeline(LINEAR, runtime="local") as p:
        for out in p.map([1, 2, 3]):
            time.sleep(0.2)  # the caller's own work between items
            if out.item_id == "1":
                break
        assert p.state is rm.PipelineState.IDLE
        assert p.metrics.total_time_ms < 150  # not the 0.4 s spent by the caller
        assert p.run(2) == {"add": 7.0}


def test_items_of_the_wrong_type_do_not_open_the_nodes_circuit_breaker() -> None:
    with rm.Pipeline(LINEAR, runtime="local", on_error="record") as p:
        outs = list(p.map(["text"] * 6 + [1.0]))
    assert [o.item_id for o in outs] == ["6"]
    assert {type(f.error).__name__ for f in p.failures} == {"MarshalingError"}
