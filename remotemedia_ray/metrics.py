"""Pipeline and node metrics: the seed's schema and types, plus finer figures.

The seed's fields keep the seed's types (data model section 5):
``total_time_ms`` and ``execution_time_ms`` are integers (its ``u64``),
``retry_count`` an integer, ``memory_mb`` and ``total_memory_mb`` floats,
``runtime`` (``rust_native`` | ``cpython``) and ``status`` (``success`` |
``failed`` | ``skipped``) its snake_case strings, ``error`` a string or null.

Times are measured in microseconds and kept whole in the extra ``*_us``
fields (``total_time_us``, ``execution_time_us``, ``p50_us``, ``p95_us``);
each ``*_ms`` field is its ``*_us`` figure rounded to the nearest
millisecond, halves up (:func:`millis`), so a node that ran 0.6 ms shows
1 ms and one that never ran 0. Give either figure when building a model: the
other is derived from it, and both must agree when both are given.

Over many items a node's figures are aggregated: execution time is summed,
memory is the peak, retries are totalled, the status is ``failed`` if any item
failed there (the first error is kept) and ``skipped`` if the node never ran.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Iterable, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "NodeMetrics",
    "NodeMetricsRecorder",
    "PipelineMetrics",
    "micros",
    "millis",
    "node_status",
    "peak_rss_mb",
]

NodeStatus = Literal["success", "failed", "skipped"]
NodeRuntime = Literal["rust_native", "cpython"]
"""The implementation a node executor runs: native Rust or Python/numpy (the data
model's ``NodeMetrics.runtime``; declared here, the package's lowest module)."""


def millis(us: int) -> int:
    """Whole microseconds as whole milliseconds, rounded to the nearest (halves up)."""
    return (us + 500) // 1000


def micros(seconds: float) -> int:
    """Seconds as whole microseconds, rounded to the nearest (never negative)."""
    return max(0, round(seconds * 1e6))


def _pair_times(data: Any, ms_key: str, us_key: str) -> Any:
    """Fill in the missing one of a ``*_ms`` / ``*_us`` pair from the other."""
    if not isinstance(data, dict):
        return data
    ms, us = _whole(data.get(ms_key)), _whole(data.get(us_key))
    if us_key not in data and ms is not None:
        return {**data, us_key: ms * 1000}
    if ms_key not in data and us is not None:
        return {**data, ms_key: millis(us)}
    return data


def _whole(value: Any) -> int | None:
    """``value`` as an int when it is a whole number (an int or an integral float)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _check_pair(ms: int, us: int, ms_key: str, us_key: str) -> None:
    if ms != millis(us):
        raise ValueError(f"{ms_key} ({ms}) must be {us_key} ({us}) rounded to milliseconds")


