"""The Ray executor (``runtime="ray"``): every node a pool of Ray actors.

Building: one pool of ``execution.replicas`` :class:`NodeActor` actors per
node, created with :func:`actor_options`, probed for readiness with a
timeout (a failing ``initialize`` fails the build, naming the node).

Executing: items are grouped into batches (``batch_size``); each batch is put
in the object store once and flows through the graph as ObjectRefs: every
node's call receives its parents' output refs and Ray hands the actor the
tables without the driver ever fetching them. Only the sinks' tables come
back to the driver. At most ``max_in_flight`` batches are in the pipeline at
once (backpressure), so memory stays flat however many items stream through.
Results are yielded in input order, or as batches complete.

Faults: a dead actor is restarted by Ray (``max_restarts``) and its calls
re-run (``max_task_retries``); each batch has exactly one result, so no item
is lost or duplicated. When Ray gives up, every item of the affected batch is
reported failed at that node.
"""

from __future__ import annotations

import itertools
import logging
import sys
import time
import uuid
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from remotemedia_ray.errors import NodeExecutionError, RemoteMediaError, message_of
from remotemedia_ray.metrics import NodeMetrics
from remotemedia_ray.runtime.actors import CONTROL_GROUP, FusedActor, NodeActor
from remotemedia_ray.runtime.batches import BatchItem, decode_batch, encode_batch, first_error
from remotemedia_ray.runtime.execution import ItemFailure, PipelineOutput
from remotemedia_ray.runtime.plan import PIPELINE_INPUT, PipelinePlan
from remotemedia_ray.runtime.ray_cluster import (
    RayConnection,
    RayOptions,
    actor_options,
    check_resources,
    cpu_share,
    fused_actor_options,
    node_gpus,
)
from remotemedia_ray.runtime.retry import RetryPolicy

__all__ = ["RayExecutor", "RayOptions"]

logger = logging.getLogger(__name__)


_DEFAULT_BATCH = 8
_MAX_AUTO_BATCH = 32


@dataclass
class _Pool:
    node_id: str
    actors: list[Any]
    next_index: itertools.cycle = field(init=False)  # type: ignore[type-arg]

    def __post_init__(self) -> None:
        self.next_index = itertools.cycle(range(len(self.actors)))

    def pick(self) -> Any:
        return self.actors[next(self.next_index)]


_FUSED = "__fused__"


@dataclass
class _Batch:
    """One batch in flight: its item ids, the refs of its sink outputs, and every
    ref of its calls (cancelled when the pipeline closes mid-stream)."""

    ids: list[str]
    sink_refs: dict[str, Any]
    all_refs: list[Any]


