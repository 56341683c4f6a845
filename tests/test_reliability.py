"""Hostile but fair use: every case here failed (lost data, ran a string, leaked a secret,
gave a silently wrong answer or a traceback) before the reliability fixes. Fast and local:
tiny files, a local HTTP server, no orchestrator unless the case is about one.

The slower end-to-end half (SIGKILL in each stage, concurrent runs, a hostile manifest
path through `dvc repro`) is in test_reliability_e2e.py.
"""

from __future__ import annotations

import re
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from httpserver import Route, TestServer

from motionmasks.atomic import OWNER_MARKER
from motionmasks.cli import main
from motionmasks.download import fetch_batch, fetch_one, read_manifest
from motionmasks.formats import read_table, safe_name
from motionmasks.params import ParamsError, load_params
from motionmasks.redact import redact_text, redact_url
from motionmasks.synthetic import make_video
from motionmasks.video import VideoError, frame_files, probe, read_frames, write_video

ROOT = Path(__file__).resolve().parents[1]


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def frames_dir(tmp_path_factory):
    """A user's DAVIS-like layout: DIR/bear/00000.jpg ... (12 frames, 96x64)."""
    root = tmp_path_factory.mktemp("user")
    video = make_video(3, width=96, height=64, shots=1, shot_frames=(12, 12), max_objects=1)
    (root / "bear").mkdir()
    for i, frame in enumerate(video.frames):
        cv2.imwrite(str(root / "bear" / f"{i:05d}.jpg"), frame[..., ::-1])
    write_video(root / "clip.mp4", video.frames, fps=25)
    return root


