import numpy as np
import pytest
import scipy.sparse
from clips import iou, moving_square, textured
from scipy.spatial.distance import cdist

from motionmasks.consensus import (
    DESCRIPTOR_SIZE,
    SUPERPIXEL_METHODS,
    colour_posterior,
    consensus_voting,
    refine,
    superpixel_descriptors,
    superpixels,
    suppress_small_blobs,
    transition_matrix,
    vote,
)

# ---------------------------------------------------------------- superpixels


@pytest.mark.parametrize("method", SUPERPIXEL_METHODS)
@pytest.mark.parametrize("shape", [(16, 16), (20, 21), (48, 64), (15, 40), (1, 1), (3, 7)])
def test_superpixel_labels_are_contiguous_with_no_empty_label(method, shape):
    labels = superpixels(textured(*shape), n_segments=30, method=method)
    assert labels.shape == shape and labels.dtype == np.int32
    assert np.array_equal(np.unique(labels), np.arange(labels.max() + 1))


def test_superpixels_of_a_flat_frame_are_contiguous():
    labels = superpixels(np.zeros((32, 48, 3), np.uint8), n_segments=20)
    assert np.array_equal(np.unique(labels), np.arange(labels.max() + 1))


def test_superpixels_separate_two_flat_halves():
    frame = np.zeros((32, 64, 3), np.uint8)
    frame[:, 32:] = (255, 0, 0)
    labels = superpixels(frame, n_segments=8)
    assert not set(np.unique(labels[:, :32])) & set(np.unique(labels[:, 32:]))


def test_superpixels_reject_an_unknown_method():
    with pytest.raises(ValueError, match="unknown superpixel method 'felzenszwalb'"):
        superpixels(textured(16, 16), method="felzenszwalb")


def test_superpixels_reject_float_frames():
    with pytest.raises(TypeError, match="uint8"):
        superpixels(np.zeros((16, 16, 3), np.float32))


# ---------------------------------------------------------------- descriptors


def test_descriptors_shape_and_histograms_summing_to_one():
    frame = textured(48, 64)
    labels = superpixels(frame, n_segments=24)
    n = labels.max() + 1
    descriptors, centres = superpixel_descriptors(frame, labels)
    assert descriptors.shape == (n, DESCRIPTOR_SIZE) == (n, 176) and descriptors.dtype == np.float32
    assert centres.shape == (n, 2)
    hist = descriptors[:, 54:174].reshape(n, 6, 20)
    np.testing.assert_allclose(hist.sum(axis=2), 1.0, rtol=1e-5)
    np.testing.assert_allclose(descriptors[:, 174:], centres / np.array([48, 64]), rtol=1e-6)


def test_hog_of_a_vertical_edge_is_all_in_the_horizontal_gradient_bin():
    frame = np.zeros((30, 30, 3), np.uint8)
    frame[:, 15:] = 255
    labels = np.zeros((30, 30), np.int32)  # one superpixel, bbox centre (14.5, 14.5)
    hog = superpixel_descriptors(frame, labels)[0][0, :54].reshape(9, 6)
    assert hog[:, 0].sum() > 0 and np.all(hog[:, 1:] == 0)
    np.testing.assert_allclose(np.linalg.norm(hog), 1.0, rtol=1e-4)


def test_descriptors_of_a_flat_frame_have_zero_hog():
    frame = np.full((16, 16, 3), 90, np.uint8)
    descriptors, _ = superpixel_descriptors(frame, superpixels(frame, n_segments=4))
    assert np.isfinite(descriptors).all() and np.all(descriptors[:, :54] == 0)


def test_descriptors_reject_an_empty_label():
    labels = np.zeros((16, 16), np.int32)
    labels[8:] = 2  # label 1 has no pixel
    with pytest.raises(ValueError, match="label 1 has no pixel"):
        superpixel_descriptors(textured(16, 16), labels)


# ---------------------------------------------------------------- graph


def random_descriptors(sizes, d=5, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.normal(0, 0.3, (n, d)).astype(np.float32) for n in sizes]


def test_transition_matrix_is_sparse_row_stochastic_with_the_expected_neighbour_count():
    descriptors = random_descriptors([10] * 5)
    matrix = transition_matrix(descriptors, window=1, per_frame=2)
    assert scipy.sparse.issparse(matrix) and matrix.format == "csr"
    np.testing.assert_allclose(np.asarray(matrix.sum(axis=1)).ravel(), 1.0, rtol=1e-5)
    # self + 2 in its own frame + 2 in each of the 1 or 2 frames beside it
    expected = np.repeat([1 + 2 + 2, 1 + 2 + 4, 1 + 2 + 4, 1 + 2 + 4, 1 + 2 + 2], 10)
    assert np.array_equal(np.diff(matrix.indptr), expected)


