"""The fused native chains of an executor: consecutive native nodes in one native call.

Where a node's input is one AudioBuffer and the node is a built-in native node
(ChannelMix, Resample, the energy VAD, FormatConverter, Multiply, Add), its
work is one kernel call. :func:`plan_chains` groups such nodes: a chain
starts at one of them and takes every later one whose input is the chain's
input or the audio of a chain node (a VAD gives segments, so it ends a
branch), so a chain of an executor's nodes runs together at its first node's
place in execution order (what it reads is known there). The executor hands
the chain an item's input (:class:`~remotemedia_ray.nodes.native.NativeChain`:
one call for all its nodes, the GIL released once, buffers reused, no Python
per node) and keeps only the outputs read outside the chain. Where a batch
runs node by node (a node that batches, ``execute_many``), the chain gets the
whole batch in one call. Items run one by one otherwise: giving the chain
whole batches there would hold every item's earlier outputs (the files'
bytes) at once, and the dataset job measured 20 % slower that way than item
by item, while one call per item made it 0-7 % faster than the nodes one by
one.

Each chain node's success is recorded (metrics, circuit breaker) when the
item reaches that node's place, as if the node ran there: an item that fails
at a node between is not counted by the chain nodes after it, and a breaker
opened meanwhile refuses the item there. An input the chain cannot take (not
plain in-memory audio, a long file that streams, a breaker not closed) or
that one of its kernels refuses runs node by node instead, each node at its
own place, so its error, retries and the node it names are exactly those of
the node-by-node path.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from remotemedia_ray._runtime.execution import NodeRunner
from remotemedia_ray._runtime.plan import PipelinePlan
from remotemedia_ray.audio import AudioBuffer
from remotemedia_ray.nodes.native import NativeChain, chain_link

__all__ = ["ChainRun", "FusedChain", "plan_chains"]

ChainRun = tuple[dict[str, Any], dict[str, float]]
"""One input through a chain: the outputs of its nodes read outside it, and the
milliseconds each of its nodes took."""


@dataclass(eq=False)
class FusedChain:
    """Some of an executor's nodes run as one :class:`NativeChain`."""

    nodes: tuple[str, ...]
    """Its nodes, in execution order (the first is where it runs)."""
    keep: tuple[str, ...]
    """Its nodes whose outputs are read outside it (or are the executor's outputs)."""
    native: NativeChain
    """The extension's chain of their kernels."""
    runners: Mapping[str, NodeRunner]
    """Its nodes' runners (their circuit breakers decide whether it may run)."""

    def accepts(self, value: Any) -> bool:
        """Whether ``value`` can go through the chain: plain audio the extension reads
        in place, while every node's circuit breaker is closed."""
        return self.native.accepts(value) and all(self.runners[n].closed for n in self.nodes)

    def run(self, values: Sequence[AudioBuffer]) -> list[ChainRun | None]:
        """Per input (each :meth:`accepts`): its :data:`ChainRun`, or None when a
        kernel refused it (then it must run node by node). Nothing is recorded."""
        results: list[ChainRun | None] = []
        kept = [self.nodes.index(n) for n in self.keep]
        for outcome in self.native.run(values):
            if outcome is None:
                results.append(None)
                continue
            outputs, elapsed_ms = outcome
            results.append(
                (
                    {self.nodes[i]: outputs[i] for i in kept},
                    dict(zip(self.nodes, elapsed_ms, strict=True)),
                )
            )
        return results


def plan_chains(
    plan: PipelinePlan,
    order: Sequence[str],
    runners: Mapping[str, NodeRunner],
    outputs: Collection[str],
) -> list[FusedChain]:
    """The chains of the nodes ``order`` (an executor's, in execution order) whose
    outputs ``outputs`` are the executor's result; chains of two nodes or more."""
    links = {n: chain_link(runners[n].executor) for n in order}
    chained: set[str] = set()
    chains: list[FusedChain] = []
    for index, head in enumerate(order):
        if head in chained or links[head] is None or len(plan.input_keys(head)) != 1:
            continue
        source = plan.input_keys(head)[0]
        nodes = [head]
        for node in order[index + 1 :]:
            keys = plan.input_keys(node)
            if node in chained or links[node] is None or len(keys) != 1:
                continue
            parent = keys[0]
            if parent == source or (parent in nodes and _gives_audio(links[parent])):
                nodes.append(node)
        if len(nodes) < 2:
            continue
        chained.update(nodes)
        keep = tuple(
            n for n in nodes if n in outputs or any(c not in nodes for c in plan.graph.children(n))
        )
        spec = []
        for node in nodes:
            kind, params = links[node] or ("", None)
            parent = plan.input_keys(node)[0]
            spec.append((kind, -1 if parent == source else nodes.index(parent), params))
        chains.append(
            FusedChain(
                nodes=tuple(nodes),
                keep=keep,
                native=NativeChain(spec, [n in keep for n in nodes]),
                runners={n: runners[n] for n in nodes},
            )
        )
    return chains


def _gives_audio(link: tuple[str, Any] | None) -> bool:
    """Whether a chain link's value is audio (a VAD's is its segments)."""
    return link is not None and link[0] != "vad"
