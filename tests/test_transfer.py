"""The transfer test end to end on tiny synthetic sets: proposals, run_transfer, the AP it reports, the command."""

import json

import cv2
import numpy as np
import pytest
import torch

from models.checkpoint import save_masknet
from models.masknet import MaskNet
from motionmasks.cli import main
from motionmasks.detection import DetectionImage, load_dataset
from motionmasks.proposals import propose_all, recall_at, selective_search
from motionmasks.synthetic import write_detection_set
from motionmasks.transfer import TransferError, TransferSettings, run_transfer, score
from motionmasks.voc_ap import Detection

TINY = TransferSettings(max_side=96, iterations=2, rois_per_image=8)
SMALL_TRUNK = {"width": 0.1, "batch_norm": True}


@pytest.fixture(scope="module")
def tiny_sets(tmp_path_factory):
    root = tmp_path_factory.mktemp("detection")
    write_detection_set(root / "train", images=6, seed=0, width=96, height=72)
    write_detection_set(root / "test", images=3, seed=100, width=96, height=72)
    sets = {}
    for split in ("train", "test"):
        images, _ = load_dataset(root / split)
        proposals, failed = propose_all(images, {"max_side": 96, "max_proposals": 40}, workers=1)
        assert not failed
        sets[split] = (images, proposals)
    return root, sets


def test_selective_search_finds_a_plain_rectangle():
    image = np.full((90, 120, 3), 40, np.uint8)
    image[20:60, 30:100] = (230, 200, 30)
    boxes = selective_search(image, max_side=120, max_proposals=50)
    assert 0 < len(boxes) <= 50 and boxes.dtype == np.float32
    assert (boxes[:, 0] >= 0).all() and (boxes[:, 2] <= 120).all() and (boxes[:, 3] <= 90).all()
    assert recall_at(boxes, np.array([[30, 20, 100, 60]]), 0.9) == 1
    shrunk = selective_search(image, max_side=60, max_proposals=50)  # searched at half size, boxes scaled back
    assert recall_at(shrunk, np.array([[30, 20, 100, 60]]), 0.8) == 1


def test_selective_search_proposals_depend_on_the_image_alone():
    # Its ranking draws random numbers: the proposals of an image must not depend on which
    # images the same process searched before (CI once saw them change with scheduling).
    rng = np.random.default_rng(3)
    blocks = [rng.integers(0, 255, (12, 16, 3), dtype=np.uint8) for _ in range(2)]
    first, second = (cv2.resize(b, (160, 120), interpolation=cv2.INTER_NEAREST) for b in blocks)
    alone = selective_search(first, max_side=160, max_proposals=300)
    selective_search(second, max_side=160, max_proposals=300)
    after_another = selective_search(first, max_side=160, max_proposals=300)
    assert len(alone) > 20
    np.testing.assert_array_equal(alone, after_another)


def test_recall_at_counts_covered_objects():
    proposals = np.array([[0, 0, 10, 10], [50, 50, 60, 60]], np.float32)
    objects = np.array([[0, 0, 10, 12], [20, 20, 30, 30]], np.float32)
    assert recall_at(proposals, objects, 0.5) == 1 and recall_at(proposals, objects, 0.9) == 0
    assert recall_at(proposals, np.zeros((0, 4)), 0.5) == 0


def test_score_is_one_for_perfect_detections_and_counts_a_miss():
    images = [
        DetectionImage("a", "a.jpg", 50, 50, np.array([[0, 0, 10, 10], [20, 20, 40, 40]]), ("cat", "dog"), [0, 0]),
        DetectionImage("b", "b.jpg", 50, 50, np.array([[5, 5, 25, 25]]), ("cat",), [0]),
    ]
    perfect = [
        Detection("a", 1, 0.9, (0, 0, 10, 10)),
        Detection("a", 2, 0.8, (20, 20, 40, 40)),
        Detection("b", 1, 0.7, (5, 5, 25, 25)),
    ]
    result = score(perfect, images, ["cat", "dog"])
    assert result["mAP"] == 1.0 and result["mAP_11point"] == 1.0
    missing_b = score(perfect[:2], images, ["cat", "dog"])
    # cat: one of two found, at precision 1 -> area AP 0.5; 11-point: 6 of 11 recall levels reached
    assert missing_b["AP"] == {"cat": 0.5, "dog": 1.0}
    assert missing_b["AP_11point"]["cat"] == pytest.approx(6 / 11, abs=1e-6)


def test_run_transfer_is_deterministic_and_reports_ap(tiny_sets):
    _, sets = tiny_sets
    (train, train_props), (test, test_props) = sets["train"], sets["test"]
    runs = [
        run_transfer(
            train,
            train_props,
            test,
            test_props,
            trunk="random",
            depth="c2",
            train_size=None,
            settings=TINY,
            random_like=SMALL_TRUNK,
        )
        for _ in range(2)
    ]
    (metrics, timing), (again, _) = runs
    assert metrics == again
    assert metrics["train_images"] == 6 and metrics["test_images"] == 3 and metrics["iterations"] == 2
    assert set(metrics["AP"]) == set(metrics["classes"]) and 0 <= metrics["mAP"] <= 1
    assert timing["train_images_per_s"] > 0 and "seconds" not in json.dumps(metrics)


