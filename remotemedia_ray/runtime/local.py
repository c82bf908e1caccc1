"""The in-process executor (``runtime="local"``): the reference semantics.

Nodes run one item at a time in execution order, in this process, through
the same :class:`~remotemedia_ray.runtime.execution.NodeRunner` the Ray
actors use, so retries, errors and metrics behave identically.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from typing import Any

from remotemedia_ray.errors import RemoteMediaError
from remotemedia_ray.metrics import NodeMetrics
from remotemedia_ray.runtime.execution import ItemFailure, NodeRunner, PipelineOutput
from remotemedia_ray.runtime.plan import PipelinePlan
from remotemedia_ray.runtime.retry import CircuitBreaker, RetryPolicy

__all__ = ["LocalExecutor"]

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
    ) -> None:
        self.plan = plan
        self.retry_policy = retry_policy or RetryPolicy()
        self._breaker_threshold = breaker_threshold
        self._breaker_cooldown_s = breaker_cooldown_s
        self._runners: dict[str, NodeRunner] = {}

    def start(self) -> None:
        """Create and initialize every node (in execution order).

        Raises:
            NodeExecutionError: a node failed to initialize (named); the nodes
                already initialized are cleaned up first.
        """
        try:
            for node_id in self.plan.graph.execution_order:
                node = self.plan.nodes[node_id]
                runner = NodeRunner(
                    node.create(),
                    retry_policy=self.retry_policy,
                    breaker=CircuitBreaker(self._breaker_threshold, self._breaker_cooldown_s),
                )
                self._runners[node_id] = runner
                runner.initialize(node.spec.params)
        except BaseException:
            self.close()
            raise

    def run_item(self, item_id: str, item: Any) -> PipelineOutput:
        """Run one item through every node; raises the first node error (tagged)."""
        outputs: dict[str, Any] = {}
        for node_id in self.plan.graph.execution_order:
            value = self.plan.node_input(node_id, item, outputs)
            outputs[node_id] = self._runners[node_id].execute(value, item_id=item_id)
        return PipelineOutput(item_id, self.plan.result(outputs))

    def stream(
        self, items: Iterable[tuple[str, Any]], *, ordered: bool = True
    ) -> Iterator[PipelineOutput | ItemFailure]:
        """Run items one after another, yielding each result or failure (always in order)."""
        del ordered  # one item at a time: completion order is input order
        for item_id, item in items:
            try:
                yield self.run_item(item_id, item)
            except RemoteMediaError as error:
                yield ItemFailure(item_id, error.node_id, error)

    def node_metrics(self) -> list[NodeMetrics]:
        """Each node's figures, in manifest order (``skipped`` for nodes never built)."""
        result = []
        for node_id, node in self.plan.nodes.items():
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
        for node_id in reversed(list(self._runners)):
            try:
                self._runners[node_id].cleanup()
            except Exception:
                logger.exception("cleanup of node %r failed", node_id)
