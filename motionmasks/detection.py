"""Object-detection datasets for the transfer stage: Pascal VOC (XML) and COCO (JSON).

Both are read into one typed record per image, :class:`DetectionImage`, the
only form the proposals and transfer stages see. Reading is defensive, since
real annotation files are often wrong:

- the image's real size comes from the image file's header; an annotated size
  that is missing, zero or different is counted (``size_fixed``) and ignored;
- boxes partly outside the image (or with negative coordinates) are clipped to
  it and counted (``boxes_clipped``); boxes with no area left, or unreadable
  coordinates, are dropped and counted (``boxes_dropped``);
- an image whose file or annotation cannot be read is reported with its name
  (``failures``) and the others go on;
- VOC's *difficult* objects (COCO's *crowd* regions) are kept, marked, left
  out of training and ignored by the AP (VOC's rule).

Images of any mode (RGBA, palette, grayscale, 16-bit, CMYK) and of any real
format behind any file extension (PNG data named .jpg) decode to RGB through
:func:`read_rgb`. Boxes are ``(x1, y1, x2, y2)`` pixels with exclusive ends;
VOC's 1-based inclusive corners are converted on reading.
"""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ElementTree
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from motionmasks.video import DEFAULT_MAX_FRAME_PIXELS

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")


class DatasetError(ValueError):
    """A dataset folder is not a VOC or COCO dataset this reader understands."""


@dataclass(frozen=True, eq=False)
class DetectionImage:
    """One image and its objects: what every stage after ``proposals`` reads.

    ``boxes`` (N, 4) float32 ``x1, y1, x2, y2`` in pixels of the image as
    stored (exclusive ends, inside the image, positive area); ``classes`` (N,)
    class names; ``difficult`` (N,) bool.
    """

    image: str  # unique id in its dataset (file name without folder for VOC, file_name for COCO)
    path: str
    width: int
    height: int
    boxes: np.ndarray
    classes: tuple[str, ...]
    difficult: np.ndarray

    def __post_init__(self) -> None:
        boxes = np.asarray(self.boxes, np.float32).reshape(-1, 4)
        object.__setattr__(self, "boxes", boxes)
        object.__setattr__(self, "difficult", np.asarray(self.difficult, bool).reshape(-1))
        object.__setattr__(self, "classes", tuple(str(c) for c in self.classes))
        if not len(boxes) == len(self.classes) == len(self.difficult):
            raise ValueError(
                f"{self.image}: {len(boxes)} boxes, {len(self.classes)} classes, {len(self.difficult)} flags"
            )


@dataclass
class DatasetReport:
    """What reading a dataset had to repair or skip (the stage's metrics)."""

    images: int = 0
    objects: int = 0
    difficult: int = 0
    size_fixed: int = 0  # annotated size missing, zero or not the image's
    boxes_clipped: int = 0  # partly outside the image (negative coordinates included)
    boxes_dropped: int = 0  # no area inside the image, or unreadable coordinates
    unknown_class: int = 0  # test objects of a class the training set lacks (dropped)
    failures: list[tuple[str, str]] = field(default_factory=list)  # (item, reason): images skipped

    def as_metrics(self) -> dict[str, int]:
        return {
            "images": self.images,
            "objects": self.objects,
            "difficult": self.difficult,
            "size_fixed": self.size_fixed,
            "boxes_clipped": self.boxes_clipped,
            "boxes_dropped": self.boxes_dropped,
            "unknown_class": self.unknown_class,
            "images_failed": len(self.failures),
        }


def read_rgb(path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_FRAME_PIXELS) -> np.ndarray:
    """Any still image file -> (H, W, 3) uint8 RGB, whatever its mode or real format.

    Transparent pixels are composited on white (how viewers and annotators
    saw them); 16-bit and float images are scaled to 8 bits by their range.
    Raises ``ValueError`` naming the file for an unreadable or oversized image.
    """
    try:
        with Image.open(path) as image:
            if image.width * image.height > max_pixels:
                raise ValueError(f"{path}: {image.width}x{image.height} is over the limit of {max_pixels} pixels")
            image.load()
            return _rgb_array(image)
    except ValueError:
        raise
    except Exception as exc:  # PIL raises many kinds for a broken file
        raise ValueError(f"{path}: not a readable image ({type(exc).__name__}: {exc})") from None


def _rgb_array(image: Image.Image) -> np.ndarray:
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        values = np.asarray(image, np.float64)
        low, high = float(values.min()), float(values.max())
        gray = np.zeros_like(values) if high <= low else (values - low) * (255.0 / (high - low))
        return np.repeat(np.round(gray).astype(np.uint8)[..., None], 3, axis=2)
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        canvas.alpha_composite(rgba)
        return np.asarray(canvas.convert("RGB"))
    return np.asarray(image.convert("RGB"))


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """(width, height) from the file's header (no decoding)."""
    try:
        with Image.open(path) as image:
            return image.size
    except Exception as exc:
        raise ValueError(f"{path}: not a readable image ({type(exc).__name__}: {exc})") from None


