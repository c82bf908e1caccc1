"""Which actor pools run a pipeline on Ray, and why: the physical plan.

:func:`plan_pools` turns a :class:`~remotemedia_ray._runtime.plan.PipelinePlan`
into a :class:`PoolLayout` without starting anything, so
``Pipeline.plan()`` and ``remotemedia-ray plan`` show exactly what the Ray
executor will build:

* unfused (``fuse=False``): one pool per node, ``execution.replicas`` actors each;
* fused (``fuse=True``): nodes that follow each other and have the same
  resource needs share one pool, whose actors run them all in memory, like
  Ray Data's operator fusion. A node's needs are its GPUs per actor (a GPU
  capability, a required ``capabilities.gpu`` or ``execution.num_gpus``), the
  CPUs it reserves (``execution.num_cpus`` or ``capabilities.cpu.cores``) and
  its own ``execution.replicas``; the runs of equal needs in the execution
  order make the pools. A node whose needs differ from its neighbours' gets
  its own pool, and batches go from pool to pool through the object store.
  A manifest of CPU nodes and one GPU node thus runs as two pools (or three,
  when the GPU node sits between CPU nodes).

Sizes: a pool with its own ``replicas`` has those; otherwise the GPU pools
split the cluster's GPUs evenly (at least one actor each), a pool of nodes
that ask for CPUs gets its slice of the CPUs (split evenly among the CPU
pools), and a pool of default CPU needs has
one actor per CPU (``fused_replicas``), each reserving an equal share of the
CPUs the other pools leave (at most one). So a fused pipeline fits the
cluster at once, unless replicas set by hand do not.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from remotemedia_ray._runtime.plan import PIPELINE_INPUT, NodePlan, PipelinePlan
from remotemedia_ray._runtime.ray_cluster import (
    cpu_share,
    memory_bytes,
    node_cpus,
    node_gpus,
)

__all__ = ["Pool", "PoolLayout", "local_layout", "plan_pools"]

_FUSED = "fused"


@dataclass(frozen=True)
class Pool:
    """One pool of identical Ray actors and the nodes each of them runs.

    Attributes:
        name: The pool's name, in its actors' names (``rm:<pipeline>:<name>:<replica>``):
            the node id of an unfused pool, ``fused`` (one fused pool) or
            ``fused-1``, ``fused-2``, ... (several).
        nodes: The manifest ids it runs, in execution order.
        inputs: Where its batches come from: ``"<pipeline input>"`` or the ids of
            nodes of earlier pools, in the order its actors take them.
        outputs: Its nodes whose outputs leave it (sinks, or read by a later pool).
        replicas: Actors in the pool; each takes whole batches.
        num_cpus: CPUs each actor reserves.
        num_gpus: GPUs each actor reserves.
        memory: Bytes of memory each actor reserves (0: none asked).
        fused: Whether its actors run their nodes in memory, one after another
            (``fuse=True``), or run one node each.
        reason: Why these nodes are together and sized so.
    """

    name: str
    nodes: tuple[str, ...]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    replicas: int
    num_cpus: float
    num_gpus: float
    memory: int
    fused: bool
    reason: str


@dataclass(frozen=True)
class PoolLayout:
    """The pools that run a pipeline (:meth:`Pipeline.plan <remotemedia_ray.Pipeline.plan>`).

    Attributes:
        runtime: ``"ray"`` or ``"local"`` (one process, no pools).
        cpus: The CPUs the figures assume (the cluster's, or this machine's).
        gpus: The GPUs the figures assume.
        pools: In the order batches pass through them.
    """

    runtime: str
    cpus: float
    gpus: float
    pools: tuple[Pool, ...]

    def pool_of(self, node_id: str) -> Pool:
        """The pool that runs ``node_id``."""
        for pool in self.pools:
            if node_id in pool.nodes:
                return pool
        raise KeyError(node_id)

    def describe(self) -> str:
        """The layout as a table, one pool per row, with the reason for each."""
        if self.runtime == "local":
            head = "runtime local: every node runs in this process, in execution order"
        else:
            head = (
                f"runtime ray: {len(self.pools)} pool(s) for {self.cpus:g} CPU(s) and "
                f"{self.gpus:g} GPU(s)"
            )
        rows = [("pool", "nodes", "actors", "CPU/actor", "GPU/actor", "memory", "why")]
        for pool in self.pools:
            memory = f"{pool.memory / 1024**3:.3g} GiB" if pool.memory else "-"
            rows.append(
                (
                    pool.name,
                    ", ".join(pool.nodes) or "-",
                    str(pool.replicas),
                    f"{pool.num_cpus:g}",
                    f"{pool.num_gpus:g}",
                    memory,
                    pool.reason,
                )
            )
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
        lines = [head]
        for row in rows:
            cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
            lines.append("  ".join([*cells, row[-1]]).rstrip())
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.describe()


@dataclass(frozen=True)
class _Needs:
    """What one actor of a node asks for; nodes with equal needs may share a pool."""

    gpus: float
    cpus: float | None
    replicas: int | None

    @classmethod
    def of(cls, node: NodePlan) -> _Needs:
        execution = node.spec.execution
        own = execution.replicas if "replicas" in execution.model_fields_set else None
        return cls(node_gpus(node), node_cpus(node), own)

    def why(self) -> str:
        parts = []
        if self.gpus:
            parts.append(f"{self.gpus:g} GPU per actor")
        if self.cpus is not None:
            parts.append(f"{self.cpus:g} CPU per actor")
        if self.replicas is not None:
            parts.append(f"its own replicas ({self.replicas})")
        return ", ".join(parts) or "default CPU needs"


def local_layout(plan: PipelinePlan, cpus: float, gpus: float) -> PoolLayout:
    """The local runtime's layout: every node in this process."""
    order = plan.graph.execution_order
    pool = Pool(
        name="local",
        nodes=order,
        inputs=(PIPELINE_INPUT,),
        outputs=plan.graph.sinks,
        replicas=1,
        num_cpus=cpus,
        num_gpus=gpus,
        memory=0,
        fused=True,
        reason="runtime='local': one process runs every node, one item after another",
    )
    return PoolLayout("local", cpus, gpus, (pool,) if order else ())


