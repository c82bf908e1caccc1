"""Manifest parsing, validation and schema."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

import remotemedia_ray as rm


def base() -> dict[str, Any]:
    return {
        "version": "v1",
        "metadata": {"name": "gain"},
        "nodes": [
            {"id": "mul", "node_type": "MultiplyNode", "params": {"factor": 3}},
            {"id": "add", "node_type": "AddNode", "params": {"addend": 1}},
        ],
        "connections": [{"from": "mul", "to": "add"}],
    }


def with_change(path: str, value: Any) -> dict[str, Any]:
    data = copy.deepcopy(base())
    target: Any = data
    keys = path.split(".")
    for key in keys[:-1]:
        target = target[int(key)] if key.isdigit() else target[key]
    target[keys[-1]] = value
    return data


def test_parses_v1_fields_and_extensions() -> None:
    data = base()
    data["$schema"] = "https://example.org/manifest.schema.json"
    data["nodes"][0]["execution"] = {"replicas": 2, "num_cpus": 0.5, "batch_size": 8}
    data["nodes"][0]["runtime_hint"] = "cpython"
    data["nodes"][1]["capabilities"] = {"cpu": {"cores": 2}, "memory_gb": 1.5}
    m = rm.Manifest.from_dict(data).validate()
    assert m.schema_uri == "https://example.org/manifest.schema.json"
    assert m.nodes[0].execution.replicas == 2
    assert m.nodes[0].execution.num_cpus == 0.5
    assert m.nodes[0].runtime_hint == "cpython"
    assert m.nodes[1].execution.replicas == 1  # default
    assert m.nodes[1].runtime_hint == "auto"  # default
    assert m.connections[0].from_ == "mul"
    assert m.to_dict()["connections"] == [{"from": "mul", "to": "add"}]
    assert rm.Manifest.from_json(m.to_json()) == m


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        (with_change("colour", "red"), "unknown key 'colour'"),
        (with_change("nodes.0.paramz", {}), "nodes[0] (node 'mul'): unknown key 'paramz'"),
        (
            with_change("nodes.1.execution", {"replicaz": 2}),
            "nodes[1].execution (node 'add'): unknown key 'replicaz'",
        ),
        (with_change("nodes.0.execution", {"replicas": 0}), "nodes[0].execution.replicas"),
        (with_change("nodes.0.execution", {"replicas": 10**6}), "nodes[0].execution.replicas"),
        (with_change("nodes.0.execution", {"batch_size": -1}), "execution.batch_size"),
        (with_change("nodes.0.execution", {"num_gpus": -1}), "execution.num_gpus"),
        (with_change("nodes.0.runtime_hint", "java"), "nodes[0].runtime_hint"),
        (with_change("nodes.0.id", "has space"), "nodes[0].id"),
        (with_change("nodes.0.node_type", ""), "nodes[0].node_type"),
        (with_change("connections.0.from", "bad id!"), "connections[0].from"),
        (with_change("metadata", {"name": 3}), "metadata.name: Input should be a valid string"),
        (with_change("nodes", {}), "nodes: Input should be a valid list"),
        (
            with_change("nodes.0.host", "gpu-box:50051"),
            "nodes[0] (node 'mul'): 'host' (running a node on a remote RemoteMedia server) is "
            "not supported",
        ),
        (with_change("nodes.0.capabilities", {"gpu": {"type": "tpu"}}), "capabilities.gpu.type"),
        ({k: v for k, v in base().items() if k != "connections"}, "connections: required"),
    ],
)
def test_structural_rejection_names_the_field(data: dict[str, Any], needle: str) -> None:
    with pytest.raises(rm.ManifestError) as info:
        rm.Manifest.from_dict(data)
    assert needle in str(info.value)
    assert isinstance(info.value, ValueError)


def test_rejects_wrong_version() -> None:
    with pytest.raises(rm.ManifestError, match='unsupported manifest version .v2.; expected "v1"'):
        rm.Manifest.from_dict(with_change("version", "v2"))


def test_rejects_duplicate_node_ids() -> None:
    data = base()
    data["nodes"][1]["id"] = "mul"
    data["connections"] = []
    with pytest.raises(rm.ManifestError, match=r"nodes\[1\]: duplicate node id 'mul'"):
        rm.Manifest.from_dict(data)


def test_rejects_connection_to_unknown_node() -> None:
    data = with_change("connections", [{"from": "mul", "to": "ghost"}])
    with pytest.raises(rm.ManifestError, match=r"connections\[0\]\.to: unknown node 'ghost'"):
        rm.Manifest.from_dict(data)


def test_rejects_duplicate_connection() -> None:
    data = with_change("connections", [{"from": "mul", "to": "add"}, {"from": "mul", "to": "add"}])
    with pytest.raises(rm.ManifestError, match=r"connections\[1\]: duplicate connection"):
        rm.Manifest.from_dict(data)


def test_cycles_are_cycle_errors_and_manifest_errors() -> None:
    data = with_change("connections", [{"from": "mul", "to": "add"}, {"from": "add", "to": "mul"}])
    with pytest.raises(rm.CycleError) as info:
        rm.Manifest.from_dict(data)
    assert info.value.nodes == ["mul", "add"]
    assert isinstance(info.value, rm.ManifestError)
    assert isinstance(info.value, rm.GraphError)


def test_validate_rechecks_a_manifest_built_without_validation() -> None:
    good = rm.Manifest.from_dict(base())
    assert good.validate() is good
    broken = rm.Manifest.model_construct(
        version="v1",
        metadata=good.metadata,
        nodes=[good.nodes[0], good.nodes[0]],
        connections=[],
    )
    with pytest.raises(rm.ManifestError, match=r"nodes\[1\]: duplicate node id 'mul'"):
        broken.validate()


def test_a_manifest_is_valid_by_construction() -> None:
    from pydantic import ValidationError

    data = with_change("connections", [{"from": "mul", "to": "ghost"}])
    with pytest.raises(ValidationError, match="unknown node 'ghost'"):
        rm.Manifest.model_validate(data)


def test_every_problem_is_reported_at_once() -> None:
    data = {
        "version": "v9",
        "nodes": [
            {"id": "a", "node_type": "AddNode", "parms": {}},
            {"id": "a", "node_type": "AddNode"},
        ],
        "connections": [{"from": "a", "to": "ghost"}],
    }
    with pytest.raises(rm.ManifestError) as info:
        rm.Manifest.from_dict(data)
    text = str(info.value)
    assert "version: unsupported manifest version 'v9'" in text
    assert "nodes[0] (node 'a'): unknown key 'parms'" in text
    assert "nodes[1]: duplicate node id 'a'" in text
    assert "connections[0].to: unknown node 'ghost'" in text
    assert len(text.splitlines()) == 5


def test_structure_problems_and_a_cycle_together_raise_a_cycle_error() -> None:
    data = with_change("connections", [{"from": "mul", "to": "add"}, {"from": "add", "to": "mul"}])
    data["nodes"][0]["execution"] = {"replicas": 0}
    with pytest.raises(rm.CycleError) as info:
        rm.Manifest.from_dict(data)
    assert "execution.replicas" in str(info.value)
    assert "cycle" in str(info.value)
    assert info.value.nodes == ["mul", "add"]


def test_metadata_is_optional_as_in_the_v1_schema() -> None:
    data = {k: v for k, v in base().items() if k != "metadata"}
    m = rm.Manifest.from_dict(data)
    assert m.metadata.name is None
    assert rm.Manifest.from_dict({**data, "metadata": {}}).metadata.name is None
    assert rm.Manifest.from_dict({**data, "metadata": {"description": "d"}}).metadata.name is None
    assert "metadata" not in rm.Manifest.json_schema()["required"]


def test_an_empty_manifest_is_valid() -> None:
    m = rm.Manifest.from_dict({"version": "v1", "nodes": [], "connections": []})
    graph = rm.PipelineGraph.from_manifest(m)
    assert graph.execution_order == ()
    assert graph.sources == graph.sinks == ()


def test_non_object_and_bad_json_are_rejected() -> None:
    with pytest.raises(rm.ManifestError, match="must be a JSON object, got list"):
        rm.Manifest.from_dict([1, 2])
    with pytest.raises(rm.ManifestError, match="not valid JSON: .* line 1"):
        rm.Manifest.from_json("{not json")


def test_json_with_a_utf8_byte_order_mark_loads_as_yaml_does(tmp_path: Path) -> None:
    text = json.dumps(base())
    assert rm.Manifest.from_json("\ufeff" + text) == rm.Manifest.from_json(text)
    path = tmp_path / "m.json"
    path.write_bytes(b"\xef\xbb\xbf" + text.encode())
    assert rm.Manifest.from_file(path) == rm.Manifest.from_json(text)


def test_an_id_outside_the_id_rule_says_what_ids_may_hold() -> None:
    data = with_change("nodes.0.id", "audio.resample")
    with pytest.raises(rm.ManifestError) as info:
        rm.Manifest.from_dict(data)
    assert (
        "nodes[0].id (node 'audio.resample'): a node id may hold only ASCII letters, digits, "
        "'_' and '-' (ids name output folders and Ray actors), got 'audio.resample'"
    ) in str(info.value)


def test_a_key_repeated_in_json_or_yaml_is_rejected_not_overwritten() -> None:
    text = json.dumps(base())
    with pytest.raises(rm.ManifestError, match="key 'nodes' appears twice in one object"):
        rm.Manifest.from_json(text[:-1] + ', "nodes": []}')
    params = '{"id": "mul", "node_type": "MultiplyNode", "params": {"factor": 3, "factor": 1}}'
    with pytest.raises(rm.ManifestError, match="key 'factor' appears twice"):
        rm.Manifest.from_json(f'{{"version": "v1", "nodes": [{params}], "connections": []}}')
    yaml_text = "version: v1\nnodes:\n  - id: a\n    node_type: MultiplyNode\n"
    with pytest.raises(rm.ManifestError, match=r"(?s)key 'node_type' appears twice.*line 5"):
        rm.Manifest.from_yaml(yaml_text + "    node_type: AddNode\nconnections: []\n")
    assert rm.Manifest.from_yaml(yaml_text + "connections: []\n").nodes[0].id == "a"
    merged = yaml_text + "    params: {<<: {factor: 2.0, x: 1}, factor: 3.0}\nconnections: []\n"
    assert rm.Manifest.from_yaml(merged).nodes[0].params == {"factor": 3.0, "x": 1}


def test_loads_json_and_yaml_files(tmp_path: Path) -> None:
    import yaml

    json_path = tmp_path / "m.json"
    json_path.write_text(json.dumps(base()))
    yaml_path = tmp_path / "m.yaml"
    yaml_path.write_text(yaml.safe_dump(base()))
    yml_path = tmp_path / "m.yml"
    yml_path.write_text(yaml.safe_dump(base()))
    loaded = [rm.Manifest.from_file(p) for p in (json_path, yaml_path, yml_path)]
    assert loaded[0] == loaded[1] == loaded[2]
    assert loaded[0].nodes[0].params == {"factor": 3}


def test_file_errors_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(with_change("nodes.0.paramz", 1)))
    with pytest.raises(rm.ManifestError, match=r"bad\.json: invalid manifest"):
        rm.Manifest.from_file(bad)
    with pytest.raises(rm.ManifestError, match="cannot read manifest"):
        rm.Manifest.from_file(tmp_path / "missing.json")
    with pytest.raises(rm.ManifestError, match="unsupported manifest file type '.toml'"):
        rm.Manifest.from_file(tmp_path / "m.toml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("nodes: [unclosed")
    with pytest.raises(rm.ManifestError, match="not valid YAML"):
        rm.Manifest.from_file(broken)


def test_json_schema_documents_fields_and_aliases() -> None:
    schema = rm.Manifest.json_schema()
    assert "$schema" in schema["properties"]
    assert set(schema["required"]) == {"version", "nodes", "connections"}
    assert schema["properties"]["version"]["const"] == "v1"
    defs = schema["$defs"]
    assert "from" in defs["Connection"]["properties"]
    assert defs["ExecutionOptions"]["properties"]["replicas"]["minimum"] == 1
    assert defs["ExecutionOptions"]["additionalProperties"] is False
    assert defs["NodeSpec"]["properties"]["runtime_hint"]["default"] == "auto"
    json.dumps(schema)  # serializable


def test_node_lookup() -> None:
    m = rm.Manifest.from_dict(base())
    assert m.node("add").node_type == "AddNode"
    with pytest.raises(rm.NodeNotFound) as info:
        m.node("nope")
    assert info.value.node_id == "nope"
    assert isinstance(info.value, KeyError)
