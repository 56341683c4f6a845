"""The evaluate stage's own logic: where ground truth comes from, and cut scores."""

import cv2
import numpy as np
import pandas as pd

from flows.evaluate import cut_scores, load_truth
from motionmasks.formats import write_masks


def test_truth_from_the_synthetic_corpus(tmp_path):
    masks = np.zeros((3, 4, 5), np.uint8)
    masks[1, 2, 3] = 1
    write_masks(tmp_path / "synthetic" / "synth-000.masks.npz", masks)
    truth = load_truth("synth-000", tmp_path, None)
    assert sorted(truth) == [0, 1, 2] and truth[1].sum() == 1 and truth[1][2, 3]


def test_truth_from_a_davis_folder_by_sequence_name(tmp_path):
    seq = tmp_path / "davis" / "bear"
    seq.mkdir(parents=True)
    for i in range(2):
        mask = np.zeros((4, 6), np.uint8)
        mask[0, i] = 255
        cv2.imwrite(str(seq / f"{i:05d}.png"), mask)
    truth = load_truth("bear", tmp_path / "corpus", tmp_path / "davis")
    assert sorted(truth) == [0, 1] and truth[1][0, 1] and truth[1].sum() == 1
    assert load_truth("unknown", tmp_path / "corpus", tmp_path / "davis") is None
    assert load_truth("bear", tmp_path / "corpus", None) is None


def test_cut_scores_within_one_frame():
    truth = pd.DataFrame({"video": ["a"] * 3 + ["b"] * 2, "first": [0, 10, 20, 0, 30]})
    found = pd.DataFrame({"video": ["a"] * 4 + ["b"], "first": [0, 11, 22, 25, 0]})
    # a: 11 matches 10; 22 is 2 frames off 20 (miss); 25 is spurious. b: cut at 30 missed.
    scores = cut_scores(found, truth)
    assert scores == {"cut_precision": 1 / 3, "cut_recall": 1 / 3}
    assert cut_scores(truth, truth) == {"cut_precision": 1.0, "cut_recall": 1.0}


def _stage_inputs(tmp_path, with_truth=True):
    import pandas as pd

    from motionmasks.formats import MapShard, ShotRecord, write_map_shard, write_shot_records, write_table
    from motionmasks.video import write_video

    frames = np.zeros((4, 16, 16, 3), np.uint8)
    write_video(tmp_path / "synth-000.mp4", frames, fps=10)
    truth = np.zeros((4, 16, 16), np.uint8)
    truth[:, 4:8, 4:8] = 1
    if with_truth:
        write_masks(tmp_path / "corpus" / "synthetic" / "synth-000.masks.npz", truth)
        write_masks(tmp_path / "corpus" / "synthetic" / "synth-001.masks.npz", truth)
    (tmp_path / "corpus").mkdir(exist_ok=True)
    maps = truth.astype(np.float32)  # a perfect prediction
    meta = {"source": str(tmp_path / "synth-000.mp4"), "video": "synth-000"}
    for name in ("motion", "consensus"):
        write_map_shard(tmp_path / f"{name}.npz", MapShard(maps, np.arange(4), {"shot": np.zeros(4, np.int64)}, meta))
        write_table(
            pd.DataFrame({"video": ["synth-000"], "path": [str(tmp_path / f"{name}.npz")]}),
            tmp_path / f"{name}.parquet",
        )
    write_shot_records(
        tmp_path / "shots.parquet",
        [
            ShotRecord(
                video=v,
                source=str(tmp_path / f"{v}.mp4"),
                shot=0,
                part=0,
                first=0,
                last=3,
                fps=10.0,
                width=16,
                height=16,
                work_width=16,
                work_height=16,
                status="ok",
            )
            for v in ("synth-000", "synth-001")
        ],
    )


def _run_evaluate(tmp_path, **params):
    from flows.evaluate import evaluate
    from motionmasks.params import EvaluateParams

    return evaluate(
        tmp_path / "consensus.parquet",
        tmp_path / "motion.parquet",
        tmp_path / "shots.parquet",
        tmp_path / "corpus",
        tmp_path / "per_video.csv",
        tmp_path / "gallery.png",
        tmp_path / "failures.csv",
        tmp_path / "metrics.json",
        EvaluateParams(**params),
    )


def test_evaluate_scores_and_reports_a_video_lost_upstream(tmp_path, prefect_api):
    from motionmasks.formats import read_table

    _stage_inputs(tmp_path)
    metrics = _run_evaluate(tmp_path)
    assert metrics["videos_scored"] == 1 and metrics["mean_J@0.5"] == 1.0
    failures = read_table(tmp_path / "failures.csv")
    assert failures["item"].tolist() == ["synth-001"] and "earlier stage" in failures["reason"][0]
    assert metrics["videos_failed"] == 1
    assert cv2.imread(str(tmp_path / "gallery.png")) is not None


def test_evaluate_without_any_truth_still_writes_its_outputs(tmp_path, prefect_api):
    _stage_inputs(tmp_path, with_truth=False)
    metrics = _run_evaluate(tmp_path, gallery_videos=0)
    assert metrics["videos_scored"] == 0 and metrics["videos_failed"] == 0
    assert cv2.imread(str(tmp_path / "gallery.png")).shape == (120, 720, 3)
