import cv2
import numpy as np
import pandas as pd
import pytest

from motionmasks.formats import read_masks
from motionmasks.synthetic import BACKGROUND_PHOTOS, make_video, write_synthetic_corpus
from motionmasks.video import probe, read_frames

SEEDS = (0, 1, 2)


@pytest.fixture(scope="module")
def videos():
    """Default-size videos (320x240, 2-4 shots of 30-60 frames)."""
    return {seed: make_video(seed) for seed in SEEDS}


@pytest.fixture(scope="module")
def camera_only():
    """The same seeds with no objects: the scenes and camera alone."""
    return {seed: make_video(seed, max_objects=0) for seed in SEEDS}


def _mean_abs_diff(frames: np.ndarray) -> np.ndarray:
    """(T-1,) mean absolute grey-level difference between consecutive frames."""
    grey = frames.astype(np.float32).mean(axis=-1)
    return np.abs(np.diff(grey, axis=0)).mean(axis=(1, 2))


def test_same_seed_gives_identical_arrays():
    kwargs = dict(width=96, height=64, shot_frames=(5, 9))
    a, b = make_video(7, **kwargs), make_video(7, **kwargs)
    assert np.array_equal(a.frames, b.frames)
    assert np.array_equal(a.masks, b.masks)
    assert np.array_equal(a.camera, b.camera)
    assert (a.shots, a.backgrounds, a.fps) == (b.shots, b.backgrounds, b.fps)
    other = make_video(8, **kwargs)
    assert a.frames.shape != other.frames.shape or not np.array_equal(a.frames, other.frames)


def test_arrays_have_the_documented_shapes_and_dtypes(videos):
    video = videos[0]
    t = video.shots[-1][1] + 1
    assert video.frames.shape == (t, 240, 320, 3) and video.frames.dtype == np.uint8
    assert video.masks.shape == (t, 240, 320) and video.masks.dtype == bool
    assert video.camera.shape == (t, 2, 3)
    assert video.fps == 25.0


@pytest.mark.parametrize("seed", range(6))
def test_shots_are_contiguous_and_cover_all_frames(seed):
    video = make_video(seed, width=64, height=48, shots=(2, 4), shot_frames=(3, 7))
    firsts = [first for first, _ in video.shots]
    assert firsts[0] == 0 and video.shots[-1][1] == len(video.frames) - 1
    assert all(last + 1 == first for (_, last), (first, _) in zip(video.shots, video.shots[1:]))
    assert 2 <= len(video.shots) <= 4
    assert all(3 <= last - first + 1 <= 7 for first, last in video.shots)
    assert video.cuts == firsts[1:]


def test_fixed_shot_count_and_length():
    video = make_video(0, width=64, height=48, shots=3, shot_frames=(4, 4))
    assert video.shots == [(0, 3), (4, 7), (8, 11)]
    assert video.cuts == [4, 8]


def test_consecutive_shots_use_different_photographs():
    video = make_video(0, width=32, height=32, shots=len(BACKGROUND_PHOTOS) + 5, shot_frames=(1, 1))
    assert all(a != b for a, b in zip(video.backgrounds, video.backgrounds[1:]))
    assert set(video.backgrounds[: len(BACKGROUND_PHOTOS)]) == set(BACKGROUND_PHOTOS)  # all used before a repeat


def test_masks_are_nonempty_and_cover_3_to_30_percent(videos):
    for video in videos.values():
        area = video.masks.mean(axis=(1, 2))
        assert area.min() >= 0.03 and area.max() <= 0.30


def test_masks_are_exactly_the_drawn_pixels(videos, camera_only):
    for seed in SEEDS:
        video, scene = videos[seed], camera_only[seed]
        assert not scene.masks.any()
        changed = np.any(video.frames != scene.frames, axis=-1)
        # Hard alpha: outside the mask nothing of the objects shows, bit for bit.
        assert not np.any(changed & ~video.masks)
        assert np.count_nonzero(changed) > 0.9 * np.count_nonzero(video.masks)  # inside, the object covers the scene


def test_cut_changes_frames_far_more_than_motion_within_a_shot(videos):
    for video in videos.values():
        diff = _mean_abs_diff(video.frames)
        across = diff[[cut - 1 for cut in video.cuts]]
        within = np.delete(diff, [cut - 1 for cut in video.cuts])
        assert across.min() > 2 * np.median(within)
        assert across.min() > within.max()


