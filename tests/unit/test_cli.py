"""The remotemedia-ray command line: validate, nodes, schema."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from remotemedia_ray import cli

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_validate_accepts_every_example(capsys: pytest.CaptureFixture[str]) -> None:
    paths = [str(p) for p in sorted(EXAMPLES.glob("*.json"))]
    assert cli.main(["validate", *paths]) == 0
    out = capsys.readouterr().out
    assert out.count("ok: ") == len(paths)


@pytest.mark.parametrize(
    ("manifest", "needle"),
    [
        (
            {
                "version": "v1",
                "metadata": {"name": "x"},
                "nodes": [{"id": "r", "node_type": "ResampleNode", "params": {"target_rat": 1}}],
                "connections": [],
            },
            "node 'r': unknown param 'target_rat'",
        ),
        (
            {
                "version": "v1",
                "metadata": {"name": "x"},
                "nodes": [{"id": "r", "node_type": "Nope"}],
                "connections": [],
            },
            "unknown node type 'Nope'",
        ),
        (
            {
                "version": "v1",
                "metadata": {"name": "x"},
                "nodes": [{"id": "a", "node_type": "AddNode", "execution": {"replicas": 0}}],
                "connections": [],
            },
            "nodes[0].execution.replicas",
        ),
        (
            {
                "version": "v1",
                "metadata": {"name": "x"},
                "nodes": [{"id": "a", "node_type": "AddNode"}],
                "connections": [{"from": "a", "to": "a"}],
            },
            "cycle",
        ),
    ],
)
def test_validate_names_the_field_or_node(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], manifest: dict, needle: str
) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(manifest))
    good = EXAMPLES / "gain.json"
    assert cli.main(["validate", str(good), str(path)]) == 1
    captured = capsys.readouterr()
    assert f"ok: {good}" in captured.out
    assert f"invalid: {path}" in captured.err and needle in captured.err


def test_nodes_lists_types_params_defaults_and_runtimes(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["nodes", "--json"]) == 0
    catalog = {e["node_type"]: e for e in json.loads(capsys.readouterr().out)}
    resample = catalog["ResampleNode"]
    assert resample["params"]["target_rate"]["default"] == 16000
    assert resample["params"]["quality"]["default"] == "high"
    assert "cpython" in resample["runtimes"]
    assert catalog["VADNode"]["params"]["threshold"]["default"] == -30.0
    assert cli.main(["nodes"]) == 0
    text = capsys.readouterr().out
    assert "FormatConverterNode" in text and "target_format" in text


def test_schema_prints_the_manifest_schema(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert set(schema["required"]) == {"version", "metadata", "nodes", "connections"}


def test_console_script_help_and_version() -> None:
    exe = shutil.which("remotemedia-ray", path=str(Path(sys.executable).parent))
    assert exe is not None, "the console script is installed with the package"
    proc = subprocess.run([exe, "--help"], capture_output=True, text=True, check=False)
    assert proc.returncode == 0
    for command in ("validate", "nodes", "schema"):
        assert command in proc.stdout
    proc = subprocess.run([exe, "--version"], capture_output=True, text=True, check=False)
    assert proc.returncode == 0 and proc.stdout.startswith("remotemedia-ray ")
    proc = subprocess.run([exe, "validate"], capture_output=True, text=True, check=False)
    assert proc.returncode == 2 and "MANIFEST" in proc.stderr
