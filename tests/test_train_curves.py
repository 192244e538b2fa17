"""``cloud3d train`` draws curves.png beside log.csv and redraws it at each validation."""

from __future__ import annotations

import os
import subprocess

from helpers import CLI, make_game_like_frame
from PIL import Image

from cloud3d.imageio import write_png
from cloud3d_dataset.manifest import index_dataset
from models.curves import read_log


def _train(dataset, out, steps: int) -> None:
    cmd = [*CLI, "train", str(dataset), "--app", "toy", "--arch", "c2f-xsmall-pruned", "--out", str(out),
           "--steps", str(steps), "--batch", "1", "--crop", "64", "--lr", "1e-3", "--val-every", "3",
           "--val-images", "1", "--device", "cpu", "--threads", "1"]
    if out.exists():
        cmd.append("--resume")
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "MPLBACKEND": "Agg"})
    assert p.returncode == 0, p.stderr[-2000:]


def test_curves_png_beside_log_refreshed_at_each_validation(tmp_path):
    for split, ns in (("train", range(3)), ("validation", range(3, 4))):
        for n in ns:
            write_png(tmp_path / "ds" / split / "toy-720p" / f"{n}.png", make_game_like_frame(64, 64, n))
    index_dataset(tmp_path / "ds", progress=False)
    out = tmp_path / "run"
    _train(tmp_path / "ds", out, 3)
    png = out / "curves.png"
    with Image.open(png) as im:
        assert im.format == "PNG" and im.size[0] > 1000  # two columns: step and gigapixels
    first = png.read_bytes()
    _train(tmp_path / "ds", out, 6)  # resumed: one more validation at step 6
    assert png.read_bytes() != first
    rows = read_log(out / "log.csv", pixels_per_step=64 * 64)
    last = [r for r in rows if r["phase"] == "train"][-1]
    assert last["step"] == 6 and abs(last["gpx"] - 6 * 64 * 64 / 1e9) < 1e-12
