"""The ``remotemedia-ray`` command line.

remotemedia-ray run MANIFEST -i INPUT -o OUTDIR     the dataset job (see remotemedia_ray.dataset)
remotemedia-ray plan MANIFEST                       the actor pools ``run`` would use, and why
remotemedia-ray validate MANIFEST [MANIFEST ...]   checks every file; exit 0 when all are valid
remotemedia-ray nodes [--json]                      node types, parameters, runtimes
remotemedia-ray schema                              the manifest JSON schema

``run`` prints only its one-line summary on stdout, so scripts can parse it;
progress, Ray's log lines and the output of nodes go to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import textwrap
from collections.abc import Iterator, Sequence
from typing import Any, TextIO

from remotemedia_ray.errors import RemoteMediaError
from remotemedia_ray.manifest import RUNTIME_HINTS

__all__ = ["main"]


def _run(args: argparse.Namespace) -> int:
    from remotemedia_ray.dataset import JobConfig, run_job

    ray_options: dict[str, Any] = {}
    if args.max_in_flight is not None:
        ray_options["max_in_flight"] = args.max_in_flight
    if args.wait_for_resources:
        ray_options["wait_for_resources"] = True
    config = JobConfig(
        manifest=args.manifest,
        input=args.input,
        outdir=args.output,
        address=args.address,
        runtime=args.runtime,
        node_runtime=args.node_runtime,
        resume=args.resume,
        overwrite=args.overwrite,
        max_errors=args.max_errors,
        write_audio=args.write_audio,
        formats=tuple(dict.fromkeys(args.formats or ["parquet"])),
        shard_size=args.shard_size,
        compression=args.compression,
        batch_size=args.batch_size,
        shard_rows=args.shard_rows,
        window_s=args.window_seconds or None,
        fuse=not args.no_fuse,
        progress="off" if args.quiet else "auto",
        ray_options=ray_options,
    )
    summary_stream = sys.stdout
    ray_was_up = _ray_initialized()
    with _stdout_to_stderr():
        try:
            result = run_job(config)
        finally:
            if not ray_was_up and _ray_initialized():
                _shutdown_ray()  # Ray prints its last worker lines now, not at exit
    if result.summary:
        print(result.summary, file=summary_stream, flush=True)
    return result.exit_code


@contextlib.contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    """Send everything written to stdout meanwhile to stderr instead.

    Ray prints what its workers write to stdout (with coloured prefixes) on
    the driver's ``sys.stdout``, and native code may write to file
    descriptor 1; both are redirected, so ``run``'s stdout holds its
    summary alone.
    """
    err: TextIO = sys.stderr
    with contextlib.suppress(AttributeError, OSError, ValueError):
        sys.stdout.flush()
    with contextlib.ExitStack() as stack:
        saved_fd = _redirect_fd(1, err)
        if saved_fd is not None:
            stack.callback(_restore_fd, 1, saved_fd)
        stack.enter_context(contextlib.redirect_stdout(err))
        yield


def _redirect_fd(fd: int, to: TextIO) -> int | None:
    """Point ``fd`` at ``to``'s file descriptor; returns a copy of the old one (or None)."""
    try:
        target = to.fileno()
        saved = os.dup(fd)
    except (AttributeError, OSError, ValueError):  # no real descriptors (captured streams)
        return None
    with contextlib.suppress(AttributeError, OSError, ValueError):
        sys.__stdout__.flush()  # type: ignore[union-attr]
    os.dup2(target, fd)
    return saved


def _restore_fd(fd: int, saved: int) -> None:
    with contextlib.suppress(AttributeError, OSError, ValueError):
        sys.__stdout__.flush()  # type: ignore[union-attr]
    os.dup2(saved, fd)
    os.close(saved)


def _ray_initialized() -> bool:
    ray = sys.modules.get("ray")
    return ray is not None and bool(ray.is_initialized())


def _shutdown_ray() -> None:
    import ray

    ray.shutdown()


def _plan(args: argparse.Namespace) -> int:
    import dataclasses

    from remotemedia_ray.dataset import JobConfig, plan_job

    config = JobConfig(
        manifest=args.manifest,
        input="",
        outdir="",
        runtime=args.runtime,
        node_runtime=args.node_runtime,
        fuse=not args.no_fuse,
    )
    layout = plan_job(config, cpus=args.cpus, gpus=args.gpus)
    if args.json:
        print(json.dumps(dataclasses.asdict(layout), indent=2))
    else:
        print(layout.describe())
    return 0


