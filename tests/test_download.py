"""Download stage core, against a real HTTP server on 127.0.0.1 (tests/httpserver.py)."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
from httpserver import Route, TestServer

from motionmasks.atomic import OWNER_MARKER
from motionmasks.download import ManifestError, fetch_batch, fetch_one, read_manifest
from motionmasks.formats import safe_name
from motionmasks.video import FRAME_FOLDER_FPS, write_video

FRAMES, FPS, WIDTH, HEIGHT = 8, 10.0, 48, 32


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> bytes:
    """A small real mp4 (8 random frames, 48x32, 10 fps), as bytes."""
    path = tmp_path_factory.mktemp("video") / "clip.mp4"
    frames = np.random.default_rng(0).integers(0, 256, (FRAMES, HEIGHT, WIDTH, 3), dtype=np.uint8)
    write_video(path, frames, FPS)
    return path.read_bytes()


@pytest.fixture
def server():
    with TestServer() as running:
        yield running


@pytest.fixture
def out(tmp_path) -> Path:
    return tmp_path / "videos"


@pytest.fixture
def sleeps() -> list[float]:
    """Records the waits between attempts instead of sleeping."""
    return []


def listing(folder: Path) -> list[str]:
    """Everything in ``folder``, hidden files, ``.part`` and temporary files included."""
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def assert_ok_video(result, path: Path, body: bytes) -> None:
    assert (result.status, result.reason) == ("ok", "")
    assert result.path == str(path)
    assert path.read_bytes() == body
    assert result.bytes == len(body)
    assert (result.frames, result.fps, result.width, result.height) == (FRAMES, FPS, WIDTH, HEIGHT)
    assert result.duration_s == pytest.approx(FRAMES / FPS)


# --------------------------------------------------------------------------- names


@pytest.mark.parametrize("video_id", ["bear", "bear-01_a.B", "x" * 120])
def test_safe_name_keeps_clean_ids(video_id):
    assert safe_name(video_id) == video_id


@pytest.mark.parametrize("video_id", ["../../etc/passwd", ".hidden", "a b", "a/b", "ü", "..", "x" * 121])
def test_safe_name_changes_unsafe_ids_and_tags_them(video_id):
    name = safe_name(video_id)
    digest = hashlib.sha256(video_id.encode()).hexdigest()[:8]
    assert name.endswith("-" + digest)
    assert re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9._-]*", name)


def test_safe_name_never_collides_for_ids_that_sanitise_alike():
    ids = ["a b", "a/b", "a:b", "a_b"]
    assert len({safe_name(i) for i in ids}) == len(ids)


# --------------------------------------------------------------------------- manifest


def test_read_manifest_resolves_local_paths_and_fills_sha256(tmp_path):
    (tmp_path / "m").mkdir()
    manifest = tmp_path / "m" / "manifest.csv"
    manifest.write_text(
        f"id,url,note\n a ,clips/a.mp4,x\nb,{tmp_path}/b.mp4,\nc,https://example.org/c.mp4,\nd,file:///data/d.mp4,\n"
    )
    df = read_manifest(manifest)
    assert list(df.columns) == ["id", "url", "sha256", "url_as_written", "note"]
    assert df["id"].tolist() == ["a", "b", "c", "d"]
    assert df["url"].tolist() == [
        str(tmp_path / "m" / "clips" / "a.mp4"),
        str(tmp_path / "b.mp4"),
        "https://example.org/c.mp4",
        "file:///data/d.mp4",
    ]
    assert df["url_as_written"].tolist() == [
        "clips/a.mp4",
        f"{tmp_path}/b.mp4",
        "https://example.org/c.mp4",
        "file:///data/d.mp4",
    ]
    assert df["sha256"].tolist() == ["", "", "", ""]


def test_read_manifest_lowercases_sha256(tmp_path):
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("id,url,sha256\na,https://x/a.mp4," + "AB" * 32 + "\nb,https://x/b.mp4,\n")
    assert read_manifest(manifest)["sha256"].tolist() == ["ab" * 32, ""]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name,link\na,b\n", "missing column(s) id, url"),
        ("id,url\n", "has no rows"),
        ("id,url\na,x.mp4\n,y.mp4\nc,\n", "empty id on line(s) 3; empty url on line(s) 4"),
        ("id,url\na,x.mp4\nb,y.mp4\na,z.mp4\n", "id 'a' repeated on lines 2, 4"),
        ("id,url,sha256\na,x.mp4,abc\n", "sha256 is not 64 hex digits on line(s) 2"),
        (f"id,url\na b,x.mp4\n{safe_name('a b')},y.mp4\n", "ids on lines 2, 3 map to the same file name"),
    ],
)
def test_read_manifest_rejects_bad_manifests_naming_the_lines(tmp_path, text, message):
    manifest = tmp_path / "manifest.csv"
    manifest.write_text(text)
    with pytest.raises(ManifestError, match=re.escape(message)):
        read_manifest(manifest)


def test_read_manifest_missing_file_says_where_to_look(tmp_path):
    with pytest.raises(ManifestError, match="manifest not found; check download.manifest"):
        read_manifest(tmp_path / "nope.csv")


# --------------------------------------------------------------------------- http


def test_http_good_video(server, out, video):
    url = server.add("/good.mp4", Route(body=video))
    result = fetch_one("good", url, out, sha256=hashlib.sha256(video).hexdigest())
    assert_ok_video(result, out / "good.mp4", video)
    assert result.attempts == 1
    assert listing(out) == ["good.mp4"]


def test_http_truncated_answer_is_resumed_with_range(server, out, video, sleeps):
    cut = len(video) // 3
    route = Route(body=video, cut_at=[cut], etag='"v1"')
    result = fetch_one("cut", server.add("/cut.mp4", route), out, backoff_s=0.5, sleep=sleeps.append)
    assert_ok_video(result, out / "cut.mp4", video)
    assert result.attempts == 2
    assert sleeps == [0.5]
    assert route.requests == [{"range": None, "if_range": None}, {"range": f"bytes={cut}-", "if_range": '"v1"'}]
    assert listing(out) == ["cut.mp4"]


def test_http_resume_restarts_when_server_ignores_range(server, out, video, sleeps):
    route = Route(body=video, cut_at=[len(video) // 2], ranges=False)
    result = fetch_one("norange", server.add("/norange.mp4", route), out, sleep=sleeps.append)
    assert_ok_video(result, out / "norange.mp4", video)
    assert route.requests[1]["range"] == f"bytes={len(video) // 2}-"
    assert listing(out) == ["norange.mp4"]


def test_http_stale_part_from_a_killed_run_is_discarded(server, out, video):
    out.mkdir()
    (out / "stale.mp4.part").write_bytes(b"junk from another version")
    route = Route(body=video)
    result = fetch_one("stale", server.add("/stale.mp4", route), out)
    assert_ok_video(result, out / "stale.mp4", video)
    assert route.requests == [{"range": None, "if_range": None}]
    assert listing(out) == ["stale.mp4"]


@pytest.mark.parametrize("status", [403, 404, 410, 400])
def test_http_client_errors_fail_without_retry(server, out, video, sleeps, status):
    route = Route(body=video, statuses=[status])
    result = fetch_one("gone", server.add("/gone.mp4", route), out, sleep=sleeps.append)
    assert (result.status, result.attempts, len(route.requests), sleeps) == ("failed", 1, 1, [])
    assert result.reason.startswith(f"gone: HTTP {status} ")
    assert "fix the url or drop the row" in result.reason
    assert result.path is None and result.frames is None
    assert listing(out) == []


def test_http_server_errors_are_retried_with_doubling_backoff(server, out, video, sleeps):
    route = Route(body=video, statuses=[500, 503, 200])
    result = fetch_one("flaky", server.add("/flaky.mp4", route), out, backoff_s=0.25, sleep=sleeps.append)
    assert_ok_video(result, out / "flaky.mp4", video)
    assert (result.attempts, sleeps) == (3, [0.25, 0.5])
    assert listing(out) == ["flaky.mp4"]


def test_http_429_waits_for_retry_after(server, out, video, sleeps):
    route = Route(body=video, statuses=[429, 200], headers={"Retry-After": "7"})
    result = fetch_one("busy", server.add("/busy.mp4", route), out, backoff_s=1.0, sleep=sleeps.append)
    assert (result.status, result.attempts, sleeps) == ("ok", 2, [7.0])


def test_http_transient_errors_give_up_after_retries(server, out, video, sleeps):
    route = Route(body=video, statuses=[502])
    result = fetch_one("down", server.add("/down.mp4", route), out, retries=2, sleep=sleeps.append)
    assert (result.status, result.attempts, len(route.requests), sleeps) == ("failed", 3, 3, [1.0, 2.0])
    assert result.reason.startswith("down: HTTP 502 Bad Gateway after 3 attempts")
    assert listing(out) == []


def test_http_slow_server_times_out_after_retries(server, out, video, sleeps):
    route = Route(body=video, delay_s=2.0)
    result = fetch_one("slow", server.add("/slow.mp4", route), out, timeout_s=0.2, retries=1, sleep=sleeps.append)
    assert (result.status, result.attempts, len(route.requests)) == ("failed", 2, 2)
    assert result.reason.startswith("slow: timed out (no data for 0.2 s) after 2 attempts")
    assert "raise download.timeout_s" in result.reason
    assert listing(out) == []


def test_http_trickling_server_is_given_up_and_resumed(server, out, video, sleeps):
    # one byte every 20 ms: never a stall, but far below the minimum rate
    route = Route(body=video, drip_s=0.02)
    result = fetch_one(
        "drip", server.add("/drip.mp4", route), out, timeout_s=0.2, retries=1, min_bytes_per_s=1000, sleep=sleeps.append
    )
    assert (result.status, result.attempts, len(route.requests)) == ("failed", 2, 2)
    assert result.reason.startswith("drip: too slow (")
    assert 0 < result.bytes < len(video)
    # the second attempt resumed where the first one stopped, instead of starting again
    assert route.requests[0]["range"] is None
    assert int(route.requests[1]["range"][len("bytes=") : -1]) > 0
    assert listing(out) == []


def test_http_truncated_answer_that_never_completes_leaves_nothing(server, out, video, sleeps):
    route = Route(body=video, cut_at=[100, 100])
    result = fetch_one("short", server.add("/short.mp4", route), out, retries=1, sleep=sleeps.append)
    assert (result.status, result.attempts, result.bytes) == ("failed", 2, 200)
    assert "connection failed" in result.reason
    assert listing(out) == []


def test_http_oversized_by_content_length_fails_before_download(server, out, video, sleeps):
    route = Route(body=video)
    result = fetch_one("big", server.add("/big.mp4", route), out, max_bytes=len(video) - 1, sleep=sleeps.append)
    assert (result.status, result.attempts, result.bytes, sleeps) == ("failed", 1, 0, [])
    assert f"size {len(video)} bytes is over the size cap of {len(video) - 1} bytes" in result.reason
    assert listing(out) == []


def test_http_oversized_without_content_length_is_counted_while_streaming(server, out, video, sleeps):
    route = Route(body=video, send_length=False)
    cap = len(video) // 2
    result = fetch_one("big", server.add("/big.mp4", route), out, max_bytes=cap, sleep=sleeps.append)
    assert (result.status, result.attempts, sleeps) == ("failed", 1, [])
    assert f"is over the size cap of {cap} bytes" in result.reason
    assert listing(out) == []


def test_http_checksum_mismatch_fails_without_retry(server, out, video, sleeps):
    route = Route(body=video)
    wrong = hashlib.sha256(b"another file").hexdigest()
    result = fetch_one("sum", server.add("/sum.mp4", route), out, sha256=wrong, sleep=sleeps.append)
    assert (result.status, result.attempts, sleeps) == ("failed", 1, [])
    assert f"checksum mismatch: got sha256 {hashlib.sha256(video).hexdigest()}, manifest says {wrong}" in result.reason
    assert listing(out) == []


def test_http_text_is_not_a_video(server, out, sleeps):
    route = Route(body=b"<html>please log in</html>\n" * 20, content_type="text/html")
    result = fetch_one("page", server.add("/page.mp4", route), out, sleep=sleeps.append)
    assert (result.status, result.attempts, sleeps) == ("failed", 1, [])
    assert result.reason.startswith("page: not a readable video (no decoder could open it) (the server sent text/html)")
    assert listing(out) == []


def test_http_corrupt_video_is_not_a_video(server, out, video, sleeps):
    corrupt = np.random.default_rng(1).bytes(len(video))
    result = fetch_one("noise", server.add("/noise.mp4", Route(body=corrupt)), out, sleep=sleeps.append)
    assert (result.status, result.attempts) == ("failed", 1)
    assert "not a readable video" in result.reason
    assert listing(out) == []


def test_unsupported_scheme_fails_without_attempts(out, sleeps):
    result = fetch_one("f", "ftp://example.org/f.mp4", out, sleep=sleeps.append)
    assert (result.status, result.attempts, sleeps) == ("failed", 0, [])
    assert result.reason.startswith("f: unsupported url scheme 'ftp'")
    assert listing(out) == []


def test_id_with_path_traversal_stays_inside_out_dir(server, out, video):
    result = fetch_one("../../etc/passwd", server.add("/p.mp4", Route(body=video)), out)
    assert result.status == "ok"
    path = Path(result.path)
    assert path.parent == out
    assert path.resolve().is_relative_to(out.resolve())
    assert listing(out) == [safe_name("../../etc/passwd") + ".mp4"]


# --------------------------------------------------------------------------- local sources


def test_file_url(tmp_path, out, video):
    source = tmp_path / "my clip.MOV"
    source.write_bytes(video)
    result = fetch_one("local", source.as_uri(), out)
    assert_ok_video(result, out / "local.mov", video)
    assert listing(out) == ["local.mov"]


def test_local_relative_path_via_manifest(tmp_path, out, video):
    (tmp_path / "data" / "clips").mkdir(parents=True)
    (tmp_path / "data" / "clips" / "a.mp4").write_bytes(video)
    manifest = tmp_path / "data" / "manifest.csv"
    manifest.write_text("id,url\na,clips/a.mp4\n")
    [row] = fetch_batch(read_manifest(manifest).to_dict("records"), out)
    assert (row["status"], row["path"], row["frames"]) == ("ok", str(out / "a.mp4"), FRAMES)
    assert listing(out) == ["a.mp4"]


def test_missing_local_file_fails(tmp_path, out):
    result = fetch_one("gone", str(tmp_path / "gone.mp4"), out)
    assert (result.status, result.attempts) == ("failed", 1)
    assert result.reason.startswith(f"gone: no such file or folder {tmp_path / 'gone.mp4'}")
    assert listing(out) == []


@pytest.fixture
def frame_folder(tmp_path) -> Path:
    folder = tmp_path / "bear"
    folder.mkdir()
    rng = np.random.default_rng(2)
    for i in range(3):
        cv2.imwrite(str(folder / f"{i:05d}.jpg"), rng.integers(0, 256, (16, 24, 3), dtype=np.uint8))
    return folder


def test_frame_folder_is_copied_as_a_folder(frame_folder, out):
    result = fetch_one("bear", str(frame_folder), out)
    assert (result.status, result.path) == ("ok", str(out / "bear.frames"))
    assert (result.frames, result.fps, result.width, result.height) == (3, FRAME_FOLDER_FPS, 24, 16)
    assert listing(out / "bear.frames") == [OWNER_MARKER, "00000.jpg", "00001.jpg", "00002.jpg"]
    assert (out / "bear.frames" / "00001.jpg").read_bytes() == (frame_folder / "00001.jpg").read_bytes()
    assert result.bytes == sum(p.stat().st_size for p in frame_folder.iterdir())
    assert listing(out) == ["bear.frames"]


def test_frame_folder_with_sha256_fails(frame_folder, out):
    result = fetch_one("bear", str(frame_folder), out, sha256="0" * 64)
    assert result.status == "failed"
    assert "a sha256 was given for a frame folder" in result.reason
    assert listing(out) == []


def test_empty_folder_is_not_a_video(tmp_path, out):
    (tmp_path / "empty").mkdir()
    result = fetch_one("empty", str(tmp_path / "empty"), out)
    assert result.status == "failed"
    assert result.reason.startswith("empty: folder holds no frames")
    assert listing(out) == []


# --------------------------------------------------------------------------- batch


@pytest.mark.parametrize("parallel", [1, 3])
def test_batch_failures_do_not_stop_the_others(server, out, video, parallel):
    items = [
        {"id": "a", "url": server.add("/a.mp4", Route(body=video))},
        {"id": "missing", "url": server.add("/missing.mp4", Route(statuses=[404]))},
        {"id": "b", "url": server.add("/b.webm", Route(body=video)), "sha256": hashlib.sha256(video).hexdigest()},
        {"id": "a", "url": server.add("/a2.mp4", Route(body=video))},
        {"id": "", "url": "x.mp4"},
    ]
    rows = fetch_batch(items, out, parallel=parallel, sleep=lambda s: None)
    assert [(r["id"], r["status"]) for r in rows] == [
        ("a", "ok"),
        ("missing", "failed"),
        ("b", "ok"),
        ("a", "failed"),
        ("", "failed"),
    ]
    assert rows[1]["reason"].startswith("missing: HTTP 404 Not Found")
    assert rows[3]["reason"].startswith("a: same output name 'a' as id 'a' earlier in the batch")
    assert rows[4]["reason"].startswith("item 4 (no id): needs a non-empty id and url")
    assert set(rows[0]) == {
        "id",
        "url",
        "status",
        "path",
        "reason",
        "attempts",
        "bytes",
        "seconds",
        "frames",
        "fps",
        "width",
        "height",
        "duration_s",
    }
    assert listing(out) == ["a.mp4", "b.webm"]
