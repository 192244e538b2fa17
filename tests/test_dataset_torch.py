"""The torch Dataset over a split, on a small real dataset."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from helpers import write_capture

from cloud3d.errors import Cloud3dError
from cloud3d.imageio import read_png_rgb
from cloud3d_dataset.split import build_splits
from cloud3d_dataset.torch_dataset import Cloud3dImages


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("torchds")
    write_capture(root / "RAW", "kart", 40, size=(128, 72), fps=1.0, seed=3)
    build_splits(root / "RAW", root / "DS", app="kart", train=20, val=4, test=4, block=5, guard=0,
                 resolutions="72p,36p", progress=False)
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
        "import sys, cloud3d_dataset as d; [getattr(d, n) for n in d.__all__];"
        "bad=[m for m in sys.modules if m=='capture' or m.startswith('capture.')];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr


# ---- FrameBank: frames decoded once, crops drawn from memory ---------------------------------


def _frames(ds) -> list[np.ndarray]:
    return [read_png_rgb(p) for p in ds.paths]


def _find(frames, crop: np.ndarray) -> bool:
    """Whether ``crop`` (c, c, 3) is a window of one of ``frames``."""
    c = crop.shape[0]
    for f in frames:
        win = np.lib.stride_tricks.sliding_window_view(f, (c, c, 3))[:, :, 0]
        if (win == crop).all(axis=(2, 3, 4)).any():
            return True
    return False


def test_frame_bank_batches_are_real_crops_some_mirrored(dataset):
    from cloud3d_dataset.torch_dataset import FrameBank

    bank = FrameBank(dataset, "train", app="kart", resolution="72p", crop=24, threads=2)
    assert len(bank) == 20 and not bank.windowed and bank.nbytes == 20 * 72 * 128 * 3
    frames = _frames(bank)
    assert all(np.array_equal(f, bank.frames[i].numpy()) for i, f in enumerate(frames))
    torch.testing.assert_close(bank[3], Cloud3dImages(dataset, "train", app="kart",
                                                      resolution="72p", crop=None)[3])
    x = bank.sample(16, torch.Generator().manual_seed(0))
    assert x.shape == (16, 3, 24, 24) and x.dtype == torch.float32
    assert x.is_contiguous()
    crops = (x * 255).round().byte().permute(0, 2, 3, 1).numpy()
    plain = [_find(frames, c) for c in crops]
    mirrored = [_find(frames, c[:, ::-1]) for c in crops]
    assert all(p or m for p, m in zip(plain, mirrored, strict=True))  # every crop is real
    assert 0 < sum(plain) < 16  # some mirrored, some not
    # same generator state, same batch; smaller crops on request
    again = bank.sample(16, torch.Generator().manual_seed(0))
    assert torch.equal(x, again)
    assert bank.sample(2, crop=8).shape == (2, 3, 8, 8)
    with pytest.raises(ValueError, match="crop"):
        bank.sample(2, crop=25)
    no_flip = bank.sample(8, torch.Generator().manual_seed(1), hflip=False)
    assert all(_find(frames, c) for c in (no_flip * 255).round().byte().permute(0, 2, 3, 1).numpy())


def test_frame_bank_budget_keeps_a_window_of_each_frame(dataset):
    from cloud3d_dataset.torch_dataset import FrameBank

    full = 72 * 128 * 3
    bank = FrameBank(dataset, "train", app="kart", resolution="72p", crop=32,
                     max_bytes=20 * full // 4, seed=5)
    assert bank.windowed
    assert bank.nbytes <= 20 * full // 4 * 1.05
    frames = _frames(bank)
    for f, w in zip(frames, bank.frames, strict=True):
        h, ww = w.shape[:2]
        assert 32 <= h < 72 and 32 <= ww < 128 and abs(ww / h - 128 / 72) < 0.1
        assert _find([f], w.numpy()[:32, :32])  # the window is part of its own frame
    tiny = FrameBank(dataset, "train", app="kart", resolution="72p", crop=32, max_bytes=1)
    assert all(f.shape[:2] == (32, 32) for f in tiny.frames)  # never smaller than the crop
    # the window positions follow the seed: a lap (its own seed) sees other windows; the
    # windows stay larger than the crops, so the crops inside them vary too
    same = FrameBank(dataset, "train", app="kart", resolution="72p", crop=32,
                     max_bytes=20 * full // 4, seed=5)
    other = FrameBank(dataset, "train", app="kart", resolution="72p", crop=32,
                      max_bytes=20 * full // 4, seed=6)
    assert all(torch.equal(a, b) for a, b in zip(bank.frames, same.frames, strict=True))
    moved = sum(not torch.equal(a, b) for a, b in zip(bank.frames, other.frames, strict=True))
    assert moved >= len(bank.frames) // 2


def test_frame_bank_limits_and_errors(dataset, tmp_path):
    import shutil

    from cloud3d_dataset.torch_dataset import FrameBank

    val = FrameBank(dataset, "validation", crop=None, limit=3)
    every = Cloud3dImages(dataset, "validation", crop=None).paths
    assert len(every) == 8 and val.paths == [every[0], every[4], every[7]]  # spread evenly
    assert len(val) == 3 and val[0].shape[0] == 3
    with pytest.raises(Cloud3dError, match="without a crop"):
        val.sample(1)
    with pytest.raises(Cloud3dError, match="larger than"):
        FrameBank(dataset, "train", resolution="36p", crop=48)
    # a frame replaced behind the manifest's back is reported, not cropped out of bounds
    copy = tmp_path / "DS"
    shutil.copytree(dataset, copy)
    bank = Cloud3dImages(copy, "train", resolution="72p", crop=None)
    from cloud3d.imageio import write_png

    write_png(bank.paths[0], np.zeros((40, 50, 3), np.uint8))
    with pytest.raises(Cloud3dError, match="manifest"):
        FrameBank(copy, "train", resolution="72p", crop=16)
