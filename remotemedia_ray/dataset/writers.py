"""Writing a job's outputs where the work runs: Parquet shards per sink, audio files.

The worker that produced a batch writes it (:class:`OutputWriter`, called by
the pipeline inside that worker) straight to the output storage, and hands
the driver a small :class:`BatchCommit` naming the files it wrote. Each
output format has its own folder, so one never mistakes the other's files:

* ``OUTDIR/<sink>/part-<run>-<digest>.parquet``: one shard per batch, with a
  row per item (:func:`remotemedia_ray.columns.sink_table`), so
  ``pyarrow.parquet.read_table(OUTDIR/<sink>)`` reads them all. The digest
  is of the batch's item ids: a batch that Ray retries (a worker died while
  writing) writes the same names again, so a retry overwrites, and never
  duplicates, what the first attempt wrote;
* ``OUTDIR/<sink>.audio/<input path>.<fmt>``: with ``--write-audio``, each
  audio output as a file named after its input (see
  :func:`~remotemedia_ray.dataset.audiofiles.audio_path`); a node id cannot
  contain a ``.``, so no sink's folder is another's audio folder;
* ``OUTDIR/format.<name>/``: the training-ready formats ``--format`` asks
  for (see :mod:`~remotemedia_ray.dataset.formats`), under the same shard name.

Every file appears whole or not at all: locally it is written under a
temporary name (starting with ``.``) and renamed; on an object store a PUT is
atomic. The driver records a batch in the done log only after its commit
arrives, and files the done log does not name are removed (see
:mod:`~remotemedia_ray.dataset.donelog`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from remotemedia_ray.audio import AudioBuffer, Clips
from remotemedia_ray.columns import sink_table, stored_table
from remotemedia_ray.dataset.audiofiles import audio_folder, audio_path, encode_audio
from remotemedia_ray.dataset.formats import FORMATS, ShardSize, folder, records, write_formats
from remotemedia_ray.errors import ConfigError

if TYPE_CHECKING:
    from remotemedia_ray.dataset.storage import Location

__all__ = [
    "PARQUET_COMPRESSIONS",
    "PARQUET_OPTIONS",
    "BatchCommit",
    "OutputWriter",
    "check_compression",
    "output_folders",
    "parquet_options",
    "shard_name",
]

PARQUET_OPTIONS: dict[str, Any] = {"compression": "zstd", "compression_level": 1}
"""How shards are written: zstd level 1; the audio is stored as bytes
(:func:`~remotemedia_ray.columns.stored_table`) and without Parquet's dictionary.

``python -m benchmarks.output_cost`` measures the choices on int16 speech: as
bytes with zstd 1 the audio takes about 0.7 of the raw samples and is written
about 4x faster than as a list of samples (whichever list encoding), where
pyarrow's default (snappy over the dictionary) barely compresses it."""


PARQUET_COMPRESSIONS: tuple[str, ...] = ("zstd", "lz4", "snappy", "none")
"""The codecs a job's shards can be written with (``--compression``); ``zstd`` is
:data:`PARQUET_OPTIONS`. On this project's speech corpora ``none`` writes a shard
about 3-4x faster (about 1 ms less per 10 s file), for files about 1.2-1.5x as
large; lz4 and snappy barely compress int16 audio and are slower than ``none``."""


def check_compression(compression: str) -> None:
    """Refuse a codec that is not one of :data:`PARQUET_COMPRESSIONS`.

    Raises:
        ConfigError: naming ``--compression`` and the codecs.
    """
    if compression not in PARQUET_COMPRESSIONS:
        raise ConfigError(
            f"--compression must be one of {', '.join(PARQUET_COMPRESSIONS)}, got {compression!r}"
        )


def parquet_options(table: pa.Table, compression: str = "zstd") -> dict[str, Any]:
    """The ``pq.write_table`` options of one table: the codec (``zstd``:
    :data:`PARQUET_OPTIONS`; or another of :data:`PARQUET_COMPRESSIONS`), and the
    dictionary and statistics for every column but ``audio``. A dictionary of whole
    recordings only costs time, and the statistics of a binary column are its
    smallest and largest value, copies of whole recordings: without them a shard is
    written about 1.6x faster, and a 3-hour cell (330 MiB) needs 1.3 GB beside it
    instead of 3.3 GB.

    Raises:
        ConfigError: an unknown codec.
    """
    check_compression(compression)
    codec = PARQUET_OPTIONS if compression == "zstd" else {"compression": compression}
    others = [n for n in table.column_names if n != "audio"]
    return {**codec, "use_dictionary": others, "write_statistics": others}


def output_folders(sinks: Iterable[str]) -> list[str]:
    """Every folder of OUTDIR the job writes outputs to: the sinks', their audio
    folders and every format's (whether this run writes it or not)."""
    names = list(sinks)
    return [
        *names,
        *(audio_folder(s) for s in names),
        *(folder(f) for f in FORMATS if f != "parquet"),
    ]


