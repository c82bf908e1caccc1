"""The :class:`Pipeline` facade: parse, build, execute, collect.

``Pipeline(manifest, runtime="local")`` runs in this process (the reference
semantics); ``runtime="ray"`` runs every node as Ray actors. Both give the
same outputs. Use it as a context manager so every node is cleaned up, also
on errors and Ctrl-C::

    with rm.Pipeline("examples/gain.json", runtime="local") as p:
        print(p.run(3.0))          # {"offset": 10.0}
        for out in p.map(items):   # streams {sink_id: output} per item
            ...
        print(p.metrics.summary())
"""

from __future__ import annotations

import enum
import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Literal, Protocol

from remotemedia_ray._runtime.execution import (
    BatchSink,
    ItemBytes,
    ItemFailure,
    PipelineOutput,
    SinkCommit,
)
from remotemedia_ray._runtime.plan import PipelinePlan
from remotemedia_ray._runtime.pools import PoolLayout
from remotemedia_ray._runtime.ray_cluster import RayOptions
from remotemedia_ray._runtime.retry import RetryPolicy
from remotemedia_ray.audio import AudioBuffer
from remotemedia_ray.errors import ConfigError, RemoteMediaError
from remotemedia_ray.graph import PipelineGraph
from remotemedia_ray.manifest import Manifest, RuntimeHint, check_runtime_hint
from remotemedia_ray.metrics import NodeMetrics, PipelineMetrics, micros

__all__ = ["OnError", "Pipeline", "PipelineState"]

logger = logging.getLogger(__name__)

OnError = Literal["raise", "record"]


class PipelineState(str, enum.Enum):
    """Where a pipeline is in its life (the data model's execution states).

    ``Parsing`` (the manifest) and ``Building`` (the plan, then the nodes) ->
    ``Executing`` (items running) -> ``Complete`` or ``Failed``; ``Collecting``
    while :attr:`Pipeline.metrics` gathers the nodes' figures (from every
    actor on Ray), after which the pipeline returns to the state it was in.
    ``Idle`` before the first run.
    """

    IDLE = "Idle"
    PARSING = "Parsing"
    BUILDING = "Building"
    EXECUTING = "Executing"
    COLLECTING = "Collecting"
    COMPLETE = "Complete"
    FAILED = "Failed"


class _Executor(Protocol):
    def start(self) -> None: ...
    def stream(
        self,
        items: Iterable[tuple[str, Any]],
        *,
        ordered: bool = True,
        sink: BatchSink | None = None,
        item_bytes: ItemBytes | None = None,
        batch_bytes: int | None = None,
    ) -> Iterator[PipelineOutput | ItemFailure | SinkCommit]: ...
    def node_metrics(self) -> list[NodeMetrics]: ...
    def close(self) -> None: ...


def _load_manifest(manifest: Manifest | str | Path | Mapping[str, Any]) -> Manifest:
    """The manifest given; a bad argument type is a TypeError, a bad manifest a ManifestError."""
    if isinstance(manifest, Manifest):
        return manifest
    if isinstance(manifest, Mapping):
        return Manifest.from_dict(dict(manifest))
    if isinstance(manifest, (str, Path)):
        text = str(manifest)
        if text.lstrip().startswith("{"):
            return Manifest.from_json(text)
        return Manifest.from_file(manifest)
    raise TypeError(
        f"manifest must be a Manifest, a path, JSON text or a dict, got {type(manifest).__name__}"
    )


def _check_on_error(on_error: object) -> None:
    if on_error not in ("raise", "record"):
        raise ConfigError(f"on_error must be 'raise' or 'record', got {on_error!r}")


