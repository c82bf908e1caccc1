"""The node type registry and runtime resolution.

A manifest can only name registered node types: the built-ins, classes
registered with :func:`register_node`, and classes that installed packages
declare in the entry-point group ``remotemedia_ray.nodes`` (entry-point name =
node type). A manifest never makes this library import arbitrary code.

Each node type may have two implementations: ``cpython`` (numpy/Python) and
``rust_native``. :func:`resolve_node_class` picks one, before anything runs:

* ``rust_native`` -- the native class; an error naming the node if there is
  none or the extension is not available;
* ``auto`` -- native when available, else cpython with one logged warning;
* ``cpython`` -- the Python class.

The dataset job's own nodes (reading files, content keys, durations) are
internal: the module defining them registers them with
:func:`register_internal` when it is imported (this module imports no
dataset code). They are not listed by :func:`available_node_types` nor by
``remotemedia-ray nodes``, and a manifest cannot name them. They resolve
only for internal node ids (:func:`internal_node_id`), which contain a ``:``
that a manifest node id cannot, so a user's node never resolves to one and
never clashes with one.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from importlib import metadata as importlib_metadata
from typing import Literal, TypeVar

from remotemedia_ray.errors import ManifestError, UnknownNodeType
from remotemedia_ray.nodes.base import NodeExecutor, NodeRuntime

__all__ = [
    "ENTRY_POINT_GROUP",
    "available_node_types",
    "create_node",
    "internal_node_id",
    "is_internal_node_id",
    "load_node_types",
    "node_class",
    "register_internal",
    "register_node",
    "resolve_node_class",
]

ENTRY_POINT_GROUP = "remotemedia_ray.nodes"
"""Entry-point group through which installed packages contribute node types."""

RuntimeChoice = Literal["rust_native", "cpython", "auto"]
N = TypeVar("N", bound=type[NodeExecutor])

logger = logging.getLogger(__name__)

_lock = threading.RLock()
_classes: dict[str, dict[NodeRuntime, type[NodeExecutor]]] = {}
_builtin_types: set[str] = set()
_internal: dict[str, type[NodeExecutor]] = {}  # the dataset job's own node types
_native_expected: set[str] = set()  # built-ins that have a Rust twin when the extension is built
_loaded = False
_warned_fallback: set[str] = set()


def _register(node_type: str, cls: type[NodeExecutor], *, builtin: bool) -> None:
    if not isinstance(cls, type) or not issubclass(cls, NodeExecutor):
        raise ManifestError(f"cannot register {cls!r} as {node_type!r}: not a NodeExecutor class")
    if not node_type or not isinstance(node_type, str):
        raise ManifestError(f"node type must be a non-empty string, got {node_type!r}")
    with _lock:
        impls = _classes.setdefault(node_type, {})
        existing = impls.get(cls.runtime)
        if existing is not None and existing is not cls:
            origin = "a built-in" if node_type in _builtin_types else "an already registered"
            raise ManifestError(
                f"node type {node_type!r} is {origin} type with a {cls.runtime} implementation "
                f"({existing.__module__}.{existing.__qualname__})"
            )
        cls.node_type = node_type
        impls[cls.runtime] = cls
        if builtin:
            _builtin_types.add(node_type)


def register_node(node_type: str) -> Callable[[N], N]:
    """Class decorator registering a user node type (cpython runtime).

    Example::

        @rm.register_node("Gain")
        class Gain(rm.NodeExecutor):
            def initialize(self, params): self.gain = params.get("gain", 1.0)
            def execute(self, input): return input * self.gain
    """

    def decorate(cls: N) -> N:
        _ensure_loaded()
        _register(node_type, cls, builtin=False)
        return cls

    return decorate


def register_internal(node_type: str, cls: type[NodeExecutor]) -> None:
    """Register one of the library's own node types (see the module docs).

    It resolves only for internal node ids, whatever the runtime asked for.
    """
    if not isinstance(cls, type) or not issubclass(cls, NodeExecutor):
        raise ManifestError(f"cannot register {cls!r} as {node_type!r}: not a NodeExecutor class")
    with _lock:
        existing = _internal.get(node_type)
        if existing is not None and existing is not cls:
            raise ManifestError(
                f"internal node type {node_type!r} is already "
                f"{existing.__module__}.{existing.__qualname__}"
            )
        cls.node_type = node_type
        _internal[node_type] = cls


def load_node_types() -> None:
    """Register the built-in and installed node types, once per process.

    Registration names each class (``node_type``). A Ray worker that gets a
    node class by unpickling a plan imports its module but not the registry,
    so the runtime calls this before creating executors there.
    """
    _ensure_loaded()


def _ensure_loaded() -> None:
    global _loaded
    if _loaded:
        return
    with _lock:
        if _loaded:
            return
        _loaded = True
        from remotemedia_ray.nodes import builtin, native, silero

        for node_type, cls in builtin.BUILTIN_NODES.items():
            _register(node_type, cls, builtin=True)
        _native_expected.update(builtin.BUILTIN_NODES)
        for node_type, cls in native.NATIVE_NODES.items():
            _register(node_type, cls, builtin=True)
        for node_type, cls in silero.SILERO_NODES.items():
            _register(node_type, cls, builtin=True)
        _load_entry_points()


def _load_entry_points() -> None:
    for ep in importlib_metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            cls = ep.load()
            _register(ep.name, cls, builtin=False)
        except Exception as exc:  # a broken plugin must not break the library
            logger.warning("skipping node entry point %r (%s): %s", ep.name, ep.value, exc)


_INTERNAL_ID_PREFIX = "job:"


def internal_node_id(name: str) -> str:
    """The node id of one of the library's own nodes, e.g. ``job:read``.

    A manifest node id matches ``^[a-zA-Z0-9_-]+$``, so it can never equal
    one of these, and only these resolve internal node types.
    """
    return f"{_INTERNAL_ID_PREFIX}{name}"


def is_internal_node_id(node_id: str | None) -> bool:
    """Whether ``node_id`` is an internal node's id (see :func:`internal_node_id`)."""
    return node_id is not None and node_id.startswith(_INTERNAL_ID_PREFIX)


