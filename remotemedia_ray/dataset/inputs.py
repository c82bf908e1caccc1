"""Listing the inputs of a dataset job: names only, as a stream; nothing is decoded.

An input specification is a directory (searched recursively for every
format libsndfile reads), a glob pattern, a text file with one path per line,
a single audio file, or a Parquet dataset with an audio column. Every input
becomes an :class:`InputItem` with a stable id: the file's path relative to
the input root (as it is named there, so a symbolic link keeps its own name),
a list file's entry as written, or the Parquet row's id.

Listing streams (:class:`Listing`): folders are walked one at a time in
sorted order and a list file is read line by line, so a job over a million
files starts at once and the driver never holds the whole corpus. To catch
an entry listed twice, a list file or a glob keeps a 64-bit digest of each id
it has seen (about 16 bytes an entry).

Each local file runs once, whatever names reach it: a link back up the tree
(a loop) is not followed, and a file met again under another name (a link to
it or to its folder, a hard link, another spelling in a list file) is known
by its device and inode (with its size and modification time).

An entry that cannot be used (a list file naming a missing file, a second
name with an id already taken, or a second name of a file already listed)
becomes an item with ``error`` set: the job records it in ``errors.jsonl``
and runs the rest.

A storage URI (``s3://bucket/prefix``, see :mod:`~remotemedia_ray.dataset.storage`)
is listed the same way through its filesystem: a prefix (recursively), a glob
(``s3://bucket/corpus/**/*.flac``), a list file of paths relative to it (or
URIs of the same store), or a Parquet dataset; its items carry the
filesystem, and the workers read the bytes themselves (a missing file is
found there, not while listing).
"""

from __future__ import annotations

import fnmatch
import glob as globlib
import hashlib
import os
import stat
from array import array
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path, PurePosixPath
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs

from remotemedia_ray.dataset.storage import Location, is_uri, redact, resolve
from remotemedia_ray.errors import InputError

__all__ = ["InputItem", "Listing", "audio_extensions", "list_inputs", "printable_name"]


@lru_cache(maxsize=1)
def audio_extensions() -> frozenset[str]:
    """File extensions (lower case, with the dot) of the audio formats the job reads.

    Those libsndfile reads, and the common ones only FFmpeg reads (see
    :mod:`remotemedia_ray.dataset.codecs`).
    """
    import soundfile as sf

    exts = {f".{name.lower()}" for name in sf.available_formats()} - {".raw"}
    return frozenset(exts | {".aif", ".oga", ".opus"} | _FFMPEG_EXTENSIONS)


_FFMPEG_EXTENSIONS = frozenset(
    {".m4a", ".m4b", ".mp4", ".aac", ".webm", ".weba", ".mka", ".mkv", ".wma", ".ac3", ".amr"}
)
"""Audio (and audio-in-video) containers that FFmpeg reads and libsndfile does not."""


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
        size: The file's size in bytes where the listing gives it (folders, globs and
            store prefixes), else None; the job sizes its batches by it.
    """

    item_id: str
    path: str
    row: int | None = None
    error: str | None = None
    fs: pafs.FileSystem | None = None
    size: int | None = None

    def to_value(self) -> dict[str, Any]:
        """The pipeline input that the job's reader node decodes."""
        value: dict[str, Any] = {"item_id": self.item_id, "path": self.path, "row": self.row}
        if self.fs is not None:
            value["fs"] = self.fs
        if self.size is not None:
            value["size"] = self.size
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


class Listing:
    """The items of an input specification, listed anew each time it is iterated.

    Args:
        spec: A directory, a glob pattern (``data/**/*.flac``), a ``.txt``/
            ``.lst`` file of paths (relative paths are relative to the file), a
            ``.parquet`` file or a directory of them with an ``audio`` column
            (a directory is a Parquet dataset only when it holds no audio
            files), an audio file, or the URI of one of these.
        exclude: A local directory whose files are never inputs (the job's OUTDIR).

    Items that cannot be read have ``error`` set (see the module docs).
    Iterating raises :class:`~remotemedia_ray.errors.InputError` when the
    specification names nothing that can be listed; :meth:`check` also
    when it matches no audio file.
    """

    def __init__(
        self, spec: str | os.PathLike[str], *, exclude: str | os.PathLike[str] | None = None
    ) -> None:
        self.spec = os.fspath(spec)
        self.exclude = Path(exclude).resolve() if exclude is not None else None
        self.location: Location | None = None
        if is_uri(self.spec) and not self.spec.startswith("file://"):
            self.location = resolve(self.spec, role="input")
            self.shown = self.location.uri
        else:
            self.path = (
                resolve(self.spec, role="input").path
                if self.spec.startswith("file://")
                else self.spec
            )
            self.shown = repr(self.path)

    def __iter__(self) -> Iterator[InputItem]:
        try:
            if self.location is not None:
                yield from _store_items(self.location)
            else:
                yield from _local_items(self.path, self.exclude)
        except OSError as exc:
            where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
            raise InputError(
                f"cannot list input {self.shown}: {exc.strerror or exc}{where}"
            ) from None

    def check(self) -> None:
        """Look for the first usable item (a glance for most inputs).

        Raises:
            InputError: nothing usable matches, naming the input and the first problem.
        """
        first_error = None
        for item in self:
            if item.error is None:
                return
            first_error = first_error or item.error
        detail = f": {first_error}" if first_error else ""
        raise InputError(f"input {self.shown} matches no audio files{detail}")


