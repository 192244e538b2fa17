"""Optional single-pass kernel for the four measures, compiled with numba when it is installed.

Importing this module raises ``ImportError`` when numba is missing; callers
(:mod:`analysis.measures`) then use the numpy/Pillow implementation, which
computes the same histograms and sums. Three compiled sweeps (8-bit RGB ->
luma + histograms; luma differences; Sobel on luma) give exactly the numbers
the definitions in :mod:`analysis.measures` need:

* the R, G, B and luma 256-bin histograms,
* the pooled 511-bin histogram of horizontal and vertical forward differences,
* the sum of squared Sobel magnitudes (an exact integer) and the sum of
  magnitudes (float32 square roots summed in float64) over the interior.

Histogram bins are identical to the numpy path, so the three entropies are
bit-identical; SI agrees to ~1e-9 relative (the magnitudes are summed in another
order).
"""

from __future__ import annotations

import numba
import numpy as np

NUMBA_VERSION: str = numba.__version__


@numba.njit(cache=True, nogil=True, boundscheck=False)
def _luma_and_hists(rgb, wr, wg, wb):  # pragma: no cover - compiled
    h, w, _ = rgb.shape
    hist = np.zeros((4, 256), np.int32)  # [R, G, B, luma]; int32 counters keep it in L1
    y = np.empty((h, w), np.uint8)
    for i in range(h):
        for j in range(w):
            r = np.int32(rgb[i, j, 0])
            g = np.int32(rgb[i, j, 1])
            b = np.int32(rgb[i, j, 2])
            v = (wr * r + wg * g + wb * b + 32768) >> 16
            y[i, j] = v
            hist[0, r] += 1
            hist[1, g] += 1
            hist[2, b] += 1
            hist[3, v] += 1
    return y, hist.astype(np.int64)


# The difference histogram is counted into 4 interleaved copies (by column mod 4), summed at
# the end: runs of equal differences (flat areas) then do not serialise on one counter.


@numba.njit(cache=True, nogil=True, boundscheck=False)
def _gradient_hist(y):  # pragma: no cover - compiled
    h, w = y.shape
    sub = np.zeros((4, 511), np.int32)
    for i in range(h):
        row = y[i]
        for j in range(w - 1):
            sub[j & 3, np.int64(row[j + 1]) - np.int64(row[j]) + 255] += 1
        if i + 1 < h:
            nxt = y[i + 1]
            for j in range(w):
                sub[j & 3, np.int64(nxt[j]) - np.int64(row[j]) + 255] += 1
    return sub.astype(np.int64).sum(axis=0)


@numba.njit(cache=True, nogil=True, boundscheck=False, fastmath={"reassoc", "nsz", "contract"})
def _sobel_sums(y):  # pragma: no cover - compiled
    # Per row: Gx, Gy into float32 buffers (integers <= 1020: exact), then the two sums.
    # m2 < 2^24 is exact in float32; reassociation only reorders the float64 additions.
    h, w = y.shape
    s1 = 0.0
    s2 = 0.0
    n = w - 2
    gx = np.empty(max(n, 0), np.float32)
    gy = np.empty(max(n, 0), np.float32)
    for i in range(1, h - 1):
        up = y[i - 1]
        row = y[i]
        dn = y[i + 1]
        for j in range(n):
            a0 = np.float32(up[j])
            a1 = np.float32(up[j + 1])
            a2 = np.float32(up[j + 2])
            b0 = np.float32(row[j])
            b2 = np.float32(row[j + 2])
            c0 = np.float32(dn[j])
            c1 = np.float32(dn[j + 1])
            c2 = np.float32(dn[j + 2])
            gx[j] = (a2 + 2 * b2 + c2) - (a0 + 2 * b0 + c0)
            gy[j] = (c0 + 2 * c1 + c2) - (a0 + 2 * a1 + a2)
        acc = 0.0
        acc2 = 0.0
        for j in range(n):
            m2 = gx[j] * gx[j] + gy[j] * gy[j]
            acc2 += np.float64(m2)
            acc += np.float64(np.sqrt(m2))
        s1 += acc
        s2 += acc2
    return s1, s2


def _too_big_for_int32(rgb: np.ndarray) -> bool:
    """True when a histogram bin could overflow the kernel's int32 counters."""
    return rgb.shape[0] * rgb.shape[1] * 2 >= 2**31


def fused_stats(
    rgb: np.ndarray, weights: tuple[int, int, int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, float]:
    """Raw statistics of an ``(H, W, 3) uint8`` C-contiguous image.

    Returns ``(hist (4, 256) int64 [R, G, B, luma], luma (H, W) uint8,
    gradient hist (511,) int64, sum of Sobel magnitudes, sum of squared
    magnitudes)``; the magnitude sums cover the ``(H-2) x (W-2)`` interior.
    """
    if _too_big_for_int32(rgb):
        raise ValueError(
            f"image of {rgb.shape[0]}x{rgb.shape[1]} pixels is too large for int32 counters"
        )
    wr, wg, wb = (np.int32(x) for x in weights)
    y, hist = _luma_and_hists(rgb, wr, wg, wb)
    gh = _gradient_hist(y)
    s1, s2 = _sobel_sums(y)
    return hist, y, gh, float(s1), float(s2)