def test_transition_matrix_links_exact_nearest_neighbours_with_gaussian_weights():
    descriptors = random_descriptors([7, 9, 8])
    matrix = transition_matrix(descriptors, window=2, per_frame=2, bandwidth=0.5).toarray()
    offsets = np.cumsum([0, 7, 9])
    a = descriptors[1]
    for s, b in enumerate(descriptors):
        d2 = cdist(a, b, "sqeuclidean")
        if s == 1:
            np.fill_diagonal(d2, np.inf)
        nearest = np.argsort(d2, axis=1)[:, :2]
        for i in range(len(a)):
            row = matrix[offsets[1] + i]
            linked = np.flatnonzero(row[offsets[s] : offsets[s] + len(b)])
            if s == 1:
                linked = linked[linked != i]
            assert set(linked) == set(nearest[i])
            # weights relative to the self weight 1
            ratio = row[offsets[s] + nearest[i]] / row[offsets[1] + i]
            np.testing.assert_allclose(ratio, np.exp(-d2[i, nearest[i]] / 0.5), rtol=1e-4, atol=1e-7)


def test_transition_matrix_with_approximate_dims_keeps_the_neighbour_count():
    descriptors = random_descriptors([10] * 4, d=12)
    exact = transition_matrix(descriptors, window=3, per_frame=1)
    approximate = transition_matrix(descriptors, window=3, per_frame=1, dims=4)
    assert np.array_equal(np.diff(exact.indptr), np.diff(approximate.indptr))


def test_transition_matrix_of_one_superpixel_frames_has_only_cross_frame_links():
    matrix = transition_matrix(random_descriptors([1, 1, 1]), window=15, per_frame=2)
    assert np.array_equal(np.diff(matrix.indptr), [3, 3, 3])  # self + 1 in each other frame


def test_transition_matrix_is_never_dense_in_size():
    matrix = transition_matrix(random_descriptors([50] * 40, d=8), window=15, per_frame=2)
    assert matrix.nnz <= 2000 * (2 * (2 * 15 + 1) + 1)


def test_vote_normalises_each_frame_to_a_maximum_of_one():
    matrix = transition_matrix(random_descriptors([4, 4]), window=1, per_frame=1)
    votes = vote(matrix, np.array([0.2, 0.1, 0, 0, 0, 0, 0, 0.05]), np.array([0, 4, 8]), iterations=5)
    assert votes[:4].max() == pytest.approx(1.0) and votes[4:].max() == pytest.approx(1.0)


def test_vote_keeps_an_all_zero_frame_at_zero():
    matrix = scipy.sparse.identity(6, format="csr", dtype=np.float32)
    votes = vote(matrix, np.array([0.5, 0.25, 0.0, 0.0, 0.0, 0.0]), np.array([0, 2, 6]))
    np.testing.assert_allclose(votes, [1.0, 0.5, 0, 0, 0, 0])


# ---------------------------------------------------------------- post-processing


def test_suppress_small_blobs_demotes_blobs_under_the_ratio_just_below_the_threshold():
    soft = np.zeros((20, 20), np.float32)
    soft[0:10, 0:10] = 0.9  # 100 px
    soft[15:20, 15:20] = 0.8  # 25 px < 0.6 * 100
    out = suppress_small_blobs(soft.copy(), threshold=0.7, ratio=0.6)
    assert np.all(out[0:10, 0:10] == np.float32(0.9))
    assert np.all(out[15:20, 15:20] == np.float32(0.7 - 1e-5))


def test_refine_of_a_map_that_follows_an_edge_keeps_it():
    frame = np.zeros((32, 32, 3), np.uint8)
    frame[:, 16:] = 200
    soft = (frame[..., 0] > 0).astype(np.float32)
    out = refine(frame, soft, radius=4)
    assert np.abs(out - soft).max() < 0.01


# ---------------------------------------------------------------- voting on clips


def test_voting_recovers_a_square_marked_partially_and_noisily():
    frames, masks = moving_square()
    rng = np.random.default_rng(1)
    saliency = rng.uniform(0.0, 0.2, masks.shape).astype(np.float32)
    for i, mask in enumerate(masks):
        left = mask.copy()
        left[:, np.flatnonzero(mask.any(axis=0))[0] + 10 :] = False  # only the left half moves "visibly"
        saliency[i][left] = 0.8
    maps = consensus_voting(frames, saliency, n_segments=60)
    assert np.mean([iou(s >= 0.5, g) for s, g in zip(saliency, masks)]) == 0.5
    assert np.mean([iou(m >= 0.5, g) for m, g in zip(maps, masks)]) > 0.85
    assert (maps[~masks] >= 0.5).mean() < 0.01 and maps[~masks].mean() < 0.3