class NodeMetrics(BaseModel):
    """Figures of one node, aggregated over every item it saw.

    The first eight fields are the seed's ``NodeMetrics``, with its types;
    the rest are this project's additions.
    """

    model_config = ConfigDict(extra="forbid")

    node_id: str
    node_type: str
    runtime: NodeRuntime
    execution_time_ms: int = Field(
        default=0, ge=0, description="Summed execute() time, rounded to whole milliseconds."
    )
    memory_mb: float = Field(default=0.0, ge=0, description="Peak resident memory of the process.")
    status: NodeStatus = "skipped"
    retry_count: int = Field(default=0, ge=0, le=2**32 - 1, description="Retries over all items.")
    error: str | None = Field(default=None, description="The first error, if any item failed.")
    execution_time_us: int = Field(
        default=0, ge=0, description="Summed execute() time in whole microseconds."
    )
    items: int = Field(default=0, ge=0, description="Items executed successfully.")
    items_failed: int = Field(default=0, ge=0, description="Items that failed at this node.")
    p50_us: int | None = Field(
        default=None,
        ge=0,
        description="Median time of one execute() call in microseconds (over several actors: "
        "the largest actor's median).",
    )
    p95_us: int | None = Field(
        default=None,
        ge=0,
        description="95th percentile time of one execute() call in microseconds (over several "
        "actors: the largest actor's).",
    )

    @model_validator(mode="before")
    @classmethod
    def _fill_time(cls, data: Any) -> Any:
        return _pair_times(data, "execution_time_ms", "execution_time_us")

    @model_validator(mode="after")
    def _times_agree(self) -> NodeMetrics:
        _check_pair(
            self.execution_time_ms, self.execution_time_us, "execution_time_ms", "execution_time_us"
        )
        return self

    @classmethod
    def merge(
        cls, node_id: str, node_type: str, runtime: NodeRuntime, parts: Sequence[NodeMetrics]
    ) -> NodeMetrics:
        """One node's figures from those of several processes (its actors).

        Times are summed in microseconds and rounded to milliseconds once;
        memory is the peak; retries and items are totalled; the status follows
        :func:`node_status`; the first error is kept; p50/p95 are the largest
        part's (the samples stay with the parts). No parts: a skipped node.
        """
        if not parts:
            return cls(node_id=node_id, node_type=node_type, runtime=runtime)
        items = sum(p.items for p in parts)
        failed = sum(p.items_failed for p in parts)
        return cls(
            node_id=node_id,
            node_type=node_type,
            runtime=runtime,
            execution_time_us=sum(p.execution_time_us for p in parts),
            memory_mb=max(p.memory_mb for p in parts),
            status=node_status(items, failed),
            retry_count=sum(p.retry_count for p in parts),
            error=next((p.error for p in parts if p.error), None),
            items=items,
            items_failed=failed,
            p50_us=max((p.p50_us for p in parts if p.p50_us is not None), default=None),
            p95_us=max((p.p95_us for p in parts if p.p95_us is not None), default=None),
        )