def list_inputs(
    spec: str | os.PathLike[str], *, exclude: str | os.PathLike[str] | None = None
) -> list[InputItem]:
    """Every item of an input specification at once (see :class:`Listing`).

    Raises:
        InputError: nothing usable matches, the spec names nothing readable,
            a Parquet input lacks its columns, or a Parquet dataset repeats an id.
    """
    items = list(Listing(spec, exclude=exclude))
    if not any(item.error is None for item in items):
        first = f": {items[0].error}" if items else ""
        shown = redact(os.fspath(spec))
        raise InputError(f"input {shown!r} matches no audio files{first}")
    return items


class _Seen:
    """Ids seen so far in a stream, as 64-bit digests in one open-addressing table.

    About 16 bytes an id (the table is kept at most half full) in one flat
    array that doubles when needed, so a million ids take 16 MB and no pile
    of small objects (a Python set of them would take about 70 MB).
    """

    def __init__(self) -> None:
        self._table = array("Q", [0]) * 1024
        self._count = 0

    def add(self, item_id: str) -> bool:
        """Remember ``item_id``; whether it was seen before."""
        raw = hashlib.blake2b(item_id.encode("utf-8", "surrogatepass"), digest_size=8).digest()
        key = int.from_bytes(raw, "little") or 1  # 0 marks an empty slot
        if self._insert(self._table, key):
            return True
        self._count += 1
        if 2 * self._count > len(self._table):
            bigger = array("Q", [0]) * (2 * len(self._table))
            for old in self._table:
                if old:
                    self._insert(bigger, old)
            self._table = bigger
        return False

    @staticmethod
    def _insert(table: array[int], key: int) -> bool:
        """Put ``key`` in ``table``; whether it was there already."""
        mask = len(table) - 1
        slot = key & mask
        while True:
            held = table[slot]
            if held == key:
                return True
            if not held:
                table[slot] = key
                return False
            slot = (slot + 1) & mask


def _repeat_error(where: str, number: int, item_id: str, first: int | None) -> str:
    earlier = f" (first on line {first})" if first is not None else ""
    return f"{where}:{number}: lists {item_id!r} again{earlier}"


def _local_items(text: str, exclude: Path | None) -> Iterator[InputItem]:
    path = Path(text)

    def wanted(file: Path) -> bool:
        if exclude is None:
            return True
        resolved = file.resolve()
        return resolved != exclude and exclude not in resolved.parents

    exts = audio_extensions()
    if any(ch in text for ch in "*?[") and not path.exists():
        yield from _glob_items(text, exts, wanted)
    elif path.is_dir():
        yield from _folder_items(path, exts, wanted)
    elif path.is_file() and path.suffix.lower() == ".parquet":
        yield from _parquet_items([str(path)])
    elif path.is_file() and path.suffix.lower() in (".txt", ".lst", ".list"):
        yield from _list_file_items(path)
    elif path.is_file() and path.suffix.lower() in exts:
        yield InputItem(printable_name(path.name), str(path.resolve()))
    else:
        raise InputError(
            f"input {text!r} is not a directory, glob, list file, Parquet dataset or audio file"
        )


