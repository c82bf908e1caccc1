"""The dataset job: run a manifest over a corpus of audio and write the results.

``remotemedia-ray run MANIFEST -i INPUT -o OUTDIR`` (see :func:`run_job`), in
the steps of :class:`DatasetJob`. INPUT and OUTDIR are local paths or storage
URIs (``s3://bucket/prefix``; see :mod:`~remotemedia_ray.dataset.storage`).

1. ``prepare``: the inputs are listed on the driver (names only, see
   :func:`~remotemedia_ray.dataset.inputs.list_inputs`) and OUTDIR is locked
   and made ready (:mod:`~remotemedia_ray.dataset.outdir`); the manifest is
   extended with internal nodes: ``job:read`` decodes each file (in a Ray
   worker, which reads the bytes itself) and feeds the manifest's sources,
   ``job:duration`` reports its length, ``job:key`` digests its bytes (the
   resume key); a manifest's node ids cannot contain ``:``, so they never
   clash with these;
2. ``resume`` (with ``--resume``): files the done log does not name are
   deleted, and every item whose id and content digest are recorded as done
   is skipped; the rest run again, so a resumed run's outputs equal an
   uninterrupted run's; done items the input no longer lists keep their
   outputs, and the run names them;
3. ``run``: the worker that ran a batch writes its outputs
   (:class:`~remotemedia_ray.dataset.writers.OutputWriter`): a Parquet shard
   per sink ``OUTDIR/<sink>/part-*.parquet`` and, with ``--write-audio``,
   audio files ``OUTDIR/<sink>.audio/<input path>.<fmt>``. The driver only
   receives each batch's commit (files, item ids, keys, seconds) and records
   it in the done log ``OUTDIR/_done/`` (:mod:`~remotemedia_ray.dataset.donelog`);
   failed items (and inputs that could not be listed) go to
   ``OUTDIR/errors.jsonl`` (item, path, node, error);
4. ``finish``: files no record names (a batch Ray gave up on) are deleted,
   ``OUTDIR/metrics.json`` and a one-line summary end the run, and the lock is
   released.

A file longer than ``window_s`` (10 minutes by default) is decoded and
pushed through the nodes one window at a time, inside one worker, with the
same outputs as whole-file processing (see :mod:`remotemedia_ray._runtime.local`);
memory then grows with the outputs kept, not with the input. With
``fuse=False`` the nodes are separate actors and a long file is read whole.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TextIO

from remotemedia_ray._runtime.execution import ItemFailure
from remotemedia_ray.dataset.audiofiles import audio_folder
from remotemedia_ray.dataset.donelog import (
    COMPACT_AT,
    DoneLog,
    compact,
    drop_items,
    load_done,
    sweep,
)
from remotemedia_ray.dataset.formats import FORMATS, ShardSize, check_sinks, join_parts
from remotemedia_ray.dataset.inputs import InputItem, Listing, printable_name
from remotemedia_ray.dataset.outdir import ERRORS, METRICS, OutdirLock, prepare_outdir
from remotemedia_ray.dataset.progress import Progress, realtime_text
from remotemedia_ray.dataset.readers import AudioDuration, AudioFileReader, ContentKey
from remotemedia_ray.dataset.storage import Location, redact, resolve
from remotemedia_ray.dataset.writers import BatchCommit, OutputWriter, check_compression
from remotemedia_ray.errors import ConfigError
from remotemedia_ray.graph import PipelineGraph
from remotemedia_ray.manifest import (
    Connection,
    Manifest,
    NodeSpec,
    RuntimeHint,
    check_runtime_hint,
)
from remotemedia_ray.metrics import PipelineMetrics, micros, millis
from remotemedia_ray.nodes.registry import internal_node_id

if TYPE_CHECKING:
    from remotemedia_ray._runtime.pools import PoolLayout
    from remotemedia_ray.pipeline import Pipeline

__all__ = [
    "DURATION",
    "KEY",
    "READ",
    "DatasetJob",
    "JobConfig",
    "JobResult",
    "plan_job",
    "run_job",
]

READ, DURATION, KEY = (
    internal_node_id("read"),
    internal_node_id("duration"),
    internal_node_id("key"),
)
"""The ids of the job's internal nodes in its manifest."""


