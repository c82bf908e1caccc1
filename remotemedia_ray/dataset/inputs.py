"""Listing the inputs of a dataset job: names and sizes only, nothing is decoded.

An input specification is a directory (searched recursively for every
format libsndfile reads), a glob pattern, a text file with one path per line,
a single audio file, or a Parquet dataset with an audio column. Every input
becomes an :class:`InputItem` with a stable id: the file's path relative to
the input root (as it is named there, so a symbolic link keeps its own name),
or the Parquet row's id.

An entry that cannot be used (a list file naming a missing file, or a second
name with an id already taken) becomes an item with ``error`` set: the job
records it in ``errors.jsonl`` and runs the rest.

A storage URI (``s3://bucket/prefix``, see :mod:`~remotemedia_ray.dataset.storage`)
is listed the same way through its filesystem: a prefix (recursively), a glob
(``s3://bucket/corpus/**/*.flac``), a list file of paths relative to it (or
URIs of the same store), or a Parquet dataset; its items carry the
filesystem, and the workers read the bytes themselves.
"""

from __future__ import annotations

import fnmatch
import glob as globlib
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path, PurePosixPath
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs

from remotemedia_ray.dataset.storage import Location, is_uri, resolve
from remotemedia_ray.errors import InputError

__all__ = ["InputItem", "audio_extensions", "list_inputs", "printable_name"]


@lru_cache(maxsize=1)
def audio_extensions() -> frozenset[str]:
    """File extensions (lower case, with the dot) of the formats libsndfile reads."""
    import soundfile as sf

    exts = {f".{name.lower()}" for name in sf.available_formats()} - {".raw"}
    return frozenset(exts | {".aif", ".oga", ".opus"})


@dataclass(frozen=True)
class InputItem:
    """One input: a file, or one row of a Parquet dataset.

    Attributes:
        item_id: Stable id: the path relative to the input root (POSIX form,
            bytes that are not UTF-8 written as ``\\xNN``), or the Parquet row's id.
        path: The file to read.
        row: The row in a Parquet file, or None for an audio file.
        error: Why this entry cannot be read (it is recorded, not run), or None.
        fs: The filesystem of ``path`` for a storage URI input, None for a local file.
    """

    item_id: str
    path: str
    row: int | None = None
    error: str | None = None
    fs: pafs.FileSystem | None = None

    def to_value(self) -> dict[str, Any]:
        """The pipeline input that the job's reader node decodes."""
        value: dict[str, Any] = {"item_id": self.item_id, "path": self.path, "row": self.row}
        if self.fs is not None:
            value["fs"] = self.fs
        return value

    @property
    def shown(self) -> str:
        """How messages name the input (a URI without secrets for a store)."""
        if self.fs is None:
            return printable_name(self.path)
        return f"{self.fs.type_name}://{printable_name(self.path)}"


def printable_name(name: str) -> str:
    """``name`` as valid text: bytes of a file name that are not UTF-8 become ``\\xNN``.

    Python gives such bytes as lone surrogates (``surrogateescape``), which
    neither Arrow nor UTF-8 files accept; ``b"bad\\xff.wav"`` becomes the id
    ``bad\\xff.wav`` (with a literal backslash), the same on every run.
    """
    try:
        raw = name.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a lone surrogate that no file name decodes to
        return name.encode("utf-8", "backslashreplace").decode("utf-8")
    return raw.decode("utf-8", "backslashreplace")


def list_inputs(
    spec: str | os.PathLike[str], *, exclude: str | os.PathLike[str] | None = None
) -> list[InputItem]:
    """The items of an input specification, sorted by id.

    Args:
        spec: A directory, a glob pattern (``data/**/*.flac``), a ``.txt``/
            ``.lst`` file of paths (relative paths are relative to the file), or
            a ``.parquet`` file or a directory of them with an ``audio`` column
            (a directory is a Parquet dataset only when it holds no audio files).
        exclude: A directory whose files are never inputs (the job's OUTDIR).

    Items that cannot be read have ``error`` set (see the module docs): a list
    file entry naming a missing file, or naming a file again under an id
    already taken.

    Raises:
        InputError: nothing usable matches, the spec names nothing readable,
            a Parquet input lacks its columns, or a Parquet dataset repeats an id.
    """
    text = os.fspath(spec)
    if is_uri(text) and not text.startswith("file://"):
        location = resolve(text, role="input")
        try:
            items = _list_store(location)
        except OSError as exc:
            raise InputError(f"cannot list input {location.uri}: {exc}") from None
        if not any(item.error is None for item in items):
            first = f": {items[0].error}" if items else ""
            raise InputError(f"input {location.uri} matches no audio files{first}")
        return items
    if text.startswith("file://"):
        text = resolve(text, role="input").path
    try:
        items = _list_inputs(text, exclude)
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename and exc.filename != text else ""
        raise InputError(f"cannot list input {text!r}: {exc.strerror or exc}{where}") from None
    if not any(item.error is None for item in items):
        first = f": {items[0].error}" if items else ""
        raise InputError(f"input {text!r} matches no audio files{first}")
    return items