def _validate(args: argparse.Namespace) -> int:
    from remotemedia_ray._runtime.plan import PipelinePlan
    from remotemedia_ray.manifest import Manifest

    failures = 0
    for path in args.manifests:  # every file is checked, whatever the others gave
        try:
            manifest = Manifest.from_file(path)
            plan = PipelinePlan.build(manifest, args.runtime)
        except RemoteMediaError as exc:
            problem = str(exc)
        except Exception as exc:  # never a traceback: name the file and go on
            problem = f"{type(exc).__name__}: {exc}"
        else:
            runtimes = ", ".join(f"{n.node_id}={n.runtime}" for n in plan.nodes.values())
            print(f"ok: {path} ({len(plan.nodes)} nodes: {runtimes})", flush=True)
            continue
        failures += 1
        print(f"invalid: {path}\n{textwrap.indent(problem, '  ')}", file=sys.stderr, flush=True)
    if len(args.manifests) > 1:
        print(f"{len(args.manifests) - failures} of {len(args.manifests)} manifest(s) valid")
    return 1 if failures else 0


def _node_catalog() -> list[dict[str, Any]]:
    from remotemedia_ray.nodes.native import native_available
    from remotemedia_ray.nodes.registry import available_node_types, node_class

    catalog = []
    for node_type in available_node_types():
        runtimes = []
        params: dict[str, Any] = {}
        doc = ""
        for runtime in ("cpython", "rust_native"):
            cls = node_class(node_type, runtime)
            if cls is None or (runtime == "rust_native" and not native_available()):
                continue
            runtimes.append(runtime)
            doc = doc or next(iter((cls.__doc__ or "").strip().splitlines()), "")
            if cls.Params is not None and not params:
                schema = cls.Params.model_json_schema()
                for name, prop in schema.get("properties", {}).items():
                    params[name] = {
                        "default": prop.get("default"),
                        "description": prop.get("description", ""),
                    }
        catalog.append(
            {"node_type": node_type, "runtimes": runtimes, "description": doc, "params": params}
        )
    return catalog


def _nodes(args: argparse.Namespace) -> int:
    catalog = _node_catalog()
    if args.json:
        print(json.dumps(catalog, indent=2))
        return 0
    for entry in catalog:
        print(f"{entry['node_type']}  [{', '.join(entry['runtimes'])}]")
        if entry["description"]:
            print(f"    {entry['description']}")
        for name, info in entry["params"].items():
            print(f"    {name} = {info['default']!r}  {info['description']}")
    return 0


def _schema(args: argparse.Namespace) -> int:
    from remotemedia_ray.manifest import Manifest

    print(json.dumps(Manifest.json_schema(), indent=2))
    return 0


