"""Where a job reads and writes: local paths and storage URIs, through pyarrow's filesystems.

``-i`` and ``-o`` take a local path or any URI that :mod:`pyarrow.fs` resolves:
``s3://bucket/prefix``, ``gs://...``, ``hdfs://...``, ``file:///...``. S3
follows the AWS conventions: ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY``
(and ``AWS_SESSION_TOKEN``), ``AWS_ENDPOINT_URL`` for S3-compatible servers,
``AWS_REGION`` (or ``AWS_DEFAULT_REGION``), and pyarrow's URI options
(``s3://bucket/prefix?endpoint_override=host:port&scheme=http``). The
credentials are resolved once, on the driver, and travel with the filesystem
object to the workers, so a cluster's nodes need no configuration of their own.

A :class:`Location` is a filesystem and a root path in it. Its :attr:`~Location.uri`
is the text shown to users: query options and user info that could hold a
secret are replaced by ``***`` (see :func:`redact`), so credentials never reach
logs, ``errors.jsonl``, ``metrics.json`` or the done log.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pyarrow as pa
import pyarrow.fs as pafs

from remotemedia_ray.errors import ConfigError, InputError

__all__ = ["Location", "atomic_replace", "is_uri", "redact", "resolve"]

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_SECRET_WORDS = ("key", "secret", "token", "password", "credential", "session", "signature")

CHECK_TIMEOUT_S = 20.0
"""How long the first request to a store may take before it counts as unreachable."""


def is_uri(spec: str | os.PathLike[str]) -> bool:
    """Whether ``spec`` names a storage URI (``scheme://...``) rather than a local path."""
    return bool(_SCHEME.match(os.fspath(spec)))


def redact(text: str) -> str:
    """``text`` with every secret of a URI in it replaced by ``***``.

    User info (``s3://KEY:SECRET@bucket``) and the values of query options whose
    name suggests a secret (``secret_key``, ``session_token``, ...) are hidden;
    the scheme, host, path and other options are kept so the URI stays useful.
    """

    def one(match: re.Match[str]) -> str:
        uri = match.group(0)
        try:
            parts = urlsplit(uri)
        except ValueError:
            return uri
        netloc = parts.netloc
        if "@" in netloc:
            netloc = "***@" + netloc.rsplit("@", 1)[1]
        query = urlencode(
            [
                (k, "***" if any(w in k.lower() for w in _SECRET_WORDS) else v)
                for k, v in parse_qsl(parts.query, keep_blank_values=True)
            ],
            safe="*:/",
        )
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))

    return re.sub(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"]+", one, text)


