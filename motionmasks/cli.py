"""``motionmasks``: the command-line front door.

motionmasks run [STAGE ...] [--force]   run the pipeline (only what changed re-runs)
motionmasks status                      which stages are up to date, which would re-run and why
motionmasks verify [--against REV]      did this run reproduce the committed metrics, plots and dvc.lock?
motionmasks report [--run ID] --out F   one self-contained HTML page of a run: stages, metrics, charts, gallery
motionmasks dashboard                   a persistent local Prefect server + UI with every run
motionmasks segment INPUT... --out DIR  label-free soft masks (8-bit PNG per frame) for videos or frame folders
motionmasks score --pred DIR --gt DIR   DAVIS J / precision / recall of mask folders
motionmasks transfer --train D --test D --trunk CKPT|random --freeze DEPTH --out DIR
                                        one Fast R-CNN transfer setting on any VOC or COCO dataset
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

DASHBOARD_HINT = "http://127.0.0.1:4200"


def _project_root() -> Path:
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / "dvc.yaml").is_file():
            return folder
    sys.exit("error: no dvc.yaml here or above; run motionmasks inside the project folder")


@contextlib.contextmanager
def _run_lock(root: Path) -> Iterator[None]:
    """One pipeline run at a time in a project folder; a second one is told so and stops.

    An OS file lock: it is released when the holder exits, even when killed.
    """
    import fcntl

    path = root / ".dvc" / "tmp" / "motionmasks-run.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise RunBusy(
                f"another run holds this project's lock ({holder}); wait for it to finish, then run "
                "again (its outputs are safe)"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"motionmasks run, pid {os.getpid()}")
        handle.flush()
        try:
            yield
        finally:
            handle.seek(0)
            handle.truncate()


class RunBusy(RuntimeError):
    """Another run (ours or a plain `dvc` command) holds the project."""


def _check_dvc_lock(root: Path) -> None:
    """Fail with one line, not DVC's tracebacks, when a `dvc repro`/`dvc exp run` holds the repository."""
    from dvc.lock import LockError, make_lock

    lock = make_lock(os.path.join(root, ".dvc", "tmp", "lock"), tmp_dir=os.path.join(root, ".dvc", "tmp"))
    try:
        lock.lock()
    except LockError:
        raise RunBusy(
            "a DVC command (dvc repro, dvc exp run, ...) holds this project's lock; wait for it to finish, "
            "then run again (its outputs are safe)"
        ) from None
    lock.unlock()


def _sweep_killed_temporaries(root: Path) -> None:
    """Remove the temporaries a killed stage left beside (or inside) any stage output.

    A stage sweeps its own when it next runs; but when DVC restores it from its run
    cache instead (a bare ``dvc repro`` after the kill), none of its code runs, so
    every ``motionmasks run`` sweeps them all. Only those of processes that are gone.
    """
    import yaml

    from motionmasks.atomic import sweep_temporaries

    folders: set[Path] = set()
    for stage in (yaml.safe_load((root / "dvc.yaml").read_text()) or {}).get("stages", {}).values():
        for kind in ("outs", "metrics", "plots"):
            for entry in stage.get(kind, []) or []:
                path = str(next(iter(entry)) if isinstance(entry, dict) else entry).split("${")[0]
                output = root / path
                folders.update({output.parent, output} if path and not path.endswith("/") else {output})
    for folder in sorted(folders):
        if folder.is_dir():
            for leftover in sweep_temporaries(folder):
                print(f"removed {leftover.relative_to(root)}: left by a run that was killed", file=sys.stderr)


