"""Single-pass kernel for the four measures, compiled with numba when it is installed.

Importing this module raises ``ImportError`` when numba is missing; callers
(:mod:`analysis.measures`) then use the numpy/Pillow implementation, which
computes the same histograms and sums.

One sweep over the rows of an 8-bit RGB image. For each row ``i`` it

1. computes the row's luma into a two-row ring buffer (vectorised 32-bit
   integer arithmetic, the same fixed-point formula as
   :func:`analysis.measures.luma8`),
2. counts R, G and B into 256-bin histograms,
3. counts luma into its 256-bin histogram and, in the same loop (each luma
   value is loaded once), the horizontal differences of row ``i`` and the
   vertical ones between rows ``i-1`` and ``i`` into the pooled 511-bin
   histogram,
4. stores the row's horizontal Sobel pieces (``[1, 2, 1]`` sums and
   ``[-1, 0, 1]`` differences, float32) in three-row ring buffers and, from
   the third row on, adds up the Sobel magnitudes of interior row ``i-1``.

Nothing image-sized is allocated: the luma image never exists, every buffer
is a few rows long and stays in the L1/L2 cache. The histogram counting
(six read-modify-writes per pixel) is what the sweep spends most of its time
on; interleaved copies of each histogram (chosen by column), padded so that
the copies do not sit a multiple of 4 KiB apart, keep runs of equal values
from serialising on one counter. Counters are int32 and are
flushed into int64 totals often enough that none can overflow, whatever the
image size.

Exactness: the histograms are integer counts, identical to the numpy path, so
the three entropies are bit-identical. Sobel ``Gx``, ``Gy`` are integers of
magnitude <= 1020 and ``Gx^2 + Gy^2 < 2^24``, so they are exact in float32;
the sum of squared magnitudes is a sum of integers below 2^53 in float64,
hence exact in any order; the magnitudes are the same float32 square roots as
in the numpy path, summed in float64 in another order, so SI agrees with the
numpy path within 1e-9 relative (the tests' tolerance; in practice ~1e-14). ``fastmath`` is enabled only on the Sobel sums
(reassociation to vectorise the float64 additions, contraction to FMA, which
is exact on these integers); the histogram loops are pure integer code.
"""

from __future__ import annotations

import numba
import numpy as np

NUMBA_VERSION: str = numba.__version__

_PAD_HIST = 272  # 256 bins + 16: the two copies of a histogram are not 4 KiB apart
_PAD_GRAD = 528  # 511 bins + padding
_GRAD_COPIES = 4  # interleaved copies of the difference histogram (column mod 4)


@numba.njit(cache=True, nogil=True, boundscheck=False, fastmath={"reassoc", "nsz", "contract"})
def _sobel_row_sums(s_up, s_dn, d_up, d_mid, d_dn, n):  # pragma: no cover - compiled
    """Sum of Sobel magnitudes and of their squares along one interior row.

    ``s_*`` hold ``y[j] + 2 y[j+1] + y[j+2]`` of the rows above/below, ``d_*``
    hold ``y[j+2] - y[j]`` of the rows above, at and below (float32, exact).
    """
    acc = 0.0
    acc2 = 0.0
    for j in range(n):
        gx = d_up[j] + np.float32(2.0) * d_mid[j] + d_dn[j]
        gy = s_dn[j] - s_up[j]
        m2 = gx * gx + gy * gy  # integer < 2^24: exact in float32
        acc2 += np.float64(m2)
        acc += np.float64(np.sqrt(m2))
    return acc, acc2


@numba.njit(cache=True, nogil=True, boundscheck=False)
def _count_luma_row(yr, yp, has_prev, hist, grad):  # pragma: no cover - compiled
    """Luma histogram, horizontal differences of ``yr`` and, if ``has_prev``, ``yr - yp``.

    Unrolled by 4 so that each luma value is loaded once for its three counts
    (luma, horizontal, vertical); the four difference copies take one column each.
    """
    w = yr.shape[0]
    j = 0
    while j + 4 < w:
        a0 = np.intp(yr[j])
        a1 = np.intp(yr[j + 1])
        a2 = np.intp(yr[j + 2])
        a3 = np.intp(yr[j + 3])
        a4 = np.intp(yr[j + 4])
        hist[0, 3, a0] += 1
        hist[1, 3, a1] += 1
        hist[0, 3, a2] += 1
        hist[1, 3, a3] += 1
        grad[0, a1 - a0 + 255] += 1
        grad[1, a2 - a1 + 255] += 1
        grad[2, a3 - a2 + 255] += 1
        grad[3, a4 - a3 + 255] += 1
        if has_prev:
            grad[0, a0 - np.intp(yp[j]) + 255] += 1
            grad[1, a1 - np.intp(yp[j + 1]) + 255] += 1
            grad[2, a2 - np.intp(yp[j + 2]) + 255] += 1
            grad[3, a3 - np.intp(yp[j + 3]) + 255] += 1
        j += 4
    for k in range(j, w):
        hist[0, 3, yr[k]] += 1
        if k + 1 < w:
            grad[1, np.intp(yr[k + 1]) - np.intp(yr[k]) + 255] += 1
        if has_prev:
            grad[2, np.intp(yr[k]) - np.intp(yp[k]) + 255] += 1


