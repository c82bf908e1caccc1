"""Run a manifest as a Ray job on a local head, the way a cluster user would.

    python examples/ray_job.py [MANIFEST] [--node-runtime auto|cpython|rust_native]

1. starts a local Ray head (``ray start --head``, 2 CPUs, dashboard on: the
   dashboard serves the Jobs API, so Ray needs its ``ray[default]`` extras);
2. submits ``ray_job_entrypoint.py`` with ``ray job submit --working-dir``;
   the job's driver joins the cluster through ``RAY_ADDRESS`` and runs the
   manifest (default ``speech_prep.json``) over ``examples/audio/*`` with
   ``rm.Pipeline(..., runtime="ray")``;
3. waits for the job while printing its logs, and stops the head.

Token authentication is turned off for this throw-away local head
(``RAY_AUTH_MODE=disabled``); a real cluster keeps it on and gives its drivers
the token. The head is stopped by ending the processes of the session it was
started in (``ray start --block`` in a new session), not with ``ray stop``,
which would end every Ray on this machine.
Exit status: the job's (0 when it succeeded).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
RAY = str(BIN / "ray") if (BIN / "ray").exists() else "ray"


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def head_env() -> dict[str, str]:
    """Environment of the head (and so of the job): no token auth, this Python first."""
    env = dict(os.environ)
    env["RAY_AUTH_MODE"] = "disabled"
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env.pop("RAY_ADDRESS", None)
    return env


def _wait_for_dashboard(url: str, head: subprocess.Popen[bytes], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if head.poll() is not None:
            raise RuntimeError(f"`ray start --head` exited with status {head.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/api/version", timeout=2) as reply:
                if reply.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"the Ray dashboard did not answer at {url} within {timeout_s:g}s")


@contextmanager
def local_head(num_cpus: int = 2, timeout_s: float = 120.0) -> Iterator[str]:
    """A local Ray head with its dashboard; yields the Jobs API address.

    ``ray start --block`` runs in a new session; on exit every process of that
    session (Ray's daemons and the workers they started) is ended: SIGTERM,
    then SIGKILL after a grace period.
    """
    if importlib.util.find_spec("aiohttp") is None:
        raise RuntimeError(
            "`ray job submit` needs the Ray dashboard, which needs Ray's extras: "
            "pip install 'ray[default]'"
        )
    temp_dir = tempfile.mkdtemp(prefix="rmjob-", dir="/tmp")  # short: Ray puts sockets here
    dashboard_port = free_port()
    command = [
        RAY, "start", "--head", "--block", "--disable-usage-stats",
        f"--num-cpus={num_cpus}",
        f"--port={free_port()}",
        "--include-dashboard=true",
        "--dashboard-host=127.0.0.1",
        f"--dashboard-port={dashboard_port}",
        f"--dashboard-agent-listen-port={free_port()}",
        f"--ray-client-server-port={free_port()}",
        f"--temp-dir={temp_dir}",
    ]  # fmt: skip
    url = f"http://127.0.0.1:{dashboard_port}"
    log_path = Path(temp_dir) / "ray_start.log"
    print(f"$ {' '.join(command)}", flush=True)
    with open(log_path, "wb") as log:
        head = subprocess.Popen(
            command, env=head_env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        try:
            _wait_for_dashboard(url, head, timeout_s)
        except RuntimeError:
            sys.stdout.write(log_path.read_text(errors="replace")[-4000:])
            raise
        print(f"Ray head up (session {head.pid}); Jobs API at {url}", flush=True)
        yield url
    finally:
        end_session(head)
        shutil.rmtree(temp_dir, ignore_errors=True)
        print("Ray head stopped", flush=True)


def session_pids(session: int) -> list[int]:
    """Live processes of a session (Linux ``/proc``; empty where there is none)."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            state, _ppid, _pgrp, sid = stat.read_text().rsplit(")", 1)[1].split()[:4]
        except (OSError, IndexError, ValueError):
            continue
        if int(sid) == session and state != "Z":
            pids.append(int(stat.parent.name))
    return pids


def end_session(leader: subprocess.Popen[bytes], grace_s: float = 15.0) -> None:
    """End every process of the session ``leader`` started: SIGTERM, then SIGKILL."""
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        leader.poll()  # reap the leader once it has exited
        pids = session_pids(leader.pid)
        if not pids and leader.returncode is not None:
            break
        if Path("/proc").is_dir():
            for pid in pids:
                with suppress(ProcessLookupError):
                    os.kill(pid, sig)
        else:  # no /proc: Ray's workers are in process groups of their own; reach the rest
            with suppress(ProcessLookupError):
                os.killpg(leader.pid, sig)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            leader.poll()
            if not session_pids(leader.pid) and leader.returncode is not None:
                break
            time.sleep(0.2)
    leader.wait()


def stage_working_dir(manifest: Path, into: Path) -> str:
    """Copy what the job needs (driver script, manifest, audio) into ``into``."""
    for name in ("ray_job_entrypoint.py", "local_demo.py"):
        shutil.copy2(HERE / name, into / name)
    shutil.copy2(manifest, into / manifest.name)
    shutil.copytree(HERE / "audio", into / "audio")
    return manifest.name


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("manifest", nargs="?", type=Path, default=HERE / "speech_prep.json")
    parser.add_argument("--node-runtime", choices=["auto", "cpython", "rust_native"])
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="rmjob-wd-") as working_dir, local_head() as url:
        manifest = stage_working_dir(args.manifest.resolve(), Path(working_dir))
        entrypoint = ["python", "ray_job_entrypoint.py", manifest]
        if args.node_runtime:
            entrypoint += ["--node-runtime", args.node_runtime]
        submission_id = f"remotemedia-{uuid.uuid4().hex[:8]}"
        command = [
            RAY, "job", "submit", "--address", url, "--submission-id", submission_id,
            "--working-dir", working_dir, "--", *entrypoint,
        ]  # fmt: skip
        print(f"$ {' '.join(command)}", flush=True)
        # Without --no-wait, `ray job submit` streams the job's logs until it ends
        # and exits 0 if it succeeded, 1 if it failed.
        job = subprocess.run(command, env=head_env(), check=False)
        print(f"job {submission_id}: {'SUCCEEDED' if job.returncode == 0 else 'FAILED'}")
        return job.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