def cmd_run(args: argparse.Namespace) -> int:
    from flows.prefect_api import keep_prefect_state_in

    root = _project_root()
    keep_prefect_state_in(root)
    os.chdir(root)
    import datetime as dt

    from flows.plan import PipelineFailed, stage_plan
    from flows.prefect_api import prefect_api
    from motionmasks.params import ParamsError, load_params
    from motionmasks.report import record_run

    try:
        load_params(root / "params.yaml", complete=True)  # fail before any stage starts
    except ParamsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    started = dt.datetime.now(dt.UTC)
    try:
        with _run_lock(root):
            _check_dvc_lock(root)
            _sweep_killed_temporaries(root)
            plan = stage_plan(root, args.stages or None)
            if args.force or any(step["reasons"] for step in plan):
                with prefect_api(root) as (url, run_server):  # chosen before Prefect is imported
                    from prefect import tags

                    from flows.pipeline import pipeline
                    from flows.stage import project_tag

                    where = f"the project's run server {url}, which stops once idle" if run_server else url
                    print(f"Prefect API: {where} (runs recorded in {os.environ['PREFECT_HOME']})")
                    with tags(project_tag(root)):
                        results = pipeline(root, args.stages or None, args.force, plan)
            else:  # nothing to do: no Prefect server to start, no flow run to record
                print("nothing changed: every stage is up to date")
                results = [
                    {"stage": s["name"], "outcome": "skipped (up to date)", "seconds": 0.0, "why": ""} for s in plan
                ]
    except RunBusy as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    except PipelineFailed as exc:
        if exc.results:
            record = record_run(root, exc.results, started, args.stages or None, args.force)
            print(f"run record: {record.relative_to(root)} (motionmasks report --out report.html)")
        print(f"error: {exc}", file=sys.stderr)
        return 1
    record = record_run(root, results, started, args.stages or None, args.force)
    print(f"\n{'stage':<20} {'outcome':<28} {'seconds':>7}  why")
    for r in results:
        print(f"{r['stage']:<20} {r['outcome']:<28} {r['seconds']:>7.1f}  {r['why']}")
    print(f"run record: {record.relative_to(root)} (motionmasks report --out report.html)")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    root = _project_root()
    from flows.plan import stage_plan

    stale: set[str] = set()
    for step in stage_plan(root):
        upstream = [u for u in step["upstream"] if u in stale]
        if step["reasons"]:
            stale.add(step["name"])
            print(f"{step['name']:<11} would re-run:")
            for reason in step["reasons"]:
                print(f"{'':<13}- {reason}")
        elif upstream:
            stale.add(step["name"])
            print(f"{step['name']:<11} would re-run if its upstream changes its outputs: {', '.join(upstream)}")
        else:
            print(f"{step['name']:<11} up to date")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    root = _project_root()
    from motionmasks.report import ReportError, write_report

    try:
        write_report(root, args.out.resolve(), args.run)
    except ReportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    root = _project_root()
    from motionmasks.reproduce import verify

    try:
        problems = verify(root, args.against)
    except subprocess.CalledProcessError as exc:
        print(f"error: git could not read revision {args.against!r} ({(exc.stderr or '').strip()})", file=sys.stderr)
        return 2
    for problem in problems:
        print(problem)
    if problems:
        print(
            f"not reproduced: {len(problems)} difference(s) from {args.against} beyond the tolerances", file=sys.stderr
        )
        return 1
    print(f"reproduced: metrics, plots and dvc.lock match {args.against} (tolerances: motionmasks/reproduce.py)")
    return 0