def plan_pools(
    plan: PipelinePlan,
    *,
    fuse: bool,
    cpus: float,
    gpus: float,
    fused_replicas: int | None = None,
) -> PoolLayout:
    """The pools that run ``plan`` on a cluster of ``cpus`` CPUs and ``gpus`` GPUs
    (see the module docs)."""
    groups = _fused_groups(plan) if fuse else [[n] for n in plan.graph.execution_order]
    needs = [_Needs.of(plan.nodes[group[0]]) for group in groups]
    sized = _sizes(plan, groups, needs, fuse, cpus, gpus, fused_replicas)
    own_cpus = sum(r * n.cpus for (r, _), n in zip(sized, needs, strict=True) if n.cpus is not None)
    shared = sum(r for (r, _), n in zip(sized, needs, strict=True) if n.cpus is None)
    left = cpus - own_cpus
    # Nothing left over (nodes that asked for every CPU): the others reserve none.
    share = cpu_share(left, shared) if left >= 0.01 * max(1, shared) else 0.0
    pools = []
    for k, (group, own, (replicas, sizing)) in enumerate(zip(groups, needs, sized, strict=True)):
        nodes = [plan.nodes[n] for n in group]
        if not fuse:
            name = group[0]
            reason = f"fuse=False: one pool per node; {sizing}"
        else:
            name = _FUSED if len(groups) == 1 else f"{_FUSED}-{k + 1}"
            together = "fused" if len(group) > 1 else "alone"
            reason = f"{own.why()}: {together}; {sizing}"
        pools.append(
            Pool(
                name=name,
                nodes=tuple(group),
                inputs=_inputs(plan, group),
                outputs=_outputs(plan, group),
                replicas=replicas,
                num_cpus=share if own.cpus is None else own.cpus,
                num_gpus=max(node_gpus(n) for n in nodes),
                memory=sum(memory_bytes(n) for n in nodes),  # every node stays loaded
                fused=fuse,
                reason=reason,
            )
        )
    return PoolLayout("ray", cpus, gpus, tuple(pools))


