"""The reliability suite's end-to-end half, on a real project copy run by `motionmasks run`
and `dvc repro`, reporting to a real Prefect server:

- a manifest whose path holds a space and a `$(...)` is used as a path, never run;
- a manifest full of bad inputs (zero-byte, truncated and non-video files, one-frame and
  grayscale videos, mixed-size, duplicate-numbered and huge frame folders, hostile ids,
  unknown schemes, missing files): each fails by name, the others go all the way through;
- a detection dataset at a path with a space and a `$(...)` is read as a path, never run;
- SIGKILL in the middle of each per-item stage (and of one transfer setting): the re-run completes, no temporary is
  left, and every output is identical to the uninterrupted run's;
- a second run while one holds the project, and an empty params.yaml: one clear line each.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from conftest import project_copy

from motionmasks.formats import read_json, read_table
from motionmasks.video import write_video

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.e2e

TINY = {
    "corpus": {"synthetic_videos": 2, "shots_per_video": [2, 2], "shot_frames": [14, 20], "sample_clips": []},
    "download": {"max_failure_fraction": 0.75},  # most of this manifest is bad on purpose
    "runtime": {"workers": 2, "batch_size": 1},
}
HOSTILE_MANIFEST = "inputs/my videos/$(touch PWNED) list.csv"
TEMPORARY = re.compile(r"^\..+\.\d+\.[A-Za-z0-9_]{8}\.tmp(\.[A-Za-z0-9]+)?$")
KILLED_STAGES = [
    "download",
    "shots",
    "motion",
    "consensus",
    "prune",
    "train",
    "evaluate",
    "proposals",
    "transfer@motion-c3",
]
BAD = {  # id -> what its failure reason must say
    "zero-byte": "not a readable video",
    "not-a-video": "not a readable video",
    "truncated": "not a readable video",
    "duplicate-frames": "00004.jpg and 00004.png",
    "mixed-sizes": "00003.jpg: frame is 20x20",
    "huge-frames": "over the limit of 36,000,000 pixels per frame",
    "gopher": "unsupported url scheme 'gopher'",
    "missing": "no such file or folder",
}


def _env() -> dict:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    return env


def _sh(cmd: list[str], cwd: Path, ok: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=900)
    if ok:
        assert result.returncode == 0, f"{cmd} failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return result


def _run(root: Path, *args: str, ok: bool = True) -> subprocess.CompletedProcess:
    return _sh([sys.executable, "-m", "motionmasks.cli", "run", *args], root, ok=ok)


def _frames(folder: Path, count: int, size=(48, 64), suffix=".jpg", grey=False) -> None:
    folder.mkdir(parents=True)
    for i in range(count):
        frame = np.full((*size, 3), 90, np.uint8)
        frame[10 + i : 26 + i, 10 + 2 * i : 26 + 2 * i] = (220, 40, 40)
        cv2.imwrite(str(folder / f"{i:05d}{suffix}"), frame[..., 0] if grey else frame)


def _huge_png(path: Path) -> None:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", 16000, 16000, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def _user_inputs(root: Path) -> list[dict]:
    """The user's own videos and a lot of bad input beside them; returns the manifest rows."""
    inputs = root / "inputs"
    inputs.mkdir()
    for name in ("synth-000", "synth-001"):
        shutil.copy(root / "data/corpus/synthetic" / f"{name}.mp4", inputs / f"{name}.mp4")
    (inputs / "zero.mp4").write_bytes(b"")
    (inputs / "page.mp4").write_bytes(b"<html><body>404 not found</body></html>")
    (inputs / "truncated.mp4").write_bytes((inputs / "synth-000.mp4").read_bytes()[:2000])
    write_video(inputs / "one.mp4", np.full((1, 48, 64, 3), 128, np.uint8), fps=10)
    _frames(inputs / "grey", 12, grey=True)
    _frames(inputs / "dup", 8)
    cv2.imwrite(str(inputs / "dup" / "00004.png"), cv2.imread(str(inputs / "dup" / "00004.jpg")))
    _frames(inputs / "mixed", 8)
    cv2.imwrite(str(inputs / "mixed" / "00003.jpg"), np.zeros((20, 20, 3), np.uint8))
    (inputs / "huge").mkdir()
    for i in range(3):
        _huge_png(inputs / "huge" / f"{i:05d}.png")
    rows = [
        ("synth-000", inputs / "synth-000.mp4"),
        ("synth-001", inputs / "synth-001.mp4"),
        ("zero-byte", inputs / "zero.mp4"),
        ("not-a-video", inputs / "page.mp4"),
        ("truncated", inputs / "truncated.mp4"),
        ("one-frame", inputs / "one.mp4"),
        ("grey-frames", inputs / "grey"),
        ("duplicate-frames", inputs / "dup"),
        ("mixed-sizes", inputs / "mixed"),
        ("huge-frames", inputs / "huge"),
        ("../../escape", inputs / "one.mp4"),
        (str(root.parent / "absolute-id"), inputs / "one.mp4"),
        ("L" * 300, inputs / "one.mp4"),
        ("gopher", "gopher://example.org/v.mp4"),
        ("missing", inputs / "nowhere.mp4"),
    ]
    return [{"id": i, "url": str(u)} for i, u in rows]


