"""Where a pipeline runs on Ray, and with which options.

:class:`RayOptions` is the one typed, frozen object of a pipeline's Ray
options (``Pipeline(m, runtime="ray", batch_size=4)`` builds one); it is
checked when it is made, so a typo or an out-of-range value raises
:class:`~remotemedia_ray.errors.ConfigError` at once, naming the option.

:class:`RayConnection` starts an embedded local Ray (sized to this machine)
when no address is given and ``RAY_ADDRESS`` is unset -- a new one, even if
another Ray runs on the machine (``ray start``), which it never joins
unasked -- joins a cluster otherwise, reuses a Ray the caller already
initialized, and shuts down only a Ray it started itself.

:func:`node_gpus`, :func:`node_cpus` and :func:`memory_bytes` read what a
node's capabilities and ``execution`` options ask for;
:func:`pool_actor_options` turns a pool of them into Ray actor options.
"""

from __future__ import annotations

import difflib
import logging
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from remotemedia_ray.errors import ConfigError, ManifestError, RemoteMediaError
from remotemedia_ray.nodes.base import Capability

if TYPE_CHECKING:
    from remotemedia_ray._runtime.plan import NodePlan
    from remotemedia_ray._runtime.pools import Pool

__all__ = [
    "RayConnection",
    "RayOptions",
    "check_resources",
    "cpu_share",
    "machine_cpus",
    "memory_bytes",
    "node_cpus",
    "node_gpus",
    "pool_actor_options",
]

logger = logging.getLogger(__name__)

_AUTH_HINTS = ("auth", "token", "unauthenticated", "permission denied")

_MIN_OBJECT_STORE = 75 * 1024 * 1024  # Ray refuses a smaller object store