class PipelineMetrics(BaseModel):
    """Figures of a whole pipeline run (or of every run of one pipeline so far).

    The first four fields are the seed's ``PipelineMetrics``, with its types;
    the rest are this project's additions.
    """

    model_config = ConfigDict(extra="forbid")

    total_time_ms: int = Field(
        default=0, ge=0, description="Wall time of all runs, rounded to whole milliseconds."
    )
    total_memory_mb: float = Field(default=0.0, ge=0, description="Peak memory over nodes.")
    node_count: int = Field(default=0, ge=0)
    nodes: list[NodeMetrics] = Field(default_factory=list)
    total_time_us: int = Field(
        default=0, ge=0, description="Wall time of all runs in whole microseconds."
    )
    items: int = Field(default=0, ge=0, description="Items that completed.")
    items_failed: int = Field(default=0, ge=0, description="Items that failed.")
    audio_seconds: float = Field(default=0.0, ge=0, description="Audio fed to the pipeline.")
    realtime_factor: float | None = Field(
        default=None, description="Audio seconds processed per wall-clock second."
    )

    @model_validator(mode="before")
    @classmethod
    def _fill_time(cls, data: Any) -> Any:
        return _pair_times(data, "total_time_ms", "total_time_us")

    @model_validator(mode="after")
    def _times_agree(self) -> PipelineMetrics:
        _check_pair(self.total_time_ms, self.total_time_us, "total_time_ms", "total_time_us")
        return self

    def to_json(self) -> str:
        """The metrics as pretty-printed JSON (the seed's fields first)."""
        return self.model_dump_json(indent=2)

    def summary(self) -> str:
        """One line: ``Pipeline completed in {t}ms ({n} nodes, {m:.2f}MB peak memory)``."""
        return (
            f"Pipeline completed in {self.total_time_ms}ms "
            f"({self.node_count} nodes, {self.total_memory_mb:.2f}MB peak memory)"
        )

    def without(self, node_ids: Iterable[str]) -> PipelineMetrics:
        """A copy without the figures of ``node_ids``, ``node_count`` following."""
        drop = set(node_ids)
        kept = [node for node in self.nodes if node.node_id not in drop]
        removed = len(self.nodes) - len(kept)
        return self.model_copy(
            update={"nodes": kept, "node_count": max(0, self.node_count - removed)}
        )

    def node(self, node_id: str) -> NodeMetrics:
        """The metrics of one node; raises NodeNotFound."""
        from remotemedia_ray.errors import NodeNotFound

        for node in self.nodes:
            if node.node_id == node_id:
                return node
        raise NodeNotFound(f"no metrics for node {node_id!r}", node_id=node_id)


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MB (0.0 where unknown)."""
    try:
        import resource
    except ImportError:  # pragma: no cover - Windows
        return 0.0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # ru_maxrss is in kilobytes on Linux, bytes on macOS.
    scale = 1.0 if sys.platform == "darwin" else 1024.0
    return peak * scale / (1024.0 * 1024.0) if peak else 0.0


class NodeMetricsRecorder:
    """Accumulates one node's figures as items run through it (any executor).

    Times come in as float milliseconds and are kept unrounded until
    :meth:`snapshot`, which reports whole microseconds (and milliseconds).
    """

    _MAX_SAMPLES = 4096

    def __init__(self, node_id: str, node_type: str, runtime: NodeRuntime) -> None:
        self.node_id = node_id
        self.node_type = node_type
        self.runtime: NodeRuntime = runtime
        self.execution_time_ms = 0.0
        self.retry_count = 0
        self.items = 0
        self.items_failed = 0
        self.error: str | None = None
        self.memory_mb = 0.0
        self._durations: list[float] = []
        self._pid = os.getpid()

    def record_success(self, elapsed_ms: float, items: int = 1) -> None:
        """One successful execute() call covering ``items`` items."""
        self.execution_time_ms += elapsed_ms
        self.items += items
        if len(self._durations) < self._MAX_SAMPLES:
            self._durations.append(elapsed_ms)

    def record_failure(self, error: BaseException, elapsed_ms: float = 0.0, items: int = 1) -> None:
        """A failed execute() call; the first error is kept."""
        self.execution_time_ms += elapsed_ms
        self.items_failed += items
        if self.error is None:
            self.error = f"{type(error).__name__}: {error}"

    def record_retry(self) -> None:
        """One retry of a failed attempt."""
        self.retry_count += 1

    def sample_memory(self) -> None:
        """Update the peak memory of the process running this node."""
        self.memory_mb = max(self.memory_mb, peak_rss_mb())

    def snapshot(self) -> NodeMetrics:
        """The aggregated figures so far."""
        status = node_status(self.items, self.items_failed)
        durations = sorted(self._durations)
        return NodeMetrics(
            node_id=self.node_id,
            node_type=self.node_type,
            runtime=self.runtime,
            execution_time_us=micros(self.execution_time_ms / 1e3),
            memory_mb=self.memory_mb,
            status=status,
            retry_count=self.retry_count,
            error=self.error,
            items=self.items,
            items_failed=self.items_failed,
            p50_us=_percentile_us(durations, 0.50),
            p95_us=_percentile_us(durations, 0.95),
        )


def node_status(items: int, items_failed: int) -> NodeStatus:
    """The rule for a node's status over many items: ``failed`` if any item failed
    there, ``success`` if some ran, ``skipped`` if it never ran."""
    if items_failed:
        return "failed"
    return "success" if items else "skipped"


def _percentile_us(sorted_ms: list[float], q: float) -> int | None:
    """The ``q`` quantile (nearest rank) of millisecond durations, in whole microseconds."""
    if not sorted_ms:
        return None
    index = min(len(sorted_ms) - 1, max(0, math.ceil(q * len(sorted_ms)) - 1))
    return micros(sorted_ms[index] / 1e3)