@pytest.fixture(scope="module")
def project(tmp_path_factory, prefect_api):
    """A project copy whose manifest sits at a path with a space and a `$(...)`, full of bad input."""
    # the transfer stage's reliability needs one depth (its kill test); the pipeline suite runs all 12
    root = project_copy(tmp_path_factory.mktemp("reliability") / "project", TINY, transfer_depths=["c3"])
    params = yaml.safe_load((root / "params.yaml").read_text())
    _run(root, "corpus")  # the user's videos come from here
    import pandas as pd

    rows = _user_inputs(root)
    manifest = root / HOSTILE_MANIFEST
    manifest.parent.mkdir(parents=True)
    pd.DataFrame(rows).to_csv(manifest, index=False)
    params["download"]["manifest"] = HOSTILE_MANIFEST
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    result = _run(root)
    return root, result


def _lock_outs(root: Path) -> dict[str, object]:
    """Every output's DVC hash, and the metrics files' values less wall-clock timings."""
    lock = yaml.safe_load((root / "dvc.lock").read_text())["stages"]
    outs: dict[str, object] = {}
    for stage in lock.values():
        for out in stage.get("outs", []):
            if out["path"].startswith("metrics/") and out["path"].endswith(".json"):
                outs[out["path"]] = {k: v for k, v in read_json(root / out["path"]).items() if "second" not in k}
            else:
                outs[out["path"]] = out["md5"]
    return outs


def _temporaries(root: Path) -> list[str]:
    return [str(p.relative_to(root)) for p in (root / "data").rglob("*") if TEMPORARY.match(p.name)]


def test_a_manifest_path_with_a_space_and_a_command_is_only_a_path(project):
    root, _ = project
    assert not list(root.rglob("PWNED")) and not Path("PWNED").exists()
    fetched = read_table(root / "data/download/fetched.parquet")
    assert {"synth-000", "synth-001"} <= set(fetched["id"])


def test_every_bad_input_fails_by_name_and_the_rest_go_through(project):
    root, _ = project
    failures = read_table(root / "data/download/failures.csv")
    reasons = dict(zip(failures["item"], failures["reason"]))
    assert set(reasons) == set(BAD)
    for item, says in BAD.items():
        assert reasons[item].startswith(f"{item}: ") and says in reasons[item], reasons[item]
    fetched = read_table(root / "data/download/fetched.parquet")
    assert len(fetched) == 7
    videos = root / "data/download/videos"
    assert all((root / p).resolve().parent == videos.resolve() for p in fetched["path"])  # ids stayed inside
    assert not (root.parent / "escape").exists() and not (root.parent / "absolute-id").exists()
    shots = read_table(root / "data/shots/shots.parquet")
    usable = set(shots.loc[shots["status"] == "ok", "video"])
    assert usable == {"synth-000", "synth-001", "grey-frames"}  # one-frame videos are too short, not errors
    consensus = read_table(root / "data/consensus/index.parquet")
    assert set(consensus["video"]) == usable
    metrics = read_json(root / "metrics/evaluate.json")
    assert metrics["videos_scored"] == 2 and metrics["mean_J@0.5"] > 0.5


