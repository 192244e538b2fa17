"""bench-folder and bench-video draw their figures beside their CSV and into the report."""

from __future__ import annotations

import pandas as pd
from helpers import make_dataset
from PIL import Image


def _is_png(path) -> bool:
    with Image.open(path) as im:
        return im.format == "PNG" and im.size[0] > 300


def test_folder_and_video_figures_in_the_report(tmp_path, run_cli, ffmpeg_binary):
    ds = make_dataset(tmp_path / "ds", n=2, h=64, w=96)
    p = run_cli("bench-folder", ds, "--method", "tar", "--codec", "jpeg:q=80", "--out",
                tmp_path / "folder.csv", "--quiet")
    assert p.returncode == 0, p.stderr
    assert _is_png(tmp_path / "folder.png") and "figure:" in p.stdout
    p = run_cli("bench-video", ds, "--crf", "23,30", "--max-frames", "2", "--out",
                tmp_path / "video.csv", "--no-progress")
    assert p.returncode == 0, p.stderr
    assert _is_png(tmp_path / "video.png")
    p = run_cli("bench", ds, "--codec", "jpeg:q=50", "--results", tmp_path / "r.sqlite",
                "--workers", "1", "--quiet")
    assert p.returncode == 0, p.stderr
    rep = tmp_path / "report"
    p = run_cli("report", tmp_path / "r.sqlite", "--out", rep, "--bench-folder", tmp_path / "folder.csv",
                "--bench-video", tmp_path / "video.csv")
    assert p.returncode == 0, p.stderr
    html = (rep / "index.html").read_text()
    for name in ("bench_folder", "bench_video"):
        assert _is_png(rep / f"{name}.png") and f'src="{name}.png"' in html
    assert 'id="folder"' in html and 'id="video"' in html
    methods = set(pd.read_csv(tmp_path / "folder.csv")["method"])
    assert all(m in html for m in methods)


def test_report_refuses_a_csv_of_the_wrong_kind(tmp_path, run_cli):
    ds = make_dataset(tmp_path / "ds", n=1, h=64, w=96)
    p = run_cli("bench", ds, "--codec", "jpeg:q=50", "--results", tmp_path / "r.sqlite", "--workers", "1",
                "--quiet")
    assert p.returncode == 0, p.stderr
    bad = tmp_path / "other.csv"
    bad.write_text("a,b\n1,2\n")
    p = run_cli("report", tmp_path / "r.sqlite", "--out", tmp_path / "rep", "--bench-video", bad)
    assert p.returncode == 1 and p.stderr.strip() == f"error: {bad} is not a bench-video CSV: no column 'app'"