@dataclass(frozen=True)
class Location:
    """A folder (or file) in a filesystem: what ``-i`` or ``-o`` named.

    Attributes:
        fs: The pyarrow filesystem (picklable, credentials included).
        path: The root in ``fs`` (``bucket/prefix`` on S3, an absolute path locally).
        uri: How messages name it, without secrets (see :func:`redact`).
    """

    fs: pafs.FileSystem
    path: str
    uri: str

    @property
    def local(self) -> bool:
        """Whether this is the local filesystem (where renames are atomic and links exist)."""
        return isinstance(self.fs, pafs.LocalFileSystem)

    def join(self, *parts: str) -> str:
        """The path of ``parts`` under the root, in ``fs``."""
        tail = "/".join(p.strip("/") for p in parts if p)
        if not tail:
            return self.path
        return f"{self.path.rstrip('/')}/{tail}" if self.path else tail

    def display(self, path: str | None = None) -> str:
        """How messages name ``path`` (a path in ``fs``; the root when None)."""
        if path is None or path == self.path:
            return self.uri
        if self.local:
            return path
        rel = path[len(self.path) :].lstrip("/") if path.startswith(self.path) else path
        return f"{self.uri.split('?', 1)[0].rstrip('/')}/{rel}"

    def info(self, path: str | None = None) -> pafs.FileInfo:
        """The file info of ``path`` (the root when None)."""
        return self.fs.get_file_info(self.path if path is None else path)

    def read_bytes(self, path: str) -> bytes:
        """The whole content of a file, as stored (a ``.gz`` file is not decompressed)."""
        with self.fs.open_input_stream(path, compression=None) as handle:
            data: bytes = handle.read()
        return data

    def write_bytes(self, path: str, data: bytes | pa.Buffer) -> None:
        """Put ``data`` at ``path`` in one step: readers see the old file or the new one.

        ``data`` may be an Arrow buffer (a Parquet file just encoded); it is
        written as is (a ``.gz`` name does not compress it again).

        Locally the bytes go to a temporary name in the same folder that is
        synced and renamed over ``path``; an object store's PUT is atomic already
        (the object appears only once its upload completes), so it is written
        in place. Parent folders are created.
        """
        parent = path.rsplit("/", 1)[0] if "/" in path else ""
        if self.local:
            _write_local(path, lambda sink: sink.write(memoryview(data)))
            return
        if parent:
            self.fs.create_dir(parent, recursive=True)
        with self.fs.open_output_stream(path, compression=None) as handle:
            handle.write(data)

    def write_parts(self, path: str, sources: Iterable[str]) -> None:
        """Put the concatenation of files ``sources`` at ``path``, one at a time, atomically
        (locally a temporary file renamed; on a store one streamed upload)."""
        if self.local:

            def copy(sink: BinaryIO) -> None:
                for source in sources:
                    with open(source, "rb") as part:
                        shutil.copyfileobj(part, sink, 1 << 20)

            _write_local(path, copy)
            return
        try:
            with self.fs.open_output_stream(path, compression=None) as sink:
                for source in sources:
                    with self.fs.open_input_stream(source, compression=None) as part:
                        while block := part.read(1 << 20):
                            sink.write(block)
        except BaseException:
            # closing the stream completed the upload with what it had: take it back
            with contextlib.suppress(OSError):
                self.fs.delete_file(path)
            raise

    def inside(self, path: str) -> str:
        """``path``, checked to lie under the root (links followed, locally).

        Raises:
            ConfigError: ``path`` leads outside the root, naming where it leads.
        """
        if self.local:
            root = Path(self.path).resolve()
            resolved = Path(path).resolve()
            if resolved != root and root not in resolved.parents:
                raise ConfigError(
                    f"refusing to use {path}: it leads to {resolved}, outside the output "
                    f"directory {self.uri}"
                )
            return str(resolved)
        parts = path.split("/")
        if not path.startswith(self.path) or ".." in parts:
            raise ConfigError(f"refusing to use {path}: it is not inside {self.uri}")
        return path

    def delete(self, path: str) -> None:
        """Delete one file; a file already gone is fine."""
        with contextlib.suppress(FileNotFoundError):
            self.fs.delete_file(path)

    def list_files(self, path: str | None = None) -> list[pafs.FileInfo]:
        """Every file under ``path`` (the root when None), recursively; none when it is missing."""
        selector = pafs.FileSelector(self.path if path is None else path, recursive=True)
        selector.allow_not_found = True
        return [i for i in self.fs.get_file_info(selector) if i.type == pafs.FileType.File]


def _write_local(path: str, fill: Callable[[BinaryIO], object]) -> None:
    """Fill a temporary file beside the local ``path`` (a dot-name) and rename it over
    ``path``: readers see the old file or the whole new one. Parent folders are created."""
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}-{threading.get_ident()}")
    try:
        with open(tmp, "wb") as sink:
            fill(sink)
        atomic_replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_replace(tmp: Path, final: Path) -> None:
    """Rename the local file ``tmp`` over ``final`` durably (file, rename and folder synced)."""
    with open(tmp, "rb+") as handle:
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, final)
    try:
        fd = os.open(final.parent, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def resolve(spec: str | os.PathLike[str], *, role: Literal["input", "output"]) -> Location:
    """The :class:`Location` of a local path or storage URI, checked to be reachable.

    Args:
        spec: A local path or a URI (see the module docs).
        role: ``"input"`` or ``"output"``: which flag it came from, for messages
            and for the error class.

    Raises:
        InputError (for ``role="input"``) or ConfigError (``"output"``): an
            unknown scheme, a malformed URI, or a store that does not answer
            within :data:`CHECK_TIMEOUT_S` seconds or refuses the credentials.
    """
    error = InputError if role == "input" else ConfigError
    text = os.fspath(spec)
    if not is_uri(text) or text.startswith("file://"):
        path = urlsplit(text).path if text.startswith("file://") else text
        local = Path(path).expanduser()
        return Location(pafs.LocalFileSystem(), str(local.resolve()), str(local))
    shown = redact(text)
    fs, path = _from_uri(text, shown, error)
    location = Location(fs, path.rstrip("/"), shown)
    _check_reachable(location, error, role)
    return location


def _from_uri(text: str, shown: str, error: type[Exception]) -> tuple[pafs.FileSystem, str]:
    scheme = text.split("://", 1)[0].lower()
    if scheme == "s3":
        return _s3(text, shown, error)
    try:
        fs, path = pafs.FileSystem.from_uri(text)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError) as exc:
        raise error(f"cannot use {shown}: {redact(str(exc))}") from None
    except (OSError, pa.ArrowException) as exc:
        raise error(f"cannot reach {shown}: {redact(str(exc))}") from None
    return fs, path


