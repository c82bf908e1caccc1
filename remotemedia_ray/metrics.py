"""Pipeline and node metrics (the seed schema, plus item and audio counts).

Over many items a node's figures are aggregated: execution time is summed,
memory is the peak, retries are totalled, the status is ``failed`` if any item
failed there (the first error is kept) and ``skipped`` if the node never ran.
"""

from __future__ import annotations

import math
import os
import sys
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["NodeMetrics", "NodeMetricsRecorder", "PipelineMetrics", "peak_rss_mb"]

NodeStatus = Literal["success", "failed", "skipped"]
NodeRuntime = Literal["rust_native", "cpython"]


class NodeMetrics(BaseModel):
    """Figures of one node, aggregated over every item it saw."""

    model_config = ConfigDict(extra="forbid")

    node_id: str
    node_type: str
    runtime: NodeRuntime
    execution_time_ms: float = Field(default=0.0, ge=0, description="Summed execute() time.")
    memory_mb: float = Field(default=0.0, ge=0, description="Peak resident memory of the process.")
    status: NodeStatus = "skipped"
    retry_count: int = Field(default=0, ge=0, description="Retries over all items.")
    error: str | None = Field(default=None, description="The first error, if any item failed.")
    items: int = Field(default=0, ge=0, description="Items executed successfully.")
    items_failed: int = Field(default=0, ge=0, description="Items that failed at this node.")
    p50_ms: float | None = Field(default=None, description="Median execute() time per call.")
    p95_ms: float | None = Field(default=None, description="95th percentile execute() time.")


class PipelineMetrics(BaseModel):
    """Figures of a whole pipeline run (or of every run of one pipeline so far)."""

    model_config = ConfigDict(extra="forbid")

    total_time_ms: float = Field(default=0.0, ge=0, description="Wall time of all runs.")
    total_memory_mb: float = Field(default=0.0, ge=0, description="Peak memory over nodes.")
    node_count: int = Field(default=0, ge=0)
    nodes: list[NodeMetrics] = Field(default_factory=list)
    items: int = Field(default=0, ge=0, description="Items that completed.")
    items_failed: int = Field(default=0, ge=0, description="Items that failed.")
    audio_seconds: float = Field(default=0.0, ge=0, description="Audio fed to the pipeline.")
    realtime_factor: float | None = Field(
        default=None, description="Audio seconds processed per wall-clock second."
    )

    def to_json(self) -> str:
        """The metrics as pretty-printed JSON."""
        return self.model_dump_json(indent=2)

    def summary(self) -> str:
        """One line: ``Pipeline completed in {t}ms ({n} nodes, {m:.2f}MB peak memory)``."""
        return (
            f"Pipeline completed in {self.total_time_ms:.2f}ms "
            f"({self.node_count} nodes, {self.total_memory_mb:.2f}MB peak memory)"
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
    """Accumulates one node's figures as items run through it (any executor)."""

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
        if self.items_failed:
            status: NodeStatus = "failed"
        elif self.items:
            status = "success"
        else:
            status = "skipped"
        durations = sorted(self._durations)
        return NodeMetrics(
            node_id=self.node_id,
            node_type=self.node_type,
            runtime=self.runtime,
            execution_time_ms=self.execution_time_ms,
            memory_mb=self.memory_mb,
            status=status,
            retry_count=self.retry_count,
            error=self.error,
            items=self.items,
            items_failed=self.items_failed,
            p50_ms=_percentile(durations, 0.50),
            p95_ms=_percentile(durations, 0.95),
        )


def _percentile(sorted_values: list[float], q: float) -> float | None:
    if not sorted_values:
        return None
    index = min(len(sorted_values) - 1, max(0, math.ceil(q * len(sorted_values)) - 1))
    return sorted_values[index]
