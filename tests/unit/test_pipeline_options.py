"""Pipeline options are checked when they are given (no Ray is started here)."""

from __future__ import annotations

import sys
from typing import Any

import pytest

import remotemedia_ray as rm
from remotemedia_ray._runtime.plan import PipelinePlan
from remotemedia_ray._runtime.pools import plan_pools
from remotemedia_ray._runtime.ray_cluster import pool_actor_options
from remotemedia_ray._runtime.ray_executor import RayExecutor

LINEAR = {
    "version": "v1",
    "metadata": {"name": "options"},
    "nodes": [
        {"id": "mul", "node_type": "MultiplyNode", "params": {"factor": 3}},
        {"id": "add", "node_type": "AddNode", "params": {"addend": 1}},
    ],
    "connections": [{"from": "mul", "to": "add"}],
}


def ray_started() -> bool:
    ray = sys.modules.get("ray")
    return ray is not None and ray.is_initialized()


def test_a_typo_raises_at_construction_naming_the_option_and_the_known_ones() -> None:
    ray_was_up = ray_started()  # another test of this session may have started one
    with pytest.raises(rm.ConfigError) as info:
        rm.Pipeline(LINEAR, runtime="ray", batch_sise=3)
    text = str(info.value)
    assert "unknown Ray option 'batch_sise' (did you mean 'batch_size'?)" in text
    assert "known options: batch_size, max_batch_size, max_in_flight," in text
    assert isinstance(info.value, ValueError)
    assert ray_started() == ray_was_up


@pytest.mark.parametrize(
    ("options", "needle"),
    [
        ({"batch_size": 0}, "Ray option 'batch_size': Input should be greater than or equal to 1"),
        ({"max_in_flight": -1}, "Ray option 'max_in_flight': Input should be greater than or"),
        ({"fused_replicas": 0}, "Ray option 'fused_replicas'"),
        ({"ready_timeout_s": 0}, "Ray option 'ready_timeout_s': Input should be greater than 0"),
        ({"cleanup_timeout_s": float("nan")}, "Ray option 'cleanup_timeout_s'"),
        ({"object_store_memory": 1024}, "Ray option 'object_store_memory'"),
        ({"expected_items": -5}, "Ray option 'expected_items'"),
    ],
)
def test_out_of_range_options_raise_naming_the_field(options: dict[str, Any], needle: str) -> None:
    with pytest.raises(rm.ConfigError, match=needle):
        rm.Pipeline(LINEAR, runtime="ray", **options)
    with pytest.raises(rm.ConfigError, match=needle):
        rm.RayOptions(**options)


@pytest.mark.parametrize(
    ("options", "needle"),
    [
        ({"batch_size": "3"}, "Ray option 'batch_size': Input should be a valid integer, got '3'"),
        ({"batch_size": 2.0}, "Ray option 'batch_size': Input should be a valid integer"),
        ({"max_in_flight": True}, "Ray option 'max_in_flight': Input should be a valid integer"),
        ({"fuse": "yes"}, "Ray option 'fuse': Input should be a valid boolean"),
        ({"ready_timeout_s": "10"}, "Ray option 'ready_timeout_s': Input should be a valid number"),
    ],
)
def test_wrong_types_raise_naming_the_field(options: dict[str, Any], needle: str) -> None:
    with pytest.raises(rm.ConfigError, match=needle):
        rm.Pipeline(LINEAR, runtime="ray", **options)


def test_every_bad_option_is_named_at_once() -> None:
    with pytest.raises(rm.ConfigError) as info:
        rm.RayOptions(batch_size=0, fuze=True)
    assert "'batch_size'" in str(info.value) and "'fuze' (did you mean 'fuse'?)" in str(info.value)


def test_defaults_are_unchanged() -> None:
    ray_was_up = ray_started()
    options = rm.RayOptions()
    assert options.model_dump() == {
        "batch_size": None,
        "max_batch_size": 32,
        "max_in_flight": None,
        "ready_timeout_s": 120.0,
        "cleanup_timeout_s": 30.0,
        "num_cpus": None,
        "object_store_memory": None,
        "fuse": False,
        "fused_replicas": None,
        "wait_for_resources": False,
        "expected_items": None,
    }
    pipeline = rm.Pipeline(LINEAR, runtime="ray")
    assert pipeline.options == options
    executor = RayExecutor(pipeline._plan, options=pipeline.options)  # nothing starts yet
    assert (executor.batch_size, executor.max_in_flight) == (8, 4)
    assert ray_started() == ray_was_up


