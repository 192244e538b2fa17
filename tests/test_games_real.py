"""The built-in recipes with the real games: SuperTuxKart, Red Eclipse and 0 A.D.

Each test runs when its game is installed (``apt-get install supertuxkart redeclipse 0ad``)
and is skipped otherwise; ``CLOUD3D_REQUIRE_GAMES=1`` turns that skip into a failure, so a
machine meant to check the recipes cannot pass without running them. Each captures a few
720p frames from two scenes and checks they are real, changing gameplay frames and that no
game or Xvfb process is left. A run takes 1-5 minutes per game on a 2-core machine.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import assert_gone, child_pids, cli_argv

from capture.games.registry import get_game
from capture.verify import check_capture
from cloud3d.imageio import read_image_rgb

pytestmark = [pytest.mark.xvfb, pytest.mark.slow]

SCENES = {"supertuxkart": "hacienda,zengarden", "redeclipse": "deadsimple,castle",
          "0ad": "temperate_roadway_2p,magadha_2p"}


@pytest.mark.parametrize("name", list(SCENES))
def test_real_game_recipe(name, xvfb_binary, tmp_path, request):
    recipe = get_game(name)
    if not recipe.installed():
        msg = f"{recipe.title} is not installed (apt-get install {recipe.needs})"
        if os.environ.get("CLOUD3D_REQUIRE_GAMES") == "1":
            pytest.fail(msg + "; CLOUD3D_REQUIRE_GAMES=1 requires it")
        pytest.skip(msg)
    homes = Path(tempfile.mkdtemp(prefix="cloud3d-test-games-"))  # in /tmp: 'nobody' can reach it
    homes.chmod(0o711)
    request.addfinalizer(lambda: shutil.rmtree(homes, ignore_errors=True))
    proc = subprocess.Popen(cli_argv("capture", "game", name, "--count", "4", "--res", "720p",
                                     "--scenes", SCENES[name], "--out", tmp_path, "--no-progress",
                                     "--json"),
                            env={**os.environ, "CLOUD3D_GAME_HOME": str(homes / "h")},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    started: set[int] = set()  # Xvfb, the game and the writers, seen while the capture runs
    deadline = time.monotonic() + 1500
    while proc.poll() is None and time.monotonic() < deadline:
        started |= child_pids(proc.pid)
        time.sleep(0.2)
    if proc.poll() is None:
        proc.terminate()
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-3000:]
    assert_gone(started)  # no game, Xvfb or writer left behind
    summary = json.loads(out)
    app_dir = Path(summary["app_dir"])
    kept = pd.read_csv(app_dir / "frames.csv", dtype=str)
    kept = kept[kept["status"] == "kept"]
    assert len(kept) == 4 and kept["scene"].nunique() == 2
    frames = [read_image_rgb(app_dir / f)[0] for f in kept["file_720p"]]
    assert all(f.shape == (720, 1280, 3) and f.std() > 10 for f in frames)  # not a blank screen
    diffs = [np.abs(a.astype(int) - b.astype(int)).mean() for a, b in zip(frames, frames[1:], strict=False)]
    assert min(diffs) > 0.5  # every kept frame differs from the one before: a moving picture
    assert all(v == [] for v in check_capture(app_dir).values())
    assert all(v["outcome"] == "ok" for v in summary["visits"])