def available_node_types() -> list[str]:
    """Every node type a manifest can name (built-in, registered, entry points), sorted."""
    _ensure_loaded()
    with _lock:
        return sorted(_classes)


def node_class(node_type: str, runtime: NodeRuntime) -> type[NodeExecutor] | None:
    """The implementation of ``node_type`` for ``runtime``, or None."""
    _ensure_loaded()
    with _lock:
        return _classes.get(node_type, {}).get(runtime)


def resolve_node_class(
    node_type: str, runtime: RuntimeChoice = "auto", *, node_id: str | None = None
) -> type[NodeExecutor]:
    """Pick the implementation of a node type for a runtime hint (see module docs).

    An internal node id (:func:`internal_node_id`) resolves the library's
    internal node types first, whatever the runtime; any other id resolves
    only the types :func:`available_node_types` lists.

    Raises:
        UnknownNodeType: the node type is not registered (a NodeNotFound and a
            ManifestError).
        ManifestError: the requested runtime has no usable implementation, or
            the node needs an optional extra that is not installed.
    """
    cls = _resolve(node_type, runtime, node_id)
    missing = cls.missing_dependency()
    if missing is not None:
        # ManifestError names the node itself
        raise ManifestError(f"{node_type} cannot run here: {missing}", node_id=node_id)
    return cls


def _resolve(node_type: str, runtime: RuntimeChoice, node_id: str | None) -> type[NodeExecutor]:
    from remotemedia_ray.nodes.native import native_available

    _ensure_loaded()
    if is_internal_node_id(node_id):
        internal = _internal.get(node_type)
        if internal is not None:
            return internal
    with _lock:
        impls = dict(_classes.get(node_type, {}))
    if not impls:
        raise UnknownNodeType(
            f"unknown node type {node_type!r}; registered types: "
            f"{', '.join(available_node_types())}",
            node_id=node_id,
        )
    native = impls.get("rust_native")
    python = impls.get("cpython")
    if runtime == "rust_native":
        if native is None:
            raise ManifestError(f"{node_type} has no rust_native implementation", node_id=node_id)
        if not native_available():
            raise ManifestError(
                f"{node_type} requires the native extension remotemedia_ray._native, "
                "which is not available",
                node_id=node_id,
            )
        return native
    if runtime == "cpython":
        if python is None:
            raise ManifestError(f"{node_type} has no cpython implementation", node_id=node_id)
        return python
    if runtime != "auto":
        raise ManifestError(
            f"runtime must be 'rust_native', 'cpython' or 'auto', got {runtime!r}",
            node_id=node_id,
        )
    if native is not None and native_available():
        return native
    if python is None:
        raise ManifestError(
            f"{node_type} has only a rust_native implementation and the native "
            "extension is not available",
            node_id=node_id,
        )
    if node_type in _native_expected and node_type not in _warned_fallback:
        _warned_fallback.add(node_type)
        reason = "has no native implementation" if native is None else "native extension missing"
        logger.warning("%s: %s; using the cpython (numpy) implementation", node_type, reason)
    return python


def create_node(node_type: str, runtime: RuntimeChoice = "auto") -> NodeExecutor:
    """An un-initialized executor of ``node_type`` for ``runtime`` (see module docs)."""
    return resolve_node_class(node_type, runtime)()
