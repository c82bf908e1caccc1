"""The pools a pipeline runs in on Ray (no Ray): fusion by resource needs, the sizes
and reasons shown by ``Pipeline.plan()``, and batches passed from pool to pool
through the actors' classes giving the local runtime's outputs."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

import remotemedia_ray as rm
from remotemedia_ray._runtime.actors import FusedActor, NodeActor
from remotemedia_ray._runtime.batches import BatchItem, decode_batch, encode_batch, item_outcomes
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
    assert pools[1].reason == "1 GPU per actor: alone; 2 actor(s) of 1 GPU: 2 GPU(s)"


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
    # Three CPU pools share the 4 CPUs: "plus" gets 1 actor of 2; the other 11 actors
    # share the 2 CPUs left.
    assert [p.replicas for p in pools] == [4, 1, 3, 4]
    assert pools[1].num_cpus == 2.0  # what the node asks for, not a share
    assert [pools[k].num_cpus for k in (0, 2, 3)] == [0.18] * 3
    assert "2 CPU per actor" in pools[1].reason
    assert "1 actor(s) of 2 CPU: 4 CPU(s), shared by 3 CPU pools" in pools[1].reason
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
    outcomes = item_outcomes([i for i, _ in items], per_sink, plan.graph.execution_order)
    return [
        {s: o.error.node_id for s in sinks} if isinstance(o, rm.ItemFailure) else dict(o)
        for o in outcomes
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


BRANCHES = manifest(
    [
        ("src", "MultiplyNode", {"factor": 1.0}),
        ("g1", "MultiplyNode", {"factor": 2.0}),
        ("c", "AddNode", {"addend": 1.0}),
        ("g2", "AddNode", {"addend": 2.0}),
    ],
    [("src", "g1"), ("src", "c"), ("src", "g2")],
    g1={"capabilities": GPU},
    g2={"capabilities": GPU},
)


def test_pools_are_runs_of_the_execution_order() -> None:
    # Independent branches are not regrouped: a pool's nodes run one after another, so
    # an item fails at the node the local runtime names.
    pools = layout(BRANCHES, cpus=2, gpus=2).pools
    assert [p.nodes for p in pools] == [("src",), ("g1",), ("c",), ("g2",)]
    assert [p.inputs for p in pools] == [(PIPELINE_INPUT,)] + [("src",)] * 3
    assert [p.replicas for p in pools] == [2, 1, 2, 1]  # two GPU pools share two GPUs


def test_gpu_pools_split_the_gpus_and_cpu_pools_the_cpus() -> None:
    m = chain(times={"capabilities": GPU, "execution": {"num_gpus": 0.5}})
    pools = layout(m, cpus=4, gpus=2).pools
    assert [p.nodes for p in pools] == [("double", "plus"), ("gpu",), ("times",), ("minus",)]
    assert [p.replicas for p in pools] == [4, 1, 2, 4]  # 1 GPU each: 1 x 1 and 2 x 0.5
    assert "shared by 2 GPU pools" in pools[1].reason


@pytest.mark.parametrize(
    "m",
    [
        chain(),
        chain(plus={"execution": {"num_cpus": 2}}),
        chain(plus={"capabilities": {"cpu": {"cores": 3}}}, minus={"execution": {"num_cpus": 1}}),
        chain(times={"capabilities": GPU, "execution": {"num_gpus": 0.5}}),
        BRANCHES,
        DIAMOND,
    ],
)
@pytest.mark.parametrize(("cpus", "gpus"), [(2, 1), (8, 2), (64, 8)])
def test_pools_sized_by_the_plan_fit_the_cluster_or_the_build_says_why(
    m: rm.Manifest, cpus: int, gpus: int
) -> None:
    from remotemedia_ray._runtime.ray_executor import RayExecutor

    executor = RayExecutor(PipelinePlan.build(m, "cpython"))  # nothing starts
    executor.layout = plan_pools(executor.plan, fuse=True, cpus=cpus, gpus=gpus)
    pools = executor.layout.pools
    assert sorted(n for p in pools for n in p.nodes) == sorted(executor.plan.nodes)
    fits = (
        sum(p.replicas * p.num_cpus for p in pools) <= cpus + 1e-6
        and sum(p.replicas * p.num_gpus for p in pools) <= gpus
    )
    if fits:
        executor._check_fit({"CPU": float(cpus), "GPU": float(gpus)})
    else:  # a node asks for more than its slice of this small cluster
        with pytest.raises(rm.ManifestError, match="(asks for|ask for|need) .* has"):
            executor._check_fit({"CPU": float(cpus), "GPU": float(gpus)})
    if cpus >= 8:  # big enough for every node's own ask: the plan fits
        assert fits


def test_one_fused_pool_gives_the_sinks_in_manifest_order() -> None:
    m = manifest(
        [("late", "AddNode", {"addend": 1.0}), ("early", "MultiplyNode", {"factor": 2.0})],
        [],
    )
    (pool,) = layout(m).pools
    assert pool.outputs == PipelinePlan.build(m, "cpython").graph.sinks == ("late", "early")


def test_more_gpus_than_the_cluster_has_fail_the_build_naming_the_nodes() -> None:
    from remotemedia_ray._runtime.ray_executor import RayExecutor

    m = chain(
        gpu={"capabilities": GPU, "execution": {"replicas": 2}},
        times={"capabilities": GPU, "execution": {"replicas": 2, "num_gpus": 0.5}},
    )
    executor = RayExecutor(PipelinePlan.build(m, "cpython"))  # nothing starts
    executor.layout = plan_pools(executor.plan, fuse=True, cpus=4, gpus=2)
    with pytest.raises(rm.ManifestError, match=r"need 3 GPU\(s\) at once .* has 2") as info:
        executor._check_fit({"CPU": 4.0, "GPU": 2.0})
    assert info.value.node_id == "gpu"
    assert "gpu: 2 actor(s) x 1, times: 2 actor(s) x 0.5" in str(info.value)
    executor._check_fit({"CPU": 4.0, "GPU": 3.0})  # enough: nothing to do
    executor.layout = plan_pools(
        PipelinePlan.build(chain(gpu={}, plus={"execution": {"num_cpus": 3}}), "cpython"),
        fuse=True,
        cpus=2,
        gpus=0,
    )
    with pytest.raises(rm.ManifestError, match="'plus' asks for 3 CPU.* has 2"):
        executor._check_fit({"CPU": 2.0})


@rm.register_node("TestPoolsFailOn")
class _FailOn(rm.NodeExecutor):
    """Adds one; fails on the value ``bad``."""

    def initialize(self, params: Any) -> None:
        self.bad = params.get("bad")

    def execute(self, input: Any) -> Any:
        if input == self.bad:
            raise ValueError(f"{self.node_id} refuses {input}")
        return input + 1


@pytest.mark.parametrize("fuse", [True, False], ids=["fused", "unfused"])
def test_an_item_failing_in_two_branches_fails_at_the_node_the_local_runtime_names(
    fuse: bool,
) -> None:
    # "late" sits in an earlier pool than "early" would on its own, and both refuse 3:
    # the item must fail at "early", the first of the two in the execution order.
    m = manifest(
        [
            ("src", "TestPoolsFailOn", {}),
            ("early", "TestPoolsFailOn", {"bad": 3}),
            ("late", "TestPoolsFailOn", {"bad": 3}),
            ("tail", "TestPoolsFailOn", {}),
        ],
        [("src", "early"), ("src", "late"), ("early", "tail")],
        late={"execution": {"num_cpus": 1}},
    )
    items = [("a", 0), ("b", 2), ("c", 5)]
    got = run_pools(m, items, fuse=fuse)
    assert got == run_local(m, items)
    assert got[1] == {"late": "early", "tail": "early"}
