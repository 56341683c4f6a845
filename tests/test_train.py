"""Training the mask ConvNet: samples, trimap, loss, the held-out split, resume
after a kill (bit for bit) and DDP on two CPU processes (gloo)."""

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from motionmasks.formats import TrainingShard, read_training_shard, write_training_shard
from motionmasks.params import TrainParams
from motionmasks.train import (
    STATE_FILE,
    held_out_videos,
    jittered_crop,
    masked_logistic_loss,
    object_centre,
    train,
    trimap,
)

ROOT = Path(__file__).resolve().parents[1]
TINY = TrainParams(width=0.125, epochs=2, batch_size=4, val_fraction=0.34, lr=0.001)


def make_shards(folder: Path, videos: int = 3, frames: int = 6, seed: int = 0) -> list[Path]:
    """Tiny training shards: a bright box (the moving object) on a textured background."""
    rng = np.random.default_rng(seed)
    paths = []
    for v in range(videos):
        images = rng.integers(0, 90, (frames, 48, 64, 3), dtype=np.uint8)
        masks = np.zeros((frames, 48, 64), np.uint8)
        for i in range(frames):
            y, x = rng.integers(4, 28), rng.integers(4, 40)
            images[i, y : y + 16, x : x + 20] = 230
            masks[i, y : y + 16, x : x + 20] = 255
        path = folder / f"video{v}.npz"
        write_training_shard(path, TrainingShard(f"video{v}", images, masks, np.arange(frames), np.zeros(frames)))
        paths.append(path)
    return paths


def test_training_shard_round_trip(tmp_path):
    path = make_shards(tmp_path, videos=1)[0]
    shard = read_training_shard(path)
    assert shard.video == "video0" and shard.images.shape == (6, 48, 64, 3) and shard.masks.dtype == np.uint8


def test_jittered_crop_keeps_the_object_centre_and_is_seeded():
    image = np.zeros((40, 80, 3), np.uint8)
    mask = np.zeros((40, 80), np.uint8)
    mask[5:15, 60:76] = 255  # centre (67.5, 9.5)
    for seed in range(30):
        crop_image, crop_mask = jittered_crop(image, mask, np.random.default_rng(seed), (0.5, 0.5), flip=False)
        assert crop_image.shape == (20, 40, 3) and crop_mask.shape == (20, 40)
        assert crop_mask.any()  # the centre is in, so some of the object is
    a = jittered_crop(image, mask, np.random.default_rng(7), (0.6, 1.0), True)
    b = jittered_crop(image, mask, np.random.default_rng(7), (0.6, 1.0), True)
    assert np.array_equal(a[1], b[1])
    assert object_centre(mask) == (67.5, 9.5)
    assert object_centre(np.zeros((5, 9), np.uint8)) == (4.0, 2.0)


def test_trimap_thresholds():
    soft = np.array([[0, 101, 102, 178, 179, 255]], np.uint8)  # /255: 0, .396, .4, .698, .702, 1
    target, weight = trimap(np.repeat(soft, 6, axis=0), 6, 0.4, 0.7)
    assert target[0].tolist() == [0, 0, 0, 0, 1, 1]
    assert weight[0].tolist() == [1, 1, 0, 0, 1, 1]


def test_loss_sums_over_locations_and_ignores_the_band():
    logits = torch.zeros(2, 2, 2)
    target = torch.tensor([[[1.0, 0.0], [1.0, 0.0]], [[0.0, 0.0], [0.0, 0.0]]])
    weight = torch.tensor([[[1.0, 1.0], [0.0, 0.0]], [[1.0, 1.0], [1.0, 1.0]]])
    # every counted location costs log 2; 2 counted in the first sample, 4 in the second: (2 + 4) / 2
    assert masked_logistic_loss(logits, target, weight).item() == pytest.approx(3 * math.log(2))


def test_held_out_videos_are_stable_and_never_all():
    videos = [f"v{i}" for i in range(10)]
    held = held_out_videos(videos, 0.2, seed=0)
    assert len(held) == 2 and held == held_out_videos(list(reversed(videos)), 0.2, seed=0)
    assert len(held_out_videos(["a", "b"], 0.9, seed=0)) == 1
    assert held_out_videos(["a"], 0.5, seed=0) == set()
    assert held_out_videos(videos, 0.0, seed=0) == set()


