import cv2
import numpy as np
import pytest
from conftest import shared_path

from motionmasks.shots import colour_histograms, detect_cuts, shot_table, split_video
from motionmasks.video import VideoError, write_video

H, W = 48, 64


def texture(seed: int, size: int = 192) -> np.ndarray:
    """A (size, size, 3) uint8 photo-like texture: smooth noise between two random colours."""
    rng = np.random.default_rng(seed)
    noise = cv2.GaussianBlur(rng.standard_normal((size, size)).astype(np.float32), (0, 0), 3)
    weight = (noise - noise.min()) / np.ptp(noise)
    low, high = rng.integers(0, 256, (2, 3))
    return (low + (high - low) * weight[..., None]).astype(np.uint8)


def pan(image: np.ndarray, n: int, speed: float = 2.0, start: float = 10.0) -> np.ndarray:
    """n frames (n, H, W, 3) of a camera panning diagonally over ``image`` at ``speed`` px/frame."""
    frames = []
    for t in range(n):
        shift = np.float32([[1, 0, -(start + speed * t)], [0, 1, -(start + 0.5 * speed * t)]])
        frames.append(cv2.warpAffine(image, shift, (W, H), flags=cv2.INTER_LINEAR))
    return np.stack(frames)


def zoom(image: np.ndarray, n: int, factor: float = 1.6) -> np.ndarray:
    """n frames zooming in by ``factor`` over the shot, centred on the image."""
    cy, cx = image.shape[0] / 2, image.shape[1] / 2
    frames = []
    for t in range(n):
        s = factor ** (t / (n - 1))
        m = np.float32([[s, 0, W / 2 - s * cx / 2], [0, s, H / 2 - s * cy / 2]])
        frames.append(cv2.warpAffine(image, m, (W, H), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT))
    return np.stack(frames)


def cuts_of(frames: np.ndarray) -> list[int]:
    return detect_cuts(colour_histograms(frames))


# ----------------------------------------------------------------------------- colour_histograms


def test_histograms_are_normalised_per_block():
    features = colour_histograms(pan(texture(0), 3), bins=8)
    assert features.shape == (3, 40) and features.dtype == np.float32
    np.testing.assert_allclose(features.reshape(3, 5, 8).sum(axis=2), 1.0, rtol=1e-5)


def test_histograms_without_gradients_are_lab_only():
    assert colour_histograms(pan(texture(0), 2), bins=8, gradients=False).shape == (2, 24)


def test_flat_frame_has_uniform_orientation_histogram():
    features = colour_histograms([np.full((H, W, 3), 128, np.uint8)], bins=4)
    np.testing.assert_allclose(features[0, 12:16], 0.25)  # orientation block
    np.testing.assert_allclose(features[0, 16:20], [1, 0, 0, 0])  # every magnitude is 0


def test_histograms_consume_a_generator_once():
    frames = pan(texture(0), 4)
    assert colour_histograms(f for f in frames).shape == (4, 80)


def test_histograms_of_no_frames_are_empty():
    assert colour_histograms([], bins=8).shape == (0, 40)


def test_large_frames_are_shrunk_to_max_side():
    small = texture(3, 64)[:48]
    large = cv2.resize(small, (256, 192), interpolation=cv2.INTER_NEAREST)
    np.testing.assert_allclose(
        colour_histograms([large], max_side=64, gradients=False), colour_histograms([small], gradients=False)
    )


def test_bad_frame_is_named():
    with pytest.raises(ValueError, match="frame 1"):
        colour_histograms([np.zeros((H, W, 3), np.uint8), np.zeros((H, W), np.uint8)])


# ----------------------------------------------------------------------------- detect_cuts


def test_cut_between_two_panned_textures_is_found_exactly():
    frames = np.concatenate([pan(texture(1), 20), pan(texture(2), 20)])
    assert cuts_of(frames) == [20]


def test_every_cut_of_many_short_shots_is_found():
    frames = np.concatenate([pan(texture(seed), n) for seed, n in zip(range(10, 16), [10, 12, 10, 11, 10, 13])])
    assert cuts_of(frames) == [10, 22, 32, 43, 53]


def test_cuts_next_to_the_first_and_last_frames_are_found():
    frames = np.concatenate([pan(texture(4), 1), pan(texture(5), 20), pan(texture(6), 2)])
    assert cuts_of(frames) == [1, 21]


def test_fast_pan_is_not_a_cut():
    assert cuts_of(pan(texture(7, 320), 30, speed=6.0)) == []


def test_zoom_is_not_a_cut():
    assert cuts_of(zoom(texture(8), 30)) == []


def test_identical_frames_have_no_cut():
    assert cuts_of(np.repeat(texture(9)[None, :H, :W], 12, axis=0)) == []


