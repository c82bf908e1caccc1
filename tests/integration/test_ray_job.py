"""Running as a Ray cluster user does: a submitted job, and joining a head with token auth.

Both tests start their own Ray heads with the ``ray`` CLI, each in a process
group of its own that is ended afterwards (not ``ray stop``, which would end
every Ray on the machine, the session's shared one included).
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path

import pytest

import remotemedia_ray as rm

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
BIN = Path(sys.executable).parent
RAY = str(BIN / "ray") if (BIN / "ray").exists() else "ray"

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _session_pids(session: int) -> list[int]:
    """Live processes of a session (Linux /proc)."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            state, _ppid, _pgrp, sid = stat.read_text().rsplit(")", 1)[1].split()[:4]
        except (OSError, IndexError, ValueError):
            continue
        if int(sid) == session and state != "Z":
            pids.append(int(stat.parent.name))
    return pids


def _expected_lines() -> list[str]:
    """What the job's driver prints per file, computed here with the local runtime."""
    sys.path.insert(0, str(EXAMPLES))
    try:
        from local_demo import load
        from ray_job_entrypoint import describe
    finally:
        sys.path.remove(str(EXAMPLES))
    files = sorted((EXAMPLES / "audio").glob("*.*"))
    lines = []
    with rm.Pipeline(EXAMPLES / "speech_prep.json", runtime="local") as pipeline:
        for result in pipeline.map((load(f) for f in files), ids=(f.name for f in files)):
            lines.append(result.item_id)
            lines += [f"  {sink}: {describe(out)}" for sink, out in sorted(result.items())]
    return lines


def test_example_ray_job_runs_speech_prep_on_a_local_head() -> None:
    expected = _expected_lines()
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "ray_job.py")],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=300,
    )
    out = done.stdout
    assert done.returncode == 0, out[-6000:]
    lines = out.splitlines()
    # The driver joined the head it was submitted to (RAY_ADDRESS set by Ray for the job).
    gcs_port = re.search(r"ray start --head .*--port=(\d+)", out)
    joined = re.search(r"^RAY_ADDRESS=\S+:(\d+)$", out, re.MULTILINE)
    assert gcs_port and joined and joined.group(1) == gcs_port.group(1), out[-6000:]
    # Same outputs as the in-process reference, every file exactly once.
    start = lines.index(expected[0])
    assert lines[start : start + len(expected)] == expected
    assert "done: 3 item(s), 0 failure(s)" in lines
    assert re.search(r"Pipeline completed in [\d.]+ms \(4 nodes", out)
    assert re.search(r"Job 'remotemedia-\w+' succeeded", out)
    assert lines[-1] == "Ray head stopped"
    # Nothing of the head is left running: no process of the session it was started in.
    session = re.search(r"Ray head up \(session (\d+)\)", out)
    assert session is not None
    assert _session_pids(int(session.group(1))) == []


# -- joining a head that requires a token ---------------------------------------------


def _env_without_ray_auth(home: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("RAY_AUTH_") and k not in ("RAY_ADDRESS", "HOME")
    }
    env["HOME"] = str(home)
    return env


@pytest.fixture
def token_auth_head(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A head with Ray's default auth and a token in its HOME; yields (address, token)."""
    home = tmp_path / "head-home"
    (home / ".ray").mkdir(parents=True)
    token = secrets.token_hex(32)
    (home / ".ray" / "auth_token").write_text(token)
    port = _free_port()
    temp_dir = tempfile.mkdtemp(prefix="rmauth-", dir="/tmp")  # short: Ray puts sockets here
    command = [
        RAY, "start", "--head", "--block", "--disable-usage-stats", "--num-cpus=1",
        f"--port={port}", "--include-dashboard=false",
        f"--ray-client-server-port={_free_port()}",
        f"--dashboard-agent-listen-port={_free_port()}",
        f"--temp-dir={temp_dir}",
    ]  # fmt: skip
    log = open(tmp_path / "head.log", "wb")  # noqa: SIM115 - closed in teardown
    head = subprocess.Popen(
        command,
        env=_env_without_ray_auth(home),  # RAY_AUTH_MODE unset: token auth, as the token exists
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert head.poll() is None, (tmp_path / "head.log").read_text()
            assert time.monotonic() < deadline, "the head did not come up"
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.5)
        yield f"127.0.0.1:{port}", token
    finally:
        _end_session(head)
        log.close()
        shutil.rmtree(temp_dir, ignore_errors=True)


def _end_session(leader: subprocess.Popen[bytes]) -> None:
    """End every process of the session ``ray start --block`` was started in.

    Ray's workers set process groups of their own, so a killpg would miss them.
    """
    for sig, wait_s in ((signal.SIGTERM, 20.0), (signal.SIGKILL, 5.0)):
        leader.poll()
        pids = _session_pids(leader.pid)
        if not pids and leader.returncode is not None:
            break
        for pid in pids:
            with suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            leader.poll()
            if not _session_pids(leader.pid) and leader.returncode is not None:
                break
            time.sleep(0.2)
    leader.wait()
    assert _session_pids(leader.pid) == []


_JOIN = textwrap.dedent(
    """
    import sys, time
    import remotemedia_ray as rm
    start = time.monotonic()
    try:
        with rm.Pipeline({manifest!r}, runtime="ray", address=sys.argv[1]) as p:
            print("RESULT", p.run(3.0))
    except rm.RemoteMediaError as exc:
        print("ERROR", type(exc).__name__, exc)
        print("SECONDS", round(time.monotonic() - start, 1))
        sys.exit(3)
    """
).format(manifest=str(EXAMPLES / "gain.json"))


def test_joining_a_token_auth_head_without_a_token_fails_clearly(
    token_auth_head: tuple[str, str], tmp_path: Path
) -> None:
    address, token = token_auth_head
    empty_home = tmp_path / "driver-home"
    empty_home.mkdir()

    # Control: with the token the same driver joins and runs.
    # (RAY_AUTH_MODE=token is needed too: Ray never turns auth on by itself when a
    # driver names the address to join.)
    with_token = _env_without_ray_auth(empty_home) | {
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": token,
    }
    ok = subprocess.run(
        [sys.executable, "-c", _JOIN, address],
        env=with_token,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ok.returncode == 0 and "RESULT {'offset': 10.0}" in ok.stdout, ok.stdout + ok.stderr

    # No token anywhere (RAY_AUTH_MODE unset, empty HOME): a clear error, not a hang.
    denied = subprocess.run(
        [sys.executable, "-c", _JOIN, address],
        env=_env_without_ray_auth(empty_home),
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert denied.returncode == 3, denied.stdout + denied.stderr[-3000:]
    error = next(line for line in denied.stdout.splitlines() if line.startswith("ERROR"))
    assert error.startswith("ERROR RemoteMediaError")
    assert "token" in error.lower(), error
    assert "RAY_AUTH_TOKEN" in error, error
