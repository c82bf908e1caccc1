"""The driver of the example Ray job (submitted by ``examples/ray_job.py``).

    python ray_job_entrypoint.py [MANIFEST] [--node-runtime auto|cpython|rust_native]

Runs inside a Ray job: Ray sets ``RAY_ADDRESS``, so ``rm.Pipeline(...,
runtime="ray")`` joins the job's cluster instead of starting its own. Runs the
manifest (default ``speech_prep.json``) over ``audio/*`` next to this file,
prints each file's outputs, the metrics summary, and a last line
``done: N item(s), F failure(s)`` that ``ray_job.py`` and its test look for.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from local_demo import load

import remotemedia_ray as rm

HERE = Path(__file__).resolve().parent


def describe(output: object) -> str:
    """One line for a sink's output."""
    if isinstance(output, rm.AudioBuffer):
        return repr(output)
    if isinstance(output, list):
        spans = ", ".join(f"{s['start_ms']:.0f}-{s['end_ms']:.0f} ms" for s in output)
        return f"{len(output)} segment(s) [{spans}]"
    return repr(output)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("manifest", nargs="?", default=str(HERE / "speech_prep.json"))
    parser.add_argument("--node-runtime", choices=["auto", "cpython", "rust_native"])
    args = parser.parse_args(argv)

    files = sorted((HERE / "audio").glob("*.*"))
    print(f"RAY_ADDRESS={os.environ.get('RAY_ADDRESS')}", flush=True)
    with rm.Pipeline(
        args.manifest, runtime="ray", on_error="record", node_runtime=args.node_runtime
    ) as pipeline:
        results = pipeline.map((load(f) for f in files), ids=(f.name for f in files))
        for result in results:
            print(result.item_id)
            for sink, output in sorted(result.items()):
                print(f"  {sink}: {describe(output)}")
        for failure in pipeline.failures:
            print(f"FAILED {failure.item_id} at {failure.node_id}: {failure.error}")
        metrics = pipeline.metrics
        print(metrics.summary())
        for node in metrics.nodes:
            print(
                f"  {node.node_id:10} {node.node_type:20} {node.runtime:11} "
                f"{node.execution_time_ms:8.1f} ms  {node.status}"
            )
    print(f"done: {metrics.items} item(s), {metrics.items_failed} failure(s)", flush=True)
    return 1 if pipeline.failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
