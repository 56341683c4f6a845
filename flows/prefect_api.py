"""Which Prefect API a process reports to, and where Prefect keeps its records.

Every entry point (``motionmasks run``, ``dvc repro``, ``dvc exp run``, a stage
run by hand) records its runs in the project's own store, ``.prefect/`` beside
``dvc.yaml``, so the project's dashboard shows them whoever started the run.
The API is, in order:

1. ``PREFECT_API_URL`` if the user (or the run that started this process) set it;
2. the dashboard this project started (``motionmasks dashboard``), if it answers;
   never whatever else listens on its port;
3. else the project's *run server*: a temporary server shared by the processes of
   a run. DVC starts each stage as its own process, one after another; the first
   starts the run server (detached), the next ones find it, and it stops once no
   process has used it for ``RUN_SERVER_IDLE_S`` seconds. A process holds a shared
   lock on ``.prefect/run-server.lease`` while it reports, so the server never stops
   under it; the lock goes with the process, even when it is killed.

Whatever the server, its address is exported, so the processes a run starts
(stage processes, pool workers) report to it and never start one of their own.
A temporary server's flow-run links would outlive it, so none are printed.

This module imports no Prefect at the top: a stage process calls
``keep_prefect_state_in`` before Prefect reads its settings.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

DASHBOARD_API = "http://127.0.0.1:4200/api"
RUN_SERVER_IDLE_S = 30.0  # longer than DVC's pause between two stages
RUN_SERVER_START_S = 120.0


def keep_prefect_state_in(root: Path | str) -> None:
    """Keep Prefect's state (its database of runs) with the project at ``root``, and never phone home.

    Only defaults: a ``PREFECT_HOME`` the user set wins. Call it before Prefect is imported.
    """
    os.environ.setdefault("PREFECT_HOME", str(Path(root).resolve() / ".prefect"))
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


def _api_healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url.rstrip('/')}/health", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


def _dashboard_record(root: Path) -> Path:
    return root / ".prefect" / "dashboard.json"


def _started(pid: int) -> float:
    import psutil

    return psutil.Process(pid).create_time()


def _write_server_record(path: Path, pid: int, url: str) -> None:
    """Note that process ``pid`` serves ``url``, with its start time: a pid reused after a
    crash or a reboot is then not taken for the server."""
    from motionmasks.formats import write_json

    write_json({"pid": pid, "started": _started(pid), "url": url}, path)


def _live_server(path: Path) -> str | None:
    """The API in the record at ``path`` if the process it names still runs (same start time) and answers."""
    import psutil

    with contextlib.suppress(OSError, ValueError, KeyError, TypeError, psutil.Error):
        record = json.loads(path.read_text())
        pid, url = int(record["pid"]), str(record["url"])
        if _started(pid) == float(record["started"]) and _api_healthy(url):  # psutil.NoSuchProcess when gone
            return url
    return None


def record_dashboard(root: Path, pid: int, url: str) -> None:
    """Note that this project's ``motionmasks dashboard`` (process ``pid``) serves ``url``."""
    _write_server_record(_dashboard_record(root), pid, url)


def forget_dashboard(root: Path, pid: int) -> None:
    record = _dashboard_record(root)
    with contextlib.suppress(FileNotFoundError, ValueError, KeyError, json.JSONDecodeError):
        if json.loads(record.read_text())["pid"] == pid:
            record.unlink()


def project_dashboard(root: Path) -> str | None:
    """The API of the dashboard this project started, if it still runs and answers; else None.

    Only a server this project started counts: whatever else listens on port
    4200 (another user's, another program) never receives this run's logs.
    """
    return _live_server(_dashboard_record(root))


def _run_server_files(root: Path) -> tuple[Path, Path, Path, Path]:
    """(record, lease, start lock, log) of the project's run server."""
    state = Path(root).resolve() / ".prefect"
    state.mkdir(parents=True, exist_ok=True)
    return (
        state / "run-server.json",
        state / "run-server.lease",
        state / "run-server.start.lock",
        state / "run-server.log",
    )


