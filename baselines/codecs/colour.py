"""RGB <-> Y'CbCr conversion and chroma resampling for codecs that take raw YUV (VTM).

Conventions (all arithmetic in float64, integer outputs *rounded* half-up,
never truncated, then clipped to ``0 .. 2**bit_depth - 1``):

* Matrices: ``bt709`` (Kr=0.2126, Kb=0.0722; the default) or ``bt601``
  (Kr=0.299, Kb=0.114). With ``E = v / 255`` for 8-bit RGB::

      Y' = Kr R + (1 - Kr - Kb) G + Kb B
      Pb = (B - Y') / (2 (1 - Kb)),   Pr = (R - Y') / (2 (1 - Kr))      (Pb, Pr in [-0.5, 0.5])

* Range at bit depth ``n`` (ITU-T H.273 ``VideoFullRangeFlag``):

  - full (default): ``Y = Y' (2^n - 1)``, ``C = P (2^n - 1) + 2^(n-1)``
  - limited ("TV"): ``Y = (219 Y' + 16) 2^(n-8)``, ``C = (224 P + 128) 2^(n-8)``

* 4:2:0 chroma: the float Pb/Pr planes are averaged over each 2x2 block (a
  chroma sample sits at the centre of its four luma samples) *before*
  rounding; odd sizes are first padded by edge replication. Upsampling back
  is ``bilinear`` (default; consistent with centre siting, edges clamped) or
  ``nearest`` (each chroma sample replicated to its 2x2 block).

Shapes: RGB ``(H, W, 3) uint8``; planes ``Y (H, W)``, chroma ``(H, W)`` for
4:4:4 or ``(ceil(H/2), ceil(W/2))`` for 4:2:0, dtype uint16 (values within
the bit depth).
"""

from __future__ import annotations

import numpy as np

MATRICES: dict[str, tuple[float, float]] = {"bt709": (0.2126, 0.0722), "bt601": (0.299, 0.114)}
CHROMA_FORMATS = ("444", "420")
UPSAMPLING = ("bilinear", "nearest")


def _coeffs(matrix: str) -> tuple[float, float]:
    try:
        return MATRICES[matrix]
    except KeyError:
        raise ValueError(f"unknown colour matrix {matrix!r}; valid: {', '.join(MATRICES)}") from None


def _round(x: np.ndarray, bit_depth: int) -> np.ndarray:
    return np.clip(np.floor(x + 0.5), 0, (1 << bit_depth) - 1).astype(np.uint16)


def rgb_to_ycbcr_float(
    rgb: np.ndarray, matrix: str = "bt709", full_range: bool = True, bit_depth: int = 8
) -> np.ndarray:
    """``(H, W, 3) uint8`` RGB -> ``(H, W, 3) float64`` Y, Cb, Cr in code values (not rounded)."""
    kr, kb = _coeffs(matrix)
    e = rgb.astype(np.float64) / 255.0
    y = kr * e[..., 0] + (1.0 - kr - kb) * e[..., 1] + kb * e[..., 2]
    pb = (e[..., 2] - y) / (2.0 * (1.0 - kb))
    pr = (e[..., 0] - y) / (2.0 * (1.0 - kr))
    return np.stack(_scale(y, pb, pr, full_range, bit_depth), axis=-1)


def _scale(y, pb, pr, full_range: bool, n: int):
    if full_range:
        m = float((1 << n) - 1)
        off = float(1 << (n - 1))
        return y * m, pb * m + off, pr * m + off
    s = float(1 << (n - 8))
    return (219.0 * y + 16.0) * s, (224.0 * pb + 128.0) * s, (224.0 * pr + 128.0) * s


def _unscale(y, cb, cr, full_range: bool, n: int):
    if full_range:
        m = float((1 << n) - 1)
        off = float(1 << (n - 1))
        return y / m, (cb - off) / m, (cr - off) / m
    s = float(1 << (n - 8))
    return (y / s - 16.0) / 219.0, (cb / s - 128.0) / 224.0, (cr / s - 128.0) / 224.0


