"""The Ray actor that runs one node: a plain class, made remote at start.

A :class:`NodeActor` builds its node executor and calls ``initialize(params)``
in ``__init__``, so when Ray restarts a dead actor (``max_restarts``) the node
is initialized again by the actor itself. ``execute_batch`` takes the batch
tables of the node's parents (connection order) and returns its own batch
table: items that failed upstream pass through with their error, items that
fail here are recorded with this node's id, and the rest go on.

Control calls (``metrics``, ``cleanup``) run in their own concurrency group,
:data:`CONTROL_GROUP`, so they never queue behind data calls: closing a
pipeline mid-stream cancels the batches in flight, and Ray keeps a cancelled
call's place in an actor's ordered queue for up to 30 seconds. A lock keeps a
control call from running while a batch is being processed.
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from remotemedia_ray._runtime.batches import (
    BatchItem,
    decode_batch,
    encode_batch,
    first_error,
    item_outcomes,
)
from remotemedia_ray._runtime.execution import (
    BatchSink,
    Failed,
    ItemFailure,
    NodeRunner,
    PipelineOutput,
    SinkCommit,
    wrap_error,
    write_batch,
)
from remotemedia_ray._runtime.plan import PIPELINE_INPUT
from remotemedia_ray._runtime.retry import CircuitBreaker, RetryPolicy
from remotemedia_ray.errors import NodeExecutionError, RemoteMediaError, message_of
from remotemedia_ray.metrics import NodeMetrics

if TYPE_CHECKING:
    from remotemedia_ray._runtime.plan import PipelinePlan
    from remotemedia_ray._runtime.pools import Pool

__all__ = ["CONTROL_GROUP", "FusedActor", "NodeActor", "write_sink_tables"]

CONTROL_GROUP = "control"
"""The concurrency group of the actors' control calls (``metrics``, ``cleanup``)."""


class NodeActor:
    """Runs one node of a pipeline inside a Ray actor.

    Args:
        plan: The pipeline's plan (its data-flow rule decides this node's input).
        node_id: The manifest id of the node.
        retry_policy: Backoff for retryable errors.
    """

    def __init__(
        self,
        plan: PipelinePlan,
        node_id: str,
        retry_policy: RetryPolicy,
        breaker_threshold: int = 5,
        breaker_cooldown_s: float = 30.0,
    ) -> None:
        node = plan.nodes[node_id]
        self.lock = threading.Lock()
        self.plan = plan
        self.node_id = node_id
        self.input_keys = plan.input_keys(node_id)
        self.order = plan.graph.execution_order
        self.runner = NodeRunner(
            node.create(),
            retry_policy=retry_policy,
            breaker=CircuitBreaker(breaker_threshold, breaker_cooldown_s),
        )
        self.runner.initialize(node.spec.params)

    def ready(self) -> int:
        """Readiness probe: the actor's process id once its node is initialized."""
        return os.getpid()

    def host(self) -> str:
        """The id of the Ray node this actor lives on (hex)."""
        return _host()

    def execute_batch(self, *tables: pa.Table) -> pa.Table:
        """Run the node on every item of a batch: one table per input key of the
        plan (per parent, or the pipeline input)."""
        with self.lock:
            return self._execute_batch(tables)

    def _execute_batch(self, tables: tuple[pa.Table, ...]) -> pa.Table:
        try:
            inputs = [decode_batch(table) for table in tables]
            results = self._run_items(inputs)
            return encode_batch(results)
        except RemoteMediaError:
            raise
        except Exception as exc:  # a bug in batch handling, not in the node
            raise NodeExecutionError(
                f"could not process a batch: {message_of(wrap_error(exc, node_id=None))}",
                node_id=self.node_id,
            ) from exc

    def _run_items(self, inputs: list[list[BatchItem]]) -> list[BatchItem]:
        """Each row's item run through the node (one call for a node that batches);
        an item failed upstream keeps its error."""
        results: list[BatchItem] = []
        rows: list[int] = []
        values: list[Any] = []
        for row, first in enumerate(inputs[0]):
            upstream = first_error((batch[row] for batch in inputs), self.order)
            results.append(BatchItem(first.item_id, error=upstream))
            if upstream is None:
                given = {
                    key: batch[row].value
                    for key, batch in zip(self.input_keys, inputs, strict=True)
                }
                rows.append(row)
                values.append(self.plan.node_input(self.node_id, given.get(PIPELINE_INPUT), given))
        done = self.runner.execute_many(values, [results[row].item_id for row in rows])
        for row, out in zip(rows, done, strict=True):
            if isinstance(out, Failed):
                results[row].error = out.error
            else:
                results[row].value = out
        return results

    def metrics(self) -> NodeMetrics:
        """This actor's figures for its node."""
        with self.lock:
            return self.runner.metrics()

    def cleanup(self) -> None:
        """Clean the node up (idempotent)."""
        with self.lock:
            self.runner.cleanup()