def _list_inputs(text: str, exclude: str | os.PathLike[str] | None) -> list[InputItem]:
    path = Path(text)
    skip = Path(exclude).resolve() if exclude is not None else None

    def wanted(file: Path) -> bool:
        resolved = file.resolve()
        return skip is None or (resolved != skip and skip not in resolved.parents)

    exts = audio_extensions()
    if any(ch in text for ch in "*?[") and not path.exists():
        root = Path(_glob_root(text))
        files = [
            Path(p)
            for p in globlib.glob(text, recursive=True)
            if Path(p).is_file() and Path(p).suffix.lower() in exts and wanted(Path(p))
        ]
        items = [InputItem(_relative_id(f, root), str(f.resolve())) for f in files]
    elif path.is_dir():
        files = [f for f in path.rglob("*") if f.is_file() and f.suffix.lower() in exts]
        files = [f for f in files if wanted(f)]
        if files:
            items = [InputItem(_relative_id(f, path), str(f.resolve())) for f in files]
        else:
            parquet = sorted(f for f in path.rglob("*.parquet") if wanted(f))
            items = _parquet_items(parquet) if parquet else []
    elif path.is_file() and path.suffix.lower() == ".parquet":
        items = _parquet_items([path])
    elif path.is_file() and path.suffix.lower() in (".txt", ".lst", ".list"):
        items = _list_file_items(path)
    elif path.is_file() and path.suffix.lower() in exts:
        items = [InputItem(printable_name(path.name), str(path.resolve()))]
    else:
        raise InputError(
            f"input {text!r} is not a directory, glob, list file, Parquet dataset or audio file"
        )
    if any(item.row is not None for item in items):
        # Parquet rows stay in file order (readers cache one file's table); ids are the
        # dataset's own, so a repeated one is the dataset's mistake.
        _check_unique(items, text)
        return items
    items.sort(key=lambda item: (item.item_id, item.path))
    return _one_item_per_id(items)


def _list_store(location: Location) -> list[InputItem]:
    """The items of a URI input (see the module docs); ids are paths under the root."""
    fs, root = location.fs, location.path
    exts = audio_extensions()
    info = location.info()
    if info.type == pafs.FileType.NotFound and any(ch in root for ch in "*?["):
        base = _glob_root(root)
        files = [
            f
            for f in location.list_files(base)
            if _suffix(f.path) in exts
            and (
                fnmatch.fnmatchcase(f.path, root)
                or fnmatch.fnmatchcase(f.path, root.replace("**/", ""))
            )
        ]
        items = [InputItem(_store_id(f.path, base), f.path, fs=fs) for f in files]
    elif info.type == pafs.FileType.Directory:
        files = location.list_files()
        audio = [f for f in files if _suffix(f.path) in exts]
        if audio:
            items = [InputItem(_store_id(f.path, root), f.path, fs=fs) for f in audio]
        else:
            parquet = sorted(f.path for f in files if _suffix(f.path) == ".parquet")
            items = _parquet_items(parquet, fs) if parquet else []
    elif info.type == pafs.FileType.File and _suffix(root) == ".parquet":
        items = _parquet_items([root], fs)
    elif info.type == pafs.FileType.File and _suffix(root) in (".txt", ".lst", ".list"):
        items = _store_list_items(location)
    elif info.type == pafs.FileType.File and _suffix(root) in exts:
        items = [InputItem(printable_name(root.rsplit("/", 1)[-1]), root, fs=fs)]
    elif info.type == pafs.FileType.NotFound:
        raise InputError(f"input {location.uri} does not exist")
    else:
        raise InputError(
            f"input {location.uri} is not a prefix, glob, list file, Parquet dataset or audio file"
        )
    if any(item.row is not None for item in items):
        _check_unique(items, location.uri)
        return items
    items.sort(key=lambda item: (item.item_id, item.path))
    return _one_item_per_id(items)


def _suffix(path: str) -> str:
    name = path.rsplit("/", 1)[-1]
    return "." + name.rsplit(".", 1)[-1].lower() if "." in name else ""


def _store_id(path: str, root: str) -> str:
    prefix = root.rstrip("/") + "/"
    return printable_name(path[len(prefix) :] if path.startswith(prefix) else path)


