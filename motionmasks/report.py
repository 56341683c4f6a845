"""What a pipeline run did, in one self-contained HTML file (``motionmasks report``).

Every ``motionmasks run`` leaves a run record, ``.motionmasks/runs/<run id>.json``:
when it ran, the git revision, and per stage its outcome (ran, skipped and why,
failed), its duration, and its items and failures as its metrics count them. The
report joins the record of one run (the latest by default) with what the project
holds now: every stage's metrics, the charts (per-video J, the ConvNet's
training curves, detection AP versus fine-tuning depth) and the evaluate stage's
gallery (frame, motion mask, ConvNet mask, ground truth). Images are embedded as
data URIs and the page loads nothing from anywhere, so it renders offline and can
be mailed or archived as it is.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import io
import json
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from motionmasks.atomic import atomic_path

RUNS = Path(".motionmasks") / "runs"

# The count each stage's metrics give for "items" (what it worked on) and "failed".
ITEM_KEYS = ("items", "videos", "videos_in", "images", "frames_scored", "train_frames", "test_images")


class ReportError(ValueError):
    """No run to report on, a run id that does not exist, or an --out that is not ours to replace."""


GENERATOR = '<meta name="generator" content="motionmasks report">'  # how a report file is known as ours


def _git_revision(root: Path) -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True)
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=root, capture_output=True, text=True)
    except OSError:
        return "unknown"
    if head.returncode != 0:
        return "unknown"
    return head.stdout.strip() + (" (with uncommitted changes)" if dirty.stdout.strip() else "")


def _counts(metrics: dict[str, Any]) -> tuple[Any, Any]:
    items = next((metrics[k] for k in ITEM_KEYS if isinstance(metrics.get(k), (int, float))), "")
    failed = metrics.get("failed", metrics.get("videos_failed", ""))
    return items, failed if isinstance(failed, (int, float)) else ""


def record_run(
    root: Path, rows: list[dict[str, Any]], started: dt.datetime, targets: list[str] | None, force: bool
) -> Path:
    """Write the run record of ``motionmasks run`` (``rows``: the pipeline's per-stage outcome rows)."""
    finished = dt.datetime.now(dt.UTC)
    run_id = started.strftime("%Y%m%dT%H%M%S%fZ")
    stages = []
    for row in rows:
        items, failed = _counts(row.get("metrics") or {})
        stages.append(
            {
                "stage": row["stage"],
                "outcome": row["outcome"],
                "why": row.get("why", ""),
                "seconds": row.get("seconds", 0.0),
                "items": items,
                "failed": failed,
            }
        )
    record = {
        "id": run_id,
        "started": started.isoformat(timespec="seconds"),
        "finished": finished.isoformat(timespec="seconds"),
        "seconds": round((finished - started).total_seconds(), 1),
        "revision": _git_revision(root),
        "targets": targets or "all",
        "force": force,
        "stages": stages,
    }
    path = root / RUNS / f"{run_id}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(record, indent=2) + "\n")
    return path


def runs(root: Path) -> list[str]:
    """The recorded run ids, oldest first."""
    folder = root / RUNS
    return sorted(p.stem for p in folder.glob("*.json")) if folder.is_dir() else []


def load_run(root: Path, run_id: str | None = None) -> dict[str, Any]:
    known = runs(root)
    if not known:
        raise ReportError(f"{root / RUNS}: no run recorded yet; `motionmasks run` first")
    if run_id is None:
        run_id = known[-1]
    if run_id not in known:
        raise ReportError(f"no run {run_id!r}; recorded runs: {', '.join(known[-10:])}")
    return json.loads((root / RUNS / f"{run_id}.json").read_text())


# ---- the page -------------------------------------------------------------------------------

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.5em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 2em; }
table { border-collapse: collapse; margin: .5em 0 1em; font-size: .9em; }
th, td { border: 1px solid #ddd; padding: .25em .6em; text-align: left; vertical-align: top; }
th { background: #f4f4f4; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.ran { color: #0a6; } .restored { color: #06a; } .failed { color: #c00; font-weight: bold; } .skipped { color: #777; }
figure { margin: 1em 0; } figcaption { font-size: .9em; color: #555; }
.columns { display: grid; grid-template-columns: repeat(4, 1fr); font-size: .85em; color: #555; max-width: 960px; }
"""

# After the page loads, count the images the browser really decoded: a test (and a
# reader's devtools) can tell a report whose pictures show from one whose data is broken.
_SCRIPT = """
window.addEventListener("load", function () {
  var images = document.images, decoded = 0;
  for (var i = 0; i < images.length; i++) if (images[i].complete && images[i].naturalWidth > 0) decoded++;
  document.body.setAttribute("data-images", images.length);
  document.body.setAttribute("data-images-decoded", decoded);
});
"""


def _esc(value: Any) -> str:
    return html.escape(str(value))


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f'<td class="num">{value:.4g}</td>'
    if isinstance(value, int) and not isinstance(value, bool):
        return f'<td class="num">{value}</td>'
    return f"<td>{_esc(value)}</td>"


def _outcome_class(outcome: str) -> str:
    """The stage table's colour: ran, restored (from DVC's run cache: its outputs changed, nothing computed),
    failed (or not run because an upstream stage failed) or skipped."""
    if outcome == "ran":
        return "ran"
    if outcome.startswith("restored"):
        return "restored"
    return "failed" if "fail" in outcome else "skipped"


def _table(header: Iterable[str], rows: Iterable[Iterable[Any]], row_classes: Iterable[str] | None = None) -> str:
    head = "".join(f"<th>{_esc(h)}</th>" for h in header)
    classes = list(row_classes) if row_classes is not None else None
    body = []
    for i, row in enumerate(rows):
        css = f' class="{classes[i]}"' if classes and classes[i] else ""
        body.append(f"<tr{css}>" + "".join(_cell(v) for v in row) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _png(data: bytes, alt: str) -> str:
    return f'<img alt="{_esc(alt)}" src="data:image/png;base64,{base64.b64encode(data).decode()}">'


def _flatten(metrics: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    flat: list[tuple[str, Any]] = []
    for key, value in sorted(metrics.items()):
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat += _flatten(value, f"{name}.")
        elif isinstance(value, list):
            flat.append((name, ", ".join(str(v) for v in value)))
        else:
            flat.append((name, value))
    return flat


def _chart(draw: Any, width: float = 8.0, height: float = 3.2) -> bytes:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(width, height), dpi=100)
    try:
        draw(axes)
        figure.tight_layout()
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png")
        return buffer.getvalue()
    finally:
        plt.close(figure)


def _per_video_chart(table: pd.DataFrame) -> bytes:
    columns = [c for c in ("J", "student_J", "prior_J") if c in table.columns]
    labels = {"J": "motion masks (teacher)", "student_J": "ConvNet (student)", "prior_J": "centred prior"}

    def draw(axes: Any) -> None:
        positions = range(len(table))
        step = 0.8 / max(1, len(columns))
        for k, column in enumerate(columns):
            axes.bar([p + k * step for p in positions], table[column], width=step, label=labels[column])
        axes.set_xticks([p + 0.4 - step / 2 for p in positions], table["video"], rotation=45, ha="right", fontsize=8)
        axes.set_ylabel("J (IoU)")
        axes.set_ylim(0, 1)
        axes.legend(fontsize=8)

    return _chart(draw, height=3.6)


def _training_chart(loss: pd.DataFrame | None, iou: pd.DataFrame | None) -> bytes:
    def draw(axes: Any) -> None:
        if loss is not None:
            axes.plot(loss["step"] + 1, loss["loss"], marker="o", label="training loss", color="tab:blue")
            axes.set_ylabel("loss")
            axes.set_xlabel("epoch")
        if iou is not None:
            other = axes.twinx()
            other.plot(iou["step"] + 1, iou["held_out_iou"], marker="s", color="tab:orange", label="held-out IoU")
            other.set_ylabel("held-out IoU")
            other.set_ylim(0, 1)
            other.legend(loc="upper right", fontsize=8)
        axes.legend(loc="upper left", fontsize=8)

    return _chart(draw)


def _transfer_chart(table: pd.DataFrame) -> bytes:
    trunks = [c for c in table.columns if c != "frozen" and pd.api.types.is_numeric_dtype(table[c])]

    def draw(axes: Any) -> None:
        for column in trunks:
            axes.plot(table["frozen"], table[column], marker="o", label=column)
        axes.set_xticks(table["frozen"], ["All" if f == 0 else f">c{f}" for f in table["frozen"]])
        axes.set_xlabel("fine-tuning depth (conv layers frozen)")
        axes.set_ylabel("mAP (VOC, IoU 0.5)")
        axes.legend(fontsize=8)

    return _chart(draw)


def _figure(png: bytes, alt: str, caption: str) -> str:
    return f"<figure>{_png(png, alt)}<figcaption>{_esc(caption)}</figcaption></figure>"


def _csv(path: Path) -> pd.DataFrame | None:
    """A plots table, or None when there is none (the stage has not run) or it is empty."""
    if not path.is_file():
        return None
    table = pd.read_csv(path)
    return table if len(table) else None


def _read_tsv(path: Path) -> pd.DataFrame | None:
    return pd.read_csv(path, sep="\t") if path.is_file() else None


def build_report(root: Path, run: dict[str, Any]) -> str:
    """The report page of ``run`` (a run record) over the project at ``root``, as one HTML string."""
    parts = [
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>{GENERATOR}",
        f"<title>Motion Masks run {_esc(run['id'])}</title><style>{_STYLE}</style><script>{_SCRIPT}</script>",
        "</head><body>",
        f"<h1>Motion Masks: run {_esc(run['id'])}</h1>",
        f"<p>Project <code>{_esc(root.resolve())}</code> at revision {_esc(run.get('revision', 'unknown'))}; "
        f"started {_esc(run['started'])}, {run.get('seconds', 0)} s; stages asked for: {_esc(run.get('targets'))}"
        f"{' (forced)' if run.get('force') else ''}.</p>",
        "<h2 id='stages'>Stages</h2>",
    ]
    stages = run["stages"]
    css = [_outcome_class(s["outcome"]) for s in stages]
    parts.append(
        _table(
            ["stage", "outcome", "why", "seconds", "items", "failed"],
            [[s["stage"], s["outcome"], s["why"], float(s["seconds"]), s["items"], s["failed"]] for s in stages],
            css,
        )
    )

    parts.append("<h2 id='charts'>Charts</h2>")
    per_video = _csv(root / "plots" / "evaluate_per_video.csv")
    if per_video is not None:
        caption = (
            "J per video (evaluate stage): the motion masks, the ConvNet's single-frame masks and the "
            "centred prior against ground truth."
        )
        parts.append(_figure(_per_video_chart(per_video), "J per video", caption))
    live = root / "metrics" / "train" / "plots" / "metrics"
    loss, iou = _read_tsv(live / "train" / "loss.tsv"), _read_tsv(live / "val" / "held_out_iou.tsv")
    if loss is not None or iou is not None:
        caption = "The ConvNet's training: loss per epoch and IoU on the held-out videos (train stage)."
        parts.append(_figure(_training_chart(loss, iou), "training curves", caption))
    transfer = _csv(root / "plots" / "transfer_map.csv")
    if transfer is not None:
        caption = "Fast R-CNN mAP versus fine-tuning depth, one line per trunk (the paper's Figure 8)."
        parts.append(_figure(_transfer_chart(transfer), "mAP versus depth", caption))

    gallery = root / "data" / "evaluate" / "gallery.png"
    if gallery.is_file():
        parts.append("<h2 id='gallery'>Gallery</h2>")
        parts.append(
            "<div class='columns'><span>frame (video, frame number, J)</span><span>motion mask (teacher)</span>"
            "<span>ConvNet mask (student)</span><span>ground truth</span></div>"
        )
        parts.append(f"<figure>{_png(gallery.read_bytes(), 'gallery')}</figure>")

    parts.append("<h2 id='metrics'>Metrics</h2>")
    for path in sorted((root / "metrics").rglob("*.json")) if (root / "metrics").is_dir() else []:
        if path.parent.name == "train" and path.name == "metrics.json":
            continue  # dvclive's copy of the train stage's last epoch
        try:
            metrics = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            parts.append(f"<p class='failed'>{_esc(path.relative_to(root))}: unreadable ({_esc(exc)})</p>")
            continue
        parts.append(f"<h3>{_esc(path.relative_to(root))}</h3>")
        parts.append(_table(["metric", "value"], _flatten(metrics) if isinstance(metrics, dict) else []))

    failure_rows = []
    for path in sorted((root / "data").glob("*/failures.csv")) if (root / "data").is_dir() else []:
        if path.stat().st_size:
            table = pd.read_csv(path, keep_default_na=False, dtype=str)
            failure_rows += [
                [path.parent.name, r.get("item", ""), r.get("reason", "")] for r in table.to_dict("records")
            ]
    parts.append("<h2 id='failures'>Failures</h2>")
    if failure_rows:
        parts.append(_table(["stage", "item", "reason"], failure_rows[:500]))
        if len(failure_rows) > 500:
            parts.append(f"<p>… and {len(failure_rows) - 500} more in data/&lt;stage&gt;/failures.csv.</p>")
    else:
        parts.append("<p>No item failed.</p>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(root: Path, out: Path, run_id: str | None = None) -> Path:
    """Write the report of ``run_id`` (default: the latest run) to ``out``.

    An existing ``out`` is replaced only when it is a report this command wrote.
    """
    if out.is_symlink() or out.is_dir():
        raise ReportError(f"{out} is a folder or a link; give the path of an HTML file")
    if out.exists():
        with out.open("rb") as handle:
            ours = GENERATOR.encode() in handle.read(4096)
        if not ours:
            raise ReportError(f"{out} exists and is not a report motionmasks wrote; it is left as it is")
    page = build_report(root, load_run(root, run_id))
    with atomic_path(out) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return out
