"""Synthetic scene, recorder output, filters and resize policy (no display needed)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from capture.filters import FilterConfig, FrameFilter
from capture.options import RecordOptions
from capture.recorder import record
from capture.resize import check_fit, fit_frame
from capture.synthetic import SyntheticScene, SyntheticSource
from capture.verify import check_capture
from cloud3d.errors import Cloud3dError
from cloud3d.imageio import encode_png, read_png_rgb
from cloud3d.provenance import sha256_bytes


def test_synthetic_is_deterministic_and_moves():
    a = SyntheticScene(320, 180, seed=3)
    b = SyntheticScene(320, 180, seed=3)
    f0, f0b = a.render(10), b.render(10)
    assert f0.shape == (180, 320, 3) and f0.dtype == np.uint8
    assert sha256_bytes(encode_png(f0)) == sha256_bytes(encode_png(f0b))
    f1 = a.render(11)
    assert np.abs(f1.astype(int) - f0.astype(int)).mean() > 1.0  # camera moved
    other = SyntheticScene(320, 180, seed=4).render(10)
    assert not np.array_equal(other, f0)
    # game-like: many distinct colours, neither flat nor noise-only
    assert len(np.unique(f0.reshape(-1, 3), axis=0)) > 500


def test_record_synthetic_writes_png_and_log(tmp_path):
    with SyntheticSource(256, 144, seed=1) as src:
        s = record(src, tmp_path, "synthetic", RecordOptions(resolutions=("native", "720p"), count=6, progress=False))
    assert (s.grabbed, s.written, s.first_index, s.last_index) == (6, 6, 0, 5)
    assert s.synthetic and "SYNTHETIC" in s.to_text()
    app = tmp_path / "synthetic"
    df = pd.read_csv(app / "frames.csv", dtype={"reason": str})
    assert sorted(df["index"]) == list(range(6))  # parallel writers: rows in completion order
    assert set(df["synthetic"]) == {1} and set(df["source"]) == {"synthetic"}
    img = read_png_rgb(app / "720p" / "000003.png")
    assert img.shape == (720, 1280, 3)
    native = read_png_rgb(app / "native" / "000003.png")
    assert np.array_equal(native, SyntheticScene(256, 144, seed=1).render(3))
    assert check_capture(app) == {k: [] for k in check_capture(app)}
    # re-running continues numbering
    with SyntheticSource(256, 144, seed=1) as src:
        s2 = record(src, tmp_path, "synthetic", RecordOptions(resolutions=("native",), count=2, progress=False))
    assert (s2.first_index, s2.last_index) == (6, 7)
    assert (app / "native" / "000007.png").exists()
    assert (app / "runs.jsonl").read_text().count("\n") == 2


def test_filters_on_crafted_frames():
    flt = FrameFilter(FilterConfig())
    black = np.zeros((90, 160, 3), np.uint8)
    grey = np.full((90, 160, 3), 128, np.uint8)
    scene = SyntheticScene(160, 90, 0)
    a, b = scene.render(0), scene.render(15)
    assert flt.check(black) == "black"
    assert flt.check(grey) == "uniform"
    assert flt.check(a) is None
    assert flt.check(a.copy()) == "duplicate"
    noisy = a.copy()
    noisy[0, 0] ^= 1  # one pixel off: still a duplicate
    assert flt.check(noisy) == "duplicate"
    assert flt.check(b) is None
    keep_all = FrameFilter(FilterConfig(drop_uniform=False, drop_duplicates=False))
    assert keep_all.check(black) is None and keep_all.check(black) is None


def test_record_counts_drops_by_reason(tmp_path):
    class Scripted(SyntheticSource):  # a real source replaying crafted frames
        def __init__(self):
            super().__init__(160, 90, seed=0)
            s = self.scene
            self.frames = [np.zeros((90, 160, 3), np.uint8), s.render(0), s.render(0),
                           np.full((90, 160, 3), 200, np.uint8), s.render(20)]

        def grab(self):
            from capture.source import SourceExhausted

            if not self.frames:
                raise SourceExhausted
            return self.frames.pop(0)

    s = record(Scripted(), tmp_path, "scripted", RecordOptions(count=10, progress=False))
    assert s.written == 2 and s.dropped == {"black": 1, "duplicate": 1, "uniform": 1}
    df = pd.read_csv(tmp_path / "scripted" / "frames.csv", dtype={"reason": str}).sort_values("grab")
    assert list(df["status"]) == ["dropped", "kept", "dropped", "dropped", "kept"]
    assert list(df["reason"].fillna("")) == ["black", "", "duplicate", "uniform", ""]


def test_fit_policies_and_errors():
    rgb = SyntheticScene(160, 128, 0).render(0)  # 5:4
    with pytest.raises(Cloud3dError, match="not 16:9.*--fit"):
        check_fit(160, 128, ("720p",), "error")
    check_fit(160, 128, ("native",), "error")  # native needs no policy
    for fit in ("scale", "crop", "pad"):
        assert fit_frame(rgb, "720p", fit).shape == (720, 1280, 3)
    padded = fit_frame(rgb, "720p", "pad")
    assert padded[:, :100].max() == 0  # pillarbox bars are black
    assert fit_frame(SyntheticScene(1280, 720, 0).render(0), "720p").shape == (720, 1280, 3)


def test_cli_synthetic_and_fit_error(run_cli, tmp_path):
    r = run_cli("capture", "synthetic", "--count", "3", "--size", "320x180", "--res", "native",
             "--out", str(tmp_path), "--no-progress")
    assert r.returncode == 0, r.stderr
    assert "written 3" in r.stdout and "SYNTHETIC" in r.stdout
    r = run_cli("capture", "synthetic", "--count", "3", "--size", "320x256", "--res", "720p",
             "--out", str(tmp_path / "b"), "--no-progress")
    assert r.returncode == 1
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: source is 320x256, not 16:9")
    r = run_cli("capture", "synthetic", "--count", "3", "--res", "4k", "--out", str(tmp_path))
    assert r.returncode == 1 and "unknown resolution '4k'" in r.stderr


def test_cli_settings_are_the_record_options_defaults(run_cli, tmp_path):
    """The CLI's recording options come from RecordOptions' one table: a run with only
    --count given logs exactly RecordOptions(count=...)'s settings, and --help says what
    the writers are (processes, the default writer kind)."""
    r = run_cli("capture", "synthetic", "--count", "2", "--size", "160x90", "--out", str(tmp_path),
                "--no-progress")
    assert r.returncode == 0, r.stderr
    run = json.loads((tmp_path / "synthetic" / "runs.jsonl").read_text().splitlines()[-1])
    expected = RecordOptions(count=2)
    assert run["settings"] == expected.settings(expected.filters)
    assert expected.writer_kind == "process"
    r = run_cli("capture", "synthetic", "--help")
    assert "PNG writer processes" in r.stdout and "threads" not in r.stdout


def test_unwritable_output(run_cli, tmp_path):
    blocker = tmp_path / "file.txt"
    blocker.write_text("not a folder")
    r = run_cli("capture", "synthetic", "--count", "2", "--size", "320x180",
             "--out", str(blocker / "sub"), "--no-progress")
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: output folder not usable")
    assert "Traceback" not in r.stderr


def test_backpressure_is_reported_never_silent(tmp_path):
    slow = dict(resolutions=("native",), encoder="zlib", level=9, writers=1, queue_size=1,
                progress=False, writer_kind="thread")
    with SyntheticSource(480, 270, seed=2) as src:
        s = record(src, tmp_path / "drop", "a", RecordOptions(count=6, policy="drop", duration=20, **slow))
    assert s.dropped.get("writers_behind", 0) > 0
    assert s.grabbed == s.written + sum(s.dropped.values())  # every grab accounted for
    df = pd.read_csv(tmp_path / "drop" / "a" / "frames.csv", dtype={"reason": str})
    assert (df["reason"] == "writers_behind").sum() == s.dropped["writers_behind"]
    with SyntheticSource(480, 270, seed=2) as src:
        w = record(src, tmp_path / "wait", "a", RecordOptions(count=4, policy="wait", **slow))
    assert w.written == 4 and w.dropped == {} and w.backpressure_waits > 0
    assert "writers fell behind" in w.to_text()


def test_thread_and_process_writers_write_identical_files(tmp_path):
    digests = {}
    for kind in ("thread", "process"):
        with SyntheticSource(320, 180, seed=5) as src:
            record(src, tmp_path / kind, "syn", RecordOptions(resolutions=("native", "720p"), count=3,
                                                             writer_kind=kind, progress=False))
        df = pd.read_csv(tmp_path / kind / "syn" / "frames.csv").sort_values("index")
        digests[kind] = list(df["sha256_native"]) + list(df["sha256_720p"])
    assert digests["thread"] == digests["process"]
