"""Write small synthetic captures in the capture stage's on-disk format (tests, benchmarks, docs).

Format written (same as ``capture/``'s output)::

    {root}/{app}/{res}/{index:06d}.png     one folder per resolution
    {root}/{app}/frames.csv                index, capture_time, kept, <res>_file...

Consecutive frames are near-duplicates (a textured scene with a box that
moves a little per frame), like real game frames, so leakage checks have
something to bite on.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from cloud3d.imageio import write_png


def synthetic_frame(h: int, w: int, seed: int, t: float) -> np.ndarray:
    """A deterministic ``(h, w, 3) uint8`` frame; ``t`` (seconds) moves the box slowly."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, size=(3,), dtype=np.int64)
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.empty((h, w, 3), np.uint8)
    for c in range(3):
        img[:, :, c] = ((base[c] + 2 * yy + (c + 1) * xx) % 256).astype(np.uint8)
    tex = rng.integers(0, 24, size=(h, w), dtype=np.uint8)
    img[h // 2 :] = np.clip(
        img[h // 2 :].astype(np.int16) // 2 + tex[h // 2 :, :, None], 0, 255
    ).astype(np.uint8)
    x0 = int((0.05 + 0.7 * ((t / 60.0) % 1.0)) * w)
    img[h // 3 : h // 3 + max(1, h // 5), x0 : x0 + max(1, w // 8)] = (220, 40, 40)
    return img


def write_synthetic_capture(
    root: str | os.PathLike,
    app: str,
    n: int,
    sizes: dict[str, tuple[int, int]],
    fps: float = 2.0,
    seed: int = 0,
    start_time: float = 1_700_000_000.0,
    drop_every: int = 0,
    encoder: str = "fpng",
) -> Path:
    """Write ``n`` frames of ``app`` at each ``sizes`` entry (folder name -> (width, height)).

    Frame ``i`` is captured at ``start_time + i / fps`` seconds. With
    ``drop_every=k`` every k-th frame is logged with ``kept=0`` and has no files.
    Returns the app folder.
    """
    folder = Path(root) / app
    for res in sizes:
        (folder / res).mkdir(parents=True, exist_ok=True)
    lines = ["index,capture_time,kept," + ",".join(f"{r}_file" for r in sizes)]
    for i in range(n):
        t = i / fps
        kept = not (drop_every and i % drop_every == drop_every - 1)
        names = []
        for res, (w, h) in sizes.items():
            name = f"{res}/{i:06d}.png" if kept else ""
            names.append(name)
            if kept:
                write_png(folder / name, synthetic_frame(h, w, seed, t), encoder=encoder)
        lines.append(f"{i},{start_time + t:.6f},{int(kept)}," + ",".join(names))
    (folder / "frames.csv").write_text("\n".join(lines) + "\n")
    return folder
