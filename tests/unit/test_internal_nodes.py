"""The dataset job's own node types stay internal: not listed, not nameable in a manifest."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

import remotemedia_ray as rm
from remotemedia_ray import cli
from remotemedia_ray._runtime.plan import PipelinePlan
from remotemedia_ray.dataset.readers import INTERNAL_NODES
from remotemedia_ray.nodes import registry

INTERNAL = sorted(INTERNAL_NODES)


def _manifest(node_type: str) -> rm.Manifest:
    return rm.Manifest.from_dict(
        {"version": "v1", "nodes": [{"id": "x", "node_type": node_type}], "connections": []}
    )


def _listed_types(message: str) -> str:
    assert "registered types: " in message, message
    return message.split("registered types: ", 1)[1]


def test_the_internal_types_are_exactly_the_jobs_reader_key_and_duration() -> None:
    assert INTERNAL == ["AudioDuration", "AudioFileReader", "ContentKey"]


def test_available_node_types_lists_no_internal_type() -> None:
    types = rm.available_node_types()
    assert "ResampleNode" in types
    assert not set(INTERNAL) & set(types)
    for node_type in INTERNAL:
        assert registry.node_class(node_type, "cpython") is None


@pytest.mark.parametrize("node_type", INTERNAL)
def test_a_manifest_naming_an_internal_type_is_rejected_when_built(node_type: str) -> None:
    with pytest.raises(rm.NodeNotFound, match=f"unknown node type '{node_type}'") as raised:
        PipelinePlan.build(_manifest(node_type))
    listed = _listed_types(str(raised.value))
    assert "VADNode" in listed
    assert not any(name in listed for name in INTERNAL)
    with pytest.raises(rm.NodeNotFound):
        rm.Pipeline(_manifest(node_type), runtime="local")
    with pytest.raises(rm.NodeNotFound, match="registered types"):
        rm.create_node(node_type)


def test_validate_rejects_a_manifest_naming_an_internal_type(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "reader.json"
    path.write_text(json.dumps(_manifest("AudioFileReader").to_dict()))
    assert cli.main(["validate", str(path)]) == 1
    err = capsys.readouterr().err
    assert f"invalid: {path}" in err and "unknown node type 'AudioFileReader'" in err
    assert not any(name in _listed_types(err) for name in INTERNAL)


def test_nodes_command_lists_no_internal_type(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["nodes", "--json"]) == 0
    listed = {entry["node_type"] for entry in json.loads(capsys.readouterr().out)}
    assert "ResampleNode" in listed and not set(INTERNAL) & listed
    assert cli.main(["nodes"]) == 0
    text = capsys.readouterr().out
    assert not any(name in text for name in INTERNAL)


def test_internal_ids_are_outside_the_manifest_id_pattern() -> None:
    node_id = registry.internal_node_id("read")
    assert registry.is_internal_node_id(node_id)
    assert not registry.is_internal_node_id("read") and not registry.is_internal_node_id(None)
    with pytest.raises(rm.ManifestError, match="nodes\\[0\\].id"):
        rm.Manifest.from_dict(
            {"version": "v1", "nodes": [{"id": node_id, "node_type": "AddNode"}], "connections": []}
        )


def test_internal_types_resolve_only_for_internal_ids() -> None:
    node_id = registry.internal_node_id("read")
    assert (
        registry.resolve_node_class("AudioFileReader", "auto", node_id=node_id)
        is (INTERNAL_NODES["AudioFileReader"])
    )
    # whatever runtime the job is asked for, its own nodes are the Python ones
    assert (
        registry.resolve_node_class("ContentKey", "rust_native", node_id=node_id)
        is (INTERNAL_NODES["ContentKey"])
    )
    with pytest.raises(rm.NodeNotFound):
        registry.resolve_node_class("AudioFileReader", "auto", node_id="read")
    # public types resolve for internal ids as for any other
    assert registry.resolve_node_class("AddNode", "cpython", node_id=node_id).runtime == "cpython"


def test_a_user_type_may_reuse_an_internal_name_without_touching_the_job() -> None:
    @rm.register_node("ContentKey")
    class UserContentKey(rm.NodeExecutor):
        """A user's own node that happens to share an internal node's name."""

        def initialize(self, params: dict[str, object]) -> None:
            pass

        def execute(self, input: object) -> object:
            return input

    try:
        assert "ContentKey" in rm.available_node_types()
        assert registry.resolve_node_class("ContentKey", "cpython") is UserContentKey
        internal = registry.resolve_node_class(
            "ContentKey", "auto", node_id=registry.internal_node_id("key")
        )
        assert internal is INTERNAL_NODES["ContentKey"]
    finally:
        with registry._lock:
            registry._classes.pop("ContentKey", None)


def _fresh_python(code: str, stdin: bytes = b"") -> None:
    done = subprocess.run(
        [sys.executable, "-c", code], input=stdin, capture_output=True, timeout=120
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")


def test_the_registry_loads_without_importing_the_dataset_job() -> None:
    _fresh_python(
        "import sys, remotemedia_ray as rm\n"
        "rm.available_node_types(); rm.create_node('AddNode')\n"
        "assert not [m for m in sys.modules if m.startswith('remotemedia_ray.dataset')]\n"
    )


def test_unpickling_an_internal_node_class_registers_it_as_in_a_ray_worker() -> None:
    # A Ray worker gets the plan pickled: the class travels by reference, and
    # importing its module registers the job's internal types.
    _fresh_python(
        "import pickle, sys\n"
        "from remotemedia_ray.nodes import registry\n"
        "cls = pickle.loads(sys.stdin.buffer.read())\n"
        "node_id = registry.internal_node_id('read')\n"
        "assert registry.resolve_node_class('AudioFileReader', 'auto', node_id=node_id) is cls\n"
        "assert registry.resolve_node_class('ContentKey', 'auto', node_id=node_id)\n",
        stdin=pickle.dumps(INTERNAL_NODES["AudioFileReader"]),
    )