def _store_list_items(location: Location) -> list[InputItem]:
    """The entries of a list file in a store: paths relative to its folder, or URIs.

    Entries are not checked here (that would be a request each); a missing
    file is recorded when its worker tries to read it.
    """
    try:
        lines = location.read_bytes(location.path).decode("utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise InputError(
            f"list file {location.uri} is not UTF-8 text (byte {exc.start}: {exc.reason})"
        ) from None
    base = location.path.rsplit("/", 1)[0]
    scheme = f"{location.fs.type_name}://"
    items: list[InputItem] = []
    first_line: dict[str, int] = {}
    for number, line in enumerate(lines, 1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        error = None
        if text.startswith(scheme):
            path = text[len(scheme) :].split("?", 1)[0]
            item_id = path
        elif is_uri(text) or text.startswith("/"):
            path, item_id = text, text
            error = f"{location.uri}:{number}: {text!r} is not in this store ({scheme}...)"
        else:
            item_id = PurePosixPath(text).as_posix()
            path = f"{base}/{item_id}"
        if item_id in first_line:
            first = first_line[item_id]
            error = f"{location.uri}:{number}: lists {item_id!r} again (first on line {first})"
        first_line.setdefault(item_id, number)
        items.append(InputItem(item_id, path, error=error, fs=location.fs))
    return items


def _glob_root(pattern: str) -> str:
    parts = []
    for part in Path(pattern).parts:
        if any(ch in part for ch in "*?["):
            break
        parts.append(part)
    return str(Path(*parts)) if parts else "."


def _relative_id(file: Path, root: Path) -> str:
    """``file``'s path under ``root`` as named there (a link keeps its name), as text."""
    try:
        rel = file.relative_to(root)
    except ValueError:
        try:
            rel = file.resolve().relative_to(root.resolve())
        except ValueError:
            rel = Path(file.name)
    return printable_name(rel.as_posix())


def _list_file_items(list_file: Path) -> list[InputItem]:
    """One item per entry; a missing file, or a repeated entry, is an item with ``error``.

    A relative entry's id is the entry as written (``./`` dropped); an absolute
    entry's id is its file name, or its whole path where two entries share the name.
    """
    base = list_file.parent
    try:
        lines = list_file.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise InputError(
            f"list file {list_file} is not UTF-8 text (byte {exc.start}: {exc.reason})"
        ) from None
    entries: list[tuple[int, str, Path]] = []
    for number, line in enumerate(lines, 1):
        text = line.strip()
        if text and not text.startswith("#"):
            entries.append((number, text, Path(text)))
    names = [
        path.name if path.is_absolute() else PurePosixPath(path.as_posix()).as_posix()
        for _, _, path in entries
    ]
    taken: dict[str, int] = {}
    for name in names:
        taken[name] = taken.get(name, 0) + 1
    items: list[InputItem] = []
    first_line: dict[str, int] = {}
    for (number, text, entry), name in zip(entries, names, strict=True):
        item_id = entry.as_posix() if entry.is_absolute() and taken[name] > 1 else name
        file = entry if entry.is_absolute() else base / entry
        error = None
        if item_id in first_line:
            first = first_line[item_id]
            error = f"{list_file}:{number}: lists {item_id!r} again (first on line {first})"
        elif not file.is_file():
            error = f"{list_file}:{number}: no such file {text!r}"
        first_line.setdefault(item_id, number)
        items.append(InputItem(item_id, str(file.resolve()), error=error))
    return items


def _one_item_per_id(items: list[InputItem]) -> list[InputItem]:
    """Items sorted by id; an id seen before marks the later item as an error.

    Ids are distinct by construction except where two names render alike
    (``b"a\\xff"`` and a file really named ``a\\xff``): the first keeps the id.
    """
    seen: dict[str, InputItem] = {}
    out: list[InputItem] = []
    for item in items:
        first = seen.get(item.item_id)
        if first is None:
            seen[item.item_id] = item
        elif item.error is None:
            error = f"{item.path}: its id {item.item_id!r} is already the id of {first.path}"
            item = InputItem(item.item_id, item.path, item.row, error)
        out.append(item)
    return out


def _parquet_items(
    files: list[Path] | list[str], fs: pafs.FileSystem | None = None
) -> list[InputItem]:
    import pyarrow.parquet as pq

    items: list[InputItem] = []
    for name in files:
        file = str(name) if fs is not None else str(Path(name).resolve())
        try:
            meta = (
                pq.ParquetFile(fs.open_input_file(file)) if fs is not None else pq.ParquetFile(file)
            )
            names = meta.schema_arrow.names
            if "audio" not in names or "sample_rate" not in names:
                raise InputError(f"{file}: a Parquet input needs audio and sample_rate columns")
            ids = (
                meta.read(columns=["id"]).column("id").to_pylist()
                if "id" in names
                else [f"{file}#{i}" for i in range(meta.metadata.num_rows)]
            )
        except (pa.ArrowException, OSError) as exc:
            raise InputError(f"cannot read Parquet input {file}: {exc}") from None
        items.extend(InputItem(str(i), file, row, fs=fs) for row, i in enumerate(ids))
    return items


def _check_unique(items: list[InputItem], spec: str) -> None:
    seen: set[str] = set()
    for item in items:
        if item.item_id in seen:
            raise InputError(f"input {spec!r} lists {item.item_id!r} twice")
        seen.add(item.item_id)
