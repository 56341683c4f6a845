"""The real thing: `motionmasks run` and `dvc repro` on a copy of this project
with a tiny corpus, reporting to a real Prefect server."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import project_copy

from motionmasks.formats import read_json, read_table

ROOT = Path(__file__).resolve().parents[1]
DEPTHS_RUN = ("all", "c5")  # the transfer depths the e2e project runs (every depth is checked in dvc.yaml)
pytestmark = pytest.mark.e2e

TINY = {
    "corpus": {
        "synthetic_videos": 2,
        "shots_per_video": [2, 2],
        "shot_frames": [14, 20],
        "sample_clips": ["carphone_pristine"],
    },
    "runtime": {"workers": 2, "batch_size": 1},
}


def _env() -> dict:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    return env


def _sh(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, f"{cmd} failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return result


@pytest.fixture(scope="module")
def project(tmp_path_factory, prefect_api):
    """A copy of the project (code, dvc.yaml, params.yaml) in a fresh git + DVC repo."""
    # two of the six depths (each transfer setting is a process); the full matrix is checked below
    root = project_copy(tmp_path_factory.mktemp("project"), TINY, transfer_depths=list(DEPTHS_RUN))
    _sh([sys.executable, "-m", "motionmasks.cli", "run"], root)
    return root


def _reproduce(root: Path) -> list[str]:
    from dvc.repo import Repo

    cwd = os.getcwd()
    os.chdir(root)
    old_path = os.environ["PATH"]
    os.environ["PATH"] = _env()["PATH"]
    try:
        with Repo(str(root)) as repo:
            return [stage.addressing for stage in repo.reproduce()]
    finally:
        os.environ["PATH"] = old_path
        os.chdir(cwd)


def test_run_produces_corpus_downloads_and_shot_table(project):
    fetched = read_table(project / "data/download/fetched.parquet")
    assert sorted(fetched["id"]) == ["sample-carphone_pristine", "synth-000", "synth-001"]
    shots = read_table(project / "data/shots/shots.parquet")
    truth = read_table(project / "data/corpus/truth_shots.parquet")
    for video, expected in truth.groupby("video"):
        found = shots[shots["video"] == video]
        assert len(found) == len(expected), f"{video}: found {found[['first', 'last']].values.tolist()}"
    assert read_json(project / "metrics/download.json")["failed"] == 0
    assert read_json(project / "metrics/shots.json")["shots"] == len(shots[shots["part"] == 0])
    assert read_json(project / "metrics/shots.json")["parts_usable"] == int((shots["status"] == "ok").sum())


def test_run_segments_every_usable_shot_and_scores_against_truth(project):
    motion = read_table(project / "data/motion/index.parquet")
    shots = read_table(project / "data/shots/shots.parquet")
    assert len(motion) == int((shots["status"] == "ok").sum())
    consensus = read_table(project / "data/consensus/index.parquet")
    assert sorted(consensus["video"]) == sorted(shots["video"].unique())
    metrics = read_json(project / "metrics/evaluate.json")
    assert metrics["videos_scored"] == 2  # the synthetic clips; the sample clip has no truth
    assert metrics["cut_precision"] == metrics["cut_recall"] == 1.0
    assert metrics["mean_J@0.5"] > 0.5  # label-free masks really find the moving objects
    assert (project / "data/evaluate/gallery.png").stat().st_size > 0


def test_second_repro_runs_nothing(project):
    assert _reproduce(project) == []
    status = _sh([sys.executable, "-m", "motionmasks.cli", "status"], project).stdout
    assert "would re-run" not in status and "up to date" in status
    run = _sh([sys.executable, "-m", "motionmasks.cli", "run"], project).stdout
    assert "nothing changed" in run and "Prefect API" not in run  # no server started for nothing
    assert run.count("skipped (up to date)") == len(yaml.safe_load((project / "dvc.lock").read_text())["stages"])
    report = project / "report.html"
    _sh([sys.executable, "-m", "motionmasks.cli", "report", "--out", str(report)], project)
    page = report.read_text()
    assert "transfer@motion-all" in page and "mAP versus depth" in page and page.count("<img ") == 4


def test_changing_a_shots_param_reruns_shots_and_downstream_only(project):
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["shots"]["min_shot"] = 15
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    status = _sh([sys.executable, "-m", "motionmasks.cli", "status"], project).stdout
    assert "shots       would re-run" in status and "changed param shots.min_shot: 10 -> 15" in status
    assert "corpus      up to date" in status
    ran = _reproduce(project)
    assert ran[0] == "shots"
    assert not {"corpus", "download"} & set(ran)
    assert _reproduce(project) == []


def test_going_back_to_a_parameter_value_already_run_restores_it_from_the_run_cache(project):
    """DVC's run cache: a value run before here is checked out, not computed again."""
    lock_before = yaml.safe_load((project / "dvc.lock").read_text())
    metrics_before = (project / "metrics/evaluate.json").read_bytes()
    params_text = (project / "params.yaml").read_text()
    params = yaml.safe_load(params_text)
    params["evaluate"]["threshold"] = 0.4
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert _reproduce(project) == ["evaluate"]
    assert (project / "metrics/evaluate.json").read_bytes() != metrics_before
    (project / "params.yaml").write_text(params_text)
    run = _sh([sys.executable, "-m", "motionmasks.cli", "run"], project).stdout
    assert re.search(r"^evaluate +restored \(run cache\) .*changed param evaluate.threshold: 0.4 -> 0.5", run, re.M)
    assert not re.search(r"^\S+ +ran ", run, re.M), run  # nothing computed
    assert (project / "metrics/evaluate.json").read_bytes() == metrics_before
    assert yaml.safe_load((project / "dvc.lock").read_text()) == lock_before
    assert _reproduce(project) == []


