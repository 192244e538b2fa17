"""Output resolutions and the policy for sources that are not 16:9.

``RESOLUTIONS`` (from :mod:`cloud3d.resolutions`) names the 16:9 targets
(``1080p`` = 1920x1080, ``720p`` = 1280x720); ``native`` keeps the grabbed
size. Resizing uses Pillow's Lanczos filter on the grabbed 8-bit RGB frame.

Fit policies for a source whose aspect ratio differs from 16:9 by more
than 1 % (e.g. a 1280x1024 window):

* ``error`` (default): refuse with a message naming the sizes and the options;
* ``scale``: stretch to the target (distorts shapes);
* ``crop``: cut the largest centred 16:9 rectangle, then resize;
* ``pad``: letterbox/pillarbox with black bars to 16:9, then resize.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from cloud3d.errors import Cloud3dError
from cloud3d.resolutions import RESOLUTIONS

FITS = ("error", "scale", "crop", "pad")
NAMES = (*RESOLUTIONS, "native")
_TOL = 0.01


def parse_resolutions(names) -> tuple[str, ...]:
    """Validate and de-duplicate resolution names (order kept); accepts ``"720p,1080p"`` too."""
    out: list[str] = []
    for item in names:
        for name in str(item).split(","):
            name = name.strip()
            if not name:
                continue
            if name not in NAMES:
                raise Cloud3dError(f"unknown resolution {name!r}: use {', '.join(NAMES)}")
            if name not in out:
                out.append(name)
    if not out:
        raise Cloud3dError(f"no output resolution given: use {', '.join(NAMES)}")
    return tuple(out)


def check_fit(width: int, height: int, resolutions, fit: str) -> None:
    """Raise :class:`Cloud3dError` if a non-16:9 source needs a ``fit`` policy and has none."""
    if fit not in FITS:
        raise Cloud3dError(f"unknown fit policy {fit!r}: use {', '.join(FITS)}")
    if fit != "error" or all(r == "native" for r in resolutions):
        return
    if abs(width * 9 / (height * 16) - 1.0) > _TOL:
        raise Cloud3dError(
            f"source is {width}x{height}, not 16:9, so it cannot become "
            f"{'/'.join(r for r in resolutions if r != 'native')} as is: "
            "choose --fit scale (stretch), crop (centre cut) or pad (black bars), "
            "or capture --res native"
        )


def fit_frame(rgb: np.ndarray, resolution: str, fit: str = "error") -> np.ndarray:
    """Return ``rgb`` (``(H, W, 3) uint8``) at ``resolution`` following the ``fit`` policy."""
    if resolution == "native":
        return rgb
    tw, th = RESOLUTIONS[resolution]
    h, w = rgb.shape[:2]
    check_fit(w, h, (resolution,), fit)
    if fit == "crop":
        cw, ch = min(w, h * 16 // 9), min(h, w * 9 // 16)
        x0, y0 = (w - cw) // 2, (h - ch) // 2
        rgb = rgb[y0 : y0 + ch, x0 : x0 + cw]
    elif fit == "pad":
        pw, ph = max(w, -(-h * 16 // 9)), max(h, -(-w * 9 // 16))
        if (pw, ph) != (w, h):
            canvas = np.zeros((ph, pw, 3), np.uint8)
            y0, x0 = (ph - h) // 2, (pw - w) // 2
            canvas[y0 : y0 + h, x0 : x0 + w] = rgb
            rgb = canvas
    h, w = rgb.shape[:2]
    if (w, h) == (tw, th):
        return rgb
    img = Image.fromarray(np.ascontiguousarray(rgb), "RGB")
    return np.asarray(img.resize((tw, th), Image.Resampling.LANCZOS))
