"""Running one node: retries, circuit breaker, metrics and error tagging.

:class:`NodeRunner` owns one :class:`~remotemedia_ray.nodes.base.NodeExecutor`
and is what every executor calls, in-process (local runtime) or inside a Ray
actor: errors come out as :class:`~remotemedia_ray.errors.RemoteMediaError`
subclasses naming the node and item, whatever the node raised.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from remotemedia_ray._runtime.retry import (
    CircuitBreaker,
    CircuitOpenError,
    CircuitState,
    RetryPolicy,
)
from remotemedia_ray.audio import AudioBuffer, AudioChunks, Clips
from remotemedia_ray.errors import (
    ConfigError,
    MarshalingError,
    NodeExecutionError,
    PythonError,
    RemoteMediaError,
    message_of,
)
from remotemedia_ray.metrics import NodeMetrics, NodeMetricsRecorder
from remotemedia_ray.nodes.base import ChunkStream, NodeExecutor

__all__ = [
    "BatchSink",
    "Failed",
    "ItemFailure",
    "ItemSource",
    "NodeRunner",
    "PipelineOutput",
    "SinkCommit",
    "for_item",
    "join_chunks",
    "wrap_error",
    "write_batch",
]


class PipelineOutput(dict[str, Any]):
    """The result of one item: ``{sink_id: output}``, plus the item's ``item_id``."""

    item_id: str

    def __init__(self, item_id: str, outputs: Mapping[str, Any]) -> None:
        super().__init__(outputs)
        self.item_id = item_id

    def __reduce__(self) -> tuple[Any, ...]:
        return (PipelineOutput, (self.item_id, dict(self)))


@dataclass(frozen=True)
class Failed:
    """One item's error among the outputs of :meth:`NodeRunner.execute_many`."""

    error: RemoteMediaError


@dataclass(frozen=True)
class ItemFailure:
    """An item that failed: its id, the node it failed at, and the error."""

    item_id: str
    node_id: str | None
    error: RemoteMediaError

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready record ``{item_id, node_id, error_type, error}``."""
        return {
            "item_id": self.item_id,
            "node_id": self.node_id,
            "error_type": type(self.error).__name__,
            "error": self.error.message,
        }


class BatchSink(Protocol):
    """Takes the outputs of a batch where they were produced (see :meth:`Pipeline.write`).

    ``node_id`` names the sink in the errors of items it could not take.
    ``write`` is called in the worker that ran the batch, with the outputs of
    the batch's items that succeeded, and returns a small record for the
    caller. It may run again for the same items (Ray retries a batch whose
    worker died), so it must be idempotent: the same items, the same effect.
    """

    @property
    def node_id(self) -> str:
        """The name of the sink in errors."""
        ...

    def write(self, outputs: Sequence[Mapping[str, Any]], item_ids: Sequence[str]) -> Any:
        """Take ``outputs[i]`` of item ``item_ids[i]``; returns the batch's record."""
        ...


@dataclass(frozen=True)
class SinkCommit:
    """A batch taken by a :class:`BatchSink`: its items and the sink's record."""

    item_ids: list[str]
    record: Any


def write_batch(
    sink: BatchSink, outcomes: Sequence[PipelineOutput | ItemFailure]
) -> list[SinkCommit | ItemFailure]:
    """Hand a batch's successful outputs to ``sink``; failures pass through.

    When the sink raises for several items, each half of them is written on its
    own, down to single items, so one output the sink cannot take (audio a
    format cannot hold) fails alone, named, and the others are written (in up
    to a few more commits). An error of the whole write (the storage: an
    ``OSError`` other than a path's own; a bad setting: a ``ConfigError``)
    fails every item given at once. A failed item fails at ``sink.node_id``;
    nothing of a failed write counts as done, so the batch can run again.
    """
    done = [o for o in outcomes if isinstance(o, PipelineOutput)]
    results: list[SinkCommit | ItemFailure] = [o for o in outcomes if isinstance(o, ItemFailure)]
    return [*results, *_write_parts(sink, done)] if done else results


def _write_parts(sink: BatchSink, done: list[PipelineOutput]) -> list[SinkCommit | ItemFailure]:
    ids = [o.item_id for o in done]
    try:
        return [SinkCommit(ids, sink.write(done, ids))]
    except Exception as exc:
        if len(done) > 1 and _one_item_may_cause(exc):
            half = len(done) // 2
            return [*_write_parts(sink, done[:half]), *_write_parts(sink, done[half:])]
        error = wrap_error(exc, node_id=sink.node_id)
        return [ItemFailure(i, sink.node_id, for_item(error, i)) for i in ids]


def _one_item_may_cause(error: BaseException) -> bool:
    """Whether a failed write may come from one of its items, not from the storage
    or a setting (those fail every part of the batch alike)."""
    if isinstance(error, (NotADirectoryError, IsADirectoryError, FileExistsError)):
        return True  # one item's path
    return not isinstance(error, (OSError, ConfigError))