def _pad_even(a: np.ndarray) -> np.ndarray:
    h, w = a.shape
    return np.pad(a, ((0, h % 2), (0, w % 2)), mode="edge")


def downsample_420(plane: np.ndarray) -> np.ndarray:
    """2x2 mean of a float plane (odd sizes edge-padded first): ``(H, W) -> (ceil(H/2), ceil(W/2))``."""
    p = _pad_even(plane.astype(np.float64))
    return 0.25 * (p[0::2, 0::2] + p[1::2, 0::2] + p[0::2, 1::2] + p[1::2, 1::2])


def upsample_420(plane: np.ndarray, height: int, width: int, method: str = "bilinear") -> np.ndarray:
    """Chroma plane ``(ceil(H/2), ceil(W/2))`` -> float ``(H, W)`` by ``bilinear`` or ``nearest``.

    Bilinear assumes centre siting: full-resolution sample ``i`` lies at chroma
    coordinate ``(i - 0.5) / 2``; coordinates outside the plane are clamped.
    """
    c = plane.astype(np.float64)
    if method == "nearest":
        return np.repeat(np.repeat(c, 2, axis=0), 2, axis=1)[:height, :width]
    if method != "bilinear":
        raise ValueError(f"unknown chroma upsampling {method!r}; valid: {', '.join(UPSAMPLING)}")

    def axis_weights(n_full: int, n_c: int):
        pos = np.clip((np.arange(n_full) - 0.5) / 2.0, 0, n_c - 1)
        i0 = np.floor(pos).astype(int)
        i1 = np.minimum(i0 + 1, n_c - 1)
        return i0, i1, pos - i0

    r0, r1, fy = axis_weights(height, c.shape[0])
    c0, c1, fx = axis_weights(width, c.shape[1])
    rows = c[r0] * (1 - fy)[:, None] + c[r1] * fy[:, None]
    return rows[:, c0] * (1 - fx)[None, :] + rows[:, c1] * fx[None, :]


def rgb_to_planes(
    rgb: np.ndarray,
    bit_depth: int = 10,
    chroma: str = "420",
    matrix: str = "bt709",
    full_range: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """RGB uint8 -> rounded integer planes ``(Y, Cb, Cr)`` (uint16) at ``bit_depth`` and ``chroma``."""
    if chroma not in CHROMA_FORMATS:
        raise ValueError(f"unknown chroma format {chroma!r}; valid: {', '.join(CHROMA_FORMATS)}")
    if not 8 <= bit_depth <= 16:
        raise ValueError(f"bit depth must be 8..16, got {bit_depth}")
    f = rgb_to_ycbcr_float(rgb, matrix, full_range, bit_depth)
    y, cb, cr = f[..., 0], f[..., 1], f[..., 2]
    if chroma == "420":
        cb, cr = downsample_420(cb), downsample_420(cr)
    return _round(y, bit_depth), _round(cb, bit_depth), _round(cr, bit_depth)


def planes_to_rgb(
    y: np.ndarray,
    cb: np.ndarray,
    cr: np.ndarray,
    bit_depth: int = 10,
    matrix: str = "bt709",
    full_range: bool = True,
    upsampling: str = "bilinear",
) -> np.ndarray:
    """Integer planes -> ``(H, W, 3) uint8`` RGB (float64 inverse matrix, rounded, clipped).

    The chroma format is inferred from the plane shapes (equal to Y: 4:4:4).
    """
    kr, kb = _coeffs(matrix)
    h, w = y.shape
    if cb.shape != y.shape:
        cb = upsample_420(cb, h, w, upsampling)
        cr = upsample_420(cr, h, w, upsampling)
    yy, pb, pr = _unscale(y.astype(np.float64), cb.astype(np.float64), cr.astype(np.float64), full_range, bit_depth)
    r = yy + 2.0 * (1.0 - kr) * pr
    b = yy + 2.0 * (1.0 - kb) * pb
    g = (yy - kr * r - kb * b) / (1.0 - kr - kb)
    out = np.stack([r, g, b], axis=-1) * 255.0
    return np.clip(np.floor(out + 0.5), 0, 255).astype(np.uint8)
