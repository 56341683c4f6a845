"""Where the segmenter's time goes, and why two workers give less than 2x, on davis2016-dev (854x480).

Four measurements, each for the defaults of params.yaml and for the graph before the
2026-11-27 study (``OLD_GRAPH``: window 30, 300 superpixels, exact search, colour model
8 bins at 0.3), back to back on the same machine:

1. ``per_stage_ms_per_frame``: one process, OpenCV and BLAS on one thread, every step of
   ``motionmasks segment`` but the file writes (shot split, decode, saliency with flow,
   superpixels, descriptors, graph, voting, upsampling + PNG encoding in memory).
2. ``png_encoding``: ms per 854x480 mask and bytes, for OpenCV's PNG settings.
3. ``two_processes``: one process segmenting ``parkour`` alone, then two at once:
   how much two single-threaded processes slow each other on this machine.
4. ``command_back_to_back``: the real command, 2 workers, the two configurations
   alternating, two rounds.

    .venv/bin/python benchmarks/segment_profile.py      # needs ../shared; about 3 minutes

Writes benchmarks/results/segment_profile.json.
"""

from __future__ import annotations

import os

for _variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")  # one thread per process, as a segment worker

import json  # noqa: E402
import platform  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import cv2  # noqa: E402
import yaml  # noqa: E402

from motionmasks.formats import mask_at_size  # noqa: E402
from motionmasks.params import load_params, parse_params  # noqa: E402
from motionmasks.segment import Segmenter, plan_shots, segment_source  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEV = ROOT.parent / "shared" / "data" / "davis2016-dev" / "JPEGImages" / "480p"
OUT = ROOT / "benchmarks" / "results" / "segment_profile.json"
OLD_GRAPH = {"n_segments": 300, "window": 30, "dims": None, "appearance": 0.3, "appearance_bins": 8}
PNG_SETTINGS = {
    "default": [],
    "level 0": [cv2.IMWRITE_PNG_COMPRESSION, 0],
    "level 1": [cv2.IMWRITE_PNG_COMPRESSION, 1],
    "RLE": [cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE],
    "Huffman only": [cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_HUFFMAN_ONLY],
}


def params_with(consensus: dict) -> dict:
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["consensus"].update(consensus)
    return raw


def segmenter(consensus: dict) -> Segmenter:
    return Segmenter.from_params(parse_params(params_with(consensus)))


def per_stage(seg: Segmenter) -> dict:
    cv2.setNumThreads(1)
    timings: dict = {}
    frames = 0
    start = time.perf_counter()
    for folder in sorted(DEV.iterdir()):
        t = time.perf_counter()
        records = plan_shots(folder, folder.name, seg)
        timings["shot split"] = timings.get("shot split", 0.0) + time.perf_counter() - t
        for record, masks in segment_source(records, seg, timings):
            t = time.perf_counter()
            for mask in masks:
                cv2.imencode(".png", mask_at_size(mask, record.width, record.height))
            timings["upsample + PNG"] = timings.get("upsample + PNG", 0.0) + time.perf_counter() - t
            frames += len(masks)
    total = time.perf_counter() - start
    timings["decode and the rest"] = total - sum(timings.values())
    return {
        "frames": frames,
        "total": round(1000 * total / frames, 2),
        **{k: round(1000 * v / frames, 2) for k, v in sorted(timings.items(), key=lambda kv: -kv[1])},
    }


def png_encoding(seg: Segmenter) -> dict:
    folder = DEV / "parkour"
    record, masks = next(segment_source(plan_shots(folder, folder.name, seg)[:1], seg))
    big = [mask_at_size(m, record.width, record.height) for m in masks[:40]]
    out = {}
    for name, options in PNG_SETTINGS.items():
        start = time.perf_counter()
        size = sum(len(cv2.imencode(".png", m, options)[1]) for m in big)
        out[name] = {
            "ms_per_mask": round(1000 * (time.perf_counter() - start) / len(big), 2),
            "bytes": size // len(big),
        }
    return out


def _one_sequence_seconds() -> float:
    seg = Segmenter.from_params(load_params(ROOT / "params.yaml"))
    cv2.setNumThreads(1)
    folder = DEV / "parkour"
    start = time.perf_counter()
    for _ in segment_source(plan_shots(folder, folder.name, seg), seg):
        pass
    return time.perf_counter() - start


def two_processes() -> dict:
    command = [sys.executable, __file__, "--one-sequence"]
    alone = float(subprocess.run(command, capture_output=True, text=True, check=True).stdout)
    both = [subprocess.Popen(command, stdout=subprocess.PIPE, text=True) for _ in range(2)]
    together = [float(p.communicate()[0]) for p in both]
    return {
        "sequence": "parkour (100 frames)",
        "alone_s": round(alone, 2),
        "two_at_once_s": [round(t, 2) for t in together],
    }


def command_back_to_back() -> dict:
    runs: dict = {"defaults": [], "old graph": []}
    with tempfile.TemporaryDirectory() as tmp:
        old = Path(tmp) / "params.yaml"
        old.write_text(yaml.safe_dump(params_with(OLD_GRAPH)))
        for _ in range(2):
            for name, params in (("old graph", old), ("defaults", ROOT / "params.yaml")):
                out = Path(tmp) / "masks"
                command = [sys.executable, "-m", "motionmasks.cli", "segment", *sorted(map(str, DEV.iterdir()))]
                start = time.perf_counter()
                subprocess.run(
                    [*command, "--out", str(out), "--workers", "2", "--quiet", "--params", str(params)], check=True
                )
                runs[name].append(round(time.perf_counter() - start, 2))
                subprocess.run(["rm", "-rf", str(out)], check=True)
    return {"workers": 2, "frames": 330, "seconds": runs}


def main() -> None:
    if not DEV.is_dir():
        raise SystemExit(f"needs {DEV} (../shared beside the checkout)")
    results = {
        "command": "python benchmarks/segment_profile.py",
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()},
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "load_average_before": os.getloadavg(),
        "old_graph": OLD_GRAPH,
        "per_stage_ms_per_frame": {
            "defaults": per_stage(segmenter({})),
            "old graph": per_stage(segmenter(OLD_GRAPH)),
        },
        "png_encoding": png_encoding(segmenter({})),
        "two_processes": two_processes(),
        "command_back_to_back": command_back_to_back(),
    }
    OUT.write_text(json.dumps(results, indent=1) + "\n")
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    if sys.argv[1:] == ["--one-sequence"]:
        print(_one_sequence_seconds())
    else:
        main()
