"""Stage ``download``: fetch every video of the manifest (http(s), file://, a
local path or a local folder of frames) into one folder, with bounded
parallelism, per-item retries on transient errors, resume, a size cap,
checksums and a decode probe (see ``motionmasks.download``).

Writes the fetched table (id, path, frames, fps, width, height, duration_s,
bytes, ...) and a failures report (item, reason). The stage fails only when
more than ``download.max_failure_fraction`` of the items failed.
"""

from __future__ import annotations

if __name__ == "__main__":  # a stage process started by DVC: before the slow imports
    from flows.lifeline import die_with_parent
    from flows.prefect_api import report_to_project_api

    die_with_parent()  # never outlive the run
    report_to_project_api(".")  # DVC runs it in the project folder: its runs are recorded there

import time
from pathlib import Path

import pandas as pd
from prefect import flow

from flows.fanout import make_task_runner, map_batches
from flows.stage import StageFailed, check_failure_fraction, publish_metrics, record_results, stage_main
from motionmasks.download import ManifestError, read_manifest
from motionmasks.params import DownloadParams, Params
from motionmasks.redact import redact_text, redact_url
from tasks.download import download_batch


def _crashed(item: dict, reason: str) -> dict:
    return {
        "id": item["id"],
        "url": redact_url(item["url"]),
        "status": "failed",
        "reason": redact_text(reason, item["url"]),
    }


@flow(name="download", log_prints=True)
def download(
    manifest: Path,
    out_dir: Path,
    fetched_path: Path,
    failures_path: Path,
    metrics_path: Path,
    params: DownloadParams,
    batch_size: int = 4,
) -> dict:
    start = time.perf_counter()
    try:
        items = read_manifest(manifest).to_dict("records")
    except (ManifestError, FileNotFoundError) as exc:
        raise StageFailed(f"download: {exc}") from None
    options = {
        k: getattr(params, k)
        for k in (
            "timeout_s",
            "retries",
            "backoff_s",
            "max_bytes",
            "min_bytes_per_s",
            "max_redirects",
            "max_frame_pixels",
        )
    }
    rows = map_batches(
        download_batch,
        items,  # type: ignore[arg-type]
        batch_size,
        _crashed,
        out_dir=str(out_dir),
        options=options,
        root=str(Path.cwd()),
    )
    as_written = {item["id"]: redact_url(item["url_as_written"]) for item in items}
    for row in rows:  # the records name each source as the manifest does, never by this checkout's folder
        row["url"] = as_written.get(row["id"], row["url"])
    ok, failed = record_results("download", pd.DataFrame(rows), fetched_path, failures_path, item="id")
    metrics = {
        "items": len(rows),
        "fetched": len(ok),
        "failed": len(failed),
        "bytes": int(ok["bytes"].sum()) if len(ok) else 0,
        "frames": int(ok["frames"].sum()) if len(ok) else 0,
    }
    timing = {"seconds": time.perf_counter() - start}
    publish_metrics("download", metrics, metrics_path, timing)
    check_failure_fraction("download", len(failed), len(rows), params.max_failure_fraction, failures_path)
    return metrics


def _run(args, params: Params) -> None:
    runner = make_task_runner(params.runtime, "io", io_workers=params.download.parallel)
    download.with_options(task_runner=runner)(
        Path(params.download.manifest),
        args.out,
        args.fetched,
        args.failures,
        args.metrics,
        params.download,
        # One item per task, so `download.parallel` is exactly the number of
        # simultaneous downloads and one slow server holds up nobody else.
        batch_size=1,
    )


def main() -> None:
    stage_main(
        "Download the videos of the manifest named by download.manifest in params.yaml.",
        {
            "out": "folder for the fetched videos",
            "fetched": "table of fetched videos to write (.parquet)",
            "failures": "failures report to write (.csv)",
            "metrics": "metrics JSON to write",
        },
        _run,
    )


if __name__ == "__main__":
    main()
