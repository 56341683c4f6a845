"""Stage ``detection``: the embedded default detection set (``motionmasks.synthetic``).

Generates a small synthetic detection dataset in Pascal VOC layout (photo
backgrounds, textured ellipses, horses, stars and triangles with exact boxes)
so the transfer test runs with no download. A real dataset is chosen with
``detection.train`` / ``detection.test`` in params.yaml; the generated one is
then simply unused.
"""

from __future__ import annotations

if __name__ == "__main__":  # a stage process started by DVC: before the slow imports
    from flows.lifeline import die_with_parent
    from flows.prefect_api import report_to_project_api

    die_with_parent()  # never outlive the run
    report_to_project_api(".")  # DVC runs it in the project folder: its runs are recorded there

from pathlib import Path

from prefect import flow

from flows.stage import publish_metrics, stage_main
from motionmasks.atomic import atomic_dir
from motionmasks.params import DetectionParams
from motionmasks.synthetic import DETECTION_CLASSES, write_detection_set


@flow(name="detection", log_prints=True)
def detection(out_dir: Path, metrics_path: Path, params: DetectionParams) -> dict:
    metrics: dict = {"classes": list(DETECTION_CLASSES)}
    settings = {"width": params.width, "height": params.height, "max_objects": params.max_objects}
    with atomic_dir(out_dir) as tmp:
        for split, images, seed in (
            ("train", params.synthetic_train, params.seed * 1_000_003),
            ("test", params.synthetic_test, params.seed * 1_000_003 + 500_000),  # disjoint seeds
        ):
            objects = write_detection_set(tmp / split, images=images, seed=seed, **settings)
            metrics[split] = {"images": images, "objects": objects}
    publish_metrics("detection", metrics, metrics_path)
    return metrics


def main() -> None:
    stage_main(
        "Generate the default synthetic detection set (VOC layout, exact boxes).",
        {"out": "folder to write (train/ and test/ inside)", "metrics": "metrics JSON to write"},
        lambda args, params: detection(args.out, args.metrics, params.detection),
    )


if __name__ == "__main__":
    main()
