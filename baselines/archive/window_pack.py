"""Pack a dataset's training frames for a GPU machine that takes little input (~60 MB).

The most distinct pixels for the bytes: one window of every train frame (windows of other
frames differ more than a second window of the same frame), as large as the budget allows,
stored as JPEG q95 4:4:4 (about 3 bits per pixel at ~44 dB on game frames, against 9-12 for
PNG). The packing is ``cloud3d crops`` (windows at positions drawn from ``seed``, so each
lap can pack other windows) followed by ``cloud3d archive`` with that JPEG; on the GPU
machine ``cloud3d unarchive`` gives back a dataset that ``cloud3d lap`` trains on. What the
packing loses is the JPEG's error on the windows: the archive's own log reports its PSNR.

Window side: the largest multiple of :data:`WINDOW_STEP` (at most each frame's shorter
side) such that ``frames x side^2 x bits-per-pixel / 8`` fits the budget, the rate measured
on a sample of the frames.
"""

from __future__ import annotations

import io
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from baselines.archive.pack import archive_folder
from cloud3d.errors import Cloud3dError

__all__ = ["PACK_CODEC", "pack_dataset"]

#: the archive codec of a pack
PACK_CODEC = "jpeg:q=95;subsampling=444"
#: window sides are multiples of this (the models' largest stride)
WINDOW_STEP = 128


def _jpeg_bpp(frames: list[np.ndarray]) -> float:
    from PIL import Image

    bits = px = 0
    for f in frames:
        buf = io.BytesIO()
        Image.fromarray(f).save(buf, "JPEG", quality=95, subsampling=0)
        bits += 8 * buf.tell()
        px += f.shape[0] * f.shape[1]
    return bits / px


def pack_dataset(dataset: str | os.PathLike, out: str | os.PathLike, budget_mb: float = 60.0,
                 seed: int = 0, splits: tuple[str, ...] = ("train", "validation"),
                 workers: int = 2, progress: bool = True) -> dict[str, Any]:
    """Write the pack ``out`` (a tar of :data:`PACK_CODEC` windows with a manifest) of
    ``dataset``'s ``splits`` within ``budget_mb`` megabytes; returns what was packed
    (``frames``, ``window``, ``bytes``, ``estimated_bpp``)."""
    from cloud3d.imageio import read_png_rgb
    from cloud3d_dataset.crops import make_crops
    from cloud3d_dataset.manifest import image_paths

    rows = image_paths(dataset, split=list(splits))
    short = int(min(rows["width"].min(), rows["height"].min()))
    sample = rows.iloc[np.unique(np.linspace(0, len(rows) - 1, min(6, len(rows))).round())]
    bpp = _jpeg_bpp([read_png_rgb(p) for p in sample["abspath"]])
    side = math.sqrt(budget_mb * 1e6 * 8 / (bpp * len(rows)))
    window = min(short // WINDOW_STEP * WINDOW_STEP, int(side // WINDOW_STEP) * WINDOW_STEP)
    if window < WINDOW_STEP:
        raise Cloud3dError(f"{len(rows)} frames do not fit {budget_mb:g} MB with windows of "
                           f"{WINDOW_STEP} px or more: raise --budget-mb or pack fewer splits")
    tmp = Path(tempfile.mkdtemp(prefix=".pack-", dir=Path(out).resolve().parent))
    try:
        make_crops(dataset, tmp / "crops", size=window, splits=splits, seed=seed,
                   workers=workers, progress=progress)
        summary = archive_folder(tmp / "crops", out, PACK_CODEC, workers=workers, force=True,
                                 progress=progress)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    size = Path(out).stat().st_size
    return {"frames": len(rows), "window": window, "bytes": size, "estimated_bpp": bpp,
            "summary": summary.line()}
