"""Tiny synthetic clips shared by the segmentation tests."""

import cv2
import numpy as np


def textured(h, w, seed=0, base=(60, 140, 60), spread=40.0):
    rng = np.random.default_rng(seed)
    noise = cv2.GaussianBlur(rng.normal(0, spread, (h, w, 3)), (0, 0), 1.5)
    return np.clip(np.array(base) + noise, 0, 255).astype(np.uint8)


def moving_square(t=12, h=64, w=96, side=20, step=(1, 2), seed=0):
    """Static textured green background, a textured red square moving by ``step`` px per frame."""
    background = textured(h, w, seed)
    patch = textured(side, side, seed + 1, base=(210, 40, 40), spread=15.0)
    frames = np.empty((t, h, w, 3), np.uint8)
    masks = np.zeros((t, h, w), bool)
    for i in range(t):
        y = h // 2 - side // 2 + (i - t // 2) * step[0]
        x = w // 2 - side // 2 + (i - t // 2) * step[1]
        frames[i] = background
        frames[i, y : y + side, x : x + side] = patch
        masks[i, y : y + side, x : x + side] = True
    return frames, masks


def iou(a, b):
    return (a & b).sum() / max(1, (a | b).sum())
