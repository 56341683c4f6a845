"""Stage flows run for real (Prefect server, task runners, a Dask LocalCluster)
on tiny inputs: one bad item is reported and never stops the others."""

import numpy as np
import pandas as pd
import pytest
from httpserver import Route, TestServer

from flows.download import download
from flows.fanout import make_task_runner
from flows.stage import StageFailed
from motionmasks.formats import read_json, read_table, write_table
from motionmasks.params import DownloadParams, RuntimeParams, ShotsParams
from motionmasks.video import write_video

pytestmark = pytest.mark.e2e


def _clip(path, seed=0, frames=12):
    rng = np.random.default_rng(seed)
    write_video(path, rng.integers(0, 256, (frames, 32, 48, 3), dtype=np.uint8), fps=10)
    return path


def test_download_flow_reports_failures_and_keeps_going(tmp_path, prefect_api, caplog):
    video = _clip(tmp_path / "clip.mp4").read_bytes()
    with TestServer() as server:
        good = server.add("/good.mp4", Route(body=video))
        flaky = server.add("/flaky.mp4", Route(body=video, statuses=[500, 200]))
        dead = server.add("/dead.mp4", Route(statuses=[404]))
        manifest = tmp_path / "manifest.csv"
        pd.DataFrame({"id": ["good", "flaky", "dead"], "url": [good, flaky, dead]}).to_csv(manifest, index=False)
        params = DownloadParams(backoff_s=0.01, timeout_s=5)
        runner = make_task_runner(RuntimeParams(), "io", io_workers=3)
        metrics = download.with_options(task_runner=runner)(
            manifest,
            tmp_path / "videos",
            tmp_path / "fetched.parquet",
            tmp_path / "failures.csv",
            tmp_path / "metrics.json",
            params,
            batch_size=1,
        )
    fetched = read_table(tmp_path / "fetched.parquet")
    assert sorted(fetched["id"]) == ["flaky", "good"]
    assert set(fetched["frames"]) == {12}
    failures = read_table(tmp_path / "failures.csv")
    assert failures["item"].tolist() == ["dead"] and "404" in failures["reason"][0]
    assert metrics == read_json(tmp_path / "metrics.json")
    assert metrics == {"items": 3, "fetched": 2, "failed": 1, "bytes": 2 * len(video), "frames": 24}  # no timings
    # progress, batch by batch, naming the items
    assert "batch 1/3 done (good): 1/3 items, 0 failed so far" in caplog.text
    assert "batch 3/3 done (dead): 3/3 items, 1 failed so far" in caplog.text


def test_download_flow_records_local_sources_as_the_manifest_wrote_them(tmp_path, prefect_api):
    """The fetched table is the same in every clone: no absolute path of this checkout in it."""
    (tmp_path / "clips").mkdir()
    _clip(tmp_path / "clips" / "a.mp4")
    manifest = tmp_path / "manifest.csv"
    pd.DataFrame({"id": ["a"], "url": ["clips/a.mp4"]}).to_csv(manifest, index=False)
    out = tmp_path / "out"
    download(manifest, out / "videos", out / "fetched.parquet", out / "failures.csv", out / "m.json", DownloadParams())
    fetched = read_table(out / "fetched.parquet")
    assert fetched["url"].tolist() == ["clips/a.mp4"]  # the pipeline gives out_dir relative: no checkout path


def test_download_flow_fails_when_too_many_items_fail(tmp_path, prefect_api):
    manifest = tmp_path / "manifest.csv"
    pd.DataFrame({"id": ["a", "b"], "url": ["ftp://x/a.mp4", "ftp://x/b.mp4"]}).to_csv(manifest, index=False)
    with pytest.raises(StageFailed, match="2 of 2 items failed"):
        download(
            manifest,
            tmp_path / "videos",
            tmp_path / "fetched.parquet",
            tmp_path / "failures.csv",
            tmp_path / "metrics.json",
            DownloadParams(max_failure_fraction=0.5),
        )
    # the report is written before the stage fails, so the user sees every reason
    assert len(read_table(tmp_path / "failures.csv")) == 2


def test_shots_flow_on_a_dask_cluster_matches_local_processes(tmp_path, prefect_api, monkeypatch):
    from distributed import LocalCluster

    from flows.shots import shots

    paths = [_clip(tmp_path / f"v{i}.mp4", seed=i, frames=15) for i in range(3)]
    (tmp_path / "broken.mp4").write_bytes(b"garbage" * 50)
    fetched = pd.DataFrame(
        {
            "id": ["v0", "v1", "v2", "broken"],
            "path": [str(p) for p in paths] + [str(tmp_path / "broken.mp4")],
            "frames": [15, 15, 15, 0],
        }
    )
    write_table(fetched, tmp_path / "fetched.parquet")
    outputs = {}
    local = make_task_runner(RuntimeParams(workers=2), "cpu")
    outputs["local"] = shots.with_options(task_runner=local)(
        tmp_path / "fetched.parquet",
        tmp_path / "local.parquet",
        tmp_path / "local.csv",
        tmp_path / "local.json",
        ShotsParams(),
        batch_size=2,
    )
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        monkeypatch.setenv("MOTIONMASKS_DASK_ADDRESS", cluster.scheduler_address)
        runner = make_task_runner(RuntimeParams(), "cpu")
        assert type(runner).__name__ == "DaskTaskRunner"
        outputs["dask"] = shots.with_options(task_runner=runner)(
            tmp_path / "fetched.parquet",
            tmp_path / "dask.parquet",
            tmp_path / "dask.csv",
            tmp_path / "dask.json",
            ShotsParams(),
            batch_size=2,
        )
    local_table, dask_table = read_table(tmp_path / "local.parquet"), read_table(tmp_path / "dask.parquet")
    pd.testing.assert_frame_equal(local_table, dask_table)
    assert sorted(local_table["video"].unique()) == ["v0", "v1", "v2"]
    for name in ("local", "dask"):
        failures = read_table(tmp_path / f"{name}.csv")
        assert failures["item"].tolist() == ["broken"] and "not a readable video" in failures["reason"][0]
        assert outputs[name]["failed"] == 1


def test_a_bad_manifest_fails_the_stage_with_its_reason(tmp_path, prefect_api):
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("id,url\nclip,a.mp4\nclip,b.mp4\n")
    with pytest.raises(StageFailed, match="download: .*clip"):
        download(
            manifest,
            tmp_path / "videos",
            tmp_path / "fetched.parquet",
            tmp_path / "failures.csv",
            tmp_path / "metrics.json",
            DownloadParams(),
        )


def test_motion_with_no_usable_shot_says_so(tmp_path, prefect_api):
    from flows.motion import motion
    from motionmasks.formats import ShotRecord, write_shot_records
    from motionmasks.params import MotionParams

    write_shot_records(
        tmp_path / "shots.parquet",
        [
            ShotRecord(
                video="v",
                source=str(tmp_path / "v.mp4"),
                shot=0,
                part=0,
                first=0,
                last=4,
                fps=25.0,
                width=32,
                height=24,
                work_width=32,
                work_height=24,
                status="too_short",
            )
        ],
    )
    with pytest.raises(StageFailed, match="no usable shot"):
        motion(
            tmp_path / "shots.parquet",
            tmp_path / "shards",
            tmp_path / "index.parquet",
            tmp_path / "failures.csv",
            tmp_path / "metrics.json",
            MotionParams(),
        )
