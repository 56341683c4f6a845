from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

from prefect import task

from motionmasks.detection import DetectionImage
from motionmasks.formats import write_proposal_shard
from motionmasks.proposals import propose, recall_at
from tasks.roots import under


@task(name="proposals-batch")
def proposals_batch(
    images: list[DetectionImage], shard: str, settings: dict[str, Any], root: str = "."
) -> list[dict[str, Any]]:
    """Selective search on a batch of images, written as one proposal shard; one row per image.

    A row carries the image, its shard (empty when it failed) and how many of
    its non-difficult objects some proposal covers at IoU >= 0.5 and 0.7.
    """
    rows, found = [], {}
    for image in images:
        start = time.perf_counter()
        try:
            boxes = propose(replace(image, path=str(under(root, image.path))), **settings)
            found[image.image] = boxes
            truth = image.boxes[~image.difficult]
            row = {
                "status": "ok",
                "reason": "",
                "proposals": len(boxes),
                "objects": len(truth),
                "covered_50": recall_at(boxes, truth, 0.5),
                "covered_70": recall_at(boxes, truth, 0.7),
            }
        except Exception as exc:  # recorded per image, never raised
            row = {"status": "failed", "reason": str(exc)}
        rows.append({"image": image.image, "record": image, "seconds": time.perf_counter() - start, **row})
    if found:
        write_proposal_shard(under(root, shard), found)
    return [{**row, "shard": shard if row["status"] == "ok" else ""} for row in rows]
