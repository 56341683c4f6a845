"""Non-local consensus voting (ALGORITHM.md section 3; uNLC, Faktor & Irani BMVC 2014).

Superpixels of every frame of a shot vote for "foreground" with their motion
saliency; each superpixel then repeatedly takes the weighted mean vote of the
superpixels that look like it in nearby frames (a random walk on a sparse
appearance graph), so that an object which moves in some frames is found in
all of them, and background that moved once is outvoted.

Everything runs at a reduced working resolution (``working_max_side``) and the
final map is upsampled to the input size: superpixels, descriptors and the
graph cost O(pixels) and O(superpixels^2), not the output size.
"""

from __future__ import annotations

import time
from contextlib import contextmanager

import cv2
import numpy as np
import scipy.sparse
from scipy import ndimage
from skimage.segmentation import slic

from motionmasks.video import fit_max_side

SUPERPIXEL_METHODS = ("seeds", "slic", "slic-cv", "slico")
DESCRIPTOR_SIZE = 54 + 120 + 2  # HOG, six colour histograms, location

_HOG_ORIENTATIONS = 6
_HOG_CELL = 5  # px; 3x3 cells of 5x5 px make the 15x15 patch of the reference
_HIST_BINS = 20
_HIST_CHANNELS = 6  # R, G, B, L, a, b
_BIN_OF_VALUE = ((np.arange(256) * _HIST_BINS) >> 8).astype(np.uint8)  # 0..255 -> 0..19, equal widths


@contextmanager
def _timed(timings: dict | None, name: str):
    start = time.perf_counter()
    yield
    if timings is not None:
        timings[name] = timings.get(name, 0.0) + time.perf_counter() - start


def _check_frame(frame: np.ndarray, name: str = "frame") -> np.ndarray:
    frame = np.asarray(frame)
    if frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"{name}: expected an RGB image of shape (H, W, 3), got {frame.shape}")
    if frame.dtype != np.uint8:
        raise TypeError(
            f"{name}: expected uint8 pixels (0-255), got {frame.dtype}; convert with np.clip(x, 0, 255).astype(np.uint8)"
        )
    return frame


def _contiguous(labels: np.ndarray) -> np.ndarray:
    """Renumber labels to 0..n-1 with no gap (so no superpixel is empty)."""
    labels = labels.astype(np.int64, copy=False)
    present = np.bincount(labels.ravel()) > 0
    remap = (np.cumsum(present) - 1).astype(np.int32)
    return remap[labels]


def _grid_labels(h: int, w: int, n_segments: int) -> np.ndarray:
    """Square-ish blocks: the fallback for frames too small for the superpixel algorithms."""
    side = max(1.0, np.sqrt(h * w / max(1, n_segments)))
    rows = np.minimum((np.arange(h) / side).astype(np.int64), max(0, int(np.ceil(h / side)) - 1))
    cols = np.minimum((np.arange(w) / side).astype(np.int64), max(0, int(np.ceil(w / side)) - 1))
    return _contiguous(rows[:, None] * (cols.max() + 1) + cols[None, :])


