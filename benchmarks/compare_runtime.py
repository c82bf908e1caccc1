"""The Ray runtime against the local one, and what Ray's plumbing costs, in one process run.

    python -m benchmarks.compare_runtime [--items N] [--quick]

One local Ray (2 CPUs, no dashboard) is started once, before anything is
timed; pipelines are opened (actors created and initialized) and warmed up
outside the timed part. Three measurements:

a. speech prep (``examples/speech_prep.json``: mono -> 16 kHz -> VAD +
   int16) over N clips of 10 s 48 kHz stereo: ``runtime="ray"`` vs
   ``runtime="local"`` in items/s and x realtime, with the native nodes and
   again (fewer clips) with the slower numpy ones;
b. one actor hop: ``p.run(x)`` through a one-node pipeline vs a bare
   ``ray.get(actor.f.remote(table))`` on the same small batch table;
c. hand-off of one batch of 100 KB .. 100 MB through a one-node pass-through
   pipeline, vs a bare actor call taking and returning the same table, vs a
   bare call reading a table that is already in the object store.

Speed is shown, never asserted; these machines are noisy, so read the ratios.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a throw-away local Ray

import remotemedia_ray as rm
from benchmarks.suites._common import best_seconds
from remotemedia_ray._runtime.batches import BatchItem, encode_batch

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
RATE = 48_000
CLIP_S = 10.0


@rm.register_node("BenchPassThrough")
class PassThrough(rm.NodeExecutor):
    """Returns its input as it is."""

    def initialize(self, params: Mapping[str, Any]) -> None:
        pass

    def execute(self, input: Any) -> Any:
        return input


def one_node(node_type: str = "BenchPassThrough") -> dict[str, Any]:
    return {
        "version": "v1",
        "metadata": {"name": "one-node"},
        "nodes": [{"id": "node", "node_type": node_type, "params": {}}],
        "connections": [],
    }


def speech_clip(seed: int) -> rm.AudioBuffer:
    """10 s of 48 kHz stereo: bursts of noise ("speech") between quiet gaps."""
    rng = np.random.default_rng(seed)
    frames = int(CLIP_S * RATE)
    level = np.full(frames, 1e-4, np.float32)
    at = 0
    while at < frames:
        burst = int(rng.uniform(0.4, 1.5) * RATE)
        level[at : at + burst] = rng.uniform(0.05, 0.3)
        at += burst + int(rng.uniform(0.2, 0.8) * RATE)
    noise = rng.standard_normal((frames, 2), dtype=np.float32)
    return rm.AudioBuffer.from_numpy(noise * level[:, None], RATE)


# -- a. speech prep, ray vs local ---------------------------------------------------------


def time_stream(pipeline: rm.Pipeline, clips: list[rm.AudioBuffer], repeat: int) -> float:
    """Median seconds to stream every clip through an open, warmed-up pipeline."""
    pipeline.run(clips[0])
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        count = sum(1 for _ in pipeline.map(clips))
        times.append(time.perf_counter() - start)
        assert count == len(clips)
    return statistics.median(times)


def speech_prep(n: int, repeat: int, node_runtime: str | None = None) -> None:
    clips = [speech_clip(i) for i in range(n)]
    audio_s = n * CLIP_S
    manifest = EXAMPLES / "speech_prep.json"
    nodes = f"node_runtime={node_runtime}" if node_runtime else "nodes as the manifest says"
    print(f"\na. speech prep (4 nodes, {nodes}) over {n} clips of 10 s 48 kHz stereo")
    rows = []
    with rm.Pipeline(manifest, runtime="local", node_runtime=node_runtime) as p:
        rows.append(("local", time_stream(p, clips, repeat), p))
    for batch_size in (1, 4):
        with rm.Pipeline(
            manifest, runtime="ray", batch_size=batch_size, node_runtime=node_runtime
        ) as p:
            rows.append((f"ray, batch_size={batch_size}", time_stream(p, clips, repeat), p))
    for batch_size in (1, 4):
        with rm.Pipeline(
            manifest, runtime="ray", batch_size=batch_size, node_runtime=node_runtime, fuse=True
        ) as p:
            rows.append((f"ray fused, batch={batch_size}", time_stream(p, clips, repeat), p))
    runtimes = ", ".join(f"{n.node_id}={n.runtime}" for n in rows[0][2].metrics.nodes)
    print(f"   node implementations: {runtimes}")
    local_s = rows[0][1]
    print(f"   {'runtime':<20} {'s':>8} {'items/s':>9} {'x realtime':>11} {'vs local':>9}")
    for name, seconds, _ in rows:
        print(
            f"   {name:<20} {seconds:8.3f} {n / seconds:9.2f} {audio_s / seconds:11.1f} "
            f"{local_s / seconds:8.2f}x"
        )


# -- b. one actor hop ---------------------------------------------------------------------


class Echo:
    """A bare actor: returns what it is given, or the size of a table it is given."""

    def echo(self, table: Any) -> Any:
        return table

    def nbytes(self, table: Any) -> int:
        return int(table.nbytes)


def actor_hop(ray: Any, echo: Any, repeat: int) -> None:
    small = rm.AudioBuffer.from_numpy(np.zeros(160, np.float32), 16_000)  # 10 ms at 16 kHz
    table = encode_batch([BatchItem("0", small)])
    print(f"\nb. one actor hop, a batch of one 10 ms clip ({table.nbytes} B table)")
    with rm.Pipeline(one_node(), runtime="ray") as p:
        pipeline_s = best_seconds(lambda: p.run(small), repeat=repeat, min_time=0.3)
    bare_s = best_seconds(lambda: ray.get(echo.echo.remote(table)), repeat=repeat, min_time=0.3)
    put_s = best_seconds(
        lambda: ray.get(echo.echo.remote(ray.put(table))), repeat=repeat, min_time=0.3
    )
    print(f"   pipeline p.run(x), 1 node                   {pipeline_s * 1e6:9.0f} us")
    print(f"   bare ray.get(actor.f.remote(t))             {bare_s * 1e6:9.0f} us")
    print(f"   bare ray.get(actor.f.remote(ray.put(t)))    {put_s * 1e6:9.0f} us")
    print(f"   ratio pipeline / bare                       {pipeline_s / bare_s:9.2f}x")


# -- c. hand-off vs batch size --------------------------------------------------------------


def hand_off(ray: Any, echo: Any, sizes_mb: list[float], repeat: int) -> None:
    print("\nc. hand-off of one batch through one actor, ms per batch (and GB/s)")
    print(
        f"   {'batch':>8} {'pipeline p.run':>20} {'bare: table in+out':>20} "
        f"{'bare: ref in, int out':>22} {'pipeline/bare':>14}"
    )
    with rm.Pipeline(one_node(), runtime="ray", batch_size=1) as p:
        for size_mb in sizes_mb:
            frames = int(size_mb * 1e6 / 4)
            buf = rm.AudioBuffer.from_numpy(np.ones(frames, np.float32), 16_000)
            table = encode_batch([BatchItem("0", buf)])
            ref = ray.put(table)
            n = max(3, repeat if size_mb < 50 else 2)
            through = best_seconds(lambda: p.run(buf), repeat=n, min_time=0.2)  # noqa: B023
            bare = best_seconds(lambda: ray.get(echo.echo.remote(table)), repeat=n, min_time=0.2)  # noqa: B023
            read = best_seconds(lambda: ray.get(echo.nbytes.remote(ref)), repeat=n, min_time=0.2)  # noqa: B023
            gbs = [table.nbytes / s / 1e9 for s in (through, bare)]
            print(
                f"   {_size(table.nbytes):>8} {through * 1e3:10.2f} ({gbs[0]:5.1f}) "
                f"{bare * 1e3:12.2f} ({gbs[1]:5.1f}) {read * 1e3:14.2f}        "
                f"{through / bare:10.2f}x"
            )


def _size(nbytes: int) -> str:
    return f"{nbytes / 1e6:.0f} MB" if nbytes >= 1e6 else f"{nbytes / 1e3:.0f} KB"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=24, help="clips for (a) (default 24)")
    parser.add_argument("--quick", action="store_true", help="fewer clips and repeats")
    args = parser.parse_args(argv)
    n, repeat = (8, 2) if args.quick else (args.items, 3)

    import ray

    start = time.perf_counter()
    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        configure_logging=False,
        log_to_driver=False,
    )
    print(f"Ray {ray.__version__} started in {time.perf_counter() - start:.1f} s (2 CPUs)")
    print(f"native extension: {rm.native_available()}; machine CPUs: {os.cpu_count()}")
    try:
        speech_prep(n, repeat)
        speech_prep(max(4, n // 4), 1, node_runtime="cpython")  # heavier nodes, fewer clips
        echo = ray.remote(Echo).remote()
        ray.get(echo.nbytes.remote(encode_batch([BatchItem("0", 1)])))
        actor_hop(ray, echo, repeat=5)
        hand_off(ray, echo, [0.1, 1, 10, 100], repeat=5)
    finally:
        ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
