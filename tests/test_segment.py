from pathlib import Path

import cv2
import numpy as np
import pytest

import clips
from clips import iou
from motionmasks.segment import segment_frames, segment_video
from motionmasks.video import VideoError


def moving_square(**size):
    """The shared clip, larger here: the whole segmenter needs room for superpixels."""
    return clips.moving_square(**{"t": 10, "h": 96, "w": 128, "side": 32, "step": (1, 3), **size})


def write_folder(folder: Path, frames: np.ndarray) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(frames):
        assert cv2.imwrite(str(folder / f"{i:05d}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    return folder


def test_segment_frames_finds_a_moving_square_without_labels():
    frames, masks = moving_square()
    maps = segment_frames(frames)
    assert maps.shape == masks.shape and maps.dtype == np.float32
    assert min(iou(m >= 0.5, g) for m, g in zip(maps, masks)) > 0.8
    assert maps[~masks].mean() < 0.1


def test_segment_frames_works_at_a_working_size_smaller_than_the_input():
    frames, masks = moving_square()
    maps = segment_frames(frames, consensus={"working_max_side": 64, "n_segments": 100})
    assert maps.shape == masks.shape
    assert np.mean([iou(m >= 0.5, g) for m, g in zip(maps, masks)]) > 0.6


def test_segment_frames_passes_options_to_both_stages():
    frames, _ = moving_square(t=4)
    with pytest.raises(ValueError, match="neighbours"):
        segment_frames(frames, motion={"neighbours": 0})
    with pytest.raises(ValueError, match="superpixel method"):
        segment_frames(frames, consensus={"method": "nope"})


def test_segment_frames_records_stage_timings():
    frames, _ = moving_square(t=4)
    timings = {}
    segment_frames(frames, timings=timings)
    assert set(timings) == {"saliency", "superpixels", "descriptors", "graph", "voting", "upsample"}


@pytest.mark.parametrize(
    "frames",
    [
        moving_square(t=1)[0],
        np.repeat(moving_square(t=1)[0], 4, axis=0),
        np.zeros((3, 48, 64, 3), np.uint8),
        moving_square(t=3, h=16, w=16, side=6, step=(0, 1))[0],
    ],
    ids=["one-frame", "identical", "black", "16x16"],
)
def test_segment_frames_edge_cases_give_finite_maps(frames):
    maps = segment_frames(frames)
    assert maps.shape == frames.shape[:3] and np.isfinite(maps).all()
    assert maps.min() >= 0 and maps.max() <= 1


def test_segment_frames_rejects_grey_frames():
    with pytest.raises(ValueError, match=r"\(T, H, W, 3\)"):
        segment_frames(np.zeros((2, 16, 16), np.uint8))


def test_segment_video_streams_every_frame_in_order_at_full_size(tmp_path):
    frames, masks = moving_square(t=12)
    folder = write_folder(tmp_path / "clip", frames)
    calls = []
    out = list(segment_video(folder, chunk=5, progress=lambda done, total: calls.append((done, total))))
    assert [index for index, _ in out] == list(range(12))
    assert all(m.shape == (96, 128) and m.dtype == np.float32 for _, m in out)
    assert calls == [(4, 12), (8, 12), (12, 12)]  # 12 frames, chunk 5: three windows of 4
    assert np.mean([iou(m >= 0.5, g) for (_, m), g in zip(out, masks)]) > 0.7


def test_segment_video_gives_a_tqdm_like_progress_the_window_sizes(tmp_path):
    folder = write_folder(tmp_path / "clip", moving_square(t=7)[0])

    class Bar:
        steps = []

        def update(self, n):
            self.steps.append(n)

    bar = Bar()
    assert len(list(segment_video(folder, chunk=3, progress=bar))) == 7
    assert bar.steps == [3, 2, 2]


def test_segment_video_max_side_sets_the_map_size(tmp_path):
    folder = write_folder(tmp_path / "clip", moving_square(t=3)[0])
    _, first = next(segment_video(folder, max_side=64))
    assert first.shape == (48, 64)


def test_segment_video_of_a_missing_path_names_it(tmp_path):
    with pytest.raises(VideoError, match="nothing-here.mp4"):
        next(segment_video(tmp_path / "nothing-here.mp4"))


def test_segment_video_rejects_a_zero_chunk(tmp_path):
    with pytest.raises(ValueError, match="chunk"):
        next(segment_video(tmp_path, chunk=0))


def test_segment_video_windows_never_cross_a_shot_cut(tmp_path, monkeypatch):
    import motionmasks.segment as segment
    from motionmasks.synthetic import make_video
    from motionmasks.video import write_video

    video = make_video(5, width=64, height=48, shots=2, shot_frames=(14, 14), max_objects=1)
    write_video(tmp_path / "two_shots.mp4", video.frames, fps=25)
    windows = []
    real = segment._segment_small

    def record(small, *args, **kwargs):
        windows.append(len(small))
        return real(small, *args, **kwargs)

    monkeypatch.setattr(segment, "_segment_small", record)
    out = list(segment.segment_video(tmp_path / "two_shots.mp4", chunk=10))
    assert [i for i, _ in out] == list(range(28))
    assert windows == [7, 7, 7, 7]  # each 14-frame shot in two windows, none spanning the cut at 14
    windows.clear()
    list(segment.segment_video(tmp_path / "two_shots.mp4", chunk=10, cuts=[]))
    assert windows == [10, 9, 9]  # told there is no cut: near-equal windows over the whole video
