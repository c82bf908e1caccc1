"""The Ray executor (``runtime="ray"``): the nodes run in pools of Ray actors.

Building: the pools of :func:`~remotemedia_ray._runtime.pools.plan_pools`
(one per node, or nodes fused by their resource needs), each of
``replicas`` :class:`NodeActor` or :class:`FusedActor` actors created with
:func:`pool_actor_options`, probed for readiness with a timeout (a failing
``initialize`` fails the build, naming the node). A pool that needs GPUs the
cluster lacks fails the build, or, with ``wait_for_resources``, asks the
autoscaler for them and waits.

Executing: items are grouped into batches (``batch_size``); each batch is put
in the object store once and flows through the pools as ObjectRefs: every
pool's call receives the output refs of the nodes it reads and Ray hands the
actor the tables without the driver ever fetching them. Only the sinks' tables come
back to the driver. At most ``max_in_flight`` batches are in the pipeline at
once (backpressure), so memory stays flat however many items stream through.
Results are yielded in input order, or as batches complete.

Faults: a dead actor is restarted by Ray (``max_restarts``) and its calls
re-run (``max_task_retries``); each batch has exactly one result, so no item
is lost or duplicated. When Ray gives up, every item of the affected batch is
reported failed at that node.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from remotemedia_ray._runtime.actors import (
    CONTROL_GROUP,
    FusedActor,
    NodeActor,
    write_sink_tables,
)
from remotemedia_ray._runtime.batches import BatchItem, decode_batch, encode_batch, item_outcomes
from remotemedia_ray._runtime.execution import (
    BatchSink,
    ItemBytes,
    ItemFailure,
    ItemSource,
    PipelineOutput,
    SinkCommit,
    for_item,
    write_batch,
)
from remotemedia_ray._runtime.plan import PIPELINE_INPUT, PipelinePlan
from remotemedia_ray._runtime.pools import Pool, PoolLayout, plan_pools
from remotemedia_ray._runtime.ray_cluster import (
    RayConnection,
    RayOptions,
    check_resources,
    node_gpus,
    pool_actor_options,
)
from remotemedia_ray._runtime.retry import RetryPolicy
from remotemedia_ray.errors import (
    ConfigError,
    ManifestError,
    NodeExecutionError,
    RemoteMediaError,
    message_of,
)
from remotemedia_ray.metrics import NodeMetrics

__all__ = ["RayExecutor", "RayOptions"]

logger = logging.getLogger(__name__)


_DEFAULT_BATCH = 8
_HEALTH_S = 2.0
"""Seconds between two looks for lost Ray nodes while batches are in flight."""
_MAX_SENDS = 4
"""How often one batch is sent through the actors at most (lost nodes)."""
_RENAME_S = 10.0
"""How long a replacement actor waits for the name of the actor it replaces."""
_NODE_VERDICT_S = 60.0
"""How long a batch whose actor became unreachable waits for Ray to declare its node
dead (or alive) before it is sent again."""


@dataclass
class _Pool:
    name: str
    actors: list[Any]
    next_index: itertools.cycle = field(init=False)  # type: ignore[type-arg]

    def __post_init__(self) -> None:
        self.next_index = itertools.cycle(range(len(self.actors)))

    def pick(self) -> Any:
        return self.actors[next(self.next_index)]


_COMMIT = "__commit__"


@dataclass
class _Batch:
    """One batch in flight: its item ids and input, the refs of its sink outputs,
    every ref of its calls (cancelled when the pipeline closes mid-stream), and
    the actors it went to (it is sent again when one of them is lost with its node)."""

    ids: list[str]
    input_ref: Any
    sink_refs: dict[str, Any]
    all_refs: list[Any]
    actors: set[str]
    sink: BatchSink | None = None
    sent: int = 1


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
        self.layout: PoolLayout = PoolLayout("ray", 0.0, 0.0, ())
        """The pools built (empty until :meth:`start`)."""
        self._actor_nodes: dict[str, str] = {}
        """The pool of each actor (actor id hex -> pool name)."""
        self._ready: set[str] = set()
        """The actors whose nodes initialized (actor id hex)."""
        self._replicas: dict[str, int] = {}
        self._hosts: dict[str, str] = {}
        """The Ray node each actor lives on (actor id -> node id, both hex)."""
        self._last_health = time.monotonic()
        self._in_flight: deque[_Batch] = deque()
        self._stream_lock = threading.Lock()
        self._streaming: int | None = None
        """The thread reading the open stream (one at a time), or None."""
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
        finally:
            if self._asked_autoscaler and ray.is_initialized():
                from ray.autoscaler.sdk import request_resources

                # The actors hold what they got (or the build failed): the request ends.
                with contextlib.suppress(Exception):
                    request_resources(bundles=[])
            self._asked_autoscaler = False
        expected = self.options.expected_items
        if expected is not None and not self._batch_size_chosen:
            widest = max((len(pool.actors) for pool in self._pools.values()), default=1)
            most = self.options.max_batch_size
            self.batch_size = max(1, min(most, expected // (4 * widest)))

    def _create_actors(self, ray: Any) -> None:
        total = ray.cluster_resources()
        options = self.options
        self.layout = plan_pools(
            self.plan,
            fuse=options.fuse,
            cpus=float(total.get("CPU", 1.0)),
            gpus=float(total.get("GPU", 0.0)),
            fused_replicas=options.fused_replicas,
        )
        for node in self.plan.nodes.values():  # every actor gets the whole plan
            _pickle_user_class(node.cls)
        self._check_fit(total)
        actor_cls = FusedActor if options.fuse else NodeActor
        self._remote_cls = ray.remote(concurrency_groups={CONTROL_GROUP: 1})(actor_cls)
        for pool in self.layout.pools:
            self._pools[pool.name] = _Pool(
                pool.name, [self._new_actor(pool.name, r) for r in range(pool.replicas)]
            )
        if options.max_in_flight is None:
            widest = max((pool.replicas for pool in self.layout.pools), default=1)
            self.max_in_flight = max(4, 2 * widest)

    def _check_fit(self, total: dict[str, float]) -> None:
        """Fail, naming a node, when the pools do not fit the cluster: one actor asks
        for more CPUs or GPUs than it has, or the GPU pools' actors together for more
        GPUs. With ``wait_for_resources``, ask the autoscaler for every actor's
        resources instead (the actors then wait, up to ``ready_timeout_s``).

        The request replaces any standing ``request_resources`` of the cluster,
        and is withdrawn once the build ends."""
        pools = self.layout.pools
        have_cpus, have_gpus = total.get("CPU", 0.0), total.get("GPU", 0.0)
        gpus = sum(pool.num_gpus * pool.replicas for pool in pools)
        cpus = sum(pool.num_cpus * pool.replicas for pool in pools)
        too_big = [p for p in pools if p.num_cpus > have_cpus or p.num_gpus > have_gpus]
        if not too_big and gpus <= have_gpus and cpus <= have_cpus + 1e-6:
            return
        if not self.options.wait_for_resources:
            for pool in too_big:
                node = max(pool.nodes, key=lambda n: node_gpus(self.plan.nodes[n]))
                check_resources(total, pool.num_gpus, node)  # names the GPUs per actor
                raise ManifestError(
                    f"node {pool.nodes[0]!r} asks for {pool.num_cpus:g} CPU(s) per actor but "
                    f"the Ray cluster has {have_cpus:g}",
                    node_id=pool.nodes[0],
                )
            if gpus <= have_gpus:
                asking = [p for p in pools if p.num_cpus >= 1]
                raise ManifestError(
                    f"the pools' actors ask for {cpus:g} CPU(s) at once ("
                    + ", ".join(
                        f"{'/'.join(p.nodes)}: {p.replicas} actor(s) x {p.num_cpus:g}"
                        for p in asking
                    )
                    + f") but the Ray cluster has {have_cpus:g}: give them fewer CPUs per "
                    "actor (execution.num_cpus) or fewer execution.replicas",
                    node_id=(asking or list(pools))[0].nodes[0],
                )
            gpu_pools = [p for p in pools if p.num_gpus > 0]
            raise ManifestError(
                f"the GPU nodes need {gpus:g} GPU(s) at once ("
                + ", ".join(
                    f"{'/'.join(p.nodes)}: {p.replicas} actor(s) x {p.num_gpus:g}"
                    for p in gpu_pools
                )
                + f") but the Ray cluster has {have_gpus:g}: give them fewer GPUs per actor "
                "(execution.num_gpus) or fewer execution.replicas",
                node_id=gpu_pools[0].nodes[0],
            )
        from ray.autoscaler.sdk import request_resources

        bundles = [
            {"CPU": pool.num_cpus, "GPU": pool.num_gpus}
            for pool in pools
            for _ in range(pool.replicas)
        ]
        logger.warning(
            "waiting up to %gs for the cluster to add resources for %s",
            self.options.ready_timeout_s,
            ", ".join(repr(n) for pool in (too_big or pools) for n in pool.nodes),
        )
        request_resources(bundles=bundles)
        self._asked_autoscaler = True

    def _new_actor(self, pool_id: str, replica: int) -> Any:
        """One actor of a pool, created, not yet ready."""
        pool = self._pool_spec(pool_id)
        nodes = [self.plan.nodes[n] for n in pool.nodes]
        opts = pool_actor_options(pool, nodes, pipeline_id=self.pipeline_id, replica=replica)
        if pool.fused:
            actor = self._remote_cls.options(**opts).remote(self.plan, self.retry_policy, pool)
        else:
            actor = self._remote_cls.options(**opts).remote(
                self.plan, pool.nodes[0], self.retry_policy
            )
        self._actor_nodes[actor._actor_id.hex()] = pool_id
        self._replicas[actor._actor_id.hex()] = replica
        return actor

    def _pool_spec(self, pool_id: str) -> Pool:
        return next(pool for pool in self.layout.pools if pool.name == pool_id)

    def _replacement(self, pool_id: str, replica: int) -> Any:
        """A new actor for a lost one, under its name once Ray has let go of it."""
        deadline = time.monotonic() + _RENAME_S
        while True:
            try:
                return self._new_actor(pool_id, replica)
            except ValueError:  # the lost actor's name is not free yet
                if time.monotonic() > deadline:
                    self._replaced += 1
                    return self._new_actor(pool_id, 1000 + self._replaced)
                time.sleep(0.2)

    _remote_cls: Any = None
    _asked_autoscaler = False

    def _await_ready(self, ray: Any, pools: Iterable[_Pool] | None = None) -> None:
        """Wait until every actor (of ``pools``; default all) is initialized, and note
        the Ray node each one lives on."""
        probes = {
            actor.ready.remote(): (self._pool_spec(pool.name).nodes, actor)
            for pool in (self._pools.values() if pools is None else pools)
            for actor in pool.actors
        }
        deadline = time.monotonic() + self.options.ready_timeout_s
        pending = list(probes)
        while pending:
            timeout = deadline - time.monotonic()
            if timeout <= 0:
                waiting = sorted({n for r in pending for n in probes[r][0]})
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
                    cause = _ray_cause(exc)
                    node_id = getattr(cause, "node_id", None)
                    raise NodeExecutionError(
                        f"failed to initialize: {message_of(cause)}",
                        node_id=node_id if node_id in self.plan.nodes else probes[ref][0][0],
                    ) from None
                self._ready.add(probes[ref][1]._actor_id.hex())
        hosts = {ref: actor for ref, (_, actor) in probes.items()}
        places = [actor.host.remote() for actor in hosts.values()]
        for actor, host in zip(hosts.values(), ray.get(places), strict=True):
            self._hosts[actor._actor_id.hex()] = host

    # -- executing --------------------------------------------------------------------

    def _submit(
        self,
        ray: Any,
        items: list[tuple[str, Any]],
        sink: BatchSink | None = None,
        sink_ref: Any = None,
    ) -> _Batch:
        table = encode_batch([BatchItem(item_id, value) for item_id, value in items])
        batch = _Batch([item_id for item_id, _ in items], ray.put(table), {}, [], set(), sink)
        self._send(ray, batch, sink_ref)
        return batch

    def _send(self, ray: Any, batch: _Batch, sink_ref: Any) -> None:
        """Send ``batch`` (again) through the actors; fills its refs and actors."""
        sinks_order = self.plan.graph.sinks
        batch.actors = set()
        pools = self.layout.pools
        if batch.sink is not None and len(pools) == 1 and pools[0].fused:
            # One fused pool: the actor that ran the batch writes its outputs.
            actor = self._pools[pools[0].name].pick()
            batch.actors.add(actor._actor_id.hex())
            ref = actor.execute_batch.remote(batch.input_ref, sink=sink_ref)
            batch.sink_refs, batch.all_refs = {_COMMIT: ref}, [ref]
            return
        refs: dict[str, Any] = {PIPELINE_INPUT: batch.input_ref}
        batch.all_refs = []
        for pool in pools:
            args = [refs[key] for key in pool.inputs]
            actor = self._pools[pool.name].pick()
            batch.actors.add(actor._actor_id.hex())
            if pool.fused:
                out = actor.execute_batch.options(num_returns=len(pool.outputs)).remote(*args)
                outs = [out] if len(pool.outputs) == 1 else list(out)
            else:
                outs = [actor.execute_batch.remote(*args)]
            refs.update(zip(pool.outputs, outs, strict=True))
            batch.all_refs.extend(outs)
        if batch.sink is not None:
            # The sink tables go to a task beside them, never to the driver. It holds no
            # CPU (the actors hold them all) and may run again: a sink is idempotent.
            task = self._sink_task(ray)
            ref = task.remote(
                sink_ref,
                batch.ids,
                list(sinks_order),
                *(refs[s] for s in sinks_order),
                order=self.plan.graph.execution_order,
            )
            batch.sink_refs = {_COMMIT: ref}
            batch.all_refs.append(ref)
            return
        batch.sink_refs = {s: refs[s] for s in sinks_order}

    def _sink_task(self, ray: Any) -> Any:
        if self._write_task is None:
            self._write_task = ray.remote(num_cpus=0, max_retries=3)(write_sink_tables)
        return self._write_task

    _write_task: Any = None

    def _collect(
        self, ray: Any, batch: _Batch
    ) -> Sequence[PipelineOutput | ItemFailure | SinkCommit] | None:
        """The outcomes of a finished batch; None when it was lost with a node and
        sent again (it is still in flight)."""
        if batch.sink is not None:
            try:
                outcome: list[SinkCommit | ItemFailure] = ray.get(batch.sink_refs[_COMMIT])
            except Exception as exc:
                if self._lost_with_a_node(ray, batch, exc):
                    return None
                error = self._batch_error(exc, batch.sink.node_id)
                return [ItemFailure(i, error.node_id, for_item(error, i)) for i in batch.ids]
            return outcome
        per_sink: dict[str, list[BatchItem]] = {}
        for sink, ref in batch.sink_refs.items():
            try:
                per_sink[sink] = decode_batch(ray.get(ref))
            except Exception as exc:
                if self._lost_with_a_node(ray, batch, exc):
                    return None
                error = self._batch_error(exc, sink)
                return [ItemFailure(i, error.node_id, for_item(error, i)) for i in batch.ids]
        return item_outcomes(batch.ids, per_sink, self.plan.graph.execution_order)

    # -- node loss --------------------------------------------------------------------

    def _lost_with_a_node(self, ray: Any, batch: _Batch, exc: BaseException) -> bool:
        """Whether a batch that failed with ``exc`` was lost with its Ray node and was
        sent again.

        * An actor that died (``ActorDiedError``) on a node that lives on failed
          the batch for good (its ``max_restarts`` said so); on a dead node, the
          batch goes again.
        * An unreachable actor (``ActorUnavailableError``) may be on a node
          that is going away: Ray marks a node dead only after its heartbeats
          stop for a while, so the verdict is awaited (up to
          :data:`_NODE_VERDICT_S` seconds); either way the batch goes again, to
          the actors that remain.
        * A result lost with its node's object store (``ObjectLostError``) is
          made again.
        """
        from ray.exceptions import ActorUnavailableError, ObjectLostError, RayActorError

        if not isinstance(exc, (RayActorError, ObjectLostError)) or batch.sent >= _MAX_SENDS:
            return False
        if self._recover(ray, force=True, failed=batch):
            return True
        if isinstance(exc, ObjectLostError):
            return self._resend(ray, batch)
        if not isinstance(exc, ActorUnavailableError):
            return False
        deadline = time.monotonic() + _NODE_VERDICT_S
        while time.monotonic() < deadline:
            time.sleep(_HEALTH_S / 2)
            if self._recover(ray, force=True, failed=batch):
                return True
        return self._resend(ray, batch)

    def _resend(self, ray: Any, batch: _Batch) -> bool:
        if batch.sent >= _MAX_SENDS:
            return False
        batch.sent += 1
        self._send(ray, batch, self._sink_ref)
        return True

    def _recover(self, ray: Any, *, force: bool = False, failed: _Batch | None = None) -> bool:
        """Notice Ray nodes that died with actors of ours, and carry on without them.

        Checked every :data:`_HEALTH_S` seconds while waiting for batches (or at
        once with ``force``). The lost actors are ended for good (Ray would
        restart them where no resources may be left) and dropped from their
        pools; a pool left empty gets a new actor. Every batch in flight that
        went to a lost actor (and ``failed``, a batch whose result could not be
        fetched) is sent again, at most :data:`_MAX_SENDS` times; a sink is
        idempotent and outputs are collected once, so no item is lost or doubled.
        Returns whether any batch was sent again (``failed`` among them, when given).
        """
        now = time.monotonic()
        if not force and now - self._last_health < _HEALTH_S:
            return False
        self._last_health = now
        try:
            alive = {node["NodeID"] for node in ray.nodes() if node.get("Alive")}
        except Exception as exc:  # the GCS is busy or gone: try again later
            logger.debug("could not list the Ray nodes: %s", exc)
            return False
        lost = {actor for actor, host in self._hosts.items() if host not in alive}
        if not lost:
            return False
        fresh: list[_Pool] = []
        for pool in list(self._pools.values()):
            gone = [a for a in pool.actors if a._actor_id.hex() in lost]
            if not gone:
                continue
            for actor in gone:
                logger.warning("an actor of %r was lost with its Ray node", pool.name)
                with contextlib.suppress(Exception):
                    ray.kill(actor, no_restart=True)
                self._hosts.pop(actor._actor_id.hex(), None)
            keep = [a for a in pool.actors if a._actor_id.hex() not in lost]
            if not keep:
                keep = [
                    self._replacement(pool.name, self._replicas.get(gone[0]._actor_id.hex(), 0))
                ]
                fresh.append(_Pool(pool.name, keep))
            self._pools[pool.name] = _Pool(pool.name, keep)
        if fresh:
            self._await_ready(ray, fresh)
        resent: list[_Batch] = []
        for batch in [*self._in_flight, *([failed] if failed is not None else [])]:
            if not (batch.actors & lost) and batch is not failed:
                continue
            for ref in batch.all_refs:
                with contextlib.suppress(Exception):
                    ray.cancel(ref)
            if self._resend(ray, batch):
                resent.append(batch)
        return any(b is failed for b in resent) if failed is not None else bool(resent)

    _replaced = 0
    _sink_ref: Any = None

    def _batch_error(self, exc: BaseException, sink: str) -> RemoteMediaError:
        """A whole batch failed (an actor died for good, or a batch could not be handled)."""
        cause = _ray_cause(exc)
        if isinstance(cause, RemoteMediaError):
            return cause
        actor_id = getattr(exc, "actor_id", None)
        pool_id = self._actor_nodes.get(actor_id) if isinstance(actor_id, str) else None
        nodes = self._pool_spec(pool_id).nodes if pool_id is not None else ()
        where = f" (an actor of the pool of {', '.join(nodes)})" if len(nodes) > 1 else ""
        return NodeExecutionError(
            f"the batch was lost after Ray's retries{where}: {message_of(cause)}",
            node_id=nodes[0] if nodes else sink,
        )

    def stream(
        self,
        items: Iterable[tuple[str, Any]],
        *,
        ordered: bool = True,
        sink: BatchSink | None = None,
        item_bytes: ItemBytes | None = None,
        batch_bytes: int | None = None,
    ) -> Iterator[PipelineOutput | ItemFailure | SinkCommit]:
        """Run items through the actors in batches, keeping ``max_in_flight`` batches going.

        A batch holds :attr:`batch_size` items, fewer once their ``item_bytes``
        reach ``batch_bytes`` (see :class:`ItemSource`). With ``sink``, each
        batch's outputs are handed to it where they were produced, and its
        :class:`SinkCommit` is yielded instead of the outputs.

        One stream runs at a time: a stream of another thread waits for this one
        to end; a second stream started in the thread of an open one (two
        ``map`` iterators read in turn) is refused, since it would wait for itself.

        Raises:
            ConfigError: A stream of this thread is still open.
        """
        import ray

        if self._streaming == threading.get_ident():
            raise ConfigError(
                "a Ray pipeline runs one map/write at a time: this thread is still reading "
                "another one; finish it (or close it) first, or use a second Pipeline"
            )
        with self._stream_lock:
            self._streaming = threading.get_ident()
            try:
                yield from self._stream(
                    ray, ItemSource(items), ordered, sink, item_bytes, batch_bytes
                )
            finally:
                self._streaming = None

    def _stream(
        self,
        ray: Any,
        source: ItemSource,
        ordered: bool,
        sink: BatchSink | None,
        item_bytes: ItemBytes | None,
        batch_bytes: int | None,
    ) -> Iterator[PipelineOutput | ItemFailure | SinkCommit]:
        if not self.layout.pools:  # no nodes: every item's result is {}
            while chunk := source.take(self.batch_size, item_bytes, batch_bytes):
                done = [PipelineOutput(item_id, {}) for item_id, _ in chunk]
                yield from done if sink is None else write_batch(sink, done)
            return
        sink_ref = self._sink_ref = ray.put(sink) if sink is not None else None
        pending = self._in_flight
        pending.clear()
        exhausted = False
        while True:
            while not exhausted and not source.held and len(pending) < self.max_in_flight:
                chunk = source.take(self.batch_size, item_bytes, batch_bytes)
                if not chunk:
                    exhausted = True
                    break
                pending.append(self._submit(ray, chunk, sink, sink_ref))
            if not pending:
                if source.held:  # the items read before the input failed have run
                    source.take(self.batch_size)  # raises the input's error
                return
            batch = self._next_done(ray, ordered)
            outcomes = self._collect(ray, batch)
            if outcomes is None:  # sent again after a node was lost
                if ordered:
                    pending.appendleft(batch)
                else:
                    pending.append(batch)
                continue
            yield from outcomes

    def _next_done(self, ray: Any, ordered: bool) -> _Batch:
        """Take the next finished batch off the queue (the first one, when ``ordered``),
        watching for lost nodes while waiting."""
        pending = self._in_flight
        while True:
            candidates = [pending[0]] if ordered else list(pending)
            by_ref = {next(iter(b.sink_refs.values())): b for b in candidates}
            ready, _ = ray.wait(list(by_ref), num_returns=1, timeout=_HEALTH_S)
            if self._recover(ray):  # at most every _HEALTH_S s; batches may have been sent again
                continue
            if ready:
                batch = by_ref[ready[0]]
                pending.remove(batch)
                return batch

    # -- collecting -------------------------------------------------------------------

    def node_metrics(self, timeout_s: float = 30.0) -> list[NodeMetrics]:
        """Each node's figures aggregated over its actors, in manifest order.

        A restarted actor starts its figures from zero: after a crash a node's
        counts cover the work done since; the pipeline's item totals stay exact.
        """
        import ray

        if self._closed and self._last_metrics is not None:
            return self._last_metrics
        figures: list[NodeMetrics] = []
        asked = [  # all at once, then one deadline for every answer
            (pool_id, _control(actor.metrics))
            for pool_id, pool in ([] if self._closed else self._pools.items())
            for actor in pool.actors
            if actor._actor_id.hex() in self._ready
        ]
        deadline = time.monotonic() + timeout_s
        for pool_id, ref in asked:
            try:
                got = ray.get(ref, timeout=max(0.0, deadline - time.monotonic()))
            except Exception as exc:  # a dead actor's figures are gone
                logger.warning("no metrics from an actor of pool %r: %s", pool_id, exc)
                continue
            figures.extend(got if isinstance(got, list) else [got])
        result = []
        for node_id, node in self.plan.nodes.items():
            parts = [m for m in figures if m.node_id == node_id]
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
                refs = [  # an actor whose node never initialized has nothing to clean up
                    _control(a.cleanup)
                    for p in self._pools.values()
                    for a in p.actors
                    if a._actor_id.hex() in self._ready
                ]
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
