"""A stage that fails under a bare ``dvc repro`` puts back the outputs DVC
deleted before running it (``flows.stage.restore_previous_outputs``): on a tiny
DVC project of its own, with cached and uncached outputs, files and folders."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from flows.stage import restore_previous_outputs

MAKE = """
from pathlib import Path
import json, sys
tag = Path("tag.txt").read_text()
Path("out/sub").mkdir(parents=True, exist_ok=True)
Path("out/a.txt").write_text("a" + tag)
Path("out/sub/b.txt").write_text("b" + tag)
Path("table.csv").write_text("x\\n" + tag + "\\n")
Path("m.json").write_text(json.dumps({"score": len(tag)}))
Path("plots").mkdir(exist_ok=True)
Path("plots/p.tsv").write_text("step\\tloss\\n0\\t" + tag + "\\n")
"""

DVC_YAML = {
    "stages": {
        "make": {
            "cmd": "python make.py",
            "deps": ["make.py", "tag.txt"],
            "outs": ["out", "table.csv"],
            "metrics": [{"m.json": {"cache": False}}],
            "plots": [{"plots": {"cache": False}}],
        }
    }
}
OUTPUTS = ["out/a.txt", "out/sub/b.txt", "table.csv", "m.json", "plots/p.tsv"]


def _sh(cmd: list[str], cwd: Path) -> str:
    env_path = f"{Path(sys.executable).parent}:/usr/bin:/bin"
    result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=120, env={"PATH": env_path})
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.fixture
def project(tmp_path):
    _sh(["git", "init", "-q"], tmp_path)
    _sh([sys.executable, "-m", "dvc", "init", "-q"], tmp_path)
    (tmp_path / "make.py").write_text(MAKE)
    (tmp_path / "tag.txt").write_text("1")
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump(DVC_YAML))
    _sh([sys.executable, "-m", "dvc", "repro", "-q"], tmp_path)
    return tmp_path


def test_outputs_deleted_before_a_failed_run_come_back_as_dvc_lock_records_them(project, monkeypatch, capsys):
    before = {name: (project / name).read_bytes() for name in OUTPUTS}
    for name in ("out", "plots"):  # what DVC does before it runs the command
        subprocess.run(["rm", "-rf", str(project / name)], check=True)
    (project / "m.json").unlink()
    (project / "table.csv").write_text("half written by the failed run")
    monkeypatch.setenv("DVC_STAGE", "make")

    restore_previous_outputs(project)

    assert {name: (project / name).read_bytes() for name in OUTPUTS} == before
    assert sorted(p.name for p in (project / "plots").iterdir()) == ["p.tsv"]  # nothing of ours added
    assert "make: 4 previous output(s) back in place" in capsys.readouterr().err
    assert "up to date" in _sh([sys.executable, "-m", "dvc", "status"], project)


def test_an_uncached_output_the_cache_never_kept_is_named_and_the_rest_come_back(project, monkeypatch, capsys):
    lock = yaml.safe_load((project / "dvc.lock").read_text())
    metric = next(o for o in lock["stages"]["make"]["outs"] if o["path"] == "m.json")
    cache_copy = project / ".dvc/cache/files/md5" / metric["md5"][:2] / metric["md5"][2:]
    cache_copy.unlink()  # as in a fresh clone: git brought the metrics, no run of DVC cached them
    (project / "m.json").unlink()
    (project / "table.csv").unlink()
    monkeypatch.setenv("DVC_STAGE", "make")

    restore_previous_outputs(project)

    err = capsys.readouterr().err
    assert "make: a previous output could not be restored: m.json: not in the DVC cache" in err
    assert "git checkout -- m.json" in err and "make: 3 previous output(s) back in place" in err
    assert (project / "table.csv").read_text() == "x\n1\n" and not (project / "m.json").exists()


def test_outside_dvc_or_for_a_stage_never_run_nothing_is_touched(project, monkeypatch, capsys):
    (project / "table.csv").unlink()
    monkeypatch.delenv("DVC_STAGE", raising=False)
    restore_previous_outputs(project)  # a stage run by hand: not DVC's outputs to restore
    assert not (project / "table.csv").exists()
    (project / "dvc.lock").unlink()
    monkeypatch.setenv("DVC_STAGE", "make")
    restore_previous_outputs(project)  # no run recorded: nothing to put back
    assert not (project / "table.csv").exists() and capsys.readouterr().err == ""
