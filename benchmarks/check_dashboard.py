"""Make the published asv dashboard work offline, and check it in a real browser.

    python -m benchmarks.check_dashboard offline benchmarks/html
    python -m benchmarks.check_dashboard check benchmarks/html [--screenshot PNG] [--graph NAME]

``offline``: the pages of ``asv publish`` (asv >= 0.6) load jQuery, flot,
bootstrap, stupidtable and md5 from CDNs; on a machine that reaches no CDN the
dashboard only shows asv's error page. This copies the same libraries, as asv
0.5.1 shipped them (fetched once from PyPI with pip, cached under ``build/``),
into ``HTML_DIR/vendor/`` and points ``index.html`` at them. Idempotent.

``check`` (``make bench-check``) makes the dashboard offline, installs
Debian's ``chromium`` if no Chromium is on ``PATH``, serves the dashboard on
127.0.0.1 (a free port), and loads it in headless Chromium through a probe
page served beside it. The probe opens the dashboard in a same-origin frame,
collects the benchmarks its summary lists, opens the graph page of a
``track_speedup_*`` benchmark, and reads flot's plot: its series, their points
and the pixels of the series' colours on flot's canvas. The check fails unless
every benchmark of ``index.json`` is listed and the graph has points that were
really painted. It then saves a screenshot of that graph page.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import html
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
ASSET_CACHE = ROOT / "build" / "asv-dashboard-assets"
ASSET_SOURCE = "asv==0.5.1"  # the last asv release that shipped its web libraries
VENDOR = "vendor"

# The tail of each CDN URL of asv's index.html -> the file asv 0.5.1 shipped (same versions).
CDN_ASSETS = {
    "/jquery-3.3.1.min.js": "jquery-3.3.1.min.js",
    "/flot/0.8.3/jquery.flot.min.js": "jquery.flot-0.8.3.min.js",
    "/flot/0.8.3/jquery.flot.time.min.js": "jquery.flot-0.8.3.time.min.js",
    "/flot/0.8.3/jquery.flot.selection.min.js": "jquery.flot-0.8.3.selection.min.js",
    "/flot/0.8.3/jquery.flot.categories.min.js": "jquery.flot-0.8.3.categories.min.js",
    "/js/jquery.flot.orderBars.js": "jquery.flot.orderBars.js",
    "/stupidtable/1.0.1/stupidtable.min.js": "stupidtable.js",
    "/blueimp-md5/2.19.0/js/md5.min.js": "md5.js",
    "/dist/js/bootstrap.min.js": "bootstrap-3.1.0.min.js",
    "/dist/css/bootstrap.min.css": "bootstrap-3.1.0.min.css",
}

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
WINDOW = (1400, 900)
PROBE_PATH = "/__dashboard_probe__.html"
MIN_PAINTED_PIXELS = 12  # a single flot point (radius 3, line width 2) paints more


class DashboardError(RuntimeError):
    """The dashboard is missing, could not be loaded, or does not show what it should."""


# -- offline ------------------------------------------------------------------------------


def fetch_assets(cache: Path = ASSET_CACHE) -> Path:
    """The folder holding every file of :data:`CDN_ASSETS`, downloading them once with pip."""
    wanted = set(CDN_ASSETS.values())
    if cache.is_dir() and wanted <= {p.name for p in cache.iterdir()}:
        return cache
    with tempfile.TemporaryDirectory() as tmp:
        pip = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps"]
        subprocess.run([*pip, "--no-binary", ":all:", "--dest", tmp, ASSET_SOURCE], check=True)
        (sdist,) = Path(tmp).glob("asv-*.tar.gz")
        cache.mkdir(parents=True, exist_ok=True)
        with tarfile.open(sdist) as tar:
            for member in tar.getmembers():
                name = Path(member.name).name
                if "/www/vendor/" in member.name and name in wanted and member.isfile():
                    source = tar.extractfile(member)
                    assert source is not None
                    (cache / name).write_bytes(source.read())
    missing = wanted - {p.name for p in cache.iterdir()}
    if missing:
        raise DashboardError(f"{ASSET_SOURCE} lacks {', '.join(sorted(missing))}")
    return cache


_TAG = re.compile(r"<(?:script|link)\b[^>]*>", re.IGNORECASE)
_URL = re.compile(r'\b(src|href)="(https?://[^"]+)"')
_REMOTE_ONLY = re.compile(r'\s+(?:integrity|crossorigin|referrerpolicy)(?:="[^"]*")?')


def _local_asset(url: str) -> str:
    for tail, name in CDN_ASSETS.items():
        if url.endswith(tail):
            return name
    raise DashboardError(f"no local copy of {url}; add it to CDN_ASSETS in {Path(__file__).name}")


def make_offline(html_dir: Path) -> int:
    """Point ``index.html`` at local copies of its CDN libraries; returns how many tags changed."""
    index = _index_html(html_dir)
    text = index.read_text(encoding="utf-8")
    used: set[str] = set()

    def localize(tag: re.Match[str]) -> str:
        found = _URL.search(tag.group(0))
        if found is None:
            return tag.group(0)
        name = _local_asset(found.group(2))
        used.add(name)
        local = tag.group(0).replace(found.group(0), f'{found.group(1)}="{VENDOR}/{name}"')
        return _REMOTE_ONLY.sub("", local)

    new_text = _TAG.sub(localize, text)
    if used:
        assets = fetch_assets()
        (html_dir / VENDOR).mkdir(exist_ok=True)
        for name in used:
            shutil.copyfile(assets / name, html_dir / VENDOR / name)
        index.write_text(new_text, encoding="utf-8")
    return len(used)


def _index_html(html_dir: Path) -> Path:
    index = html_dir / "index.html"
    if not (index.is_file() and (html_dir / "index.json").is_file()):
        raise DashboardError(f"no published dashboard in {html_dir}; run `make bench` first")
    return index


# -- browser ------------------------------------------------------------------------------


def find_chromium() -> str | None:
    """The path of a Chromium (or Chrome) on ``PATH``, or None."""
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


def ensure_chromium() -> str:
    """A Chromium on ``PATH``, installing Debian's ``chromium`` with apt-get when there is none.

    Runs apt-get as root, or through sudo when this user is not root and sudo exists.
    """
    found = find_chromium()
    if found:
        return found
    if shutil.which("apt-get") is None:
        raise DashboardError("no Chromium on PATH, and no apt-get to install Debian's chromium")
    prefix: list[str] = []
    if os.geteuid() != 0:
        if shutil.which("sudo") is None:
            raise DashboardError("installing chromium needs root (or sudo); install it, then rerun")
        prefix = ["sudo", "DEBIAN_FRONTEND=noninteractive"]  # sudo resets the environment
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    print("check_dashboard: installing Debian's chromium (apt-get)", flush=True)
    for step in (["update"], ["install", "-y", "chromium"]):
        subprocess.run(
            [*prefix, "apt-get", "-qq", *step], check=True, env=env, stdout=subprocess.DEVNULL
        )
    found = find_chromium()
    if found is None:
        raise DashboardError("apt-get installed chromium, but it is not on PATH")
    return found


def run_chromium(chromium: str, url: str, *args: str, budget_ms: int = 60_000) -> str:
    """Load ``url`` in headless Chromium (a throw-away profile) and return its stdout."""
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        command = [
            chromium,
            "--headless",
            "--no-sandbox",  # root in a container has no usable sandbox
            "--disable-gpu",
            "--hide-scrollbars",
            "--no-first-run",
            f"--user-data-dir={profile}",
            f"--window-size={WINDOW[0]},{WINDOW[1]}",
            f"--virtual-time-budget={budget_ms}",
            *args,
            url,
        ]
        done = subprocess.run(command, capture_output=True, text=True, timeout=180)
    if done.returncode != 0:
        raise DashboardError(
            f"chromium failed ({done.returncode}) on {url}:\n{done.stderr[-2000:]}"
        )
    return done.stdout


# -- serving and probing ------------------------------------------------------------------

_PROBE_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>dashboard probe</title></head>
<body style="margin:0">
<pre id="report">pending</pre>
<iframe id="dashboard" src="index.html" style="width:%(width)dpx;height:%(height)dpx;border:0">
</iframe>
<script>
"use strict";
const GRAPH = %(graph)s;
const frame = document.getElementById("dashboard");
const deadline = Date.now() + %(timeout_ms)d;

function finish(report) {
  document.getElementById("report").textContent = JSON.stringify(report);
}

function waitFor(what, check, then) {
  let value = null;
  try { value = check(); } catch (err) { value = null; }
  if (value) { then(value); return; }
  if (Date.now() > deadline) {
    finish({error: "timed out waiting for " + what, at: String(frame.contentWindow.location)});
    return;
  }
  setTimeout(() => waitFor(what, check, then), 100);
}

function listedBenchmarks() {
  const links = frame.contentDocument.querySelectorAll("a.benchmark-container");
  return links.length ? Array.from(links, a => decodeURIComponent(a.hash.slice(1))) : null;
}

function rgb(color) {  // any CSS colour -> [r, g, b]
  const ctx = document.createElement("canvas").getContext("2d");
  ctx.fillStyle = color;
  ctx.fillRect(0, 0, 1, 1);
  return Array.from(ctx.getImageData(0, 0, 1, 1).data.slice(0, 3));
}

function drawnPlot() {
  const win = frame.contentWindow;
  if (win.location.hash.slice(1).split("?")[0] !== GRAPH) return null;
  const plot = win.$("#main-graph").data("plot");
  const base = frame.contentDocument.querySelector("#main-graph canvas.flot-base");
  if (!plot || !base) return null;
  const series = plot.getData().filter(s => s.data.some(p => p && p[1] !== null));
  return series.length ? {plot, base, series} : null;
}

function inspect({plot, base, series}) {
  const colors = series.map(s => rgb(s.color));
  const pixels = base.getContext("2d").getImageData(0, 0, base.width, base.height).data;
  let painted = 0;
  for (let i = 0; i < pixels.length; i += 4) {
    if (pixels[i + 3] < 200) continue;
    const hit = colors.some(c => Math.abs(c[0] - pixels[i]) + Math.abs(c[1] - pixels[i + 1])
      + Math.abs(c[2] - pixels[i + 2]) < 24);
    if (hit) painted += 1;
  }
  const doc = frame.contentDocument;
  return {
    series: series.length,
    points: series.reduce((n, s) => n + s.data.filter(p => p && p[1] !== null).length, 0),
    painted_pixels: painted,
    canvas: [base.width, base.height],
    canvases: Array.from(doc.querySelectorAll("#main-graph canvas"), c => c.className),
    tick_labels: doc.querySelectorAll("#main-graph .flot-tick-label").length,
    labels: series.map(s => String(s.label || "")),
  };
}

waitFor("the benchmark summary", listedBenchmarks, listed => {
  frame.contentWindow.location.hash = GRAPH;
  waitFor("a drawn plot of " + GRAPH, drawnPlot, () => {
    setTimeout(() => {  // let asv finish redrawing, then read what is on the canvas
      const drawn = drawnPlot();
      finish({listed, graph: drawn ? inspect(drawn) : null});
    }, 1000);
  });
});
</script>
</body></html>
"""


