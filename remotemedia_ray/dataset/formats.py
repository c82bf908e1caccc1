"""Training-ready outputs: HuggingFace Parquet, WebDataset tars, Lhotse and NeMo manifests.

``--format`` picks them (repeatable; ``parquet``, the job's own per-sink
layout, is the default). Each is written by the worker that made a batch,
next to the Parquet shards and under the same shard name
(``part-<run>-<digest of the batch's item ids>``), so a batch Ray runs again
overwrites its own files and the done log names them all.

A batch's outputs become :class:`Record` s: one per item, or one per clip
when a sink yields :class:`~remotemedia_ray.audio.Clips` (SegmentNode's
utterances; the item's other non-audio sink values then go with each of
its clips, its other audio does not).
A record's audio is what its audio sinks gave, stored as FLAC; every other
sink value goes with it as a typed field.

* ``hf``: ``OUTDIR/format.hf/part-*.parquet``; ``datasets.load_dataset("parquet",
  data_files=...)`` reads them with an ``Audio`` feature (FLAC bytes plus a
  path) per audio sink (``audio`` when there is one), the features recorded
  in the schema metadata as ``datasets`` (4 or later) writes them;
* ``webdataset``: ``OUTDIR/format.webdataset/part-*-<n>.tar``, members
  ``<key>.flac`` (``<key>.<sink>.flac`` for several audio sinks) and
  ``<key>.json`` (id, sample rate and channels, each an object keyed by sink
  for several audio sinks, bounds and the other values); a tar holds
  at most ``--shard-size`` rows or bytes of members (a single record larger
  than the bound gets a tar of its own);
* ``lhotse``: ``OUTDIR/format.lhotse/audio/...flac`` plus recordings and
  supervisions manifests (JSONL.gz) per batch, joined at the end of the run
  into ``recordings.jsonl.gz`` and ``supervisions.jsonl.gz``; the VAD's
  segments (a sink of segments) are the supervisions, a clip is a recording
  with one supervision;
* ``nemo``: ``OUTDIR/format.nemo/audio/...flac`` plus JSONL lines
  (``audio_filepath`` relative to the manifest's folder, ``duration``, ``offset``, and
  the segment's or clip's fields) per batch, joined into ``manifest.jsonl``.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import re
import tarfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from remotemedia_ray._arrow import array
from remotemedia_ray.audio import AudioBuffer, Clips
from remotemedia_ray.columns import CLIP_COLUMNS, to_json, value_columns
from remotemedia_ray.dataset.audiofiles import audio_path, encode_audio, safe_relative_path
from remotemedia_ray.errors import ConfigError, MarshalingError

if TYPE_CHECKING:
    from remotemedia_ray.dataset.storage import Location

__all__ = [
    "FORMATS",
    "JOINED",
    "Record",
    "ShardSize",
    "check_sinks",
    "folder",
    "join_parts",
    "joined_files",
    "records",
    "write_formats",
]

FORMATS = ("parquet", "hf", "webdataset", "lhotse", "nemo")
"""The output formats ``--format`` accepts (``parquet`` is the job's per-sink layout)."""

JOINED: dict[str, dict[str, str]] = {
    "lhotse": {
        "recordings.jsonl.gz": "-recordings.jsonl.gz",
        "supervisions.jsonl.gz": "-supervisions.jsonl.gz",
    },
    "nemo": {"manifest.jsonl": ".jsonl"},
}
"""Per format, the manifests joined at the end of a run (in its folder):
``{file: suffix of its per-batch parts}``."""


def folder(fmt: str) -> str:
    """The folder (relative to OUTDIR) of a format's files: ``format.<name>``.

    Node ids cannot contain a dot, so no sink's folder is a format's.
    """
    return f"format.{fmt}"


@dataclass(frozen=True)
class ShardSize:
    """The most a WebDataset tar holds: ``rows`` records or ``bytes`` of members."""

    rows: int | None = None
    bytes: int | None = None

    @classmethod
    def parse(cls, text: str | int | None) -> ShardSize:
        """``"1000"`` (rows) or ``"256MB"``, ``"1.5GB"``, ``"500kB"`` (bytes); None: no bound.

        Raises:
            ConfigError: Anything else, or a size below 1.
        """
        if text is None:
            return cls()
        if isinstance(text, int):
            return cls._checked(rows=text)
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKmMgG]?)[bB]?\s*", str(text))
        if match is None or (not match.group(2) and "." in match.group(1)):
            raise ConfigError(
                f"--shard-size must be a number of rows (1000) or of bytes (256MB), got {text!r}"
            )
        number, unit = float(match.group(1)), match.group(2).lower()
        if not unit and not str(text).strip().lower().endswith("b"):
            return cls._checked(rows=int(number))
        scale = {"": 1, "k": 1000, "m": 1000**2, "g": 1000**3}[unit]
        return cls._checked(size=int(number * scale))

    @classmethod
    def _checked(cls, rows: int | None = None, size: int | None = None) -> ShardSize:
        if (rows if rows is not None else size or 0) < 1:
            raise ConfigError("--shard-size must be at least 1 row or 1 byte")
        return cls(rows=rows, bytes=size)

    def fits(self, rows: int, size: int) -> bool:
        """Whether a tar of ``rows`` records and ``size`` bytes is within the bound."""
        return (self.rows is None or rows <= self.rows) and (
            self.bytes is None or size <= self.bytes
        )


