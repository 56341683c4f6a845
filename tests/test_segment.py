from pathlib import Path

import clips
import cv2
import numpy as np
import pytest
from clips import iou

from motionmasks.formats import ShotRecord
from motionmasks.segment import (
    Segmenter,
    decode_parts,
    plan_shots,
    segment_frames,
    segment_source,
    split_records,
    write_mask_folder,
)
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
    maps = segment_frames(frames, working_max_side=64, consensus={"n_segments": 100})
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


def _records(folder: Path, max_shot: int = 110, working_max_side: int = 256, video: str = "clip"):
    return plan_shots(
        folder, video, Segmenter(shots={"max_shot": max_shot, "min_shot": 1}, working_max_side=working_max_side)
    )


def test_plan_shots_gives_parts_with_source_and_sizes(tmp_path):
    folder = write_folder(tmp_path / "clip", moving_square(t=12)[0])
    records = _records(folder, max_shot=5, working_max_side=64)
    assert [(r.shot, r.part, r.first, r.last) for r in records] == [(0, 0, 0, 3), (0, 1, 4, 7), (0, 2, 8, 11)]
    assert {(r.video, r.source, r.width, r.height, r.work_width, r.work_height, r.status) for r in records} == {
        ("clip", str(folder), 128, 96, 64, 48, "ok")
    }


def test_decode_parts_reads_the_video_once_in_order(tmp_path, monkeypatch):
    import motionmasks.segment as segment

    frames = moving_square(t=12)[0]
    folder = write_folder(tmp_path / "clip", frames)
    records = _records(folder, max_shot=5, working_max_side=64)
    passes = []
    real = segment.read_frames

    def counting(*args, **kwargs):
        passes.append(kwargs)
        yield from real(*args, **kwargs)

    monkeypatch.setattr(segment, "read_frames", counting)
    parts = list(decode_parts(records[::-1]))  # any order in, the video's order out
    assert len(passes) == 1
    assert [(r.part, clip.shape) for r, clip in parts] == [
        (0, (4, 48, 64, 3)),
        (1, (4, 48, 64, 3)),
        (2, (4, 48, 64, 3)),
    ]
    expected = cv2.resize(frames[5], (64, 48), interpolation=cv2.INTER_AREA)
    assert np.array_equal(parts[1][1][1], expected)


def test_decode_parts_names_a_video_that_ends_too_soon(tmp_path):
    from dataclasses import replace

    folder = write_folder(tmp_path / "clip", moving_square(t=6)[0])
    [record] = _records(folder)
    with pytest.raises(VideoError, match=r"ended before frame 9 \(shot 0, part 0\)"):
        list(decode_parts([replace(record, last=9)]))


def test_write_mask_folder_writes_every_frame_at_full_size(tmp_path):
    frames, masks = moving_square(t=12)
    folder = write_folder(tmp_path / "clip", frames)
    steps = []
    written = write_mask_folder(folder, tmp_path / "out", Segmenter(shots={"max_shot": 5}), progress=steps.append)
    pngs = sorted((tmp_path / "out").glob("*.png"))
    assert written == 12 and sum(steps) == 12 and [p.stem for p in pngs] == [f"{i:05d}" for i in range(12)]
    got = [cv2.imread(str(p), cv2.IMREAD_UNCHANGED) for p in pngs]
    assert all(m.shape == (96, 128) and m.dtype == np.uint8 for m in got)
    assert np.mean([iou(m >= 128, g) for m, g in zip(got, masks)]) > 0.7


def test_write_mask_folder_of_a_missing_path_names_it(tmp_path):
    with pytest.raises(VideoError, match="nothing-here.mp4"):
        write_mask_folder(tmp_path / "nothing-here.mp4", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_parts_never_cross_a_shot_cut(tmp_path):
    from motionmasks.synthetic import make_video
    from motionmasks.video import write_video

    video = make_video(5, width=64, height=48, shots=2, shot_frames=(14, 14), max_objects=1)
    write_video(tmp_path / "two_shots.mp4", video.frames, fps=25)
    records = _records(tmp_path / "two_shots.mp4", max_shot=10)
    assert [(r.shot, r.first, r.last) for r in records] == [(0, 0, 6), (0, 7, 13), (1, 14, 20), (1, 21, 27)]


def test_the_segmenter_is_the_same_in_memory_and_from_a_folder(tmp_path):
    """segment_frames (arrays) and the pipeline/CLI path (decode_parts -> shot_saliency -> shot_masks)."""
    frames = moving_square(t=10)[0]
    folder = write_folder(tmp_path / "clip", frames)
    records = _records(folder, working_max_side=64)
    [(record, masks)] = list(segment_source(records, Segmenter(working_max_side=64)))
    in_memory = segment_frames(frames, working_max_side=64)
    assert np.array_equal(
        np.rint(in_memory * 255).astype(np.uint8),
        np.stack([cv2.resize(m, (128, 96), interpolation=cv2.INTER_LINEAR) for m in masks]),
    )


def _parts(*lengths: int) -> list[ShotRecord]:
    records, first = [], 0
    for shot, length in enumerate(lengths):
        records.append(ShotRecord("v", "v.mp4", shot, 0, first, first + length - 1, 25.0, 64, 48, 64, 48, "ok"))
        first += length
    return records


@pytest.mark.parametrize(
    ("lengths", "groups", "expected"),
    [
        ((10, 10, 10, 10), 2, [[0, 1], [2, 3]]),
        ((100, 10, 10), 2, [[0], [1, 2]]),
        ((10, 10, 10), 3, [[0], [1], [2]]),
        ((30,), 2, [[0]]),  # one part: one group, the other worker has nothing to do
        ((5, 5, 5), 1, [[0, 1, 2]]),
        ((), 2, []),
    ],
)
def test_split_records_gives_consecutive_groups_of_about_equal_frames(lengths, groups, expected):
    records = _parts(*lengths)
    split = split_records(list(reversed(records)), groups)  # any order in, frame order out
    assert [[r.shot for r in group] for group in split] == expected
