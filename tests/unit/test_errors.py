"""The error hierarchy: builtin bases, retryability, context, pickling."""

from __future__ import annotations

import pickle

import pytest

from remotemedia_ray import errors
from remotemedia_ray.errors import (
    AudioFormatError,
    ConfigError,
    CycleError,
    GraphError,
    InputError,
    ManifestError,
    MarshalingError,
    NodeExecutionError,
    NodeNotFound,
    PythonError,
    RemoteMediaError,
    RetryableError,
    UnknownNodeType,
)

ALL_CLASSES = [
    ManifestError,
    InputError,
    ConfigError,
    GraphError,
    CycleError,
    NodeNotFound,
    NodeExecutionError,
    PythonError,
    RetryableError,
    MarshalingError,
    AudioFormatError,
    UnknownNodeType,
]


def _make(cls: type[RemoteMediaError], message: str = "boom", **kw: object) -> RemoteMediaError:
    if cls is CycleError:
        return CycleError(message, nodes=["a", "b"])
    return cls(message, **kw)  # type: ignore[arg-type]


# -- hierarchy ---------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [ManifestError, GraphError, CycleError, InputError, ConfigError])
def test_manifest_and_graph_errors_are_value_errors(cls: type[RemoteMediaError]) -> None:
    assert issubclass(cls, ValueError)
    assert issubclass(cls, RemoteMediaError)
    with pytest.raises(ValueError):
        raise _make(cls)


def test_cycle_error_is_a_graph_error_and_a_manifest_error() -> None:
    assert issubclass(CycleError, GraphError)
    assert issubclass(CycleError, ManifestError)


def test_input_and_config_errors_are_not_manifest_errors() -> None:
    import remotemedia_ray as rm

    for cls in (InputError, ConfigError):
        assert not issubclass(cls, ManifestError)
        assert getattr(rm, cls.__name__) is cls


def test_node_not_found_is_a_key_error_with_unquoted_message() -> None:
    err = NodeNotFound("no node named 'x'", node_id="x")
    assert isinstance(err, KeyError)
    assert isinstance(err, RemoteMediaError)
    assert str(err) == "no node named 'x'"
    assert err.node_id == "x"
    with pytest.raises(KeyError):
        raise err


def test_an_unknown_node_type_is_a_node_not_found_and_a_manifest_error() -> None:
    err = UnknownNodeType("unknown node type 'Foo'", node_id="x")
    assert isinstance(err, NodeNotFound) and isinstance(err, KeyError)
    assert isinstance(err, ManifestError) and isinstance(err, ValueError)
    assert str(err) == "[node 'x'] unknown node type 'Foo'"  # named like a ManifestError


@pytest.mark.parametrize(
    "cls", [NodeExecutionError, PythonError, RetryableError, MarshalingError, AudioFormatError]
)
def test_execution_errors_are_runtime_errors(cls: type[RemoteMediaError]) -> None:
    assert issubclass(cls, RuntimeError)
    assert issubclass(cls, RemoteMediaError)
    assert not issubclass(cls, ValueError)
    with pytest.raises(RuntimeError):
        raise _make(cls)


def test_python_error_is_a_node_execution_error() -> None:
    assert issubclass(PythonError, NodeExecutionError)


@pytest.mark.parametrize("cls", ALL_CLASSES)
def test_every_error_is_a_remote_media_error(cls: type[RemoteMediaError]) -> None:
    assert issubclass(cls, RemoteMediaError)
    assert issubclass(cls, Exception)


def test_all_lists_every_error_class() -> None:
    assert set(errors.__all__) == {c.__name__ for c in ALL_CLASSES} | {"RemoteMediaError"}


def test_cycle_error_keeps_its_nodes() -> None:
    nodes = ["b", "c", "d"]
    err = CycleError("cycle among b, c, d", nodes=nodes)
    assert err.nodes == ["b", "c", "d"]
    nodes.append("e")
    assert err.nodes == ["b", "c", "d"]  # a copy, not the caller's list


def test_node_execution_error_carries_its_cause() -> None:
    cause = ZeroDivisionError("division by zero")
    try:
        try:
            raise cause
        except ZeroDivisionError as exc:
            raise NodeExecutionError("node failed", node_id="n") from exc
    except NodeExecutionError as err:
        assert err.__cause__ is cause


def test_python_error_keeps_message_and_traceback() -> None:
    err = PythonError("ValueError: bad", node_id="n", traceback="Traceback ...\n")
    assert err.message == "ValueError: bad"
    assert err.traceback == "Traceback ...\n"


def test_retryable_error_defaults_to_unknown_attempts() -> None:
    err = RetryableError("flaky")
    assert (err.attempt, err.max_attempts) == (0, 0)


# -- retryability ------------------------------------------------------------------------


def test_retryable_error_is_retryable() -> None:
    assert RetryableError("flaky").is_retryable() is True