@dataclass
class JobConfig:
    """Options of :func:`run_job` (the ``run`` command's flags)."""

    manifest: Manifest | str | Path
    input: str
    outdir: str | Path
    address: str | None = None
    runtime: Literal["ray", "local"] = "ray"
    node_runtime: RuntimeHint | None = None
    resume: bool = False
    overwrite: bool = False
    max_errors: int | None = None
    write_audio: Literal["flac", "wav"] | None = None
    formats: tuple[str, ...] = ("parquet",)
    shard_size: str | int | None = None
    compression: Literal["zstd", "lz4", "snappy", "none"] = "zstd"
    """The Parquet codec of the shards (``--compression``): zstd (level 1) makes
    them smallest, ``none`` is fastest to write (see
    :data:`~remotemedia_ray.dataset.writers.PARQUET_COMPRESSIONS`)."""
    batch_size: int | None = None
    shard_rows: int = 256
    batch_bytes: int = 64 << 20
    """A batch (one shard) ends once its input files hold this many bytes, or at
    ``shard_rows`` items: each Ray call then carries a few hundred milliseconds of
    work at least, and an actor holds only one batch's outputs, whether the inputs
    are short clips (many to a batch) or hour-long recordings (one). An input of
    unknown size (a list file's entry, a Parquet row) counts as none."""
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
    items_unlisted: int = 0
    """Items an earlier run finished that this run's input no longer lists
    (``--resume`` only): their outputs stay in OUTDIR, and the run says so
    (``--overwrite`` rebuilds OUTDIR from the input as it is)."""
    audio_seconds: float = 0.0
    metrics: PipelineMetrics | None = None
    summary: str = ""


def run_job(config: JobConfig, *, stream: TextIO | None = None) -> JobResult:
    """Run the dataset job; returns its result (``exit_code`` 0 on success).

    Exit codes: 0 done (bad files recorded in errors.jsonl), 1 a usage or
    manifest error, 3 more than ``max_errors`` failures, 4 every input failed
    (none of those listed finished, in this run or, unchanged, in an earlier
    one), 130 interrupted.
    Progress and messages go to ``stream`` (stderr by default).

    Raises:
        ManifestError, ConfigError, InputError: before anything runs.
    """
    job = DatasetJob(config, stream=stream)
    job.prepare()
    try:
        job.resume()
        job.run()
        return job.finish()
    finally:
        job.close()