def _audio_outputs(item_id: str, value: Any) -> list[tuple[str, AudioBuffer]]:
    """The audio of one sink output: itself, or each clip's (named ``{item}/{index}``)."""
    if isinstance(value, AudioBuffer):
        return [(item_id, value)]
    if isinstance(value, Clips):
        return [
            (Clips.id_of(item_id, i), clip.value)
            for i, clip in enumerate(value)
            if isinstance(clip.value, AudioBuffer)
        ]
    return []


def shard_name(run_id: str, item_ids: Iterable[str]) -> str:
    """The file name of the shard holding ``item_ids``, the same for every attempt of a batch."""
    digest = hashlib.blake2b(digest_size=10)
    for item_id in sorted(item_ids):
        digest.update(item_id.encode("utf-8", "surrogatepass") + b"\0")
    return f"part-{run_id}-{digest.hexdigest()}.parquet"


@dataclass
class BatchCommit:
    """What a worker wrote for one batch: all the driver receives of its outputs.

    Attributes:
        shard: The shard's file name (the same in every sink's folder).
        files: Every file written, relative to OUTDIR (POSIX form).
        items: ``{item_id: resume key}`` of the batch's items.
        audio_seconds: The summed duration of the items' inputs.
    """

    shard: str
    files: list[str]
    items: dict[str, str]
    audio_seconds: float = 0.0

    def to_record(self) -> dict[str, Any]:
        """The done log's line for this batch."""
        return {"shard": self.shard, "files": self.files, "items": self.items}


@dataclass(frozen=True)
class OutputWriter:
    """Writes the sink outputs of a batch of items, in the worker that produced them.

    Pickled once into every worker (the filesystem travels with its
    credentials). :meth:`write` writes one Parquet shard per sink (format
    ``parquet``), with ``write_audio`` one file per audio output, the files of
    the other ``formats``, and returns a :class:`BatchCommit`.

    Attributes:
        out: OUTDIR (a :class:`~remotemedia_ray.dataset.storage.Location`).
        sinks: The manifest's sinks, whose outputs are written.
        run_id: This run's id, part of every shard name.
        key_node, duration_node: The outputs that hold each item's resume key
            and duration (not written as sinks).
        write_audio: ``"flac"``, ``"wav"`` or None.
        formats: The output formats (see :data:`~remotemedia_ray.dataset.formats.FORMATS`).
        shard_size: The most a WebDataset tar holds.
        compression: The Parquet codec of the shards (see :func:`parquet_options`).
    """

    out: Location
    sinks: tuple[str, ...]
    run_id: str
    key_node: str
    duration_node: str
    write_audio: str | None = None
    formats: tuple[str, ...] = ("parquet",)
    shard_size: ShardSize = field(default_factory=ShardSize)
    compression: str = "zstd"
    node_id: str = field(default="job:write")

    def write(self, outputs: Sequence[Mapping[str, Any]], item_ids: Sequence[str]) -> BatchCommit:
        """Write the outputs of one batch (``outputs[i]`` of item ``item_ids[i]``)."""
        import pyarrow.parquet as pq

        name = shard_name(self.run_id, item_ids)
        files: list[str] = []
        if self.write_audio:
            for item_id, output in zip(item_ids, outputs, strict=True):
                for sink in self.sinks:
                    for audio_id, audio in _audio_outputs(item_id, output[sink]):
                        rel = f"{audio_folder(sink)}/{audio_path(audio_id, self.write_audio)}"
                        data = encode_audio(audio, self.write_audio)
                        self.out.write_bytes(self.out.inside(self.out.join(rel)), data)
                        files.append(rel)
        for sink in self.sinks if "parquet" in self.formats else ():
            rows = [
                (item_id, output[sink]) for item_id, output in zip(item_ids, outputs, strict=True)
            ]
            table = stored_table(sink_table(rows))
            if not table.num_rows:  # every item of the batch gave no clips
                continue
            buffer = pa.BufferOutputStream()
            pq.write_table(table, buffer, **parquet_options(table, self.compression))
            rel = f"{sink}/{name}"
            self.out.write_bytes(self.out.inside(self.out.join(rel)), buffer.getvalue())
            files.append(rel)
        if any(f != "parquet" for f in self.formats):
            batch = records(outputs, item_ids, self.sinks)
            stem = name.removesuffix(".parquet")
            files += write_formats(self.out, self.formats, batch, stem, self.shard_size)
        return BatchCommit(
            shard=name,
            files=files,
            items={
                item_id: str(output[self.key_node])
                for item_id, output in zip(item_ids, outputs, strict=True)
            },
            audio_seconds=sum(float(output[self.duration_node]) for output in outputs),
        )
