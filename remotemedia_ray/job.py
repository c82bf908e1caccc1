"""The dataset job: run a manifest over a folder of audio and write the results.

``remotemedia-ray run MANIFEST -i INPUT -o OUTDIR`` (see :func:`run_job`):

1. the inputs are listed on the driver (names only, see :func:`~remotemedia_ray.io.list_inputs`);
2. the manifest is extended with internal nodes: ``job:read`` decodes each
   file (in a Ray worker) and feeds the manifest's sources, ``job:duration``
   reports its length, ``job:key`` digests its bytes (the resume key); a
   manifest's node ids cannot contain ``:``, so they never clash with these;
3. results stream back as batches complete; every sink's outputs go to
   Parquet shards ``OUTDIR/<sink>/part-*.parquet`` (and, with ``--write-audio``,
   audio files mirroring the inputs' relative paths), each written atomically;
   a shard is recorded in ``OUTDIR/_done.jsonl`` only once all its files exist;
4. failed items go to ``OUTDIR/errors.jsonl`` (item, path, node, error);
5. ``OUTDIR/metrics.json`` and a one-line summary end the run.

A file longer than ``window_s`` (10 minutes by default) is decoded and
pushed through the nodes one window at a time, inside one worker, with the
same outputs as whole-file processing (see :mod:`remotemedia_ray.runtime.local`);
memory then grows with the outputs kept, not with the input. With
``fuse=False`` the nodes are separate actors and a long file is read whole.

``--resume`` deletes unfinished shards, skips every item whose path and
content digest are recorded as done, and re-runs the rest, so a resumed run's
outputs equal an uninterrupted run's.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TextIO

from remotemedia_ray.audio import AudioBuffer
from remotemedia_ray.errors import ConfigError
from remotemedia_ray.graph import PipelineGraph
from remotemedia_ray.io import (
    InputItem,
    ShardWriter,
    list_inputs,
    plan_audio_paths,
    write_audio_file,
)
from remotemedia_ray.manifest import Connection, Manifest, NodeSpec
from remotemedia_ray.metrics import PipelineMetrics, micros, millis
from remotemedia_ray.nodes.registry import internal_node_id
from remotemedia_ray.runtime.execution import ItemFailure

__all__ = ["JobConfig", "JobResult", "run_job"]

READ, DURATION, KEY = (
    internal_node_id("read"),
    internal_node_id("duration"),
    internal_node_id("key"),
)


@dataclass
class JobConfig:
    """Options of :func:`run_job` (the ``run`` command's flags)."""

    manifest: Manifest | str | Path
    input: str
    outdir: Path
    address: str | None = None
    runtime: Literal["ray", "local"] = "ray"
    node_runtime: Literal["auto", "cpython", "rust_native"] | None = None
    resume: bool = False
    overwrite: bool = False
    max_errors: int | None = None
    write_audio: Literal["flac", "wav"] | None = None
    batch_size: int | None = None
    shard_rows: int = 256
    window_s: float | None = 600.0
    fuse: bool = True
    progress: Literal["auto", "live", "plain", "off"] = "auto"
    ray_options: dict[str, Any] = field(default_factory=dict)


@dataclass
class JobResult:
    """What a job did."""

    exit_code: int
    items_total: int = 0
    items_done: int = 0
    items_skipped: int = 0
    items_failed: int = 0
    audio_seconds: float = 0.0
    metrics: PipelineMetrics | None = None
    summary: str = ""


class Progress:
    """Files done/total, audio hours, x realtime, errors and ETA, on a terminal
    as one live line, elsewhere as a plain line every ``interval_s`` seconds."""

    def __init__(
        self,
        total: int,
        *,
        stream: TextIO,
        live: bool,
        enabled: bool = True,
        interval_s: float = 10.0,
    ) -> None:
        self.enabled = enabled
        self.total = total
        self.stream = stream
        self.live = live
        self.interval_s = 0.2 if live else interval_s
        self.start = time.monotonic()
        self.last = 0.0

    def line(self, done: int, failed: int, audio_s: float) -> str:
        elapsed = max(time.monotonic() - self.start, 1e-9)
        finished = done + failed
        rate = finished / elapsed
        eta = (self.total - finished) / rate if rate > 0 else float("inf")
        eta_text = "--" if eta == float("inf") else f"{eta:,.0f}s"
        return (
            f"files {finished}/{self.total}  audio {audio_s / 3600:.3f} h  "
            f"{_factor(audio_s / elapsed)} realtime  errors {failed}  ETA {eta_text}"
        )

    def update(self, done: int, failed: int, audio_s: float, *, final: bool = False) -> None:
        now = time.monotonic()
        if not self.enabled or (not final and now - self.last < self.interval_s):
            return
        self.last = now
        text = self.line(done, failed, audio_s)
        if self.live:
            self.stream.write("\r\x1b[2K" + text + ("\n" if final else ""))
        else:
            self.stream.write(text + "\n")
        self.stream.flush()


def _factor(value: float) -> str:
    return f"{value:,.1f}x" if value < 10 else f"{value:,.0f}x"


def _internal_node(node_id: str, node_type: str, params: dict[str, Any] | None = None) -> NodeSpec:
    """One of the job's own nodes.

    Its id (``job:...``) is outside the manifest id pattern on purpose, so it
    is built without validation; user manifests are validated as always.
    """
    return NodeSpec.model_construct(id=node_id, node_type=node_type, params=params or {})


def _with_internal_nodes(
    manifest: Manifest | None,
    before: list[NodeSpec],
    after: list[NodeSpec],
    connections: list[tuple[str, str]],
) -> Manifest:
    """``manifest`` (already valid) plus the job's internal nodes and connections.

    The user's nodes and connections are kept as validated; the result is
    checked against the manifest's rules again (unique ids, known ends, DAG).
    """
    user_nodes = list(manifest.nodes) if manifest is not None else []
    user_connections = list(manifest.connections) if manifest is not None else []
    base = manifest or Manifest.from_dict(
        {"version": "v1", "metadata": {"name": "dataset-job"}, "nodes": [], "connections": []}
    )
    combined = base.model_copy(
        update={
            "nodes": [*before, *user_nodes, *after],
            "connections": [
                *(Connection.model_construct(from_=src, to=dst) for src, dst in connections),
                *user_connections,
            ],
        }
    )
    return combined.validate()


def _job_manifest(manifest: Manifest, window_s: float | None = 600.0) -> Manifest:
    """The manifest with the internal reader, duration and key nodes added.

    Files longer than ``window_s`` seconds are read and processed in windows.
    """
    graph = PipelineGraph.from_manifest(manifest)
    return _with_internal_nodes(
        manifest,
        before=[
            _internal_node(READ, "AudioFileReader", {"window_s": window_s}),
            _internal_node(KEY, "ContentKey"),
        ],
        after=[_internal_node(DURATION, "AudioDuration")],
        connections=[*((READ, source) for source in graph.sources), (READ, DURATION)],
    )


_JOB_FILE = "_job.json"


def _job_fingerprint(manifest: Manifest, config: JobConfig) -> dict[str, Any]:
    """What the outputs in OUTDIR depend on besides the inputs."""
    text = json.dumps(manifest.to_dict(), sort_keys=True)
    return {
        "manifest_sha256": hashlib.sha256(text.encode()).hexdigest(),
        "write_audio": config.write_audio,
    }


def _prepare_outdir(config: JobConfig, sinks: list[str], fingerprint: dict[str, Any]) -> None:
    try:
        _prepare_outdir_checked(config, sinks, fingerprint)
    except OSError as exc:
        raise ConfigError(
            f"cannot use output directory {config.outdir}: {exc.strerror or exc}"
            + (f" ({exc.filename})" if exc.filename else "")
        ) from None


def _prepare_outdir_checked(
    config: JobConfig, sinks: list[str], fingerprint: dict[str, Any]
) -> None:
    out = config.outdir
    if out.exists() and not out.is_dir():
        raise ConfigError(f"output {out} exists and is not a directory")
    existing = out.exists() and any(out.iterdir())
    if existing and not (config.resume or config.overwrite):
        raise ConfigError(
            f"output directory {out} is not empty: use --resume to finish an earlier run or "
            "--overwrite to replace its results"
        )
    job_file = out / _JOB_FILE
    if config.resume and existing:
        try:
            earlier = json.loads(job_file.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            earlier = None
        if earlier != fingerprint:
            raise ConfigError(
                f"{out} holds results of another manifest or other output options "
                f"({job_file.name} differs): --resume would mix them; use --overwrite"
            )
    out.mkdir(parents=True, exist_ok=True)
    if config.overwrite:
        for sink in sinks:
            shutil.rmtree(out / sink, ignore_errors=True)
        for name in (ShardWriter.DONE, "errors.jsonl", "metrics.json", _JOB_FILE):
            (out / name).unlink(missing_ok=True)
    job_file.write_text(json.dumps(fingerprint) + "\n", encoding="utf-8")


def _resume_keys(
    config: JobConfig, items: list[InputItem], done: Mapping[str, str]
) -> dict[str, str]:
    """Content keys of the items that an earlier run finished (computed in workers)."""
    from remotemedia_ray.runtime.pipeline import Pipeline

    candidates = [item for item in items if item.item_id in done]
    if not candidates:
        return {}
    keys_manifest = _with_internal_nodes(
        None, before=[_internal_node(KEY, "ContentKey")], after=[], connections=[]
    )
    options = (
        {"fuse": config.fuse, "expected_items": len(candidates), **config.ray_options}
        if config.runtime == "ray"
        else {}
    )
    with Pipeline(
        keys_manifest,
        runtime=config.runtime,
        address=config.address,
        on_error="record",
        **options,
    ) as pipeline:
        return {
            out.item_id: out[KEY]
            for out in pipeline.map(
                (c.to_value() for c in candidates),
                ids=(c.item_id for c in candidates),
                ordered=False,
            )
        }


def run_job(config: JobConfig, *, stream: TextIO | None = None) -> JobResult:
    """Run the dataset job; returns its result (``exit_code`` 0 on success).

    Exit codes: 0 done (bad files recorded in errors.jsonl), 1 a usage or
    manifest error, 3 more than ``max_errors`` failures, 130 interrupted.
    """
    from remotemedia_ray.runtime.pipeline import Pipeline

    _check_config(config)
    out_stream = stream or sys.stderr
    manifest = (
        config.manifest
        if isinstance(config.manifest, Manifest)
        else Manifest.from_file(config.manifest)
    )
    manifest.validate()
    sinks = list(PipelineGraph.from_manifest(manifest).sinks)
    job_manifest = _job_manifest(manifest, config.window_s)
    items = list_inputs(config.input, exclude=config.outdir)
    _prepare_outdir(config, sinks, _job_fingerprint(manifest, config))
    root = config.outdir.resolve()

    skip: set[str] = set()
    if config.resume:
        done_shards, done_items = ShardWriter.load_done(root)
        ShardWriter.remove_orphans(root, sinks, done_shards)
        (root / "errors.jsonl").unlink(missing_ok=True)  # failed items run again
        current = _resume_keys(config, items, done_items)
        skip = {i for i, key in current.items() if done_items.get(i) == key}
        ShardWriter.drop_items(root, sinks, set(done_items) & {i.item_id for i in items} - skip)
    todo = [item for item in items if item.item_id not in skip]
    result = JobResult(exit_code=0, items_total=len(items), items_skipped=len(skip))

    writer = ShardWriter(root, sinks, uuid.uuid4().hex[:8])
    mode = config.progress
    if mode == "auto":
        mode = "live" if out_stream.isatty() else "plain"
    progress = Progress(len(todo), stream=out_stream, live=mode == "live", enabled=mode != "off")
    audio_paths = (
        plan_audio_paths((i.item_id for i in items), config.write_audio)
        if config.write_audio
        else {}
    )
    by_id = {item.item_id: item for item in todo}
    rows: dict[str, list[tuple[str, Any]]] = {sink: [] for sink in sinks}
    keys: dict[str, str] = {}
    options = dict(config.ray_options)
    options.setdefault("fuse", config.fuse)
    if config.batch_size is not None:
        options["batch_size"] = config.batch_size
    options.setdefault("expected_items", max(1, len(todo)))
    start = time.monotonic()
    errors_file = root / "errors.jsonl"
    pipeline = Pipeline(
        job_manifest,
        runtime=config.runtime,
        address=config.address if config.runtime == "ray" else None,
        on_error="record",
        node_runtime=config.node_runtime,
        **(options if config.runtime == "ray" else {}),
    )

    # Shards are written by one background thread (Parquet encoding and fsync
    # release the GIL) while results keep arriving; one shard at a time, in order.
    write_pool = ThreadPoolExecutor(1, thread_name_prefix="remotemedia-shards")
    writing: list[Future[str]] = []

    def wait_for_writes() -> None:
        while writing:
            writing.pop(0).result()

    def flush() -> None:
        if keys:
            wait_for_writes()
            shard = {sink: list(sink_rows) for sink, sink_rows in rows.items()}
            writing.append(write_pool.submit(writer.write, shard, dict(keys)))
            for sink_rows in rows.values():
                sink_rows.clear()
            keys.clear()

    def record_failures(failures: list[ItemFailure]) -> None:
        with open(errors_file, "a", encoding="utf-8") as handle:
            for failure in failures:
                item = by_id.get(failure.item_id)
                handle.write(
                    json.dumps(
                        {
                            "item_id": failure.item_id,
                            "path": item.path if item else None,
                            "node": failure.node_id,
                            "error_type": type(failure.error).__name__,
                            "error": failure.error.message,
                        }
                    )
                    + "\n"
                )
        result.items_failed += len(failures)

    seen_failures = 0
    try:
        with pipeline:
            values: Iterator[dict[str, Any]] = (item.to_value() for item in todo)
            for output in pipeline.map(values, ids=(i.item_id for i in todo), ordered=False):
                for sink in sinks:
                    value = output[sink]
                    rows[sink].append((output.item_id, value))
                    if config.write_audio and isinstance(value, AudioBuffer):
                        rel = audio_paths[output.item_id]
                        write_audio_file(root, sink, rel, value, config.write_audio)
                keys[output.item_id] = output[KEY]
                result.items_done += 1
                result.audio_seconds += float(output[DURATION])
                if len(keys) >= config.shard_rows:
                    flush()
                if len(pipeline.failures) > seen_failures:
                    record_failures(pipeline.failures[seen_failures:])
                    seen_failures = len(pipeline.failures)
                if config.max_errors is not None and result.items_failed > config.max_errors:
                    break
                progress.update(result.items_done, result.items_failed, result.audio_seconds)
            if len(pipeline.failures) > seen_failures:
                record_failures(pipeline.failures[seen_failures:])
            flush()
            wait_for_writes()
            metrics = pipeline.metrics
    except KeyboardInterrupt:
        with contextlib.suppress(KeyboardInterrupt):  # the shard being written completes
            wait_for_writes()
        progress.update(result.items_done, result.items_failed, result.audio_seconds, final=True)
        out_stream.write("interrupted: finished shards are kept; run again with --resume\n")
        out_stream.flush()
        result.exit_code = 130
        return result
    finally:
        write_pool.shutdown(wait=True)
    progress.update(result.items_done, result.items_failed, result.audio_seconds, final=True)

    elapsed = time.monotonic() - start
    # Validated again (model_copy would not check), so metrics.json keeps the seed's
    # types: whole milliseconds (rounded to the nearest), the microseconds beside them.
    wall_us = micros(elapsed)
    metrics = PipelineMetrics.model_validate(
        {
            **metrics.model_dump(),
            "nodes": [n for n in metrics.nodes if n.node_id not in (KEY, DURATION)],
            "node_count": metrics.node_count - 2,
            "total_time_us": wall_us,
            "total_time_ms": millis(wall_us),
            "items": result.items_done,
            "items_failed": result.items_failed,
            "audio_seconds": result.audio_seconds,
            "realtime_factor": result.audio_seconds / elapsed if elapsed > 0 else None,
        }
    )
    (root / "metrics.json").write_text(metrics.to_json() + "\n", encoding="utf-8")
    result.metrics = metrics
    result.summary = (
        f"{metrics.summary()}: {result.items_done} file(s) done, {result.items_skipped} "
        f"skipped, {result.items_failed} failed, {result.audio_seconds / 3600:.3f} h of audio "
        f"at {_factor(metrics.realtime_factor or 0.0)} realtime"
    )
    if config.max_errors is not None and result.items_failed > config.max_errors:
        result.exit_code = 3
        result.summary += f" (stopped: more than {config.max_errors} error(s))"
    return result


def _check_config(config: JobConfig) -> None:
    if config.runtime not in ("ray", "local"):
        raise ConfigError(f"--runtime must be 'ray' or 'local', got {config.runtime!r}")
    if config.node_runtime not in (None, "auto", "cpython", "rust_native"):
        raise ConfigError(
            "--node-runtime must be 'auto', 'cpython' or 'rust_native', "
            f"got {config.node_runtime!r}"
        )
    if config.write_audio not in (None, "flac", "wav"):
        raise ConfigError(f"--write-audio must be 'flac' or 'wav', got {config.write_audio!r}")
    if config.progress not in ("auto", "live", "plain", "off"):
        raise ConfigError(
            f"progress must be 'auto', 'live', 'plain' or 'off', got {config.progress!r}"
        )
    if config.batch_size is not None and config.batch_size < 1:
        raise ConfigError(f"--batch-size must be >= 1, got {config.batch_size}")
    if config.shard_rows < 1:
        raise ConfigError(f"--shard-rows must be >= 1, got {config.shard_rows}")
    if config.window_s is not None and not config.window_s > 0:
        raise ConfigError(f"--window-seconds must be > 0, got {config.window_s}")
    if config.max_errors is not None and config.max_errors < 0:
        raise ConfigError(f"--max-errors must be >= 0, got {config.max_errors}")
    if config.resume and config.overwrite:
        raise ConfigError("--resume and --overwrite exclude each other")