def test_train_writes_the_best_model_metrics_and_plots(tmp_path):
    shards = make_shards(tmp_path / "shards")
    seen = []
    summary = train(
        shards, tmp_path / "model.pt", tmp_path / "state", TINY, live_dir=tmp_path / "live", on_epoch=seen.append
    )
    assert [row["epoch"] for row in seen] == [1, 2]
    assert summary["train_videos"] == 2 and summary["held_out_videos"] == 1 and summary["train_frames"] == 12
    assert 0 <= summary["held_out_iou"] <= 1 and summary["best_epoch"] in (1, 2)
    # each epoch is judged at its calibrated threshold, on the grid, at least as good as 0.5
    assert summary["threshold"] in [round(t, 2) for t in np.arange(0.05, 0.96, 0.05)]
    assert [row["threshold"] for row in seen][summary["best_epoch"] - 1] == summary["threshold"]
    live = json.loads((tmp_path / "live" / "metrics.json").read_text())
    assert live["step"] == 1 and "held_out_iou" in live["val"]
    loss_plot = (tmp_path / "live" / "plots" / "metrics" / "train" / "loss.tsv").read_text().splitlines()
    assert len(loss_plot) == 3  # header + 2 epochs
    from models.checkpoint import load_masknet

    model, info = load_masknet(tmp_path / "model.pt")
    assert info["epoch"] == summary["best_epoch"] and info["params"]["width"] == 0.125
    assert info["threshold"] == summary["threshold"]
    from motionmasks.train import held_out_iou, load_frames

    frames = load_frames(shards)
    held = frames.subset(frames.videos == "video1")
    assert info["held_out_videos"] == ["video1"]
    assert held_out_iou(model, held, torch.device("cpu"), info["threshold"]) == pytest.approx(summary["held_out_iou"])
    assert summary["held_out_iou"] >= held_out_iou(model, held, torch.device("cpu"), 0.5)
    assert "threshold" in live["val"]


_TRAIN_SCRIPT = """
import sys
from pathlib import Path
from motionmasks.params import TrainParams
from motionmasks.train import train
shards = sorted(Path(sys.argv[1]).glob("*.npz"))
params = TrainParams.model_validate_json(sys.argv[3])
train(shards, Path(sys.argv[2]) / "model.pt", Path(sys.argv[2]) / "state", params, live_dir=Path(sys.argv[2]) / "live")
"""


def _run_training(shards: Path, out: Path, params: TrainParams, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-c", _TRAIN_SCRIPT, str(shards), str(out), params.model_dump_json()],
        env=env,
        cwd=ROOT,
        **kwargs,
    )


