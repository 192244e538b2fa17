"""PyTorch ``Dataset`` over one split of a cloud3d dataset.

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

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch.utils.data import Dataset

from cloud3d.errors import Cloud3dError
from cloud3d.imageio import read_png_rgb
from cloud3d_dataset.manifest import image_paths

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
        if crop is not None:
            if crop <= 0:
                raise Cloud3dError(f"crop must be a positive pixel count, got {crop}")
            small = self.rows[(self.rows["width"] < crop) | (self.rows["height"] < crop)]
            if len(small):
                raise CropTooLarge(crop, small)
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
