"""``remotemedia-ray run`` keeps stdout for its summary alone, so scripts can parse it.

Progress, Ray's log lines (with their colour codes) and whatever nodes print
go to stderr; a file that cannot be decoded is named by its path.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MANIFEST = ROOT / "examples" / "speech_prep.json"
CLI = Path(sys.executable).parent / "remotemedia-ray"

pytestmark = pytest.mark.slow


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["RAY_AUTH_MODE"] = "disabled"
    env.update(extra)
    return env


def _inputs(folder: Path) -> Path:
    """Two good examples and one file that is not audio."""
    folder.mkdir()
    for name in ("digits_mono_22k.wav", "prepare_mono_48k.wav"):
        shutil.copy(ROOT / "examples" / "audio" / name, folder / name)
    (folder / "corrupt.wav").write_bytes(b"this is not audio at all" * 40)
    return folder


def _assert_only_the_summary(stdout: str) -> None:
    assert stdout.endswith("\n") and stdout.count("\n") == 1, repr(stdout)
    assert "\x1b" not in stdout, repr(stdout)
    assert stdout.startswith("Pipeline completed in "), repr(stdout)
    assert "2 file(s) done, 0 skipped, 1 failed" in stdout, repr(stdout)


def test_run_prints_only_its_summary_on_stdout_and_names_the_corrupt_file(
    tmp_path: Path,
) -> None:
    inputs = _inputs(tmp_path / "in")
    outdir = tmp_path / "out"

    done = subprocess.run(
        [str(CLI), "run", str(MANIFEST), "-i", str(inputs), "-o", str(outdir)],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=300,
    )

    assert done.returncode == 0, done.stderr
    _assert_only_the_summary(done.stdout)
    assert "files 3/3" in done.stderr  # progress goes to stderr
    (entry,) = [json.loads(line) for line in (outdir / "errors.jsonl").read_text().splitlines()]
    corrupt = str((inputs / "corrupt.wav").resolve())
    assert entry["item_id"] == "corrupt.wav" and entry["path"] == corrupt
    assert corrupt in entry["error"]
    assert "BytesIO" not in entry["error"] and " at 0x" not in entry["error"]


_NOISY_NODES = '''
import os

import remotemedia_ray as rm


@rm.register_node("NoisyPassThrough")
class NoisyPassThrough(rm.NodeExecutor):
    """Passes audio through, writing to stdout from Python and from file descriptor 1."""

    def initialize(self, params):
        print("\\x1b[31mnoisy initialize\\x1b[0m", flush=True)

    def execute(self, input):
        print("\\x1b[32mnoisy print\\x1b[0m", flush=True)
        os.write(1, b"noisy fd write\\n")
        return input
'''

_DRIVER = """
import sys

import noisy_nodes  # registers NoisyPassThrough (Ray workers import it by name)
from remotemedia_ray.cli import main

sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("runtime", ["local", "ray"])
def test_what_nodes_print_goes_to_stderr_not_stdout(tmp_path: Path, runtime: str) -> None:
    code = tmp_path / "code"
    code.mkdir()
    (code / "noisy_nodes.py").write_text(textwrap.dedent(_NOISY_NODES))
    (code / "drive.py").write_text(textwrap.dedent(_DRIVER))
    manifest = tmp_path / "noisy.json"
    manifest.write_text(
        json.dumps(
            {
                "version": "v1",
                "nodes": [{"id": "noisy", "node_type": "NoisyPassThrough"}],
                "connections": [],
            }
        )
    )
    inputs = _inputs(tmp_path / "in")
    python_path = os.pathsep.join(filter(None, [str(code), os.environ.get("PYTHONPATH")]))

    done = subprocess.run(
        [sys.executable, str(code / "drive.py"), "run", str(manifest), "-i", str(inputs),
         "-o", str(tmp_path / "out"), "--runtime", runtime],
        capture_output=True,
        text=True,
        env=_env(PYTHONPATH=python_path),
        timeout=300,
    )  # fmt: skip

    assert done.returncode == 0, done.stderr
    _assert_only_the_summary(done.stdout)
    if runtime == "local":  # in this process: every line is there, on stderr
        assert "noisy print" in done.stderr and "noisy fd write" in done.stderr
