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


def test_fit_max_side_is_the_one_size_rule():
    from motionmasks.video import fit_max_side

    assert fit_max_side(854, 480, 256) == (256, 144)
    assert fit_max_side(427, 240, 256) == (256, 144)
    assert fit_max_side(100, 50, 256) == (100, 50)  # never enlarged
    assert fit_max_side(100, 50, None) == (100, 50)


def test_jpeg_folders_are_decoded_at_a_reduced_scale_to_the_same_size(tmp_path):
    import cv2

    from motionmasks.video import fit_max_side

    rng = np.random.default_rng(0)
    frame = cv2.GaussianBlur(rng.integers(0, 256, (480, 854, 3), dtype=np.uint8), (0, 0), 3)
    for i in range(2):
        cv2.imwrite(str(tmp_path / f"{i:05d}.jpg"), frame)
    small = [f for _, f in read_frames(tmp_path, max_side=256)]
    full = cv2.resize(
        cv2.imread(str(tmp_path / "00000.jpg"))[..., ::-1], fit_max_side(854, 480, 256), interpolation=cv2.INTER_AREA
    )
    assert [f.shape for f in small] == [(144, 256, 3)] * 2
    assert np.abs(small[0].astype(int) - full.astype(int)).mean() < 2.0  # the decoder's scaling, not another image