def probe_page(graph: str, timeout_ms: int = 45_000) -> bytes:
    """The probe page's HTML for the graph page of benchmark ``graph``."""
    return (
        _PROBE_PAGE
        % {
            "graph": json.dumps(graph),
            "timeout_ms": timeout_ms,
            "width": WINDOW[0],
            "height": WINDOW[1],
        }
    ).encode()


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serves the dashboard's files, plus the probe page at :data:`PROBE_PATH`; logs nothing."""

    probe: bytes = b""

    def do_GET(self) -> None:
        if urllib.parse.urlsplit(self.path).path != PROBE_PATH:
            super().do_GET()
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(self.probe)))
        self.end_headers()
        self.wfile.write(self.probe)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def serve(html_dir: Path, probe: bytes) -> Iterator[str]:
    """Serve ``html_dir`` (and the probe page) on 127.0.0.1 at a free port; yields the base URL."""
    handler = type("Handler", (_Handler,), {"probe": probe})
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(handler, directory=str(html_dir))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


# -- the check ----------------------------------------------------------------------------


@dataclass
class CheckResult:
    """What the browser saw: the benchmarks listed, and the graph drawn for one of them."""

    benchmarks: list[str]
    listed: list[str]
    graph_name: str
    graph: dict[str, Any]
    screenshot: Path | None


