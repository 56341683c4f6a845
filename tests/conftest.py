import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


@pytest.fixture(scope="session")
def prefect_api():
    """One temporary Prefect server for the whole test session.

    Its URL is also exported, so stage processes started by DVC report to it
    instead of each starting a server of their own.
    """
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=60):
        url = PREFECT_API_URL.value()
        previous = os.environ.get("PREFECT_API_URL")
        os.environ["PREFECT_API_URL"] = url
        try:
            yield url
        finally:
            if previous is None:
                os.environ.pop("PREFECT_API_URL", None)
            else:
                os.environ["PREFECT_API_URL"] = previous


def shared_path(*parts: str) -> Path:
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is not here (../shared is only beside the project checkout)")
    return path


# A tiny, short training for end-to-end tests: the pipeline's shape without the paper's 71M weights.
FAST_TRAIN = {"width": 0.125, "epochs": 2, "batch_size": 8}
# ... and a tiny transfer test: a few small images, a few SGD steps.
FAST_DETECTION = {"synthetic_train": 8, "synthetic_test": 4, "width": 128, "height": 96}
FAST_PROPOSALS = {"max_side": 128, "max_proposals": 60}
FAST_TRANSFER = {"solver": {"max_side": 128, "iterations": 3, "rois_per_image": 16}}


def _merge(into: dict, values: dict) -> None:
    for key, value in values.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


def project_copy(root: Path, overrides: dict, transfer_depths: list[str] | None = None) -> Path:
    """A copy of this project (code, dvc.yaml, params.yaml with ``overrides`` per group) in a fresh git + DVC repo.

    The train, detection, proposals and transfer groups get the FAST_* settings (``overrides`` win).
    ``transfer_depths`` narrows the transfer matrix (each setting is a process: seconds each) for
    suites that test something else.
    """
    import shutil
    import subprocess
    import sys

    import yaml

    root.mkdir(parents=True, exist_ok=True)
    for name in ("dvc.yaml", "params.yaml"):
        shutil.copy(ROOT / name, root / name)
    for name in ("flows", "tasks", "motionmasks", "models"):
        shutil.copytree(ROOT / name, root / name, ignore=shutil.ignore_patterns("__pycache__"))
    if transfer_depths is not None:
        dvc_yaml = yaml.safe_load((root / "dvc.yaml").read_text())
        dvc_yaml["stages"]["transfer"]["matrix"]["depth"] = transfer_depths
        (root / "dvc.yaml").write_text(yaml.safe_dump(dvc_yaml, sort_keys=False))
    params = yaml.safe_load((root / "params.yaml").read_text())
    fast = {"train": FAST_TRAIN, "detection": FAST_DETECTION, "proposals": FAST_PROPOSALS, "transfer": FAST_TRANSFER}
    for values in (fast, overrides):
        _merge(params, values)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    # a clone has commits (dvclive names its runs after the revision): commit the copy once
    for cmd in (
        ["git", "init", "-q"],
        [sys.executable, "-m", "dvc", "init", "-q"],
        ["git", "add", "-A"],
        ["git", "-c", "user.name=test", "-c", "user.email=test@example.invalid", "commit", "-qm", "project copy"],
    ):
        subprocess.run(cmd, cwd=root, check=True, capture_output=True)
    return root