def test_run_transfer_from_a_checkpoint_with_a_scarce_subset(tiny_sets, tmp_path):
    _, sets = tiny_sets
    torch.manual_seed(0)
    save_masknet(tmp_path / "model.pt", MaskNet(**SMALL_TRUNK))
    (train, train_props), (test, test_props) = sets["train"], sets["test"]
    metrics, _ = run_transfer(
        train, train_props, test, test_props, trunk=tmp_path / "model.pt", depth="c5", train_size=3, settings=TINY
    )
    assert metrics["train_images"] == 3 and metrics["trunk"] == "checkpoint"


def test_run_transfer_refuses_bad_settings_in_one_line(tiny_sets, tmp_path):
    _, sets = tiny_sets
    (train, train_props), (test, test_props) = sets["train"], sets["test"]
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(TransferError, match="junk.pt: not a readable checkpoint"):
        run_transfer(
            train,
            train_props,
            test,
            test_props,
            trunk=tmp_path / "junk.pt",
            depth="all",
            train_size=None,
            settings=TINY,
        )
    with pytest.raises(TransferError, match="fine-tuning depth"):
        run_transfer(train, train_props, test, test_props, trunk="random", depth="c9", train_size=None, settings=TINY)
    no_objects = [DetectionImage("x", i.path, i.width, i.height, np.zeros((0, 4)), (), []) for i in train]
    with pytest.raises(TransferError, match="no image with a non-difficult object"):
        run_transfer(
            no_objects, train_props, test, test_props, trunk="random", depth="all", train_size=None, settings=TINY
        )


def _as_coco(voc_folder, json_path):
    images, _ = load_dataset(voc_folder)
    names = sorted({c for i in images for c in i.classes})
    data = {"images": [], "annotations": [], "categories": [{"id": k + 1, "name": n} for k, n in enumerate(names)]}
    for number, image in enumerate(images):
        data["images"].append({"id": number, "file_name": f"JPEGImages/{image.image}.jpg", "width": 0, "height": 0})
        for box, name in zip(image.boxes.tolist(), image.classes):
            x1, y1, x2, y2 = box
            data["annotations"].append(
                {"image_id": number, "category_id": names.index(name) + 1, "bbox": [x1, y1, x2 - x1, y2 - y1]}
            )
    json_path.write_text(json.dumps(data))


def test_transfer_command_on_voc_and_coco_writes_the_stage_metrics(tiny_sets, tmp_path, capsys):
    root, _ = tiny_sets
    _as_coco(root / "test", root / "test" / "test.json")
    out = tmp_path / "out"
    args = [
        "transfer",
        "--train",
        str(root / "train"),
        "--test",
        str(root / "test" / "test.json"),
        "--trunk",
        "random",
        "--freeze",
        "c4",
        "--train-size",
        "4",
        "--out",
        str(out),
        "--workers",
        "1",
        "--set",
        "iterations=2",
        "--set",
        "max_side=96",
        "--set",
        "rois_per_image=8",
        "--params",
        str(tmp_path / "none.yaml"),
    ]
    assert main(args) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["depth"] == "c4" and metrics["train_images"] == 4 and metrics["test_images"] == 3
    assert metrics["test_dataset"]["size_fixed"] == 3  # the COCO file says 0 x 0
    assert {"mAP", "mAP_11point", "AP", "AP_11point"} <= set(metrics)
    assert main(args) == 0  # its own folder is replaced


def test_transfer_command_refuses_what_it_must_not_touch_or_cannot_read(tiny_sets, tmp_path, capsys):
    root, _ = tiny_sets
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    base = [
        "transfer",
        "--train",
        str(root / "train"),
        "--test",
        str(root / "test"),
        "--freeze",
        "all",
        "--params",
        str(tmp_path / "none.yaml"),
    ]
    assert main([*base, "--trunk", "random", "--out", str(mine)]) == 2
    assert "not written by motionmasks" in capsys.readouterr().err and (mine / "notes.txt").read_text() == "keep"
    assert main([*base, "--trunk", str(tmp_path / "missing.pt"), "--out", str(tmp_path / "o")]) == 2
    assert "no such checkpoint" in capsys.readouterr().err
    assert main([*base, "--trunk", "random", "--out", str(tmp_path / "o"), "--set", "iterations=0"]) == 2
    assert "transfer.solver.iterations" in capsys.readouterr().err
    assert main([*base, "--trunk", "random", "--out", str(tmp_path / "o"), "--train-size", "0"]) == 2
    assert "--train-size 0: must be at least 1" in capsys.readouterr().err
    bad = [
        "transfer",
        "--train",
        str(tmp_path),
        "--test",
        str(root / "test"),
        "--freeze",
        "all",
        "--trunk",
        "random",
        "--out",
        str(tmp_path / "o"),
        "--params",
        str(tmp_path / "none.yaml"),
    ]
    assert main(bad) == 2
    assert "--train:" in capsys.readouterr().err and not (tmp_path / "o").exists()