class DatasetJob:
    """One run of the dataset job, step by step (see the module docs).

    ``prepare()`` then ``resume()``, ``run()`` and ``finish()``; ``close()``
    releases OUTDIR whatever happened (:func:`run_job` does all of it).
    """

    def __init__(self, config: JobConfig, *, stream: TextIO | None = None) -> None:
        self.config = config
        self.stream = stream or sys.stderr
        self.result = JobResult(exit_code=0)
        self.out: Location | None = None
        self.run_id = uuid.uuid4().hex[:8]
        self.sinks: list[str] = []
        self.listing: Listing | None = None
        self.skip: set[str] = set()
        self._lock: OutdirLock | None = None
        self._job_manifest: Manifest | None = None
        self._metrics: PipelineMetrics | None = None
        self._named: set[str] = set()
        self._errors: list[dict[str, Any]] = []
        self._errors_written = 0
        self._failures_recorded = 0
        """Failures of the pipeline (``pipeline.failures``) recorded so far."""
        self._paths: dict[str, str] = {}
        """How errors name the items in flight (item id -> path)."""
        self._elapsed = 0.0

    def prepare(self) -> None:
        """Check the options and the manifest, list the inputs, lock and prepare OUTDIR.

        Raises:
            ManifestError, ConfigError, InputError: naming what is wrong; nothing ran.
        """
        config = self.config
        manifest = _checked_manifest(config)
        self.sinks = list(PipelineGraph.from_manifest(manifest).sinks)
        check_sinks(self.sinks, config.formats)
        self._job_manifest = _job_manifest(manifest, config.window_s)
        out = resolve(config.outdir, role="output")
        self.listing = Listing(config.input, exclude=out.path if out.local else None)
        self.listing.check()
        self._lock = prepare_outdir(
            out,
            sinks=self.sinks,
            fingerprint=_job_fingerprint(manifest, config, self.sinks),
            resume=config.resume,
            overwrite=config.overwrite,
            stream=self.stream,
        )
        self.out = out

    def resume(self) -> None:
        """With ``--resume``: drop unfinished outputs and find the items already done."""
        if not self.config.resume:
            return
        out = self._out
        state = load_done(out)
        sweep(out, self.sinks, state.files)
        out.delete(out.join(ERRORS))  # failed items run again
        candidates: set[str] = set()
        listed: set[str] = set()  # of the items done, those this input still lists

        def listed_and_done() -> Iterator[InputItem]:
            for item in self._listing:
                if item.item_id in state.items:
                    listed.add(item.item_id)
                    if item.error is None:
                        candidates.add(item.item_id)
                        yield item

        current = _resume_keys(self.config, listed_and_done(), len(state.items))
        self._report_unlisted(sorted(set(state.items) - listed))
        self.skip = {i for i, key in current.items() if state.items.get(i) == key}
        rerun = candidates - self.skip
        if rerun:  # a batch written in a format that cannot lose rows runs again whole
            self.skip -= drop_items(out, state, rerun, self.run_id, listed=candidates)
        elif len(state.segments) > COMPACT_AT:  # a long run's log: read at every resume
            compact(out, state, self.run_id)
        self._named = set(state.files)
        self.result.items_skipped = len(self.skip)

    def _report_unlisted(self, unlisted: list[str]) -> None:
        """Say which finished items the input no longer lists (their outputs are kept)."""
        self.result.items_unlisted = len(unlisted)
        if not unlisted:
            return
        shown = ", ".join(repr(i) for i in unlisted[:3]) + (", ..." if len(unlisted) > 3 else "")
        self.stream.write(
            f"resume: {len(unlisted)} item(s) an earlier run finished are not in this input "
            f"({shown}); their outputs stay in {self._out.uri}: use --overwrite to rebuild "
            "it from this input alone\n"
        )
        self.stream.flush()

    @property
    def _out(self) -> Location:
        assert self.out is not None, "prepare() first"
        return self.out

    @property
    def _listing(self) -> Listing:
        assert self.listing is not None, "prepare() first"
        return self.listing

    def _todo(
        self, items: Iterator[InputItem], progress: Progress, pipeline: Pipeline
    ) -> Iterator[dict[str, Any]]:
        """The pipeline inputs of the items to run, as they are listed.

        Items that could not be listed are recorded as they come; every item
        is counted, and the progress line learns the total once listing ends.
        Past ``max_errors`` failures (listed, or failed in the pipeline and not
        yet recorded: a batch whose items all fail writes nothing) no more
        items are handed out.
        """
        result = self.result
        for item in items:
            if self._too_many_errors(len(pipeline.failures) - self._failures_recorded):
                break
            result.items_total += 1
            if item.error is not None:
                self._record([_listing_error(item)])
            elif item.item_id not in self.skip:
                self._paths[item.item_id] = item.shown
                yield item.to_value()
        progress.total = result.items_total - result.items_skipped

    def run(self) -> JobResult:
        """Run the manifest over every item not skipped; the workers write the outputs.

        On Ctrl-C the batches already written are recorded and ``exit_code`` is 130.
        """
        config, result, out = self.config, self.result, self._out
        progress = self._progress(None)
        start = time.monotonic()
        log = DoneLog(out, self.run_id)
        writer = OutputWriter(
            out,
            tuple(self.sinks),
            self.run_id,
            key_node=KEY,
            duration_node=DURATION,
            write_audio=config.write_audio,
            formats=tuple(config.formats),
            shard_size=ShardSize.parse(config.shard_size),
            compression=config.compression,
        )
        listed = iter(self._listing)
        first = list(itertools.islice(listed, _PEEK))  # a small corpus gets smaller batches
        small = len(first) < _PEEK
        pipeline = self._pipeline(sum(i.error is None for i in first) if small else None)
        todo = self._todo(itertools.chain(first, listed), progress, pipeline)
        try:
            with pipeline:
                values, ids = _unzip((v["item_id"], v) for v in todo)
                batches = pipeline.write(
                    values,
                    writer,
                    ids=ids,
                    local_batch=config.shard_rows,
                    item_bytes=_input_bytes,
                    batch_bytes=config.batch_bytes,
                )
                for commit in batches:
                    record: BatchCommit = commit.record
                    log.add(record)
                    self._named.update(record.files)
                    for item_id in record.items:
                        self._paths.pop(item_id, None)
                    result.items_done += len(record.items)
                    result.audio_seconds += record.audio_seconds
                    failures = pipeline.failures[self._failures_recorded :]
                    self._failures_recorded += len(failures)
                    self._record(
                        [_failure_entry(f, self._paths.pop(f.item_id, None)) for f in failures]
                    )
                    if self._too_many_errors():
                        break
                    progress.update(result.items_done, result.items_failed, result.audio_seconds)
                failures = pipeline.failures[self._failures_recorded :]
                self._failures_recorded += len(failures)
                self._record(
                    [_failure_entry(f, self._paths.pop(f.item_id, None)) for f in failures]
                )
                self._metrics = pipeline.metrics
        except KeyboardInterrupt:
            result.exit_code = 130
        finally:
            log.flush()
            self._write_errors()
        progress.update(result.items_done, result.items_failed, result.audio_seconds, final=True)
        if result.exit_code == 130:
            self.stream.write("interrupted: finished batches are kept; run again with --resume\n")
            self.stream.flush()
        self._elapsed = time.monotonic() - start
        return result

    def _progress(self, total: int | None) -> Progress:
        mode = self.config.progress
        if mode == "auto":
            mode = "live" if self.stream.isatty() else "plain"
        return Progress(total, stream=self.stream, live=mode == "live", enabled=mode != "off")

    def _pipeline(self, expected_items: int | None) -> Pipeline:
        """The pipeline of the job's manifest, with the Ray options of the config."""
        assert self._job_manifest is not None, "prepare() first"
        return _job_pipeline(self.config, self._job_manifest, expected_items)

    def _record(self, entries: list[dict[str, Any]]) -> None:
        """Keep failed items for ``errors.jsonl`` and count them."""
        self._errors.extend(entries)
        self.result.items_failed += len(entries)
        if len(self._errors) - self._errors_written >= _ERRORS_PER_WRITE:
            self._write_errors()

    def _write_errors(self) -> None:
        """Write the new entries of ``errors.jsonl``.

        Locally they are appended (the driver keeps none); an object store
        cannot append, so there the file is written whole each time, from
        every entry so far.
        """
        if len(self._errors) == self._errors_written:
            return
        out = self._out
        if out.local:
            with open(out.join(ERRORS), "a", encoding="utf-8") as handle:
                handle.writelines(redact(json.dumps(e)) + "\n" for e in self._errors)
            self._errors.clear()
            self._errors_written = 0
            return
        text = "".join(json.dumps(entry) + "\n" for entry in self._errors)
        out.write_bytes(out.join(ERRORS), redact(text).encode("utf-8"))
        self._errors_written = len(self._errors)

    def _too_many_errors(self, pending: int = 0) -> bool:
        """Whether more than ``max_errors`` items failed, counting ``pending`` failures
        not yet recorded."""
        limit = self.config.max_errors
        return limit is not None and self.result.items_failed + pending > limit

    def finish(self) -> JobResult:
        """Delete unnamed files, write ``metrics.json`` and the summary (not after Ctrl-C)."""
        result = self.result
        if result.exit_code == 130 or self._metrics is None:
            return result
        out = self._out
        sweep(out, self.sinks, self._named)
        for fmt in self.config.formats:
            join_parts(out, fmt, self._named)
        metrics, elapsed = self._metrics.without((KEY, DURATION)), self._elapsed
        # Validated again (model_copy would not check), so metrics.json keeps the seed's
        # types: whole milliseconds (rounded to the nearest), the microseconds beside them.
        wall_us = micros(elapsed)
        metrics = PipelineMetrics.model_validate(
            {
                **metrics.model_dump(),
                "total_time_us": wall_us,
                "total_time_ms": millis(wall_us),
                "items": result.items_done,
                "items_failed": result.items_failed,
                "audio_seconds": result.audio_seconds,
                "realtime_factor": result.audio_seconds / elapsed if elapsed > 0 else None,
            }
        )
        out.write_bytes(out.join(METRICS), (metrics.to_json() + "\n").encode("utf-8"))
        result.metrics = metrics
        result.summary = (
            f"{metrics.summary()}: {result.items_done} file(s) done, {result.items_skipped} "
            f"skipped, {result.items_failed} failed, {result.audio_seconds / 3600:.3f} h of "
            f"audio at {realtime_text(metrics.realtime_factor or 0.0)} realtime"
        )
        if result.items_unlisted:
            result.summary += (
                f"; {result.items_unlisted} earlier item(s) no longer in the input kept"
            )
        config = self.config
        if config.max_errors is not None and result.items_failed > config.max_errors:
            result.exit_code = 3
            result.summary += f" (stopped: more than {config.max_errors} error(s))"
        elif result.items_failed and not result.items_done and not result.items_skipped:
            result.exit_code = 4
            result.summary += f" (every item failed: see {out.join(ERRORS)})"
        return result

    def close(self) -> None:
        """Release OUTDIR's lock (safe to call more than once)."""
        if self._lock is not None:
            self._lock.release()
            self._lock = None


