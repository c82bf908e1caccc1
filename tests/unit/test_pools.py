"""The pools a pipeline runs in on Ray (no Ray): fusion by resource needs, the sizes
and reasons shown by ``Pipeline.plan()``, and batches passed from pool to pool
through the actors' classes giving the local runtime's outputs."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

import remotemedia_ray as rm
from remotemedia_ray._runtime.actors import FusedActor, NodeActor
from remotemedia_ray._runtime.batches import BatchItem, decode_batch, encode_batch
from remotemedia_ray._runtime.local import LocalExecutor
from remotemedia_ray._runtime.plan import PIPELINE_INPUT, PipelinePlan
from remotemedia_ray._runtime.pools import PoolLayout, plan_pools
from remotemedia_ray._runtime.retry import RetryPolicy

GPU = {"gpu": {"type": "cuda", "required": True}}
NO_RETRY = RetryPolicy(max_retries=0)


def manifest(
    nodes: list[tuple[str, str, dict[str, Any]]],
    connections: list[tuple[str, str]],
    **extra: dict[str, Any],
) -> rm.Manifest:
    """``nodes``: (id, node_type, params); ``extra``: per node id, more of its manifest keys."""
    return rm.Manifest.from_dict(
        {
            "version": "v1",
            "nodes": [
                {"id": i, "node_type": t, "params": p, **extra.get(i, {})} for i, t, p in nodes
            ],
            "connections": [{"from": a, "to": b} for a, b in connections],
        }
    )


def chain(**extra: dict[str, Any]) -> rm.Manifest:
    """double -> plus -> gpu -> times -> minus (gpu: a GPU node unless ``extra`` says)."""
    names = ["double", "plus", "gpu", "times", "minus"]
    types = [
        ("MultiplyNode", {"factor": 2.0}),
        ("AddNode", {"addend": 1.0}),
        ("MultiplyNode", {"factor": -1.0}),
        ("MultiplyNode", {"factor": 3.0}),
        ("AddNode", {"addend": -4.0}),
    ]
    extra = {"gpu": {"capabilities": GPU}, **extra}
    return manifest(
        [(n, t, p) for n, (t, p) in zip(names, types, strict=True)],
        list(itertools.pairwise(names)),
        **extra,
    )


def layout(m: rm.Manifest, *, fuse: bool = True, cpus: float = 4, gpus: float = 0) -> PoolLayout:
    return plan_pools(PipelinePlan.build(m, "cpython"), fuse=fuse, cpus=cpus, gpus=gpus)


def test_cpu_nodes_with_default_needs_fuse_into_one_pool_of_one_actor_per_cpu() -> None:
    m = chain(gpu={})
    (pool,) = layout(m, cpus=3).pools
    assert (pool.name, pool.nodes, pool.replicas, pool.num_cpus) == (
        "fused",
        ("double", "plus", "gpu", "times", "minus"),
        3,
        1.0,
    )
    assert (pool.inputs, pool.outputs, pool.num_gpus, pool.fused) == (
        (PIPELINE_INPUT,),
        ("minus",),
        0.0,
        True,
    )
    assert "default CPU needs" in pool.reason and "one per CPU" in pool.reason


def test_a_gpu_node_between_cpu_nodes_gets_its_own_pool() -> None:
    pools = layout(chain(), cpus=4, gpus=2).pools
    assert [p.name for p in pools] == ["fused-1", "fused-2", "fused-3"]
    assert [p.nodes for p in pools] == [("double", "plus"), ("gpu",), ("times", "minus")]
    assert [p.inputs for p in pools] == [(PIPELINE_INPUT,), ("plus",), ("gpu",)]
    assert [p.outputs for p in pools] == [("plus",), ("gpu",), ("minus",)]
    assert [p.num_gpus for p in pools] == [0.0, 1.0, 0.0]
    assert [p.replicas for p in pools] == [4, 2, 4]  # a CPU pool per CPU, a GPU pool per GPU
    assert [p.num_cpus for p in pools] == [0.4, 0.4, 0.4]  # ten actors share four CPUs
    assert "1 GPU per actor" in pools[1].reason and "one per 1 GPU" in pools[1].reason


def test_a_gpu_pool_on_a_cluster_without_gpus_plans_one_actor_and_says_why() -> None:
    pool = layout(chain(), gpus=0).pool_of("gpu")
    assert pool.replicas == 1
    assert "has 0 GPU(s), fewer than it needs" in pool.reason
    assert "wait_for_resources" in pool.reason


def test_own_replicas_or_cpus_split_pools_and_equal_needs_fuse_again() -> None:
    m = chain(
        gpu={"execution": {"replicas": 3}},  # no GPU capability here: its own replicas
        times={"execution": {"replicas": 3}},
        plus={"execution": {"num_cpus": 2}},
    )
    pools = layout(m, cpus=4).pools
    assert [p.nodes for p in pools] == [("double",), ("plus",), ("gpu", "times"), ("minus",)]
    assert [p.replicas for p in pools] == [4, 4, 3, 4]
    assert pools[1].num_cpus == 2.0  # what the node asks for, not a share
    assert "2 CPU per actor" in pools[1].reason
    assert "its own replicas (3)" in pools[2].reason and "fused" in pools[2].reason


def test_capability_cores_and_memory_count_as_needs() -> None:
    pools = layout(
        chain(gpu={}, plus={"capabilities": {"cpu": {"cores": 2}, "memory_gb": 1.5}}),
        cpus=4,
    ).pools
    assert [p.nodes for p in pools] == [("double",), ("plus",), ("gpu", "times", "minus")]
    assert (pools[1].num_cpus, pools[1].memory) == (2.0, int(1.5 * 1024**3))


def test_unfused_every_node_is_a_pool_named_after_it() -> None:
    pools = layout(chain(plus={"execution": {"replicas": 2}}), fuse=False, cpus=2, gpus=1).pools
    assert [p.name for p in pools] == ["double", "plus", "gpu", "times", "minus"]
    assert [p.replicas for p in pools] == [1, 2, 1, 1, 1]
    assert all(not p.fused and p.outputs == (p.name,) for p in pools)
    assert [p.num_cpus for p in pools] == [0.33] * 5  # six actors share two CPUs
    assert all("fuse=False" in p.reason for p in pools)


DIAMOND = manifest(
    [
        ("src", "MultiplyNode", {"factor": 1.0}),
        ("left", "MultiplyNode", {"factor": 2.0}),
        ("right", "AddNode", {"addend": 10.0}),
        ("mix", "AddNode", {"addend": 0.0}),
        ("tail", "MultiplyNode", {"factor": 5.0}),
    ],
    [("src", "left"), ("src", "right"), ("left", "mix"), ("right", "mix"), ("mix", "tail")],
    left={"capabilities": GPU},
)


def test_a_diamond_passes_each_node_read_by_a_later_pool_and_keeps_connection_order() -> None:
    plan = PipelinePlan.build(DIAMOND, "cpython")
    pools = plan_pools(plan, fuse=True, cpus=2, gpus=1).pools
    left = next(p for p in pools if p.nodes == ("left",))
    last = pools[-1]
    assert "mix" in last.nodes and last.outputs == ("tail",)
    assert set(last.inputs) <= {"src", "left", "right"}
    assert "left" in last.inputs  # the GPU pool's output goes on to the mix
    assert left.inputs == ("src",)
    seen: set[str] = {PIPELINE_INPUT}  # every pool reads only what came before it
    for pool in pools:
        assert set(pool.inputs) <= seen, pool
        seen.update(pool.nodes)


def run_pools(m: rm.Manifest, items: list[tuple[str, Any]], *, fuse: bool) -> list[Any]:
    """Run ``items`` through the pools' actor classes in this process, batch tables
    handed from pool to pool as the Ray executor does; the sinks' values per item."""
    plan = PipelinePlan.build(m, "cpython")
    refs: dict[str, Any] = {PIPELINE_INPUT: encode_batch([BatchItem(i, v) for i, v in items])}
    for pool in plan_pools(plan, fuse=fuse, cpus=2, gpus=1).pools:
        args = [refs[key] for key in pool.inputs]
        actor: Any
        if pool.fused:
            actor = FusedActor(plan, NO_RETRY, pool)
            out = actor.execute_batch(*args)
            outs = [out] if len(pool.outputs) == 1 else out
        else:
            actor = NodeActor(plan, pool.nodes[0], NO_RETRY)
            outs = [actor.execute_batch(*args)]
        refs.update(zip(pool.outputs, outs, strict=True))
        actor.cleanup()
    sinks = plan.graph.sinks
    per_sink = {s: decode_batch(refs[s]) for s in sinks}
    return [
        {
            s: (row.error.node_id if row.error is not None else row.value)
            for s, row in ((s, per_sink[s][k]) for s in sinks)
        }
        for k in range(len(items))
    ]