def _fused_groups(plan: PipelinePlan) -> list[list[str]]:
    """The execution order cut into runs of nodes with equal needs.

    Runs of the execution order, not any grouping the graph would allow: a pool
    then holds nodes that run one after another, so an item that fails in it
    fails at the node that comes first in the execution order, as in the local
    runtime (a pool of independent branches would stop at its own first failure
    while an earlier node of a later pool was still to run).
    """
    groups: list[list[str]] = []
    current: _Needs | None = None
    for node_id in plan.graph.execution_order:
        needs = _Needs.of(plan.nodes[node_id])
        if groups and needs == current:
            groups[-1].append(node_id)
        else:
            groups.append([node_id])
            current = needs
    return groups


def _sizes(
    plan: PipelinePlan,
    groups: Sequence[Sequence[str]],
    needs: Sequence[_Needs],
    fuse: bool,
    cpus: float,
    gpus: float,
    fused_replicas: int | None,
) -> list[tuple[int, str]]:
    """How many actors each pool gets, and why.

    Unfused, or with its own ``replicas``: those. Otherwise the pools share the
    cluster: the GPU pools split its GPUs evenly, a pool whose nodes ask for
    their own CPUs gets its slice of the CPUs (split evenly among the CPU
    pools; at least one actor), and a pool of default CPU needs has one actor
    per CPU (``fused_replicas``), each reserving a share of the CPUs the
    others leave.
    """
    gpu_pools = sum(1 for n in needs if n.gpus and n.replicas is None)
    cpu_pools = sum(1 for n in needs if not n.gpus and n.replicas is None)
    sized: list[tuple[int, str]] = []
    for group, own in zip(groups, needs, strict=True):
        execution = plan.nodes[group[0]].spec.execution
        if not fuse or own.replicas is not None:
            sized.append((execution.replicas, f"execution.replicas = {execution.replicas}"))
        elif own.gpus and gpus < own.gpus:
            why = (
                f"1 actor: the cluster has {gpus:g} GPU(s), fewer than it needs (the build "
                "fails unless wait_for_resources)"
            )
            sized.append((1, why))
        elif own.gpus:
            count = max(1, math.floor(gpus / gpu_pools / own.gpus))
            split = f", shared by {gpu_pools} GPU pools" if gpu_pools > 1 else ""
            sized.append((count, f"{count} actor(s) of {own.gpus:g} GPU: {gpus:g} GPU(s){split}"))
        elif own.cpus:
            count = max(1, math.floor(cpus / cpu_pools / own.cpus))
            split = f", shared by {cpu_pools} CPU pools" if cpu_pools > 1 else ""
            sized.append((count, f"{count} actor(s) of {own.cpus:g} CPU: {cpus:g} CPU(s){split}"))
        elif fused_replicas is not None:
            sized.append((fused_replicas, f"fused_replicas = {fused_replicas}"))
        else:
            count = max(1, int(cpus))
            sized.append((count, f"{count} actor(s): one per CPU"))
    return sized


def _inputs(plan: PipelinePlan, group: Iterable[str]) -> tuple[str, ...]:
    inside = set(group)
    keys: list[str] = []
    for node_id in group:
        for key in plan.input_keys(node_id):
            if key not in inside and key not in keys:
                keys.append(key)
    return tuple(keys)


def _outputs(plan: PipelinePlan, group: Iterable[str]) -> tuple[str, ...]:
    """The group's nodes read outside it, in manifest order (a pool of every sink
    gives them in the order of the pipeline's results)."""
    inside = set(group)
    graph = plan.graph
    return tuple(
        node_id
        for node_id in graph.nodes
        if node_id in inside
        and (node_id in graph.sinks or any(c not in inside for c in graph.children(node_id)))
    )
