"""`motionmasks verify`: what counts as reproducing the committed results."""

import json
import subprocess

import pytest
import yaml

from motionmasks.reproduce import tolerance_for, verify

LOCK = {
    "schema": "2.0",
    "stages": {
        "motion": {
            "cmd": "python -m flows.motion",
            "deps": [{"path": "data/shots/shots.parquet", "md5": "a1"}],
            "params": {"params.yaml": {"motion": {"step": 1}}},
            "outs": [{"path": "data/motion/shards", "md5": "b1.dir"}],
        },
        "train": {
            "cmd": "python -m flows.train",
            "deps": [{"path": "data/motion/shards", "md5": "b1.dir"}],
            "outs": [{"path": "data/train/model.pt", "md5": "c1"}],
        },
        "transfer@motion-c3": {
            "cmd": "python -m flows.transfer",
            "deps": [{"path": "data/train/model.pt", "md5": "c1"}],
            "outs": [{"path": "metrics/transfer/motion-c3.json", "md5": "d1"}],
        },
    },
}
METRICS = {"frames": 120, "mean_J@0.5": 0.8123, "mean_student_J": 0.31}
TRANSFER = {"AP": {"horse": 0.4, "star": 0.2}, "mAP": 0.3, "train_images": 60}


@pytest.fixture
def project(tmp_path):
    (tmp_path / "metrics" / "transfer").mkdir(parents=True)
    (tmp_path / "plots").mkdir()
    (tmp_path / "dvc.lock").write_text(yaml.safe_dump(LOCK))
    (tmp_path / "metrics/evaluate.json").write_text(json.dumps(METRICS))
    (tmp_path / "metrics/transfer/motion-c3.json").write_text(json.dumps(TRANSFER))
    (tmp_path / "plots/evaluate_per_video.csv").write_text("video,J@0.5,student_J\na,0.9,0.3\nb,0.7,0.2\n")
    for cmd in (
        ["git", "init", "-q"],
        ["git", "add", "-A"],
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid", "commit", "-qm", "results"],
    ):
        subprocess.run(cmd, cwd=tmp_path, check=True, capture_output=True)
    return tmp_path


def _edit_json(path, **values):
    data = json.loads(path.read_text())
    data.update(values)
    path.write_text(json.dumps(data, indent=4))  # other formatting: only values count


def _edit_lock(root, stage, field, md5):
    lock = yaml.safe_load((root / "dvc.lock").read_text())
    lock["stages"][stage][field][0]["md5"] = md5
    (root / "dvc.lock").write_text(yaml.safe_dump(lock))


def test_an_identical_run_is_reproduced(project):
    assert verify(project) == []


def test_a_motion_metric_must_match_exactly_a_student_one_within_its_tolerance(project):
    _edit_json(project / "metrics/evaluate.json", mean_student_J=0.34)
    assert verify(project) == []
    _edit_json(project / "metrics/evaluate.json", mean_student_J=0.37)
    assert verify(project) == ["metrics/evaluate.json: mean_student_J = 0.37, committed 0.31 (tolerance 0.05)"]
    _edit_json(project / "metrics/evaluate.json", mean_student_J=0.31, **{"mean_J@0.5": 0.8124})
    assert verify(project) == ["metrics/evaluate.json: mean_J@0.5 = 0.8124, committed 0.8123 (tolerance 1e-09)"]


def test_counts_keys_and_table_cells_are_checked(project):
    _edit_json(project / "metrics/transfer/motion-c3.json", train_images=59, AP={"horse": 0.42, "star": 0.2})
    assert verify(project) == ["metrics/transfer/motion-c3.json: train_images = 59, committed 60 (tolerance 1e-09)"]
    _edit_json(project / "metrics/transfer/motion-c3.json", train_images=60, extra=1)
    assert verify(project) == ["metrics/transfer/motion-c3.json: top level keys differ: ['extra']"]
    (project / "metrics/transfer/motion-c3.json").write_text(json.dumps(TRANSFER))
    (project / "plots/evaluate_per_video.csv").write_text("video,J@0.5,student_J\na,0.9,0.32\nb,0.71,0.2\n")
    assert verify(project) == ["plots/evaluate_per_video.csv: J@0.5 = 0.71, committed 0.7 (tolerance 1e-09) (row 2)"]


def test_only_training_stages_may_change_their_output_hashes(project):
    _edit_lock(project, "train", "outs", "c2")  # the network's weights differ in their last bits
    _edit_lock(project, "transfer@motion-c3", "deps", "c2")
    assert verify(project) == []
    _edit_lock(project, "motion", "outs", "b2.dir")
    assert verify(project) == ["dvc.lock: motion: out data/motion/shards has another hash"]


def test_a_missing_result_or_stage_is_named(project):
    (project / "metrics/evaluate.json").unlink()
    lock = yaml.safe_load((project / "dvc.lock").read_text())
    del lock["stages"]["transfer@motion-c3"]
    (project / "dvc.lock").write_text(yaml.safe_dump(lock))
    assert verify(project) == [
        "dvc.lock: stage transfer@motion-c3 committed but not run",
        "metrics/evaluate.json: committed, but this run did not write it",
    ]


def test_tolerances_are_exact_outside_trained_networks():
    assert tolerance_for("metrics/motion.json", "frames", 100.0) == 1e-9
    assert tolerance_for("metrics/train.json", "final_loss", 700.0) == pytest.approx(70.0)
    assert tolerance_for("metrics/train.json", "train_frames", 200.0) == 1e-9
    assert tolerance_for("metrics/train/metrics.json", "val.threshold", 0.3) == float("inf")


def test_the_command_names_an_unknown_revision_in_one_line(project, monkeypatch, capsys):
    from motionmasks.cli import main

    (project / "dvc.yaml").write_text("stages: {}\n")
    monkeypatch.chdir(project)
    assert main(["verify", "--against", "no-such-rev"]) == 2
    err = capsys.readouterr().err
    assert "git could not read revision 'no-such-rev'" in err and "Traceback" not in err
    assert main(["verify"]) == 0


def test_the_committed_dvc_lock_records_the_code_as_it_is_now():
    """A change to a stage's code without re-running it (`make run`) leaves dvc.lock stale,
    and CI's `motionmasks verify` fails on it: say so here, in `make test`, first."""
    import hashlib
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    tracked = set(subprocess.run(["git", "ls-files"], cwd=root, capture_output=True, text=True).stdout.split())
    if not tracked:
        pytest.skip("not a git checkout")
    stale = []
    for name, stage in yaml.safe_load((root / "dvc.lock").read_text())["stages"].items():
        for dep in stage.get("deps", []):
            path = root / dep["path"]
            if dep["path"] in tracked and path.is_file():  # code and configuration, not data
                if hashlib.md5(path.read_bytes()).hexdigest() != dep["md5"]:
                    stale.append(f"{name}: {dep['path']}")
    assert not stale, f"changed since dvc.lock was written (run `make run` and commit dvc.lock): {stale}"
