"""The plan and CPU-time estimate that ``cloud3d bench`` prints before it starts.

Stored timings come from a real earlier run in the same SQLite store; the expected
figures are recomputed here from the stored timestamps, independently of the code
under test. The calibration runs the real worker path on real crops.
"""

from __future__ import annotations

import statistics
import subprocess
from dataclasses import replace
from datetime import datetime

import pytest
from helpers import make_dataset, make_game_like_frame, plugin_cli_argv, rows
from plugin_codecs import QuantZlibCodec

from baselines.bench.estimate import (
    CostEstimate,
    calibrate,
    calibration_task,
    describe_plan,
    estimate_costs,
    fit_seconds,
    human_seconds,
)
from baselines.bench.runner import BenchOptions, run_bench
from baselines.bench.store import ResultsStore
from baselines.bench.tasks import plan_tasks
from baselines.codecs.registry import CodecSpec
from cloud3d.imageio import write_png
from cloud3d_dataset.manifest import image_paths, index_dataset

TIMING = ("codec_label", "resolution", "quality", "width", "height", "started", "finished")


def _seconds(r: dict) -> float:
    return (datetime.fromisoformat(r["finished"]) - datetime.fromisoformat(r["started"])).total_seconds()


def _no_calibration(tasks):
    raise AssertionError(f"calibration asked for {[t.codec_label for t in tasks]}")


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    """A dataset (720p groups, plus one larger 1080p image) and a store with a real run at bits=1,3."""
    tmp = tmp_path_factory.mktemp("est")
    ds = make_dataset(tmp / "ds")
    write_png(ds / "test" / "alpha-1080p" / "0.png", make_game_like_frame(240, 320, 77))
    index_dataset(ds, progress=False)
    res = tmp / "r.sqlite"
    spec = CodecSpec(cls=QuantZlibCodec, options={"sleep": 1.0}, qualities=[1, 3])
    s = run_bench(ds, [spec], res, BenchOptions(workers=2, progress=False, resolutions=["720p"]))
    assert (s.ok, s.failed) == (12, 0)
    return ds, res


def test_estimate_from_stored_timings(measured):
    ds, res = measured
    stored = rows(res)
    spec = CodecSpec(cls=QuantZlibCodec, options={"sleep": 1.0}, qualities=[1, 3, 5])
    images = image_paths(ds, split="test").to_dict("records")
    tasks = plan_tasks(images, [spec], str(ds))
    done = {(r["image_sha256"], r["codec"], r["codec_version"], r["params"]) for r in stored}
    todo = [t for t in tasks if t.key not in done]
    # 6 new tasks at bits=5 (720p), 3 at the 1080p image (bits 1, 3, 5)
    assert len(tasks) == 21 and len(todo) == 9
    with ResultsStore(res, readonly=True) as st:
        (est,) = estimate_costs(todo, st.results("ok", columns=TIMING), _no_calibration)

    secs = [_seconds(r) for r in stored]
    by_q = {q: statistics.median(_seconds(r) for r in stored if r["quality"] == q) for q in (1.0, 3.0)}
    all_720 = statistics.median(secs)
    per_px = statistics.median(_seconds(r) / (r["width"] * r["height"]) for r in stored)
    # bits=5 has no stored row: the 720p median; the 1080p image has none at all: seconds per pixel
    expected = 6 * all_720 + per_px * 240 * 320 * 3
    assert by_q[1.0] > 1 and by_q[3.0] > 1  # the codec sleeps 1 s per encode
    assert est.label == "test-quant;sleep=1.0" and est.tasks == 9
    assert est.seconds == pytest.approx(expected, rel=1e-9)
    assert "median of 12 earlier results" in est.source and "3 tasks at a new resolution" in est.source

    # a known quality uses its own median
    again = [t for t in tasks if t.quality == 3 and t.resolution == "720p"][:2]
    with ResultsStore(res, readonly=True) as st:
        (e3,) = estimate_costs(again, st.results("ok", columns=TIMING), _no_calibration)
    assert e3.seconds == pytest.approx(2 * by_q[3.0], rel=1e-9)