@dataclass
class Record:
    """One row of the training-ready outputs: an item, or a clip of one.

    Attributes:
        id: The item's id, or ``{item}/{index}`` for a clip.
        parent_id, start_s, end_s: For a clip, its item and where it lies (else None).
        audio: The audio sinks' values, by sink.
        values: The other sinks' values, by sink.
    """

    id: str
    parent_id: str | None
    start_s: float | None
    end_s: float | None
    audio: dict[str, AudioBuffer]
    values: dict[str, Any]
    _flac: dict[str, bytes] = field(default_factory=dict, repr=False)

    def flac(self, sink: str) -> bytes:
        """The sink's audio as FLAC bytes (encoded once, whatever formats use it)."""
        if sink not in self._flac:
            self._flac[sink] = encode_audio(self.audio[sink], "flac")
        return self._flac[sink]

    def fields(self) -> dict[str, Any]:
        """id, the clip bounds when a clip, and the other values: JSON-ready."""
        out: dict[str, Any] = {"id": self.id}
        if self.parent_id is not None:
            out.update(parent_id=self.parent_id, start_s=self.start_s, end_s=self.end_s)
        for sink, value in self.values.items():
            out[sink] = json.loads(to_json(value))
        return out


def records(
    outputs: Sequence[Mapping[str, Any]], item_ids: Sequence[str], sinks: Sequence[str]
) -> list[Record]:
    """The records of a batch's outputs (``outputs[i]`` of item ``item_ids[i]``).

    Raises:
        MarshalingError: Two sinks of clips that do not have the same clips.
    """
    out: list[Record] = []
    for item_id, output in zip(item_ids, outputs, strict=True):
        clip_sinks = [s for s in sinks if isinstance(output[s], Clips)]
        plain = {s: output[s] for s in sinks if s not in clip_sinks}
        audio = {s: v for s, v in plain.items() if isinstance(v, AudioBuffer)}
        values = {s: v for s, v in plain.items() if s not in audio}
        if not clip_sinks:
            out.append(Record(item_id, None, None, None, audio, values))
            continue
        first: Clips = output[clip_sinks[0]]
        for sink in clip_sinks[1:]:
            other: Clips = output[sink]
            if [(c.start_s, c.end_s) for c in other] != [(c.start_s, c.end_s) for c in first]:
                raise MarshalingError(
                    f"sinks {clip_sinks[0]!r} and {sink!r} give different clips of {item_id!r}"
                )
        for index, clip in enumerate(first):  # the item's own audio is not each clip's
            clip_audio: dict[str, AudioBuffer] = {}
            clip_values = dict(values)
            for sink in clip_sinks:
                value = output[sink][index].value
                if isinstance(value, AudioBuffer):
                    clip_audio[sink] = value
                else:
                    clip_values[sink] = value
            out.append(
                Record(
                    Clips.id_of(item_id, index),
                    item_id,
                    clip.start_s,
                    clip.end_s,
                    clip_audio,
                    clip_values,
                )
            )
    return out