class FusedActor:
    """Runs several nodes of a pipeline inside one Ray actor (fusion): a pool of
    :func:`~remotemedia_ray._runtime.pools.plan_pools`, or the whole pipeline.

    Its nodes' executors live in this actor and items flow between them in
    memory, exactly as in the local runtime. ``execute_batch`` takes one batch
    table per input of the pool (the pipeline input, or nodes of earlier
    pools) and returns one per output of the pool (in the pool's order).
    Replicas of this actor process different batches in parallel.
    """

    def __init__(
        self, plan: PipelinePlan, retry_policy: RetryPolicy, pool: Pool | None = None
    ) -> None:
        from remotemedia_ray._runtime.local import LocalExecutor

        self.lock = threading.Lock()
        self.plan = plan
        self.inputs = pool.inputs if pool is not None else (PIPELINE_INPUT,)
        self.executor = LocalExecutor(
            plan,
            retry_policy=retry_policy,
            nodes=None if pool is None else pool.nodes,
            outputs=None if pool is None else pool.outputs,
        )
        self.executor.start()

    def ready(self) -> int:
        """Readiness probe: the actor's process id once every node is initialized."""
        return os.getpid()

    def host(self) -> str:
        """The id of the Ray node this actor lives on (hex)."""
        return _host()

    def execute_batch(
        self, *tables: pa.Table, sink: BatchSink | None = None
    ) -> pa.Table | list[pa.Table] | list[SinkCommit | ItemFailure]:
        """Run the nodes on every item; one output table per output of the pool.

        With ``sink`` (a pool that holds every sink), the outputs go to
        ``sink.write`` here instead, and the sink's commit (with the batch's
        failures) is returned.
        """
        with self.lock:
            outcomes = self._outcomes(tables)
            if sink is not None:
                return write_batch(sink, outcomes)
            tables_out = [
                encode_batch(
                    [
                        BatchItem(o.item_id, error=o.error)
                        if isinstance(o, ItemFailure)
                        else BatchItem(o.item_id, o[node_id])
                        for o in outcomes
                    ]
                )
                for node_id in self.executor.outputs
            ]
            return tables_out[0] if len(tables_out) == 1 else tables_out

    def _outcomes(self, tables: tuple[pa.Table, ...]) -> list[PipelineOutput | ItemFailure]:
        """Each row's outcome; an item failed upstream keeps its error."""
        inputs = [decode_batch(table) for table in tables]
        order = self.plan.graph.execution_order
        upstream = [
            first_error((batch[row] for batch in inputs), order) for row in range(len(inputs[0]))
        ]
        ok: list[tuple[str, Any]] = []
        seeds: list[dict[str, Any]] = []
        for row, first in enumerate(inputs[0]):
            if upstream[row] is None:
                given = {
                    key: batch[row].value for key, batch in zip(self.inputs, inputs, strict=True)
                }
                ok.append((first.item_id, given.pop(PIPELINE_INPUT, None)))
                seeds.append(given)
        ran = iter(self.executor.run_batch(ok, seeds))
        return [
            next(ran) if error is None else ItemFailure(first.item_id, error.node_id, error)
            for first, error in zip(inputs[0], upstream, strict=True)
        ]

    def metrics(self) -> list[NodeMetrics]:
        """This actor's figures, one entry per node."""
        with self.lock:
            return self.executor.node_metrics()

    def cleanup(self) -> None:
        """Clean every node up (idempotent)."""
        with self.lock:
            self.executor.close()


def _host() -> str:
    import ray

    node_id: str = ray.get_runtime_context().get_node_id()
    return node_id


def write_sink_tables(
    sink: BatchSink,
    item_ids: list[str],
    sinks: list[str],
    *tables: pa.Table,
    order: tuple[str, ...] = (),
) -> list[SinkCommit | ItemFailure]:
    """Hand a batch's sink tables (several pools) to ``sink``, in a Ray task; an item
    failed in several branches fails with the error of the first node in ``order``."""
    per_sink = {sink_id: decode_batch(table) for sink_id, table in zip(sinks, tables, strict=True)}
    return write_batch(sink, item_outcomes(item_ids, per_sink, order))
