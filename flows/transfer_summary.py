"""Stage ``transfer_summary``: the transfer settings side by side (the paper's Figure 8).

Reads every setting's metrics (``metrics/transfer/<trunk>-<depth>.json``,
one per entry of the transfer stage's matrix) and writes the plot data (mAP
versus fine-tuning depth, one column per trunk: DVC draws one line per column) and a summary metrics file: the table, and for
each depth the motion trunk's gain over the random one.
"""

from __future__ import annotations

if __name__ == "__main__":  # a stage process started by DVC: before the slow imports
    from flows.lifeline import die_with_parent
    from flows.prefect_api import report_to_project_api

    die_with_parent()  # never outlive the run
    report_to_project_api(".")  # DVC runs it in the project folder: its runs are recorded there

from pathlib import Path

import pandas as pd
from prefect import flow
from prefect.artifacts import create_table_artifact

from flows.stage import StageFailed, publish_metrics, stage_main
from models.fast_rcnn import DEPTHS
from motionmasks.formats import read_json, write_table

DEPTH_LABELS = {"all": "All", **{d: f">{d}" for d in DEPTHS[1:]}}


@flow(name="transfer_summary", log_prints=True)
def transfer_summary(settings_dir: Path, plot_path: Path, metrics_path: Path) -> dict:
    rows = []
    for path in sorted(settings_dir.glob("*.json")):
        result = read_json(path)
        rows.append({"trunk": result["trunk"], "depth": result["depth"], "mAP": result["mAP"]})
    if not rows:
        raise StageFailed(f"transfer_summary: no setting's metrics in {settings_dir}; run the transfer stage")
    table = pd.DataFrame(rows)
    wide = table.pivot(index="depth", columns="trunk", values="mAP").reindex(
        [d for d in DEPTHS if d in set(table.depth)]
    )
    gains = {}
    if {"motion", "random"} <= set(wide.columns):
        gains = {
            d: round(float(wide.loc[d, "motion"] - wide.loc[d, "random"]), 6)
            for d in wide.index
            if pd.notna(wide.loc[d, "motion"]) and pd.notna(wide.loc[d, "random"])
        }
    wide.insert(0, "frozen", [DEPTHS.index(d) for d in wide.index])  # conv layers frozen: the plot's x
    wide.insert(1, "label", [DEPTH_LABELS[d] for d in wide.index])
    write_table(wide.reset_index(drop=True).rename_axis(columns=None), plot_path)
    metrics = {
        "mAP": {trunk: dict(zip(group["depth"], group["mAP"])) for trunk, group in table.groupby("trunk")},
        "motion_minus_random": gains,
    }
    publish_metrics("transfer-summary", metrics, metrics_path)
    create_table_artifact(
        [{str(k): v for k, v in row.items()} for row in wide.reset_index().to_dict("records")],
        key="transfer-summary-map",
        description="mAP (VOC, IoU 0.5) per fine-tuning depth, one column per trunk",
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
        lambda args, params: transfer_summary(args.settings, args.plot, args.metrics),
    )


if __name__ == "__main__":
    main()
