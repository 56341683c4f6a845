import cv2
import numpy as np
import pytest

from motionmasks.video import VideoError, probe, read_frames, resize_max_side, write_video


def _frames(n=5, h=32, w=48):
    rng = np.random.default_rng(0)
    return rng.integers(0, 255, (n, h, w, 3), dtype=np.uint8)


def test_written_video_probes_and_streams(tmp_path):
    write_video(tmp_path / "v.mp4", _frames(), fps=10)
    info = probe(tmp_path / "v.mp4")
    assert (info.frames, info.width, info.height, info.fps) == (5, 48, 32, 10)
    indices = [i for i, frame in read_frames(tmp_path / "v.mp4", start=1, step=2)]
    assert indices == [1, 3]


def test_frame_folder_is_a_video(tmp_path):
    for i, frame in enumerate(_frames(3)):
        cv2.imwrite(str(tmp_path / f"{i:05d}.png"), frame[..., ::-1])
    info = probe(tmp_path)
    assert (info.frames, info.width, info.height) == (3, 48, 32)
    frames = [f for _, f in read_frames(tmp_path)]
    assert np.array_equal(frames[2], _frames(3)[2])  # PNG is lossless, RGB order kept


def test_frame_of_wrong_size_is_named(tmp_path):
    cv2.imwrite(str(tmp_path / "00000.png"), np.zeros((32, 48, 3), np.uint8))
    cv2.imwrite(str(tmp_path / "00001.png"), np.zeros((20, 48, 3), np.uint8))
    with pytest.raises(VideoError, match="00001.png: frame is 48x20 but the video's first frame is 48x32"):
        list(read_frames(tmp_path))


def test_not_a_video_is_rejected_with_reason(tmp_path):
    (tmp_path / "x.mp4").write_bytes(b"not a video at all" * 100)
    with pytest.raises(VideoError, match="x.mp4: not a readable video"):
        probe(tmp_path / "x.mp4")
    with pytest.raises(VideoError, match="no such file"):
        probe(tmp_path / "missing.mp4")
    (tmp_path / "empty").mkdir()
    with pytest.raises(VideoError, match="holds no frames"):
        probe(tmp_path / "empty")


def test_resize_max_side_keeps_aspect_and_never_enlarges():
    frame = np.zeros((100, 200, 3), np.uint8)
    assert resize_max_side(frame, 50).shape == (25, 50, 3)
    assert resize_max_side(frame, 400).shape == (100, 200, 3)


def test_read_clip_decodes_one_shot_at_working_size(tmp_path):
    from motionmasks.video import read_clip

    write_video(tmp_path / "v.mp4", _frames(9, 32, 48), fps=10)
    frames, indices = read_clip(tmp_path / "v.mp4", 2, 8, step=3, max_side=24)
    assert frames.shape == (3, 16, 24, 3) and indices.tolist() == [2, 5, 8]
    with pytest.raises(VideoError, match=r"expected 5 frames in 5..9 \(step 1\), decoded 4"):
        read_clip(tmp_path / "v.mp4", 5, 9)