def test_camera_pans_by_the_recorded_shift(camera_only):
    window = cv2.createHanningWindow((320, 240), cv2.CV_32F)
    centre = np.array([159.5, 119.5])
    for video in camera_only.values():
        grey = video.frames.astype(np.float32).mean(axis=-1)
        cam = video.camera
        for first, last in video.shots:
            for i in range(first, last):
                (dx, dy), _ = cv2.phaseCorrelate(grey[i], grey[i + 1], window)
                # Where the background under the frame centre is seen one frame later.
                seen = np.linalg.solve(cam[i + 1, :, :2], cam[i, :, :2] @ centre + cam[i, :, 2] - cam[i + 1, :, 2])
                expected = seen - centre
                assert np.hypot(*expected) > 1.0
                assert np.hypot(dx - expected[0], dy - expected[1]) < 1.5


def test_some_seeds_zoom_and_zoom_probability_is_respected():
    def zooms(seed, **kwargs):
        video = make_video(seed, width=48, height=32, shot_frames=(4, 6), **kwargs)
        zoom = video.camera[:, 0, 0]
        return [abs(np.log(zoom[last] / zoom[first])) > 0.15 for first, last in video.shots]

    default = [z for seed in range(8) for z in zooms(seed)]
    assert any(default) and not all(default)
    assert not any(z for seed in range(4) for z in zooms(seed, zoom_probability=0.0))
    assert all(z for seed in range(4) for z in zooms(seed, zoom_probability=1.0))


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_object_moves_differently_from_the_background(seed):
    video = make_video(seed, max_objects=1, shot_frames=(15, 20))
    ys, xs = np.mgrid[:240, :320].astype(np.float64)
    area = video.masks.sum(axis=(1, 2))
    centroid = np.stack([(video.masks * xs).sum(axis=(1, 2)), (video.masks * ys).sum(axis=(1, 2))], axis=1)
    centroid /= area[:, None]
    cam = video.camera
    for first, last in video.shots:
        relative = []
        for i in range(first, last):
            world = cam[i, :, :2] @ centroid[i] + cam[i, :, 2]
            background = np.linalg.solve(cam[i + 1, :, :2], world - cam[i + 1, :, 2])
            relative.append(np.linalg.norm(centroid[i + 1] - background))
        assert np.median(relative) > 1.0  # px/frame


def test_corpus_reads_back(tmp_path):
    kwargs = dict(width=96, height=64, shots=(2, 2), shot_frames=(6, 8), fps=10.0)
    table = write_synthetic_corpus(tmp_path / "synthetic", videos=2, seed=5, **kwargs)
    assert list(table.columns) == ["video", "shot", "first", "last", "fps"]
    assert list(table["video"]) == ["synth-000"] * 2 + ["synth-001"] * 2
    assert list(table["shot"]) == [0, 1, 0, 1]
    for i, video_id in enumerate(["synth-000", "synth-001"]):
        expected = make_video(5 + i, **kwargs)
        rows = table[table["video"] == video_id]
        assert list(zip(rows["first"], rows["last"])) == expected.shots
        assert (rows["fps"] == 10.0).all()
        path = tmp_path / "synthetic" / f"{video_id}.mp4"
        info = probe(path)
        assert (info.frames, info.width, info.height) == (len(expected.frames), 96, 64)
        assert sum(1 for _ in read_frames(path)) == len(expected.frames)
        masks, frames = read_masks(tmp_path / "synthetic" / f"{video_id}.masks.npz")
        assert np.array_equal(masks, expected.masks.astype(np.uint8))
        assert np.array_equal(frames, np.arange(len(expected.frames)))


def test_empty_corpus_has_the_columns(tmp_path):
    table = write_synthetic_corpus(tmp_path, videos=0, seed=0)
    assert isinstance(table, pd.DataFrame) and table.empty
    assert list(table.columns) == ["video", "shot", "first", "last", "fps"]


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"width": 31}, "width"),
        ({"height": 0}, "height"),
        ({"width": 64.5}, "width"),
        ({"shots": 0}, "shots"),
        ({"shots": (3, 2)}, "shots"),
        ({"shots": (1, 2, 3)}, "shots"),
        ({"shot_frames": (0, 5)}, "shot_frames"),
        ({"fps": 0.0}, "fps"),
        ({"zoom_probability": 1.5}, "zoom_probability"),
        ({"max_objects": -1}, "max_objects"),
        ({"seed": -1}, "seed"),
    ],
)
def test_invalid_arguments_are_named(kwargs, name):
    kwargs = {"seed": 0, **kwargs}
    with pytest.raises(ValueError, match=name):
        make_video(kwargs.pop("seed"), **kwargs)


def test_invalid_corpus_size_is_named(tmp_path):
    with pytest.raises(ValueError, match="videos"):
        write_synthetic_corpus(tmp_path, videos=-1, seed=0)