def _parser() -> argparse.ArgumentParser:
    from remotemedia_ray import __version__

    parser = argparse.ArgumentParser(
        prog="remotemedia-ray",
        description="Run RemoteMedia pipeline manifests on Ray.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser(
        "run",
        help="preprocess a folder, glob, list file or Parquet dataset of audio",
        description="Run MANIFEST over every input and write each sink's outputs to OUTDIR.",
        epilog=textwrap.dedent(
            """\
            exit codes:
              0    done (bad files are recorded in OUTDIR/errors.jsonl and skipped)
              1    a manifest, input, option or output directory error (nothing ran)
              2    a command line argparse refused
              3    more than --max-errors failed items
              4    every input failed (none of those listed finished, now or earlier)
              130  interrupted"""
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("manifest", metavar="MANIFEST", help="pipeline manifest (.json/.yaml)")
    run.add_argument(
        "-i",
        "--input",
        required=True,
        help="directory, glob, list file, Parquet dataset, or a URI of one (s3://bucket/prefix)",
    )
    run.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="OUTDIR",
        help="output directory: a local path or a URI (s3://bucket/prefix)",
    )
    run.add_argument("--address", help="Ray cluster to join (default: RAY_ADDRESS or embedded)")
    run.add_argument("--runtime", choices=["ray", "local"], default="ray", help="default: ray")
    run.add_argument(
        "--node-runtime",
        choices=RUNTIME_HINTS,
        default=None,
        help="override every node's runtime_hint",
    )
    run.add_argument("--resume", action="store_true", help="skip items an earlier run finished")
    run.add_argument("--overwrite", action="store_true", help="replace earlier results in OUTDIR")
    run.add_argument(
        "--max-errors",
        type=int,
        default=None,
        metavar="N",
        help="stop with exit code 3 after more than N failed items",
    )
    run.add_argument(
        "--write-audio",
        choices=["flac", "wav"],
        default=None,
        help="also write each audio output as a file OUTDIR/<sink>.audio/<input path>.<fmt>",
    )
    run.add_argument(
        "--format",
        dest="formats",
        action="append",
        default=None,
        metavar="NAME",
        help="output format, repeatable (default parquet): parquet (a Parquet folder per "
        "sink), hf (HuggingFace datasets Parquet with an Audio feature), webdataset (tar "
        "shards), lhotse (recordings and supervisions), nemo (a JSONL manifest); see README",
    )
    run.add_argument(
        "--shard-size",
        default=None,
        metavar="SIZE",
        help="most rows (1000) or bytes (256MB) per WebDataset tar (default: one tar a batch)",
    )
    run.add_argument(
        "--compression",
        default="zstd",
        metavar="CODEC",
        help="Parquet codec of the shards: zstd (default, level 1: smallest files), lz4, "
        "snappy or none (written 3-4x faster, about 1 ms less per 10 s file, 1.2-1.5x as "
        "large)",
    )
    run.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="items per batch (default: about four batches per actor, at most --shard-rows; "
        "a batch also ends once its input files hold 64 MB)",
    )
    run.add_argument("--max-in-flight", type=int, default=None, help="batches in flight")
    run.add_argument(
        "--shard-rows",
        type=int,
        default=256,
        help="most items per Parquet shard (a shard is one batch)",
    )
    run.add_argument(
        "--window-seconds",
        type=float,
        default=600.0,
        metavar="S",
        help="files longer than S seconds are decoded and processed in windows of S "
        "seconds, with the same results and bounded memory (0: always whole; default 600)",
    )
    run.add_argument(
        "--no-fuse",
        action="store_true",
        help="one actor pool per node instead of pools of nodes fused by their resource "
        "needs (fused is faster; outputs are the same; `plan` shows the pools)",
    )
    run.add_argument(
        "--wait-for-resources",
        action="store_true",
        help="on an autoscaling cluster, ask for the GPUs a node needs and wait for them "
        "(up to 120 s) instead of failing at once",
    )
    run.add_argument("--quiet", action="store_true", help="no progress display")
    run.set_defaults(func=_run)

    plan = sub.add_parser(
        "plan",
        help="show the actor pools `run` would use for a manifest, and why",
        description="Show the actor pools `run MANIFEST` would use on Ray (nodes fused by "
        "their resource needs, replicas, CPUs and GPUs per actor), with the reason for each. "
        "Nothing starts.",
    )
    plan.add_argument("manifest", metavar="MANIFEST", help="pipeline manifest (.json/.yaml)")
    plan.add_argument("--runtime", choices=["ray", "local"], default="ray", help="default: ray")
    plan.add_argument("--node-runtime", choices=RUNTIME_HINTS, default=None, help="as for `run`")
    plan.add_argument("--no-fuse", action="store_true", help="as for `run`")
    plan.add_argument(
        "--cpus", type=float, default=None, help="the cluster's CPUs (default: this machine's)"
    )
    plan.add_argument(
        "--gpus", type=float, default=None, help="the cluster's GPUs (default: this machine's)"
    )
    plan.add_argument("--json", action="store_true", help="machine-readable output")
    plan.set_defaults(func=_plan)

    validate = sub.add_parser("validate", help="check manifests (exit 0 if all are valid)")
    validate.add_argument("manifests", nargs="+", metavar="MANIFEST", help=".json/.yaml file")
    validate.add_argument(
        "--runtime",
        choices=RUNTIME_HINTS,
        default=None,
        help="check that every node can run on this runtime (default: each node's hint)",
    )
    validate.set_defaults(func=_validate)

    nodes = sub.add_parser("nodes", help="list node types, their parameters and runtimes")
    nodes.add_argument("--json", action="store_true", help="machine-readable output")
    nodes.set_defaults(func=_nodes)

    schema = sub.add_parser("schema", help="print the manifest JSON schema")
    schema.set_defaults(func=_schema)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``remotemedia-ray`` console script."""
    args = _parser().parse_args(argv)
    try:
        return int(args.func(args))
    except RemoteMediaError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
