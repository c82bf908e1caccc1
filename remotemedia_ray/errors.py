"""The exception hierarchy of remotemedia_ray.

Every error derives from :class:`RemoteMediaError` and also from the builtin
exception a caller would already catch (``ValueError`` for bad manifests,
``KeyError`` for unknown nodes, ``RuntimeError`` for failures while running),
so ``except ValueError`` keeps working around code that loads manifests.

Errors carry the node (and, when known, the item) they came from; both appear
in the message and as attributes. All errors pickle, so they cross Ray's
process boundaries intact.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = [
    "AudioFormatError",
    "ConfigError",
    "CycleError",
    "GraphError",
    "InputError",
    "ManifestError",
    "MarshalingError",
    "NodeExecutionError",
    "NodeNotFound",
    "PythonError",
    "RemoteMediaError",
    "RetryableError",
    "UnknownNodeType",
]

_RETRYABLE_MESSAGE = re.compile(
    r"timeout|\btimed?[\s-]+out\b|\brate[\s_-]*limit|\bOOM\b|out of memory",
    re.IGNORECASE,
)


class RemoteMediaError(Exception):
    """Base class of every error raised by remotemedia_ray.

    Args:
        message: What went wrong, in words a user can act on.
        node_id: The manifest node the error came from, if any.
        item_id: The pipeline item being processed, if any.
    """

    def __init__(
        self,
        message: str,
        *,
        node_id: str | None = None,
        item_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.node_id = node_id
        self.item_id = item_id

    def __str__(self) -> str:
        where = []
        if self.node_id is not None:
            where.append(f"node {self.node_id!r}")
        if self.item_id is not None:
            where.append(f"item {self.item_id!r}")
        if not where or self._names_location():
            return self.message
        return f"[{', '.join(where)}] {self.message}"

    def _names_location(self) -> bool:
        """Whether the message already starts with the location prefix."""
        return self.message.startswith("[node ") or self.message.startswith("[item ")

    def is_retryable(self) -> bool:
        """Whether running the failed step again may succeed.

        True for :class:`RetryableError`, and for a :class:`PythonError` whose
        message mentions a timeout, a rate limit or running out of memory.
        """
        return False

    def with_context(
        self, *, node_id: str | None = None, item_id: str | None = None
    ) -> RemoteMediaError:
        """Fill in the node and item this error came from, where still unknown.

        Returns ``self`` so it can be used in a ``raise`` statement.
        """
        if self.node_id is None and node_id is not None:
            self.node_id = node_id
        if self.item_id is None and item_id is not None:
            self.item_id = item_id
        return self

    def _state(self) -> dict[str, Any]:
        return {"node_id": self.node_id, "item_id": self.item_id}

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), self.message, self._state(), self.__dict__))


def _rebuild(
    cls: type[RemoteMediaError],
    message: str,
    state: dict[str, Any],
    attrs: dict[str, Any],
) -> RemoteMediaError:
    err = cls.__new__(cls)
    Exception.__init__(err, message)
    err.__dict__.update(attrs)
    err.message = message
    for key, value in state.items():
        setattr(err, key, value)
    return err


def message_of(error: BaseException) -> str:
    """What went wrong, without the ``[node ..., item ...]`` prefix: for quoting
    an error inside another that names the node itself."""
    if isinstance(error, RemoteMediaError):
        return error.message
    return str(error)


class ManifestError(RemoteMediaError, ValueError):
    """A manifest is malformed or breaks a semantic rule (names the field or node).

    Raised for manifests only; bad inputs are :class:`InputError`, bad options
    and output locations :class:`ConfigError`.
    """


class InputError(RemoteMediaError, ValueError):
    """Inputs that cannot be listed or read (names the input, file or entry)."""


class ConfigError(RemoteMediaError, ValueError):
    """A bad option, flag, parameter or output location (names the option)."""


class GraphError(RemoteMediaError, ValueError):
    """The node graph of a manifest cannot be executed."""


class CycleError(GraphError, ManifestError):
    """The node graph has a cycle (a :class:`GraphError`, and a
    :class:`ManifestError` when the graph is a manifest's connections).

    Attributes:
        nodes: Exactly the node ids that Kahn's algorithm could not sort (the
            nodes on a cycle and every node downstream of one), in manifest
            order.
    """

    def __init__(self, message: str, *, nodes: list[str]) -> None:
        super().__init__(message)
        self.nodes = list(nodes)


class NodeNotFound(RemoteMediaError, KeyError):
    """A node id or node type that does not exist was named."""

    def __init__(self, message: str, *, node_id: str | None = None) -> None:
        super().__init__(message, node_id=node_id)

    def __str__(self) -> str:  # KeyError would quote the message
        return self.message


class UnknownNodeType(NodeNotFound, ManifestError):
    """A node type that is not registered was named (by a manifest or
    :func:`~remotemedia_ray.create_node`): a :class:`NodeNotFound` and, as a
    manifest's mistake, a :class:`ManifestError`."""

    __str__ = RemoteMediaError.__str__  # names the node, as a ManifestError does


class NodeExecutionError(RemoteMediaError, RuntimeError):
    """A node failed while initializing or executing; ``__cause__`` holds why."""


class PythonError(NodeExecutionError):
    """A Python exception raised inside a node, carried across processes as text.

    Attributes:
        message: ``"ExceptionType: text"`` of the original exception.
        traceback: The formatted traceback where it was raised.
    """

    def __init__(
        self,
        message: str,
        *,
        node_id: str | None = None,
        item_id: str | None = None,
        traceback: str = "",
    ) -> None:
        super().__init__(message, node_id=node_id, item_id=item_id)
        self.traceback = traceback

    def is_retryable(self) -> bool:
        return bool(_RETRYABLE_MESSAGE.search(self.message))


class RetryableError(RemoteMediaError, RuntimeError):
    """A transient failure: the step may succeed if run again.

    Attributes:
        attempt: The attempt that failed (1-based), when known.
        max_attempts: How many attempts the retry policy allows, when known.
    """

    def __init__(
        self,
        message: str,
        *,
        node_id: str | None = None,
        item_id: str | None = None,
        attempt: int = 0,
        max_attempts: int = 0,
    ) -> None:
        super().__init__(message, node_id=node_id, item_id=item_id)
        self.attempt = attempt
        self.max_attempts = max_attempts

    def is_retryable(self) -> bool:
        return True


class MarshalingError(RemoteMediaError, RuntimeError):
    """Data could not be converted to what a node accepts (e.g. non-numeric input)."""


class AudioFormatError(RemoteMediaError, RuntimeError):
    """Audio is malformed: bad rate, shape, dtype, or a non-finite sample."""