@pytest.mark.parametrize(
    "message",
    [
        "TimeoutError: read timeout after 30s",
        "requests.exceptions.ReadTimeout: HTTPSConnectionPool",
        "RuntimeError: operation TIMED OUT",
        "RuntimeError: Timed out waiting for the worker",
        "RuntimeError: connection time out",
        "HTTPError: 429 rate limit exceeded",
        "openai.RateLimitError: slow down",
        "RuntimeError: Rate-Limited by upstream",
        "RuntimeError: CUDA OOM while allocating",
        "torch.cuda.OutOfMemoryError: CUDA out of memory. Tried to allocate 2 GiB",
        "RuntimeError: OUT OF MEMORY",
    ],
)
def test_python_error_mentioning_transient_failure_is_retryable(message: str) -> None:
    assert PythonError(message, node_id="n").is_retryable() is True


@pytest.mark.parametrize(
    "message",
    [
        "ValueError: invalid literal for int()",
        "KeyError: 'sample_rate'",
        "ZeroDivisionError: division by zero",
        "RuntimeError: BOOM",
        "ValueError: zoom level must be positive",
        "ValueError: unexpected runtime output shape (3, 2)",
        "",
    ],
)
def test_python_error_with_other_message_is_not_retryable(message: str) -> None:
    assert PythonError(message, node_id="n").is_retryable() is False


@pytest.mark.parametrize(
    "cls",
    [
        ManifestError,
        GraphError,
        CycleError,
        NodeNotFound,
        NodeExecutionError,
        MarshalingError,
        AudioFormatError,
    ],
)
def test_other_errors_are_not_retryable_even_mentioning_timeout(
    cls: type[RemoteMediaError],
) -> None:
    assert _make(cls, "request timed out (OOM, rate limit)").is_retryable() is False


# -- context -----------------------------------------------------------------------------


def test_node_and_item_appear_in_str() -> None:
    err = MarshalingError("input is not numeric", node_id="mult1", item_id="clip-7")
    text = str(err)
    assert "mult1" in text
    assert "clip-7" in text
    assert "input is not numeric" in text
    assert err.message == "input is not numeric"


def test_str_without_context_is_the_message() -> None:
    assert str(AudioFormatError("bad rate")) == "bad rate"


def test_node_alone_appears_in_str() -> None:
    text = str(GraphError("dangling edge", node_id="vad"))
    assert "vad" in text and "dangling edge" in text
    assert "item" not in text


def test_with_context_fills_missing_fields_and_returns_self() -> None:
    err = MarshalingError("bad input")
    same = err.with_context(node_id="n1", item_id="i1")
    assert same is err
    assert (err.node_id, err.item_id) == ("n1", "i1")
    assert "n1" in str(err) and "i1" in str(err)


def test_with_context_keeps_fields_already_set() -> None:
    err = PythonError("ValueError: x", node_id="inner", item_id=None)
    err.with_context(node_id="outer", item_id="item-3")
    assert err.node_id == "inner"
    assert err.item_id == "item-3"
    err.with_context(item_id="item-9")
    assert err.item_id == "item-3"


def test_with_context_none_leaves_fields_unset() -> None:
    err = RetryableError("flaky").with_context()
    assert err.node_id is None and err.item_id is None


# -- pickling ----------------------------------------------------------------------------


@pytest.mark.parametrize("cls", ALL_CLASSES)
def test_every_error_pickles_with_message_and_context(cls: type[RemoteMediaError]) -> None:
    if cls is CycleError:
        err: RemoteMediaError = CycleError("cycle", nodes=["a", "b"]).with_context(
            node_id="a", item_id="i"
        )
    elif cls in (NodeNotFound, UnknownNodeType):
        err = cls("no such node", node_id="ghost").with_context(item_id="i")
    else:
        err = cls("went wrong", node_id="n1", item_id="item-1")
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is cls
    assert back.message == err.message
    assert back.node_id == err.node_id
    assert back.item_id == err.item_id
    assert str(back) == str(err)
    assert back.args == err.args


def test_cycle_error_pickles_with_nodes() -> None:
    back = pickle.loads(pickle.dumps(CycleError("cycle", nodes=["x", "y", "z"])))
    assert isinstance(back, CycleError)
    assert back.nodes == ["x", "y", "z"]


def test_python_error_pickles_with_traceback() -> None:
    err = PythonError(
        "TimeoutError: slow", node_id="n", item_id="7", traceback="File x.py, line 3\n"
    )
    back = pickle.loads(pickle.dumps(err))
    assert back.traceback == "File x.py, line 3\n"
    assert back.message == "TimeoutError: slow"
    assert back.is_retryable() is True


def test_retryable_error_pickles_with_attempts() -> None:
    err = RetryableError("flaky", node_id="n", attempt=3, max_attempts=4)
    back = pickle.loads(pickle.dumps(err))
    assert (back.attempt, back.max_attempts) == (3, 4)
    assert back.is_retryable() is True


def test_error_with_context_added_later_pickles_with_it() -> None:
    err = MarshalingError("bad").with_context(node_id="late", item_id="x")
    back = pickle.loads(pickle.dumps(err))
    assert (back.node_id, back.item_id) == ("late", "x")


def test_unpickled_node_not_found_is_still_a_key_error() -> None:
    back = pickle.loads(pickle.dumps(NodeNotFound("missing", node_id="m")))
    assert isinstance(back, KeyError)
    assert str(back) == "missing"
