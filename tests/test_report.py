"""`motionmasks report`: one self-contained HTML page of a run, checked as text and in a real browser."""

import datetime as dt
import json
import re
import shutil
import subprocess

import cv2
import numpy as np
import pytest

from motionmasks.report import ReportError, load_run, record_run, write_report

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

ROWS = [
    {
        "stage": "motion",
        "outcome": "ran",
        "seconds": 3.25,
        "why": "changed param motion.step",
        "metrics": {"videos": 2, "failed": 1},
    },
    {"stage": "train", "outcome": "skipped (up to date)", "seconds": 0.4, "why": "", "metrics": {"train_frames": 40}},
    {"stage": "evaluate", "outcome": "failed", "seconds": 1.0, "why": "boom", "metrics": {}},
]


@pytest.fixture
def project(tmp_path):
    root = tmp_path / "project"
    (root / "metrics/train/plots/metrics/train").mkdir(parents=True)
    (root / "metrics/train/plots/metrics/val").mkdir(parents=True)
    (root / "plots").mkdir()
    (root / "data/evaluate").mkdir(parents=True)
    (root / "data/motion").mkdir(parents=True)
    (root / "metrics/motion.json").write_text(json.dumps({"videos": 2, "failed": 1, "shots": {"usable": 7}}))
    (root / "metrics/evaluate.json").write_text(json.dumps({"mean_J@0.5": 0.8125}))
    (root / "metrics/train/plots/metrics/train/loss.tsv").write_text("step\tloss\n0\t9.5\n1\t7.25\n")
    (root / "metrics/train/plots/metrics/val/held_out_iou.tsv").write_text("step\theld_out_iou\n0\t0.2\n1\t0.3\n")
    (root / "plots/evaluate_per_video.csv").write_text("video,J,student_J,prior_J\na,0.9,0.3,0.2\nb,0.7,0.2,0.25\n")
    (root / "plots/transfer_map.csv").write_text("frozen,label,motion,random\n0,All,0.4,0.36\n5,>c5,0.41,0.41\n")
    cv2.imwrite(str(root / "data/evaluate/gallery.png"), np.full((20, 80, 3), 90, np.uint8))
    (root / "data/motion/failures.csv").write_text("item,reason\nbroken,broken: not a readable video <script>\n")
    started = dt.datetime(2026, 11, 27, 9, 0, 0, tzinfo=dt.UTC)
    record_run(root, ROWS, started, None, False)
    return root


def test_the_record_keeps_each_stage_with_its_items_and_failures(project):
    run = load_run(project)
    assert run["id"] == "20261127T090000000000Z" and run["targets"] == "all"
    assert [(s["stage"], s["outcome"], s["items"], s["failed"]) for s in run["stages"]] == [
        ("motion", "ran", 2, 1),
        ("train", "skipped (up to date)", 40, ""),
        ("evaluate", "failed", "", ""),
    ]
    with pytest.raises(ReportError, match="no run 'nope'; recorded runs: 20261127T090000000000Z"):
        load_run(project, "nope")


def test_the_report_is_one_offline_page_with_every_part(project, tmp_path):
    out = write_report(project, tmp_path / "report.html")
    page = out.read_text()
    assert '<tr class="ran"><td>motion</td><td>ran</td><td>changed param motion.step</td>' in page
    assert '<tr class="failed"><td>evaluate</td><td>failed</td>' in page
    assert '<td>shots.usable</td><td class="num">7</td>' in page and "mean_J@0.5" in page
    assert "broken: not a readable video &lt;script&gt;" in page  # user text is escaped
    images = re.findall(r'<img alt="([^"]+)" src="([^"]+)"', page)
    assert [alt for alt, _ in images] == ["J per video", "training curves", "mAP versus depth", "gallery"]
    assert all(src.startswith("data:image/png;base64,") for _, src in images)
    assert not re.search(r'(src|href)="(https?:)?//', page) and "<link" not in page  # loads nothing


def test_an_existing_file_is_replaced_only_when_it_is_a_report(project, tmp_path):
    mine = tmp_path / "notes.html"
    mine.write_text("<html>my notes</html>")
    with pytest.raises(ReportError, match="is not a report motionmasks wrote; it is left as it is"):
        write_report(project, mine)
    assert mine.read_text() == "<html>my notes</html>"
    out = write_report(project, tmp_path / "report.html")
    write_report(project, out)  # its own report: replaced
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.html", "project", "report.html"]


@pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium (Debian's chromium package; .ci/run installs it)")
def test_a_real_browser_renders_the_tables_and_decodes_every_image(project, tmp_path):
    out = write_report(project, tmp_path / "report.html")
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]
    dom = subprocess.run(
        [CHROMIUM, *flags, f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", out.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    body = re.search(r"<body[^>]*>", dom)
    assert body, dom[:2000]
    assert 'data-images="4"' in body.group(0) and 'data-images-decoded="4"' in body.group(0), body.group(0)
    assert dom.count("<table>") == 4  # stages, two metrics files, failures
    assert len(re.findall(r'<tr class="(ran|skipped|failed)">', dom)) == 3


def test_a_folder_a_link_or_no_run_is_one_clear_error(project, tmp_path):
    folder = tmp_path / "out.html"
    folder.mkdir()
    with pytest.raises(ReportError, match="is a folder or a link"):
        write_report(project, folder)
    (tmp_path / "link.html").symlink_to(tmp_path / "elsewhere.html")
    with pytest.raises(ReportError, match="is a folder or a link"):
        write_report(project, tmp_path / "link.html")
    assert not (tmp_path / "elsewhere.html").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ReportError, match="no run recorded yet; `motionmasks run` first"):
        write_report(empty, tmp_path / "r.html")
    assert not (tmp_path / "r.html").exists()


@pytest.mark.parametrize(
    ("outcome", "css"),
    [
        ("ran", "ran"),
        ("restored (run cache)", "restored"),
        ("skipped (up to date)", "skipped"),
        ("failed", "failed"),
        ("not run (upstream failed)", "failed"),
    ],
)
def test_each_stage_outcome_has_its_own_colour_in_the_stage_table(outcome, css):
    from motionmasks.report import _outcome_class

    assert _outcome_class(outcome) == css