def test_fit_and_printout_arithmetic():
    line = fit_seconds([[128 * 128, 2.0], [256 * 256, 5.0]])  # fixed 1 s + 3 s per 49152 px
    slope = 3.0 / (256 * 256 - 128 * 128)
    assert line(1280 * 720) == pytest.approx(2.0 - slope * 128 * 128 + slope * 1280 * 720)
    # a noisy pair (smaller crop slower) falls back to proportional from the larger crop
    prop = fit_seconds([[128 * 128, 6.0], [256 * 256, 5.0]])
    assert prop(1280 * 720) == pytest.approx(5.0 * 1280 * 720 / (256 * 256))
    assert fit_seconds([[100.0, 2.0]])(400) == pytest.approx(8.0)

    ests = [CostEstimate("vtm", 600, 600 * 52.0, "measured: x"),
            CostEstimate("bpg", 600, 600 * 4.5, "calibrated: y"),
            CostEstimate("jpeg", 300, 300 * 0.2, "measured: z"),
            CostEstimate("webp", 300, 300 * 0.3, "measured: w")]
    text = describe_plan(1900, 100, ests, threads=2)
    lines = text.splitlines()
    assert lines[0] == "plan: 1900 tasks: 100 already done, 1800 to do"
    assert "vtm   600 tasks x 52 s = 8.67 h  (measured: x)" in text
    assert "bpg   600 tasks x 4.5 s = 45 min  (calibrated: y)" in text
    assert "fast codecs (jpeg, webp): 600 tasks, 2.5 min in all" in text
    total = 600 * 52 + 600 * 4.5 + 300 * 0.2 + 300 * 0.3
    assert f"total {human_seconds(total)} of CPU: about {human_seconds(total / 2)} on 2 workers" in text
    assert human_seconds(total) == "9.46 h"
    unknown = describe_plan(10, 0, [CostEstimate("vtm", 10, None, "calibration failed: boom")], threads=2)
    assert "vtm  10 tasks: unknown (calibration failed: boom)" in unknown
    assert describe_plan(5, 5, [], threads=None) == "plan: 5 tasks: 5 already done, 0 to do"


def test_calibration_times_real_crops(tmp_path):
    """On a 300x400 frame the worker path is timed on 128x128 and 256x256 centre crops."""
    write_png(tmp_path / "ds" / "test" / "big-720p" / "0.png", make_game_like_frame(300, 400, 3))
    index_dataset(tmp_path / "ds", progress=False)
    spec = CodecSpec(cls=QuantZlibCodec, options={"sleep": 0.05}, qualities=[1, 2, 3])
    tasks = plan_tasks(image_paths(tmp_path / "ds").to_dict("records"), [spec], str(tmp_path / "ds"))
    task = calibration_task(tasks)
    assert task.quality == 2  # the middle quality of the first image
    row = calibrate(task)
    assert row["status"] == "ok", row.get("error")
    assert [p for p, _ in row["points"]] == [128 * 128, 256 * 256]
    assert all(s >= 0.05 for _, s in row["points"])  # each timed run encodes once (and sleeps)
    broken = calibrate(replace(task, abspath=str(tmp_path / "missing.png")))
    assert broken["status"] == "failed" and "missing.png" in broken["error"] and broken["points"] == []


@pytest.mark.slow
def test_bench_prints_plan_from_stored_timings_then_calibration(measured, tmp_path):
    ds, res = measured
    stored = rows(res)
    all_720 = statistics.median(_seconds(r) for r in stored)
    args = ["bench", str(ds), "--codec", "test-quant:bits=1,3,5;sleep=1.0", "--resolution", "720p",
            "--codec", "jpeg:q=50", "--results", str(tmp_path / "copy.sqlite"), "--workers", "2", "--quiet"]
    # a copy of the store, so this test leaves the module's store as it was
    (tmp_path / "copy.sqlite").write_bytes(res.read_bytes())
    p = subprocess.run(plugin_cli_argv(args), capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[:2] == ["plan: 24 tasks: 12 already done, 12 to do", "estimated CPU time (one core per task):"]
    # test-quant: 6 tasks at bits=5, each at the stored 720p median; jpeg has no stored row, so it
    # is calibrated (on the whole 168x176 image) and, being fast, shares one line with other fast ones
    assert lines[2] == (f"  test-quant;sleep=1.0  6 tasks x {human_seconds(all_720)} = {human_seconds(6 * all_720)}"
                        "  (measured: median of 12 earlier results in this store)")
    assert lines[3].startswith("  fast codecs (jpeg): 6 tasks, ")
    assert lines[4].startswith("  total ") and "on 2 workers" in lines[4]
    assert "bench: 12 ok, 0 failed, 12 already done, 24 tasks" in p.stdout

    # a fresh store and a slow codec: the calibration is what the figure comes from, on its own line
    args = ["bench", str(ds), "--codec", "test-quant:bits=2;sleep=1", "--resolution", "720p", "--limit", "1",
            "--results", str(tmp_path / "fresh.sqlite"), "--workers", "2", "--quiet"]
    p = subprocess.run(plugin_cli_argv(args), capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0] == "plan: 2 tasks: 0 already done, 2 to do"
    (line,) = [ln for ln in lines if ln.startswith("  test-quant;sleep=1 ")]
    assert "(calibrated on the whole image of test/alpha-720p/0.png at bits=2" in line
    per_task = line.split(" tasks x ")[1].split(" = ")[0]
    assert per_task.endswith(" s") and float(per_task[:-2]) >= 1.0  # the codec sleeps 1 s per encode
    assert "on 2 workers" in p.stdout