class RayExecutor:
    """Runs a :class:`PipelinePlan` as Ray actors (see the module docs)."""

    def __init__(
        self,
        plan: PipelinePlan,
        *,
        address: str | None = None,
        retry_policy: RetryPolicy | None = None,
        options: RayOptions | None = None,
    ) -> None:
        self.plan = plan
        self.options = options or RayOptions()
        self.retry_policy = retry_policy or RetryPolicy()
        self.pipeline_id = uuid.uuid4().hex[:12]
        self.connection = RayConnection(
            address, self.options.num_cpus, self.options.object_store_memory
        )
        self._pools: dict[str, _Pool] = {}
        self._actor_nodes: dict[str, str] = {}
        self._in_flight: deque[_Batch] = deque()
        self._closed = False
        sizes = [n.spec.execution.batch_size for n in plan.nodes.values()]
        self._batch_size_chosen = self.options.batch_size is not None or any(
            s is not None for s in sizes
        )
        self.batch_size = self.options.batch_size or min(
            (s for s in sizes if s is not None), default=_DEFAULT_BATCH
        )
        widest = max((n.spec.execution.replicas for n in plan.nodes.values()), default=1)
        self.max_in_flight = self.options.max_in_flight or max(4, 2 * widest)

    # -- building ---------------------------------------------------------------------

    def start(self) -> None:
        """Connect to Ray, create every node's actors and wait until all are initialized."""
        import ray

        self.connection.connect()
        try:
            self._create_actors(ray)
            self._await_ready(ray)
        except BaseException:
            self.close()
            raise
        expected = self.options.expected_items
        if expected is not None and not self._batch_size_chosen:
            widest = max(len(pool.actors) for pool in self._pools.values())
            self.batch_size = max(1, min(_MAX_AUTO_BATCH, expected // (4 * widest)))

    def _create_fused(self, ray: Any) -> None:
        total = ray.cluster_resources()
        cpus = float(total.get("CPU", 1.0))
        replicas = self.options.fused_replicas or max(1, int(cpus))
        nodes = list(self.plan.nodes.values())
        for node in nodes:
            _pickle_user_class(node.cls)
            check_resources(total, node_gpus(node), node.node_id)
        remote_cls = ray.remote(concurrency_groups={CONTROL_GROUP: 1})(FusedActor)
        share = cpu_share(cpus, replicas)
        actors = []
        for replica in range(replicas):
            opts = fused_actor_options(
                nodes, pipeline_id=self.pipeline_id, replica=replica, cpus_per_actor=share
            )
            actor = remote_cls.options(**opts).remote(self.plan, self.retry_policy)
            actors.append(actor)
            self._actor_nodes[actor._actor_id.hex()] = "fused"
        self._pools[_FUSED] = _Pool(_FUSED, actors)
        if self.options.max_in_flight is None:
            self.max_in_flight = max(4, 2 * replicas)

    def _create_actors(self, ray: Any) -> None:
        if self.options.fuse:
            self._create_fused(ray)
            return
        total = ray.cluster_resources()
        n_actors = sum(n.spec.execution.replicas for n in self.plan.nodes.values())
        share = cpu_share(float(total.get("CPU", 1.0)), n_actors)
        remote_cls = ray.remote(concurrency_groups={CONTROL_GROUP: 1})(NodeActor)
        for node in self.plan.nodes.values():  # every actor gets the whole plan
            _pickle_user_class(node.cls)
        for node_id in self.plan.graph.execution_order:
            node = self.plan.nodes[node_id]
            actors = []
            for replica in range(node.spec.execution.replicas):
                opts = actor_options(
                    node, pipeline_id=self.pipeline_id, replica=replica, cpus_per_actor=share
                )
                check_resources(total, opts["num_gpus"], node_id)
                actor = remote_cls.options(**opts).remote(self.plan, node_id, self.retry_policy)
                actors.append(actor)
                self._actor_nodes[actor._actor_id.hex()] = node_id
            self._pools[node_id] = _Pool(node_id, actors)

    def _await_ready(self, ray: Any) -> None:
        probes = {
            actor.ready.remote(): pool.node_id
            for pool in self._pools.values()
            for actor in pool.actors
        }
        deadline = time.monotonic() + self.options.ready_timeout_s
        pending = list(probes)
        while pending:
            timeout = deadline - time.monotonic()
            if timeout <= 0:
                waiting = sorted({probes[r] for r in pending})
                raise NodeExecutionError(
                    f"timed out after {self.options.ready_timeout_s:g}s waiting for the actors "
                    f"of node(s) {', '.join(waiting)} to start (not enough resources?)",
                    node_id=waiting[0],
                )
            done, pending = ray.wait(pending, num_returns=1, timeout=timeout)
            for ref in done:
                try:
                    ray.get(ref)
                except Exception as exc:
                    node_id = probes[ref]
                    raise NodeExecutionError(
                        f"failed to initialize: {message_of(_ray_cause(exc))}",
                        node_id=node_id,
                    ) from None

    # -- executing --------------------------------------------------------------------

    def _submit(self, ray: Any, items: list[tuple[str, Any]]) -> _Batch:
        table = encode_batch([BatchItem(item_id, value) for item_id, value in items])
        input_ref = ray.put(table)
        ids = [item_id for item_id, _ in items]
        sinks_order = self.plan.graph.sinks
        if _FUSED in self._pools:
            actor = self._pools[_FUSED].pick()
            out = actor.execute_batch.options(num_returns=len(sinks_order)).remote(input_ref)
            out_refs = [out] if len(sinks_order) == 1 else list(out)
            return _Batch(ids, dict(zip(sinks_order, out_refs, strict=True)), out_refs)
        refs: dict[str, Any] = {PIPELINE_INPUT: input_ref}
        for node_id in self.plan.graph.execution_order:
            args = [refs[key] for key in self.plan.input_keys(node_id)]
            refs[node_id] = self._pools[node_id].pick().execute_batch.remote(*args)
        node_refs = [refs[node_id] for node_id in self.plan.graph.execution_order]
        return _Batch(ids, {s: refs[s] for s in sinks_order}, node_refs)

    def _collect(self, ray: Any, batch: _Batch) -> list[PipelineOutput | ItemFailure]:
        per_sink: dict[str, list[BatchItem]] = {}
        for sink, ref in batch.sink_refs.items():
            try:
                per_sink[sink] = decode_batch(ray.get(ref))
            except Exception as exc:
                error = self._batch_error(exc, sink)
                return [ItemFailure(i, error.node_id, _for_item(error, i)) for i in batch.ids]
        results: list[PipelineOutput | ItemFailure] = []
        for row, item_id in enumerate(batch.ids):
            failure = first_error(items[row] for items in per_sink.values())
            if failure is not None:
                results.append(ItemFailure(item_id, failure.node_id, failure))
            else:
                outputs = {sink: items[row].value for sink, items in per_sink.items()}
                results.append(PipelineOutput(item_id, outputs))
        return results

    def _batch_error(self, exc: BaseException, sink: str) -> RemoteMediaError:
        """A whole batch failed (an actor died for good, or a batch could not be handled)."""
        cause = _ray_cause(exc)
        if isinstance(cause, RemoteMediaError):
            return cause
        actor_id = getattr(exc, "actor_id", None)
        node_id = self._actor_nodes.get(actor_id, sink) if isinstance(actor_id, str) else sink
        return NodeExecutionError(
            f"the batch was lost after Ray's retries: {message_of(cause)}", node_id=node_id
        )

    def stream(
        self, items: Iterable[tuple[str, Any]], *, ordered: bool = True
    ) -> Iterator[PipelineOutput | ItemFailure]:
        """Run items through the actors in batches, keeping ``max_in_flight`` batches going."""
        import ray

        source = iter(items)
        pending = self._in_flight
        pending.clear()
        exhausted = False
        while True:
            while not exhausted and len(pending) < self.max_in_flight:
                chunk = list(itertools.islice(source, self.batch_size))
                if not chunk:
                    exhausted = True
                    break
                pending.append(self._submit(ray, chunk))
            if not pending:
                return
            if ordered:
                batch = pending.popleft()
            else:
                first_refs = {id(b): next(iter(b.sink_refs.values())) for b in pending}
                ready, _ = ray.wait(list(first_refs.values()), num_returns=1)
                batch = next(b for b in pending if first_refs[id(b)] in ready)
                pending.remove(batch)
            yield from self._collect(ray, batch)

    # -- collecting -------------------------------------------------------------------

    def node_metrics(self, timeout_s: float = 30.0) -> list[NodeMetrics]:
        """Each node's figures aggregated over its actors, in manifest order.

        A restarted actor starts its figures from zero: after a crash a node's
        counts cover the work done since; the pipeline's item totals stay exact.
        """
        import ray

        if self._closed and self._last_metrics is not None:
            return self._last_metrics
        result = []
        fused: list[NodeMetrics] = []
        if _FUSED in self._pools and not self._closed:
            for actor in self._pools[_FUSED].actors:
                try:
                    fused.extend(ray.get(_control(actor.metrics), timeout=timeout_s))
                except Exception as exc:  # a dead actor's figures are gone
                    logger.warning("no metrics from a fused actor: %s", exc)
        for node_id, node in self.plan.nodes.items():
            pool = self._pools.get(node_id)
            parts: list[NodeMetrics] = [m for m in fused if m.node_id == node_id]
            if pool is not None and not self._closed:
                for actor in pool.actors:
                    try:
                        parts.append(ray.get(_control(actor.metrics), timeout=timeout_s))
                    except Exception as exc:  # a dead actor's figures are gone
                        logger.warning("no metrics from an actor of %r: %s", node_id, exc)
            result.append(NodeMetrics.merge(node_id, node.spec.node_type, node.runtime, parts))
        self._last_metrics = result
        return result

    def close(self) -> None:
        """Clean every actor's node up, end the actors, and stop Ray if we started it."""
        if self._closed:
            return
        try:
            import ray

            if ray.is_initialized() and self._pools:
                # Batches still running (an error or Ctrl-C stopped the stream) are
                # cancelled, so metrics and cleanup do not queue behind them.
                interrupted = bool(self._in_flight)
                for batch in self._in_flight:
                    for ref in batch.all_refs:
                        try:
                            ray.cancel(ref)
                        except Exception as exc:  # already finished, or the actor is gone
                            logger.debug("could not cancel a batch: %s", exc)
                self._in_flight.clear()
                self.node_metrics(timeout_s=5.0 if interrupted else 30.0)
                refs = [_control(a.cleanup) for p in self._pools.values() for a in p.actors]
                try:
                    ray.get(refs, timeout=self.options.cleanup_timeout_s)
                except Exception as exc:
                    logger.warning("cleanup of some node actors failed: %s", exc)
                for pool in self._pools.values():
                    for actor in pool.actors:
                        ray.kill(actor, no_restart=True)
        finally:
            self._closed = True
            self.connection.close()

    _last_metrics: list[NodeMetrics] | None = None


def _control(method: Any) -> Any:
    """Call an actor's control method in its own group, never behind data calls."""
    return method.options(concurrency_group=CONTROL_GROUP).remote()


def _ray_cause(exc: BaseException) -> BaseException:
    """The user-level exception inside a Ray error, when there is one."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, BaseException):
        return cause
    try:
        as_cause = exc.as_instanceof_cause()  # type: ignore[attr-defined]
    except Exception:
        return exc
    return as_cause if isinstance(as_cause, BaseException) else exc


def _for_item(error: RemoteMediaError, item_id: str) -> RemoteMediaError:
    """A copy of a batch-wide error naming one item."""
    clone = type(error).__new__(type(error))
    clone.__dict__.update(error.__dict__)
    Exception.__init__(clone, error.message)
    clone.item_id = item_id
    return clone


def _pickle_user_class(cls: type) -> None:
    """Ship a user's node class by value when its module may not exist on the workers."""
    module = cls.__module__
    if module == "__main__" or module.startswith("remotemedia_ray."):
        return
    try:
        from ray import cloudpickle

        cloudpickle.register_pickle_by_value(sys.modules[module])
    except (KeyError, ValueError, ImportError):
        pass
