import numpy as np
import pandas as pd
import pytest

from motionmasks.formats import (
    MapShard, atomic_dir, atomic_path, quantise, read_json, read_map_shard, read_masks, read_table,
    write_json, write_map_shard, write_masks, write_table,
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


def test_atomic_dir_replaces_whole_folder(tmp_path):
    target = tmp_path / "folder"
    target.mkdir()
    (target / "stale").write_text("x")
    with atomic_dir(target) as tmp:
        (tmp / "new").write_text("y")
    assert sorted(p.name for p in target.iterdir()) == ["new"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder"]


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
