"""PyTorch ``Dataset`` over one split of a cloud3d dataset, and an in-memory frame bank.

:class:`Cloud3dImages` decodes a PNG per item (any size of dataset, DataLoader workers).
:class:`FrameBank` decodes every frame of the selection once, keeps it in memory as uint8
and draws whole training batches of random crops (and horizontal flips) from memory: what
``cloud3d train`` uses (decoding a 720p PNG to cut one 256-pixel crop out of it costs more
than the crop's share of a CPU training step).

Example::

    from torch.utils.data import DataLoader
    from cloud3d_dataset.torch_dataset import Cloud3dImages
    train = Cloud3dImages("DATASET", "train", app="dota2", resolution="720p", crop=256)
    for x in DataLoader(train, batch_size=8, shuffle=True, num_workers=2):
        ...  # x: float32 (8, 3, 256, 256), values in [0, 1]

Items are ``float32`` tensors of shape ``(3, H, W)``, RGB, values
``pixel / 255`` in [0, 1]. With ``crop=N`` each item is an ``N x N`` crop,
at a uniformly random position (drawn with ``torch``'s generator, so
``torch.manual_seed`` and DataLoader worker seeding apply) when
``random=True`` (training), or the centre crop when ``random=False``; with
``crop=None`` the full frame is returned (evaluation). Images are found
through the manifest. This module imports only torch, Pillow, numpy and the
dataset manifest, never the capture code.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch.utils.data import Dataset

from cloud3d.errors import Cloud3dError
from cloud3d.imageio import read_png_rgb
from cloud3d_dataset.manifest import image_paths

#: default memory budget of a :class:`FrameBank` (decoded uint8 pixels)
DEFAULT_BANK_BYTES = 8 << 30

if TYPE_CHECKING:
    import pandas as pd


class CropTooLarge(Cloud3dError):
    """A crop side above some image's width or height. ``crop`` (px), ``count`` images too
    small, ``example`` (path, width, height) one of them, ``fits`` the largest side that fits
    every image of the selection (px)."""

    def __init__(self, crop: int, small: pd.DataFrame, option: str = "crop") -> None:
        r = small.iloc[0]
        self.crop, self.count = crop, len(small)
        self.example = (str(r["path"]), int(r["width"]), int(r["height"]))
        self.fits = int(min(small["width"].min(), small["height"].min()))
        super().__init__(self.describe(option))

    def describe(self, option: str) -> str:
        """The message, naming the setting as ``option`` (``crop`` for the API, ``--crop`` for
        the CLI)."""
        path, w, h = self.example
        full = "crop=None" if option == "crop" else "another dataset"
        return (f"{option} {self.crop} is larger than {self.count} image(s), e.g. {path} ({w}x{h}): "
                f"use {option} {self.fits} or less, or {full}")


def _check_crop(rows, crop: int | None) -> None:
    """Cloud3dError unless every selected image is at least ``crop`` pixels on both sides
    (:class:`CropTooLarge` when some image is smaller)."""
    if crop is None:
        return
    if crop <= 0:
        raise Cloud3dError(f"crop must be a positive pixel count, got {crop}")
    small = rows[(rows["width"] < crop) | (rows["height"] < crop)]
    if len(small):
        raise CropTooLarge(crop, small)


class Cloud3dImages(Dataset):
    """Images of one split, optionally one app and/or resolution (see the module docstring).

    Args:
        root: dataset folder (with ``manifest.csv``).
        split: ``"train"``, ``"validation"`` or ``"test"``.
        app: app name or list of names (``None`` = all apps).
        resolution: ``"1080p"``, ``"720p"``... or a list (``None`` = all).
        crop: side of square crops in pixels, or ``None`` for full frames.
        random: random crop positions (training) if True, centre crops if False.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: str,
        app: str | list[str] | None = None,
        resolution: str | list[str] | None = None,
        crop: int | None = 256,
        random: bool = True,
    ) -> None:
        self.root = Path(root)
        self.rows = image_paths(self.root, split=split, app=app, resolution=resolution)
        self.crop = crop
        self.random = random
        _check_crop(self.rows, crop)
        self.paths: list[str] = list(self.rows["abspath"])

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> torch.Tensor:
        rgb = read_png_rgb(self.paths[i])  # (H, W, 3) uint8
        if self.crop is not None:
            h, w = rgb.shape[:2]
            c = self.crop
            if self.random:
                y = int(torch.randint(0, h - c + 1, ()).item())
                x = int(torch.randint(0, w - c + 1, ()).item())
            else:
                y, x = (h - c) // 2, (w - c) // 2
            rgb = rgb[y : y + c, x : x + c]
        t = torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1)))
        return t.to(torch.float32).div_(255.0)


