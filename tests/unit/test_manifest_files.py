"""Manifests that fight back: every hostile input is a ManifestError naming the problem."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import remotemedia_ray as rm


def manifest(**node: Any) -> dict[str, Any]:
    return {
        "version": "v1",
        "nodes": [{"id": "n", "node_type": "ResampleNode", **node}],
        "connections": [],
    }


def test_a_file_that_is_not_utf8_is_a_manifest_error(tmp_path: Path) -> None:
    path = tmp_path / "latin1.json"
    path.write_bytes(json.dumps(manifest()).replace("ResampleNode", "Résample").encode("latin-1"))
    with pytest.raises(rm.ManifestError, match=r"latin1\.json: manifest is not UTF-8 text: byte"):
        rm.Manifest.from_file(path)


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_nesting_100000_deep_is_a_manifest_error(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"deep{suffix}"
    path.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(rm.ManifestError, match="nested too deeply"):
        rm.Manifest.from_file(path)


def test_deeply_nested_params_are_a_manifest_error() -> None:
    text = json.dumps(manifest())
    deep = '{"a": ' * 5000 + "1" + "}" * 5000
    text = text.replace('"node_type"', f'"params": {deep}, "node_type"')
    with pytest.raises(rm.ManifestError):
        rm.Manifest.from_json(text)


def test_a_yaml_alias_bomb_is_refused_before_it_expands(tmp_path: Path) -> None:
    bomb = ["a: &a [x, x, x, x, x, x, x, x, x]"]
    for level in "bcdefghi":
        prev = chr(ord(level) - 1)
        bomb.append(f"{level}: &{level} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]")
    bomb += ["version: v1", "nodes: []", "connections: []"]
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(bomb))
    assert path.stat().st_size < 700
    with pytest.raises(rm.ManifestError, match=r"bomb\.yaml: .*aliases are not allowed"):
        rm.Manifest.from_file(path)


def test_yaml_timestamps_stay_strings(tmp_path: Path) -> None:
    path = tmp_path / "m.yml"
    path.write_text(
        "version: v1\nmetadata: {created_at: 2025-10-27T10:00:00Z}\nnodes: []\nconnections: []\n"
    )
    assert rm.Manifest.from_file(path).metadata.created_at == "2025-10-27T10:00:00Z"


def test_a_file_over_16_mb_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "huge.json"
    path.write_text(json.dumps({**manifest(), "metadata": {"description": "x" * (17 << 20)}}))
    with pytest.raises(rm.ManifestError, match="larger than 16 MB"):
        rm.Manifest.from_file(path)


@pytest.mark.parametrize("value", [1e300, float("inf")])
def test_absurd_memory_is_a_manifest_error_not_an_overflow(value: float) -> None:
    data = manifest(capabilities={"memory_gb": value})
    with pytest.raises(rm.ManifestError, match=r"capabilities\.memory_gb"):
        rm.Manifest.from_dict(data)


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_json_constants_outside_the_standard_are_refused(constant: str) -> None:
    text = json.dumps(manifest()).replace('"connections"', f'"x": {constant}, "connections"')
    with pytest.raises(rm.ManifestError, match=f"{constant.lstrip('-')} is not a JSON number"):
        rm.Manifest.from_json(text)


@pytest.mark.parametrize(
    ("execution", "field"),
    [
        ({"replicas": "2"}, "execution.replicas"),
        ({"replicas": True}, "execution.replicas"),
        ({"replicas": 2.5}, "execution.replicas"),
        ({"num_cpus": "1"}, "execution.num_cpus"),
        ({"batch_size": False}, "execution.batch_size"),
    ],
)
def test_manifest_numbers_follow_json_types_strictly(execution: dict[str, Any], field: str) -> None:
    with pytest.raises(rm.ManifestError, match=rf"nodes\[0\]\.{field} \(node 'n'\)"):
        rm.Manifest.from_dict(manifest(execution=execution))


def test_ids_and_types_must_be_strings() -> None:
    data = manifest()
    data["nodes"][0]["id"] = 7
    with pytest.raises(rm.ManifestError, match=r"nodes\[0\]\.id"):
        rm.Manifest.from_dict(data)
    with pytest.raises(rm.ManifestError, match="version"):
        rm.Manifest.from_dict({**manifest(), "version": 1})


@pytest.mark.parametrize(
    ("params", "needle"),
    [
        ({"target_rate": "16000"}, "param 'target_rate'"),
        ({"target_rate": True}, "param 'target_rate'"),
        ({"target_rate": 16000.5}, "param 'target_rate'"),
        ({"quality": 3}, "param 'quality'"),
    ],
)
def test_params_follow_json_types_strictly_when_the_pipeline_is_built(
    params: dict[str, Any], needle: str
) -> None:
    # Checked when the pipeline is built, before any item runs.
    with pytest.raises(rm.ManifestError, match=rf"^\[node 'n'\] {needle}"):
        rm.Pipeline(manifest(params=params), runtime="local")


def test_numbers_of_every_json_kind_are_accepted_where_the_schema_says_number() -> None:
    data = {
        "version": "v1",
        "nodes": [
            {"id": "gain", "node_type": "MultiplyNode", "params": {"factor": 2}},
            {"id": "vad", "node_type": "VADNode", "params": {"threshold": -40}},
        ],
        "connections": [{"from": "gain", "to": "vad"}],
    }
    silence = rm.AudioBuffer.from_numpy(np.zeros(1600, np.float32), 16000)
    with rm.Pipeline(data, runtime="local") as pipeline:  # integers where numbers are due
        assert pipeline.run(silence) == {"vad": []}


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        (
            {
                "version": "v1",
                "nodes": [{"id": "a", "node_type": "AddNode"}],
                "connections": [{"from_": "a", "to": "a"}],
            },
            "connections[0]: unknown key 'from_'",
        ),
        (
            {"version": "v1", "schema_uri": "x", "nodes": [], "connections": []},
            "unknown key 'schema_uri'",
        ),
    ],
)
def test_python_field_names_are_not_manifest_keys(data: dict[str, Any], needle: str) -> None:
    with pytest.raises(rm.ManifestError) as info:
        rm.Manifest.from_dict(data)
    assert needle in str(info.value)


def test_an_empty_manifest_runs_and_yields_nothing() -> None:
    empty = {"version": "v1", "nodes": [], "connections": []}
    with rm.Pipeline(empty, runtime="local") as pipeline:
        assert pipeline.run(1.0) == {}
        assert list(pipeline.map([1.0, 2.0])) == [{}, {}]


def test_a_manifest_without_metadata_runs() -> None:
    data = {
        "version": "v1",
        "nodes": [{"id": "gain", "node_type": "MultiplyNode", "params": {"factor": 3.0}}],
        "connections": [],
    }
    with rm.Pipeline(data, runtime="local") as pipeline:
        assert pipeline.run(2.0) == {"gain": 6.0}
