"""The real `motionmasks segment` command on the 35 DAVIS-2016 sequences: speed with 1 and
2 workers, peak memory per worker, and J per sequence on both sets.

- davis2016-train: 30 sequences, 2,079 frames at 427x240;
- davis2016-dev: 5 sequences, 330 frames at 854x480 (the speed goal is for this size);
- one long video (../shared/data/videos/bedroom.mp4, 960x540, 200 frames): speed only,
  with its shot parts spread over the workers, and whether both give the same masks.

Each run is the command as a user types it (a fresh process: imports, probing, decoding,
masks, PNG writing all counted), timed wall-clock. Peak memory per worker is the largest
resident set of any process of the run (getrusage of the children). The masks of the
2-worker run are scored with `motionmasks score` against the sets' ground truth.

Which set chose what: the consensus defaults per_frame, iterations, appearance, n_segments,
window and dims were chosen on davis2016-train (benchmarks/tune_segmenter.py,
benchmarks/segmenter_levers.py); the other defaults come from the first session, which
looked at davis2016-dev. Train is the tuning set here, dev the validation set.

Run: ``.venv/bin/python benchmarks/segment_command.py`` (needs ../shared). Writes
benchmarks/results/segment_command.json and prints the tables.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from motionmasks.video import probe

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
SETS = {
    "davis2016-dev": (
        SHARED / "davis2016-dev" / "JPEGImages" / "480p",
        SHARED / "davis2016-dev" / "Annotations" / "480p",
    ),
    "davis2016-train": (
        SHARED / "davis2016-train" / "JPEGImages" / "240p",
        SHARED / "davis2016-train" / "Annotations" / "240p",
    ),
}
MOTIONMASKS = [sys.executable, "-m", "motionmasks.cli"]


LONG_VIDEO = SHARED / "videos" / "bedroom.mp4"  # 960x540, 200 frames, no cut: one shot in two parts


def _segment(sequences: list[Path], out: Path, workers: int) -> dict:
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    result = subprocess.run(
        [*MOTIONMASKS, "segment", *map(str, sequences), "--out", str(out), "--workers", str(workers), "--quiet"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"segment failed:\n{result.stderr[-3000:]}")
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    frames = sum(len(list(s.glob("*.jpg"))) if s.is_dir() else probe(s, exact=True).frames for s in sequences)
    return {
        "workers": workers,
        "sequences": len(sequences),
        "frames": frames,
        "seconds": round(seconds, 2),
        "frames_per_second": round(frames / seconds, 1),
        # ru_maxrss of the children is the largest single process so far; it only grows across runs
        "peak_rss_mib_any_process_so_far": round(max(before, peak_kib) / 1024, 1),
    }


def _score(pred: Path, gt: Path) -> dict:
    out = pred / "scores.json"
    subprocess.run(
        [*MOTIONMASKS, "score", "--pred", str(pred), "--gt", str(gt), "--json", str(out)],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.read_text())


def main() -> None:
    for name, (frames, _) in SETS.items():
        if not frames.is_dir():
            raise SystemExit(f"{frames} is missing: this benchmark needs ../shared/data/{name}")
    results: dict = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()},
        "load_average_before": os.getloadavg(),
        "note": (
            "consensus per_frame/iterations/appearance/n_segments/window/dims chosen on davis2016-train; "
            "other defaults by the first session on davis2016-dev"
        ),
        "speed": {},
        "quality": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        for name, (frames_dir, gt_dir) in SETS.items():
            sequences = sorted(p for p in frames_dir.iterdir() if p.is_dir())
            runs = []
            for workers in (1, 2):
                out = Path(tmp) / f"{name}-{workers}"
                runs.append(_segment(sequences, out, workers))
                print(f"{name}: {runs[-1]}", flush=True)
            results["speed"][name] = runs
            scores = {t: _score(Path(tmp) / f"{name}-2", gt_dir)["thresholds"][t] for t in ("0.4", "0.5", "0.7")}
            results["quality"][name] = {
                "mean_J": {t: round(s["mean_J"], 4) for t, s in scores.items()},
                "mean_precision@0.5": round(scores["0.5"]["mean_precision"], 4),
                "mean_recall@0.5": round(scores["0.5"]["mean_recall"], 4),
                "sequences": {
                    seq: {
                        "J@0.4": round(scores["0.4"]["sequences"][seq]["J"], 4),
                        "J@0.5": round(r["J"], 4),
                        "J@0.7": round(scores["0.7"]["sequences"][seq]["J"], 4),
                        "precision@0.5": round(r["precision"], 4),
                        "recall@0.5": round(r["recall"], 4),
                        "frames": r["frames"],
                    }
                    for seq, r in scores["0.5"]["sequences"].items()
                },
            }
        # one long input: its shot parts are spread over the workers (the masks are the same)
        runs = [_segment([LONG_VIDEO], Path(tmp) / f"long-{workers}", workers) for workers in (1, 2)]
        for run in runs:
            print(f"{LONG_VIDEO.name}: {run}", flush=True)
        results["speed"][f"one video ({LONG_VIDEO.name}, 960x540)"] = runs
        one, two = (sorted((Path(tmp) / f"long-{w}" / LONG_VIDEO.stem).glob("*.png")) for w in (1, 2))
        results["long_video_masks_identical_with_1_and_2_workers"] = [p.read_bytes() for p in one] == [
            p.read_bytes() for p in two
        ]
    results["load_average_after"] = os.getloadavg()
    path = ROOT / "benchmarks" / "results" / "segment_command.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    for name, quality in results["quality"].items():
        print(f"\n{name}: mean J@0.4/0.5/0.7 = {quality['mean_J']}")
        print(f"{'sequence':<20}{'J@0.5':>8}{'prec':>8}{'recall':>8}")
        for seq, row in quality["sequences"].items():
            print(f"{seq:<20}{row['J@0.5']:>8.3f}{row['precision@0.5']:>8.3f}{row['recall@0.5']:>8.3f}")
    print(f"\nwritten: {path}")


if __name__ == "__main__":
    main()
