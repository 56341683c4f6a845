"""The `motionmasks` front door: segment and score on tiny real files, help text."""

import json
import os

import cv2
import numpy as np
import pytest

from motionmasks.cli import build_parser, main
from motionmasks.synthetic import make_video
from motionmasks.video import write_video


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """A synthetic clip as a frame folder + its ground truth in DAVIS layout."""
    root = tmp_path_factory.mktemp("davis")
    video = make_video(3, width=96, height=64, shots=1, shot_frames=(12, 12), max_objects=1)
    frames, gt = root / "JPEGImages" / "square", root / "Annotations" / "square"
    frames.mkdir(parents=True)
    gt.mkdir(parents=True)
    for i, (frame, mask) in enumerate(zip(video.frames, video.masks)):
        cv2.imwrite(str(frames / f"{i:05d}.png"), frame[..., ::-1])
        cv2.imwrite(str(gt / f"{i:05d}.png"), mask.astype(np.uint8) * 255)
    write_video(root / "square.mp4", video.frames, fps=25)
    return root


def test_help_lists_every_command():
    text = build_parser().format_help()
    for command in ("run", "status", "dashboard", "segment", "score"):
        assert command in text


@pytest.mark.parametrize("source", ["JPEGImages/square", "square.mp4"])
def test_segment_writes_one_png_per_frame(clip, tmp_path, monkeypatch, source):
    monkeypatch.chdir(tmp_path)  # no params.yaml here: built-in defaults
    out = tmp_path / "masks"
    assert main(["segment", str(clip / source), "--out", str(out), "--quiet"]) == 0
    pngs = sorted(p.name for p in (out / "square").glob("*.png"))
    assert pngs == [f"{i:05d}.png" for i in range(12)]
    mask = cv2.imread(str(out / "square" / "00005.png"), cv2.IMREAD_UNCHANGED)
    assert mask.dtype == np.uint8 and mask.shape == (64, 96)


def test_segment_refuses_two_inputs_with_one_name(clip, tmp_path, capsys):
    args = ["segment", str(clip / "JPEGImages" / "square"), str(clip / "square.mp4"), "--out", str(tmp_path)]
    assert main(args) == 2
    assert "same output folder" in capsys.readouterr().err


def test_segment_reports_a_bad_input_and_goes_on(clip, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "broken.mp4").write_bytes(b"junk" * 100)
    out = tmp_path / "masks"
    assert main(["segment", str(tmp_path / "broken.mp4"), str(clip / "square.mp4"), "--out", str(out), "--quiet"]) == 1
    assert "broken.mp4" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["square"]


def test_score_prints_and_writes_json(clip, tmp_path, capsys):
    out = tmp_path / "scores.json"
    gt = clip / "Annotations"
    assert main(["score", "--pred", str(gt), "--gt", str(gt), "--json", str(out)]) == 0
    scores = json.loads(out.read_text())
    assert scores["thresholds"]["0.5"]["mean_J"] == 1.0
    assert "square" in capsys.readouterr().out


def test_score_names_missing_frames(clip, tmp_path, capsys):
    pred = tmp_path / "pred" / "square"
    pred.mkdir(parents=True)
    cv2.imwrite(str(pred / "00000.png"), np.zeros((64, 96), np.uint8))
    assert main(["score", "--pred", str(tmp_path / "pred"), "--gt", str(clip / "Annotations")]) == 2
    assert "00001" in capsys.readouterr().err


def test_segment_with_two_workers_writes_the_same_masks_as_one(clip, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "broken.mp4").write_bytes(b"junk" * 100)
    inputs = [str(clip / "JPEGImages" / "square"), str(tmp_path / "broken.mp4")]
    video_copy = tmp_path / "other.mp4"
    video_copy.write_bytes((clip / "square.mp4").read_bytes())
    inputs.append(str(video_copy))
    assert main(["segment", *inputs, "--out", str(tmp_path / "one"), "--workers", "1", "--quiet"]) == 1
    assert main(["segment", *inputs, "--out", str(tmp_path / "two"), "--workers", "2", "--quiet"]) == 1
    err = capsys.readouterr().err
    assert err.count("broken.mp4") == 2  # named once per run, and the other inputs went on
    for name in ("square", "other"):
        one = {p.name: p.read_bytes() for p in (tmp_path / "one" / name).iterdir()}
        two = {p.name: p.read_bytes() for p in (tmp_path / "two" / name).iterdir()}
        assert len(one) == 13 and one == two  # 12 masks + the owner marker, byte for byte


def test_one_long_video_is_spread_over_the_workers_with_the_same_masks(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    video = make_video(5, width=96, height=64, shots=3, shot_frames=(12, 12), max_objects=1)
    write_video(tmp_path / "long.mp4", video.frames, fps=25)
    args = ["segment", str(tmp_path / "long.mp4"), "--quiet", "--workers"]
    assert main([*args, "1", "--out", str(tmp_path / "one")]) == 0
    assert main([*args, "2", "--out", str(tmp_path / "two")]) == 0
    assert "long.mp4: 2 groups of its shots, one per worker" in capsys.readouterr().out
    one = {p.name: p.read_bytes() for p in (tmp_path / "one" / "long").iterdir()}
    two = {p.name: p.read_bytes() for p in (tmp_path / "two" / "long").iterdir()}
    assert len(one) == 37 and one == two  # 36 masks + the owner marker, byte for byte


def test_motionmasks_run_sweeps_what_a_killed_stage_left_beside_any_output(tmp_path, capsys):
    """DVC may restore a killed stage from its run cache without running it: then `motionmasks run` sweeps."""
    import subprocess
    import sys

    import yaml

    from motionmasks.cli import _sweep_killed_temporaries

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)  # a process that has ended
    stages = {"x": {"cmd": "true", "outs": ["data/x/shards", {"data/x/t.csv": {}}], "metrics": ["m/${item}.json"]}}
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump({"stages": stages}))
    (tmp_path / "data/x").mkdir(parents=True)
    (tmp_path / "m").mkdir()
    left = [tmp_path / f"data/x/.shards.{pid}.abcdefgh.tmp", tmp_path / f"m/.a.{pid}.abcdefgh.tmp.json"]
    left[0].mkdir()
    left[1].write_text("{}")
    live = tmp_path / f"data/x/.t.{os.getpid()}.abcdefgh.tmp.csv"  # a running writer's: left alone
    live.write_text("x")
    mine = tmp_path / "data/x/notes.txt"  # the user's: left alone
    mine.write_text("x")
    _sweep_killed_temporaries(tmp_path)
    assert not any(p.exists() for p in left) and live.exists() and mine.exists()
    assert capsys.readouterr().err.count("left by a run that was killed") == 2


def test_spreading_an_unreadable_input_names_it_and_writes_nothing(tmp_path):
    from motionmasks.cli import _segment_spread
    from motionmasks.segment import Segmenter

    class Bar:
        def update(self, n): ...

        def write(self, text, file=None): ...

    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"junk" * 100)
    [(source, target, exc)] = _segment_spread([(broken, tmp_path / "out" / "broken")], Segmenter(), 10**8, 2, Bar())
    assert source == broken and exc is not None and "broken.mp4" in str(exc)
    assert not (tmp_path / "out" / "broken").exists()