RESERVED = frozenset({"id", "parent_id", "start_s", "end_s", "sample_rate", "channels"})
"""Fields every format writes itself: no sink may have one of these ids."""


def check_sinks(sinks: Iterable[str], formats: Iterable[str]) -> None:
    """Refuse sink ids the formats would write over.

    Raises:
        ConfigError: A sink named like a field of the records, naming it.
    """
    if all(f == "parquet" for f in formats):
        return
    for sink in sinks:
        if sink in RESERVED:
            raise ConfigError(
                f"sink {sink!r} has the name of a field every --format record has "
                f"({', '.join(sorted(RESERVED))}): rename the node"
            )


def write_formats(
    out: Location,
    formats: Iterable[str],
    batch: Sequence[Record],
    stem: str,
    shard_size: ShardSize,
) -> list[str]:
    """Write ``batch`` in each format; returns the files written, relative to OUTDIR."""
    files: list[str] = []
    for fmt in formats:
        if fmt == "parquet" or not batch:
            continue  # the per-sink Parquet shards are the OutputWriter's own
        if fmt == "hf":
            files += _write_hf(out, batch, stem)
        elif fmt == "webdataset":
            files += _write_webdataset(out, batch, stem, shard_size)
        elif fmt == "lhotse":
            files += _write_lhotse(out, batch, stem)
        elif fmt == "nemo":
            files += _write_nemo(out, batch, stem)
        else:
            raise ConfigError(f"unknown output format {fmt!r}; expected one of {FORMATS}")
    return files


def _put(out: Location, rel: str, data: bytes | pa.Buffer, files: list[str]) -> None:
    out.write_bytes(out.inside(out.join(rel)), data)
    files.append(rel)


def _audio_file(fmt: str, record_id: str, sink: str, several: bool) -> str:
    """Where a record's audio goes: ``format.<fmt>/audio/<id>.flac``."""
    name = audio_path(record_id, "flac").as_posix()
    if several:
        name = f"{name[: -len('.flac')]}.{sink}.flac"
    return f"{folder(fmt)}/audio/{name}"


# -- hf ---------------------------------------------------------------------------------


def _write_hf(out: Location, batch: Sequence[Record], stem: str) -> list[str]:
    import pyarrow.parquet as pq

    audio_sinks = sorted({s for r in batch for s in r.audio})
    value_sinks = sorted({s for r in batch for s in r.values})
    audio_names: list[str] = []
    columns: dict[str, pa.Array] = {"id": array([r.id for r in batch], pa.string())}
    features: dict[str, Any] = {"id": _VALUE_STRING}
    if any(r.parent_id is not None for r in batch):
        columns[CLIP_COLUMNS[0]] = array([r.parent_id for r in batch], pa.string())
        columns[CLIP_COLUMNS[1]] = array([r.start_s for r in batch], pa.float64())
        columns[CLIP_COLUMNS[2]] = array([r.end_s for r in batch], pa.float64())
        features.update({CLIP_COLUMNS[0]: _VALUE_STRING})
        features.update({name: _value("float64") for name in CLIP_COLUMNS[1:]})
    for sink in audio_sinks:
        name = "audio" if len(audio_sinks) == 1 and "audio" not in value_sinks else sink
        cells = [
            None
            if sink not in r.audio
            else {
                "bytes": r.flac(sink),
                "path": _audio_file("hf", r.id, sink, len(audio_sinks) > 1).split("/", 2)[2],
            }
            for r in batch
        ]
        columns[name] = array(cells, _HF_AUDIO)
        features[name] = {"_type": "Audio"}
        audio_names.append(name)
    for sink in value_sinks:
        for name, column in value_columns([r.values.get(sink) for r in batch], sink).items():
            columns[name] = column
            features[name] = _feature(column.type)
    table = pa.table(columns)
    meta = {"huggingface": json.dumps({"info": {"features": features}})}
    table = table.replace_schema_metadata(meta)
    buffer = pa.BufferOutputStream()
    # FLAC bytes do not compress: only the other columns are
    compression = {name: "none" if name in audio_names else "zstd" for name in table.column_names}
    dictionary = [name for name in table.column_names if name not in audio_names]
    pq.write_table(table, buffer, compression=compression, use_dictionary=dictionary)
    files: list[str] = []
    _put(out, f"{folder('hf')}/{stem}.parquet", buffer.getvalue(), files)
    return files