def superpixels(
    frame: np.ndarray,
    *,
    n_segments: int = 400,
    compactness: float = 10.0,
    sigma: float = 5.0,
    method: str = "seeds",
    iterations: int = 4,
) -> np.ndarray:
    """Over-segment one frame into superpixels.

    Parameters
    ----------
    frame : ndarray, (H, W, 3) uint8
        RGB frame.
    n_segments : int
        Approximate number of superpixels (*ref* 400 on the full frame).
    compactness : float
        SLIC's balance of colour against position (*ref* 10); higher gives
        squarer superpixels. Ignored by SEEDS.
    sigma : float
        Gaussian smoothing (px) before segmentation (*ref* 5 on the full
        frame); applied by the SLIC methods only.
    method : {"seeds", "slic", "slic-cv", "slico"}
        ``"seeds"``: OpenCV's SEEDS (Van den Bergh et al. ECCV 2012) on HSV:
        about 2 ms per 256x144 frame against 31 for scikit-image's SLIC
        and 6 for OpenCV's, with a slightly better final J on DAVIS
        (benchmarks/results/segmenter.json).
        ``"slic"``: scikit-image's SLIC (the reference).
        ``"slic-cv"``/``"slico"``: OpenCV ximgproc's SLIC / SLICO.
    iterations : int
        Iterations of the OpenCV algorithms (SEEDS, SLIC, SLICO).

    Returns
    -------
    labels : ndarray, (H, W) int32
        Superpixel index of every pixel, numbered ``0 .. n-1`` with no empty
        label (``n`` is close to, not exactly, ``n_segments``).

    Notes
    -----
    Frames with a side under 16 px (where the OpenCV algorithms crash or
    hang) are cut into a regular grid of about ``n_segments`` blocks instead.
    """
    frame = _check_frame(frame)
    if method not in SUPERPIXEL_METHODS:
        raise ValueError(f"unknown superpixel method {method!r}; use one of {SUPERPIXEL_METHODS}")
    if n_segments < 1:
        raise ValueError(f"n_segments must be >= 1, got {n_segments}")
    h, w = frame.shape[:2]
    # at least 4x4 px per superpixel: OpenCV's SEEDS loops forever below that
    n = int(min(n_segments, max(1, (h * w) // 16)))
    if min(h, w) < 16:
        return _grid_labels(h, w, n)
    if method == "slic":
        labels = slic(frame, n_segments=n, compactness=compactness, sigma=sigma, start_label=0)
    elif method == "seeds":
        # 2 block levels: more levels give fewer, larger superpixels than asked
        # for and are slower; HSV as in OpenCV's sample
        seeds = cv2.ximgproc.createSuperpixelSEEDS(w, h, 3, n, 2, 2, 5, False)
        seeds.iterate(cv2.cvtColor(frame, cv2.COLOR_RGB2HSV), iterations)
        labels = seeds.getLabels()
    else:
        smooth = cv2.GaussianBlur(frame, (0, 0), sigma) if sigma > 0 else frame
        region = max(2, int(round(np.sqrt(h * w / n))))
        algorithm = cv2.ximgproc.SLIC if method == "slic-cv" else cv2.ximgproc.SLICO
        engine = cv2.ximgproc.createSuperpixelSLIC(
            cv2.cvtColor(smooth, cv2.COLOR_RGB2Lab), algorithm, region, float(compactness)
        )
        engine.iterate(iterations)
        engine.enforceLabelConnectivity(25)
        labels = engine.getLabels()
    return _contiguous(labels)


def _hog_cells(gray: np.ndarray) -> np.ndarray:
    """Per-pixel mean of magnitude-weighted unsigned orientation votes over a 5x5 cell.

    Returns (H, W, 6) float32: entry [y, x] is the cell histogram of the cell centred at (y, x).
    """
    gx = cv2.Sobel(gray, cv2.CV_32F, 1, 0, ksize=1)  # central differences, as HOG
    gy = cv2.Sobel(gray, cv2.CV_32F, 0, 1, ksize=1)
    magnitude, angle = cv2.cartToPolar(gx, gy, angleInDegrees=True)
    bins = (np.mod(angle, 180.0) * (_HOG_ORIENTATIONS / 180.0)).astype(np.int32)
    np.minimum(bins, _HOG_ORIENTATIONS - 1, out=bins)
    votes = np.zeros(gray.shape + (_HOG_ORIENTATIONS,), np.float32)
    np.put_along_axis(votes, bins[..., None], magnitude[..., None], axis=2)
    return cv2.boxFilter(votes, -1, (_HOG_CELL, _HOG_CELL), borderType=cv2.BORDER_REFLECT_101)


def superpixel_descriptors(frame: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Appearance descriptor of every superpixel (the reference's 176-d one).

    Parameters
    ----------
    frame : ndarray, (H, W, 3) uint8
        RGB frame.
    labels : ndarray, (H, W) int
        Superpixels of ``frame``, ``0 .. n-1``, none empty (see :func:`superpixels`).

    Returns
    -------
    descriptors : ndarray, (n, 176) float32
        Per superpixel: HOG on the 15x15 patch centred on its bounding-box
        centre (6 unsigned orientations, 3x3 cells of 5x5 px, one 3x3 block,
        L2-Hys normalised: 54 values); 20-bin histograms of R, G, B, L, a, b
        (OpenCV's 8-bit Lab), each summing to 1 (120 values); the
        bounding-box centre ``(row / H, col / W)`` (2 values).
    centres : ndarray, (n, 2) float32
        Bounding-box centres ``(row, col)`` in pixels.

    Notes
    -----
    The colour histograms are taken over the superpixel's own pixels (one
    ``bincount`` for all of them) instead of over the 15x15 patch as in the
    reference: the same information where the superpixel fills the patch,
    less spill-over from neighbours, and computed for all superpixels in
    one pass over the frame (about 2 ms per 256x144 frame against 66 for
    the reference's per-superpixel loop). Patches reaching past the frame
    edge read mirrored pixels instead of being shifted inside.
    """
    frame = _check_frame(frame)
    labels = np.asarray(labels)
    if labels.shape != frame.shape[:2]:
        raise ValueError(
            f"labels shape {labels.shape} differs from the frame's {frame.shape[:2]}; pass the labels of this frame"
        )
    h, w = labels.shape
    flat = labels.ravel().astype(np.int64)
    n = int(flat.max()) + 1
    counts = np.bincount(flat, minlength=n)
    if (counts == 0).any():
        raise ValueError(
            f"superpixel labels must be 0..n-1 with none empty; label {int(np.argmin(counts))} has no pixel"
        )

    # bounding boxes: (row_min, row_max, col_min, col_max) per label
    slices = ndimage.find_objects(labels.astype(np.int32) + 1)
    bounds = np.array([(s[0].start, s[0].stop - 1, s[1].start, s[1].stop - 1) for s in slices], np.float32)
    centres = np.stack([(bounds[:, 0] + bounds[:, 1]) / 2, (bounds[:, 2] + bounds[:, 3]) / 2], axis=1)

    # HOG: the 3x3 cells of the patch centred on each bbox centre
    cells = _hog_cells(cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0)
    cy = np.round(centres[:, 0]).astype(np.int64)
    cx = np.round(centres[:, 1]).astype(np.int64)
    offsets = np.array([-_HOG_CELL, 0, _HOG_CELL])
    ys = np.clip(cy[:, None, None] + offsets[None, :, None], 0, h - 1)  # (n, 3, 1)
    xs = np.clip(cx[:, None, None] + offsets[None, None, :], 0, w - 1)  # (n, 1, 3)
    hog = cells[ys, xs].reshape(n, -1)  # (n, 54) in (cell row, cell col, orientation) order
    hog /= np.sqrt((hog**2).sum(axis=1, keepdims=True) + 1e-10)  # L2-Hys, as skimage
    np.minimum(hog, 0.2, out=hog)
    hog /= np.sqrt((hog**2).sum(axis=1, keepdims=True) + 1e-10)

    # colour histograms: one bincount per channel over (label, bin)
    lut = _BIN_OF_VALUE
    hist = np.empty((n, _HIST_CHANNELS, _HIST_BINS), np.float32)
    base = flat * _HIST_BINS
    for c, image in enumerate((frame, cv2.cvtColor(frame, cv2.COLOR_RGB2Lab))):
        bins = cv2.LUT(image, lut).reshape(-1, 3)
        for k in range(3):
            hist[:, 3 * c + k] = np.bincount(base + bins[:, k], minlength=n * _HIST_BINS).reshape(n, _HIST_BINS)
    hist = hist.reshape(n, -1) / counts[:, None].astype(np.float32)  # each channel's histogram sums to 1

    location = centres / np.array([max(h, 1), max(w, 1)], np.float32)
    descriptors = np.concatenate([hog, hist, location], axis=1).astype(np.float32)
    return descriptors, centres.astype(np.float32)


def _smallest(d2: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices and values (..., k) of the ``k`` smallest entries along the last axis.

    ``d2`` is overwritten (the found entries become inf). For small ``k``,
    repeated ``argmin`` is several times faster than ``argpartition``.
    """
    index = np.empty(d2.shape[:-1] + (k,), np.int64)
    value = np.empty(d2.shape[:-1] + (k,), d2.dtype)
    for j in range(k):
        found = np.argmin(d2, axis=-1)[..., None]
        index[..., j : j + 1] = found
        value[..., j : j + 1] = np.take_along_axis(d2, found, axis=-1)
        np.put_along_axis(d2, found, np.inf, axis=-1)
    return index, value


def _project(descriptors: list[np.ndarray], dims: int | None) -> list[np.ndarray]:
    """Project the descriptors of a shot onto their ``dims`` principal axes (None: unchanged)."""
    stacked = np.concatenate(descriptors)
    if not dims or dims >= stacked.shape[1] or len(stacked) < 2:
        return descriptors
    centred = stacked - stacked.mean(axis=0)
    _, vectors = np.linalg.eigh(centred.T @ centred)  # ascending eigenvalues
    basis = np.ascontiguousarray(vectors[:, ::-1][:, :dims], dtype=np.float32)
    projected = centred @ basis
    cuts = np.cumsum([len(d) for d in descriptors])[:-1]
    return np.split(projected, cuts)


def transition_matrix(
    descriptors: list[np.ndarray],
    *,
    window: int = 15,
    per_frame: int = 2,
    bandwidth: float = 0.1,
    dims: int | None = None,
) -> scipy.sparse.csr_matrix:
    """Sparse random-walk matrix of the non-local appearance graph of a shot.

    Every superpixel is linked to its ``per_frame`` nearest superpixels
    (Euclidean distance of descriptors) in each frame within ``window``
    frames of its own, its own frame included (itself excluded), with weight
    ``exp(-d^2 / bandwidth)``, and to itself with weight 1; rows are then
    normalised to sum to 1.

    Parameters
    ----------
    descriptors : list of ndarray, each (n_t, d) float
        Descriptors of the superpixels of each frame, in frame order
        (every frame with at least one superpixel).
    window : int
        ``F``: frames ``t-F .. t+F`` are searched (*ref* 15).
    per_frame : int
        ``L``: neighbours per searched frame (*ref* 2); fewer where a frame
        has fewer superpixels.
    bandwidth : float
        ``exp(-d^2 / bandwidth)`` weights (*ref* 0.1).
    dims : int or None
        None: exact neighbours and distances. An int: both are computed on
        the descriptors projected onto their first ``dims`` principal axes
        (over the shot): a cheaper matrix product, but the selection costs
        the same. On DAVIS-2016 train, with a window of 20 frames or less,
        64 dims beat the exact search (J@0.5 0.692 against 0.688 at window
        20, 0.695 against 0.687 at 10); at window 30 they tie; 48 and 32
        lose (``benchmarks/results/segmenter_levers.json``).

    Returns
    -------
    scipy.sparse.csr_matrix, (N, N) float32, N = sum of n_t
        Row-stochastic; row ``offset_t + i`` is superpixel ``i`` of frame
        ``t``. At most ``per_frame * (2 * window + 1) + 1`` entries per row.

    Notes
    -----
    Distances come from one matrix product per frame against the next
    ``window`` frames (``|a|^2 + |b|^2 - 2 a.b``), each pair of frames once
    for both directions: memory O(window n^2) at a time, time
    O(T window n^2 d). The matrix is never dense.
    """
    if window < 0:
        raise ValueError(f"window must be >= 0 frames, got {window}")
    if per_frame < 0:
        raise ValueError(f"per_frame must be >= 0, got {per_frame}")
    if bandwidth <= 0:
        raise ValueError(f"bandwidth must be > 0, got {bandwidth}")
    descriptors = [np.asarray(d, np.float32) for d in descriptors]
    if any(d.ndim != 2 or len(d) == 0 for d in descriptors) or len({d.shape[1] for d in descriptors}) > 1:
        raise ValueError("descriptors must be a list of (n_t, d) arrays, n_t >= 1, with one d for all frames")
    sizes = np.array([len(d) for d in descriptors], np.int64)
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    total, t_count = int(offsets[-1]), len(descriptors)
    if t_count == 0:
        return scipy.sparse.csr_matrix((0, 0), dtype=np.float32)
    descriptors = _project(descriptors, dims)

    # Pad every frame to n_max rows, and append (|x|^2, 1) / (1, |x|^2) so that one
    # matrix product gives squared distances: [-2a, |a|^2, 1] . [b, 1, |b|^2].
    # Distances involving padded rows are set to inf after the product.
    n_max, dim = int(sizes.max()), descriptors[0].shape[1]
    queries = np.zeros((t_count, n_max, dim + 2), np.float32)
    keys = np.zeros((t_count, n_max, dim + 2), np.float32)
    for t, d in enumerate(descriptors):
        norm = (d * d).sum(axis=1)
        queries[t, : len(d)] = np.column_stack([-2.0 * d, norm, np.ones(len(d), np.float32)])
        keys[t, : len(d)] = np.column_stack([d, np.ones(len(d), np.float32), norm])
    local = np.arange(n_max)
    span = min(window, t_count - 1) + 1
    buffer = np.empty((n_max, span * n_max), np.float32)  # reused: no page faults per frame
    back_buffer = np.empty((max(span - 1, 1), n_max, n_max), np.float32)

    rows, cols, d2s = [np.arange(total)], [np.arange(total)], [np.zeros(total, np.float32)]  # self loops
    for t in range(t_count):
        if per_frame == 0:
            break
        stop = min(t_count, t + window + 1)
        k = stop - t
        d2 = np.matmul(queries[t], keys[t:stop].reshape(k * n_max, dim + 2).T, out=buffer[:, : k * n_max])
        d2 = d2.reshape(n_max, k, n_max)  # (i in t, frame t + s, j in that frame)
        d2[sizes[t] :] = np.inf  # padded queries
        for s in range(k):
            d2[:, s, sizes[t + s] :] = np.inf  # padded keys
        d2[local, 0, local] = np.inf  # itself: the self loop
        # later frames -> t, from the same distances (copied before the search below overwrites them)
        if k > 1:
            back = back_buffer[: k - 1]
            np.copyto(back, d2[:, 1:, :].transpose(1, 2, 0))  # (s, j in t + s, i in t)
            found, dist = _smallest(back, per_frame)
            s, j, _ = np.indices(found.shape)
            keep = np.isfinite(dist)
            rows.append(offsets[t + 1 + s[keep]] + j[keep])
            cols.append(offsets[t] + found[keep])
            d2s.append(dist[keep])
        # t -> frames t .. t + window
        found, dist = _smallest(d2, per_frame)  # (i, s, L)
        i, s, _ = np.indices(found.shape)
        keep = np.isfinite(dist)
        rows.append(offsets[t] + i[keep])
        cols.append(offsets[t + s[keep]] + found[keep])
        d2s.append(dist[keep])
    rows = np.concatenate(rows).astype(np.int32)
    cols = np.concatenate(cols).astype(np.int32)
    weights = np.exp(-np.maximum(np.concatenate(d2s), 0.0) / bandwidth).astype(np.float32)
    weights[:total] = 1.0  # self weight 1, whatever d2 says
    # (row, col) pairs are unique by construction, so COO -> CSR sums nothing
    matrix = scipy.sparse.coo_matrix((weights, (rows, cols)), shape=(total, total)).tocsr()
    row_sums = np.add.reduceat(matrix.data, matrix.indptr[:-1]) if total else np.ones(0, np.float32)
    matrix.data /= np.repeat(row_sums, np.diff(matrix.indptr))  # >= 1: the self weight
    return matrix


def vote(
    matrix: scipy.sparse.csr_matrix,
    votes: np.ndarray,
    offsets: np.ndarray,
    *,
    iterations: int = 50,
) -> np.ndarray:
    """Iterate ``v <- P v``, dividing each frame's votes by their maximum (when > 0).

    Parameters
    ----------
    matrix : csr_matrix, (N, N)
        Row-stochastic transition matrix (:func:`transition_matrix`).
    votes : ndarray, (N,) float
        Initial votes (mean saliency of each superpixel).
    offsets : ndarray, (T + 1,) int
        Frame ``t`` owns entries ``offsets[t] .. offsets[t+1]-1``; every frame
        has at least one.
    iterations : int
        Number of steps (*ref* 50).

    Returns
    -------
    ndarray, (N,) float32 in [0, 1]
    """
    votes = np.asarray(votes, np.float32).copy()
    starts = np.asarray(offsets[:-1], np.int64)
    sizes = np.diff(offsets)
    for _ in range(iterations):
        votes = matrix @ votes
        peak = np.maximum.reduceat(votes, starts)
        votes /= np.repeat(np.where(peak > 0, peak, 1.0), sizes).astype(np.float32)
    return np.clip(votes, 0.0, 1.0)


def refine(frame: np.ndarray, soft: np.ndarray, *, radius: int = 8, eps: float = 1e-4) -> np.ndarray:
    """Edge-aware smoothing of a superpixel map, guided by the frame (He et al., guided filter, ECCV 2010).

    Superpixel votes are piecewise constant and vary from one superpixel of
    the object to the next; the guided filter fits the map locally as a
    linear function of the colour, so it follows the frame's edges instead of
    the superpixels' (+3 to 4 points of J on DAVIS at 0.5, see
    benchmarks/results/segmenter.json).

    Parameters
    ----------
    frame : ndarray, (H, W, 3) uint8
        The RGB frame (the guide).
    soft : ndarray, (H, W) float32
        Its soft map in [0, 1].
    radius : int
        Window radius in pixels; 0 returns ``soft`` unchanged.
    eps : float
        Regularisation, in squared intensity units of a [0, 1] image: the
        smaller, the more closely edges are followed.

    Returns
    -------
    ndarray, (H, W) float32 in [0, 1]
    """
    if radius <= 0:
        return soft
    # The uint8 guide with eps in 0-255 units matches He et al.'s filter; OpenCV
    # 5.0 gives wrong results for a float guide scaled to [0, 1] (measured).
    smooth = cv2.ximgproc.guidedFilter(frame, soft.astype(np.float32), int(radius), float(eps) * 255.0**2)
    return np.clip(smooth, 0.0, 1.0)


def suppress_small_blobs(soft: np.ndarray, *, threshold: float = 0.7, ratio: float = 0.6) -> np.ndarray:
    """Push connected blobs of ``soft > threshold`` smaller than ``ratio`` x the largest just under ``threshold``.

    Parameters
    ----------
    soft : ndarray, (H, W) float
        One frame's soft map (modified in place and returned).
    threshold : float
        Foreground threshold (*ref* 0.7).
    ratio : float
        Blobs with fewer pixels than ``ratio`` times the largest blob's are
        demoted to ``threshold - 1e-5`` (*ref* 0.6); 0 disables.
    """
    if ratio <= 0:
        return soft
    count, blobs, stats, _ = cv2.connectedComponentsWithStats((soft > threshold).astype(np.uint8), connectivity=8)
    if count <= 2:  # background plus at most one blob
        return soft
    areas = stats[1:, cv2.CC_STAT_AREA]
    small = np.concatenate([[False], areas < ratio * areas.max()])
    soft[small[blobs]] = threshold - 1e-5
    return soft


CONFIDENT_FOREGROUND = 0.7  # the appearance model learns foreground colours from votes above this


def colour_posterior(
    frames: np.ndarray, soft: np.ndarray, *, bins: int = 32, high: float = CONFIDENT_FOREGROUND, low: float = 0.3
) -> np.ndarray:
    """P(foreground | colour) of every pixel, from the shot's own soft masks: a per-shot appearance model.

    One joint RGB histogram (``bins`` per channel) of the pixels the masks
    call confidently foreground (``> high``) and one of those they call
    confidently background (``< low``), each with one count added per bin and
    normalised; the posterior is ``fg / (fg + bg)`` at each pixel's colour
    (0.5 for a colour seen in neither). Label-free: it learns from the votes.

    Parameters
    ----------
    frames : ndarray, (T, H, W, 3) uint8
        The shot's frames.
    soft : ndarray, (T, H, W) float
        Their soft masks in [0, 1].
    bins : int
        Histogram bins per channel (32: 32^3 colours; chosen on DAVIS-2016
        train over 8, 12, 16 and 64, see ``consensus_voting``).

    Returns
    -------
    ndarray, (T, H, W) float32 in (0, 1)
    """
    if not 1 <= bins <= 256:
        raise ValueError(f"bins must be in 1..256 per channel, got {bins}")
    quantised = (np.asarray(frames).astype(np.int32) * bins) >> 8
    index = (quantised[..., 0] * bins + quantised[..., 1]) * bins + quantised[..., 2]
    foreground = np.bincount(index[soft > high], minlength=bins**3).astype(np.float64) + 1.0
    background = np.bincount(index[soft < low], minlength=bins**3).astype(np.float64) + 1.0
    foreground /= foreground.sum()
    background /= background.sum()
    posterior = (foreground / (foreground + background)).astype(np.float32)
    return posterior[index]


def consensus_voting(
    frames: np.ndarray,
    saliency: np.ndarray,
    *,
    working_max_side: int | None = 256,
    n_segments: int = 400,
    compactness: float = 10.0,
    sigma: float = 5.0,
    method: str = "seeds",
    window: int = 7,
    per_frame: int = 2,
    bandwidth: float = 0.1,
    dims: int | None = 64,
    iterations: int = 100,
    refine_radius: int = 8,
    refine_eps: float = 1e-4,
    blob_threshold: float = 0.7,
    blob_ratio: float = 0.6,
    appearance: float = 0.4,
    appearance_bins: int = 32,
    timings: dict | None = None,
) -> np.ndarray:
    """Soft foreground maps of a shot by non-local consensus voting.

    Steps: shrink frames and saliency to ``working_max_side``; superpixels
    (:func:`superpixels`) and descriptors (:func:`superpixel_descriptors`)
    per frame; the sparse graph (:func:`transition_matrix`); initial votes =
    mean saliency per superpixel; :func:`vote`; paint each superpixel's vote;
    blend in the shot's appearance model (:func:`colour_posterior`, averaged
    per superpixel); :func:`refine`; :func:`suppress_small_blobs`; upsample
    (bilinear) to the input size.

    Parameters
    ----------
    frames : ndarray, (T, H, W, 3) uint8
        RGB frames of one shot, in order.
    saliency : ndarray, (T, H, W) float
        Motion saliency in [0, 1] of the same frames (e.g.
        :func:`motionmasks.motion.motion_saliency`).
    working_max_side : int or None
        Longer side (px) of the resolution everything is computed at; None
        keeps the input size. ``n_segments``, ``sigma`` and the 15x15
        descriptor patch are in pixels of this resolution. 256 keeps DAVIS
        quality (J) of 320 at about half the cost.
    n_segments : int
        Superpixels asked for per frame at the working size (SEEDS snaps it
        to its block grid: at 256x144, 300 gives 216, 400 and 500 give 350,
        600 and 800 give 576).
    compactness, sigma, method : see :func:`superpixels`.
    window, bandwidth, dims : see :func:`transition_matrix`.
    per_frame : int
        Neighbours per frame of the window (*ref* 2).
    iterations : see :func:`vote` (*ref* 50).

    ``per_frame`` and ``iterations`` were chosen on the 30 DAVIS-2016 train
    sequences (``benchmarks/tune_segmenter.py``), then ``n_segments`` 400,
    ``window`` 10 (*ref* 15) and ``dims`` 64 together, with the colour model
    on (``benchmarks/segmenter_levers.py``): train J@0.5 0.689 -> 0.707
    with a cheaper graph; then the colour model's 32 bins and weight 0.4
    (0.714) and ``window`` 7 (0.718). With the shorter window the 64-d
    projection beats the exact 176-d search (see ``dims``).
    refine_radius, refine_eps : see :func:`refine`.
    blob_threshold, blob_ratio : see :func:`suppress_small_blobs`.
    appearance : float in [0, 1]
        Weight of the per-shot colour model against the votes: each frame's
        map is ``(1 - a) votes + a P(fg | colour)``, divided by its maximum.
        It pulls back what motion missed but looks like the object, and
        pushes away moving background of another colour. 0 turns it off
        (the reference). 0.3 with 8 bins was chosen first on the 30 DAVIS-2016
        train sequences (J@0.5 0.671 -> 0.689; dev, which did not choose it,
        0.645 -> 0.656); after the graph changes above, 0.4 with 32 bins
        (train 0.707 -> 0.714, better on 23 of the 30 sequences).
    appearance_bins : int
        Bins per RGB channel of the colour model (:func:`colour_posterior`).
    timings : dict or None
        If given, seconds spent per stage are added under ``"superpixels"``,
        ``"descriptors"``, ``"graph"``, ``"voting"`` (shrinking and the
        initial votes count as superpixels; painting, the appearance model,
        blobs and upsampling as voting).

    Returns
    -------
    maps : ndarray, (T, H, W) float32 in [0, 1]
        Soft foreground maps at the input size. Each frame's maximum is 1
        unless all its votes are 0: every frame gets a "foreground" even
        when nothing moves (pruning must catch those frames).
    """
    frames = np.asarray(frames)
    saliency = np.asarray(saliency)
    if frames.ndim != 4 or frames.shape[3] != 3:
        raise ValueError(f"frames must have shape (T, H, W, 3) (RGB), got {frames.shape}")
    if frames.dtype != np.uint8:
        raise TypeError(
            f"frames must be uint8 RGB, got {frames.dtype}; convert with np.clip(x, 0, 255).astype(np.uint8)"
        )
    if saliency.shape != frames.shape[:3]:
        raise ValueError(
            f"saliency shape {saliency.shape} must be (T, H, W) = {frames.shape[:3]}, one map per frame at the frames' size"
        )
    if not 0.0 <= appearance <= 1.0:
        raise ValueError(f"appearance must be a weight in [0, 1], got {appearance}")
    if not 1 <= appearance_bins <= 256:
        raise ValueError(f"appearance_bins must be in 1..256 per channel, got {appearance_bins}")
    t_count, h, w = frames.shape[:3]
    if t_count == 0 or h == 0 or w == 0:
        return np.zeros((t_count, h, w), np.float32)
    sw, sh = fit_max_side(w, h, working_max_side)

    labels, descriptors, seeds, small = [], [], [], []
    for t in range(t_count):
        with _timed(timings, "superpixels"):
            frame, sal = frames[t], np.nan_to_num(saliency[t].astype(np.float32), nan=0.0)
            if (sh, sw) != (h, w):
                frame = cv2.resize(frame, (sw, sh), interpolation=cv2.INTER_AREA)
                sal = cv2.resize(sal, (sw, sh), interpolation=cv2.INTER_AREA)
            small.append(frame)
            lab = superpixels(frame, n_segments=n_segments, compactness=compactness, sigma=sigma, method=method)
            flat = lab.ravel()
            seeds.append(np.bincount(flat, np.clip(sal.ravel(), 0.0, 1.0)) / np.bincount(flat))
            labels.append(lab)
        with _timed(timings, "descriptors"):
            descriptors.append(superpixel_descriptors(frame, lab)[0])
    with _timed(timings, "graph"):
        matrix = transition_matrix(descriptors, window=window, per_frame=per_frame, bandwidth=bandwidth, dims=dims)
    with _timed(timings, "voting"):
        offsets = np.concatenate([[0], np.cumsum([len(d) for d in descriptors])])
        votes = vote(matrix, np.concatenate(seeds), offsets, iterations=iterations)
        painted = np.stack([votes[offsets[t] : offsets[t + 1]][labels[t]] for t in range(t_count)])
        # the colour model needs some confident foreground to learn from; a frame with no votes
        # at all (nothing moved) stays empty rather than be filled by colour alone
        blend = appearance > 0 and bool((painted > CONFIDENT_FOREGROUND).any())
        if blend:
            posterior = colour_posterior(np.stack(small), painted, bins=appearance_bins)
        maps = np.empty((t_count, h, w), np.float32)
        for t in range(t_count):
            soft = painted[t]
            if blend and soft.max() > 0:  # the colour model, averaged over each superpixel, blended with the votes
                flat = labels[t].ravel()
                per_superpixel = np.bincount(flat, posterior[t].ravel()) / np.bincount(flat)
                soft = (1.0 - appearance) * soft + appearance * per_superpixel[labels[t]].astype(np.float32)
                soft = soft / max(float(soft.max()), 1e-6)
            soft = refine(small[t], soft, radius=refine_radius, eps=refine_eps)
            soft = suppress_small_blobs(soft, threshold=blob_threshold, ratio=blob_ratio)
            maps[t] = soft if (sh, sw) == (h, w) else cv2.resize(soft, (w, h), interpolation=cv2.INTER_LINEAR)
    return maps
