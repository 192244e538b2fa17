"""Image quality and rate metrics used by the baselines (definitions as in the codec literature).

Inputs are ``(H, W, 3) uint8`` RGB arrays (reference first, reconstruction
second) unless stated otherwise.

Definitions
-----------
* ``mse(ref, rec)``: mean of the squared differences over all pixels *and* all
  three channels, computed in float64 (units: squared 8-bit code values).
* ``psnr_rgb(ref, rec) = 10 log10(255^2 / mse)`` in dB. Identical images give
  ``inf``; :func:`cap_psnr` maps that to :data:`PSNR_CAP_DB` (100 dB) for
  averaging and plotting, and reports should flag capped values.
* ``ms_ssim_rgb``: MS-SSIM (Wang et al. 2003) via ``pytorch_msssim`` on the
  three RGB channels with ``data_range=255``, Gaussian window 11 / sigma 1.5,
  five scales with the standard weights, averaged over channels. Five scales
  need a smaller side of at least 161 px. For smaller images the number of
  scales is reduced to the largest ``k`` with ``min(H, W) > 10 * 2**(k-1)``
  and the first ``k`` standard weights are renormalised to sum to 1
  (:func:`ms_ssim_scales` tells how many were used). Below 11 px MS-SSIM is
  undefined and a ValueError is raised.
* ``ms_ssim_db(v) = -10 log10(1 - v)`` (inf when ``v == 1``).
* ``psnr_y`` / ``psnr_yuv``: PSNR on the BT.709 full-range Y'CbCr planes computed
  in float64 from the 8-bit RGB (peak 255, no rounding); ``psnr_yuv`` is the
  weighted mean ``(6 PSNR_Y + PSNR_Cb + PSNR_Cr) / 8`` as in the JVET common
  test conditions.
* ``bpp(nbytes, width, height) = 8 * nbytes / (width * height)``: bits per pixel
  of the *original* image size, from the byte length of the stored bitstream.

Averaging over images (:func:`aggregate_psnr`): ``mean_psnr`` is the arithmetic
mean of per-image PSNR (what CompressAI and most papers report);
``psnr_of_mean_mse`` is the PSNR of the mean MSE (a "pooled" figure, lower or
equal by Jensen's inequality). Both are offered; reports must say which.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np

#: value used in place of an infinite PSNR (identical images) when averaging
PSNR_CAP_DB = 100.0
#: the standard MS-SSIM scale weights (Wang et al. 2003)
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
_WIN_SIZE = 11


def _check_pair(ref: np.ndarray, rec: np.ndarray) -> None:
    if ref.shape != rec.shape:
        raise ValueError(f"reference {ref.shape} and reconstruction {rec.shape} differ in shape")
    if ref.ndim != 3 or ref.shape[2] != 3:
        raise ValueError(f"expected (H, W, 3) RGB arrays, got shape {ref.shape}")


def mse(ref: np.ndarray, rec: np.ndarray) -> float:
    """Mean squared error over all pixels and channels (float64)."""
    _check_pair(ref, rec)
    d = ref.astype(np.float64) - rec.astype(np.float64)
    return float(np.mean(d * d))


def psnr_from_mse(m: float, peak: float = 255.0) -> float:
    """``10 log10(peak^2 / m)`` in dB; ``inf`` when ``m == 0``."""
    if m < 0:
        raise ValueError(f"MSE must be >= 0, got {m}")
    return math.inf if m == 0 else 10.0 * math.log10(peak * peak / m)


def psnr_rgb(ref: np.ndarray, rec: np.ndarray) -> float:
    """PSNR in dB of 8-bit RGB (peak 255, MSE over all pixels and channels)."""
    return psnr_from_mse(mse(ref, rec))


def cap_psnr(value: float, cap: float = PSNR_CAP_DB) -> float:
    """``min(value, cap)``: makes lossless results (inf) averageable; flag capped rows."""
    return min(float(value), cap)


def bpp(nbytes: int, width: int, height: int) -> float:
    """Bits per pixel: ``8 * nbytes / (width * height)`` of the original image size."""
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    return 8.0 * nbytes / (width * height)


# -- MS-SSIM ---------------------------------------------------------------------------------
def ms_ssim_scales(height: int, width: int) -> int:
    """Number of MS-SSIM scales used for an image of this size (5 when min side >= 161)."""
    side = min(height, width)
    k = 0
    while k < len(MS_SSIM_WEIGHTS) and side > (_WIN_SIZE - 1) * 2**k:
        k += 1
    if k == 0:
        raise ValueError(f"MS-SSIM needs images of at least {_WIN_SIZE}x{_WIN_SIZE} px, got {width}x{height}")
    return k


def _to_tensor(a: np.ndarray):
    import torch

    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32).transpose(2, 0, 1)[None])


def _ms_ssim_levels(x, y, levels: int) -> float:
    """MS-SSIM with ``levels`` scales and renormalised truncated weights (pytorch_msssim parts)."""
    import torch
    import torch.nn.functional as F
    from pytorch_msssim.ssim import _fspecial_gauss_1d, _ssim

    w = torch.tensor(MS_SSIM_WEIGHTS[:levels], dtype=x.dtype)
    w = w / w.sum()
    win = _fspecial_gauss_1d(_WIN_SIZE, 1.5).repeat([x.shape[1], 1, 1, 1])
    mcs = []
    for i in range(levels):
        ssim_pc, cs = _ssim(x, y, win=win, data_range=255, size_average=False, K=(0.01, 0.03))
        if i < levels - 1:
            mcs.append(torch.relu(cs))
            pad = [s % 2 for s in x.shape[2:]]
            x = F.avg_pool2d(x, kernel_size=2, padding=pad)
            y = F.avg_pool2d(y, kernel_size=2, padding=pad)
    stack = torch.stack(mcs + [torch.relu(ssim_pc)], dim=0)
    return float(torch.prod(stack ** w.view(-1, 1, 1), dim=0).mean())


def ms_ssim_rgb(ref: np.ndarray, rec: np.ndarray) -> float:
    """MS-SSIM of two 8-bit RGB images in [0, 1] (see the module docstring for small images)."""
    _check_pair(ref, rec)
    import torch
    from pytorch_msssim import ms_ssim

    levels = ms_ssim_scales(ref.shape[0], ref.shape[1])
    with torch.no_grad():
        x, y = _to_tensor(ref), _to_tensor(rec)
        if levels == len(MS_SSIM_WEIGHTS):
            return float(ms_ssim(x, y, data_range=255, size_average=True))
        return _ms_ssim_levels(x, y, levels)


def ms_ssim_db(value: float) -> float:
    """MS-SSIM in dB: ``-10 log10(1 - value)``; ``inf`` for 1."""
    if value >= 1.0:
        return math.inf
    return -10.0 * math.log10(1.0 - value)


# -- luma / chroma PSNR ----------------------------------------------------------------------
def _ycbcr709_full(rgb: np.ndarray) -> np.ndarray:
    from baselines.codecs.colour import rgb_to_ycbcr_float

    return rgb_to_ycbcr_float(rgb, matrix="bt709", full_range=True, bit_depth=8)


def psnr_planes(ref: np.ndarray, rec: np.ndarray) -> tuple[float, float, float]:
    """PSNR (dB) of the Y, Cb and Cr planes (BT.709 full range, float, peak 255)."""
    _check_pair(ref, rec)
    a, b = _ycbcr709_full(ref), _ycbcr709_full(rec)
    return tuple(psnr_from_mse(float(np.mean((a[..., c] - b[..., c]) ** 2))) for c in range(3))  # type: ignore[return-value]


def psnr_y(ref: np.ndarray, rec: np.ndarray) -> float:
    """PSNR of the BT.709 full-range luma plane in dB."""
    return psnr_planes(ref, rec)[0]


def psnr_yuv(ref: np.ndarray, rec: np.ndarray) -> float:
    """``(6 PSNR_Y + PSNR_Cb + PSNR_Cr) / 8`` in dB (each plane capped at 100 dB first)."""
    y, cb, cr = (cap_psnr(v) for v in psnr_planes(ref, rec))
    return (6 * y + cb + cr) / 8.0


# -- aggregation -----------------------------------------------------------------------------
def aggregate_psnr(mses: Iterable[float]) -> dict[str, float]:
    """Average per-image MSEs two ways.

    Returns ``{"mean_psnr": mean of per-image PSNR (each capped at 100 dB),
    "psnr_of_mean_mse": PSNR of the mean MSE, "n": count, "n_capped": images
    whose PSNR was infinite}``.
    """
    ms = [float(m) for m in mses]
    if not ms:
        raise ValueError("no values to aggregate")
    psnrs = [psnr_from_mse(m) for m in ms]
    return {
        "mean_psnr": float(np.mean([cap_psnr(p) for p in psnrs])),
        "psnr_of_mean_mse": cap_psnr(psnr_from_mse(float(np.mean(ms)))),
        "n": float(len(ms)),
        "n_capped": float(sum(math.isinf(p) for p in psnrs)),
    }


def mean_psnr(psnrs: Sequence[float]) -> float:
    """Arithmetic mean of per-image PSNRs, each capped at :data:`PSNR_CAP_DB`."""
    if not psnrs:
        raise ValueError("no values to average")
    return float(np.mean([cap_psnr(p) for p in psnrs]))
