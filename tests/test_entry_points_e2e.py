"""Every entry point reports to one Prefect API per process tree and records into the project's
own store (``.prefect/``): here `dvc repro` and `dvc exp run -S`, started with no Prefect settings
at all, as a team that knows DVC would (``motionmasks run`` is covered by test_pipeline_e2e.py).
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import project_copy

pytestmark = pytest.mark.e2e

TINY = {
    "corpus": {"synthetic_videos": 2, "shots_per_video": [1, 2], "shot_frames": [14, 20], "sample_clips": []},
    "runtime": {"workers": 2, "batch_size": 1},
}


def _run(cmd: list[str], cwd: Path, home: Path) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}  # nothing named: the defaults
    env.update(HOME=str(home), PATH=f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}")
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{cmd} failed:\n{output[-4000:]}"
    return output


def _flow_runs(root: Path) -> dict[str, list[str]]:
    """{flow name: [state of each of its runs]} in the project's Prefect database."""
    with sqlite3.connect(root / ".prefect" / "prefect.db") as db:
        rows = db.execute("SELECT f.name, r.state_type FROM flow_run r JOIN flow f ON r.flow_id = f.id").fetchall()
    runs: dict[str, list[str]] = {}
    for name, state in rows:
        runs.setdefault(name, []).append(state)
    return runs


def _servers_started(root: Path) -> int:
    return (root / ".prefect" / "run-server.log").read_text().count(" serves http")


def test_dvc_repro_and_exp_run_share_one_server_and_record_in_the_project(tmp_path):
    root = project_copy(tmp_path / "project", TINY)
    home = tmp_path / "home"
    home.mkdir()
    dvc = [sys.executable, "-m", "dvc"]

    out = _run([*dvc, "repro", "shots"], root, home)
    assert [line for line in out.splitlines() if line.startswith("Running stage")] == [
        "Running stage 'corpus':",
        "Running stage 'download':",
        "Running stage 'shots':",
    ]
    # the three stage processes share the project's run server; none starts its own, nor do
    # the pool workers (shots runs two)
    assert _servers_started(root) == 1
    assert "Starting temporary server" not in out, out[-4000:]
    assert "database is locked" not in out and "Traceback" not in out
    assert "View at" not in out  # a link to a temporary server would outlive it
    assert _flow_runs(root) == {"corpus": ["COMPLETED"], "download": ["COMPLETED"], "shots": ["COMPLETED"]}
    assert not (home / ".prefect").exists()  # nothing recorded in the home folder

    out = _run([*dvc, "exp", "run", "-S", "shots.threshold=3.5", "shots"], root, home)
    assert "Running stage 'shots'" in out and "Running stage 'download'" not in out
    assert "database is locked" not in out and "Starting temporary server" not in out
    assert _flow_runs(root)["shots"] == ["COMPLETED", "COMPLETED"]
    assert not (home / ".prefect").exists()


def test_the_run_server_serves_one_process_after_another_and_stops_once_idle(tmp_path, monkeypatch):
    import json
    import time

    import httpx
    import psutil

    from flows.prefect_api import run_server

    monkeypatch.delenv("PREFECT_HOME", raising=False)  # the project's store, not one `make test` names
    with run_server(tmp_path, idle_s=1.0) as first:
        assert httpx.get(f"{first}/health").status_code == 200
    with run_server(tmp_path, idle_s=1.0) as second:  # the run's next process finds it
        time.sleep(2.5)  # longer than the idle time, but held: it stays up
        assert httpx.get(f"{second}/health").status_code == 200
    assert second == first and _servers_started(tmp_path) == 1
    record = tmp_path / ".prefect" / "run-server.json"
    pid = json.loads(record.read_text())["pid"]

    def running() -> bool:  # it is this test's child: once it exits, it is a zombie until reaped
        try:
            return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False

    deadline = time.monotonic() + 60
    while running() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not running() and not record.exists()
    assert "idle, stopping" in (tmp_path / ".prefect" / "run-server.log").read_text()


def test_two_processes_starting_at_once_share_one_run_server_and_a_killed_one_is_replaced(tmp_path, monkeypatch):
    import json
    import signal
    import threading

    import httpx

    from flows.prefect_api import run_server

    monkeypatch.delenv("PREFECT_HOME", raising=False)
    urls: list[str] = []
    both_inside = threading.Barrier(2, timeout=120)

    def enter() -> None:
        with run_server(tmp_path) as url:
            urls.append(url)
            both_inside.wait()

    threads = [threading.Thread(target=enter) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=180)
    assert len(urls) == 2 and urls[0] == urls[1] and _servers_started(tmp_path) == 1

    record = tmp_path / ".prefect" / "run-server.json"
    pid = json.loads(record.read_text())["pid"]
    os.kill(pid, signal.SIGKILL)  # its record now names a dead process
    os.waitpid(pid, 0)  # this test started it; a stage that starts one exits, and init reaps it
    with run_server(tmp_path) as url:
        assert httpx.get(f"{url}/health").status_code == 200
    assert _servers_started(tmp_path) == 2


def test_a_prefect_folder_that_is_a_file_is_one_clear_line(tmp_path):
    (tmp_path / ".prefect").write_text("not a folder")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1])
    code = "from flows.prefect_api import report_to_project_api; report_to_project_api('.')"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]  # one line, no traceback
    assert "error: no Prefect API for this stage" in result.stderr and ".prefect" in result.stderr
    assert (tmp_path / ".prefect").read_text() == "not a folder"  # left as it was
