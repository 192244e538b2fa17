"""`cloud3d demo` end to end at a tiny size: real capture (synthetic + a real Xvfb window),
real splits, real entropy analysis, real codecs, real report; outputs checked for content."""

from __future__ import annotations

import sqlite3
import subprocess

import pandas as pd
import pytest
from helpers import CLI
from pagecheck import CHROMIUM, local_targets_missing, render_page
from PIL import Image

CODECS = ["jpeg:q=40,80", "webp:q=40,80", "avif:q=50;speed=8", "hevc-intra:q=50;preset=fast"]
QUALITIES = 2 + 2 + 1 + 1


@pytest.fixture(scope="module")
def demo(tmp_path_factory, xvfb_binary):
    out = tmp_path_factory.mktemp("demo") / "out"
    cmd = [*CLI, "demo", "--out", str(out), "--frames", "20",
           "--window", "on", "--window-frames", "20", "--workers", "2"]
    for c in CODECS:
        cmd += ["--codec", c]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    return out, p, cmd


def test_demo_prints_where_the_report_is(demo):
    out, p, _ = demo
    last = p.stdout.strip().splitlines()[-1]
    assert last.startswith("report:") and last.endswith("index.html")
    assert (out / "report" / "index.html").is_file()


def test_demo_dataset_has_both_apps_split_8_1_1(demo):
    out, _, _ = demo
    m = pd.read_csv(out / "dataset" / "manifest.csv")
    assert set(m["app"]) == {"synthetic", "synthetic-window"}
    assert set(m["resolution"]) == {"720p"}
    assert (m["width"] == 1280).all() and (m["height"] == 720).all()
    counts = m.groupby(["app", "split"]).size()
    for app in ("synthetic", "synthetic-window"):
        assert counts[(app, "test")] >= 1 and counts[(app, "validation")] >= 1
        assert counts[(app, "train")] >= 8 * counts[(app, "test")] - 1
    # no frame is in two splits
    assert not m.duplicated(["app", "resolution", "source_index"]).any()


def test_demo_entropy_compares_each_app_with_the_labelled_standin(demo):
    out, _, _ = demo
    s = pd.read_csv(out / "entropy" / "summary.csv")
    groups = set(s["group"])
    assert {"synthetic-720p", "synthetic-window-720p"} <= groups
    ref = [g for g in groups if "stand-in" in g]
    assert len(ref) == 1, groups
    lum = s[(s["measure"] == "entropy_luma") & (s["group"] == "synthetic-720p")].iloc[0]
    assert 0 < lum["mean"] <= 8 and 0 <= lum["ks_pvalue"] <= 1


def test_demo_bench_has_every_task_and_no_failures(demo):
    out, _, _ = demo
    m = pd.read_csv(out / "dataset" / "manifest.csv")
    n_test = int((m["split"] == "test").sum())
    with sqlite3.connect(out / "results.sqlite") as con:
        rows = pd.read_sql_query("SELECT codec, status, bpp, bytes, width, height, psnr_rgb FROM results", con)
    assert len(rows) == n_test * QUALITIES
    assert (rows["status"] == "ok").all()
    assert set(rows["codec"]) == {"jpeg", "webp", "avif", "hevc-intra"}
    assert (rows["bpp"] - 8 * rows["bytes"] / (rows["width"] * rows["height"])).abs().max() < 1e-9
    assert rows["psnr_rgb"].between(20, 70).all()


def test_demo_report_tables_figures_and_links(demo, tmp_path):
    out, _, _ = demo
    rep = out / "report"
    pq = pd.read_csv(rep / "per_quality.csv")
    assert len(pq) == 2 * QUALITIES  # two app-resolution groups
    bd = pd.read_csv(rep / "bd_rate.csv")
    assert set(bd["codec"]) >= {"webp"}
    for name in ("rd_synthetic-720p_psnr.png", "rd_synthetic-window-720p_psnr.png"):
        with Image.open(rep / name) as im:
            im.verify()
    figures = list(rep.rglob("*.png"))
    assert len(figures) >= 6
    for f in figures:
        with Image.open(f) as im:
            assert im.size[0] > 100 and im.size[1] > 100
    assert local_targets_missing(rep / "index.html") == []
    html = (rep / "index.html").read_text()
    assert "synthetic" in html.lower() and "stand-in" in html
    if CHROMIUM is not None:
        dom = render_page(rep / "index.html", tmp_path)
        assert 'data-broken-images="0"' in dom


def test_demo_rerun_resumes_without_recomputing(demo):
    out, _, cmd = demo
    with sqlite3.connect(out / "results.sqlite") as con:
        before = con.execute("SELECT count(*), max(finished) FROM results").fetchone()
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "already there, skipped" in p.stderr
    with sqlite3.connect(out / "results.sqlite") as con:
        after = con.execute("SELECT count(*), max(finished) FROM results").fetchone()
    assert after == before


def test_demo_bad_arguments_give_one_clear_error(tmp_path):
    p = subprocess.run([*CLI, "demo", "--out", str(tmp_path / "d"),
                        "--resolutions", "480p"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 1
    assert p.stderr.strip().splitlines()[-1].startswith("error: unknown resolution")
    assert "Traceback" not in p.stderr


def test_demo_docstring_names_functions_that_exist_and_that_run_demo_calls():
    """Each step's ``(module.function)`` in the demo's docstring resolves, and run_demo
    really calls it (the docstring once named a function that did not exist)."""
    import ast
    import importlib
    import inspect
    import re

    from cloud3d.cli import demo as demo_module

    named = re.findall(r"\(([a-z_0-9.]+\.[A-Za-z_]+)\)", demo_module.__doc__)
    assert len(named) == 6, named
    source = inspect.getsource(demo_module)
    calls = {n.id for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Name)}
    for dotted in named:
        module, _, name = dotted.rpartition(".")
        obj = getattr(importlib.import_module(module), name)  # AttributeError: a wrong name
        assert name in calls, f"the demo never uses {dotted}"
        assert obj.__module__.split(".")[0] == module.split(".")[0], dotted