class FrameBank(Dataset):
    """The frames of one split (optionally one app / resolution) decoded once, kept in memory.

    Args:
        root, split, app, resolution: the selection, as for :class:`Cloud3dImages`.
        crop: side of the training crops :meth:`sample` draws (every frame must be at least
            this large), or None when only whole frames are read (validation).
        max_bytes: memory budget for the decoded pixels (uint8, 3 bytes per pixel). When the
            selection needs more, each frame keeps one window, at a random position (fixed by
            ``seed``) with the frame's aspect ratio and an area scaled down so that all fit,
            never smaller than ``crop`` (a "crop bank"; :attr:`windowed` says so). Without
            ``crop`` the budget is not applied.
        limit: keep only ``limit`` frames, spread evenly over the selection (manifest order:
            every app and resolution of it is represented when ``limit`` allows).
        threads: PNG decoding threads (start-up only).
        progress: show a progress bar while decoding.

    Frames are stored as ``(H, W, 3) uint8`` tensors in :attr:`frames` (2.7 MB per 720p
    frame, 6.2 MB per 1080p frame). ``bank[i]`` is frame ``i`` as a float32 ``(3, H, W)``
    tensor in 0..1, like ``Cloud3dImages(..., crop=None)[i]``.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: str,
        app: str | list[str] | None = None,
        resolution: str | list[str] | None = None,
        crop: int | None = 256,
        max_bytes: int = DEFAULT_BANK_BYTES,
        limit: int | None = None,
        threads: int = 2,
        progress: bool = False,
        seed: int = 0,
    ) -> None:
        rows = image_paths(Path(root), split=split, app=app, resolution=resolution)
        if limit is not None and limit < len(rows):
            keep = np.unique(np.linspace(0, len(rows) - 1, max(1, limit)).round().astype(int))
            rows = rows.iloc[keep]
        _check_crop(rows, crop)
        self.crop = crop
        self.paths: list[str] = list(rows["abspath"])
        sizes = list(zip(rows["width"].astype(int), rows["height"].astype(int), strict=True))
        total = sum(3 * w * h for w, h in sizes)
        scale = 1.0 if crop is None or total <= max_bytes else math.sqrt(max_bytes / total)
        self.windowed = scale < 1.0
        rng = np.random.default_rng(seed)
        windows = []  # (x, y, w, h) kept of each frame
        for w, h in sizes:
            ww, wh = (w, h) if scale >= 1.0 else (max(crop, int(w * scale)), max(crop, int(h * scale)))
            windows.append((int(rng.integers(0, w - ww + 1)), int(rng.integers(0, h - wh + 1)), ww, wh))

        def load(i: int) -> torch.Tensor:
            rgb = read_png_rgb(self.paths[i])
            w, h = sizes[i]
            if rgb.shape[:2] != (h, w):
                raise Cloud3dError(f"{self.paths[i]} is {rgb.shape[1]}x{rgb.shape[0]}, the manifest "
                                   f"says {w}x{h}: the dataset changed (run `cloud3d verify`)")
            x, y, ww, wh = windows[i]
            return torch.from_numpy(np.ascontiguousarray(rgb[y : y + wh, x : x + ww]))

        from tqdm import tqdm

        with ThreadPoolExecutor(max(1, threads)) as pool:
            self.frames: list[torch.Tensor] = list(tqdm(
                pool.map(load, range(len(self.paths))), total=len(self.paths),
                desc=f"decode {split} frames", unit="frame", disable=not progress, leave=False))
        self.nbytes = sum(f.numel() for f in self.frames)

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.frames[i].permute(2, 0, 1).to(torch.float32).div_(255.0)

    def sample(self, batch: int, generator: torch.Generator | None = None,
               hflip: bool = True, crop: int | None = None) -> torch.Tensor:
        """A training batch: ``(batch, 3, c, c)`` float32 in 0..1 (contiguous) with
        ``c = crop`` (at most the bank's crop; default: the bank's crop). Each crop comes from
        a frame drawn uniformly, at a uniform position, mirrored left-right with probability
        1/2 when ``hflip``."""
        if self.crop is None:
            raise Cloud3dError("this FrameBank was made without a crop size")
        c = self.crop if crop is None else crop
        if not 0 < c <= self.crop:
            raise ValueError(f"crop must be in 1..{self.crop} for this bank, got {c}")
        idx = torch.randint(0, len(self.frames), (batch,), generator=generator).tolist()
        u = torch.rand((batch, 3), generator=generator, dtype=torch.float64).tolist()
        out = torch.empty((batch, c, c, 3), dtype=torch.uint8)
        for b, (i, (uy, ux, uf)) in enumerate(zip(idx, u, strict=True)):
            f = self.frames[i]
            y, x = int(uy * (f.shape[0] - c + 1)), int(ux * (f.shape[1] - c + 1))
            win = f[y : y + c, x : x + c]
            out[b] = win.flip(1) if hflip and uf < 0.5 else win
        return out.permute(0, 3, 1, 2).contiguous().to(torch.float32).div_(255.0)
