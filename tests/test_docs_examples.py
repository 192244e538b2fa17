"""Every documented example runs: the command blocks of README.md and docs/*.md and the
examples in each command's ``--help`` (found by ``docblocks.py``, which also says how they
are marked and made small).

Each Markdown file's blocks run in order in one working folder of their own (a later block
may use what an earlier one wrote), and the ``--help`` examples, in command order, in one more;
each folder starts as a copy of the same start: a small real dataset (apps ``supertuxkart`` and ``dota2``, 256x144 and 384x216 frames
in ``144p``/``216p`` groups, train/validation/test splits; ``dataset``, ``data``, ``DATASET``
name it; README.md builds its own), ``captures/supertuxkart`` (4 synthetic scenes of 6 frames
at 384x216), ``photos/`` (stand-ins for DIV2K), ``frame.png``, a small ``gameplay.mp4`` (with
ffmpeg), and untrained but real checkpoints at the paths the docs use (``runs/stk-0.01/best.pt``
...). ``cloud3d`` and ``python`` on the PATH are this checkout's. A block passes when it exits
0 and prints no traceback.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from docblocks import ROOT, Block, doc_blocks, help_blocks, small_scale
from helpers import make_game_like_frame

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

#: help examples skipped by name (their command's --help cannot carry a marker), with why
HELP_SKIPS = {
    "capture game supertuxkart": "runs the game for minutes (needs it installed)",
    "capture game 0ad": "runs the game for hours",
    "capture launch --size 1280x720 --app supertuxkart": "runs SuperTuxKart for 2000 frames",
    "capture window": "needs a SuperTuxKart window on your desktop",
    "capture screen --display :99": "needs an X display :99",
    "codecs build": "downloads and compiles for 15-20 minutes",
    "--device cuda": "GPU only",
    "cloud3d demo --out demo-out": "the whole demo study, a minute (make demo and test_demo.py run it)",
    "big.c3d": "needs a stream of an 8K frame",
    "--card-json cards/": "ships a model into the package (needs its model card)",
    "--update-cards": "writes its figures into the package's model cards",
}

#: checkpoint paths the examples use (those of runs an example trains itself are left out):
#: untrained c2f-xsmall-pruned, variable-rate where the name says vr; c2f-small-pruned with the
#: app in its metadata where an example compares them with trained runs of that architecture
CHECKPOINTS = {"runs/stk-0.01/best.pt": "fixed", "runs/stk/best.pt": "fixed", "runs/a/best.pt": "fixed",
               "runs/supertuxkart/best.pt": "fixed", "best.pt": "fixed", "a.pt": "fixed", "b.pt": "fixed",
               "runs/stk-vr/best.pt": "vr", "gpu/supertuxkart.pt": "vr",
               "runs/dota2-0.04/best.pt": "small-dota2", "runs/all-0.04/best.pt": "small-all"}


def _blocks() -> list[Block]:
    return [b for path in DOCS for b in doc_blocks(path)] + help_blocks()


def _model_names() -> set[str]:
    """Names of the bundled models (those that ship with the package)."""
    from models.library import scan_models

    entries, _problems = scan_models()
    return {e.name for e in entries if e.origin == "bundled"}


@pytest.fixture(scope="session")
def world(tmp_path_factory) -> Path:
    """The start every example's folder is copied from (see the module docstring)."""
    import torch

    from cloud3d.imageio import write_png
    from cloud3d_dataset.manifest import index_dataset
    from models.architectures import create_model
    from models.checkpoint import save_checkpoint

    base = tmp_path_factory.mktemp("docworld")
    ds = base / "dataset"
    for a, app in enumerate(("supertuxkart", "dota2")):
        for res, (w, h) in (("144p", (256, 144)), ("216p", (384, 216))):
            for split, ns in (("train", (1, 2, 3)), ("validation", (4,)), ("test", (5, 665))):
                for n in ns:
                    write_png(ds / split / f"{app}-{res}" / f"{n}.png", make_game_like_frame(h, w, 10 * a + n, n / 7))
    index_dataset(ds, progress=False)
    for i in range(4):  # a capture with scenes, as `cloud3d capture game` writes (README step 2)
        subprocess.run([sys.executable, "-m", "cloud3d.cli", "capture", "synthetic", "--app", "supertuxkart",
                        "--scene", f"track{i}", "--seed", str(i), "--count", "6", "--size", "384x216",
                        "--out", str(base / "captures")], check=True, capture_output=True, cwd=ROOT)
    for i in range(3):
        write_png(base / "photos" / f"{i:04d}.png", make_game_like_frame(160, 240, 100 + i))
    shutil.copy(ds / "test" / "supertuxkart-216p" / "5.png", base / "frame.png")
    ckpts = base / ".ckpt"
    ckpts.mkdir()
    kinds = {"fixed": ("c2f-xsmall-pruned", {}, {"lambda": 0.01}),
             "vr": ("c2f-xsmall-pruned-vr", {"lambdas": [0.004, 0.01, 0.04]}, {"lambda": None}),
             "small-dota2": ("c2f-small-pruned", {}, {"lambda": 0.04, "app": "dota2"}),
             "small-all": ("c2f-small-pruned", {}, {"lambda": 0.04, "app": "all"})}
    for kind, (arch, config, meta) in kinds.items():
        torch.manual_seed(0)
        m = create_model(arch, **config)
        m.update(force=True)
        save_checkpoint(ckpts / f"{kind}.pt", m.eval(), meta)
    for rel, kind in CHECKPOINTS.items():
        (base / rel).parent.mkdir(parents=True, exist_ok=True)
        (base / rel).symlink_to(ckpts / f"{kind}.pt")
    shutil.copytree(ds, base / "original", ignore=shutil.ignore_patterns("manifest.csv"))
    if shutil.which("ffmpeg"):
        for i in range(4):
            write_png(base / ".video" / f"{i}.png", make_game_like_frame(216, 384, 200 + i, i / 4))
        subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-framerate", "2", "-i",
                        str(base / ".video" / "%d.png"), "-c:v", "libx264", "-pix_fmt", "yuv420p",
                        str(base / "gameplay.mp4")], check=True)
    bindir = base / ".bin"
    bindir.mkdir()
    for name, run in (("cloud3d", f"{sys.executable} -m cloud3d.cli"), ("python", sys.executable),
                      ("python3", sys.executable)):  # scripts, not links: a link leaves the venv
        (bindir / name).write_text(f"#!/bin/sh\nexec {run} \"$@\"\n")
        (bindir / name).chmod(0o755)
    return base