ItemBytes = Callable[[Any], "int | None"]
"""The size in bytes of an item (its input file's), or None when unknown."""


class ItemSource:
    """The ``(item_id, item)`` pairs of a stream, taken a batch at a time.

    Both executors batch through :meth:`take`, so a batch's work and memory
    follow the size of its inputs (a long file's batch holds few items, short
    clips many). When the stream raises after some items of a batch, those
    items are still a batch: the error is raised by the next :meth:`take`, so
    they run (and yield) first, as they do when items run one by one.
    """

    def __init__(self, items: Iterable[tuple[str, Any]]) -> None:
        self._items = iter(items)
        self._error: BaseException | None = None

    @property
    def held(self) -> bool:
        """Whether the stream raised after the last batch (the next take raises it)."""
        return self._error is not None

    def take(
        self, count: int, item_bytes: ItemBytes | None = None, batch_bytes: int | None = None
    ) -> list[tuple[str, Any]]:
        """The next batch: at most ``count`` pairs, and with ``item_bytes`` and
        ``batch_bytes``, no more once their bytes reach ``batch_bytes`` (an item of
        unknown size counts as none; a batch holds at least one item). Empty at
        the end of the stream."""
        if self._error is not None:
            error, self._error = self._error, None
            raise error
        batch: list[tuple[str, Any]] = []
        held = 0
        try:
            for pair in self._items:
                batch.append(pair)
                if item_bytes is not None and batch_bytes is not None:
                    held += item_bytes(pair[1]) or 0
                    if held >= batch_bytes:
                        break
                if len(batch) >= count:
                    break
        except Exception as exc:
            if not batch:
                raise
            self._error = exc
        return batch


def for_item(error: RemoteMediaError, item_id: str) -> RemoteMediaError:
    """A copy of an error of a whole batch, naming one of its items."""
    clone = type(error).__new__(type(error))
    clone.__dict__.update(error.__dict__)
    Exception.__init__(clone, error.message)
    clone.item_id = item_id
    return clone


def wrap_error(
    error: BaseException, *, node_id: str | None, item_id: str | None = None
) -> RemoteMediaError:
    """``error`` as a RemoteMediaError tagged with node and item.

    Library errors keep their class; any other exception becomes a
    :class:`~remotemedia_ray.errors.PythonError` carrying its type, message and
    traceback (its ``__cause__`` is the original).
    """
    if isinstance(error, RemoteMediaError):
        return error.with_context(node_id=node_id, item_id=item_id)
    text = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    wrapped = PythonError(
        f"{type(error).__name__}: {error}", node_id=node_id, item_id=item_id, traceback=text
    )
    wrapped.__cause__ = error
    return wrapped


def join_chunks(value: Any) -> Any:
    """``value`` with every :class:`~remotemedia_ray.audio.AudioChunks` (itself,
    or one of a fan-in dict's values) read whole into an AudioBuffer."""
    if type(value) is AudioBuffer:  # the hot path
        return value
    if isinstance(value, AudioChunks):
        return value.read_all()
    if type(value) is dict and any(isinstance(v, AudioChunks) for v in value.values()):
        return {k: v.read_all() if isinstance(v, AudioChunks) else v for k, v in value.items()}
    return value


