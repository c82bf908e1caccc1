"""The node graph of a manifest, topologically sorted with Kahn's algorithm."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from typing import Protocol

from remotemedia_ray.errors import CycleError, GraphError, NodeNotFound

__all__ = ["PipelineGraph"]


class _HasId(Protocol):
    @property
    def id(self) -> str: ...


class _HasEnds(Protocol):
    @property
    def from_(self) -> str: ...
    @property
    def to(self) -> str: ...


class _GraphSource(Protocol):
    """What :meth:`PipelineGraph.from_manifest` reads of a manifest."""

    @property
    def nodes(self) -> Sequence[_HasId]: ...
    @property
    def connections(self) -> Sequence[_HasEnds]: ...


class PipelineGraph:
    """A DAG of node ids, with parents kept in connection order.

    Args:
        nodes: Node ids in manifest order (ties in the execution order follow it).
        edges: ``(from, to)`` pairs in connection order.

    Raises:
        GraphError: a repeated node id or an edge naming an unknown node.
        CycleError: the edges form a cycle (a self-loop included); ``.nodes``
            lists exactly the nodes Kahn's algorithm left unsorted.
    """

    def __init__(self, nodes: Sequence[str], edges: Iterable[tuple[str, str]] = ()) -> None:
        self._nodes: tuple[str, ...] = tuple(nodes)
        if len(set(self._nodes)) != len(self._nodes):
            dupes = sorted({n for n in self._nodes if self._nodes.count(n) > 1})
            raise GraphError(f"duplicate node ids: {dupes}")
        self._parents: dict[str, list[str]] = {n: [] for n in self._nodes}
        self._children: dict[str, list[str]] = {n: [] for n in self._nodes}
        for src, dst in edges:
            for end in (src, dst):
                if end not in self._parents:
                    raise GraphError(f"connection {src!r} -> {dst!r} names unknown node {end!r}")
            if src in self._parents[dst]:
                continue  # a repeated edge carries the same data once
            self._parents[dst].append(src)
            self._children[src].append(dst)
        self._order = self._kahn()

    @classmethod
    def from_manifest(cls, manifest: _GraphSource) -> PipelineGraph:
        """The graph of a :class:`~remotemedia_ray.manifest.Manifest`: its node ids
        and connections (a manifest is valid by construction)."""
        return cls(
            [node.id for node in manifest.nodes],
            [(conn.from_, conn.to) for conn in manifest.connections],
        )

    def _kahn(self) -> tuple[str, ...]:
        indegree = {n: len(self._parents[n]) for n in self._nodes}
        ready = deque(n for n in self._nodes if indegree[n] == 0)
        position = {n: i for i, n in enumerate(self._nodes)}
        order: list[str] = []
        while ready:
            node = ready.popleft()
            order.append(node)
            freed = []
            for child in self._children[node]:
                indegree[child] -= 1
                if indegree[child] == 0:
                    freed.append(child)
            ready.extend(sorted(freed, key=position.__getitem__))
        if len(order) != len(self._nodes):
            done = set(order)
            stuck = [n for n in self._nodes if n not in done]
            raise CycleError(
                f"the pipeline graph has a cycle; nodes left unsorted: {', '.join(stuck)}",
                nodes=stuck,
            )
        return tuple(order)

    @property
    def nodes(self) -> tuple[str, ...]:
        """Node ids in manifest order."""
        return self._nodes

    @property
    def execution_order(self) -> tuple[str, ...]:
        """Node ids so that every node comes after all of its parents."""
        return self._order

    @property
    def sources(self) -> tuple[str, ...]:
        """Nodes with no parents (each receives the pipeline input), in manifest order."""
        return tuple(n for n in self._nodes if not self._parents[n])

    @property
    def sinks(self) -> tuple[str, ...]:
        """Nodes with no children (their outputs are the pipeline result), in manifest order."""
        return tuple(n for n in self._nodes if not self._children[n])

    def parents(self, node_id: str) -> tuple[str, ...]:
        """The nodes feeding ``node_id``, in connection order."""
        return tuple(self._parents[self._known(node_id)])

    def children(self, node_id: str) -> tuple[str, ...]:
        """The nodes fed by ``node_id``, in connection order."""
        return tuple(self._children[self._known(node_id)])

    def _known(self, node_id: str) -> str:
        if node_id not in self._parents:
            raise NodeNotFound(f"no node {node_id!r} in the pipeline graph", node_id=node_id)
        return node_id

    def __len__(self) -> int:
        return len(self._nodes)

    def __repr__(self) -> str:
        return f"PipelineGraph(order={list(self._order)})"
