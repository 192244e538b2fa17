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
from pathlib import Path

import pytest
from helpers import cli_argv, make_game_like_frame

from cloud3d.imageio import write_png


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
def xvfb_display(xvfb_binary):
    """A real Xvfb (1280x720x24) on a free display, the toolkit's own :class:`VirtualDisplay`;
    yields ``":N"`` and stops the server afterwards."""
    from capture.launch import VirtualDisplay

    with VirtualDisplay(1280, 720) as display:
        yield display.name


@pytest.fixture()
def run_cli():
    """Run ``cloud3d ARGS...`` in a subprocess: ``run_cli(*args, timeout=300, env=None, **kw)``.

    Returns the :class:`subprocess.CompletedProcess` with text ``stdout``/``stderr``.
    ``env`` entries are added to this process's environment (``MPLBACKEND=Agg`` always).
    """

    def run(*args: object, timeout: float = 300, env: dict[str, str] | None = None, **kw):
        full_env = {**os.environ, "MPLBACKEND": "Agg", **(env or {})}
        return subprocess.run(cli_argv(*args), capture_output=True, text=True, timeout=timeout,
                              env=full_env, **kw)

    return run


@pytest.fixture()
def png_factory(tmp_path):
    """Write small real PNG files: ``png_factory(name, h, w, seed=0, t=0.0) -> Path``."""

    def make(name: str, h: int = 48, w: int = 64, seed: int = 0, t: float = 0.0, folder: Path | None = None) -> Path:
        path = (folder or tmp_path) / name
        write_png(path, make_game_like_frame(h, w, seed, t))
        return path

    return make
