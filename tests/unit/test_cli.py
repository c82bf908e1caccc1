"""The remotemedia-ray command line: validate, nodes, schema, and `run`'s usage (no Ray starts)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from remotemedia_ray import cli

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
MANIFEST = EXAMPLES / "speech_prep.json"
CLI = Path(sys.executable).parent / "remotemedia-ray"


def _cli_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["RAY_AUTH_MODE"] = "disabled"
    return env


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
            r"node 'r'\W{1,3}unknown param 'target_rat'",
        ),
        (
            {
                "version": "v1",
                "metadata": {"name": "x"},
                "nodes": [{"id": "r", "node_type": "Nope"}],
                "connections": [],
            },
            re.escape("unknown node type 'Nope'"),
        ),
        (
            {
                "version": "v1",
                "metadata": {"name": "x"},
                "nodes": [{"id": "a", "node_type": "AddNode", "execution": {"replicas": 0}}],
                "connections": [],
            },
            re.escape("nodes[0].execution.replicas"),
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
    assert f"invalid: {path}" in captured.err and re.search(needle, captured.err)


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
    assert set(schema["required"]) == {"version", "nodes", "connections"}  # metadata optional


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


def _manifest_file(folder: Path, name: str, content: bytes) -> Path:
    path = folder / name
    path.write_bytes(content)
    return path


def test_validate_checks_every_file_and_reports_each(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gain = (EXAMPLES / "gain.json").read_bytes()
    first_bad = _manifest_file(tmp_path, "a_cycle.json", json.dumps({
        "version": "v1", "nodes": [{"id": "a", "node_type": "AddNode"}],
        "connections": [{"from": "a", "to": "a"}],
    }).encode())  # fmt: skip
    good = _manifest_file(tmp_path, "b_good.json", gain)
    not_utf8 = _manifest_file(tmp_path, "c_latin1.json", gain.replace(b'"gain"', b'"g\xe9n"', 1))
    not_json = _manifest_file(tmp_path, "d_truncated.json", gain[: len(gain) // 2])
    missing = tmp_path / "e_missing.json"
    wrong_type = _manifest_file(tmp_path, "f_manifest.txt", gain)
    last_good = _manifest_file(
        tmp_path, "g_good.yaml", b"version: v1\nnodes: []\nconnections: []\n"
    )
    paths = [first_bad, good, not_utf8, not_json, missing, wrong_type, last_good]

    assert cli.main(["validate", *map(str, paths)]) == 1

    captured = capsys.readouterr()
    assert f"ok: {good}" in captured.out and f"ok: {last_good}" in captured.out
    for bad in (first_bad, not_utf8, not_json, missing, wrong_type):
        assert f"invalid: {bad}\n" in captured.err, bad
    assert "UTF-8" in captured.err
    assert "Traceback" not in captured.err
    assert "2 of 7 manifest(s) valid" in captured.out


def test_validate_exits_0_only_when_every_file_is_valid(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    paths = [str(p) for p in sorted(EXAMPLES.glob("*.json"))]
    assert cli.main(["validate", *paths]) == 0
    bad = _manifest_file(tmp_path, "bad.json", b"{}")
    assert cli.main(["validate", str(bad), *paths]) == 1  # a bad first file stops nothing
    assert capsys.readouterr().out.count("ok: ") == 2 * len(paths)


def test_validate_a_non_utf8_manifest_is_a_clean_error_in_a_process(tmp_path: Path) -> None:
    exe = shutil.which("remotemedia-ray", path=str(Path(sys.executable).parent))
    assert exe is not None
    bad = _manifest_file(
        tmp_path, "latin1.json", b'{"version": "v1", "metadata": {"name": "caf\xe9"}}'
    )
    good = EXAMPLES / "gain.json"
    proc = subprocess.run(
        [exe, "validate", str(bad), str(good)], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 1
    assert f"invalid: {bad}" in proc.stderr and "UTF-8" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert f"ok: {good}" in proc.stdout


def test_nodes_lists_a_user_node_without_a_docstring(capsys: pytest.CaptureFixture[str]) -> None:
    import remotemedia_ray as rm
    from remotemedia_ray.nodes import registry

    @rm.register_node("TestCliUndocumented")
    class Undocumented(rm.NodeExecutor):
        def initialize(self, params: dict[str, object]) -> None:
            pass

        def execute(self, input: object) -> object:
            return input

    try:
        assert cli.main(["nodes"]) == 0
        assert "TestCliUndocumented  [cpython]" in capsys.readouterr().out
    finally:
        with registry._lock:
            registry._classes.pop("TestCliUndocumented", None)


def test_run_help_lists_the_flags() -> None:
    done = subprocess.run(
        [str(CLI), "run", "--help"], capture_output=True, text=True, env=_cli_env(), timeout=60
    )
    assert done.returncode == 0
    for flag in (
        "--input", "--output", "--address", "--runtime", "--node-runtime", "--resume",
        "--overwrite", "--max-errors", "--write-audio", "--batch-size", "--max-in-flight",
        "--shard-rows", "--compression", "--quiet", "MANIFEST", "OUTDIR",
    ):  # fmt: skip
        assert flag in done.stdout, flag


def test_an_unknown_compression_exits_1_naming_the_codecs(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    done = subprocess.run(
        [str(CLI), "run", str(MANIFEST), "-i", str(tmp_path / "in"), "-o", str(tmp_path / "out"),
         "--compression", "brotli", "--runtime", "local"],
        capture_output=True,
        text=True,
        env=_cli_env(),
        timeout=120,
    )  # fmt: skip
    assert done.returncode == 1
    assert "--compression must be one of zstd, lz4, snappy, none, got 'brotli'" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "out").exists()


def test_a_missing_input_exits_1_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-folder"
    done = subprocess.run(
        [str(CLI), "run", str(MANIFEST), "-i", str(missing), "-o", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        env=_cli_env(),
        timeout=120,
    )
    assert done.returncode == 1
    assert str(missing) in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "out").exists()


def test_plan_shows_the_pools_run_would_use_and_why(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = json.loads(MANIFEST.read_text())
    vad = next(n for n in manifest["nodes"] if n["id"] == "vad")
    vad["capabilities"] = {"gpu": {"type": "cuda"}}  # a GPU node between CPU nodes
    path = tmp_path / "gpu.json"
    path.write_text(json.dumps(manifest))

    assert cli.main(["plan", str(path), "--cpus", "8", "--gpus", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("runtime ray: ")
    pools = lines[2:]
    assert len(pools) == 3  # the CPU nodes before the VAD, the VAD, pcm16 after it
    (gpu_pool,) = [line for line in pools if "1 GPU per actor" in line]
    assert gpu_pool.split()[1] == "vad" and "2 actor(s) of 1 GPU" in gpu_pool
    assert "job:read" in pools[0] and "one per CPU" in pools[0] and "pcm16" in pools[2]

    assert cli.main(["plan", str(path), "--cpus", "8", "--gpus", "2", "--json"]) == 0
    layout = json.loads(capsys.readouterr().out)
    by_nodes = {tuple(p["nodes"]): p for p in layout["pools"]}
    assert by_nodes[("vad",)]["num_gpus"] == 1.0 and by_nodes[("vad",)]["replicas"] == 2
    assert sum(len(p["nodes"]) for p in layout["pools"]) == 7  # 4 nodes + the job's 3
    assert [p["num_gpus"] for p in layout["pools"]] == [0.0, 1.0, 0.0]
    assert {n for p in layout["pools"] for n in p["nodes"]} >= {"mono", "resample", "pcm16"}

    assert cli.main(["plan", str(MANIFEST), "--no-fuse", "--cpus", "4", "--json"]) == 0
    unfused = json.loads(capsys.readouterr().out)
    assert [p["name"] for p in unfused["pools"]] == [p["nodes"][0] for p in unfused["pools"]]


def test_plan_names_a_bad_manifest_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"version": "v1", "nodes": [{"id": "x"}], "connections": []}))
    assert cli.main(["plan", str(path)]) == 1
    assert "node_type" in capsys.readouterr().err