class Pipeline:
    """A manifest ready to run, locally or on Ray.

    Args:
        manifest: A :class:`~remotemedia_ray.manifest.Manifest`, a path to a
            .json/.yaml file, JSON text, or a dict.
        runtime: ``"ray"`` (actors on an embedded local Ray or a cluster) or
            ``"local"`` (in this process).
        address: Ray cluster to join (default: ``RAY_ADDRESS``, else an
            embedded local Ray). Only for ``runtime="ray"``.
        on_error: ``"raise"`` (default): a failing item raises its error;
            ``"record"``: it is recorded in :attr:`failures` and the rest go on.
        retry_policy: Backoff for retryable errors (default: 3 retries from 100 ms).
        node_runtime: Overrides every node's ``runtime_hint`` (``"cpython"``,
            ``"rust_native"`` or ``"auto"``).
        options: Ray options as one :class:`~remotemedia_ray.RayOptions`
            (only for ``runtime="ray"``).
        **ray_options: Ray options by name (``batch_size=4``, ``fuse=True``, ...:
            the fields of :class:`~remotemedia_ray.RayOptions`); they override
            those of ``options``. Only for ``runtime="ray"``.

    Everything is checked here, before anything runs: options (an unknown,
    mistyped or out-of-range one raises :class:`~remotemedia_ray.errors.ConfigError`
    naming it), the manifest (:class:`~remotemedia_ray.errors.ManifestError`
    naming the field and node), and every node's implementation. A
    ``manifest`` of another type than those above raises ``TypeError``.
    """

    def __init__(
        self,
        manifest: Manifest | str | Path | Mapping[str, Any],
        runtime: Literal["ray", "local"] = "ray",
        address: str | None = None,
        *,
        on_error: OnError = "raise",
        retry_policy: RetryPolicy | None = None,
        node_runtime: RuntimeHint | None = None,
        options: RayOptions | None = None,
        **ray_options: Any,
    ) -> None:
        if runtime not in ("ray", "local"):
            raise ConfigError(f"runtime must be 'ray' or 'local', got {runtime!r}")
        _check_on_error(on_error)
        if runtime == "local":
            given = (["address"] if address is not None else []) + (
                ["options"] if options is not None else []
            )
            if given or ray_options:
                names = ", ".join(given + sorted(ray_options))
                raise ConfigError(
                    f"runtime='local' takes no Ray option(s): {names} (use runtime='ray')"
                )
            self.options: RayOptions | None = None
            """The checked Ray options (None for ``runtime="local"``)."""
        elif options is not None and not isinstance(options, RayOptions):
            raise ConfigError(f"options must be a RayOptions, got {type(options).__name__}")
        else:
            base = options or RayOptions()
            self.options = base.merged(**ray_options) if ray_options else base
        self.runtime = runtime
        self.address = address
        self.on_error: OnError = on_error
        self.retry_policy = retry_policy or RetryPolicy()
        self._state = PipelineState.IDLE
        self._lock = threading.RLock()
        self._executor: _Executor | None = None
        self._closed = False
        self._ids = itertools.count()
        self.failures: list[ItemFailure] = []
        """Items that failed under ``on_error="record"``, in the order they failed."""
        self._elapsed_s = 0.0
        self._items_ok = 0
        self._items_failed = 0
        self._audio_seconds = 0.0

        self._state = PipelineState.PARSING
        try:
            node_runtime = check_runtime_hint(node_runtime, "node_runtime")
            self.manifest = _load_manifest(manifest)
            self._plan = PipelinePlan.build(self.manifest, node_runtime)
        except BaseException:
            self._state = PipelineState.FAILED
            raise
        self._state = PipelineState.IDLE

    # -- lifecycle --------------------------------------------------------------------

    @property
    def state(self) -> PipelineState:
        """The current :class:`PipelineState`."""
        return self._state

    @property
    def pipeline_id(self) -> str | None:
        """The id in the names of this pipeline's Ray actors (``rm:<id>:<pool>:<replica>``,
        where a pool is a node id, or ``fused``, ``fused-1``, ... when fused; see
        :meth:`plan`), once it is open on Ray; None otherwise."""
        pipeline_id = getattr(self._executor, "pipeline_id", None)
        return pipeline_id if isinstance(pipeline_id, str) else None

    @property
    def graph(self) -> PipelineGraph:
        """The manifest's DAG (execution order, sources, sinks)."""
        return self._plan.graph

    def plan(self, *, cpus: float | None = None, gpus: float | None = None) -> PoolLayout:
        """The actor pools that run (or would run) this pipeline, and why.

        On Ray: the pools built, once the pipeline is open; before that, those
        it would build on a cluster of ``cpus`` CPUs and ``gpus`` GPUs (default:
        the embedded Ray's, i.e. ``options.num_cpus`` or this machine's CPUs,
        and this machine's GPUs). Nothing is started. ``print(p.plan())`` shows
        a table; see :class:`~remotemedia_ray.PoolLayout`.
        """
        from remotemedia_ray._runtime.pools import local_layout, plan_pools
        from remotemedia_ray._runtime.ray_cluster import machine_cpus, visible_gpus

        built = getattr(self._executor, "layout", None)
        if isinstance(built, PoolLayout) and built.pools and cpus is None and gpus is None:
            return built
        if cpus is None:
            cpus = float(self.options.num_cpus or machine_cpus()) if self.options else 1.0
        if gpus is None:
            gpus = float(visible_gpus())
        if cpus <= 0 or gpus < 0:
            raise ConfigError(f"cpus must be > 0 and gpus >= 0, got cpus={cpus}, gpus={gpus}")
        if self.options is None:
            return local_layout(self._plan, cpus, gpus)
        return plan_pools(
            self._plan,
            fuse=self.options.fuse,
            cpus=cpus,
            gpus=gpus,
            fused_replicas=self.options.fused_replicas,
        )

    def open(self) -> Pipeline:
        """Build the pipeline (create and initialize every node); idempotent."""
        with self._lock:
            if self._closed:
                raise RemoteMediaError("this pipeline is closed; create a new one")
            if self._executor is not None:
                return self
            self._state = PipelineState.BUILDING
            executor = self._make_executor()
            try:
                executor.start()
            except BaseException:
                self._state = PipelineState.FAILED
                raise
            self._executor = executor
            self._state = PipelineState.IDLE
            return self

    def _make_executor(self) -> _Executor:
        if self.runtime == "local":
            from remotemedia_ray._runtime.local import LocalExecutor

            return LocalExecutor(self._plan, retry_policy=self.retry_policy)
        from remotemedia_ray._runtime.ray_executor import RayExecutor

        return RayExecutor(
            self._plan, address=self.address, retry_policy=self.retry_policy, options=self.options
        )

    def close(self) -> None:
        """Clean up every node and release resources; idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._executor is not None:
                self._executor.close()

    def __enter__(self) -> Pipeline:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- running ----------------------------------------------------------------------

    def run(self, item: Any, *, item_id: str | None = None) -> PipelineOutput:
        """Run one item; returns ``{sink_id: output}`` (a :class:`PipelineOutput`).

        Raises the item's error (naming node and item), whatever ``on_error`` says.
        """
        (result,) = self._stream([(self._next_id(item_id), item)], ordered=True, raise_=True)
        assert isinstance(result, PipelineOutput)
        return result

    def map(
        self,
        items: Iterable[Any],
        *,
        ordered: bool = True,
        ids: Iterable[str] | None = None,
        on_error: OnError | None = None,
    ) -> Iterator[PipelineOutput]:
        """Stream the results of many items.

        Args:
            items: The inputs, consumed lazily.
            ordered: Yield results in input order (else as they complete).
            ids: Item ids (default: a running counter); each result's
                ``item_id`` names its item.
            on_error: Overrides the pipeline's policy for this call. Under
                ``"record"`` a failing item is skipped and added to :attr:`failures`.
        """
        policy = on_error or self.on_error
        _check_on_error(policy)
        pairs = self._pairs(items, ids)
        return self._stream(pairs, ordered=ordered, raise_=policy == "raise")

    def write(
        self,
        items: Iterable[Any],
        sink: BatchSink,
        *,
        ids: Iterable[str] | None = None,
        on_error: OnError | None = None,
        local_batch: int | None = None,
        item_bytes: Callable[[Any], int | None] | None = None,
        batch_bytes: int | None = None,
    ) -> Iterator[SinkCommit]:
        """Run many items and hand each batch's outputs to ``sink`` where they were produced.

        On Ray the actor that ran a batch (or, unfused, a task beside the sink
        actors) calls ``sink.write(outputs, item_ids)`` with the outputs of the
        batch's items that succeeded; only the sink's small record comes back.
        The local runtime calls it in this process, every ``local_batch`` items
        (default :data:`~remotemedia_ray._runtime.local.SINK_BATCH`). Yields one
        :class:`~remotemedia_ray._runtime.execution.SinkCommit` per batch, as
        batches complete. Failures follow ``on_error`` as in :meth:`map`; an
        item the sink could not take fails at ``sink.node_id``.

        With ``item_bytes`` (an item's size in bytes, or None when unknown) and
        ``batch_bytes``, a batch also ends once its items hold ``batch_bytes``,
        so a batch's work and memory follow its inputs' size.
        """
        if batch_bytes is not None and batch_bytes < 1:
            raise ConfigError(f"batch_bytes must be >= 1, got {batch_bytes}")
        policy = on_error or self.on_error
        _check_on_error(policy)
        if local_batch is not None and local_batch < 1:
            raise ConfigError(f"local_batch must be >= 1, got {local_batch}")
        self.open()
        from remotemedia_ray._runtime.local import LocalExecutor

        local = self._executor if isinstance(self._executor, LocalExecutor) else None
        before = local.sink_batch if local is not None else None
        if local is not None and local_batch is not None:
            local.sink_batch = local_batch  # for this call only
        try:
            for outcome in self._stream(
                self._pairs(items, ids),
                ordered=False,
                raise_=policy == "raise",
                sink=sink,
                item_bytes=item_bytes,
                batch_bytes=batch_bytes,
            ):
                assert isinstance(outcome, SinkCommit)
                yield outcome
        finally:
            if local is not None and before is not None:
                local.sink_batch = before

    def _pairs(self, items: Iterable[Any], ids: Iterable[str] | None) -> Iterator[tuple[str, Any]]:
        """``(item_id, item)`` of each item: the next of ``ids``, else a counter's.

        Raises:
            ConfigError: ``ids`` ends before ``items`` (after the items it named ran).
        """
        id_iter = iter(ids) if ids is not None else None
        for count, item in enumerate(items):
            given = None
            if id_iter is not None:
                given = next(id_iter, None)
                if given is None:
                    raise ConfigError(
                        f"ids holds {count} id(s) but items has more: give one id per item"
                    )
            yield self._next_id(None if given is None else str(given)), item

    def _next_id(self, item_id: str | None) -> str:
        return str(next(self._ids)) if item_id is None else str(item_id)

    def _stream(
        self,
        pairs: Iterable[tuple[str, Any]],
        *,
        ordered: bool,
        raise_: bool,
        sink: BatchSink | None = None,
        item_bytes: ItemBytes | None = None,
        batch_bytes: int | None = None,
    ) -> Iterator[Any]:
        self.open()
        assert self._executor is not None
        start = time.perf_counter()
        away = 0.0  # time the caller held the results (between items): not ours
        handed: float | None = None
        self._state = PipelineState.EXECUTING
        try:
            for outcome in self._executor.stream(
                self._count_audio(pairs),
                ordered=ordered,
                sink=sink,
                item_bytes=item_bytes,
                batch_bytes=batch_bytes,
            ):
                if isinstance(outcome, ItemFailure):
                    self._items_failed += 1
                    if raise_:
                        raise outcome.error
                    self.failures.append(outcome)
                    logger.warning("item %r failed: %s", outcome.item_id, outcome.error)
                    continue
                self._items_ok += len(outcome.item_ids) if isinstance(outcome, SinkCommit) else 1
                handed = time.perf_counter()
                yield outcome
                away += time.perf_counter() - handed
                handed = None
            self._state = PipelineState.COMPLETE
        except KeyboardInterrupt:
            self._state = PipelineState.FAILED
            self.close()
            raise
        except GeneratorExit:  # the caller stopped reading (a break): nothing failed
            self._state = PipelineState.IDLE
            raise
        except BaseException:
            self._state = PipelineState.FAILED
            raise
        finally:
            now = time.perf_counter()
            if handed is not None:  # the caller stopped while holding a result
                away += now - handed
            self._elapsed_s += now - start - away

    def _count_audio(self, pairs: Iterable[tuple[str, Any]]) -> Iterator[tuple[str, Any]]:
        for item_id, item in pairs:
            if isinstance(item, AudioBuffer):
                self._audio_seconds += item.duration_seconds
            yield item_id, item

    # -- results ----------------------------------------------------------------------

    @property
    def metrics(self) -> PipelineMetrics:
        """Figures of every run so far, nodes aggregated over items.

        ``total_time_ms`` is the wall time spent in :meth:`run`, :meth:`map` and
        :meth:`write`, not counting the caller's time between the items they
        yield (rounded to whole milliseconds; ``total_time_us`` keeps
        the microseconds), ``total_memory_mb`` the peak over the nodes.
        """
        with self._lock:
            before, self._state = self._state, PipelineState.COLLECTING
            try:
                nodes = (
                    self._executor.node_metrics()
                    if self._executor is not None
                    else [
                        NodeMetrics(
                            node_id=n.node_id, node_type=n.spec.node_type, runtime=n.runtime
                        )
                        for n in self._plan.nodes.values()
                    ]
                )
            finally:
                self._state = before
        seconds = self._elapsed_s
        return PipelineMetrics(
            total_time_us=micros(seconds),
            total_memory_mb=max((n.memory_mb for n in nodes), default=0.0),
            node_count=len(nodes),
            nodes=nodes,
            items=self._items_ok,
            items_failed=self._items_failed,
            audio_seconds=self._audio_seconds,
            realtime_factor=(self._audio_seconds / seconds) if seconds > 0 else None,
        )

    def __repr__(self) -> str:
        return (
            f"Pipeline({self.manifest.metadata.name!r}, runtime={self.runtime!r}, "
            f"state={self._state.value})"
        )
