"""The torch Dataset over a split, on a small real dataset."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from cloud3d.errors import Cloud3dError
from cloud3d.imageio import read_png_rgb
from cloud3d_dataset.split import build_splits
from cloud3d_dataset.synthcapture import write_synthetic_capture
from cloud3d_dataset.torch_dataset import Cloud3dImages


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("torchds")
    write_synthetic_capture(
        root / "RAW", "kart", 40, {"36p": (64, 36), "72p": (128, 72)}, fps=1.0, seed=3
    )
    build_splits(
        root / "RAW",
        root / "DS",
        app="kart",
        train=20,
        val=4,
        test=4,
        block=5,
        guard=0,
        progress=False,
    )
    return root / "DS"


def test_random_crops_for_training(dataset):
    ds = Cloud3dImages(dataset, "train", app="kart", resolution="72p", crop=32)
    assert len(ds) == 20
    torch.manual_seed(0)
    x = ds[0]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    full = torch.from_numpy(read_png_rgb(ds.paths[0]).transpose(2, 0, 1).copy()).float() / 255
    # The crop is a real window of the frame.
    found = any(
        torch.equal(full[:, y : y + 32, xx : xx + 32], x)
        for y in range(72 - 31)
        for xx in range(128 - 31)
    )
    assert found
    crops = {tuple(ds[0].flatten()[:50].tolist()) for _ in range(8)}
    assert len(crops) > 1  # positions vary
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=4)))
    assert batch.shape == (4, 3, 32, 32)


def test_full_frames_and_centre_crops_for_eval(dataset):
    ev = Cloud3dImages(dataset, "test", resolution="36p", crop=None)
    assert len(ev) == 4
    x = ev[1]
    assert x.shape == (3, 36, 64)
    assert np.array_equal(
        (x * 255).round().byte().permute(1, 2, 0).numpy(), read_png_rgb(ev.paths[1])
    )
    c = Cloud3dImages(dataset, "validation", resolution="72p", crop=16, random=False)
    assert torch.equal(c[0], c[0]) and c[0].shape == (3, 16, 16)
    both = Cloud3dImages(dataset, "validation", crop=None)
    assert len(both) == 8


def test_bad_requests(dataset):
    with pytest.raises(Cloud3dError, match="larger than"):
        Cloud3dImages(dataset, "train", resolution="36p", crop=48)
    with pytest.raises(Cloud3dError, match="no images"):
        Cloud3dImages(dataset, "train", app="nosuchapp")


def test_import_does_not_pull_capture():
    code = (
        "import sys, cloud3d_dataset.torch_dataset, cloud3d_dataset.api;"
        "bad=[m for m in sys.modules if m=='capture' or m.startswith('capture.')];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