def run_local(m: rm.Manifest, items: list[tuple[str, Any]]) -> list[Any]:
    executor = LocalExecutor(PipelinePlan.build(m, "cpython"), retry_policy=NO_RETRY)
    executor.start()
    try:
        return [
            {s: o.error.node_id for s in executor.outputs}
            if isinstance(o, rm.ItemFailure)
            else dict(o)
            for o in executor.run_batch(items)
        ]
    finally:
        executor.close()


@pytest.mark.parametrize("fuse", [True, False], ids=["fused", "unfused"])
@pytest.mark.parametrize("which", ["chain", "diamond"])
def test_batches_through_the_pools_equal_the_local_runtime(
    fuse: bool, which: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")  # as Ray sets it for a GPU actor
    m = chain() if which == "chain" else DIAMOND
    items = [("a", 1.0), ("b", -2.5), ("bad", "text"), ("c", 0.0)]
    got = run_pools(m, items, fuse=fuse)
    assert got == run_local(m, items)
    assert got[2] == {s: "double" if which == "chain" else "src" for s in got[2]}  # failed once


def test_describe_shows_every_pool_and_why() -> None:
    text = layout(chain(), cpus=4, gpus=1).describe()
    lines = text.splitlines()
    assert lines[0] == "runtime ray: 3 pool(s) for 4 CPU(s) and 1 GPU(s)"
    header = ["pool", "nodes", "actors", "CPU/actor", "GPU/actor", "memory", "why"]
    assert lines[1].split() == header
    assert lines[3].startswith("fused-2") and "1 GPU per actor" in lines[3]
    assert str(layout(chain(), cpus=4, gpus=1)) == text


def test_pipeline_plan_before_opening_uses_the_options_and_this_machine() -> None:
    m = chain()
    p = rm.Pipeline(m, runtime="ray", fuse=True, num_cpus=3)
    shown = p.plan(gpus=0)
    assert [pool.replicas for pool in shown.pools] == [3, 1, 3]
    assert shown.cpus == 3.0
    assert [pool.name for pool in p.plan(cpus=8, gpus=4).pools] == ["fused-1", "fused-2", "fused-3"]
    assert p.plan(cpus=8, gpus=4).pool_of("gpu").replicas == 4
    assert [pool.name for pool in rm.Pipeline(m, runtime="ray").plan().pools][:2] == [
        "double",
        "plus",
    ]
    in_process = rm.Pipeline(m, runtime="local")
    local = in_process.plan(cpus=2, gpus=0)
    assert local.runtime == "local" and local.pools[0].nodes == in_process.graph.execution_order
    assert local.describe().startswith("runtime local")
    with pytest.raises(rm.ConfigError, match="cpus must be > 0"):
        p.plan(cpus=0)
