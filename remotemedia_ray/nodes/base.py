"""The node contract: :class:`NodeExecutor` and its lifecycle.

A node is created un-initialized, gets ``initialize(params)`` once, then any
number of ``execute(input)`` calls, then ``cleanup()``::

    Created -> Initialized -> (execute, repeatable) -> Cleaned

``execute`` before ``initialize`` or after ``cleanup`` raises
:class:`~remotemedia_ray.errors.NodeExecutionError`; ``cleanup`` is
idempotent. Subclasses implement the three methods directly; the base class
wraps them (in ``__init_subclass__``) so the lifecycle holds for every node,
built-in or user-written.

Long audio (an :class:`~remotemedia_ray.audio.AudioChunks`) reaches a node
that can stream as chunks: :meth:`NodeExecutor.open_stream` returns a
:class:`ChunkStream` that takes one item's chunks in order and gives the same
output as ``execute`` on the whole audio. A node that cannot stream gets the
whole audio instead.
"""

from __future__ import annotations

import abc
import enum
import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel, ValidationError

from remotemedia_ray.audio import AudioBuffer
from remotemedia_ray.errors import ManifestError, NodeExecutionError, RemoteMediaError
from remotemedia_ray.metrics import NodeRuntime

__all__ = [
    "Capability",
    "ChunkStream",
    "MapChunks",
    "NodeExecutor",
    "NodeMetadata",
    "NodeRuntime",
    "NodeState",
    "parse_params",
]


P = TypeVar("P", bound=BaseModel)


class Capability(str, enum.Enum):
    """What a node works on and needs; GPU maps to Ray's ``num_gpus``."""

    AUDIO = "audio"
    VIDEO = "video"
    GPU = "gpu"
    CPU = "cpu"


@dataclass(frozen=True)
class NodeMetadata:
    """Identity of a node implementation."""

    node_type: str
    version: str
    capabilities: frozenset[Capability] = field(default_factory=frozenset)


class NodeState(str, enum.Enum):
    """Lifecycle state of one node executor."""

    CREATED = "created"
    INITIALIZED = "initialized"
    CLEANED = "cleaned"


class NodeExecutor(abc.ABC):
    """Base class of every node: ``initialize(params)``, ``execute(input)``, ``cleanup()``.

    Class attributes describe the implementation:

    * ``node_type`` -- the registered type name (set by registration).
    * ``runtime`` -- ``"cpython"`` or ``"rust_native"``.
    * ``version`` and ``capabilities`` -- reported by :meth:`metadata`.
    * ``Params`` -- optional pydantic model of the parameters (``extra="forbid"``),
      used to validate a manifest's ``params`` before anything runs.

    ``node_id`` is the manifest id of the node this executor runs (``None``
    when created on its own); errors raised by the node are tagged with it.

    A node that computes several items faster together (a neural model) may
    also define ``execute_many(inputs) -> list`` (outputs in input order, equal
    to ``execute`` on each): a batch's plain audio inputs then reach it in one
    call. When that call raises, its items run through ``execute`` one by
    one, so each error names its item.
    """

    node_type: ClassVar[str] = ""
    runtime: ClassVar[NodeRuntime] = "cpython"
    version: ClassVar[str] = "1.0.0"
    capabilities: ClassVar[frozenset[Capability]] = frozenset({Capability.CPU})
    Params: ClassVar[type[BaseModel] | None] = None
    inputs: ClassVar[tuple[int, int | None]] = (1, None)
    """How many parents the node may have in a manifest when it has any: at least
    the first, at most the second (None: no limit). A node with several parents gets
    ``{parent_id: output}``; a pipeline wiring a node otherwise is refused when built."""
    accepts_chunks: ClassVar[bool] = False
    """True when ``execute`` takes an :class:`~remotemedia_ray.audio.AudioChunks`
    as it is (it reads no samples, or reads them itself); otherwise the runtime
    joins the chunks into one AudioBuffer before calling ``execute``."""

    def __init__(self) -> None:
        self.node_id: str | None = None
        self._state = NodeState.CREATED
        self._init_attempted = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name, guard in (
            ("initialize", _guard_initialize),
            ("execute", _guard_execute),
            ("cleanup", _guard_cleanup),
        ):
            method = cls.__dict__.get(name)
            if method is not None and not getattr(method, "_lifecycle_guarded", False):
                wrapped = guard(method)
                wrapped._lifecycle_guarded = True  # type: ignore[attr-defined]
                setattr(cls, name, wrapped)

    @property
    def state(self) -> NodeState:
        """Where this executor is in its lifecycle."""
        return self._state

    @abc.abstractmethod
    def initialize(self, params: Mapping[str, Any]) -> None:
        """Prepare to execute with these parameters (called once)."""

    @abc.abstractmethod
    def execute(self, input: Any) -> Any:
        """Process one input and return the output."""

    def cleanup(self) -> None:  # noqa: B027 - an optional hook, not abstract
        """Release resources; called once at the end (idempotent)."""

    @classmethod
    def missing_dependency(cls) -> str | None:
        """Why this node type cannot run in this environment (an optional extra that
        is not installed, and how to install it), or None when it can.

        Checked when a pipeline is built, so a manifest naming the node fails
        before anything runs.
        """
        return None

    def open_stream(self) -> ChunkStream | None:
        """A :class:`ChunkStream` for one item's audio, or None when this node cannot stream.

        Called on an initialized node, once per long item. Nodes whose output
        for a piece of audio depends only on that piece return
        :class:`MapChunks`; stateful nodes (resampling, VAD) return their own
        stream. The default None makes the runtime give the node the whole
        audio, so memory grows with the item's length.
        """
        return None

    def metadata(self) -> NodeMetadata:
        """The node type, implementation version and capabilities."""
        return NodeMetadata(
            node_type=self.node_type or type(self).__name__,
            version=self.version,
            capabilities=frozenset(self.capabilities),
        )

    def _label(self) -> str:
        """The node type, for messages (errors carry the node id themselves)."""
        return self.node_type or type(self).__name__


