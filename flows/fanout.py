"""How a stage spreads its per-item work: batches of items (paths, never
arrays) submitted as Prefect tasks to a task runner.

- A Dask cluster when the user names one (``runtime.dask_address`` in
  params.yaml, or ``MOTIONMASKS_DASK_ADDRESS``, which wins).
- Otherwise a local pool: processes for CPU-bound stages (one per core by
  default), threads for network-bound ones.

A batch task never fails because of one bad item (the item functions record
per-item failures); if a whole batch dies (a worker crash, say), every item in
it is reported failed with that reason and the other batches go on.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any, Literal

from prefect import get_run_logger
from prefect.task_runners import ProcessPoolTaskRunner, ThreadPoolTaskRunner

from motionmasks.params import RuntimeParams
from motionmasks.redact import redact_text

DASK_ADDRESS_ENV = "MOTIONMASKS_DASK_ADDRESS"


def dask_address(runtime: RuntimeParams) -> str | None:
    return os.environ.get(DASK_ADDRESS_ENV) or runtime.dask_address


def make_task_runner(runtime: RuntimeParams, kind: Literal["cpu", "io"], io_workers: int = 8) -> Any:
    address = dask_address(runtime)
    if address:
        from prefect_dask import DaskTaskRunner

        return DaskTaskRunner(address=address)
    if kind == "io":
        return ThreadPoolTaskRunner(max_workers=io_workers)
    # Parallelism comes from one process per core; threads inside each worker
    # only fight over the cores (BLAS distance products ran 2-3x slower).
    for variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(variable, "1")  # inherited by the workers before they import numpy
    return ProcessPoolTaskRunner(
        max_workers=runtime.workers or os.cpu_count() or 1, initializer=_single_threaded_opencv
    )


def _single_threaded_opencv() -> None:
    import cv2

    from flows.lifeline import die_with_parent

    die_with_parent()  # a pool worker goes down with its stage process
    cv2.setNumThreads(1)


def batched(items: Sequence[Any], size: int) -> list[list[Any]]:
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


def map_batches(
    task: Any,
    items: Sequence[dict[str, Any]],
    batch_size: int,
    on_batch_failure: Callable[[dict[str, Any], str], dict[str, Any]],
    **kwargs: Any,
) -> list[dict[str, Any]]:
    """Submit ``task(batch, **kwargs)`` per batch; return all result rows in item order.

    ``task`` returns one row (dict) per item. ``on_batch_failure(item, reason)``
    makes the row for an item whose whole batch crashed.
    """
    logger = get_run_logger()
    batches = batched(items, batch_size)
    futures = [task.submit(batch, **kwargs) for batch in batches]
    rows: list[dict[str, Any]] = []
    done = failed = 0
    for number, (batch, future) in enumerate(zip(batches, futures), start=1):
        ids = ", ".join(str(next(iter(item.values()))) for item in batch)
        try:
            batch_rows = future.result()
        except Exception as exc:  # a crashed batch must not lose the others
            reason = redact_text(f"batch crashed: {type(exc).__name__}: {exc}")
            logger.error("%s (items: %s)", reason, ids)
            batch_rows = [on_batch_failure(item, reason) for item in batch]
        rows.extend(batch_rows)
        done += len(batch)
        failed += len({str(row.get("video", row.get("id", ""))) for row in batch_rows if row.get("status") == "failed"})
        # progress through a long stage, naming what each batch held
        logger.info(
            "batch %d/%d done (%s): %d/%d items, %d failed so far",
            number,
            len(batches),
            redact_text(ids),
            done,
            len(items),
            failed,
        )
    return rows