def _input_bytes(value: dict[str, Any]) -> int | None:
    """The size of a pipeline input of the job (see :meth:`InputItem.to_value`)."""
    size: int | None = value.get("size")
    return size


_PEEK = 4096
"""Entries listed before the pipeline starts, to size its batches for a small corpus."""
_AUTO_BATCH_LIMIT = 32
"""The largest batch the Ray runtime picks by itself (one batch is one shard)."""
_ERRORS_PER_WRITE = 256
"""Failed items kept before ``errors.jsonl`` is written again."""


def _listing_error(item: InputItem) -> dict[str, Any]:
    """The errors.jsonl entry of an input that could not be listed (no node ran).

    Paths and messages are valid text (see :func:`printable_name`), so every
    JSON reader accepts the file.
    """
    return {
        "item_id": item.item_id,
        "path": item.shown,
        "node": None,
        "error_type": "InputError",
        "error": printable_name(item.error or ""),
    }


def _failure_entry(failure: ItemFailure, path: str | None) -> dict[str, Any]:
    """The errors.jsonl entry of an item that failed in a node (``path``: how it is shown)."""
    return {
        "item_id": failure.item_id,
        "path": path,
        "node": failure.node_id,
        "error_type": type(failure.error).__name__,
        "error": printable_name(failure.error.message),
    }


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