class ChunkStream(abc.ABC):
    """One item's audio processed chunk by chunk by one node.

    :meth:`push` receives the item's chunks in order (at least one), then
    :meth:`finish` ends the item. An audio stream (``emits_audio`` True)
    returns output audio pieces from both (None or an empty buffer when
    nothing is ready), and the node's output for the item is their
    concatenation; any other stream returns None from ``push`` and the whole
    output from ``finish``. Either way the output must equal ``execute`` on
    the whole audio, for every way of cutting it into chunks.
    """

    emits_audio: ClassVar[bool] = True

    @abc.abstractmethod
    def push(self, chunk: AudioBuffer) -> AudioBuffer | None:
        """Process the next chunk; return the output audio now complete (audio streams)."""

    @abc.abstractmethod
    def finish(self) -> Any:
        """End the item: the last output audio (audio streams) or the whole output."""


class MapChunks(ChunkStream):
    """The stream of a node whose output for a piece of audio depends only on
    that piece (format conversion, gain, downmix): ``execute`` on each chunk.

    Errors name the chunk's first frame in the stream, so a bad sample can be
    found in the whole audio.
    """

    def __init__(self, node: NodeExecutor) -> None:
        self.node = node
        self.frames = 0

    def push(self, chunk: AudioBuffer) -> AudioBuffer | None:
        start = self.frames
        self.frames += chunk.num_frames
        try:
            out = self.node.execute(chunk)
        except RemoteMediaError as exc:
            if start:
                exc.message = f"{exc.message} (in the chunk starting at frame {start})"
                exc.args = (exc.message,)
            raise
        if not isinstance(out, AudioBuffer):
            raise NodeExecutionError(
                f"{self.node._label()}: a chunk gave {type(out).__name__}, not audio; "
                "this node cannot stream with MapChunks",
                node_id=self.node.node_id,
            )
        return out

    def finish(self) -> None:
        return None


def parse_params(model: type[P], params: Mapping[str, Any], *, node: str | None = None) -> P:
    """Validate ``params`` with a pydantic model.

    Raises:
        ManifestError: naming the node (``node_id``) and every bad field.
    """
    try:
        return model.model_validate(dict(params))
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            key = ".".join(str(part) for part in error["loc"])
            message = error["msg"]
            if error["type"] == "value_error":  # our validators' own words, without "Value error, "
                message = str(error.get("ctx", {}).get("error", message))
            if error["type"] == "extra_forbidden":
                problems.append(f"unknown param {key!r}")
            elif key:
                problems.append(f"param {key!r}: {message}")
            else:  # a rule across params names them itself
                problems.append(message)
        raise ManifestError("; ".join(problems), node_id=node) from None


def _guard_initialize(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def initialize(self: NodeExecutor, params: Mapping[str, Any] | None = None) -> None:
        if self._state is NodeState.CLEANED:
            raise NodeExecutionError(
                f"{self._label()}: initialize() after cleanup()", node_id=self.node_id
            )
        if self._state is NodeState.INITIALIZED:
            raise NodeExecutionError(
                f"{self._label()}: initialize() called twice", node_id=self.node_id
            )
        self._init_attempted = True
        try:
            method(self, {} if params is None else params)
        except RemoteMediaError as exc:
            exc.with_context(node_id=self.node_id)
            raise
        self._state = NodeState.INITIALIZED

    return initialize


def _guard_execute(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def execute(self: NodeExecutor, input: Any) -> Any:
        if self._state is not NodeState.INITIALIZED:
            when = "after cleanup()" if self._state is NodeState.CLEANED else "before initialize()"
            raise NodeExecutionError(f"{self._label()}: execute() {when}", node_id=self.node_id)
        try:
            return method(self, input)
        except RemoteMediaError as exc:
            exc.with_context(node_id=self.node_id)
            raise

    return execute


def _guard_cleanup(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def cleanup(self: NodeExecutor) -> None:
        if self._state is NodeState.CLEANED:
            return
        try:
            if self._init_attempted:
                method(self)
        finally:
            self._state = NodeState.CLEANED

    return cleanup


# The base cleanup() is guarded too, so nodes that do not override it still
# reach CLEANED (and refuse execute() afterwards).
NodeExecutor.cleanup = _guard_cleanup(NodeExecutor.cleanup)  # type: ignore[method-assign]
NodeExecutor.cleanup._lifecycle_guarded = True  # type: ignore[attr-defined]
