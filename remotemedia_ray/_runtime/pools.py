"""Which actor pools run a pipeline on Ray, and why: the physical plan.

:func:`plan_pools` turns a :class:`~remotemedia_ray._runtime.plan.PipelinePlan`
into a :class:`PoolLayout` without starting anything, so
``Pipeline.plan()`` and ``remotemedia-ray plan`` show exactly what the Ray
executor will build:

* unfused (``fuse=False``): one pool per node, ``execution.replicas`` actors each;
* fused (``fuse=True``): nodes that follow each other in execution order and
  have the same resource needs share one pool, whose actors run them all in
  memory, like Ray Data's operator fusion. A node's needs are its GPUs per
  actor (a GPU capability, a required ``capabilities.gpu`` or
  ``execution.num_gpus``), the CPUs it reserves (``execution.num_cpus`` or
  ``capabilities.cpu.cores``) and its own ``execution.replicas``. A node
  whose needs differ from its neighbours' gets its own pool, and batches go
  from pool to pool through the object store. A manifest of CPU nodes and one
  GPU node thus runs as two pools (or three, when the GPU node sits between
  CPU nodes).

A pool's actors reserve the CPUs a node asks for; otherwise a share that lets
every actor of the pipeline fit the cluster at once (at most one CPU). A fused
pool of default CPU nodes has one actor per CPU (``fused_replicas``), a GPU
pool one per GPU the cluster has (at least one).
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
    order = plan.graph.execution_order
    groups: list[list[str]] = []
    if fuse:
        needs: _Needs | None = None
        for node_id in order:
            own = _Needs.of(plan.nodes[node_id])
            if groups and own == needs:
                groups[-1].append(node_id)
            else:
                groups.append([node_id])
                needs = own
    else:
        groups = [[node_id] for node_id in order]

    sized = [_size(plan, group, fuse, cpus, gpus, fused_replicas) for group in groups]
    actors = sum(replicas for replicas, _ in sized)
    share = cpu_share(cpus, actors)
    pools = []
    for k, (group, (replicas, sizing)) in enumerate(zip(groups, sized, strict=True)):
        nodes = [plan.nodes[n] for n in group]
        own = _Needs.of(nodes[0])
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


def _size(
    plan: PipelinePlan,
    group: Sequence[str],
    fuse: bool,
    cpus: float,
    gpus: float,
    fused_replicas: int | None,
) -> tuple[int, str]:
    """How many actors a pool of ``group`` gets, and why."""
    node = plan.nodes[group[0]]
    execution = node.spec.execution
    if not fuse or "replicas" in execution.model_fields_set:
        return execution.replicas, f"execution.replicas = {execution.replicas}"
    per_actor = node_gpus(node)
    if per_actor and gpus < per_actor:
        return 1, (
            f"1 actor: the cluster has {gpus:g} GPU(s), fewer than it needs (the build "
            "fails unless wait_for_resources)"
        )
    if per_actor:
        count = math.floor(gpus / per_actor)
        return count, f"{count} actor(s): one per {per_actor:g} GPU of the cluster's {gpus:g}"
    if fused_replicas is not None:
        return fused_replicas, f"fused_replicas = {fused_replicas}"
    count = max(1, int(cpus))
    return count, f"{count} actor(s): one per CPU"


def _inputs(plan: PipelinePlan, group: Iterable[str]) -> tuple[str, ...]:
    inside = set(group)
    keys: list[str] = []
    for node_id in group:
        for key in plan.input_keys(node_id):
            if key not in inside and key not in keys:
                keys.append(key)
    return tuple(keys)


def _outputs(plan: PipelinePlan, group: Iterable[str]) -> tuple[str, ...]:
    inside = set(group)
    graph = plan.graph
    return tuple(
        node_id
        for node_id in group
        if node_id in graph.sinks or any(c not in inside for c in graph.children(node_id))
    )