def _job_pipeline(
    config: JobConfig, job_manifest: Manifest, expected_items: int | None
) -> Pipeline:
    """The job's pipeline over ``job_manifest``, with the Ray options of ``config``."""
    from remotemedia_ray.pipeline import Pipeline

    options = dict(config.ray_options)
    options.setdefault("fuse", config.fuse)
    options.setdefault("max_batch_size", config.shard_rows)  # batches end by bytes first
    if config.batch_size is not None:
        options["batch_size"] = min(config.batch_size, config.shard_rows)
    elif config.shard_rows < _AUTO_BATCH_LIMIT:
        options["batch_size"] = config.shard_rows
    options.setdefault("expected_items", max(1, expected_items or 1 << 30))
    return Pipeline(
        job_manifest,
        runtime=config.runtime,
        address=config.address if config.runtime == "ray" else None,
        on_error="record",
        node_runtime=config.node_runtime,
        **(options if config.runtime == "ray" else {}),
    )


def plan_job(
    config: JobConfig, *, cpus: float | None = None, gpus: float | None = None
) -> PoolLayout:
    """The actor pools the job of ``config`` would run its manifest in, and why
    (``remotemedia-ray plan``): the manifest's nodes plus the job's own (reader,
    content key, duration), on ``cpus`` CPUs and ``gpus`` GPUs (default: this
    machine's). Only the manifest and the options are read; nothing starts.

    Raises:
        ManifestError, ConfigError: naming what is wrong.
    """
    manifest = _checked_manifest(config)
    return _job_pipeline(config, _job_manifest(manifest, config.window_s), None).plan(
        cpus=cpus, gpus=gpus
    )