_S3_OPTIONS: dict[str, Callable[[str], Any]] = {
    "region": str,
    "scheme": str,
    "endpoint_override": str,
    "access_key": str,
    "secret_key": str,
    "session_token": str,
    "anonymous": lambda v: v.lower() in ("1", "true", "yes"),
    "force_virtual_addressing": lambda v: v.lower() in ("1", "true", "yes"),
}


def _s3(text: str, shown: str, error: type[Exception]) -> tuple[pafs.FileSystem, str]:
    """An S3 filesystem with the AWS environment's settings, overridden by the URI's options.

    The credentials are read here and given explicitly, so they travel with the
    filesystem to workers whose environment lacks them.
    """
    parts = urlsplit(text)
    options: dict[str, Any] = {}
    env = os.environ
    if env.get("AWS_ACCESS_KEY_ID") and env.get("AWS_SECRET_ACCESS_KEY"):
        options["access_key"] = env["AWS_ACCESS_KEY_ID"]
        options["secret_key"] = env["AWS_SECRET_ACCESS_KEY"]
        if env.get("AWS_SESSION_TOKEN"):
            options["session_token"] = env["AWS_SESSION_TOKEN"]
    region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
    if region:
        options["region"] = region
    endpoint = env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL")
    if endpoint:
        url = urlsplit(endpoint if "://" in endpoint else f"https://{endpoint}")
        options["endpoint_override"] = url.netloc + url.path.rstrip("/")
        options["scheme"] = url.scheme or "https"
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        convert = _S3_OPTIONS.get(key)
        if convert is None:
            known = ", ".join(sorted(_S3_OPTIONS))
            raise error(f"cannot use {shown}: unknown S3 option {key!r} (known: {known})")
        options[key] = convert(value)
    if "endpoint_override" in options and "region" not in options:
        options["region"] = "us-east-1"  # S3-compatible servers ignore it; the SDK needs one
    options.setdefault("connect_timeout", 10.0)
    options.setdefault("request_timeout", 60.0)
    if not parts.netloc:
        raise error(f"cannot use {shown}: an S3 URI names a bucket (s3://bucket/prefix)")
    try:
        fs = pafs.S3FileSystem(**options)
    except (pa.ArrowException, ValueError, TypeError) as exc:
        raise error(f"cannot use {shown}: {redact(str(exc))}") from None
    path = parts.netloc + parts.path
    return fs, path.rstrip("/")


def _check_reachable(location: Location, error: type[Exception], role: str) -> None:
    """One request to the store, so an unreachable store or bad credentials fail at once."""
    outcome: list[BaseException | None] = []

    def probe() -> None:
        try:
            location.fs.get_file_info(location.path)
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    worker = threading.Thread(target=probe, name="remotemedia-storage-check", daemon=True)
    worker.start()
    worker.join(CHECK_TIMEOUT_S)
    if not outcome:
        raise error(
            f"{role} {location.uri} does not answer (no reply in {CHECK_TIMEOUT_S:g} s): "
            "check the endpoint (AWS_ENDPOINT_URL or ?endpoint_override=) and the network"
        )
    exc = outcome[0]
    if exc is not None:
        raise error(f"cannot reach {role} {location.uri}: {redact(str(exc))}") from None