def test_keyword_options_and_a_ray_options_object_give_the_same_pipeline() -> None:
    by_name = rm.Pipeline(LINEAR, runtime="ray", batch_size=2, fuse=True)
    by_object = rm.Pipeline(LINEAR, runtime="ray", options=rm.RayOptions(batch_size=2, fuse=True))
    assert by_name.options == by_object.options == rm.RayOptions(batch_size=2, fuse=True)
    both = rm.Pipeline(
        LINEAR, runtime="ray", options=rm.RayOptions(batch_size=2, fuse=True), batch_size=5
    )
    assert both.options == rm.RayOptions(batch_size=5, fuse=True)  # keywords override
    with pytest.raises(rm.ConfigError, match="Ray option 'batch_size'"):
        rm.Pipeline(LINEAR, runtime="ray", options=rm.RayOptions(batch_size=2), batch_size=0)
    with pytest.raises(rm.ConfigError, match="options must be a RayOptions, got dict"):
        rm.Pipeline(LINEAR, runtime="ray", options={"batch_size": 2})  # type: ignore[arg-type]


def test_ray_options_are_frozen() -> None:
    options = rm.RayOptions(batch_size=2)
    with pytest.raises(ValueError, match="frozen"):
        options.batch_size = 3  # type: ignore[misc]
    assert options.merged(batch_size=3).batch_size == 3 and options.batch_size == 2


def test_local_runtime_with_ray_options_raises_config_error() -> None:
    with pytest.raises(
        rm.ConfigError, match=r"runtime='local' takes no Ray option\(s\): batch_size"
    ):
        rm.Pipeline(LINEAR, runtime="local", batch_size=3)
    with pytest.raises(rm.ConfigError, match="address, fuse"):
        rm.Pipeline(LINEAR, runtime="local", address="ray://x:1", fuse=True)
    with pytest.raises(rm.ConfigError, match="options"):
        rm.Pipeline(LINEAR, runtime="local", options=rm.RayOptions())
    with pytest.raises(rm.ConfigError, match="batch_sise"):
        rm.Pipeline(LINEAR, runtime="local", batch_sise=3)


def test_runtime_and_on_error_are_config_errors() -> None:
    with pytest.raises(rm.ConfigError, match="runtime must be 'ray' or 'local', got 'spark'"):
        rm.Pipeline(LINEAR, runtime="spark")  # type: ignore[arg-type]
    with pytest.raises(rm.ConfigError, match="on_error must be 'raise' or 'record', got 'skip'"):
        rm.Pipeline(LINEAR, runtime="local", on_error="skip")  # type: ignore[arg-type]
    with rm.Pipeline(LINEAR, runtime="local") as p:
        with pytest.raises(rm.ConfigError, match="on_error must be"):
            p.map([1.0], on_error="skip")  # type: ignore[arg-type]
        assert list(p.map([1.0], on_error="record")) == [{"add": 4.0}]


def test_a_manifest_of_the_wrong_type_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="manifest must be a Manifest, a path, JSON text or a dict"):
        rm.Pipeline(42, runtime="local")  # type: ignore[arg-type]


def with_nodes(execution: list[dict[str, Any]], capabilities: list[dict[str, Any]]) -> PipelinePlan:
    m = {
        "version": "v1",
        "nodes": [
            {"id": f"n{i}", "node_type": "MultiplyNode", "execution": e, "capabilities": c}
            for i, (e, c) in enumerate(zip(execution, capabilities, strict=True))
        ],
        "connections": [],
    }
    return PipelinePlan.build(rm.Manifest.from_dict(m))


def test_pool_actor_options_take_the_pools_resources_and_the_strictest_restarts() -> None:
    plan = with_nodes(
        [
            {"max_restarts": -1, "max_task_retries": 5, "num_gpus": 0.5},
            {"max_restarts": 2, "num_gpus": 0.5},
        ],
        [{"memory_gb": 1.0}, {"memory_gb": 0.5}],
    )
    (pool,) = plan_pools(plan, fuse=True, cpus=2, gpus=1).pools  # same needs: one pool
    fused = pool_actor_options(pool, plan.nodes.values(), pipeline_id="p", replica=1)
    assert fused == {
        "num_cpus": 1.0,  # two actors (one per 0.5 GPU) share the two CPUs
        "num_gpus": 0.5,
        "memory": int(1.5 * 1024**3),  # every node stays loaded
        "max_restarts": 2,  # the strictest; -1 is "forever"
        "max_task_retries": 3,
        "name": "rm:p:fused:1",
        "max_concurrency": 1,
    }
    layout = plan_pools(plan, fuse=False, cpus=2, gpus=1)
    single = pool_actor_options(
        layout.pool_of("n1"), [plan.nodes["n1"]], pipeline_id="p", replica=0
    )
    assert set(single) == set(fused)  # the same defaults for both kinds of actor
    assert (single["num_gpus"], single["max_restarts"], single["name"]) == (0.5, 2, "rm:p:n1:0")
    assert single["memory"] == int(0.5 * 1024**3)