def test_wrong_param_fails_before_any_stage(project, tmp_path):
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["shots"]["max_sidee"] = 3
    bad = project / "params.yaml"
    good_text = bad.read_text()
    bad.write_text(yaml.safe_dump(params, sort_keys=False))
    try:
        result = subprocess.run(
            [sys.executable, "-m", "motionmasks.cli", "run"],
            cwd=project,
            env=_env(),
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        bad.write_text(good_text)
    assert result.returncode == 2
    assert "shots.max_sidee: unknown key" in result.stderr


def test_force_reruns_only_the_stage_asked_for(project):
    result = _sh([sys.executable, "-m", "motionmasks.cli", "run", "shots", "--force"], project)
    summary = {
        line.split()[0]: line.split(None, 1)[1] for line in result.stdout.split("outcome")[-1].splitlines()[1:] if line
    }
    assert summary["corpus"].startswith("skipped (up to date)") and summary["download"].startswith("skipped")
    assert summary["shots"].startswith("ran") and summary["shots"].endswith("forced")
    assert "motion" not in summary  # downstream stages are not part of `run shots`
    log = result.stdout + result.stderr
    assert log.count("Running stage 'shots'") == 1, "every DVC line once"
    assert "autostage" not in log and "git add dvc.lock" not in log  # no hint after every stage


def test_pipeline_and_segment_command_write_the_same_masks(project, tmp_path):
    """One segmenter: the consensus stage's masks, brought to full size, equal `motionmasks segment`'s PNGs."""
    import cv2
    import numpy as np

    from motionmasks.cli import main
    from motionmasks.formats import mask_at_size, read_map_shard, read_shot_records

    records = [
        r for r in read_shot_records(project / "data/shots/shots.parquet", usable_only=True) if r.video == "synth-000"
    ]
    source = project / records[0].source
    shards = dict(read_table(project / "data/consensus/index.parquet")[["video", "path"]].itertuples(index=False))
    shard = read_map_shard(project / shards["synth-000"], quantised=True)
    assert (
        main(
            [
                "segment",
                str(source),
                "--out",
                str(tmp_path),
                "--params",
                str(project / "params.yaml"),
                "--workers",
                "1",
                "--quiet",
            ]
        )
        == 0
    )
    assert len(shard.frames) == sum(r.frames for r in records) > 0
    for frame, mask in zip(shard.frames, shard.maps):
        png = cv2.imread(str(tmp_path / source.stem / f"{int(frame):05d}.png"), cv2.IMREAD_UNCHANGED)
        assert np.array_equal(png, mask_at_size(mask, records[0].width, records[0].height)), f"frame {frame}"


def test_run_prunes_trains_and_scores_the_student_against_its_teacher(project):
    from models.checkpoint import load_masknet
    from motionmasks.formats import read_training_shard

    prune = read_json(project / "metrics/prune.json")
    index = read_table(project / "data/prune/index.parquet")
    assert prune["frames_in"] == int(index["frames"].sum()) and prune["frames_sampled"] == int(index["sampled"].sum())
    removed = sum(rule["frames"] for rule in prune["removed"].values())
    assert prune["frames_kept"] == prune["frames_in"] - removed >= prune["frames_sampled"] > 0
    shard = read_training_shard(project / index["path"][0])
    assert shard.images.shape[:3] == shard.masks.shape and len(shard.frames) == index["sampled"][0]
    model, info = load_masknet(project / "data/train/model.pt")
    assert info["params"]["width"] == 0.125 and model.output_size == 56
    live = read_json(project / "metrics/train/metrics.json")
    assert live["step"] == 1  # two epochs, counted from 0
    evaluate = read_json(project / "metrics/evaluate.json")
    for name in ("mean_student_J", "mean_student_precision", "mean_student_recall", "mean_prior_J"):
        assert 0 <= evaluate[name] <= 1


def test_segment_checkpoint_writes_the_students_masks_that_evaluate_scored(project, tmp_path):
    """`segment --checkpoint` gives the ConvNet's masks in the segmenter's format, the same the evaluate stage scored."""
    import cv2
    import numpy as np
    import pandas as pd

    from motionmasks.cli import main
    from motionmasks.evaluate import frame_scores
    from motionmasks.formats import read_map_shard, read_masks, read_shot_records

    records = [r for r in read_shot_records(project / "data/shots/shots.parquet") if r.video == "synth-000"]
    source = project / records[0].source
    command = ["segment", str(source), "--out", str(tmp_path), "--checkpoint", str(project / "data/train/model.pt")]
    assert main([*command, "--workers", "1", "--quiet"]) == 0
    pngs = sorted((tmp_path / source.stem).glob("*.png"))
    assert len(pngs) == records[-1].last + 1  # every frame, short shots included
    truth, truth_frames = read_masks(project / "data/corpus/synthetic/synth-000.masks.npz")
    truth_by_frame = dict(zip(truth_frames.tolist(), truth))
    shards = dict(read_table(project / "data/consensus/index.parquet")[["video", "path"]].itertuples(index=False))
    scored = read_map_shard(project / shards["synth-000"], quantised=True).frames
    scores = []
    for frame in scored:
        png = cv2.imread(str(tmp_path / source.stem / f"{int(frame):05d}.png"), cv2.IMREAD_UNCHANGED)
        assert png.shape == (records[0].height, records[0].width) and png.dtype == np.uint8
        scores.append(frame_scores(png >= 128, truth_by_frame[int(frame)].astype(bool))[0])
    per_video = pd.read_csv(project / "plots/evaluate_per_video.csv").set_index("video")
    assert float(np.mean(scores)) == pytest.approx(per_video.loc["synth-000", "student_J"], abs=1e-9)
    assert main(["segment", str(source), "--out", str(tmp_path / "x"), "--checkpoint", str(tmp_path)]) == 2


def test_the_transfer_matrix_is_every_trunk_at_every_depth():
    """This project's dvc.yaml, as DVC expands it: the paper's six depths for both trunks."""
    listed = _sh([sys.executable, "-m", "dvc", "stage", "list", "--name-only"], ROOT).stdout.split()
    expected = {f"transfer@{t}-{d}" for t in ("motion", "random") for d in ("all", "c1", "c2", "c3", "c4", "c5")}
    assert {name for name in listed if name.startswith("transfer@")} == expected


def test_run_detects_with_every_setting_and_draws_map_versus_depth(project):
    import pandas as pd

    proposals = read_json(project / "metrics/proposals.json")
    assert proposals["train"]["images_with_proposals"] == 8 and proposals["failed"] == 0
    assert 0 < proposals["train"]["recall_50"] <= 1
    for trunk in ("motion", "random"):
        for depth in DEPTHS_RUN:
            metrics = read_json(project / f"metrics/transfer/{trunk}-{depth}.json")
            assert metrics["depth"] == depth and metrics["trunk"] == trunk and metrics["train_images"] == 8
            assert 0 <= metrics["mAP"] <= 1 and "train_seconds" not in metrics
    plot = pd.read_csv(project / "plots/transfer_map.csv")
    assert plot["frozen"].tolist() == [0, 5] and {"motion", "random"} <= set(plot.columns)


def test_scarce_labels_rerun_the_settings_and_nothing_upstream(project):
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["transfer"]["train_size"] = 5
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    ran = _reproduce(project)
    assert sorted(ran) == sorted(
        [f"transfer@{t}-{d}" for t in ("motion", "random") for d in DEPTHS_RUN] + ["transfer_summary"]
    )
    assert read_json(project / "metrics/transfer/random-c5.json")["train_images"] == 5


def test_results_pushed_to_a_remote_and_pulled_into_another_clone_rerun_nothing(project, tmp_path):
    """A team shares artifacts through a DVC remote: push here, clone and pull there, nothing to run."""
    dvc = [sys.executable, "-m", "dvc"]
    _sh([*dvc, "repro"], project)  # whatever earlier tests changed, the lock matches the outputs
    _sh([*dvc, "remote", "add", "-f", "-d", "team", str(tmp_path / "remote")], project)
    _sh(["git", "add", "-A"], project)
    _sh(["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid", "commit", "-qm", "results"], project)
    _sh([*dvc, "push"], project)
    clone = tmp_path / "clone"
    _sh(["git", "clone", "-q", str(project), str(clone)], tmp_path)
    assert not (clone / "data/train/model.pt").exists()
    _sh([*dvc, "pull"], clone)
    assert (clone / "data/train/model.pt").read_bytes() == (project / "data/train/model.pt").read_bytes()
    assert "up to date" in _sh([*dvc, "status"], clone).stdout
    ran = _sh([*dvc, "repro"], clone).stdout
    assert "Running stage" not in ran, ran


def test_per_item_stages_on_a_dask_cluster_started_elsewhere_give_the_same_outputs(project, tmp_path, monkeypatch):
    """Workers started in another folder: every item still resolves against the project, same outputs."""
    from distributed import LocalCluster

    def outs() -> dict[str, str]:
        lock = yaml.safe_load((project / "dvc.lock").read_text())["stages"]
        return {o["path"]: o["md5"] for s in lock.values() for o in s.get("outs", [])}

    _sh([sys.executable, "-m", "dvc", "repro"], project)
    before = outs()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the workers' folder: nothing of the project is here
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        monkeypatch.chdir(project)
        env = {**_env(), "MOTIONMASKS_DASK_ADDRESS": cluster.scheduler_address}
        stages = ["download", "shots", "motion", "consensus", "prune", "proposals"]
        result = subprocess.run(
            [sys.executable, "-m", "motionmasks.cli", "run", *stages, "--force"],
            cwd=project,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
        ran_there = " ".join(cluster.scheduler.task_prefixes)  # Dask keys begin with the task function
    for task in ("download_batch", "split_batch", "saliency_batch", "voting_batch", "prune_batch", "proposals_batch"):
        assert task in ran_there, f"{task} did not run on the cluster ({ran_there})"
    for stage in stages:
        assert read_table(project / f"data/{stage}/failures.csv").empty, stage
    assert outs() == before


def test_dvc_plots_draw_real_charts(project):
    """`dvc plots show`: value on the numeric axis, one bar per video; every plot has data."""
    import json

    shown = json.loads(_sh([sys.executable, "-m", "dvc", "plots", "show", "--json"], project).stdout)["data"]
    per_video = shown["plots/evaluate_per_video.csv"][0]["content"]
    encoding = per_video["encoding"]
    assert (encoding["x"]["field"], encoding["x"]["type"]) == ("J", "quantitative")
    assert (encoding["y"]["field"], encoding["y"]["type"]) == ("video", "nominal")
    assert {row["video"] for row in per_video["data"]["values"]} == {"synth-000", "synth-001"}
    for path in ("plots/transfer_map.csv", "metrics/train/plots/metrics/train/loss.tsv"):
        assert shown[path][0]["content"]["data"]["values"], path


def test_every_flow_run_is_labelled_with_its_project(project):
    """The pipeline's flow run and each stage's carry the project's tag (two checkouts, one dashboard)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags

    from flows.stage import project_tag

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[project_tag(project)])), limit=200
        )
    names = {run.flow_id for run in runs}
    flows = {client_flow.name for client_flow in _flows_of(names)}
    assert {"pipeline", "corpus", "shots", "motion", "transfer"} <= flows, flows


def _flows_of(flow_ids: set) -> list:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return [client.read_flow(flow_id) for flow_id in flow_ids]