def test_a_detection_dataset_path_with_a_space_and_a_command_is_only_a_path(project):
    """The proposals stage reads detection.train/test from params.yaml; DVC's shell never sees them."""
    root, _ = project
    params_file = root / "params.yaml"
    saved = params_file.read_text()
    params = yaml.safe_load(saved)
    for split in ("train", "test"):
        hostile = f"inputs/my data/$(touch PWNED) {split}"
        shutil.copytree(root / "data/detection" / split, root / hostile)
        params["detection"][split] = hostile
    params_file.write_text(yaml.safe_dump(params, sort_keys=False))
    try:
        _sh([sys.executable, "-m", "dvc", "repro", "-s", "proposals"], root)
        metrics = read_json(root / "metrics/proposals.json")
    finally:
        params_file.write_text(saved)
        shutil.rmtree(root / "inputs/my data")
        _sh([sys.executable, "-m", "dvc", "repro", "-s", "proposals"], root)
    assert not list(root.rglob("PWNED")) and not Path("PWNED").exists()
    assert metrics["train"]["dataset"] == "inputs/my data/$(touch PWNED) train"
    assert metrics["train"]["images_failed"] == 0 and metrics["test"]["images_with_proposals"] > 0


def test_outputs_have_ordinary_permissions(project):
    root, _ = project
    umask = os.umask(0o022)
    os.umask(umask)
    videos = root / "data/download/videos"
    assert videos.stat().st_mode & 0o777 == 0o777 & ~umask
    assert (videos / "synth-000.mp4").stat().st_mode & 0o777 == 0o666 & ~umask
    assert (root / "data/motion/shards").stat().st_mode & 0o777 == 0o777 & ~umask


def _flow_processes(stage: str, root: Path) -> list:
    """The processes running STAGE's flow in the project at ROOT (DVC runs stages in the project folder).

    Only this project's: a test in another pytest worker may be running the same stage elsewhere.
    """
    import psutil

    module = "flows." + stage.partition("@")[0]  # transfer@motion-c3 runs flows.transfer
    found = []
    for proc in psutil.process_iter(["cmdline", "cwd"]):
        if module in (proc.info["cmdline"] or []) and proc.info["cwd"] and Path(proc.info["cwd"]) == root.resolve():
            found.append(proc)
    return found


def _has_workers(processes: list) -> bool:
    import psutil

    try:
        return any(p.children() for p in processes)
    except psutil.NoSuchProcess:
        return False