def test_a_killed_run_resumes_from_its_last_epoch_to_the_same_weights(tmp_path):
    make_shards(tmp_path / "shards")
    params = TINY.model_copy(update={"epochs": 3})
    whole = _run_training(tmp_path / "shards", tmp_path / "whole", params)
    assert whole.wait(timeout=300) == 0

    killed = _run_training(tmp_path / "shards", tmp_path / "resumed", params)
    state = tmp_path / "resumed" / "state" / STATE_FILE
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and killed.poll() is None:
        if state.is_file() and torch.load(state, weights_only=True)["epoch"] >= 1:
            break
        time.sleep(0.05)
    os.kill(killed.pid, signal.SIGKILL)
    killed.wait()
    done = torch.load(state, weights_only=True)["epoch"]
    assert 1 <= done < 3, "the kill must land after epoch 1 and before the end"
    resumed = _run_training(tmp_path / "shards", tmp_path / "resumed", params, stdout=subprocess.PIPE, text=True)
    output, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0
    assert f"resuming from the checkpoint of epoch {done}" in output
    a = torch.load(tmp_path / "whole" / "model.pt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "resumed" / "model.pt", weights_only=True)["state_dict"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    history = torch.load(state, weights_only=True)["history"]
    assert [row["epoch"] for row in history] == [1, 2, 3]
    lines = (tmp_path / "resumed" / "live" / "plots" / "metrics" / "train" / "loss.tsv").read_text().splitlines()
    assert len(lines) == 4  # the plot covers all three epochs, the replayed ones too


def test_other_settings_start_over(tmp_path):
    shards = make_shards(tmp_path / "shards")
    train(shards, tmp_path / "model.pt", tmp_path / "state", TINY.model_copy(update={"epochs": 1}))
    messages = []
    train(shards, tmp_path / "model.pt", tmp_path / "state", TINY.model_copy(update={"lr": 0.01}), log=messages.append)
    assert any("other settings, data or code" in m for m in messages)
    more = []
    train(
        shards,
        tmp_path / "model.pt",
        tmp_path / "state",
        TINY.model_copy(update={"lr": 0.01, "epochs": 3}),
        log=more.append,
    )
    assert any("resuming from the checkpoint of epoch 2" in m for m in more)


def test_new_masks_of_the_same_frames_start_over(tmp_path):
    """A changed upstream parameter rewrites the shards with the same names and sizes: not the same data."""
    shards = make_shards(tmp_path / "shards", seed=0)
    train(shards, tmp_path / "model.pt", tmp_path / "state", TINY.model_copy(update={"epochs": 1}))
    before = [p.stat().st_size for p in shards]
    shards = make_shards(tmp_path / "shards", seed=1)
    assert [p.stat().st_size for p in shards] == before
    messages = []
    train(shards, tmp_path / "model.pt", tmp_path / "state", TINY.model_copy(update={"epochs": 1}), log=messages.append)
    assert any("other settings, data or code" in m for m in messages)


def test_changed_training_code_starts_over(tmp_path, monkeypatch):
    """DVC re-runs train when models/ or the loop change; the old state must not be passed off as the new model."""
    shards = make_shards(tmp_path / "shards")
    train(shards, tmp_path / "model.pt", tmp_path / "state", TINY.model_copy(update={"epochs": 1}))
    monkeypatch.setattr("motionmasks.train.training_code_digest", lambda: "other code")
    messages = []
    train(shards, tmp_path / "model.pt", tmp_path / "state", TINY.model_copy(update={"epochs": 1}), log=messages.append)
    assert any("other settings, data or code" in m for m in messages)


def test_ddp_on_two_cpu_processes_with_gloo(tmp_path):
    make_shards(tmp_path / "shards", videos=4)
    script = tmp_path / "ddp_train.py"
    script.write_text(_TRAIN_SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc-per-node",
            "2",
            str(script),
            str(tmp_path / "shards"),
            str(tmp_path / "out"),
            TINY.model_dump_json(),
        ],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "2 process(es)" in result.stdout
    assert (tmp_path / "out" / "model.pt").is_file()
    history = torch.load(tmp_path / "out" / "state" / STATE_FILE, weights_only=True)["history"]
    assert [row["epoch"] for row in history] == [1, 2]


def test_an_unreadable_state_starts_over(tmp_path):
    shards = make_shards(tmp_path / "shards")
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / STATE_FILE).write_bytes(b"garbage")
    messages = []
    summary = train(shards, tmp_path / "model.pt", tmp_path / "state", TINY, log=messages.append)
    assert any("cannot be read" in m for m in messages) and summary["epochs"] == 2


def test_loader_workers_change_no_weight(tmp_path):
    """runtime.loader_workers is not a train-stage dependency: it must not change the result."""
    shards = make_shards(tmp_path / "shards")
    one = TINY.model_copy(update={"epochs": 1})
    train(shards, tmp_path / "a.pt", tmp_path / "a", one, loader_workers=0)
    train(shards, tmp_path / "b.pt", tmp_path / "b", one, loader_workers=2)
    assert (tmp_path / "a.pt").read_bytes() == (tmp_path / "b.pt").read_bytes()


def test_retrain_student_never_writes_into_a_folder_it_did_not_write(tmp_path):
    """benchmarks/retrain_student.py pointed at the pipeline's own model folder (or any other) refuses."""
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "retrain_student.py"
    theirs = tmp_path / "data" / "train"
    theirs.mkdir(parents=True)
    (theirs / "model.pt").write_bytes(b"someone's model")
    run = [sys.executable, str(script), "--project", str(tmp_path), "--out", str(theirs)]
    result = subprocess.run(run, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and "did not write" in result.stderr and str(theirs) in result.stderr
    assert (theirs / "model.pt").read_bytes() == b"someone's model"
    result = subprocess.run([*run[:-1], str(tmp_path / "new")], capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and "not a project whose prune stage ran" in result.stderr
    assert not (tmp_path / "new").exists()