def published_benchmarks(html_dir: Path) -> list[str]:
    """The benchmark names of the published ``index.json``."""
    _index_html(html_dir)
    index = json.loads((html_dir / "index.json").read_text(encoding="utf-8"))
    return sorted(index["benchmarks"])


def pick_graph(benchmarks: list[str]) -> str:
    """The ``track_speedup_*`` benchmark whose graph is checked (native vs peers, if present)."""
    speedups = [name for name in benchmarks if ".track_speedup_" in name]
    if not speedups:
        raise DashboardError("the dashboard has no track_speedup_* benchmark")
    preferred = [name for name in speedups if name.endswith("track_speedup_vs_peer")]
    return (preferred or speedups)[0]


def _report(dom: str) -> dict[str, Any]:
    found = re.search(r'<pre id="report">(.*?)</pre>', dom, re.DOTALL)
    if found is None:
        raise DashboardError("the probe page did not load")
    text = html.unescape(found.group(1))
    if text == "pending":
        raise DashboardError("the probe page never finished (the dashboard's scripts did not run)")
    report: dict[str, Any] = json.loads(text)
    if report.get("error"):
        raise DashboardError(f"dashboard: {report['error']} (at {report.get('at')})")
    return report


def check_dashboard(
    html_dir: Path, screenshot: Path | None = None, graph: str | None = None
) -> CheckResult:
    """Check the published dashboard in headless Chromium (see the module docs).

    Raises:
        DashboardError: The dashboard is missing, or does not list every
            benchmark, or draws no plot for the ``track_speedup_*`` graph.
    """
    html_dir = html_dir.resolve()
    benchmarks = published_benchmarks(html_dir)
    graph_name = graph or pick_graph(benchmarks)
    if graph_name not in benchmarks:
        raise DashboardError(f"no benchmark {graph_name!r} in the dashboard")
    make_offline(html_dir)
    chromium = ensure_chromium()
    with serve(html_dir, probe_page(graph_name)) as base:
        report = _report(run_chromium(chromium, f"{base}{PROBE_PATH}", "--dump-dom"))
        unlisted = sorted(set(benchmarks) - set(report["listed"]))
        if unlisted:
            raise DashboardError(f"the summary does not list {len(unlisted)}: {unlisted[:5]}")
        drawn = report["graph"]
        if not drawn or drawn["points"] < 1 or drawn["painted_pixels"] < MIN_PAINTED_PIXELS:
            raise DashboardError(f"no plot drawn for {graph_name}: {drawn}")
        if screenshot is not None:
            screenshot = screenshot.resolve()
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            run_chromium(chromium, f"{base}/index.html#{graph_name}", f"--screenshot={screenshot}")
            if not screenshot.is_file():
                raise DashboardError(f"chromium wrote no screenshot to {screenshot}")
    return CheckResult(benchmarks, report["listed"], graph_name, drawn, screenshot)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    offline = commands.add_parser("offline", help="vendor the dashboard's CDN libraries")
    offline.add_argument("html_dir", type=Path, help="asv's html_dir (benchmarks/html)")
    check = commands.add_parser("check", help="check the dashboard in headless Chromium")
    check.add_argument("html_dir", type=Path, help="asv's html_dir (benchmarks/html)")
    check.add_argument("--screenshot", type=Path, help="save a PNG of the graph page here")
    check.add_argument("--graph", help="the benchmark whose graph to check (a track_speedup_*)")
    args = parser.parse_args(argv)
    try:
        if args.command == "offline":
            changed = make_offline(args.html_dir)
            print(f"dashboard: {changed} CDN libraries served from {args.html_dir / VENDOR}")
            return 0
        result = check_dashboard(args.html_dir, args.screenshot, args.graph)
    except DashboardError as exc:
        print(f"check_dashboard: FAILED: {exc}", file=sys.stderr)
        return 1
    graph = result.graph
    print(
        f"dashboard OK: {len(result.listed)} benchmarks listed; {result.graph_name}: "
        f"{graph['series']} series, {graph['points']} points, {graph['painted_pixels']} "
        f"pixels painted on {', '.join(graph['canvases'])}, {graph['tick_labels']} tick labels"
    )
    if result.screenshot is not None:
        print(f"screenshot: {result.screenshot}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
