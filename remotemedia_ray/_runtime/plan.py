"""The logical plan of a pipeline: what runs, not how.

:class:`PipelinePlan` is built from a manifest before anything runs: the
manifest is validated, every node's implementation is resolved for its
runtime hint, and its parameters are checked. Executors (local or Ray) take a
plan and run it; the data-flow rule lives here so both follow it exactly:

* a source node receives the pipeline input;
* a node with one parent receives that parent's output;
* a node with several parents receives ``{parent_id: output}`` in connection order;
* the result of an item is ``{sink_id: output}`` for every sink.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from remotemedia_ray.errors import ManifestError
from remotemedia_ray.graph import PipelineGraph
from remotemedia_ray.manifest import Manifest, NodeSpec, RuntimeHint
from remotemedia_ray.nodes.base import NodeExecutor, NodeRuntime, parse_params
from remotemedia_ray.nodes.registry import load_node_types, resolve_node_class

__all__ = ["PIPELINE_INPUT", "NodePlan", "PipelinePlan"]

PIPELINE_INPUT = "<pipeline input>"
"""The key of the pipeline input among a node's inputs (no node id can equal it)."""


@dataclass(frozen=True)
class NodePlan:
    """One node, resolved: its manifest entry and the implementation that will run it."""

    spec: NodeSpec
    cls: type[NodeExecutor]

    @property
    def node_id(self) -> str:
        """The manifest id."""
        return self.spec.id

    @property
    def runtime(self) -> NodeRuntime:
        """The implementation's runtime."""
        return self.cls.runtime

    def create(self) -> NodeExecutor:
        """A fresh, un-initialized executor tagged with the node id."""
        load_node_types()  # names the class (node_type) in a process that unpickled it
        executor = self.cls()
        executor.node_id = self.spec.id
        return executor


def _check_parents(impl: type[NodeExecutor], spec: NodeSpec, parents: Sequence[str]) -> None:
    """Refuse a node wired to more or fewer parents than it takes (``impl.inputs``)."""
    least, most = impl.inputs
    if not parents or (least <= len(parents) and (most is None or len(parents) <= most)):
        return
    takes = (
        f"exactly {least}"
        if least == most
        else f"at least {least}"
        if most is None
        else f"{least} to {most}"
    )
    count = len(parents)
    wired = ", ".join(repr(parent) for parent in parents)
    raise ManifestError(
        f"{spec.node_type} takes {takes} {'input' if most == 1 else 'inputs'}, but it is "
        f"connected from {count} {'node' if count == 1 else 'nodes'} ({wired})",
        node_id=spec.id,
    )


@dataclass(frozen=True)
class PipelinePlan:
    """A validated manifest with every node's implementation resolved."""

    manifest: Manifest
    graph: PipelineGraph
    nodes: Mapping[str, NodePlan]

    @classmethod
    def build(cls, manifest: Manifest, runtime: RuntimeHint | None = None) -> PipelinePlan:
        """Validate ``manifest`` and resolve every node.

        Args:
            manifest: The pipeline.
            runtime: Overrides every node's ``runtime_hint`` when given.

        Raises:
            CycleError: The connections form a cycle.
            ManifestError: Naming the offending node: an unknown node type
                (:class:`~remotemedia_ray.errors.UnknownNodeType`), a runtime
                or extra it lacks, a bad param, or more or fewer parents than
                the node takes. Every node's problems are reported at once
                (one error, a line per node, when several nodes have some).
        """
        graph = PipelineGraph.from_manifest(manifest)
        nodes: dict[str, NodePlan] = {}
        problems: list[ManifestError] = []
        for spec in manifest.nodes:
            try:
                hint = spec.runtime_hint if runtime is None else runtime
                impl = resolve_node_class(spec.node_type, hint, node_id=spec.id)
                if impl.Params is not None:
                    parse_params(impl.Params, spec.params, node=spec.id)
                _check_parents(impl, spec, graph.parents(spec.id))
            except ManifestError as exc:
                problems.append(exc)
                continue
            nodes[spec.id] = NodePlan(spec=spec, cls=impl)
        if len(problems) == 1:
            raise problems[0]
        if problems:
            raise ManifestError(
                "invalid pipeline:\n  " + "\n  ".join(str(problem) for problem in problems)
            )
        return cls(manifest=manifest, graph=graph, nodes=nodes)

    def input_keys(self, node_id: str) -> tuple[str, ...]:
        """Where ``node_id``'s input comes from, in order: its parents (connection
        order), or ``(PIPELINE_INPUT,)`` for a source."""
        return self.graph.parents(node_id) or (PIPELINE_INPUT,)

    def node_input(self, node_id: str, item: Any, outputs: Mapping[str, Any]) -> Any:
        """The input of ``node_id`` given the pipeline input and its parents' outputs:
        the input itself (a source), the one parent's output, or ``{parent: output}``."""
        keys = self.input_keys(node_id)
        if keys == (PIPELINE_INPUT,):
            return item
        if len(keys) == 1:
            return outputs[keys[0]]
        return {parent: outputs[parent] for parent in keys}

    def result(
        self, outputs: Mapping[str, Any], nodes: Sequence[str] | None = None
    ) -> dict[str, Any]:
        """``{sink_id: output}`` of one item (``{node_id: output}`` of ``nodes`` instead,
        for a pool that runs part of the pipeline)."""
        return {node: outputs[node] for node in (self.graph.sinks if nodes is None else nodes)}