@numba.njit(cache=True, nogil=True, boundscheck=False)
def _fused_kernel(rgb, wr, wg, wb, flush_rows):  # pragma: no cover - compiled
    h, w, _ = rgb.shape
    flat = rgb.reshape(h, w * 3)  # C-contiguous input: a view, no copy
    hist = np.zeros((2, 4, _PAD_HIST), np.int32)  # [copy, R/G/B/luma, bin]
    grad = np.zeros((_GRAD_COPIES, _PAD_GRAD), np.int32)  # [copy, difference + 255]
    hist_total = np.zeros((4, 256), np.int64)
    grad_total = np.zeros(511, np.int64)
    ybuf = np.empty((2, w), np.uint8)
    n = max(w - 2, 0)
    sbuf = np.empty((3, n), np.float32)
    dbuf = np.empty((3, n), np.float32)
    ur = np.uint32(wr)
    ug = np.uint32(wg)
    ub = np.uint32(wb)
    half = np.uint32(32768)
    s1 = 0.0
    s2 = 0.0
    for i in range(h):
        row = flat[i]
        yr = ybuf[i & 1]
        for j in range(w):  # luma in uint32 (each step truncated, so it vectorises 8 wide)
            v = np.uint32(ur * np.uint32(row[3 * j])) + np.uint32(ug * np.uint32(row[3 * j + 1]))
            v = np.uint32(v) + np.uint32(ub * np.uint32(row[3 * j + 2])) + half
            yr[j] = np.uint8(np.uint32(v) >> np.uint32(16))
        for j in range(w):  # R, G, B histograms, two copies by column parity
            c = j & 1
            hist[c, 0, row[3 * j]] += 1
            hist[c, 1, row[3 * j + 1]] += 1
            hist[c, 2, row[3 * j + 2]] += 1
        _count_luma_row(yr, ybuf[(i + 1) & 1], i > 0, hist, grad)
        if n > 0:  # horizontal Sobel pieces of row i, then the magnitudes of row i-1
            sr = sbuf[i % 3]
            dr = dbuf[i % 3]
            for j in range(n):
                a = np.float32(yr[j])
                b = np.float32(yr[j + 1])
                c2 = np.float32(yr[j + 2])
                sr[j] = a + np.float32(2.0) * b + c2
                dr[j] = c2 - a
            if i >= 2:
                a1, a2 = _sobel_row_sums(
                    sbuf[(i - 2) % 3], sr, dbuf[(i - 2) % 3], dbuf[(i - 1) % 3], dr, n
                )
                s1 += a1
                s2 += a2
        if (i + 1) % flush_rows == 0 or i == h - 1:
            for k in range(4):
                for b2 in range(256):
                    hist_total[k, b2] += np.int64(hist[0, k, b2]) + np.int64(hist[1, k, b2])
                    hist[0, k, b2] = 0
                    hist[1, k, b2] = 0
            for b2 in range(511):
                t = np.int64(0)
                for c in range(_GRAD_COPIES):
                    t += grad[c, b2]
                    grad[c, b2] = 0
                grad_total[b2] += t
    return hist_total, grad_total, s1, s2


def flush_rows(width: int) -> int:
    """Rows between flushes of the int32 counters: a row adds at most ``2 * width`` to one."""
    return max(1, (2**31 - 1) // max(2 * width, 1))


def fused_stats(
    rgb: np.ndarray, weights: tuple[int, int, int]
) -> tuple[np.ndarray, np.ndarray, float, float]:
    """Raw statistics of an ``(H, W, 3) uint8`` C-contiguous image, in one sweep.

    ``weights`` are the fixed-point luma weights (summing to 65536), e.g.
    ``(19595, 38470, 7471)`` for BT.601. Returns ``(hist (4, 256) int64
    [R, G, B, luma], gradient hist (511,) int64 [difference + 255], sum of
    Sobel magnitudes, sum of squared magnitudes)``; the magnitude sums cover
    the ``(H-2) x (W-2)`` interior (0 when that is empty).
    """
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected (H, W, 3) uint8, got {rgb.shape} {rgb.dtype}")
    if not rgb.flags.c_contiguous:
        raise ValueError("fused_stats needs a C-contiguous array (np.ascontiguousarray)")
    # int32-typed weights: with Python ints (int64) LLVM keeps the luma loop in 64-bit lanes
    wr, wg, wb = (np.int32(x) for x in weights)
    hist, grad, s1, s2 = _fused_kernel(rgb, wr, wg, wb, flush_rows(rgb.shape[1]))
    return hist, grad, float(s1), float(s2)
