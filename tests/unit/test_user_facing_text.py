"""What users read cites only what users have: the README or the package's own modules.

DESIGN.md is this project's internal contract; it is not installed with the
package, so docstrings, messages and ``remotemedia-ray`` output never point at it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from remotemedia_ray import cli

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "remotemedia_ray"
USER_FACING = (PACKAGE, ROOT / "examples", ROOT / "benchmarks", ROOT / "README.md")
_GENERATED = {"__pycache__", "html", "results", "env"}  # asv's outputs and environments


def _text_files() -> list[Path]:
    files: list[Path] = []
    for place in USER_FACING:
        candidates = [place] if place.is_file() else sorted(place.rglob("*"))
        for path in candidates:
            inside = path.relative_to(ROOT).parts[:-1]
            if not path.is_file() or any(p.startswith(".") or p in _GENERATED for p in inside):
                continue
            if path.suffix in (".py", ".pyi", ".md", ".json", ".toml", ".txt", ".yaml", ".yml"):
                files.append(path)
    return files


def test_no_user_facing_file_mentions_design_md() -> None:
    files = _text_files()
    assert any(f.parent == PACKAGE for f in files)
    offenders = [
        str(f.relative_to(ROOT))
        for f in files
        if "DESIGN.md" in f.read_text(encoding="utf-8", errors="replace")
    ]
    assert offenders == []


def test_nodes_command_does_not_mention_design_md(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["nodes"]) == 0
    text = capsys.readouterr().out
    assert "FormatConverterNode" in text
    assert "DESIGN" not in text
    assert cli.main(["nodes", "--json"]) == 0
    assert "DESIGN" not in json.dumps(json.loads(capsys.readouterr().out))
