"""Detection datasets: VOC and COCO readers, their repairs, image modes (motionmasks.detection)."""

import json

import numpy as np
import pytest
from conftest import shared_path
from PIL import Image

from motionmasks.detection import (
    DatasetError,
    class_names,
    load_dataset,
    read_rgb,
    restrict_to_classes,
    subset,
)
from motionmasks.synthetic import DETECTION_CLASSES, make_detection_image, write_detection_set


def _voc_xml(filename, size, objects):
    width, height = size
    parts = [f"<annotation><filename>{filename}</filename><size><width>{width}</width><height>{height}</height></size>"]
    for name, (x1, y1, x2, y2), difficult in objects:
        parts.append(
            f"<object><name>{name}</name><difficult>{difficult}</difficult>"
            f"<bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin><xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>"
        )
    return "".join(parts) + "</annotation>"


def _image(path, mode="RGB", size=(40, 30), fmt=None):
    image = Image.new(mode, size, 7 if mode in ("L", "P", "I;16") else (10, 20, 30, 128)[: len(mode)])
    image.save(path, format=fmt)


def test_voc_flat_folder_converts_corners_and_repairs_sizes_and_boxes(tmp_path):
    _image(tmp_path / "a.jpg")
    (tmp_path / "a.xml").write_text(
        _voc_xml(
            "a.jpg",
            (0, 0),  # size 0x0: read from the image
            [
                ("apple", (1, 1, 10, 20), 0),  # VOC 1-based inclusive -> (0, 0, 10, 20)
                ("pear", (-5, 5, 50, 25), 1),  # outside on two sides: clipped; difficult kept
                ("apple", (60, 5, 70, 10), 0),  # wholly outside: dropped
                ("apple", (7, 5, 5, 9), 0),  # xmax before xmin: dropped
            ],
        )
    )
    images, report = load_dataset(tmp_path)
    assert len(images) == 1
    (image,) = images
    assert (image.width, image.height) == (40, 30)
    assert image.boxes.tolist() == [[0, 0, 10, 20], [0, 4, 40, 25]]
    assert image.classes == ("apple", "pear") and image.difficult.tolist() == [False, True]
    metrics = report.as_metrics()
    assert metrics == {
        "images": 1,
        "objects": 2,
        "difficult": 1,
        "size_fixed": 1,
        "boxes_clipped": 1,
        "boxes_dropped": 2,
        "unknown_class": 0,
        "images_failed": 0,
    }


def test_voc_wrong_annotated_size_is_counted_and_the_image_wins(tmp_path):
    _image(tmp_path / "a.jpg", size=(40, 30))
    (tmp_path / "a.xml").write_text(_voc_xml("a.jpg", (400, 300), [("x", (1, 1, 39, 29), 0)]))
    images, report = load_dataset(tmp_path)
    assert (images[0].width, images[0].height) == (40, 30) and report.size_fixed == 1 and report.boxes_clipped == 0