_HF_AUDIO = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
_VALUE_STRING = {"dtype": "string", "_type": "Value"}


def _value(dtype: str) -> dict[str, str]:
    return {"dtype": dtype, "_type": "Value"}


def _feature(arrow_type: pa.DataType) -> Any:
    """The ``datasets`` feature (as JSON) of an Arrow type the job writes."""
    if pa.types.is_list(arrow_type) or pa.types.is_large_list(arrow_type):
        return {"feature": _feature(arrow_type.value_type), "_type": "List"}
    if pa.types.is_struct(arrow_type):
        return {f.name: _feature(f.type) for f in arrow_type}
    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type):
        return _VALUE_STRING
    name = str(arrow_type)
    return _value({"double": "float64", "float": "float32", "halffloat": "float16"}.get(name, name))


# -- webdataset -------------------------------------------------------------------------


def _key(record_id: str) -> str:
    """A WebDataset key for a record: no dots (they start the extension), unique per id."""
    digest = hashlib.blake2b(record_id.encode("utf-8", "surrogatepass"), digest_size=6)
    base = safe_relative_path(record_id).as_posix().replace(".", "_")
    return f"{base}-{digest.hexdigest()}"


_TAR_BLOCK = 512
"""A tar member's header; its data is padded to whole blocks too."""


