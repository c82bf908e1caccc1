"""The asv suites (benchmarks/suites) and the dashboard tool (benchmarks/check_dashboard.py).

Nothing here times anything: the tests pin what the suites declare, that the
smoke pass of ``make test`` reaches every benchmark, and that the published
dashboard is pointed at local copies of the libraries asv loads from CDNs.
"""

from __future__ import annotations

import importlib
import itertools
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import remotemedia_ray as rm
from remotemedia_ray.nodes.registry import node_class

ROOT = Path(__file__).resolve().parents[2]
BENCHMARKS = ROOT / "benchmarks"

asv = pytest.importorskip("asv", reason="asv is a dev dependency")


@pytest.fixture(scope="module")
def discovered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """Every benchmark, by name, as asv discovers it (in a subprocess, as asv does)."""
    out = tmp_path_factory.mktemp("asv") / "benchmarks.json"
    subprocess.run(
        [sys.executable, "-m", "asv.benchmark", "discover", str(BENCHMARKS / "suites"), str(out)],
        check=True,
        cwd=out.parent,
    )
    return {bench["name"]: bench for bench in json.loads(out.read_text())}


def _dashboard() -> ModuleType:
    """benchmarks/check_dashboard.py, imported from the benchmarks package."""
    from benchmarks import check_dashboard

    return check_dashboard


def _smoke_patterns() -> list[str]:
    """The ``--bench`` regexes of the Makefile's BENCH_SMOKE (a backslash-continued line)."""
    lines = (ROOT / "Makefile").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("BENCH_SMOKE :="))
    block = [lines[start]]
    while block[-1].endswith("\\"):
        block.append(lines[start + len(block)])
    return re.findall(r'--bench "([^"]+)"', "\n".join(block))


def _selected(bench: dict[str, Any], patterns: list[str]) -> list[str]:
    """The parameter combinations of ``bench`` that asv's ``--bench`` regexes select."""
    names = [
        f"{bench['name']}({', '.join(combo)})" for combo in itertools.product(*bench["params"])
    ]
    return [name for name in names if any(re.search(p, name) for p in patterns)]


def test_smoke_pass_runs_every_benchmark(discovered: dict[str, dict[str, Any]]) -> None:
    patterns = _smoke_patterns()
    assert patterns
    missed = [name for name, bench in discovered.items() if not _selected(bench, patterns)]
    assert not missed


def test_smoke_pass_starts_few_rays(discovered: dict[str, dict[str, Any]]) -> None:
    """Each Ray benchmark process starts a Ray (seconds): the CI smoke pass keeps them few."""
    patterns = _smoke_patterns()
    ray_runs = [
        name
        for bench in discovered.values()
        for name in _selected(bench, patterns)
        if name.startswith("transfer.") or "'ray'" in name
    ]
    assert 0 < len(ray_runs) <= 4


def test_every_native_node_is_benchmarked_in_both_runtimes(
    discovered: dict[str, dict[str, Any]],
) -> None:
    native = [t for t in rm.available_node_types() if node_class(t, "rust_native") is not None]
    assert native
    speedups = {
        p.strip("'") for p in discovered["nodes.NativeSpeedup.track_speedup_vs_peer"]["params"][0]
    }
    for node_type in native:
        for kind in ("time_execute", "peakmem_execute"):
            bench = discovered[f"nodes.{node_type}.{kind}"]
            assert bench["params"][0] == ["'cpython'", "'rust_native'"]
        assert node_type in speedups
    assert discovered["nodes.NativeSpeedup.track_speedup_vs_numpy"]["unit"] == "x"


def test_track_speedup_is_the_graph_checked() -> None:
    dashboard = _dashboard()
    names = ["a.B.time_x", "nodes.S.track_speedup_vs_numpy", "nodes.S.track_speedup_vs_peer"]
    assert dashboard.pick_graph(names) == "nodes.S.track_speedup_vs_peer"
    with pytest.raises(dashboard.DashboardError, match="no track_speedup"):
        dashboard.pick_graph(["a.B.time_x"])


def _published(tmp_path: Path) -> Path:
    """A stand-in for asv's html_dir: the index.html of the installed asv, and an index.json."""
    html_dir = tmp_path / "html"
    html_dir.mkdir()
    shutil.copyfile(Path(asv.__file__).parent / "www" / "index.html", html_dir / "index.html")
    (html_dir / "index.json").write_text(json.dumps({"benchmarks": {}}))
    return html_dir


def test_offline_dashboard_loads_no_library_from_a_cdn(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dashboard = _dashboard()
    assets = tmp_path / "assets"
    assets.mkdir()
    for name in dashboard.CDN_ASSETS.values():
        (assets / name).write_text(f"/* {name} */")
    monkeypatch.setattr(dashboard, "fetch_assets", lambda: assets)
    html_dir = _published(tmp_path)

    assert dashboard.make_offline(html_dir) == len(dashboard.CDN_ASSETS)

    text = (html_dir / "index.html").read_text()
    tags = re.findall(r"<(?:script|link)\b[^>]*>", text)
    assert not [tag for tag in tags if "https://" in tag or "integrity=" in tag]
    local = re.findall(r'(?:src|href)="vendor/([^"]+)"', text)
    assert sorted(local) == sorted(dashboard.CDN_ASSETS.values())
    assert all((html_dir / "vendor" / name).is_file() for name in local)
    assert dashboard.make_offline(html_dir) == 0  # already offline: nothing to change


def test_dashboard_check_asks_for_a_published_dashboard(tmp_path: Path) -> None:
    dashboard = _dashboard()
    with pytest.raises(dashboard.DashboardError, match="make bench"):
        dashboard.check_dashboard(tmp_path)


@pytest.mark.parametrize(
    "module",
    sorted(p.stem for p in (Path(__file__).resolve().parents[2] / "benchmarks").glob("*.py")),
)
def test_every_comparison_imports_as_the_readme_runs_it(module: str) -> None:
    """``python -m benchmarks.<name>`` resolves its imports (a module's --help needs them)."""
    imported = importlib.import_module(f"benchmarks.{module}")
    if module != "__init__":
        assert callable(getattr(imported, "main", None)), f"benchmarks/{module}.py has no main()"