def sanitise_boxes(boxes: np.ndarray, width: int, height: int, report: DatasetReport) -> tuple[np.ndarray, np.ndarray]:
    """Clip (N, 4) boxes to the image; returns (clipped boxes, kept mask) and counts both."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    finite = np.isfinite(boxes).all(axis=1)
    clipped = boxes.copy()
    clipped[:, [0, 2]] = np.clip(np.nan_to_num(boxes[:, [0, 2]]), 0, width)
    clipped[:, [1, 3]] = np.clip(np.nan_to_num(boxes[:, [1, 3]]), 0, height)
    keep = finite & (clipped[:, 2] - clipped[:, 0] >= 1) & (clipped[:, 3] - clipped[:, 1] >= 1)
    report.boxes_clipped += int((keep & (np.abs(clipped - boxes) > 1e-6).any(axis=1)).sum())
    report.boxes_dropped += int((~keep).sum())
    return clipped.astype(np.float32), keep


def load_dataset(location: str | os.PathLike) -> tuple[list[DetectionImage], DatasetReport]:
    """Read a VOC or COCO dataset, whichever ``location`` is.

    COCO: a ``.json`` file, or a folder holding exactly one (at its top or in
    ``annotations/``). VOC: a folder with ``Annotations/`` and ``JPEGImages/``
    (the VOCdevkit layout), or a folder of ``.xml`` files beside their images.
    """
    location = Path(location)
    if not location.exists():
        raise DatasetError(f"{location}: no such dataset file or folder")
    if location.is_file():
        if location.suffix.lower() != ".json":
            raise DatasetError(f"{location}: a dataset is a folder (VOC or COCO) or a COCO .json file")
        return read_coco(location)
    if (location / "Annotations").is_dir() or any(location.glob("*.xml")):
        return read_voc(location)
    jsons = sorted(location.glob("*.json")) + sorted((location / "annotations").glob("*.json"))
    if len(jsons) == 1:
        return read_coco(jsons[0])
    if len(jsons) > 1:
        raise DatasetError(f"{location}: {len(jsons)} COCO .json files; name the one to use")
    raise DatasetError(f"{location}: neither a VOC dataset (Annotations/ or *.xml) nor a COCO one (*.json)")


def read_voc(folder: str | os.PathLike) -> tuple[list[DetectionImage], DatasetReport]:
    folder = Path(folder)
    if (folder / "Annotations").is_dir():
        xml_files, image_dir = sorted((folder / "Annotations").glob("*.xml")), folder / "JPEGImages"
    else:
        xml_files, image_dir = sorted(folder.glob("*.xml")), folder
    if not xml_files:
        raise DatasetError(f"{folder}: no VOC annotation (.xml) files")
    report = DatasetReport()
    images: list[DetectionImage] = []
    for xml_file in xml_files:
        try:
            images.append(_voc_image(xml_file, image_dir, report))
        except ValueError as exc:
            report.failures.append((xml_file.stem, str(exc)))
    return _finish(images, report)


def _voc_image(xml_file: Path, image_dir: Path, report: DatasetReport) -> DetectionImage:
    try:
        root = ElementTree.parse(xml_file).getroot()
    except ElementTree.ParseError as exc:
        raise ValueError(f"{xml_file}: not readable XML ({exc})") from None
    path = _find_image(image_dir, (root.findtext("filename") or "").strip(), xml_file.stem)
    width, height = image_size(path)
    annotated = (_number(root.findtext("size/width")), _number(root.findtext("size/height")))
    if annotated != (width, height):
        report.size_fixed += 1
    boxes, classes, difficult = [], [], []
    for obj in root.iter("object"):
        name = (obj.findtext("name") or "").strip()
        corners = [_number(obj.findtext(f"bndbox/{key}")) for key in ("xmin", "ymin", "xmax", "ymax")]
        if not name or any(c is None for c in corners):
            report.boxes_dropped += 1
            continue
        x1, y1, x2, y2 = (float(c) for c in corners)  # type: ignore[arg-type]
        boxes.append((x1 - 1, y1 - 1, x2, y2))  # VOC: 1-based, inclusive
        classes.append(name)
        difficult.append(bool(_number(obj.findtext("difficult")) or 0))
    return _image(xml_file.stem, path, width, height, boxes, classes, difficult, report)


def read_coco(json_file: str | os.PathLike) -> tuple[list[DetectionImage], DatasetReport]:
    json_file = Path(json_file)
    try:
        data = json.loads(json_file.read_text())
        entries, categories, annotations = data["images"], data["categories"], data.get("annotations", [])
        names = {int(c["id"]): str(c["name"]).strip() for c in categories}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DatasetError(f"{json_file}: not a COCO detection file ({type(exc).__name__}: {exc})") from None
    root = json_file.parent.parent if json_file.parent.name == "annotations" else json_file.parent
    by_image: dict[object, list[dict]] = {}
    for annotation in annotations:
        by_image.setdefault(annotation.get("image_id"), []).append(annotation)
    report = DatasetReport()
    images: list[DetectionImage] = []
    for entry in entries:
        name = str(entry.get("file_name", entry.get("id", "?")))
        try:
            path = _find_image(root / "images" if (root / "images").is_dir() else root, name, Path(name).stem)
            width, height = image_size(path)
            if (_number(entry.get("width")), _number(entry.get("height"))) != (width, height):
                report.size_fixed += 1
            boxes, classes, difficult = [], [], []
            for annotation in by_image.get(entry.get("id"), []):
                bbox, category = annotation.get("bbox"), names.get(annotation.get("category_id"))  # type: ignore[arg-type]
                values = [_number(v) for v in bbox] if isinstance(bbox, list) and len(bbox) == 4 else [None]
                if category is None or any(v is None for v in values):
                    report.boxes_dropped += 1
                    continue
                x, y, w, h = (float(v) for v in values)  # type: ignore[arg-type]
                boxes.append((x, y, x + w, y + h))
                classes.append(category)
                difficult.append(bool(annotation.get("iscrowd", 0)))
            images.append(_image(name, path, width, height, boxes, classes, difficult, report))
        except ValueError as exc:
            report.failures.append((name, str(exc)))
    return _finish(images, report)


def _image(
    image_id: str,
    path: Path,
    width: int,
    height: int,
    boxes: list,
    classes: list[str],
    difficult: list[bool],
    report: DatasetReport,
) -> DetectionImage:
    clipped, keep = sanitise_boxes(np.asarray(boxes, np.float64).reshape(-1, 4), width, height, report)
    return DetectionImage(
        image=image_id,
        path=str(path),
        width=width,
        height=height,
        boxes=clipped[keep],
        classes=tuple(c for c, k in zip(classes, keep) if k),
        difficult=np.asarray(difficult, bool).reshape(-1)[keep],
    )


def _finish(images: list[DetectionImage], report: DatasetReport) -> tuple[list[DetectionImage], DatasetReport]:
    seen: set[str] = set()
    unique = []
    for image in images:
        if image.image in seen:
            report.failures.append((image.image, "a second image with this id (the first is kept)"))
            continue
        seen.add(image.image)
        unique.append(image)
    report.images = len(unique)
    report.objects = sum(len(i.classes) for i in unique)
    report.difficult = sum(int(i.difficult.sum()) for i in unique)
    return unique, report


def _find_image(folder: Path, filename: str, stem: str) -> Path:
    """The image an annotation names; else the one with the annotation's stem."""
    if filename:
        candidate = folder / filename
        if candidate.resolve().is_relative_to(folder.resolve()) and candidate.is_file():
            return candidate
    for suffix in IMAGE_SUFFIXES:
        for name in (stem + suffix, stem + suffix.upper()):
            if (folder / name).is_file():
                return folder / name
    raise ValueError(f"{stem}: image {filename or stem + '.*'} not found in {folder}")


