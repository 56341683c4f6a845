import numpy as np
import pandas as pd
import pytest

from motionmasks.atomic import OWNER_MARKER, NotOurFolderError, atomic_dir, atomic_path, sweep_temporaries
from motionmasks.formats import (
    MapShard,
    quantise,
    read_json,
    read_map_shard,
    read_masks,
    read_table,
    write_json,
    write_map_shard,
    write_masks,
    write_table,
)


def test_atomic_path_leaves_target_untouched_on_error(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_atomic_dir_replaces_a_folder_it_wrote(tmp_path):
    target = tmp_path / "folder"
    with atomic_dir(target) as tmp:
        (tmp / "stale").write_text("x")
    with atomic_dir(target) as tmp:
        (tmp / "new").write_text("y")
    assert sorted(p.name for p in target.iterdir()) == [OWNER_MARKER, "new"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder"]


def _write_folder_repeatedly(target: str, writer: int, times: int) -> None:

    for i in range(times):
        with atomic_dir(target) as tmp:
            (tmp / "result.txt").write_text(f"{writer} {i}")


def test_two_writers_of_one_folder_at_once_both_finish_and_one_whole_result_stays(tmp_path):
    """Two commands writing the same --out at once: no error, no temporary left, one writer's whole folder."""
    import multiprocessing

    target = tmp_path / "out"
    context = multiprocessing.get_context("spawn")
    writers = [context.Process(target=_write_folder_repeatedly, args=(str(target), w, 150)) for w in (1, 2)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(60)
    assert [w.exitcode for w in writers] == [0, 0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert sorted(p.name for p in target.iterdir()) == [OWNER_MARKER, "result.txt"]
    assert (target / "result.txt").read_text() in {"1 149", "2 149"}


@pytest.mark.parametrize("kind", ["folder", "file", "symlink"])
def test_atomic_dir_never_replaces_what_it_did_not_write(tmp_path, kind):
    target = tmp_path / "user"
    if kind == "folder":
        target.mkdir()
        (target / "precious.jpg").write_text("user data")
    elif kind == "file":
        target.write_text("user data")
    else:
        (tmp_path / "elsewhere").mkdir()
        (tmp_path / "elsewhere" / OWNER_MARKER).write_text("")
        target.symlink_to(tmp_path / "elsewhere")
    before = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    with pytest.raises(NotOurFolderError, match="left as it is"):
        with atomic_dir(target) as tmp:
            (tmp / "new").write_text("y")
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == before


def test_atomic_writers_give_files_and_folders_the_umask_permissions(tmp_path):
    import os

    old = os.umask(0o027)
    try:
        with atomic_path(tmp_path / "a.txt") as tmp:
            tmp.write_text("x")
        with atomic_dir(tmp_path / "d") as tmp:
            pass
    finally:
        os.umask(old)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o640
    assert (tmp_path / "d").stat().st_mode & 0o777 == 0o750


def test_sweep_removes_only_temporaries_of_dead_processes(tmp_path):
    import subprocess
    import sys

    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True
    ).stdout.strip()
    import os

    leftovers = [f".shards.{dead}.ab_cd123.tmp", f".index.{dead}.x1y2z3w4.tmp.parquet"]
    live = f".shards.{os.getpid()}.zzzzzzzz.tmp"
    users = [".shards.1234.tmp", "notes.tmp", f"shards.{dead}.ab_cd123.tmp"]
    (tmp_path / leftovers[0]).mkdir()
    (tmp_path / leftovers[0] / "half.npz").write_bytes(b"x")
    for name in leftovers[1:] + [live] + users:
        (tmp_path / name).write_text("x")
    removed = sweep_temporaries(tmp_path)
    assert sorted(p.name for p in removed) == sorted(leftovers)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live] + users)


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_tables_round_trip(tmp_path, suffix):
    df = pd.DataFrame({"video": ["a", "b"], "shot": [0, 1]})
    write_table(df, tmp_path / f"t{suffix}")
    back = read_table(tmp_path / f"t{suffix}")
    assert list(back["video"]) == ["a", "b"]
    assert [int(x) for x in back["shot"]] == [0, 1]


def test_json_round_trip_with_numpy_values(tmp_path):
    write_json({"J": np.float32(0.5), "n": np.int64(3)}, tmp_path / "m.json")
    assert read_json(tmp_path / "m.json") == {"J": 0.5, "n": 3}


def test_masks_round_trip_binarises(tmp_path):
    masks = np.zeros((2, 3, 4), np.uint8)
    masks[1, 1, 2] = 255
    write_masks(tmp_path / "m.npz", masks, frames=[5, 7])
    back, frames = read_masks(tmp_path / "m.npz")
    assert back.dtype == np.uint8 and back.sum() == 1 and back[1, 1, 2] == 1
    assert frames.tolist() == [5, 7]


def test_map_shard_round_trip_quantises_to_1_255(tmp_path):
    maps = np.array([[[0.0, 0.5], [1.0, 0.2]]], np.float32)
    write_map_shard(tmp_path / "s.npz", MapShard(maps, np.array([3]), {"scale": np.array([2.0])}, {"video": "v"}))
    shard = read_map_shard(tmp_path / "s.npz")
    assert np.abs(shard.maps - maps).max() <= 0.5 / 255 + 1e-7
    assert shard.frames.tolist() == [3] and shard.extras["scale"].tolist() == [2.0]
    assert shard.meta == {"video": "v"}
    assert quantise(np.array([0.5, 2.0, -1.0])).tolist() == [128, 255, 0]


def test_map_shard_rejects_mismatched_frames(tmp_path):
    with pytest.raises(ValueError, match="do not match"):
        write_map_shard(tmp_path / "s.npz", MapShard(np.zeros((2, 2, 2)), np.array([0])))


def test_every_stage_depends_on_the_format_modules_its_code_imports():
    """A change to a format re-runs exactly the stages whose code uses it (dvc.yaml deps)."""
    import ast
    import importlib
    from pathlib import Path

    import yaml

    import motionmasks.formats as formats

    # segment.py serves the segment command too: what only its PNGs use shapes no stage output
    shapes_no_output = {
        ("shots", "quantise"),  # shots uses the segmenter's shot splitting only
        ("shots", "mask_at_size"),
        ("motion", "mask_at_size"),  # the stages store masks at the working size
        ("consensus", "mask_at_size"),
        ("prune", "mask_at_size"),
    }
    root = Path(__file__).resolve().parents[1]
    stages = yaml.safe_load((root / "dvc.yaml").read_text())["stages"]
    module_of = {}
    for name in formats.__all__:
        for sub in ("files", "names", "masks", "maps", "training", "shots", "detection"):
            if name in vars(importlib.import_module(f"motionmasks.formats.{sub}")):
                module_of[name] = f"motionmasks/formats/{sub}.py"
                break
    assert set(module_of) == set(formats.__all__)
    checked = 0
    for stage, spec in stages.items():
        deps = {str(d) for d in spec.get("deps", [])}
        for code in sorted(d for d in deps if d.endswith(".py") and "/formats/" not in d):
            for node in ast.walk(ast.parse((root / code).read_text())):
                if isinstance(node, ast.ImportFrom) and node.module == "motionmasks.formats":
                    for alias in node.names:
                        if (stage, alias.name) in shapes_no_output:
                            continue
                        assert module_of[alias.name] in deps, f"{stage}: {code} uses {alias.name}"
                        checked += 1
    assert checked >= 15
