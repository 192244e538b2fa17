"""Shared pytest fixtures: a real Xvfb display, small real PNG images, tool discovery.

``CLOUD3D_REQUIRE_XVFB=1`` (set by ``.ci/run``) turns "Xvfb not installed"
from a skip into a failure, so capture tests cannot silently vanish in CI.
Likewise ``CLOUD3D_REQUIRE_FFMPEG=1`` for ffmpeg, ``CLOUD3D_REQUIRE_REFCODECS=1`` for
the real BPG and VTM binaries (``.ci/run`` sets it, with ``CLOUD3D_BPG_DIR`` and
``CLOUD3D_VTM_DIR``, when ``../shared/refcodecs/bin`` exists),
``CLOUD3D_REQUIRE_BUILD_TOOLS=1`` for the compilers ``cloud3d codecs build`` needs,
and ``CLOUD3D_REQUIRE_CUDA=1`` (set by ``make gpu-check``) for a CUDA GPU.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
from helpers import cli_argv, make_game_like_frame

from cloud3d.imageio import write_png

# A suite started as a background job (`make test &`, nohup, a CI runner's job) inherits
# SIGINT ignored, and so would every cloud3d process the tests start: Python installs no
# KeyboardInterrupt handler then, and the Ctrl-C tests' SIGINT would do nothing. A handler
# here (not an ignore) is reset to the default at exec, so the children get Ctrl-C back.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


def _missing(msg: str, env_flag: str) -> None:
    """Skip with ``msg``, or fail when ``$env_flag`` is 1 (CI requires the thing)."""
    if os.environ.get(env_flag) == "1":
        pytest.fail(msg + f"; {env_flag}=1 requires it")
    pytest.skip(msg)


def _need(tool: str, env_flag: str) -> str:
    path = shutil.which(tool)
    if path is None:
        _missing(f"{tool} is not installed (apt-get install {'xvfb' if tool == 'Xvfb' else tool})", env_flag)
    return path


def _real_codec(cls):
    codec = cls()
    reason = codec.availability()
    if reason:
        _missing(f"real {cls.name} skipped: {reason}", "CLOUD3D_REQUIRE_REFCODECS")
    return codec


@pytest.fixture()
def real_bpg():
    """A default :class:`BpgCodec` whose real bpgenc/bpgdec were found (else skip, or fail in CI)."""
    from baselines.codecs.bpg import BpgCodec

    return _real_codec(BpgCodec)


@pytest.fixture()
def real_vtm():
    """A default :class:`VtmCodec` whose real EncoderApp/DecoderApp/config were found (else skip/fail)."""
    from baselines.codecs.vtm import VtmCodec

    return _real_codec(VtmCodec)


@pytest.fixture()
def refcodecs_source():
    """``refcodecs_source("bpg"|"vtm")``: the source archive in ``$CLOUD3D_REFCODECS_DIR/src``
    (default ``../shared/refcodecs/src`` beside the repository); skip, or fail in CI, if absent."""
    from helpers import ROOT

    folder = Path(os.environ.get("CLOUD3D_REFCODECS_DIR") or ROOT.parent / "shared" / "refcodecs") / "src"

    def find(name: str) -> Path:
        found = sorted(folder.glob("libbpg-*.tar.gz" if name == "bpg" else "VTM-*.tar.gz"))
        if not found:
            _missing(f"no {name} source archive in {folder}", "CLOUD3D_REQUIRE_REFCODECS")
        return found[0]

    return find


@pytest.fixture()
def need_build_tools():
    """``need_build_tools("bpg"|"vtm")``: skip (or fail in CI) unless that codec's build tools
    for ``cloud3d codecs build`` are all installed here."""
    from baselines.codecs.build import RECIPES, missing_build_tools

    def need(name: str) -> None:
        missing = missing_build_tools(RECIPES[name])
        if missing:
            _missing(f"build tools for {name} missing: {', '.join(missing)}", "CLOUD3D_REQUIRE_BUILD_TOOLS")

    return need


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