def _folder_items(
    root: Path, exts: frozenset[str], wanted: Callable[[Path], bool]
) -> Iterator[InputItem]:
    """Audio files under ``root``, one folder at a time (files, then sub-folders, by
    name); a folder with no audio file at all is read as a Parquet dataset.

    Plain ``os`` calls on strings: a folder of a million files lists in seconds.
    """
    top = os.path.abspath(root)
    found_audio = False
    parquet: list[str] = []
    files = _SameFiles()
    for folder, _, names in _walk(top, lambda path, _: wanted(Path(path))):
        prefix = "" if folder == top else folder[len(top) + 1 :].replace(os.sep, "/") + "/"
        rendered: dict[str, str] = {}
        for name in sorted(names):
            full = os.path.join(folder, name)
            suffix = os.path.splitext(name)[1].lower()
            if suffix == ".parquet" and not found_audio:
                parquet.append(full)
            if suffix not in exts:
                continue
            status = _regular_file(full)
            if status is None:
                continue
            if os.path.islink(full) and not wanted(Path(full)):  # a link into OUTDIR
                continue
            found_audio = True
            item_id = printable_name(prefix + name)
            first = rendered.setdefault(item_id, full)
            error = None
            if first != full:  # two names that render alike (see printable_name)
                error = f"{full}: its id {item_id!r} is already the id of {first}"
            elif files.again(status):
                error = f"{full}: {_SAME_FILE}"
            yield InputItem(item_id, full, error=error, size=status.st_size)
    if not found_audio and parquet:
        yield from _parquet_items(sorted(parquet))


def _glob_items(
    pattern: str, exts: frozenset[str], wanted: Callable[[Path], bool]
) -> Iterator[InputItem]:
    root = Path(_glob_root(pattern))
    seen = _Seen()
    files = _SameFiles()
    for name in _glob_paths(pattern, lambda d: wanted(Path(d))):
        file = Path(name)
        if file.suffix.lower() not in exts or not wanted(file):
            continue
        status = _regular_file(name)
        if status is None:
            continue
        item_id = _relative_id(file, root)
        error = None
        if seen.add(item_id):
            error = f"{file}: its id {item_id!r} is already the id of another match"
        elif files.again(status):
            error = f"{file}: {_SAME_FILE}"
        yield InputItem(item_id, str(file.resolve()), error=error, size=status.st_size)


def _glob_paths(pattern: str, wanted: Callable[[str], bool]) -> Iterator[str]:
    """The paths matching a local glob, as ``glob.iglob(pattern, recursive=True)``
    names them, but with ``**`` walked by :func:`_walk`: glob follows every link
    to a folder, so a link back up the tree would make it list the same files
    without end. Only folders that can still match are entered."""
    root = _glob_root(pattern)
    parts = Path(pattern).parts[len(Path(root).parts) :]
    if "**" not in parts or os.curdir in parts or os.pardir in parts:
        yield from globlib.iglob(pattern, recursive=True)  # no recursion, so no loop
        return
    for folder, under, names in _walk(
        root, lambda path, rel: wanted(path) and _glob_match(parts, rel, partial=True)
    ):
        for name in sorted(names):
            if _glob_match(parts, [*under, name]):
                yield (
                    os.path.join(folder, name) if root != os.curdir else os.path.join(*under, name)
                )


def _glob_match(parts: Sequence[str], names: Sequence[str], *, partial: bool = False) -> bool:
    """Whether a path's ``names`` match a glob's ``parts`` as :mod:`glob` matches
    them: ``**`` is any number of folders, ``*`` and ``?`` stay within a name,
    and a name starting with ``.`` matches only a part that starts with one.
    With ``partial``, whether they begin a path that may match (a folder worth
    entering)."""
    if not names:
        return partial or all(part == "**" for part in parts)
    if not parts:
        return False
    head, rest = parts[0], parts[1:]
    if head == "**":
        for taken in range(len(names) + 1):
            if taken and names[taken - 1].startswith("."):
                return False
            if _glob_match(rest, names[taken:], partial=partial) and (rest or taken == len(names)):
                return True
        return False
    if names[0].startswith(".") and not head.startswith("."):
        return False
    return fnmatch.fnmatchcase(names[0], head) and _glob_match(rest, names[1:], partial=partial)


def _walk(
    top: str, enter: Callable[[str, list[str]], bool]
) -> Iterator[tuple[str, list[str], list[str]]]:
    """``(folder, its names under top, its file names)`` for ``top`` and every folder
    below it that ``enter(path, names under top)`` accepts, as
    ``os.walk(top, followlinks=True)`` walks them (sub-folders by name), except
    that a link to a folder the walk is already inside (a link back up the
    tree) is not entered: a loop. A folder reached by two names is walked under
    both (a name may be the one a glob matches); :class:`_SameFiles` then runs
    each file once."""
    inside = {top: frozenset({os.path.realpath(top)})}
    for folder, dirs, names in os.walk(top, followlinks=True):
        above = inside.pop(folder)
        rel = os.path.relpath(folder, top)
        under = [] if rel == os.curdir else rel.split(os.sep)
        keep = []
        for name in sorted(dirs):
            path = os.path.join(folder, name)
            real = os.path.realpath(path)
            if real not in above and enter(path, [*under, name]):
                inside[path] = above | {real}
                keep.append(name)
        dirs[:] = keep
        yield folder, under, names


