"""The in-process executor (``runtime="local"``): the reference semantics.

Nodes run one item at a time in execution order, in this process, through
the same :class:`~remotemedia_ray._runtime.execution.NodeRunner` the Ray
actors use, so retries, errors and metrics behave identically.

An item whose audio arrives as :class:`~remotemedia_ray.audio.AudioChunks`
(a long file) is streamed: every node that can stream gets the chunks in
order, one at a time, and only sinks keep their output pieces, so memory is
bounded by the chunk size plus the outputs. Nodes that cannot stream, and
nodes after a non-audio stream (VAD segments), run once the stream has ended,
on whole values. The outputs equal those of the whole audio.

Batches (:meth:`LocalExecutor.run_batch`) run item by item too, unless a node
runs several items in one call (``execute_many``, a neural model): then every
node runs over the whole batch before the next one, each keeping the outputs
only while a later node needs them, and that node gets the batch in one call.
Consecutive native nodes run as fused chains
(:mod:`~remotemedia_ray._runtime.chains`): one native call per item, or per
batch where the batch runs node by node.

A fused Ray actor runs part of a pipeline with this executor (``nodes``): the
outputs of the nodes it reads from other pools come with each item
(``seeds``), and it returns those of its ``outputs`` instead of the sinks'.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from remotemedia_ray._runtime.chains import FusedChain, plan_chains
from remotemedia_ray._runtime.execution import (
    BatchSink,
    Failed,
    ItemBytes,
    ItemFailure,
    ItemSource,
    NodeRunner,
    PipelineOutput,
    SinkCommit,
    wrap_error,
    write_batch,
)
from remotemedia_ray._runtime.plan import PipelinePlan
from remotemedia_ray._runtime.ray_cluster import check_resources, node_gpus, visible_gpus
from remotemedia_ray._runtime.retry import CircuitBreaker, RetryPolicy
from remotemedia_ray.audio import AudioBuffer, AudioChunks, concat_audio
from remotemedia_ray.errors import NodeExecutionError, RemoteMediaError
from remotemedia_ray.metrics import NodeMetrics
from remotemedia_ray.nodes.base import ChunkStream

__all__ = ["SINK_BATCH", "LocalExecutor"]

SINK_BATCH = 64
"""Items per batch handed to a sink by the local runtime."""

logger = logging.getLogger(__name__)


class LocalExecutor:
    """Runs a :class:`PipelinePlan` in this process."""

    def __init__(
        self,
        plan: PipelinePlan,
        *,
        retry_policy: RetryPolicy | None = None,
        breaker_threshold: int = 5,
        breaker_cooldown_s: float = 30.0,
        nodes: Sequence[str] | None = None,
        outputs: Sequence[str] | None = None,
        native_chains: bool = True,
    ) -> None:
        self.plan = plan
        self.retry_policy = retry_policy or RetryPolicy()
        self._breaker_threshold = breaker_threshold
        self._breaker_cooldown_s = breaker_cooldown_s
        self._runners: dict[str, NodeRunner] = {}
        chosen = set(plan.graph.nodes if nodes is None else nodes)
        order = tuple(n for n in plan.graph.execution_order if n in chosen)
        self.order = order
        """The nodes this executor runs, in execution order (default: all)."""
        self.outputs = plan.graph.sinks if outputs is None else tuple(outputs)
        """The nodes whose outputs make an item's result (default: the sinks)."""
        self._last_use = {
            node: max(
                (order.index(c) for c in plan.graph.children(node) if c in chosen),
                default=len(order),
            )
            for node in order
        }
        """Where each node's output is read last (an execution-order index): a batch run
        node by node frees it there."""
        self.sink_batch = SINK_BATCH
        """Items per batch handed to a sink (see :meth:`stream`)."""
        self.native_chains = native_chains
        """Whether consecutive native nodes run as fused chains (outputs, errors and
        metrics are the same either way; see :mod:`remotemedia_ray._runtime.chains`)."""
        self.chains: list[FusedChain] = []
        """The fused native chains, once started."""
        self._chain_of: dict[str, FusedChain] = {}
        """The chain of each node that runs in one."""

    def start(self) -> None:
        """Create and initialize every node (in execution order).

        Raises:
            ManifestError: a node needs a GPU this machine does not have (named).
            NodeExecutionError: a node failed to initialize (named); the nodes
                already initialized are cleaned up first.
        """
        gpus = {"GPU": float(visible_gpus())}
        for node_id in self.order:  # before anything is initialized
            check_resources(gpus, node_gpus(self.plan.nodes[node_id]), node_id, "this machine")
        try:
            for node_id in self.order:
                node = self.plan.nodes[node_id]
                runner = NodeRunner(
                    node.create(),
                    retry_policy=self.retry_policy,
                    breaker=CircuitBreaker(self._breaker_threshold, self._breaker_cooldown_s),
                )
                self._runners[node_id] = runner
                runner.initialize(node.spec.params)
            if self.native_chains:
                self.chains = plan_chains(self.plan, self.order, self._runners, self.outputs)
                self._chain_of = {n: chain for chain in self.chains for n in chain.nodes}
        except BaseException:
            self.close()
            raise

    def run_item(
        self, item_id: str, item: Any, seed: Mapping[str, Any] | None = None
    ) -> PipelineOutput:
        """Run one item through every node; raises the first node error (tagged).

        ``seed``: the outputs of the nodes this executor reads but does not run."""
        outputs: dict[str, Any] = dict(seed or {})
        order = self.order
        pending: dict[str, float] = {}  # chain nodes computed ahead: their milliseconds
        for index, node_id in enumerate(order):
            runner = self._runners[node_id]
            if node_id in pending:  # counted here, where the node would have run
                runner.record_chained(pending.pop(node_id), item_id=item_id)
                continue
            value = self.plan.node_input(node_id, item, outputs)
            if isinstance(value, AudioChunks) and not runner.executor.accepts_chunks:
                self._stream_rest(item_id, item, value, outputs, order[index:], pending)
                break
            chain = self._chain_of.get(node_id)
            if chain is not None and chain.nodes[0] == node_id and chain.accepts(value):
                [done] = chain.run([value])
                if done is not None:  # else a kernel refused it: node by node, for its error
                    outputs.update(done[0])
                    pending.update(done[1])
                    runner.record_chained(pending.pop(node_id), item_id=item_id)
                    continue
            outputs[node_id] = runner.execute(value, item_id=item_id)
        return PipelineOutput(item_id, self.result(outputs))

    def _stream_rest(
        self,
        item_id: str,
        item: Any,
        source: AudioChunks,
        outputs: dict[str, Any],
        nodes: Sequence[str],
        pending: dict[str, float],
    ) -> None:
        """Stream ``source`` through ``nodes`` (the rest of an item's nodes) but the
        chain nodes already computed (``pending``), which are counted once it has run."""
        _ItemStream(self, item_id, item, source, outputs).run(
            tuple(n for n in nodes if n not in pending)
        )
        for node in nodes:
            if node in pending:
                self._runners[node].record_chained(pending.pop(node), item_id=item_id)

    def result(self, outputs: Mapping[str, Any]) -> dict[str, Any]:
        """``{node_id: output}`` of one item for every node of :attr:`outputs`."""
        return self.plan.result(outputs, self.outputs)

    def stream(
        self,
        items: Iterable[tuple[str, Any]],
        *,
        ordered: bool = True,
        sink: BatchSink | None = None,
        item_bytes: ItemBytes | None = None,
        batch_bytes: int | None = None,
    ) -> Iterator[PipelineOutput | ItemFailure | SinkCommit]:
        """Run items one after another, yielding each result or failure (always in order).

        With ``sink``, the outputs of every batch (:attr:`sink_batch` items, fewer
        once their ``item_bytes`` reach ``batch_bytes``; see :class:`ItemSource`)
        are handed to it and its :class:`SinkCommit` is yielded instead.
        """
        del ordered  # one item at a time: completion order is input order
        if sink is not None:
            source = ItemSource(items)
            while chunk := source.take(self.sink_batch, item_bytes, batch_bytes):
                yield from write_batch(sink, self.run_batch(chunk))
            return
        for item_id, item in items:
            yield self._outcome(item_id, item)

    def run_batch(
        self,
        items: Sequence[tuple[str, Any]],
        seeds: Sequence[Mapping[str, Any]] | None = None,
    ) -> list[PipelineOutput | ItemFailure]:
        """The outcome of each ``(item_id, item)``, in order (see the module docs);
        ``seeds``: each item's outputs of the nodes this executor reads but does not run."""
        given = seeds if seeds is not None else [{}] * len(items)
        if not any(runner.batches for runner in self._runners.values()):
            return [
                self._outcome(item_id, item, seed)
                for (item_id, item), seed in zip(items, given, strict=True)
            ]
        order = self.order
        last_use = self._last_use
        outputs: dict[int, dict[str, Any]] = {k: dict(given[k]) for k in range(len(items))}
        results: list[PipelineOutput | ItemFailure | None] = [None] * len(items)
        pending: dict[int, dict[str, float]] = {}  # row -> chain nodes computed ahead
        for index, node_id in enumerate(order):
            runner = self._runners[node_id]
            rows: list[int] = []
            values: list[Any] = []
            for k in list(outputs):
                item_id, item = items[k]
                if node_id in pending.get(k, ()):
                    rows.append(k)
                    values.append(_CHAINED)
                    continue
                value = self.plan.node_input(node_id, item, outputs[k])
                if isinstance(value, AudioChunks) and not runner.executor.accepts_chunks:
                    kept = outputs.pop(k)  # a long file: the rest of its nodes stream it
                    try:
                        rest = order[index:]
                        self._stream_rest(item_id, item, value, kept, rest, pending.pop(k, {}))
                        results[k] = PipelineOutput(item_id, self.result(kept))
                    except RemoteMediaError as error:
                        results[k] = ItemFailure(item_id, error.node_id, error)
                    continue
                rows.append(k)
                values.append(value)
            chain = self._chain_of.get(node_id)
            if chain is not None and chain.nodes[0] == node_id:
                self._run_chain(chain, rows, values, outputs, pending)
            ids = [items[k][0] for k in rows]
            if any(value is _CHAINED for value in values):
                done = _in_row_order(runner, node_id, rows, values, ids, pending)
            else:
                done = runner.execute_many(values, ids)
            for k, out in zip(rows, done, strict=True):
                if isinstance(out, Failed):
                    results[k] = ItemFailure(items[k][0], out.error.node_id, out.error)
                    del outputs[k]
                    pending.pop(k, None)
                elif out is not _CHAINED:
                    outputs[k][node_id] = out
            for kept in outputs.values():  # free what no later node reads
                for node in [n for n in kept if last_use.get(n) == index and n not in self.outputs]:
                    del kept[node]
        for k, kept in outputs.items():
            results[k] = PipelineOutput(items[k][0], self.result(kept))
        return [r for r in results if r is not None]

    @staticmethod
    def _run_chain(
        chain: FusedChain,
        rows: list[int],
        values: list[Any],
        outputs: dict[int, dict[str, Any]],
        pending: dict[int, dict[str, float]],
    ) -> None:
        """Run ``chain`` (at its first node) over the rows of ``values`` it can take:
        each one it computes gets its outputs, its nodes in ``pending`` and the
        :data:`_CHAINED` mark in ``values``; the others run node by node."""
        taken = [i for i, v in enumerate(values) if chain.accepts(v)]
        if not taken:
            return
        for i, done in zip(taken, chain.run([values[i] for i in taken]), strict=True):
            if done is not None:  # else a kernel refused it: node by node, for its error
                outputs[rows[i]].update(done[0])
                pending[rows[i]] = done[1]
                values[i] = _CHAINED

    def _outcome(
        self, item_id: str, item: Any, seed: Mapping[str, Any] | None = None
    ) -> PipelineOutput | ItemFailure:
        try:
            return self.run_item(item_id, item, seed)
        except RemoteMediaError as error:
            return ItemFailure(item_id, error.node_id, error)

    def runner(self, node_id: str) -> NodeRunner:
        """The started runner of ``node_id``."""
        return self._runners[node_id]

    def node_metrics(self) -> list[NodeMetrics]:
        """The figures of each node it runs, in manifest order (``skipped`` for nodes
        never built)."""
        result = []
        for node_id, node in self.plan.nodes.items():
            if node_id not in self.order:
                continue
            runner = self._runners.get(node_id)
            if runner is not None:
                result.append(runner.metrics())
            else:
                result.append(
                    NodeMetrics(
                        node_id=node_id, node_type=node.spec.node_type, runtime=node.runtime
                    )
                )
        return result

    def close(self) -> None:
        """Clean every node up (reverse execution order); idempotent, never raises."""
        self.chains = []
        self._chain_of = {}
        for node_id in reversed(list(self._runners)):
            try:
                self._runners[node_id].cleanup()
            except Exception:
                logger.exception("cleanup of node %r failed", node_id)