def _number(value: object) -> float | None:
    if value is None:
        return None
    try:
        number = float(str(value).strip())
    except ValueError:
        return None
    return number if np.isfinite(number) else None


def class_names(images: Sequence[DetectionImage]) -> list[str]:
    """The classes of a training set, sorted (label k + 1 is ``names[k]``; 0 is background)."""
    return sorted({c for image in images for c in image.classes})


def restrict_to_classes(
    images: Sequence[DetectionImage], names: Sequence[str], report: DatasetReport | None = None
) -> list[DetectionImage]:
    """Drop objects of classes not in ``names`` (a test set's objects the training set never saw)."""
    allowed = set(names)
    out = []
    for image in images:
        keep = np.array([c in allowed for c in image.classes], bool)
        if report is not None:
            report.unknown_class += int((~keep).sum())
        out.append(
            DetectionImage(
                image.image,
                image.path,
                image.width,
                image.height,
                image.boxes[keep],
                tuple(c for c, k in zip(image.classes, keep) if k),
                image.difficult[keep],
            )
        )
    return out


def subset(images: Sequence[DetectionImage], size: int | None, seed: int) -> list[DetectionImage]:
    """``size`` images drawn at random (seeded) without replacement, in their original order; None = all."""
    if size is None or size >= len(images):
        return list(images)
    chosen = np.sort(np.random.default_rng(seed).permutation(len(images))[:size])
    return [images[i] for i in chosen]
