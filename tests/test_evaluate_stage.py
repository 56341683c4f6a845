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