@contextlib.contextmanager
def run_server(root: Path, idle_s: float = RUN_SERVER_IDLE_S) -> Iterator[str]:
    """Yield the API of the project's run server, started if none runs; it stays up while we are inside."""
    record, lease_path, start_path, log = _run_server_files(root)
    with open(lease_path, "a+") as lease:
        fcntl.flock(lease, fcntl.LOCK_SH)  # held while we report; waits while a server stops
        with open(start_path, "a+") as start_lock:
            fcntl.flock(start_lock, fcntl.LOCK_EX)  # two processes starting at once start one server
            url = _live_server(record)
            if url is None:
                with open(log, "ab") as output:
                    server = subprocess.Popen(
                        [sys.executable, "-m", "flows.prefect_api", str(Path(root).resolve()), str(idle_s)],
                        cwd=Path(__file__).resolve().parents[1],  # where `flows` imports from
                        start_new_session=True,  # not killed with the stage that started it: it serves the next
                        stdin=subprocess.DEVNULL,
                        stdout=output,
                        stderr=output,
                    )
                deadline = time.monotonic() + RUN_SERVER_START_S
                while (url := _live_server(record)) is None:
                    if server.poll() is not None or time.monotonic() > deadline:
                        tail = log.read_text(errors="replace")[-2000:]
                        raise RuntimeError(f"the project's Prefect run server did not start; its log ({log}):\n{tail}")
                    time.sleep(0.2)
            fcntl.flock(start_lock, fcntl.LOCK_UN)
        yield url


def serve_run(root: Path, idle_s: float) -> None:
    """The run server's process: a Prefect server, recorded for the run's processes, until idle."""
    keep_prefect_state_in(root)
    from prefect.server.api.server import SubprocessASGIServer

    from flows.lifeline import reap_when_gone

    record, lease_path, _, _ = _run_server_files(root)
    server = SubprocessASGIServer()
    server.start()
    if server.server_process is not None:  # the server goes with this process, even when it is killed
        reap_when_gone(os.getpid(), server.server_process.pid)
    pid = os.getpid()
    _write_server_record(record, pid, server.api_url)
    print(f"run server {pid} serves {server.api_url} until idle for {idle_s:g} s", flush=True)
    idle_since: float | None = None
    try:
        with open(lease_path, "a+") as lease:
            while True:
                time.sleep(0.5)
                try:
                    fcntl.flock(lease, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:  # a process of a run is reporting
                    idle_since = None
                    continue
                now = time.monotonic()
                idle_since = idle_since or now
                if now - idle_since >= idle_s:  # forgotten under the lock: a newcomer waits, then starts anew
                    record.unlink(missing_ok=True)
                    print(f"run server {pid}: idle, stopping", flush=True)
                    return
                fcntl.flock(lease, fcntl.LOCK_UN)
    finally:
        server.stop()


@contextlib.contextmanager
def prefect_api(root: Path) -> Iterator[tuple[str, bool]]:
    """Choose the API this process and all it starts report to; yield (its URL, whether it is the run server).

    It is handed on in environment variables, which Prefect reads when it is imported:
    enter this before importing Prefect (threads Prefect starts later see only those).
    """
    if "prefect" in sys.modules and not os.environ.get("PREFECT_API_URL"):
        raise RuntimeError("choose the Prefect API before Prefect is imported")
    keep_prefect_state_in(root)
    url = os.environ.get("PREFECT_API_URL")  # named by the user, or by the run that started this process
    if not url:
        url = project_dashboard(root)  # this project's `motionmasks dashboard` is running: show the run there
    with contextlib.ExitStack() as stack:
        if url:
            exported = {"PREFECT_API_URL": url}
        else:  # no UI address: "View at" links would point at the run server after it is gone
            exported = {"PREFECT_API_URL": stack.enter_context(run_server(root)), "PREFECT_UI_URL": ""}
        previous = {name: os.environ.get(name) for name in exported}
        os.environ.update(exported)
        try:
            yield exported["PREFECT_API_URL"], url is None
        finally:
            for name, value in previous.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


_for_this_process = contextlib.ExitStack()


def report_to_project_api(root: Path | str) -> None:
    """For a stage process (started by DVC, or by hand): choose its API, for as long as it lives.

    Under ``motionmasks run`` the run's API is inherited. Under ``dvc repro`` the stages
    share the project's run server: this process keeps its lease until it exits.
    """
    try:
        _for_this_process.enter_context(prefect_api(Path(root)))
    except (OSError, RuntimeError) as exc:  # e.g. .prefect is not a writable folder: one line, not a traceback
        sys.exit(f"error: no Prefect API for this stage: {exc}")


if __name__ == "__main__":  # python -m flows.prefect_api ROOT IDLE_SECONDS: the run server (see run_server)
    serve_run(Path(sys.argv[1]), float(sys.argv[2]))