def _checked_manifest(config: JobConfig) -> Manifest:
    """The job's options checked, and its manifest loaded and validated."""
    _check_config(config)
    manifest = (
        config.manifest
        if isinstance(config.manifest, Manifest)
        else Manifest.from_file(config.manifest)
    )
    return manifest.validate()


def _job_manifest(manifest: Manifest, window_s: float | None = 600.0) -> Manifest:
    """The manifest with the internal reader, duration and key nodes added.

    Files longer than ``window_s`` seconds are read and processed in windows.
    """
    graph = PipelineGraph.from_manifest(manifest)
    return _with_internal_nodes(
        manifest,
        before=[
            _internal_node(READ, AudioFileReader.node_type, {"window_s": window_s}),
            _internal_node(KEY, ContentKey.node_type),
        ],
        after=[_internal_node(DURATION, AudioDuration.node_type)],
        connections=[*((READ, source) for source in graph.sources), (READ, DURATION)],
    )


def _job_fingerprint(manifest: Manifest, config: JobConfig, sinks: list[str]) -> dict[str, Any]:
    """What the outputs in OUTDIR depend on besides the inputs."""
    text = json.dumps(manifest.to_dict(), sort_keys=True)
    fingerprint: dict[str, Any] = {
        "manifest_sha256": hashlib.sha256(text.encode()).hexdigest(),
        "write_audio": config.write_audio,
        "layout": _LAYOUT,
    }
    if tuple(config.formats) != ("parquet",):
        fingerprint["formats"] = sorted(config.formats)
    if config.write_audio:
        fingerprint["audio_folders"] = [audio_folder(sink) for sink in sinks]
    return fingerprint


_LAYOUT = 3
"""The version of OUTDIR's layout (2: workers write, the done log is ``_done/``;
3: shards store audio as bytes beside ``sample_format``); an OUTDIR of another
layout is not resumed."""


def _resume_keys(
    config: JobConfig, candidates: Iterator[InputItem], expected: int
) -> dict[str, str]:
    """Content keys of the items that an earlier run finished (computed in workers)."""
    from remotemedia_ray.pipeline import Pipeline

    if expected == 0:
        return {}
    keys_manifest = _with_internal_nodes(
        None, before=[_internal_node(KEY, ContentKey.node_type)], after=[], connections=[]
    )
    options = (
        {"fuse": config.fuse, "expected_items": expected, **config.ray_options}
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
        values, ids = _unzip((c.item_id, c.to_value()) for c in candidates)
        return {out.item_id: out[KEY] for out in pipeline.map(values, ids=ids, ordered=False)}


def _unzip(pairs: Iterator[tuple[str, Any]]) -> tuple[Iterator[Any], Iterator[str]]:
    """The values and the ids of ``(id, value)`` pairs, as two lazy iterators (consumed
    in step, as :meth:`Pipeline.map` does, they hold one pair between them)."""
    first, second = itertools.tee(pairs)
    return (value for _, value in first), (item_id for item_id, _ in second)


def _check_config(config: JobConfig) -> None:
    if config.runtime not in ("ray", "local"):
        raise ConfigError(f"--runtime must be 'ray' or 'local', got {config.runtime!r}")
    check_runtime_hint(config.node_runtime, "--node-runtime")
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
    if config.batch_bytes < 1:
        raise ConfigError(f"batch_bytes must be >= 1, got {config.batch_bytes}")
    if not config.formats:
        raise ConfigError("--format: give at least one output format")
    for fmt in config.formats:
        if fmt not in FORMATS:
            raise ConfigError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    ShardSize.parse(config.shard_size)  # raises naming --shard-size
    check_compression(config.compression)
    if config.window_s is not None and not config.window_s > 0:
        raise ConfigError(f"--window-seconds must be > 0, got {config.window_s}")
    if config.max_errors is not None and config.max_errors < 0:
        raise ConfigError(f"--max-errors must be >= 0, got {config.max_errors}")
    if config.resume and config.overwrite:
        raise ConfigError("--resume and --overwrite exclude each other")