def cmd_dashboard(args: argparse.Namespace) -> int:
    from flows.prefect_api import DASHBOARD_API, forget_dashboard, keep_prefect_state_in, record_dashboard

    root = _project_root()
    keep_prefect_state_in(root)
    print(f"Prefect dashboard: {DASHBOARD_HINT}  (runs started while it is up report here; Ctrl-C stops it)")
    server = subprocess.Popen(
        [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", "4200"]
    )
    # Runs send their logs only to a server this project started (or one the user names in
    # PREFECT_API_URL), never to whatever else answers on port 4200.
    record_dashboard(root, server.pid, DASHBOARD_API)
    try:
        return server.wait()
    except KeyboardInterrupt:
        server.terminate()
        return server.wait()
    finally:
        forget_dashboard(root, server.pid)


def _segmenter_options(params_path: Path) -> tuple[Any, int]:
    """The pipeline's own segmenter (params.yaml if there, else the defaults) and its limit on frame size."""
    from motionmasks.params import Params, load_params
    from motionmasks.segment import Segmenter

    params = load_params(params_path) if params_path.is_file() else Params()
    return Segmenter.from_params(params), params.download.max_frame_pixels


def _output_problem(source: Path, target: Path, inputs: list[Path]) -> str | None:
    """Why ``target`` (replaced by the masks of ``source``) must not be written, or None.

    No input of the whole command may be the target, inside it, or hold it.
    """
    from motionmasks.atomic import NotOurFolderError, check_replaceable

    dst = target.resolve()
    for given in inputs:
        src = given.resolve()
        if src == dst or dst in src.parents:
            return f"the output folder {target} would replace the input {given}; choose another --out"
        if given.is_dir() and src in dst.parents:
            return f"the output folder {target} is inside the input frame folder {given}; choose another --out"
    try:
        check_replaceable(target)
    except NotOurFolderError as exc:
        return str(exc)
    return None


def _error_line(source: Path, exc: BaseException) -> str:
    message = str(exc)
    return message if str(source) in message else f"{source}: {message}"  # name the input once


def _segment_worker_init(queue: Any) -> None:
    import cv2

    from flows.lifeline import die_with_parent

    global _PROGRESS
    _PROGRESS = queue
    die_with_parent()  # a killed `segment` leaves no worker writing
    cv2.setNumThreads(1)  # parallelism comes from one process per core


_PROGRESS: Any = None


def _segment_one(source: Path, target: Path, segmenter: Any, max_pixels: int, progress: Any) -> int:
    """``segmenter``: the motion segmenter's settings, or a checkpoint path (the ConvNet, single frames)."""
    if isinstance(segmenter, Path):
        from motionmasks.convnet import write_convnet_mask_folder

        return write_convnet_mask_folder(source, target, segmenter, max_pixels=max_pixels, progress=progress)
    from motionmasks.segment import write_mask_folder

    return write_mask_folder(source, target, segmenter, max_pixels=max_pixels, progress=progress)


def _segment_in_worker(source: Path, target: Path, segmenter: Any, max_pixels: int) -> int:
    if isinstance(segmenter, Path):  # the ConvNet; the motion segmenter never imports torch (2 s per worker)
        import torch

        torch.set_num_threads(1)  # parallelism comes from one process per core
    return _segment_one(source, target, segmenter, max_pixels, _PROGRESS.put)


def cmd_segment(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from motionmasks.atomic import sweep_temporaries
    from motionmasks.params import ParamsError
    from motionmasks.video import probe

    try:
        segmenter, max_pixels = _segmenter_options(args.params)
    except ParamsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.checkpoint is not None:
        from models.checkpoint import CheckpointError, read_checkpoint

        try:
            read_checkpoint(args.checkpoint)  # named at once, not once per input
        except CheckpointError as exc:
            print(f"error: --checkpoint {exc}", file=sys.stderr)
            return 2
        segmenter = args.checkpoint
    if args.out.exists() and not args.out.is_dir():
        print(f"error: --out {args.out} is a file; give a folder", file=sys.stderr)
        return 2
    if args.workers is not None and args.workers < 1:
        print(f"error: --workers must be at least 1, got {args.workers}", file=sys.stderr)
        return 2
    sweep_temporaries(args.out)  # left by a killed earlier segment into this folder
    # resolved: "." or "frames/" must name a folder, never the output folder itself
    names = [source.resolve().name if source.is_dir() else source.stem for source in args.inputs]
    nameless = [str(s) for s, n in zip(args.inputs, names) if not n]
    if nameless:
        print(
            f"error: {', '.join(nameless)}: no name to give the output folder; name the input by its path",
            file=sys.stderr,
        )
        return 2
    clashes = sorted({n for n in names if names.count(n) > 1})
    if clashes:
        print(
            f"error: several inputs would write the same output folder ({', '.join(clashes)}); "
            "segment them into different --out folders",
            file=sys.stderr,
        )
        return 2
    failed = 0
    jobs: list[tuple[Path, Path]] = []
    sizes: dict[Path, int] = {}
    total = 0
    for source, name in zip(args.inputs, names):
        problem = _output_problem(source, args.out / name, args.inputs)
        if problem is None:
            try:  # cheap (headers and one frame): the progress bar's total, and bad inputs named at once
                sizes[source] = probe(source, exact=False, max_pixels=max_pixels).frames
                total += sizes[source]
            except Exception as exc:
                problem = str(exc)
        if problem:
            failed += 1
            print(f"error: {_error_line(source, Exception(problem))}; nothing written for it", file=sys.stderr)
        else:
            jobs.append((source, args.out / name))
    workers = args.workers or os.cpu_count() or 1
    if isinstance(segmenter, Path):  # the ConvNet: whole inputs only
        workers = min(workers, max(1, len(jobs)))
    elif not jobs or (len(jobs) == 1 and sizes[jobs[0][0]] < 2):
        workers = 1  # nothing to share
    jobs.sort(key=lambda job: -sizes[job[0]])  # longest first: the workers finish together
    with tqdm(total=total, unit="frame", disable=args.quiet, desc=f"{len(jobs)} input(s)") as bar:
        outcomes: list[tuple[Path, Path, BaseException | None]] = []
        if workers == 1:
            for source, target in jobs:
                try:
                    _segment_one(source, target, segmenter, max_pixels, bar.update)
                    outcomes.append((source, target, None))
                except Exception as exc:  # one bad input never stops the others
                    outcomes.append((source, target, exc))
                _say(*outcomes[-1], bar)
        elif len(jobs) < workers and not isinstance(segmenter, Path):
            outcomes = _segment_spread(jobs, segmenter, max_pixels, workers, bar)
        else:
            outcomes = _segment_in_parallel(jobs, segmenter, max_pixels, workers, bar)
    failed += sum(exc is not None for _, _, exc in outcomes)
    return 1 if failed else 0


def _say(source: Path, target: Path, exc: BaseException | None, bar: Any) -> None:
    if exc is None:
        bar.write(f"{source}: masks in {target}")
    else:
        bar.write(f"error: {_error_line(source, exc)}; nothing written for it", file=sys.stderr)


@contextlib.contextmanager
def _worker_pool(workers: int, bar: Any) -> Any:
    """Worker processes (spawned, one OpenCV and BLAS thread each) whose progress reaches ``bar``."""
    import multiprocessing
    import threading
    from concurrent.futures import ProcessPoolExecutor

    for variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(variable, "1")  # inherited by the workers before they import numpy
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()

    def drain() -> None:
        for step in iter(queue.get, None):
            bar.update(step)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        with ProcessPoolExecutor(
            workers, mp_context=context, initializer=_segment_worker_init, initargs=(queue,)
        ) as pool:
            yield pool
    finally:
        queue.put(None)
        reader.join(timeout=5)


def _segment_in_parallel(
    jobs: list[tuple[Path, Path]], segmenter: Any, max_pixels: int, workers: int, bar: Any
) -> list[tuple[Path, Path, BaseException | None]]:
    """Whole inputs on the workers (longest first), one progress bar for the whole job."""
    from concurrent.futures import as_completed

    outcomes: list[tuple[Path, Path, BaseException | None]] = []
    with _worker_pool(workers, bar) as pool:
        futures = {
            pool.submit(_segment_in_worker, source, target, segmenter, max_pixels): (source, target)
            for source, target in jobs
        }
        for future in as_completed(futures):
            source, target = futures[future]
            try:
                future.result()
                outcomes.append((source, target, None))
            except Exception as exc:  # a bad input, or a crashed worker: the others go on
                outcomes.append((source, target, exc))
            _say(*outcomes[-1], bar)
    return outcomes


def _segment_spread(
    jobs: list[tuple[Path, Path]], segmenter: Any, max_pixels: int, workers: int, bar: Any
) -> list[tuple[Path, Path, BaseException | None]]:
    """Fewer inputs than workers (one long video, say): each input's shots and parts are
    split into consecutive groups, one per worker (``segment.split_records``; each is
    segmented on its own, so the masks are those of one process), all written into one
    temporary folder that replaces the input's output folder only when every group succeeded.
    An input of one shot part is segmented here, without starting a worker."""
    from concurrent.futures import wait

    from motionmasks.atomic import atomic_dir
    from motionmasks.segment import plan_shots, split_records, write_masks

    outcomes: list[tuple[Path, Path, BaseException | None]] = []
    with contextlib.ExitStack() as stack:
        pool = None
        for source, target in jobs:
            try:
                groups = split_records(plan_shots(source, source.name, segmenter, max_pixels=max_pixels), workers)
                with atomic_dir(target) as tmp:
                    if len(groups) <= 1:
                        write_masks(source, groups[0] if groups else [], tmp, segmenter, progress=bar.update)
                    else:
                        pool = pool or stack.enter_context(_worker_pool(workers, bar))
                        futures = [
                            pool.submit(_write_group_in_worker, source, group, tmp, segmenter) for group in groups
                        ]
                        wait(futures)  # all of them: none may still be writing once a failure removes the folder
                        for future in futures:
                            future.result()  # the first failed group raises: the folder is not swapped in
                        bar.write(f"{source}: {len(groups)} groups of its shots, one per worker")
                outcomes.append((source, target, None))
            except Exception as exc:  # a bad input: nothing of it is written, the others go on
                outcomes.append((source, target, exc))
            _say(*outcomes[-1], bar)
    return outcomes


def _write_group_in_worker(source: Path, records: list, folder: Path, segmenter: Any) -> int:
    from motionmasks.segment import write_masks

    return write_masks(source, records, folder, segmenter, progress=_PROGRESS.put)


def _our_scores(path: Path) -> bool:
    import json

    try:
        scores = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(scores, dict) and set(scores) == {"thresholds", "precision_recall_threshold"}


def cmd_score(args: argparse.Namespace) -> int:
    from motionmasks.evaluate import ScoreError, score_folders
    from motionmasks.formats import write_json

    thresholds = args.threshold or [0.4, 0.5, 0.7]
    try:
        results = {str(t): score_folders(args.pred, args.gt, threshold=t) for t in thresholds}
    except ScoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    sequences = sorted(next(iter(results.values()))["sequences"])
    header = "sequence".ljust(24) + "".join(f"J@{t}".rjust(9) for t in thresholds) + "  precision  recall"
    print(header)
    main_t = str(thresholds[len(thresholds) // 2]) if len(thresholds) > 1 else str(thresholds[0])
    for seq in sequences + ["mean"]:
        if seq == "mean":
            js = [results[str(t)]["mean_J"] for t in thresholds]
            p, r = results[main_t]["mean_precision"], results[main_t]["mean_recall"]
        else:
            js = [results[str(t)]["sequences"][seq]["J"] for t in thresholds]
            p, r = (results[main_t]["sequences"][seq][k] for k in ("precision", "recall"))
        print(seq.ljust(24) + "".join(f"{j:9.3f}" for j in js) + f"  {p:9.3f}  {r:6.3f}")
    out = Path(args.json) if args.json else args.pred / "scores.json"
    if out.is_dir() or (args.json or "").endswith(("/", os.sep)):  # a folder, existing or to be made
        out = out / "scores.json"
    if out.is_file() and not _our_scores(out):
        print(
            f"error: {out} exists and was not written by motionmasks score; it is left as it is: "
            "pass --json with another file",
            file=sys.stderr,
        )
        return 2
    write_json({"thresholds": results, "precision_recall_threshold": float(main_t)}, out)
    print(f"written: {out}")
    return 0


def cmd_transfer(args: argparse.Namespace) -> int:
    """One transfer setting outside the pipeline: the transfer stage's code and metrics."""
    import yaml

    from motionmasks.atomic import NotOurFolderError, atomic_dir, check_replaceable
    from motionmasks.detection import DatasetError, load_dataset
    from motionmasks.formats import write_json
    from motionmasks.params import Params, ParamsError, load_params, parse_params
    from motionmasks.proposals import propose_all
    from motionmasks.transfer import RANDOM, TransferError, TransferSettings, run_transfer

    def fail(message: str) -> int:
        print(f"error: {message}", file=sys.stderr)
        return 2

    try:
        params = load_params(args.params) if args.params.is_file() else Params()
        if args.assignments:
            raw = params.model_dump(mode="json")
            for assignment in args.assignments:
                key, sep, value = assignment.partition("=")
                if not sep:
                    return fail(
                        f"--set {assignment}: expected KEY=VALUE, a key of transfer.solver (e.g. iterations=400)"
                    )
                raw["transfer"]["solver"][key.removeprefix("transfer.solver.")] = yaml.safe_load(value)
            params = parse_params(raw, f"{args.params} with --set")
    except ParamsError as exc:
        return fail(str(exc))
    if args.train_size is not None and args.train_size < 1:
        return fail(f"--train-size {args.train_size}: must be at least 1 (leave it out for every image)")
    if args.trunk != RANDOM and not Path(args.trunk).is_file():
        return fail(f"--trunk {args.trunk}: no such checkpoint (give a mask ConvNet's .pt, or 'random')")
    try:
        check_replaceable(args.out)
    except NotOurFolderError as exc:
        return fail(f"{exc}; choose another --out")
    datasets = {}
    for split, location in (("train", args.train), ("test", args.test)):
        try:
            images, report = load_dataset(location)
        except DatasetError as exc:
            return fail(f"--{split}: {exc}")
        for item, reason in report.failures:
            print(f"warning: {split}: skipped {item}: {reason}", file=sys.stderr)
        print(f"{split}: {location}: " + ", ".join(f"{k} {v}" for k, v in report.as_metrics().items()))
        datasets[split] = (images, report)
    settings = params.proposals.model_dump(exclude={"max_failure_fraction"})
    proposals = {}
    for split, (images, _) in datasets.items():
        print(f"{split}: selective search on {len(images)} images ...", flush=True)
        found, failed = propose_all(images, settings, args.workers)
        for item, reason in failed:
            print(f"warning: {split}: no proposals for {item}: {reason}", file=sys.stderr)
        proposals[split] = found
    train_images = [i for i in datasets["train"][0] if i.image in proposals["train"]]
    test_images = [i for i in datasets["test"][0] if i.image in proposals["test"]]
    try:
        metrics, timing = run_transfer(
            train_images,
            proposals["train"],
            test_images,
            proposals["test"],
            trunk=args.trunk,
            depth=args.freeze,
            train_size=args.train_size,
            settings=TransferSettings(**params.transfer.solver.model_dump()),
            random_like={"width": params.train.width, "batch_norm": params.train.batch_norm},
            log=lambda line: print(line, flush=True),
        )
    except TransferError as exc:
        return fail(str(exc))
    metrics["trunk"] = RANDOM if args.trunk == RANDOM else str(args.trunk)
    for split, (_, report) in datasets.items():
        metrics[f"{split}_dataset"] = report.as_metrics()
    try:
        with atomic_dir(args.out) as tmp:
            write_json(metrics, tmp / "metrics.json")
            write_json({k: round(v, 3) for k, v in timing.items()}, tmp / "timing.json")
    except NotOurFolderError as exc:
        return fail(f"{exc}; choose another --out")
    print(f"mAP {metrics['mAP']} (11-point {metrics['mAP_11point']}); per class: {metrics['AP']}")
    print(f"written: {args.out / 'metrics.json'}")
    return 0


def _add_params_option(command: argparse.ArgumentParser) -> None:
    """``--params`` of the commands that run outside the pipeline (segment, transfer)."""
    command.add_argument(
        "--params",
        type=Path,
        default=Path("params.yaml"),
        help="settings file (default: params.yaml if present, else built-in defaults)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="motionmasks",
        description="Learning features by watching objects move: a DVC + Prefect pipeline from videos to "
        "label-free motion masks. Run inside the project folder (where dvc.yaml is).",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser(
        "run", help="run the pipeline; stages whose inputs, code and params did not change are skipped"
    )
    run.add_argument(
        "stages", nargs="*", metavar="STAGE", help="run only these stages (and what they need); default: all"
    )
    run.add_argument("--force", action="store_true", help="re-run the chosen stages even if nothing changed")
    run.set_defaults(func=cmd_run)

    status = sub.add_parser("status", help="show which stages are up to date and which would re-run, and why")
    status.set_defaults(func=cmd_status)

    report = sub.add_parser(
        "report",
        help="write one self-contained HTML page of a pipeline run (stages, metrics, charts, gallery)",
        description="Joins the record of one `motionmasks run` (the latest by default) with the project's "
        "metrics, charts (per-video J, training curves, mAP versus depth) and the evaluate stage's gallery. "
        "Images are embedded; the page loads nothing from the network.",
    )
    report.add_argument("--run", default=None, help="a run id (file name in .motionmasks/runs/); default: the latest")
    report.add_argument("--out", type=Path, required=True, help="the HTML file to write")
    report.set_defaults(func=cmd_report)

    verify = sub.add_parser(
        "verify",
        help="check that this run reproduced the committed results (metrics, plots, dvc.lock)",
        description="Compare the metrics and plots files and dvc.lock with a git revision's: numbers within "
        "the stated tolerances (exact except what trained networks decide), every hash upstream of training "
        "exact. Exit 0 when reproduced, 1 with one line per difference otherwise. Run after `make run`.",
    )
    verify.add_argument("--against", default="HEAD", help="the git revision to compare with (default: HEAD)")
    verify.set_defaults(func=cmd_verify)

    dashboard = sub.add_parser("dashboard", help=f"start a persistent local Prefect server and UI at {DASHBOARD_HINT}")
    dashboard.set_defaults(func=cmd_dashboard)

    segment = sub.add_parser(
        "segment",
        help="write label-free soft foreground masks (8-bit PNG per frame)",
        description="Segment the moving object of each INPUT (a video file or a folder of frames) "
        "with the pipeline's motion + consensus code and params.yaml settings. Writes one 8-bit PNG "
        "(0-255, the frame's size) per frame under OUT/<input name>/, named like the frame for "
        "frame folders and NNNNN.png for videos.",
    )
    segment.add_argument("inputs", nargs="+", type=Path, metavar="INPUT")
    segment.add_argument("--out", type=Path, required=True, help="output folder")
    _add_params_option(segment)
    segment.add_argument(
        "--workers", type=int, default=None, help="worker processes, one input each (default: one per CPU core)"
    )
    segment.add_argument(
        "--checkpoint",
        type=Path,
        default=None,
        help="a trained mask ConvNet (data/train/model.pt): its masks of each frame alone, no motion used",
    )
    segment.add_argument("--quiet", action="store_true", help="no progress bar")
    segment.set_defaults(func=cmd_segment)

    score = sub.add_parser(
        "score",
        help="score DAVIS-layout mask folders (J, precision, recall)",
        description="Per-sequence J (mean IoU; 1 when both masks are empty), precision and recall of "
        "PRED against GT (both <seq>/<frame>.png; GT 0/255, PRED 0-255 soft or binary), and the mean "
        "of per-sequence J. Prints a table and writes JSON.",
    )
    score.add_argument("--pred", type=Path, required=True, help="predicted masks: <seq>/<frame>.png")
    score.add_argument("--gt", type=Path, required=True, help="ground truth masks: <seq>/<frame>.png")
    score.add_argument(
        "--threshold",
        type=float,
        action="append",
        help="binarisation threshold (repeatable; default: 0.4, 0.5 and 0.7)",
    )
    score.add_argument(
        "--json",
        help="where to write the scores: a file, or a folder for FOLDER/scores.json (default: PRED/scores.json)",
    )
    score.set_defaults(func=cmd_score)

    transfer = sub.add_parser(
        "transfer",
        help="fine-tune a Fast R-CNN on a trunk and score VOC AP on any VOC or COCO dataset",
        description="One transfer setting (paper section 6): selective-search proposals, a Fast R-CNN "
        "on the trunk fine-tuned with convX and below frozen, VOC average precision at IoU 0.5 on the "
        "test set. Datasets are a VOC folder (Annotations/ + JPEGImages/, or .xml beside the images), a "
        "COCO folder or a COCO .json. The solver and proposal settings are params.yaml's (transfer.solver, "
        "proposals). Writes OUT/metrics.json (the transfer stage's metrics) and OUT/timing.json.",
    )
    transfer.add_argument("--train", type=Path, required=True, help="training set (VOC or COCO)")
    transfer.add_argument("--test", type=Path, required=True, help="test set (VOC or COCO)")
    transfer.add_argument("--trunk", required=True, help="a mask ConvNet checkpoint (.pt), or 'random'")
    transfer.add_argument(
        "--freeze",
        required=True,
        choices=["all", "c1", "c2", "c3", "c4", "c5"],
        help="fine-tuning depth: all trains every layer; cX freezes convX and below (the paper's >cX)",
    )
    transfer.add_argument(
        "--train-size", type=int, default=None, help="train on N images drawn at random (default: all)"
    )
    transfer.add_argument("--out", type=Path, required=True, help="output folder")
    _add_params_option(transfer)
    transfer.add_argument(
        "--set",
        dest="assignments",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a transfer.solver setting over the params file (e.g. iterations=400)",
    )
    transfer.add_argument(
        "--workers", type=int, default=None, help="processes for the proposals (default: one per core)"
    )
    transfer.set_defaults(func=cmd_transfer)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