_SAME_FILE = (
    "the same file as an item listed before it (through a link or another name); it runs once"
)


class _SameFiles:
    """The local files listed so far, by device and inode (as :class:`_Seen` digests)."""

    def __init__(self) -> None:
        self._seen = _Seen()

    def again(self, status: os.stat_result) -> bool:
        """Remember a file; whether one with its identity was listed before.

        The identity is the device and inode, with the size and modification
        time: a filesystem that makes inode numbers up (hashes that may
        collide) must not make two files one. One without inode numbers
        reports 0: nothing is known then.
        """
        if not status.st_ino:
            return False
        key = f"{status.st_dev}:{status.st_ino}:{status.st_size}:{status.st_mtime_ns}"
        return self._seen.add(key)


def _regular_file(path: str) -> os.stat_result | None:
    """The status of a regular file (following links), or None for anything else."""
    try:
        status = os.stat(path)
    except OSError:
        return None
    return status if stat.S_ISREG(status.st_mode) else None


def _store_items(location: Location) -> Iterator[InputItem]:
    """The items of a URI input (see the module docs); ids are paths under the root."""
    fs, root = location.fs, location.path
    exts = audio_extensions()
    info = location.info()
    if info.type == pafs.FileType.NotFound and any(ch in root for ch in "*?["):
        base = _glob_root(root)
        plain = root.replace("**/", "")
        for path, size in _store_walk(location, base):
            if _suffix(path) in exts and (
                fnmatch.fnmatchcase(path, root) or fnmatch.fnmatchcase(path, plain)
            ):
                yield InputItem(_store_id(path, base), path, fs=fs, size=size)
    elif info.type == pafs.FileType.Directory:
        found_audio = False
        parquet: list[str] = []
        for path, size in _store_walk(location, root):
            if _suffix(path) in exts:
                found_audio = True
                yield InputItem(_store_id(path, root), path, fs=fs, size=size)
            elif _suffix(path) == ".parquet" and not found_audio:
                parquet.append(path)
        if not found_audio and parquet:
            yield from _parquet_items(parquet, fs)
    elif info.type == pafs.FileType.File and _suffix(root) == ".parquet":
        yield from _parquet_items([root], fs)
    elif info.type == pafs.FileType.File and _suffix(root) in (".txt", ".lst", ".list"):
        yield from _store_list_items(location)
    elif info.type == pafs.FileType.File and _suffix(root) in exts:
        yield InputItem(printable_name(root.rsplit("/", 1)[-1]), root, fs=fs)
    elif info.type == pafs.FileType.NotFound:
        raise InputError(f"input {location.uri} does not exist")
    else:
        raise InputError(
            f"input {location.uri} is not a prefix, glob, list file, Parquet dataset or audio file"
        )


def _store_walk(location: Location, top: str) -> Iterator[tuple[str, int | None]]:
    """Every file under ``top`` with its size, one folder (common prefix) at a time,
    by name."""
    selector = pafs.FileSelector(top, recursive=False, allow_not_found=True)
    infos = sorted(location.fs.get_file_info(selector), key=lambda info: info.path)
    folders = []
    for info in infos:
        if info.type == pafs.FileType.File:
            yield info.path, info.size
        elif info.type == pafs.FileType.Directory:
            folders.append(info.path)
    for folder in folders:
        yield from _store_walk(location, folder)


def _suffix(path: str) -> str:
    name = path.rsplit("/", 1)[-1]
    return "." + name.rsplit(".", 1)[-1].lower() if "." in name else ""


def _store_id(path: str, root: str) -> str:
    prefix = root.rstrip("/") + "/"
    return printable_name(path[len(prefix) :] if path.startswith(prefix) else path)


def _store_list_items(location: Location) -> Iterator[InputItem]:
    """The entries of a list file in a store: paths relative to its folder, or URIs.

    Entries are not checked here (that would be a request each); a missing
    file is recorded when its worker tries to read it.
    """
    base = location.path.rsplit("/", 1)[0]
    scheme = f"{location.fs.type_name}://"
    seen = _Seen()
    with location.fs.open_input_stream(location.path) as handle:
        lines = _text_lines(handle, location.uri)
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
            if seen.add(item_id):
                error = _repeat_error(location.uri, number, item_id, None)
            yield InputItem(item_id, path, error=error, fs=location.fs)