@pytest.fixture(scope="session")
def folders(world, tmp_path_factory):
    """``folders(block)``: the working folder of a block (one per Markdown file, made once)."""
    made: dict[str, Path] = {}

    def get(block: Block) -> Path:
        key = "help" if block.source.startswith("help:") else block.source
        if key not in made:
            d = tmp_path_factory.mktemp("doc")
            shutil.copytree(world, d, symlinks=True, dirs_exist_ok=True)
            if key == "README.md":  # the README builds its dataset from the captures
                shutil.rmtree(d / "dataset")
            elif key != "docs/dataset.md":  # there DATASET is what the example builds
                for alias in ("data", "DATASET"):
                    (d / alias).symlink_to("dataset")
            made[key] = d
        return made[key]

    return get


def _env(world: Path, cwd: Path) -> dict[str, str]:
    env = {**os.environ, "PATH": f"{world / '.bin'}{os.pathsep}{os.environ.get('PATH', '')}",
           "PYTHONPATH": str(ROOT), "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1",
           "XDG_CACHE_HOME": str(cwd / ".cache"), "XDG_DATA_HOME": str(cwd / ".local-share"),
           "HOME": str(cwd)}
    refcodecs = ROOT.parent / "shared" / "refcodecs" / "bin"
    if refcodecs.is_dir():  # as .ci/run does
        env.setdefault("CLOUD3D_BPG_DIR", str(refcodecs))
        env.setdefault("CLOUD3D_VTM_DIR", str(refcodecs))
    return env


def _skip_reason(block: Block) -> str | None:
    if block.skip:
        return block.skip
    if block.needs_model and block.needs_model not in _model_names():
        return f"no bundled model named {block.needs_model} ships yet"
    if block.source.startswith("help:"):
        if re.search(r"\bgeneral\b", block.text) and "general" not in _model_names():
            return "no bundled model named general ships yet"
        for key, why in HELP_SKIPS.items():
            if key in block.text:
                return why
    return None


BLOCKS = _blocks()


@pytest.mark.parametrize("block", BLOCKS, ids=[b.name for b in BLOCKS])
def test_documented_example_runs(block: Block, world, folders):
    reason = _skip_reason(block)
    if reason:
        pytest.skip(f"{block.name}: {reason}")
    cwd = folders(block)
    text = small_scale(block.text)
    argv = (["bash", "-eo", "pipefail", "-c", text] if block.lang == "bash"
            else [sys.executable, "-c", text])
    r = subprocess.run(argv, cwd=cwd, env=_env(world, cwd), capture_output=True, text=True, timeout=600)
    detail = f"{block.name} (as run:\n{text}\n)\nstdout:\n{r.stdout[-3000:]}\nstderr:\n{r.stderr[-3000:]}"
    assert r.returncode == 0, detail
    assert "Traceback" not in r.stderr, detail


def test_every_skip_is_marked_with_a_reason():
    """Markers are exact; an almost-marker (typo) would silently run or fail instead."""
    for b in BLOCKS:
        if b.skip is not None:
            assert len(b.skip) > 3, b.name
    for path in DOCS:
        for n, line in enumerate(path.read_text().split("\n"), 1):
            if line.startswith(("*Not run by", "*Run by the doc test")):
                assert line.rstrip().endswith(".*"), f"{path.name}:{n}: marker must end with '.*'"