def test_voting_works_at_a_reduced_working_size_and_returns_the_input_size():
    frames, masks = moving_square(t=6, h=64, w=96)
    saliency = masks.astype(np.float32)
    maps = consensus_voting(frames, saliency, working_max_side=48, n_segments=40)
    assert maps.shape == (6, 64, 96) and maps.dtype == np.float32
    assert np.mean([iou(m >= 0.5, g) for m, g in zip(maps, masks)]) > 0.6


@pytest.mark.parametrize(
    "frames",
    [
        moving_square(t=1)[0],  # one frame
        np.repeat(textured(32, 48)[None], 5, axis=0),  # identical frames
        np.zeros((4, 40, 40, 3), np.uint8),  # all black
        moving_square(t=3, h=16, w=16, side=6, step=(0, 1))[0],  # 16x16
    ],
    ids=["one-frame", "identical", "black", "16x16"],
)
def test_edge_case_clips_give_finite_maps_of_the_input_shape(frames):
    saliency = np.random.default_rng(0).uniform(0, 1, frames.shape[:3]).astype(np.float32)
    maps = consensus_voting(frames, saliency)
    assert maps.shape == frames.shape[:3] and maps.dtype == np.float32
    assert np.isfinite(maps).all() and maps.min() >= 0 and maps.max() <= 1


def test_colour_posterior_is_the_ratio_of_the_shots_foreground_and_background_colour_histograms():
    red, blue, green = (200, 10, 10), (10, 10, 200), (10, 200, 10)
    frames = np.array([[[red, red, blue, green]]], np.uint8)  # one frame, one row of 4 pixels
    soft = np.array([[[1.0, 0.9, 0.0, 0.5]]], np.float32)  # green: neither confident fg nor bg
    posterior = colour_posterior(frames, soft, bins=8)
    fg = {"red": 3 / 514, "other": 1 / 514}  # 2 red pixels + 1 per each of the 512 bins
    bg = {"blue": 2 / 513, "other": 1 / 513}
    assert posterior.shape == (1, 1, 4) and posterior.dtype == np.float32
    assert posterior[0, 0, 0] == posterior[0, 0, 1] == np.float32(fg["red"] / (fg["red"] + bg["other"]))
    assert posterior[0, 0, 2] == np.float32(fg["other"] / (fg["other"] + bg["blue"]))
    assert posterior[0, 0, 3] == np.float32(fg["other"] / (fg["other"] + bg["other"]))  # unseen: about 0.5


def test_the_appearance_model_pushes_back_moving_background_of_another_colour():
    """Background of the background's colour moving as much as the object (water, leaves):
    the votes alone keep some of it; the shot's colour model pushes it under 0.5."""
    frames, masks = moving_square()
    saliency = np.zeros(masks.shape, np.float32)
    strip = np.zeros_like(masks)
    strip[:, 5:15, 10:80] = True
    saliency[masks | strip] = 0.8
    alone = consensus_voting(frames, saliency, n_segments=60, appearance=0.0)
    blended = consensus_voting(frames, saliency, n_segments=60, appearance=0.3)
    leak = strip & ~masks
    assert (alone[leak] >= 0.5).mean() > 0.05 and (blended[leak] >= 0.5).mean() < 0.01
    assert np.mean([iou(m >= 0.5, g) for m, g in zip(alone, masks)]) < 0.8
    assert np.mean([iou(m >= 0.5, g) for m, g in zip(blended, masks)]) > 0.95


def test_appearance_is_a_weight_in_0_1():
    frames, _ = moving_square(t=2)
    with pytest.raises(ValueError, match="appearance must be a weight in"):
        consensus_voting(frames, np.zeros(frames.shape[:3], np.float32), appearance=1.5)
    with pytest.raises(ValueError, match="appearance_bins must be in 1..256"):
        consensus_voting(frames, np.zeros(frames.shape[:3], np.float32), appearance_bins=0)


def test_zero_saliency_gives_zero_maps():
    frames, _ = moving_square(t=4)
    maps = consensus_voting(frames, np.zeros(frames.shape[:3], np.float32))
    assert np.all(maps == 0)


def test_voting_rejects_a_saliency_of_another_size():
    frames, _ = moving_square(t=2)
    with pytest.raises(ValueError, match="saliency shape"):
        consensus_voting(frames, np.zeros((2, 10, 10), np.float32))


@pytest.mark.parametrize(("asked", "made"), [(300, 216), (400, 350), (500, 350), (600, 576)])
def test_seeds_snaps_the_superpixel_count_to_its_block_grid_at_the_working_size(asked, made):
    """The documented counts behind consensus.n_segments (400 -> 350 at 256x144, the working size of 16:9 video)."""
    frame = textured(144, 256)
    assert superpixels(frame, n_segments=asked, method="seeds").max() + 1 == made