_CHAINED = object()
"""Marks an item whose output at a node a fused chain has computed already."""


def _in_row_order(
    runner: NodeRunner,
    node_id: str,
    rows: Sequence[int],
    values: Sequence[Any],
    item_ids: Sequence[str],
    pending: dict[int, dict[str, float]],
) -> list[Any]:
    """A chain node's step over a batch, row by row as the node alone runs it: the
    rows the chain computed are counted (:data:`_CHAINED`), the others executed;
    a failure is :class:`Failed`."""
    done: list[Any] = []
    for k, value, item_id in zip(rows, values, item_ids, strict=True):
        try:
            if value is _CHAINED:
                runner.record_chained(pending[k].pop(node_id), item_id=item_id)
                done.append(_CHAINED)
            else:
                done.append(runner.execute(value, item_id=item_id))
        except RemoteMediaError as error:
            done.append(Failed(error))
    return done


class _ItemStream:
    """One item's :class:`AudioChunks` pushed through the nodes that can stream.

    Args:
        executor: The started executor.
        item_id: The item.
        item: The pipeline input of the item.
        source: The chunks (the first streamed node's input).
        outputs: The outputs computed so far, completed in place.
    """

    def __init__(
        self,
        executor: LocalExecutor,
        item_id: str,
        item: Any,
        source: AudioChunks,
        outputs: dict[str, Any],
    ) -> None:
        self.executor = executor
        self.plan = executor.plan
        self.item_id = item_id
        self.item = item
        self.source = source
        self.outputs = outputs
        self.streams: dict[str, ChunkStream] = {}
        self.feeds: dict[str, str | None] = {}  # streamed node -> streamed parent (None: source)
        self.pieces: dict[str, list[AudioBuffer]] = {}

    def run(self, nodes: tuple[str, ...]) -> None:
        graph = self.plan.graph
        later: list[str] = []
        for node_id in nodes:
            streamed, feed = self._stream_input(node_id)
            if streamed:
                runner = self.executor.runner(node_id)
                stream = runner.open_stream(item_id=self.item_id)
                if stream is not None:
                    self.streams[node_id] = stream
                    self.feeds[node_id] = feed
                    continue
                if not runner.executor.accepts_chunks:
                    _warn_whole(node_id, runner, self.source)
            later.append(node_id)
        for node_id, stream in self.streams.items():
            needed = any(child not in self.streams for child in graph.children(node_id))
            if stream.emits_audio and (node_id in self.executor.outputs or needed):
                self.pieces[node_id] = []
        producer = self._producer()
        chunks = iter(self.source.chunks())
        while True:
            try:
                chunk = next(chunks, None)
            except Exception as exc:  # reading the audio failed
                raise wrap_error(exc, node_id=producer, item_id=self.item_id) from exc
            if chunk is None:
                break
            self._deliver(None, chunk)
        for node_id, stream in self.streams.items():
            runner = self.executor.runner(node_id)
            out = runner.stream_step(stream.finish, item_id=self.item_id)
            runner.stream_done()
            if stream.emits_audio:
                if out is not None:
                    self._keep(node_id, out)
                    self._deliver(node_id, out)
                if node_id in self.pieces:
                    self.outputs[node_id] = self._joined(node_id)
            else:
                self.outputs[node_id] = out
        for node_id in later:
            value = self.plan.node_input(node_id, self.item, self.outputs)
            runner = self.executor.runner(node_id)
            self.outputs[node_id] = runner.execute(value, item_id=self.item_id)

    def _stream_input(self, node_id: str) -> tuple[bool, str | None]:
        """Whether ``node_id``'s input is a stream, and where its chunks come
        from: a streamed parent, or None for the source itself."""
        parents = self.plan.graph.parents(node_id)
        if len(parents) > 1:
            return False, None
        if parents and parents[0] in self.streams:
            return self.streams[parents[0]].emits_audio, parents[0]
        if parents and parents[0] not in self.outputs:
            return False, None  # a parent that runs after the stream
        value = self.outputs[parents[0]] if parents else self.item
        return value is self.source, None  # a node that takes chunks as they are streams too

    def _producer(self) -> str | None:
        """The node whose output the source is (None: the pipeline input)."""
        for node_id, value in self.outputs.items():
            if value is self.source:
                return node_id
        return None

    def _deliver(self, parent: str | None, piece: AudioBuffer) -> None:
        for node_id, feed in self.feeds.items():
            if feed != parent:
                continue
            stream = self.streams[node_id]
            runner = self.executor.runner(node_id)
            out = runner.stream_step(functools.partial(stream.push, piece), item_id=self.item_id)
            if stream.emits_audio and out is not None:
                self._keep(node_id, out)
                self._deliver(node_id, out)

    def _keep(self, node_id: str, piece: Any) -> None:
        if not isinstance(piece, AudioBuffer):
            raise NodeExecutionError(
                f"its stream gave {type(piece).__name__}, not audio",
                node_id=node_id,
                item_id=self.item_id,
            )
        if node_id in self.pieces:
            self.pieces[node_id].append(piece)

    def _joined(self, node_id: str) -> AudioBuffer:
        pieces = self.pieces.pop(node_id)
        if not pieces:
            raise NodeExecutionError(
                "its stream gave no audio", node_id=node_id, item_id=self.item_id
            )
        return concat_audio(pieces)


_warned: set[str] = set()


def _warn_whole(node_id: str, runner: NodeRunner, source: AudioChunks) -> None:
    if node_id not in _warned:
        _warned.add(node_id)
        logger.warning(
            "node %r (%s) cannot stream: it gets long audio (%s) whole, so memory "
            "grows with its length",
            node_id,
            runner.executor.node_type,
            source,
        )