class RayOptions(BaseModel):
    """How a pipeline runs on Ray: ``Pipeline(m, runtime="ray", **options)``,
    or ``Pipeline(m, runtime="ray", options=rm.RayOptions(...))``.

    Frozen and strict (``batch_size="4"`` or ``fuse=1`` is an error, not a
    conversion). Making one with an unknown option, a value of the wrong type
    or out of range raises :class:`~remotemedia_ray.errors.ConfigError`
    naming every bad option (and, for a typo, the known ones).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)

    batch_size: int | None = Field(
        default=None,
        ge=1,
        le=1_000_000,
        description="Items per batch (default: the smallest execution.batch_size of the "
        "manifest's nodes; else, with expected_items known, enough items that every actor "
        "gets about four batches, 1 to max_batch_size; else 8).",
    )
    max_batch_size: int = Field(
        default=32,
        ge=1,
        le=1_000_000,
        description="The most items a batch sized by expected_items holds (the dataset job "
        "raises it to --shard-rows: its batches end at a size in bytes first).",
    )
    max_in_flight: int | None = Field(
        default=None,
        ge=1,
        le=100_000,
        description="Batches in the pipeline at once, the backpressure bound (default: 2 per "
        "actor of the largest pool, at least 4).",
    )
    ready_timeout_s: float = Field(
        default=120.0,
        gt=0,
        le=86_400,
        description="Seconds building may wait for every actor to initialize.",
    )
    cleanup_timeout_s: float = Field(
        default=30.0,
        gt=0,
        le=86_400,
        description="Seconds closing may wait for the actors' cleanup.",
    )
    num_cpus: int | None = Field(
        default=None,
        ge=1,
        le=1_000_000,
        description="CPUs of an embedded Ray (default: this machine's).",
    )
    object_store_memory: int | None = Field(
        default=None,
        ge=_MIN_OBJECT_STORE,
        description="Object store bytes of an embedded Ray (at least 75 MiB; default: Ray's).",
    )
    fuse: bool = Field(
        default=False,
        description="Fuse nodes into pools by their resource needs: consecutive nodes with "
        "the same needs (GPUs, CPUs, own replicas) run inside each actor of one pool, with no "
        "hop between them, and a node whose needs differ gets its own pool. Off: one pool per "
        "node. Outputs are the same either way; Pipeline.plan() shows the pools.",
    )
    fused_replicas: int | None = Field(
        default=None,
        ge=1,
        le=100_000,
        description="Actors of a fused pool of CPU nodes with default needs (default: the "
        "cluster's CPUs).",
    )
    wait_for_resources: bool = Field(
        default=False,
        description="On a cluster that adds nodes on demand (an autoscaler), ask it for the "
        "resources the pools need when the cluster lacks them (a GPU), and wait up to "
        "ready_timeout_s for them, instead of failing at build time.",
    )
    expected_items: int | None = Field(
        default=None,
        ge=0,
        description="How many items the pipeline will get, when known (the dataset job "
        "knows); only sizes the default batches.",
    )

    def __init__(self, **options: Any) -> None:
        try:
            super().__init__(**options)
        except ValidationError as exc:
            raise _config_error(exc) from None

    def merged(self, **overrides: Any) -> RayOptions:
        """A copy with ``overrides`` applied, checked like a new one."""
        return RayOptions(**{**self.model_dump(exclude_unset=True), **overrides})


def _config_error(exc: ValidationError) -> ConfigError:
    """One ConfigError naming every bad Ray option."""
    known = list(RayOptions.model_fields)
    problems = []
    unknown = False
    for error in exc.errors():
        name = str(error["loc"][0]) if error["loc"] else "?"
        if error["type"] == "extra_forbidden":
            unknown = True
            close = difflib.get_close_matches(name, known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            problems.append(f"unknown Ray option {name!r}{hint}")
        else:
            problems.append(f"Ray option {name!r}: {error['msg']}, got {error['input']!r}")
    message = "; ".join(problems)
    if unknown:
        message += f"; known options: {', '.join(known)}"
    return ConfigError(message)


def machine_cpus() -> int:
    """The CPUs this process may run on."""
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
                num_cpus=self.num_cpus or machine_cpus(),
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


def cpu_share(cpus: float, actors: int) -> float:
    """The CPUs each of ``actors`` actors reserves so that all fit ``cpus`` at once:
    rounded down to 0.01, at least 0.01 and at most 1."""
    return max(0.01, min(1.0, math.floor(100 * cpus / max(1, actors)) / 100))


def node_gpus(node: NodePlan) -> float:
    """GPUs one actor of ``node`` reserves: ``execution.num_gpus``, else 1 when the
    node needs a GPU (GPU capability, or a required ``capabilities.gpu``), else 0."""
    execution = node.spec.execution
    if execution.num_gpus is not None:
        return execution.num_gpus
    caps = node.spec.capabilities
    needs_gpu = Capability.GPU in node.cls.capabilities or (
        caps is not None and caps.gpu is not None and caps.gpu.required
    )
    return 1.0 if needs_gpu else 0.0


def node_cpus(node: NodePlan) -> float | None:
    """CPUs one actor of ``node`` asks for: ``execution.num_cpus``, else
    ``capabilities.cpu.cores``, else None (a share of the cluster)."""
    execution = node.spec.execution
    if execution.num_cpus is not None:
        return execution.num_cpus
    caps = node.spec.capabilities
    if caps is not None and caps.cpu is not None and caps.cpu.cores is not None:
        return float(caps.cpu.cores)
    return None


def memory_bytes(node: NodePlan) -> int:
    """Bytes of memory one actor of ``node`` reserves: ``capabilities.memory_gb`` (0: none)."""
    caps = node.spec.capabilities
    return int(caps.memory_gb * 1024**3) if caps is not None and caps.memory_gb else 0


def pool_actor_options(
    pool: Pool, nodes: Iterable[NodePlan], *, pipeline_id: str, replica: int
) -> dict[str, Any]:
    """Ray actor options for one replica of ``pool``, which runs ``nodes``.

    * ``num_cpus`` / ``num_gpus`` / ``memory``: the pool's (see
      :func:`~remotemedia_ray._runtime.pools.plan_pools`);
    * ``max_restarts`` / ``max_task_retries``: the strictest node's (-1,
      forever, counts as the most): a dead actor is restarted and its calls re-run;
    * a name ``rm:{pipeline}:{pool}:{replica}`` for observability;
    * one call at a time (nodes are not thread-safe).
    """
    plans = list(nodes)

    def strictest(values: Iterable[int]) -> int:
        return min(values, key=lambda v: math.inf if v < 0 else v, default=0)

    options: dict[str, Any] = {
        "num_cpus": pool.num_cpus,
        "num_gpus": pool.num_gpus,
        "max_restarts": strictest(n.spec.execution.max_restarts for n in plans),
        "max_task_retries": strictest(n.spec.execution.max_task_retries for n in plans),
        "name": f"rm:{pipeline_id}:{pool.name}:{replica}",
        "max_concurrency": 1,
    }
    if pool.memory:
        options["memory"] = pool.memory
    return options


def check_resources(
    total: dict[str, float], needed_gpus: float, node_id: str, where: str = "the Ray cluster"
) -> None:
    """Fail fast, naming the node, when ``where`` has no GPU for a GPU node."""
    if needed_gpus > 0 and total.get("GPU", 0.0) < needed_gpus:
        raise ManifestError(
            f"node {node_id!r} needs {needed_gpus:g} GPU(s) per actor but {where} has "
            f"{total.get('GPU', 0.0):g}",
            node_id=node_id,
        )


def actor_cpus() -> int | None:
    """The CPUs Ray assigned to the actor this code runs in (rounded down, at least
    1), or None outside a Ray actor."""
    import ray

    if not ray.is_initialized():
        return None
    context = ray.get_runtime_context()
    if context.get_actor_id() is None:
        return None
    assigned = context.get_assigned_resources().get("CPU") or 0.0
    return max(1, math.floor(assigned))


def visible_gpus() -> int:
    """The NVIDIA GPUs this process may use: ``CUDA_VISIBLE_DEVICES`` when set, else
    those the driver lists in ``/proc/driver/nvidia/gpus`` (none on other machines)."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return len([d for d in listed.split(",") if d.strip() and d.strip() != "-1"])
    try:
        return len(os.listdir("/proc/driver/nvidia/gpus"))
    except OSError:
        return 0
