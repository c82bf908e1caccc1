"""Where a pipeline runs on Ray, and with which actor options.

:class:`RayConnection` starts an embedded local Ray (sized to this machine)
when no address is given and ``RAY_ADDRESS`` is unset -- a new one, even if
another Ray runs on the machine (``ray start``), which it never joins
unasked -- joins a cluster otherwise, reuses a Ray the caller already
initialized, and shuts down only a Ray it started itself.

:func:`actor_options` is the one place where a node's capabilities and
``execution`` options become Ray actor options.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from remotemedia_ray.errors import ManifestError, RemoteMediaError
from remotemedia_ray.nodes.base import Capability

if TYPE_CHECKING:
    from remotemedia_ray.runtime.plan import NodePlan

__all__ = ["RayConnection", "actor_options"]

logger = logging.getLogger(__name__)

_AUTH_HINTS = ("auth", "token", "unauthenticated", "permission denied")


def _machine_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


@dataclass
class RayConnection:
    """A connection to Ray for one pipeline.

    Args:
        address: A cluster address (``"auto"``, ``"host:6379"``, ``"ray://host:10001"``);
            default ``RAY_ADDRESS``, else an embedded local Ray.
        num_cpus: CPUs of an embedded Ray (default: this machine's).
        object_store_memory: Bytes of object store of an embedded Ray (default: Ray's).
    """

    address: str | None = None
    num_cpus: int | None = None
    object_store_memory: int | None = None
    started: bool = False

    def connect(self) -> None:
        """Initialize Ray unless this process already did."""
        import ray

        if ray.is_initialized():
            return
        address = self.address or os.environ.get("RAY_ADDRESS") or None
        kwargs: dict[str, Any] = {"log_to_driver": True, "configure_logging": False}
        if address is None:
            kwargs.update(
                address="local",  # a bare ray.init() would join a `ray start` cluster
                num_cpus=self.num_cpus or _machine_cpus(),
                include_dashboard=False,
            )
            if self.object_store_memory is not None:
                kwargs["object_store_memory"] = self.object_store_memory
        else:
            kwargs["address"] = address
        try:
            ray.init(**kwargs)
        except Exception as exc:
            text = str(exc)
            chain = _error_chain(exc)
            where = f"the Ray cluster at {address!r}" if address else "an embedded local Ray"
            if address and any(hint in chain.lower() for hint in _AUTH_HINTS):
                raise RemoteMediaError(
                    f"cannot join {where}: it requires token authentication and this process "
                    "has no valid token. Set RAY_AUTH_MODE=token and RAY_AUTH_TOKEN (or "
                    "RAY_AUTH_TOKEN_PATH) to the cluster's token, or start the cluster with "
                    f"RAY_AUTH_MODE=disabled for local experiments. Ray said: {chain}"
                ) from exc
            raise RemoteMediaError(f"cannot start or join {where}: {text}") from exc
        self.started = address is None
        logger.info("connected to Ray (%s)", "embedded" if self.started else address)

    def close(self) -> None:
        """Shut Ray down if this connection started it."""
        import ray

        if self.started and ray.is_initialized():
            ray.shutdown()
        self.started = False


def _error_chain(exc: BaseException) -> str:
    """The messages of an exception and its causes (Ray hides the auth error in a cause)."""
    parts = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        parts.append(f"{type(current).__name__}: {current}")
        current = current.__cause__ or current.__context__
    return " <- ".join(parts)


def actor_options(
    node: NodePlan, *, pipeline_id: str, replica: int, cpus_per_actor: float
) -> dict[str, Any]:
    """Ray actor options for one replica of a node.

    * ``num_cpus``: ``execution.num_cpus``, else ``capabilities.cpu.cores``,
      else ``cpus_per_actor`` (a share that lets every actor of the pipeline
      fit the cluster at once, at most 1);
    * ``num_gpus``: ``execution.num_gpus``, else 1 when the node needs a GPU
      (GPU capability, or a required ``capabilities.gpu``);
    * ``memory``: ``capabilities.memory_gb``;
    * ``max_restarts`` / ``max_task_retries``: from ``execution`` (a dead
      actor is restarted and its calls re-run);
    * a name ``rm:{pipeline}:{node}:{replica}`` for observability.
    """
    spec = node.spec
    execution = spec.execution
    caps = spec.capabilities
    if execution.num_cpus is not None:
        num_cpus: float = execution.num_cpus
    elif caps is not None and caps.cpu is not None and caps.cpu.cores is not None:
        num_cpus = float(caps.cpu.cores)
    else:
        num_cpus = cpus_per_actor
    needs_gpu = Capability.GPU in node.cls.capabilities or (
        caps is not None and caps.gpu is not None and caps.gpu.required
    )
    num_gpus = execution.num_gpus if execution.num_gpus is not None else (1.0 if needs_gpu else 0.0)
    options: dict[str, Any] = {
        "num_cpus": num_cpus,
        "num_gpus": num_gpus,
        "max_restarts": execution.max_restarts,
        "max_task_retries": execution.max_task_retries,
        "name": f"rm:{pipeline_id}:{spec.id}:{replica}",
        "max_concurrency": 1,
    }
    if caps is not None and caps.memory_gb:
        options["memory"] = int(caps.memory_gb * 1024**3)
    return options


def check_resources(total: dict[str, float], needed_gpus: float, node_id: str) -> None:
    """Fail fast, naming the node, when the cluster has no GPU for a GPU node."""
    if needed_gpus > 0 and total.get("GPU", 0.0) < needed_gpus:
        raise ManifestError(
            f"node {node_id!r} needs {needed_gpus:g} GPU(s) per actor but the Ray cluster has "
            f"{total.get('GPU', 0.0):g}",
            node_id=node_id,
        )