def _padded(size: int) -> int:
    return -(-size // _TAR_BLOCK) * _TAR_BLOCK


def _write_webdataset(
    out: Location, batch: Sequence[Record], stem: str, limit: ShardSize
) -> list[str]:
    files: list[str] = []
    tars: list[list[tuple[str, bytes]]] = [[]]
    rows = size = 0
    for record in batch:
        key = _key(record.id)
        members: list[tuple[str, bytes]] = []
        info = record.fields()
        several = len(record.audio) > 1
        for sink, audio in sorted(record.audio.items()):
            name = f"{key}.{sink}.flac" if several else f"{key}.flac"
            members.append((name, record.flac(sink)))
            if several:  # each member's own: keyed by sink, as the member names are
                info.setdefault("sample_rate", {})[sink] = audio.sample_rate
                info.setdefault("channels", {})[sink] = audio.channels
            else:
                info.update(sample_rate=audio.sample_rate, channels=audio.channels)
        members.append((f"{key}.json", json.dumps(info).encode()))
        added = sum(_TAR_BLOCK + _padded(len(data)) for _, data in members)
        if rows and not limit.fits(rows + 1, size + added):  # the record opens a new tar
            tars.append([])
            rows = size = 0
        tars[-1].extend(members)
        rows += 1
        size += added
    for index, members in enumerate(tars):
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for name, data in members:
                entry = tarfile.TarInfo(name)
                entry.size, entry.mtime, entry.mode = len(data), 0, 0o644
                tar.addfile(entry, io.BytesIO(data))
        _put(out, f"{folder('webdataset')}/{stem}-{index:04d}.tar", buffer.getvalue(), files)
    return files


# -- lhotse and nemo ----------------------------------------------------------------------


def _audio_uri(out: Location, rel: str) -> tuple[str, str]:
    """``(source type, source)`` of a written audio file as Lhotse wants it."""
    if out.local:
        return "file", out.join(rel)
    return "url", f"{out.fs.type_name}://{out.join(rel)}"


def _write_audio_files(out: Location, fmt: str, record: Record, files: list[str]) -> dict[str, str]:
    written: dict[str, str] = {}
    for sink in sorted(record.audio):
        rel = _audio_file(fmt, record.id, sink, len(record.audio) > 1)
        _put(out, rel, record.flac(sink), files)
        written[sink] = rel
    return written


def _segments(record: Record) -> list[dict[str, Any]] | None:
    """The record's speech segments: the first sink of ``{start_ms, end_ms}`` records."""
    for sink in sorted(record.values):
        value = record.values[sink]
        if isinstance(value, (list, tuple)) and all(
            isinstance(v, Mapping) and "start_ms" in v and "end_ms" in v for v in value
        ):
            return [dict(v) for v in value]
    return None


def _write_lhotse(out: Location, batch: Sequence[Record], stem: str) -> list[str]:
    files: list[str] = []
    recordings: list[dict[str, Any]] = []
    supervisions: list[dict[str, Any]] = []
    for record in batch:
        written = _write_audio_files(out, "lhotse", record, files)
        for sink, rel in written.items():
            audio = record.audio[sink]
            recording_id = record.id if len(written) == 1 else f"{record.id}#{sink}"
            kind, source = _audio_uri(out, rel)
            channels = list(range(audio.channels))
            recordings.append(
                {
                    "id": recording_id,
                    "sources": [{"type": kind, "channels": channels, "source": source}],
                    "sampling_rate": audio.sample_rate,
                    "num_samples": audio.num_frames,
                    "duration": audio.num_frames / audio.sample_rate,
                    "channel_ids": channels,
                }
            )
            channel: int | list[int] = 0 if audio.channels == 1 else channels
            custom = {k: v for k, v in record.fields().items() if k != "id"}
            segments = _segments(record) if record.parent_id is None else None
            spans = (
                [(s["start_ms"] / 1000, s["end_ms"] / 1000, s) for s in segments]
                if segments is not None
                else [(0.0, audio.num_frames / audio.sample_rate, None)]
            )
            for index, (start, end, segment) in enumerate(spans):
                extra = dict(custom)
                if segment is not None:
                    extra = {k: v for k, v in segment.items() if k not in ("start_ms", "end_ms")}
                supervisions.append(
                    {
                        "id": f"{recording_id}-{index}",
                        "recording_id": recording_id,
                        "start": start,
                        "duration": end - start,
                        "channel": channel,
                        "custom": json.loads(to_json(extra)),
                    }
                )
    _put(out, f"{folder('lhotse')}/{stem}-recordings.jsonl.gz", _jsonl_gz(recordings), files)
    _put(out, f"{folder('lhotse')}/{stem}-supervisions.jsonl.gz", _jsonl_gz(supervisions), files)
    return files


def _jsonl_gz(rows: Iterable[dict[str, Any]]) -> bytes:
    text = "".join(json.dumps(row) + "\n" for row in rows)
    return gzip.compress(text.encode(), mtime=0)


def _write_nemo(out: Location, batch: Sequence[Record], stem: str) -> list[str]:
    files: list[str] = []
    lines: list[str] = []
    for record in batch:
        written = _write_audio_files(out, "nemo", record, files)
        for sink, rel in written.items():
            audio = record.audio[sink]
            path = rel.split("/", 1)[1]  # relative to the folder of the manifest
            whole = audio.num_frames / audio.sample_rate
            fields = {k: v for k, v in record.fields().items() if not isinstance(v, list)}
            segments = _segments(record) if record.parent_id is None else None
            spans = (
                [(s["start_ms"] / 1000, s["end_ms"] / 1000, s) for s in segments]
                if segments is not None
                else [(0.0, whole, {})]
            )
            for start, end, segment in spans:
                line = {"audio_filepath": path, "offset": start, "duration": end - start}
                line.update(fields)
                line.update({k: v for k, v in segment.items() if k not in ("start_ms", "end_ms")})
                lines.append(json.dumps(line))
    _put(
        out,
        f"{folder('nemo')}/{stem}.jsonl",
        "".join(f"{line}\n" for line in lines).encode(),
        files,
    )
    return files


def joined_files() -> set[str]:
    """The joined manifests of every format, relative to OUTDIR."""
    return {f"{folder(fmt)}/{name}" for fmt, names in JOINED.items() for name in names}


def join_parts(out: Location, fmt: str, named: Iterable[str]) -> list[str]:
    """Join a format's per-batch manifests (those of ``named``) into its whole manifests.

    Gzip members joined end to end are one gzip stream, so parts are copied as
    they are, one at a time (never held together). Returns the files written,
    relative to OUTDIR.
    """
    written: list[str] = []
    prefix = f"{folder(fmt)}/part-"
    for target, suffix in JOINED.get(fmt, {}).items():
        parts = sorted(n for n in named if n.startswith(prefix) and n.endswith(suffix))
        rel = f"{folder(fmt)}/{target}"
        out.write_parts(out.inside(out.join(rel)), (out.join(p) for p in parts))
        written.append(rel)
    return written