def test_gradual_brightness_change_is_not_a_cut():
    frames = pan(texture(10), 40).astype(np.float32)
    gain = np.linspace(0.6, 1.3, 40)[:, None, None, None]
    assert cuts_of(np.clip(frames * gain, 0, 255).astype(np.uint8)) == []


def test_single_odd_frame_is_not_a_cut():
    frames = pan(texture(11), 30)
    frames[15] = texture(12)[:H, :W]  # one frame from elsewhere: a flash, not a shot
    assert cuts_of(frames) == []


def test_cut_after_a_static_shot_is_found():
    still = np.repeat(texture(13)[None, :H, :W], 10, axis=0)
    assert cuts_of(np.concatenate([still, pan(texture(14), 10)])) == [10]


def test_fewer_than_two_frames_have_no_cut():
    assert detect_cuts(colour_histograms(pan(texture(0), 1))) == []
    assert detect_cuts(np.zeros((0, 80))) == []


def test_two_unrelated_frames_are_a_cut():
    frames = np.stack([texture(1)[:H, :W], texture(2)[:H, :W]])
    assert cuts_of(frames) == [1]


def test_feature_width_must_match_bins_and_cues():
    features = colour_histograms(pan(texture(0), 3), bins=8, gradients=False)
    with pytest.raises(ValueError, match="cues"):
        detect_cuts(features, bins=8)
    assert detect_cuts(features, bins=8, cues=(3,)) == []


# ----------------------------------------------------------------------------- shot_table


def test_shot_table_rows():
    rows = shot_table([9, 19, 130], 460, 25.0, min_shot=10, max_shot=110)
    assert [(r["shot"], r["part"], r["first"], r["last"], r["frames"], r["status"]) for r in rows] == [
        (0, 0, 0, 8, 9, "too_short"),
        (1, 0, 9, 18, 10, "ok"),
        (2, 0, 19, 74, 56, "ok"),  # 111 frames: two parts of 56 and 55
        (2, 1, 75, 129, 55, "ok"),
        (3, 0, 130, 239, 110, "ok"),  # 330 frames: three parts of 110
        (3, 1, 240, 349, 110, "ok"),
        (3, 2, 350, 459, 110, "ok"),
    ]
    assert {r["fps"] for r in rows} == {25.0}


def test_parts_cover_every_frame_of_every_shot_once():
    for n_frames, cuts, max_shot in [(1000, [3, 250, 251, 777], 110), (57, [], 7), (12, [1, 2, 3], 1)]:
        rows = shot_table(cuts, n_frames, 25.0, min_shot=1, max_shot=max_shot)
        covered = [f for r in rows for f in range(r["first"], r["last"] + 1)]
        assert covered == list(range(n_frames))
        assert max(r["frames"] for r in rows) <= max_shot


def test_shot_of_exactly_max_shot_frames_is_one_part():
    assert [(r["part"], r["frames"]) for r in shot_table([], 110, 30.0)] == [(0, 110)]


def test_no_cut_is_one_shot():
    assert shot_table([], 1, 24.0) == [
        {"shot": 0, "part": 0, "first": 0, "last": 0, "fps": 24.0, "frames": 1, "status": "too_short"}
    ]


@pytest.mark.parametrize("cuts", [[0], [50], [-3]])
def test_cut_out_of_range_is_refused(cuts):
    with pytest.raises(ValueError, match="cuts must lie in 1..49"):
        shot_table(cuts, 50, 25.0)


# ----------------------------------------------------------------------------- split_video


def test_split_video_file(tmp_path):
    path = tmp_path / "clip.mp4"
    write_video(path, np.concatenate([pan(texture(1), 12), pan(texture(2), 8)]), fps=25.0)
    rows = split_video(path, max_shot=10)
    assert [(r["shot"], r["part"], r["first"], r["last"], r["status"]) for r in rows] == [
        (0, 0, 0, 5, "ok"),
        (0, 1, 6, 11, "ok"),
        (1, 0, 12, 19, "too_short"),
    ]
    assert {r["fps"] for r in rows} == {25.0} and "video" not in rows[0]


def test_split_video_frame_folder(tmp_path):
    for i, frame in enumerate(np.concatenate([pan(texture(3), 5), pan(texture(4), 5)])):
        cv2.imwrite(str(tmp_path / f"{i:05d}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    assert [r["first"] for r in split_video(tmp_path, min_shot=1)] == [0, 5]


def test_split_video_unreadable_file_names_it(tmp_path):
    path = tmp_path / "broken.mp4"
    path.write_bytes(b"not a video")
    with pytest.raises(VideoError, match="broken.mp4"):
        split_video(path)


def test_continuous_real_footage_is_one_shot():
    # A hand-held zoom-in with flickering light (checked by eye: no cut).
    rows = split_video(shared_path("data", "videos", "cutie-example.mp4"))
    assert {r["shot"] for r in rows} == {0} and (rows[0]["first"], rows[-1]["last"]) == (0, 116)  # in 2 parts