def _copy(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


# --------------------------------------------------------------------------- 1. segment never loses user data


def test_segment_into_the_inputs_own_parent_refuses_and_keeps_the_frames(frames_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    user = _copy(frames_dir, tmp_path / "DIR")
    before = _tree(user)
    assert main(["segment", str(user / "bear"), "--out", str(user), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "would replace the input" in err and "nothing written" in err
    assert _tree(user) == before


def test_segment_never_replaces_a_users_folder_of_the_same_name(frames_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    d = _copy(frames_dir, tmp_path / "d")
    (d / "clip").mkdir()
    (d / "clip" / "notes.txt").write_text("my own work")
    before = _tree(d)
    assert main(["segment", str(d / "clip.mp4"), "--out", str(d), "--quiet"]) == 1
    assert "was not written by motionmasks" in capsys.readouterr().err
    assert _tree(d) == before


def test_segment_replaces_its_own_earlier_output(frames_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "masks"
    assert main(["segment", str(frames_dir / "clip.mp4"), "--out", str(out), "--quiet"]) == 0
    first = _tree(out)
    assert (out / "clip" / OWNER_MARKER).is_file()
    assert main(["segment", str(frames_dir / "clip.mp4"), "--out", str(out), "--quiet"]) == 0
    assert _tree(out) == first


def test_segment_output_inside_the_input_folder_is_refused(frames_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    bear = _copy(frames_dir / "bear", tmp_path / "bear")
    before = _tree(bear)
    assert main(["segment", str(bear), "--out", str(bear), "--quiet"]) == 1
    assert "inside the input frame folder" in capsys.readouterr().err
    assert _tree(bear) == before


def test_segment_out_that_is_a_file_is_refused(frames_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "out").write_text("x")
    assert main(["segment", str(frames_dir / "clip.mp4"), "--out", str(tmp_path / "out"), "--quiet"]) == 2
    assert "is a file" in capsys.readouterr().err
    assert (tmp_path / "out").read_text() == "x"


def test_segment_error_names_the_input_once(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "broken.mp4").write_bytes(b"junk" * 100)
    assert main(["segment", str(tmp_path / "broken.mp4"), "--out", str(tmp_path / "m"), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert err.count(str(tmp_path / "broken.mp4")) == 1, err


def test_segment_sweeps_its_own_leftovers_of_a_killed_run(frames_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "masks"
    out.mkdir()
    stale = out / ".clip.999999999.abcdefgh.tmp"  # pid that cannot exist
    stale.mkdir()
    (stale / "00000.png").write_bytes(b"half")
    assert main(["segment", str(frames_dir / "clip.mp4"), "--out", str(out), "--quiet"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["clip"]


# --------------------------------------------------------------------------- 4, 6. frame folders: no silent miscount


def test_duplicate_numbered_frames_are_named(frames_dir, tmp_path, monkeypatch, capsys):
    bear = _copy(frames_dir / "bear", tmp_path / "bear")
    cv2.imwrite(str(bear / "00004.png"), cv2.imread(str(bear / "00004.jpg")))
    with pytest.raises(VideoError, match="00004.jpg and 00004.png"):
        frame_files(bear)
    monkeypatch.chdir(tmp_path)
    assert main(["segment", str(bear), "--out", str(tmp_path / "m"), "--quiet"]) == 1
    assert "00004.jpg and 00004.png" in capsys.readouterr().err
    assert not (tmp_path / "m" / "bear").exists()


def test_a_folder_named_like_a_frame_is_not_a_frame(frames_dir, tmp_path):
    bear = _copy(frames_dir / "bear", tmp_path / "bear")
    (bear / "x.jpg").mkdir()
    assert [p.name for p in frame_files(bear)] == [f"{i:05d}.jpg" for i in range(12)]
    assert probe(bear).frames == 12


def test_grayscale_frames_are_read_as_rgb(tmp_path):
    folder = tmp_path / "grey"
    folder.mkdir()
    for i in range(3):
        cv2.imwrite(str(folder / f"{i:05d}.png"), np.full((16, 24), 40 * i, np.uint8))
    frames = [f for _, f in read_frames(folder)]
    assert [f.shape for f in frames] == [(16, 24, 3)] * 3 and frames[2][0, 0].tolist() == [80, 80, 80]


def test_mixed_frame_sizes_are_named_before_decoding(frames_dir, tmp_path):
    bear = _copy(frames_dir / "bear", tmp_path / "bear")
    cv2.imwrite(str(bear / "00007.jpg"), np.zeros((10, 10, 3), np.uint8))
    with pytest.raises(VideoError, match=r"00007.jpg: frame is 10x10 but the video's first frame is 96x64"):
        probe(bear, exact=False)


# --------------------------------------------------------------------------- 8. bounded decode


def _png_header_only(path: Path, width: int, height: int) -> None:
    """A PNG whose header claims width x height RGB and whose pixel data is a stub: decoding it would be
    huge (or fail), so a pixel-limit error proves the header was checked first."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    )


def test_huge_frames_are_refused_from_their_header(tmp_path, monkeypatch, capsys):
    folder = tmp_path / "huge"
    folder.mkdir()
    for i in range(3):
        _png_header_only(folder / f"{i:05d}.png", 16000, 16000)
    with pytest.raises(VideoError, match=r"16000x16000 \(256,000,000 pixels\), over the limit of 36,000,000"):
        probe(folder, exact=False)
    monkeypatch.chdir(tmp_path)
    assert main(["segment", str(folder), "--out", str(tmp_path / "m"), "--quiet"]) == 1
    assert "pixels per frame" in capsys.readouterr().err


def test_download_pixel_limit_is_a_parameter(frames_dir, tmp_path):
    ok = fetch_one("bear", str(frames_dir / "bear"), tmp_path / "v")
    small = fetch_one("bear2", str(frames_dir / "bear"), tmp_path / "v", max_frame_pixels=96 * 64 - 1)
    assert ok.status == "ok"
    assert small.status == "failed" and "raise download.max_frame_pixels" in small.reason
    assert not (tmp_path / "v" / "bear2.frames").exists()


# --------------------------------------------------------------------------- 4, 6. score: validated ground truth


@pytest.fixture()
def davis(tmp_path):
    pred, gt = tmp_path / "pred" / "s", tmp_path / "gt" / "s"
    pred.mkdir(parents=True)
    gt.mkdir(parents=True)
    mask = np.zeros((20, 30), np.uint8)
    mask[5:15, 10:20] = 255
    for i in range(3):
        cv2.imwrite(str(gt / f"{i:05d}.png"), mask)
        cv2.imwrite(str(pred / f"{i:05d}.png"), mask)
    return tmp_path / "pred", tmp_path / "gt"


def test_score_refuses_ground_truth_that_is_not_binary_and_says_what_it_found(davis, capsys):
    pred, gt = davis
    noisy = cv2.imread(str(gt / "s" / "00001.png"), cv2.IMREAD_GRAYSCALE)
    noisy[noisy == 0] = 1
    noisy[0, 0] = 2
    cv2.imwrite(str(gt / "s" / "00001.png"), noisy)
    assert main(["score", "--pred", str(pred), "--gt", str(gt)]) == 2
    err = capsys.readouterr().err
    assert "00001.png: ground truth must be binary, 0/255 or 0/1, but holds the values 1, 2, 255" in err


def test_score_accepts_0_1_ground_truth(davis, capsys):
    pred, gt = davis
    for path in (gt / "s").iterdir():
        cv2.imwrite(str(path), (cv2.imread(str(path), cv2.IMREAD_GRAYSCALE) > 0).astype(np.uint8))
    assert main(["score", "--pred", str(pred), "--gt", str(gt), "--threshold", "0.5"]) == 0
    assert "1.000" in capsys.readouterr().out


def test_score_matches_upper_case_png_predictions(davis):
    pred, gt = davis
    for path in (pred / "s").iterdir():
        path.rename(path.with_suffix(".PNG"))
    assert main(["score", "--pred", str(pred), "--gt", str(gt), "--threshold", "0.5"]) == 0


def test_score_json_into_a_folder(davis, tmp_path):
    pred, gt = davis
    (tmp_path / "reports").mkdir()
    assert main(["score", "--pred", str(pred), "--gt", str(gt), "--json", str(tmp_path / "reports")]) == 0
    assert (tmp_path / "reports" / "scores.json").is_file()


def test_evaluate_never_reads_ground_truth_outside_its_folder(tmp_path):
    from flows.evaluate import load_truth

    davis = tmp_path / "annotations"
    (davis / "bear").mkdir(parents=True)
    cv2.imwrite(str(davis / "bear" / "00000.png"), np.zeros((4, 4), np.uint8))
    secret = tmp_path / "secret"
    secret.mkdir()
    cv2.imwrite(str(secret / "00000.png"), np.full((4, 4), 255, np.uint8))
    assert load_truth("../secret", tmp_path / "corpus", davis) is None
    assert load_truth(str(secret), tmp_path / "corpus", davis) is None
    assert set(load_truth("bear", tmp_path / "corpus", davis)) == {0}


# --------------------------------------------------------------------------- 3. credentials never stored


@pytest.mark.parametrize(
    "url, shown",
    [
        ("https://bob:hunter2@example.org/v.mp4", "https://***@example.org/v.mp4"),
        ("https://example.org/v.mp4?token=s3cr3t&res=720", "https://example.org/v.mp4?token=***&res=720"),
        (
            "https://b.s3.amazonaws.com/v.mp4?X-Amz-Credential=AKIA1&X-Amz-Signature=abcd&X-Amz-Expires=60",
            "https://b.s3.amazonaws.com/v.mp4?X-Amz-Credential=***&X-Amz-Signature=***&X-Amz-Expires=60",
        ),
        ("https://example.org/watch?v=dQw4w9WgXcQ", "https://example.org/watch?v=dQw4w9WgXcQ"),
        ("/data/videos/a.mp4", "/data/videos/a.mp4"),
    ],
)
def test_redact_url(url, shown):
    assert redact_url(url) == shown


def test_redact_text_hides_urls_and_the_items_own_secrets():
    text = "connect to https://u:pw123@h/x failed; user u sent token abcdef"
    assert redact_text(text, "https://u:pw123@h/x?api_key=abcdef") == (
        "connect to https://***@h/x failed; user u sent token ***"
    )


def test_credentials_appear_in_no_result_and_no_log(frames_dir, tmp_path, caplog):
    video = (frames_dir / "clip.mp4").read_bytes()
    with TestServer() as server:
        base = server.add("/v.mp4", Route(body=video)).replace("http://", "http://alice:hunter2@")
        dead = server.add("/dead.mp4", Route(statuses=[503]))
        items = [
            {"id": "ok", "url": base + "?token=SECRET-TOKEN-1"},
            {"id": "dead", "url": dead + "?api_key=SECRET-KEY-2"},
            {"id": "", "url": dead + "?sig=SECRET-SIG-3"},
        ]
        rows = fetch_batch(items, tmp_path / "v", retries=1, backoff_s=0.0, sleep=lambda s: None)
    stored = repr(rows) + caplog.text
    for secret in ("hunter2", "SECRET-TOKEN-1", "SECRET-KEY-2", "SECRET-SIG-3"):
        assert secret not in stored
    assert [r["status"] for r in rows] == ["ok", "failed", "failed"]
    assert rows[0]["url"].startswith("http://***@127.0.0.1")


# --------------------------------------------------------------------------- 9. redirects


def test_redirects_are_followed_within_the_cap(frames_dir, tmp_path):
    video = (frames_dir / "clip.mp4").read_bytes()
    with TestServer() as server:
        final = server.add("/final.mp4", Route(body=video))
        hop2 = server.add("/hop2", Route(statuses=[302], headers={"Location": final}))
        hop1 = server.add("/hop1", Route(statuses=[301], headers={"Location": "/hop2"}))  # relative Location
        ok = fetch_one("ok", hop1, tmp_path / "v", max_redirects=2)
        too_many = fetch_one("far", hop1, tmp_path / "v", max_redirects=1, sleep=lambda s: None)
        assert ok.status == "ok", ok.reason
        assert too_many.status == "failed" and "more than 1 redirects" in too_many.reason
        assert not (tmp_path / "v" / "far.mp4").exists()
        assert hop2  # both hops were used


def test_size_cap_holds_across_redirects_and_a_redirect_body_is_never_read(frames_dir, tmp_path):
    video = (frames_dir / "clip.mp4").read_bytes()
    with TestServer() as server:
        big = server.add("/big.mp4", Route(body=video * 4))
        # a redirect carrying a large body of its own: reading it would bypass the cap
        bloated = server.add("/bloated", Route(statuses=[302], body=b"x" * 5_000_000, headers={"Location": big}))
        result = fetch_one("big", bloated, tmp_path / "v", max_bytes=len(video), sleep=lambda s: None)
    assert result.status == "failed" and "over the size cap" in result.reason
    assert not any((tmp_path / "v").iterdir())


def test_redirect_to_another_scheme_is_refused(tmp_path):
    with TestServer() as server:
        hop = server.add("/hop", Route(statuses=[302], headers={"Location": "file:///etc/passwd"}))
        result = fetch_one("x", hop, tmp_path / "v", sleep=lambda s: None)
    assert result.status == "failed" and "redirected from http to file:///etc/passwd" in result.reason
    assert not (tmp_path / "v").exists() or not any((tmp_path / "v").iterdir())


# --------------------------------------------------------------------------- manifests with hostile ids


def test_hostile_ids_stay_inside_the_output_folder(frames_dir, tmp_path):
    out = tmp_path / "nested" / "videos"
    ids = ["../escape", str(tmp_path / "absolute"), "a" * 400, "..", "x/../../y", "nul\x00byte"]
    rows = fetch_batch([{"id": i, "url": str(frames_dir / "clip.mp4")} for i in ids], out)
    assert [r["status"] for r in rows] == ["ok"] * len(ids)
    assert all(Path(r["path"]).parent == out for r in rows)
    assert all(len(Path(r["path"]).name) < 200 for r in rows)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nested"]
    assert sorted(p.name for p in (tmp_path / "nested").iterdir()) == ["videos"]


@pytest.mark.parametrize(
    "url, reason",
    [
        ("gopher://example.org/v.mp4", "unsupported url scheme 'gopher'"),
        ("javascript:alert(1)", "unsupported url scheme 'javascript'"),
        ("file://otherhost/v.mp4", "file url names host 'otherhost'"),
    ],
)
def test_unknown_url_schemes_fail_with_the_item_named(tmp_path, url, reason):
    result = fetch_one("item-7", url, tmp_path / "v")
    assert result.status == "failed" and result.reason.startswith("item-7: ") and reason in result.reason


@pytest.mark.parametrize("content", [b"", b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 40, b"<html>not a video</html>"])
def test_zero_byte_truncated_and_non_video_files_fail_by_name(tmp_path, content):
    path = tmp_path / "bad.mp4"
    path.write_bytes(content)
    result = fetch_one("bad-one", str(path), tmp_path / "v")
    assert (
        result.status == "failed" and result.reason.startswith("bad-one: ") and "not a readable video" in result.reason
    )


def test_one_frame_video_is_a_video(tmp_path):
    write_video(tmp_path / "one.mp4", np.zeros((1, 32, 48, 3), np.uint8), fps=10)
    assert fetch_one("one", str(tmp_path / "one.mp4"), tmp_path / "v").status == "ok"


def test_manifest_with_duplicate_ids_names_the_lines(tmp_path):
    manifest = tmp_path / "m.csv"
    manifest.write_text("id,url\na,x.mp4\nb,y.mp4\na,z.mp4\n")
    with pytest.raises(ValueError, match=r"id 'a' repeated on lines 2, 4"):
        read_manifest(manifest)


# --------------------------------------------------------------------------- 5. params checked before work


def _params(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(text)
    return path


def _project_params_with(tmp_path: Path, old: str, new: str) -> Path:
    text = (ROOT / "params.yaml").read_text()
    assert old in text
    return _params(tmp_path, text.replace(old, new))


def test_empty_params_file_is_a_clear_error(tmp_path):
    with pytest.raises(ParamsError, match="is empty; it must hold every stage's group"):
        load_params(_params(tmp_path, ""), complete=True)


def test_missing_group_is_named(tmp_path):
    text = (ROOT / "params.yaml").read_text().replace("\nevaluate:", "\nevaluate_old:")
    with pytest.raises(ParamsError) as err:
        load_params(_params(tmp_path, text), complete=True)
    assert "evaluate: group missing" in str(err.value)


@pytest.mark.parametrize(
    "old, new, message",
    [
        ("  min_shot: 10 ", "  min_shot: 200 ", "shots.min_shot (200) must not exceed shots.max_shot (110)"),
        ("  timeout_s: 30.0 ", "  timeout_s: .inf ", "download.timeout_s: Input should be a finite number"),
        ("  backoff_s: 1.0 ", "  backoff_s: .nan ", "download.backoff_s: Input should be a finite number"),
        ("  timeout_s: 30.0 ", "  timeout_s: 1e9 ", "download.timeout_s: Input should be less than or equal to 3600"),
        ("  manifest: data/corpus/manifest.csv ", "  manifest: '' ", "download.manifest: must name the manifest CSV"),
        ("  manifest: data/corpus/manifest.csv ", '  manifest: "a\\nb.csv" ', "without control characters"),
    ],
)
def test_wrong_values_are_named_before_any_work(tmp_path, old, new, message):
    with pytest.raises(ParamsError, match=message.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        load_params(_project_params_with(tmp_path, old, new), complete=True)


def test_a_key_written_twice_is_refused(tmp_path):
    with pytest.raises(ParamsError, match="key 'retries' is written twice"):
        load_params(_params(tmp_path, "download:\n  retries: 1\n  retries: 5\n"))


def test_yaml_is_loaded_safely(tmp_path):
    marker = tmp_path / "pwned"
    text = f"download: !!python/object/apply:os.system ['touch {marker}']\n"
    with pytest.raises(ParamsError, match="not valid YAML"):
        load_params(_params(tmp_path, text))
    assert not marker.exists()


# --------------------------------------------------------------------------- 2, 9. no shell, no stray server


def test_no_user_string_reaches_a_shell():
    import yaml

    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    for name, stage in stages.items():
        # a matrix stage may interpolate its own values, when dvc.yaml spells them out as plain words
        matrix = stage.get("matrix", {})
        for values in matrix.values():
            assert isinstance(values, list) and all(re.fullmatch(r"[a-z0-9]+", str(v)) for v in values), name
        command = re.sub(r"\$\{item\.(" + "|".join(matrix) + r")\}", "", stage["cmd"]) if matrix else stage["cmd"]
        assert "${" not in command, f"stage {name} interpolates a parameter into its shell command"
    code = [p for folder in ("motionmasks", "flows", "tasks", "models") for p in (ROOT / folder).rglob("*.py")]
    for path in code:
        text = path.read_text()
        for danger in ("shell=True", "os.system(", "os.popen(", "yaml.load("):
            if danger == "yaml.load(" and "Loader=_UniqueKeyLoader" in text:
                continue
            assert danger not in text, f"{path.relative_to(ROOT)} uses {danger}"
        # the builtins, not a method of that name (torch's model.eval() switches off dropout)
        builtin = re.search(r"(?<![\w.])(eval|exec)\(", text)
        assert builtin is None, f"{path.relative_to(ROOT)} uses {builtin and builtin.group(0)}"
        # checkpoints (the training stages) are loaded as tensors only, never as pickled code
        for call in re.findall(r"torch\.load\([^)]*\)", text):
            assert "weights_only=True" in call, f"{path.relative_to(ROOT)}: {call} without weights_only=True"


def test_logs_go_only_to_a_server_this_project_started(tmp_path):
    import json
    import os
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from flows.prefect_api import forget_dashboard, project_dashboard, record_dashboard

    class Health(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    stranger = ThreadingHTTPServer(("127.0.0.1", 0), Health)
    threading.Thread(target=stranger.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{stranger.server_address[1]}/api"
    record = tmp_path / ".prefect" / "dashboard.json"
    try:
        assert project_dashboard(tmp_path) is None  # something answers, but nobody here started it
        record_dashboard(tmp_path, os.getpid(), url)
        assert project_dashboard(tmp_path) == url
        ours = json.loads(record.read_text())
        record.write_text(json.dumps({**ours, "pid": 999_999_999}))  # ours once, but that process is gone
        assert project_dashboard(tmp_path) is None
        record.write_text(json.dumps({**ours, "started": ours["started"] - 1000}))  # the pid, reused since
        assert project_dashboard(tmp_path) is None
        record_dashboard(tmp_path, os.getpid(), url)
        forget_dashboard(tmp_path, os.getpid())
        assert project_dashboard(tmp_path) is None
    finally:
        stranger.shutdown()


def test_a_second_run_in_one_folder_is_told_and_stops(tmp_path):
    from motionmasks.cli import RunBusy, _run_lock

    with _run_lock(tmp_path):
        with pytest.raises(RunBusy, match=r"another run holds this project's lock \(motionmasks run, pid \d+\)"):
            with _run_lock(tmp_path):
                pass
    with _run_lock(tmp_path):  # released
        pass


def test_fetched_table_and_failures_report_store_no_secret(frames_dir, tmp_path, prefect_api):
    from flows.download import download
    from flows.fanout import make_task_runner
    from motionmasks.params import DownloadParams, RuntimeParams

    video = (frames_dir / "clip.mp4").read_bytes()
    with TestServer() as server:
        good = server.add("/g.mp4", Route(body=video)).replace("http://", "http://me:pa55word@") + "?token=TOK123"
        dead = server.add("/d.mp4", Route(statuses=[404])) + "?access_token=TOK456"
        manifest = tmp_path / "manifest.csv"
        pd.DataFrame({"id": ["good", "dead"], "url": [good, dead]}).to_csv(manifest, index=False)
        runner = make_task_runner(RuntimeParams(), "io", io_workers=2)
        download.with_options(task_runner=runner)(
            manifest,
            tmp_path / "videos",
            tmp_path / "fetched.parquet",
            tmp_path / "failures.csv",
            tmp_path / "metrics.json",
            DownloadParams(backoff_s=0.01),
            batch_size=1,
        )
    stored = (tmp_path / "failures.csv").read_text() + read_table(tmp_path / "fetched.parquet").to_csv()
    for secret in ("pa55word", "TOK123", "TOK456"):
        assert secret not in stored
    assert "dead" in stored and "404" in stored


def test_safe_name_is_the_only_way_ids_become_paths():
    assert safe_name("../x") != "../x" and "/" not in safe_name("a/b") and not safe_name("..").startswith(".")


# --------------------------------------------------------------------------- found by a second hostile review


def test_one_input_never_replaces_a_folder_holding_another(frames_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    src = _copy(frames_dir / "bear", tmp_path / "src" / "clip")
    assert main(["segment", str(src), "--out", "out", "--quiet"]) == 0  # out/clip is ours now
    mine = _copy(frames_dir / "bear", tmp_path / "out" / "clip" / "myframes")
    before = _tree(mine)
    for workers in ("1", "2"):
        assert main(["segment", str(mine), str(src), "--out", "out", "--quiet", "--workers", workers]) == 1
        assert "would replace the input" in capsys.readouterr().err
        assert _tree(mine) == before


def test_dot_input_names_its_folder_and_never_replaces_out(frames_dir, tmp_path, monkeypatch):
    frames = _copy(frames_dir / "bear", tmp_path / "frames")
    (tmp_path / "res").mkdir()
    (tmp_path / "res" / "notes.txt").write_text("keep")
    monkeypatch.chdir(frames)
    for dot in (".", "./"):
        assert main(["segment", dot, "--out", str(tmp_path / "res"), "--quiet"]) == 0
    assert (tmp_path / "res" / "notes.txt").read_text() == "keep"
    assert len(list((tmp_path / "res" / "frames").glob("*.png"))) == 12


def test_a_malformed_url_fails_its_row_only(frames_dir, tmp_path):
    manifest = tmp_path / "m.csv"
    manifest.write_text(f'id,url\nj,"http://eve:PASS12@[::1/x"\ngood,{frames_dir / "clip.mp4"}\n')
    rows = fetch_batch(read_manifest(manifest).to_dict("records"), tmp_path / "v")
    assert [r["status"] for r in rows] == ["failed", "ok"]
    assert rows[0]["reason"].startswith("j: malformed url") and "PASS12" not in repr(rows)


def test_16_bit_ground_truth_is_read_and_checked(davis, capsys):
    pred, gt = davis
    for path in (gt / "s").iterdir():
        cv2.imwrite(str(path), (cv2.imread(str(path), cv2.IMREAD_GRAYSCALE) > 0).astype(np.uint16))
    assert main(["score", "--pred", str(pred), "--gt", str(gt), "--threshold", "0.5"]) == 0
    odd = (cv2.imread(str(gt / "s" / "00000.png"), cv2.IMREAD_UNCHANGED)).astype(np.uint16) * 300
    odd[0, 0] = 7
    cv2.imwrite(str(gt / "s" / "00000.png"), odd)
    assert main(["score", "--pred", str(pred), "--gt", str(gt)]) == 2
    assert "must be binary, 0/65535 or 0/1, but holds the values 0, 7, 300" in capsys.readouterr().err


def test_score_json_to_a_new_folder_and_never_over_a_users_file(davis, tmp_path, capsys):
    pred, gt = davis
    assert main(["score", "--pred", str(pred), "--gt", str(gt), "--json", str(tmp_path / "new") + "/"]) == 0
    assert (tmp_path / "new" / "scores.json").is_file()
    (pred / "scores.json").write_text('{"mine": 1}')
    assert main(["score", "--pred", str(pred), "--gt", str(gt)]) == 2
    assert "was not written by motionmasks score" in capsys.readouterr().err
    assert (pred / "scores.json").read_text() == '{"mine": 1}'
    assert main(["score", "--pred", str(pred), "--gt", str(gt), "--json", str(tmp_path / "new")]) == 0  # ours


def test_short_and_unusual_credentials_are_redacted(tmp_path):
    result = fetch_one("x", "file://bob:pw@host/x.mp4", tmp_path / "v")
    assert "pw" not in result.reason.replace("pw@", "") and "bob" not in result.reason
    assert redact_url("https://h/ok.mp4#access_token=FRAGTOK") == "https://h/ok.mp4#access_token=***"
    assert redact_url("https://h/404;token=PARAMTOK") == "https://h/404;token=***"
    assert redact_text("failed (http://h/500?token=abc); try later") == "failed (http://h/500?token=***); try later"


def test_a_malformed_redirect_is_a_clear_failure(tmp_path):
    with TestServer() as server:
        hop = server.add("/hop", Route(statuses=[302], headers={"Location": "http://[::1/x"}))
        result = fetch_one("x", hop, tmp_path / "v", sleep=lambda s: None)
    assert result.status == "failed" and "redirected to a malformed url" in result.reason and "bug" not in result.reason


def test_a_yaml_key_that_is_a_list_is_a_clear_error(tmp_path):
    with pytest.raises(ParamsError, match="keys must be plain names"):
        load_params(_params(tmp_path, "? [a, b]\n: 1\n"))


def test_a_stage_process_dies_with_its_parent(tmp_path):
    """What `dvc repro` -> stage -> pool worker rely on: kill the parent, the child goes too."""
    import os
    import signal
    import subprocess
    import sys
    import time

    child_pid = tmp_path / "child.pid"
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"""
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c",
    "from flows.lifeline import die_with_parent; import os, time; die_with_parent(); "
    "open({str(child_pid)!r}, 'w').write(str(os.getpid())); time.sleep(60)"])
time.sleep(60)
""",
        ],
        cwd=ROOT,
    )
    deadline = time.monotonic() + 20
    while not (child_pid.exists() and child_pid.read_text()) and time.monotonic() < deadline:
        time.sleep(0.05)
    pid = int(child_pid.read_text())
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 5
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(pid)


def test_a_runs_server_is_reaped_when_the_run_is_killed():
    import os
    import signal
    import subprocess

    from flows.lifeline import reap_when_gone

    owner = subprocess.Popen(["sleep", "60"])
    server = subprocess.Popen(["sleep", "60"])
    reap_when_gone(owner.pid, server.pid)
    os.kill(owner.pid, signal.SIGKILL)
    owner.wait()
    assert server.wait(timeout=10) == -signal.SIGTERM


def _alive(pid: int) -> bool:
    import os

    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"  # a zombie is dead, only not yet reaped
    except FileNotFoundError:
        return False
    except OSError:
        return os.path.exists(f"/proc/{pid}")