class NodeRunner:
    """One node executor plus the policies and figures around its calls."""

    def __init__(
        self,
        executor: NodeExecutor,
        *,
        retry_policy: RetryPolicy | None = None,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        self.executor = executor
        self.node_id = executor.node_id
        self.retry_policy = retry_policy or RetryPolicy()
        self.breaker = breaker or CircuitBreaker()
        self.recorder = NodeMetricsRecorder(
            executor.node_id or executor.node_type, executor.node_type, executor.runtime
        )
        self.stream_ms = 0.0

    def initialize(self, params: Mapping[str, Any]) -> None:
        """Initialize the node; failures raise NodeExecutionError naming it."""
        try:
            self.executor.initialize(params)
        except Exception as exc:
            cause = wrap_error(exc, node_id=self.node_id)
            raise NodeExecutionError(
                f"{self.executor.node_type} failed to initialize: {message_of(cause)}",
                node_id=self.node_id,
            ) from cause
        finally:
            self.recorder.sample_memory()

    def check_breaker(self, item_id: str | None) -> None:
        """Refuse the call (recorded as a failure) while the circuit breaker is open."""
        if not self.breaker.allow():
            error = CircuitOpenError(
                "circuit breaker open after repeated failures; call refused",
                node_id=self.node_id,
                item_id=item_id,
            )
            self.recorder.record_failure(error)
            raise error

    def execute(self, value: Any, *, item_id: str | None = None) -> Any:
        """Execute on one input with retries; raises a tagged RemoteMediaError on failure.

        :class:`~remotemedia_ray.audio.Clips` (the utterances of a SegmentNode
        upstream) are executed clip by clip, each named ``{item}/{index}``.
        """
        if type(value) is dict and any(isinstance(v, Clips) for v in value.values()):
            raise MarshalingError(
                f"node {self.node_id!r} merges inputs of which some are clips (from "
                f"{', '.join(repr(k) for k, v in value.items() if isinstance(v, Clips))}): "
                "clips can only flow through nodes of one input",
                node_id=self.node_id,
                item_id=item_id,
            )
        if isinstance(value, Clips):
            return value.map(
                lambda index, clip: self._execute_one(
                    clip, item_id=None if item_id is None else Clips.id_of(item_id, index)
                )
            )
        return self._execute_one(value, item_id=item_id)

    @property
    def closed(self) -> bool:
        """Whether the circuit breaker is closed (calls run normally)."""
        return self.breaker.state is CircuitState.CLOSED

    def record_chained(self, elapsed_ms: float, *, item_id: str | None = None) -> None:
        """One item this node computed inside a fused native chain, successfully,
        counted where the node's own call would have been: refused (and recorded as
        a failure, raising :class:`CircuitOpenError`) while the breaker is open."""
        self.check_breaker(item_id)
        self.breaker.record_success()
        self.recorder.record_success(elapsed_ms)

    @property
    def batches(self) -> bool:
        """Whether the node runs several items in one call (it defines ``execute_many``)."""
        return callable(getattr(self.executor, "execute_many", None))

    def execute_many(self, values: Sequence[Any], item_ids: Sequence[str]) -> list[Any]:
        """Execute on several items: each item's output, or :class:`Failed` with its
        error (tagged with the node and the item).

        A node that defines ``execute_many`` gets the items whose inputs are all
        plain audio in one call (a neural model batches them). If that call
        fails, the items run one by one, with retries, so each error names its
        item; other nodes, and other inputs, always run one by one.
        """
        if not values:
            return []
        batch = getattr(self.executor, "execute_many", None)
        if (
            callable(batch)
            and len(values) > 1
            and all(type(v) is AudioBuffer for v in values)
            and self.breaker.allow()
        ):
            start = time.perf_counter()
            try:
                results = list(batch(list(values)))
            except Exception:  # run one by one: then the errors name their items
                results = []
            if len(results) == len(values):
                share = (time.perf_counter() - start) * 1e3 / len(values)
                for _ in values:
                    self.breaker.record_success()
                    self.recorder.record_success(share)
                return results
        outcomes: list[Any] = []
        for value, item_id in zip(values, item_ids, strict=True):
            try:
                outcomes.append(self.execute(value, item_id=item_id))
            except RemoteMediaError as error:
                outcomes.append(Failed(error))
        return outcomes

    def _execute_one(self, value: Any, *, item_id: str | None) -> Any:
        self.check_breaker(item_id)
        start = time.perf_counter()

        def attempt() -> Any:
            try:
                if self.executor.accepts_chunks:
                    return self.executor.execute(value)
                return self.executor.execute(join_chunks(value))
            except RemoteMediaError as exc:
                exc.with_context(node_id=self.node_id, item_id=item_id)
                raise
            except Exception as exc:
                raise wrap_error(exc, node_id=self.node_id, item_id=item_id) from exc

        def count_retry(_retry: int, _error: BaseException) -> None:
            self.recorder.record_retry()

        try:
            result = self.retry_policy.call(attempt, on_retry=count_retry)
        except RemoteMediaError as error:
            self.breaker.record_outcome(error)
            self.recorder.record_failure(error, (time.perf_counter() - start) * 1e3)
            raise
        self.breaker.record_success()
        self.recorder.record_success((time.perf_counter() - start) * 1e3)
        return result

    def open_stream(self, *, item_id: str | None = None) -> ChunkStream | None:
        """The node's :class:`ChunkStream` for one long item, or None if it cannot stream."""
        self.check_breaker(item_id)
        self.stream_ms = 0.0
        try:
            return self.executor.open_stream()
        except Exception as exc:
            raise wrap_error(exc, node_id=self.node_id, item_id=item_id) from exc

    def stream_step(self, call: Callable[[], Any], *, item_id: str | None = None) -> Any:
        """One ``push``/``finish`` of a stream, errors tagged and recorded.

        There are no retries: the stream's state has moved on, so the item fails.
        """
        start = time.perf_counter()
        try:
            result = call()
        except Exception as exc:
            error = wrap_error(exc, node_id=self.node_id, item_id=item_id)
            self.breaker.record_outcome(error)
            self.recorder.record_failure(error, (time.perf_counter() - start) * 1e3)
            if error is exc:
                raise
            raise error from exc
        self.stream_ms += (time.perf_counter() - start) * 1e3
        return result

    def stream_done(self) -> None:
        """Count a finished stream as one successful call taking its total time."""
        self.breaker.record_success()
        self.recorder.record_success(self.stream_ms)
        self.stream_ms = 0.0

    def cleanup(self) -> None:
        """Clean the node up (idempotent); errors propagate to the caller."""
        try:
            self.executor.cleanup()
        finally:
            self.recorder.sample_memory()

    def metrics(self) -> NodeMetrics:
        """The node's aggregated figures."""
        self.recorder.sample_memory()
        return self.recorder.snapshot()