def _text_lines(handle: Any, shown: str) -> Iterator[str]:
    """The lines of a UTF-8 text stream, read a block at a time."""
    import codecs

    decoder = codecs.getincrementaldecoder("utf-8")()
    pending = ""
    offset = 0
    while True:
        block = handle.read(1 << 20)
        try:
            pending += decoder.decode(block, final=not block)
        except UnicodeDecodeError as exc:
            raise InputError(
                f"list file {shown} is not UTF-8 text (byte {offset + exc.start}: {exc.reason})"
            ) from None
        offset += len(block)
        *complete, pending = pending.split("\n")
        yield from complete
        if not block:
            if pending:
                yield pending
            return


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


def _list_file_items(list_file: Path) -> Iterator[InputItem]:
    """One item per entry, read line by line; a missing file, or an entry listed
    again, is an item with ``error``. An entry's id is the entry as written
    (``./`` dropped): distinct for distinct entries, the same on every run."""
    base = str(list_file.parent)
    seen = _Seen()
    files = _SameFiles()
    repeats = 0
    with open(list_file, "rb") as handle:  # plain os calls: a million entries take seconds
        for number, line in enumerate(_text_lines(handle, str(list_file)), 1):
            text = line.strip()
            if not text or text.startswith("#"):
                continue
            item_id = _entry_id(text)
            file = text if text.startswith("/") else os.path.join(base, text)
            error = None
            status = None
            if seen.add(item_id):
                first = _first_line(list_file, item_id) if repeats < _NAMED_REPEATS else None
                repeats += 1
                error = _repeat_error(str(list_file), number, item_id, first)
            else:
                status = _regular_file(file)
                if status is None:
                    error = f"{list_file}:{number}: no such file {text!r}"
                elif files.again(status):
                    error = f"{list_file}:{number}: {text!r} is {_SAME_FILE}"
            if error is not None:
                yield InputItem(item_id, file, error=error)
            else:
                assert status is not None
                yield InputItem(item_id, os.path.realpath(file), size=status.st_size)


_NAMED_REPEATS = 100
"""Repeated entries of a list file whose first line is looked up (by reading it again)."""


def _first_line(list_file: Path, item_id: str) -> int | None:
    """The first line of ``list_file`` whose entry has ``item_id``."""
    with open(list_file, "rb") as handle:
        for number, line in enumerate(_text_lines(handle, str(list_file)), 1):
            text = line.strip()
            if text and not text.startswith("#") and _entry_id(text) == item_id:
                return number
    return None


def _entry_id(text: str) -> str:
    """The id of a list file's entry: the entry as written (``./`` dropped)."""
    if (
        "//" not in text
        and "/./" not in text
        and not text.startswith("./")
        and not text.endswith(("/", "/."))
    ):
        return text  # already in normal form (the common case, and fast)
    return PurePosixPath(Path(text).as_posix()).as_posix()


def _audio_layout(schema: pa.Schema) -> bool:
    """Whether a Parquet schema holds audio the job reads: samples with their rate, or
    HuggingFace's Audio layout (a struct of encoded ``bytes`` and a ``path``)."""
    if "audio" not in schema.names:
        return False
    audio = schema.field("audio").type
    if pa.types.is_struct(audio):
        return bool(audio.get_field_index("bytes") >= 0)
    return "sample_rate" in schema.names


def _parquet_items(files: list[str], fs: pafs.FileSystem | None = None) -> Iterator[InputItem]:
    """The rows of Parquet files, in file order (readers cache one file's table).

    Ids are the dataset's own (its ``id`` column, else ``file#row``), so a
    repeated one is the dataset's mistake: an InputError before any row is given.
    """
    import pyarrow.parquet as pq

    items: list[InputItem] = []
    seen: set[str] = set()
    for name in files:
        file = name if fs is not None else str(Path(name).resolve())
        try:
            meta = (
                pq.ParquetFile(fs.open_input_file(file)) if fs is not None else pq.ParquetFile(file)
            )
            schema = meta.schema_arrow
            names = schema.names
            if not _audio_layout(schema):
                raise InputError(
                    f"{file}: a Parquet input needs an audio column of samples with a "
                    "sample_rate column, or an audio column of encoded files "
                    "(HuggingFace's Audio layout: a struct with bytes)"
                )
            ids = (
                meta.read(columns=["id"]).column("id").to_pylist()
                if "id" in names
                else [f"{file}#{i}" for i in range(meta.metadata.num_rows)]
            )
        except (pa.ArrowException, OSError) as exc:
            raise InputError(f"cannot read Parquet input {file}: {exc}") from None
        for row, item_id in enumerate(ids):
            if str(item_id) in seen:
                raise InputError(f"the Parquet input lists {str(item_id)!r} twice")
            seen.add(str(item_id))
            items.append(InputItem(str(item_id), file, row, fs=fs))
    yield from items
