"""Region proposals for Fast R-CNN, without labels: selective search (Uijlings et al.).

The paper's detector scores a fixed set of class-agnostic boxes per image;
selective search (OpenCV ximgproc, the "fast" mode of the original) groups
superpixels hierarchically by colour, texture, size and fill, and needs no
training. It runs on the image shrunk to ``max_side`` (its cost grows faster
than the pixel count) and the boxes are scaled back to the image's pixels.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
import threading

import cv2
import numpy as np

from motionmasks.detection import DetectionImage, read_rgb

MODES = ("fast", "quality", "single")

# Selective search ranks its boxes by hierarchy level times a random number, drawn from the
# C library's rand(). Unseeded, an image's proposals depend on how many images the same
# process searched before it, so a parallel run's proposals changed with the scheduling.
# Seeding rand() before each image makes them a function of the image alone; the lock
# keeps two threads of one process from sharing the sequence.
_RANK_SEED = 1  # rand()'s own default seed
_rand_lock = threading.Lock()


def _c_library() -> ctypes.CDLL:
    if sys.platform == "win32":
        return ctypes.CDLL(ctypes.util.find_library("ucrtbase") or "msvcrt")
    return ctypes.CDLL(None)  # the process's own symbols: the libc OpenCV calls


_libc = _c_library()


def selective_search(
    image: np.ndarray, *, max_side: int = 300, mode: str = "fast", max_proposals: int = 300, min_side: float = 8.0
) -> np.ndarray:
    """(K, 4) float32 boxes ``x1, y1, x2, y2`` (exclusive ends) in ``image``'s pixels, best first.

    Boxes thinner than ``min_side`` pixels (in the image) are dropped, exact
    duplicates after scaling removed, and at most ``max_proposals`` kept in
    selective search's own order (its hierarchy's ranking).
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    height, width = image.shape[:2]
    scale = min(1.0, max_side / max(height, width))
    small = image if scale == 1.0 else cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    search = cv2.ximgproc.segmentation.createSelectiveSearchSegmentation()
    search.setBaseImage(np.ascontiguousarray(small[..., ::-1]))  # OpenCV wants BGR
    if mode == "fast":
        search.switchToSelectiveSearchFast()
    elif mode == "quality":
        search.switchToSelectiveSearchQuality()
    else:
        search.switchToSingleStrategy()
    with _rand_lock:
        _libc.srand(_RANK_SEED)
        found = search.process()
    rects = np.asarray(found, np.float64).reshape(-1, 4)  # x, y, w, h at the small size
    boxes = np.column_stack([rects[:, 0], rects[:, 1], rects[:, 0] + rects[:, 2], rects[:, 1] + rects[:, 3]])
    boxes = np.clip(boxes / scale, 0, [width, height, width, height])
    keep = (boxes[:, 2] - boxes[:, 0] >= min_side) & (boxes[:, 3] - boxes[:, 1] >= min_side)
    boxes = np.round(boxes[keep], 2).astype(np.float32)
    _, first = np.unique(boxes, axis=0, return_index=True)
    return boxes[np.sort(first)][:max_proposals]


def propose(image: DetectionImage, **settings) -> np.ndarray:
    """Selective-search proposals of one dataset image (read from its file)."""
    return selective_search(read_rgb(image.path), **settings)


def recall_at(proposals: np.ndarray, objects: np.ndarray, iou: float) -> int:
    """How many of ``objects`` (N, 4) some proposal overlaps with IoU >= ``iou`` (proposal quality)."""
    from motionmasks.voc_ap import box_iou

    objects = np.asarray(objects, np.float64).reshape(-1, 4)
    if len(objects) == 0 or len(proposals) == 0:
        return 0
    return int(sum(box_iou(obj, proposals).max() >= iou for obj in objects))


def _propose_in_worker(job: tuple[DetectionImage, dict]) -> np.ndarray:
    cv2.setNumThreads(1)  # parallelism comes from the processes
    image, settings = job
    return propose(image, **settings)


def propose_all(
    images: list[DetectionImage], settings: dict, workers: int | None = None
) -> tuple[dict[str, np.ndarray], list[tuple[str, str]]]:
    """Proposals of many images over ``workers`` processes (default: one per core), outside any pipeline.

    Returns ({image id: boxes}, [(image id, reason)] for images that failed).
    """
    import multiprocessing
    import os
    from concurrent.futures import ProcessPoolExecutor

    found: dict[str, np.ndarray] = {}
    failed: list[tuple[str, str]] = []
    # spawn, not fork: a process forked while OpenCV's thread pool is alive can deadlock in cv2
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers or os.cpu_count() or 1, mp_context=context) as pool:
        futures = [pool.submit(_propose_in_worker, (image, settings)) for image in images]
        for image, future in zip(images, futures):
            try:
                found[image.image] = future.result()
            except Exception as exc:  # one bad image never stops the others
                failed.append((image.image, str(exc)))
    return found, failed
