"""`cloud3d crops`: fixed windows of real PNG frames as a dataset of their own."""

from __future__ import annotations

import subprocess

import numpy as np
import pandas as pd
import pytest
from helpers import cli_argv, make_dataset

from cloud3d.errors import Cloud3dError
from cloud3d.imageio import read_png_rgb
from cloud3d_dataset.crops import make_crops
from cloud3d_dataset.torch_dataset import FrameBank
from cloud3d_dataset.verify import verify


def test_windows_are_the_source_pixels_and_the_result_is_a_dataset(tmp_path):
    src = make_dataset(tmp_path / "src", n=3, h=100, w=140)
    out = tmp_path / "crops"
    log = make_crops(src, out, size=64, per_frame=2, splits=("train", "test"), progress=False)
    assert len(log) == 2 * (2 * 3 + 1)  # two apps x 3 test frames + one train frame, 2 windows each
    assert set(log["split"]) == {"train", "test"}
    for r in log.itertuples(index=False):
        crop = read_png_rgb(out / r.split / f"{r.app}-64p" / f"{r.n}.png")
        frame = read_png_rgb(src / r.source)
        assert crop.shape == (64, 64, 3)
        assert np.array_equal(crop, frame[r.y : r.y + 64, r.x : r.x + 64])
        assert 0 <= r.x <= 140 - 64 and 0 <= r.y <= 100 - 64
    # the two windows of a frame differ (positions drawn per window)
    first = log[log["source"] == log["source"].iloc[0]]
    assert len({(x, y) for x, y in zip(first["x"], first["y"], strict=True)}) == 2
    rep = verify(out, progress=False)
    assert rep.ok, rep.problems
    bank = FrameBank(out, "test", crop=64, progress=False)
    assert len(bank) == 12 and bank.sample(3).shape == (3, 3, 64, 64)
    # same arguments, same windows
    again = make_crops(src, tmp_path / "again", size=64, per_frame=2, splits=("train", "test"),
                       progress=False)
    pd.testing.assert_frame_equal(log, again)
    other = make_crops(src, tmp_path / "other", size=64, per_frame=2, splits=("train", "test"),
                       seed=1, progress=False)
    assert not log[["x", "y"]].equals(other[["x", "y"]])


def test_refusals(tmp_path):
    src = make_dataset(tmp_path / "src", n=1, h=100, w=140)
    with pytest.raises(Cloud3dError, match="smaller than 128 px"):
        make_crops(src, tmp_path / "a", size=128, splits=("test",), progress=False)
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("mine")
    with pytest.raises(Cloud3dError, match="not an empty folder"):
        make_crops(src, busy, size=32, splits=("test",), progress=False)
    assert (busy / "keep.txt").read_text() == "mine"


def test_cli(tmp_path):
    src = make_dataset(tmp_path / "src", n=2, h=100, w=140)
    out = tmp_path / "crops"
    r = subprocess.run(cli_argv("crops", src, "-o", out, "--size", "48", "--splits", "test",
                                "--app", "alpha", "--quiet"), capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "2 crops of 48x48" in r.stdout and "test/alpha 2" in r.stdout
    assert sorted(p.name for p in (out / "test" / "alpha-48p").iterdir()) == ["0.png", "1.png"]
    bad = subprocess.run(cli_argv("crops", src, "-o", tmp_path / "x", "--splits", "tests"),
                         capture_output=True, text=True)
    assert bad.returncode == 1 and "--splits takes train, validation and/or test" in bad.stderr
    assert "Traceback" not in bad.stderr