def test_voc_bad_items_are_named_and_the_others_go_on(tmp_path):
    _image(tmp_path / "good.jpg")
    (tmp_path / "good.xml").write_text(_voc_xml("good.jpg", (40, 30), [("x", (1, 1, 9, 9), 0)]))
    (tmp_path / "broken.xml").write_text("<annotation><filename>")
    (tmp_path / "lost.xml").write_text(_voc_xml("lost.jpg", (40, 30), [("x", (1, 1, 9, 9), 0)]))
    (tmp_path / "corrupt.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    (tmp_path / "corrupt.xml").write_text(_voc_xml("corrupt.jpg", (40, 30), [("x", (1, 1, 9, 9), 0)]))
    images, report = load_dataset(tmp_path)
    assert [i.image for i in images] == ["good"]
    failed = dict(report.failures)
    assert set(failed) == {"broken", "lost", "corrupt"}
    assert "not readable XML" in failed["broken"] and "not found" in failed["lost"]
    assert "not a readable image" in failed["corrupt"]


def test_voc_devkit_layout_and_annotation_naming_another_folder_is_refused(tmp_path):
    (tmp_path / "Annotations").mkdir()
    (tmp_path / "JPEGImages").mkdir()
    _image(tmp_path / "JPEGImages" / "a.jpg")
    (tmp_path / "Annotations" / "a.xml").write_text(_voc_xml("../../secret.jpg", (40, 30), [("x", (1, 1, 9, 9), 0)]))
    _image(tmp_path / "secret.jpg")
    (image,), _ = load_dataset(tmp_path)
    assert image.path == str(tmp_path / "JPEGImages" / "a.jpg")  # the stem's image, not a path outside


def test_coco_boxes_crowds_and_unknown_categories(tmp_path):
    (tmp_path / "images").mkdir()
    _image(tmp_path / "images" / "one.png", size=(50, 40))
    data = {
        "images": [{"id": 1, "file_name": "one.png", "width": 50, "height": 40}],
        "categories": [{"id": 3, "name": "cat"}],
        "annotations": [
            {"image_id": 1, "category_id": 3, "bbox": [5, 6, 10, 12]},
            {"image_id": 1, "category_id": 3, "bbox": [40, 30, 20, 20], "iscrowd": 1},
            {"image_id": 1, "category_id": 9, "bbox": [1, 1, 5, 5]},
            {"image_id": 1, "category_id": 3, "bbox": "nonsense"},
        ],
    }
    (tmp_path / "instances.json").write_text(json.dumps(data))
    (image,), report = load_dataset(tmp_path)
    assert image.boxes.tolist() == [[5, 6, 15, 18], [40, 30, 50, 40]]
    assert image.difficult.tolist() == [False, True]
    assert report.boxes_clipped == 1 and report.boxes_dropped == 2 and report.size_fixed == 0


def test_not_a_dataset_says_what_is_expected(tmp_path):
    with pytest.raises(DatasetError, match="no such dataset"):
        load_dataset(tmp_path / "missing")
    with pytest.raises(DatasetError, match="neither a VOC dataset"):
        load_dataset(tmp_path)
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(DatasetError, match="not a COCO detection file"):
        load_dataset(tmp_path / "bad.json")


@pytest.mark.parametrize(
    ("mode", "fmt", "expected"),
    [
        ("RGB", "PNG", (10, 20, 30)),  # PNG data behind a .jpg name
        ("RGBA", "PNG", (132, 137, 142)),  # half transparent on white: 255 + (c - 255) * 128/255
        ("L", "JPEG", (7, 7, 7)),
        ("P", "PNG", None),
        ("I;16", "PNG", (0, 0, 0)),  # a constant 16-bit image has no range: black
    ],
)
def test_read_rgb_converts_every_mode(tmp_path, mode, fmt, expected):
    path = tmp_path / "x.jpg"
    _image(path, mode, fmt=fmt)
    rgb = read_rgb(path)
    assert rgb.shape == (30, 40, 3) and rgb.dtype == np.uint8
    if expected is not None:
        assert tuple(int(v) for v in rgb[5, 5]) == pytest.approx(expected, abs=1)


def test_read_rgb_refuses_oversized_and_broken_files(tmp_path):
    _image(tmp_path / "x.png", size=(100, 100), fmt="PNG")
    with pytest.raises(ValueError, match="over the limit"):
        read_rgb(tmp_path / "x.png", max_pixels=5000)
    (tmp_path / "y.png").write_bytes(b"nothing")
    with pytest.raises(ValueError, match="y.png: not a readable image"):
        read_rgb(tmp_path / "y.png")


def test_classes_restriction_and_seeded_subsets(tmp_path):
    write_detection_set(tmp_path, images=6, seed=0, width=96, height=64)
    images, _ = load_dataset(tmp_path)
    names = class_names(images)
    assert set(names) <= set(DETECTION_CLASSES) and names == sorted(names)
    only = restrict_to_classes(images, names[:1])
    assert all(set(i.classes) <= {names[0]} for i in only)
    assert [i.image for i in subset(images, 3, seed=4)] == [i.image for i in subset(images, 3, seed=4)]
    assert len(subset(images, 3, seed=4)) == 3 and subset(images, None, seed=0) == images


def test_synthetic_detection_boxes_are_the_objects_exact_extent(tmp_path):
    image, objects = make_detection_image(3, width=120, height=90)
    assert image.shape == (90, 120, 3) and objects
    for name, (x1, y1, x2, y2) in objects:
        assert name in DETECTION_CLASSES and 0 <= x1 < x2 <= 120 and 0 <= y1 < y2 <= 90
    again, same = make_detection_image(3, width=120, height=90)
    assert np.array_equal(image, again) and same == objects
    write_detection_set(tmp_path, images=1, seed=3, width=120, height=90)
    (record,), _ = load_dataset(tmp_path)  # written as VOC and read back: the same boxes
    assert record.boxes.tolist() == [list(box) for _, box in objects]


def test_fruits_voc_reads_with_its_known_defects_repaired():
    train, report = load_dataset(shared_path("data", "fruits-voc", "train_zip", "train"))
    assert len(train) == 240 and report.failures == [] and class_names(train) == ["apple", "banana", "orange"]
    assert report.size_fixed >= 30  # 0x0 sizes in the XML
    rgba = [i for i in train if Image.open(i.path).mode in ("RGBA", "P")]
    assert rgba and read_rgb(rgba[0].path).shape[2] == 3
