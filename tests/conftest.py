"""Shared pytest fixtures: a real Xvfb display, small real PNG images, tool discovery.

``CLOUD3D_REQUIRE_XVFB=1`` (set by ``.ci/run``) turns "Xvfb not installed"
from a skip into a failure, so capture tests cannot silently vanish in CI.
Likewise ``CLOUD3D_REQUIRE_FFMPEG=1`` for ffmpeg, and ``CLOUD3D_REQUIRE_CUDA=1`` (set by
``make gpu-check``) for a CUDA GPU.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from cloud3d_dataset.files import write_png


def _need(tool: str, env_flag: str) -> str:
    path = shutil.which(tool)
    if path is None:
        msg = f"{tool} is not installed (apt-get install {'xvfb' if tool == 'Xvfb' else tool})"
        if os.environ.get(env_flag) == "1":
            pytest.fail(msg + f"; {env_flag}=1 requires it")
        pytest.skip(msg)
    return path


@pytest.fixture(scope="session")
def xvfb_binary() -> str:
    return _need("Xvfb", "CLOUD3D_REQUIRE_XVFB")


@pytest.fixture(scope="session")
def ffmpeg_binary() -> str:
    return _need("ffmpeg", "CLOUD3D_REQUIRE_FFMPEG")


@pytest.fixture(scope="session")
def cuda_device():
    """``torch.device("cuda")``; the test is skipped without a usable CUDA GPU."""
    import torch

    if torch.cuda.is_available():
        return torch.device("cuda")
    msg = "no CUDA GPU here: this test needs one (make gpu-check on a GPU machine)"
    if os.environ.get("CLOUD3D_REQUIRE_CUDA") == "1":
        pytest.fail(msg + "; CLOUD3D_REQUIRE_CUDA=1 requires it")
    pytest.skip(msg)


@pytest.fixture()
def xvfb_display(xvfb_binary, tmp_path_factory):
    """Start a real Xvfb (1280x720x24) on a free display; yield ``":N"``; stop it."""
    proc = subprocess.Popen(
        [xvfb_binary, "-displayfd", "1", "-screen", "0", "1280x720x24", "-nolisten", "tcp"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        line = proc.stdout.readline().decode().strip()
        if not line.isdigit():
            pytest.fail("Xvfb did not report a display number")
        display = f":{line}"
        deadline = time.monotonic() + 10
        while not Path(f"/tmp/.X11-unix/X{line}").exists():
            if time.monotonic() > deadline:
                pytest.fail("Xvfb socket did not appear")
            time.sleep(0.05)
        yield display
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def make_game_like_frame(h: int, w: int, seed: int, t: float = 0.0) -> np.ndarray:
    """A small deterministic 'rendered' frame: gradient sky, textured ground, a moving box."""
    rng = np.random.default_rng(seed)
    img = np.zeros((h, w, 3), np.uint8)
    horizon = h // 2
    ys = np.linspace(0, 1, horizon)[:, None]
    img[:horizon, :, 0] = (90 + 60 * ys).astype(np.uint8)
    img[:horizon, :, 1] = (140 + 60 * ys).astype(np.uint8)
    img[:horizon, :, 2] = 230
    tex = rng.integers(0, 40, size=(h - horizon, w), dtype=np.int16)
    img[horizon:, :, 1] = np.clip(110 + tex, 0, 255).astype(np.uint8)
    img[horizon:, :, 0] = np.clip(60 + tex // 2, 0, 255).astype(np.uint8)
    x0 = int((0.1 + 0.6 * (t % 1.0)) * w)
    img[h // 3 : h // 3 + h // 6, x0 : x0 + w // 8] = (200, 40, 40)
    return img


@pytest.fixture()
def png_factory(tmp_path):
    """Write small real PNG files: ``png_factory(name, h, w, seed=0, t=0.0) -> Path``."""

    def make(name: str, h: int = 48, w: int = 64, seed: int = 0, t: float = 0.0, folder: Path | None = None) -> Path:
        path = (folder or tmp_path) / name
        write_png(path, make_game_like_frame(h, w, seed, t))
        return path

    return make