def _kill_mid_stage(root: Path, stage: str) -> str:
    """Start `dvc repro -f -s STAGE`, SIGKILL its whole process group mid-stage; say what triggered it."""
    process = subprocess.Popen(
        [sys.executable, "-m", "dvc", "repro", "-f", "-s", stage],
        cwd=root,
        env=_env(),
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    trigger, started = "", None
    deadline = time.monotonic() + 120
    try:
        while not trigger and time.monotonic() < deadline and process.poll() is None:
            if _temporaries(root):
                trigger = "temporary written"
            flows = _flow_processes(stage, root)
            if flows:
                started = started or time.monotonic()
                if _has_workers(flows):
                    trigger = "workers busy"
                elif time.monotonic() - started > 2.0:
                    trigger = "flow running 2 s"
            time.sleep(0.02)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    assert trigger and process.returncode == -signal.SIGKILL, f"{stage} ended before it could be killed"
    return trigger


@pytest.mark.parametrize("stage", KILLED_STAGES)
def test_sigkill_mid_stage_then_rerun_gives_identical_outputs_and_no_leftovers(project, stage):
    root, _ = project
    reference = _lock_outs(root)
    trigger = _kill_mid_stage(root, stage)
    _sh([sys.executable, "-m", "dvc", "repro"], root)
    assert _lock_outs(root) == reference, f"{stage}: outputs differ after a kill ({trigger}) and a re-run"
    status = _sh([sys.executable, "-m", "dvc", "status"], root).stdout
    assert "changed" not in status and "modified" not in status, status
    # When DVC restored the stage from its run cache, none of its code ran to sweep what the
    # killed run left: the next `motionmasks run` does (the stage itself would, when it runs).
    _sh([sys.executable, "-m", "motionmasks.cli", "run"], root)
    assert _temporaries(root) == [], f"after a kill ({trigger}), a re-run and motionmasks run"


def test_a_second_run_is_told_another_holds_the_project(project):
    from dvc.lock import make_lock

    from motionmasks.cli import _run_lock

    root, _ = project
    with _run_lock(root):
        busy = _run(root, ok=False)
    assert busy.returncode == 3, busy.stderr
    assert "another run holds this project's lock" in busy.stderr and "Traceback" not in busy.stderr
    lock = make_lock(str(root / ".dvc/tmp/lock"), tmp_dir=str(root / ".dvc/tmp"))
    lock.lock()  # as a `dvc repro` in progress holds it
    try:
        busy = _run(root, ok=False)
    finally:
        lock.unlock()
    assert busy.returncode == 3 and "a DVC command" in busy.stderr and "Traceback" not in busy.stderr


def test_an_empty_params_file_is_one_clear_line_before_any_stage(project):
    root, _ = project
    params = root / "params.yaml"
    saved = params.read_text()
    params.write_text("")
    try:
        result = _run(root, ok=False)
    finally:
        params.write_text(saved)
    assert result.returncode == 2
    assert "params.yaml is empty" in result.stderr and "Traceback" not in result.stderr + result.stdout


def test_killing_only_the_run_process_leaves_no_stage_writing(project):
    """`kill -9 <motionmasks run>`: the stage process it started (and its workers) go down with it."""
    import psutil

    root, _ = project
    reference = _lock_outs(root)
    run = subprocess.Popen(
        [sys.executable, "-m", "motionmasks.cli", "run", "consensus", "--force"],
        cwd=root,
        env=_env(),
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    stage = []
    while not stage and time.monotonic() < deadline and run.poll() is None:
        stage = _flow_processes("consensus", root)
        time.sleep(0.05)
    assert stage, "the consensus stage never started"
    time.sleep(0.5)
    run.kill()  # the run process alone, not its group
    run.wait()
    gone, alive = psutil.wait_procs(stage, timeout=10)
    assert not alive, f"stage processes outlived the run: {alive}"
    assert not _flow_processes("consensus", root)
    _sh([sys.executable, "-m", "dvc", "repro"], root)
    assert _temporaries(root) == [] and _lock_outs(root) == reference


def test_a_failed_stage_leaves_its_previous_outputs_in_place(project):
    """DVC removes a stage's outputs before running it; a failed run puts them back from the cache."""
    root, _ = project
    reference = _lock_outs(root)
    shards = sorted(p.name for p in (root / "data/consensus/shards").iterdir())
    env = {
        **_env(),
        "MOTIONMASKS_DASK_ADDRESS": "tcp://127.0.0.1:9",  # nothing listens: every batch of the stage fails
        "DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT": "2s",
    }
    failed = subprocess.run(
        [sys.executable, "-m", "motionmasks.cli", "run", "consensus", "--force"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert failed.returncode == 1 and "consensus" in failed.stderr, failed.stdout[-3000:] + failed.stderr[-3000:]
    assert sorted(p.name for p in (root / "data/consensus/shards").iterdir()) == shards
    assert _lock_outs(root) == reference
    status = _sh([sys.executable, "-m", "dvc", "status", "consensus"], root).stdout
    assert "modified" not in status and "deleted" not in status, status


def test_a_stage_failing_under_a_bare_dvc_repro_puts_its_previous_outputs_back(project):
    """DVC deletes a stage's outputs before running it; the failing stage itself restores them."""
    root, _ = project
    reference = _lock_outs(root)
    shards = sorted(p.name for p in (root / "data/consensus/shards").iterdir())
    metrics = (root / "metrics/consensus.json").read_bytes()
    env = {
        **_env(),
        "MOTIONMASKS_DASK_ADDRESS": "tcp://127.0.0.1:9",  # nothing listens: the stage fails
        "DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT": "2s",
    }
    failed = subprocess.run(
        [sys.executable, "-m", "dvc", "repro", "--single-item", "--force", "consensus"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    said = failed.stdout + failed.stderr
    assert failed.returncode != 0 and "failed to reproduce 'consensus'" in said, said[-3000:]
    assert "consensus: 4 previous output(s) back in place" in said
    assert sorted(p.name for p in (root / "data/consensus/shards").iterdir()) == shards
    assert (root / "metrics/consensus.json").read_bytes() == metrics
    assert (root / "data/consensus/failures.csv").is_file()
    assert _lock_outs(root) == reference and _temporaries(root) == []
    status = _sh([sys.executable, "-m", "dvc", "status", "consensus"], root).stdout
    assert "modified" not in status and "deleted" not in status, status
