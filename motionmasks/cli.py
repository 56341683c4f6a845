"""``motionmasks``: the command-line front door.

    motionmasks run [STAGE ...] [--force]   run the pipeline (only what changed re-runs)
    motionmasks status                      which stages are up to date, which would re-run and why
    motionmasks dashboard                   a persistent local Prefect server + UI with every run
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

DASHBOARD_HINT = "http://127.0.0.1:4200"


def _project_root() -> Path:
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / "dvc.yaml").is_file():
            return folder
    sys.exit("error: no dvc.yaml here or above; run motionmasks inside the project folder")


def _prefect_defaults(root: Path) -> None:
    # Keep Prefect's state (its database of runs) with the project, so the
    # dashboard shows the runs made here, and never phone home.
    os.environ.setdefault("PREFECT_HOME", str(root / ".prefect"))
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


def cmd_run(args: argparse.Namespace) -> int:
    root = _project_root()
    _prefect_defaults(root)
    os.chdir(root)
    from flows.pipeline import PipelineFailed, pipeline, use_prefect_server
    from motionmasks.params import ParamsError, load_params

    try:
        load_params(root / "params.yaml")  # fail before any stage starts
    except ParamsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    with use_prefect_server() as url:
        print(f"Prefect API: {url}")
        try:
            results = pipeline(root, args.stages or None, args.force)
        except PipelineFailed as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    print("\nstage       outcome                      seconds")
    for r in results:
        print(f"{r['stage']:<11} {r['outcome']:<28} {r['seconds']:>7.1f}")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    root = _project_root()
    from flows.pipeline import stage_plan

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


def cmd_dashboard(args: argparse.Namespace) -> int:
    root = _project_root()
    _prefect_defaults(root)
    print(f"Prefect dashboard: {DASHBOARD_HINT}  (runs started while it is up report here; Ctrl-C stops it)")
    return subprocess.call([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", "4200"])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="motionmasks",
        description="Learning features by watching objects move: a DVC + Prefect pipeline from videos to "
        "label-free motion masks. Run inside the project folder (where dvc.yaml is).",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run the pipeline; stages whose inputs, code and params did not change are skipped")
    run.add_argument("stages", nargs="*", metavar="STAGE", help="run only these stages (and what they need); default: all")
    run.add_argument("--force", action="store_true", help="re-run the chosen stages even if nothing changed")
    run.set_defaults(func=cmd_run)

    status = sub.add_parser("status", help="show which stages are up to date and which would re-run, and why")
    status.set_defaults(func=cmd_status)

    dashboard = sub.add_parser("dashboard", help=f"start a persistent local Prefect server and UI at {DASHBOARD_HINT}")
    dashboard.set_defaults(func=cmd_dashboard)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
