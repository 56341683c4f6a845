"""Stage ``transfer_summary``: the transfer settings side by side (the paper's Figure 8).

Reads every setting's metrics (``metrics/transfer/<trunk>-<depth>-<size>.json``,
one per entry of the transfer stage's matrix) and writes the plot data (mAP
versus fine-tuning depth, one column per trunk and training-set size: DVC
draws one line per column) and a summary metrics file: the table, and for
each depth and size the motion trunk's gain over the random one.
"""

from __future__ import annotations

if __name__ == "__main__":  # a stage process started by DVC: first of all, never outlive it
    from flows.lifeline import die_with_parent

    die_with_parent()

from pathlib import Path

import pandas as pd
from prefect import flow
from prefect.artifacts import create_table_artifact

from flows.stage import StageFailed, publish_metrics, stage_main
from flows.transfer import setting_name
from models.fast_rcnn import DEPTHS
from motionmasks.formats import read_json, write_table
from motionmasks.params import TransferParams

DEPTH_LABELS = {"all": "All", **{d: f">{d}" for d in DEPTHS[1:]}}


def line_name(trunk: str, train_size: int | str) -> str:
    return trunk if train_size == "all" else f"{trunk}@{train_size}"


@flow(name="transfer_summary", log_prints=True)
def transfer_summary(settings_dir: Path, plot_path: Path, metrics_path: Path, params: TransferParams) -> dict:
    rows, missing = [], []
    for size in params.train_sizes:
        for trunk in params.trunks:
            for depth in params.depths:
                path = settings_dir / f"{setting_name(trunk, depth, size)}.json"
                if not path.is_file():
                    missing.append(path.name)
                    continue
                result = read_json(path)
                rows.append(
                    {
                        "trunk": trunk,
                        "train_size": size,
                        "depth": depth,
                        "mAP": result["mAP"],
                        "mAP_11point": result["mAP_11point"],
                    }
                )
    if missing:
        raise StageFailed(f"transfer_summary: no metrics for {', '.join(missing)} in {settings_dir}; run `dvc repro`")
    table = pd.DataFrame(rows)
    table["line"] = [line_name(t, s) for t, s in zip(table["trunk"], table["train_size"])]
    wide = table.pivot(index="depth", columns="line", values="mAP").reindex([d for d in DEPTHS if d in params.depths])
    wide.insert(0, "frozen", [DEPTHS.index(d) for d in wide.index])  # conv layers frozen: the plot's x
    wide.insert(1, "label", [DEPTH_LABELS[d] for d in wide.index])
    write_table(wide.reset_index(drop=True).rename_axis(columns=None), plot_path)
    gains = {}
    if {"motion", "random"} <= set(params.trunks):
        for size in params.train_sizes:
            motion = table[(table.trunk == "motion") & (table.train_size == size)].set_index("depth")["mAP"]
            random = table[(table.trunk == "random") & (table.train_size == size)].set_index("depth")["mAP"]
            gains[str(size)] = {
                d: round(float(motion[d] - random[d]), 6)
                for d in motion.index
                if motion[d] is not None and random[d] is not None
            }
    metrics = {
        "mAP": {line: dict(zip(group["depth"], group["mAP"])) for line, group in table.groupby("line")},
        "motion_minus_random": gains,
    }
    publish_metrics("transfer-summary", metrics, metrics_path)
    create_table_artifact(
        [{str(k): v for k, v in row.items()} for row in wide.reset_index().to_dict("records")],
        key="transfer-summary-map",
        description="mAP (VOC, IoU 0.5) per fine-tuning depth, one column per trunk and size",
    )
    return metrics


def main() -> None:
    stage_main(
        "Collect the transfer settings into the mAP-versus-depth table and plot.",
        {
            "settings": "folder of the settings' metrics files",
            "plot": "plot data to write (.csv: mAP per depth, a column per line)",
            "metrics": "summary metrics JSON to write",
        },
        lambda args, params: transfer_summary(args.settings, args.plot, args.metrics, params.transfer),
    )


if __name__ == "__main__":
    main()
