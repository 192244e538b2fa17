"""Per-image complexity measures: luma/RGB/gradient entropy and spatial information.

Every measure is computed from an 8-bit RGB image, ``(H, W, 3) uint8``
(16-bit files are first reduced to 8 bits by
:func:`cloud3d.imageio.read_image_rgb`, i.e. ``round(v / 257)``).

Definitions (``log2``, so entropies are in bits per sample):

``entropy_luma``
    Shannon entropy ``H = -sum_k p_k log2 p_k`` of the 256-bin histogram of
    the 8-bit luma image, ``p_k`` = share of pixels with luma ``k``. Luma is
    BT.601 (weights 0.299, 0.587, 0.114: the usual "gray" of image-entropy
    work, of Pillow, OpenCV and MATLAB; the paper does not name its
    conversion) in 16-bit fixed point::

        Y = (19595 R + 38470 G + 7471 B + 32768) >> 16      # 0..255

    which is exactly what Pillow's ``convert("L")`` computes. It equals
    ``round(0.299 R + 0.587 G + 0.114 B)`` for all but 9040 of the 2^24
    colours (0.05 %), which sit on a rounding tie and differ by one level.
    ``luma="bt709"`` uses (0.2126, 0.7152, 0.0722) the same way
    (13933, 46871, 4732). Range 0..8 bits.
``entropy_rgb_mean``
    Mean of the three per-channel entropies (R, G and B each a 256-bin
    histogram). Range 0..8 bits.
``entropy_gradient``
    Entropy of the pooled histogram of the horizontal and vertical forward
    differences of luma, ``Y[i, j+1] - Y[i, j]`` (``H x (W-1)`` values) and
    ``Y[i+1, j] - Y[i, j]`` (``(H-1) x W`` values), both counted in one
    511-bin histogram over -255..255. Range 0..log2(511) ~ 8.997 bits; 0 for a
    flat image, 1 for a one-pixel black/white checkerboard.
``si``
    Spatial information after ITU-T P.910: the standard deviation
    (population, ``ddof=0``) of the Sobel gradient magnitude
    ``sqrt(Gx^2 + Gy^2)`` of luma over the image interior (the 1-pixel border,
    where the 3x3 kernel would leave the image, is excluded). Luma is on the
    0..255 scale; ``Gx`` uses the kernel ``[[-1,0,1],[-2,0,2],[-1,0,1]]`` and
    ``Gy`` its transpose. P.910 takes the maximum of this value over the frames
    of a video; here it is one frame. Unit: luma levels per pixel; range
    0..~1020; NaN for images smaller than 3x3.

Two implementations (see :func:`backend`): a numba-compiled fused kernel
(:mod:`analysis.fused`) when numba is installed, else numpy + Pillow (C
histograms, saturating uint8 differences, an int16/float32 Sobel in row
strips that stay in the CPU cache). Both build the same histograms; see
``benchmarks/entropy_bench.py`` for their cost next to PNG decoding.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
from PIL import Image

from cloud3d.errors import Cloud3dError
from cloud3d.imageio import read_image_rgb

#: Column names of the measures, in output order.
MEASURES: tuple[str, ...] = ("entropy_luma", "entropy_rgb_mean", "entropy_gradient", "si")

#: Bump when any definition or its implementation changes: cached results are
#: keyed by (sha256, MEASURES_VERSION, luma weights) and old rows are ignored.
MEASURES_VERSION = "1"

#: Axis labels with units, for plots and tables.
LABELS: dict[str, str] = {
    "entropy_luma": "Luma entropy H(Y) (bits)",
    "entropy_rgb_mean": "Mean RGB channel entropy (bits)",
    "entropy_gradient": "Gradient entropy (bits)",
    "si": "Spatial information SI (luma levels)",
}

#: Luma weights in 16-bit fixed point (they sum to 65536).
LUMA_WEIGHTS: dict[str, tuple[int, int, int]] = {
    "bt601": (19595, 38470, 7471),
    "bt709": (13933, 46871, 4732),
}

_STRIP_ROWS = 64  # rows per Sobel strip: 66 x 1920 int16/float32 temporaries stay in cache


def entropy_bits(hist: np.ndarray | list[int]) -> float:
    """Shannon entropy in bits of a histogram of counts (any length). NaN if empty."""
    h = np.asarray(hist, dtype=np.float64)
    total = h.sum()
    if total <= 0:
        return float("nan")
    p = h[h > 0] / total
    return max(0.0, float(-(p * np.log2(p)).sum()))


def _check_rgb(rgb: np.ndarray) -> np.ndarray:
    if (
        not isinstance(rgb, np.ndarray)
        or rgb.ndim != 3
        or rgb.shape[2] != 3
        or rgb.dtype != np.uint8
    ):
        shape = getattr(rgb, "shape", None)
        dtype = getattr(rgb, "dtype", type(rgb).__name__)
        raise ValueError(f"expected an (H, W, 3) uint8 RGB array, got shape {shape} dtype {dtype}")
    if rgb.shape[0] == 0 or rgb.shape[1] == 0:
        raise ValueError(f"empty image of shape {rgb.shape}")
    return np.ascontiguousarray(rgb)


def luma8(rgb: np.ndarray, luma: str = "bt601") -> np.ndarray:
    """8-bit luma ``(H, W) uint8`` of an ``(H, W, 3) uint8`` image (fixed-point weights, see module doc)."""
    rgb = _check_rgb(rgb)
    if luma == "bt601":
        return np.asarray(Image.fromarray(rgb, "RGB").convert("L"))
    if luma not in LUMA_WEIGHTS:
        raise ValueError(f"unknown luma weights {luma!r}; use one of {', '.join(LUMA_WEIGHTS)}")
    wr, wg, wb = LUMA_WEIGHTS[luma]
    acc = rgb[:, :, 0].astype(np.uint32) * wr
    acc += rgb[:, :, 1].astype(np.uint32) * wg
    acc += rgb[:, :, 2].astype(np.uint32) * wb
    acc += 32768
    acc >>= 16
    return acc.astype(np.uint8)


def _as_l_image(a: np.ndarray) -> Image.Image:
    """Wrap a C-contiguous 2-D uint8 array as a Pillow "L" image without copying."""
    return Image.frombuffer("L", (a.shape[1], a.shape[0]), a, "raw", "L", 0, 1)


def gradient_histogram(y: np.ndarray) -> np.ndarray:
    """Pooled 511-bin histogram of horizontal + vertical forward differences of ``y``.

    ``y`` is ``(H, W) uint8``; bin ``k`` counts differences equal to ``k - 255``.
    Returns int64 counts summing to ``H*(W-1) + (H-1)*W``.
    """
    hist = np.zeros(511, dtype=np.int64)
    for a, b in ((y[:, 1:], y[:, :-1]), (y[1:], y[:-1])):
        if a.size == 0:
            continue
        hi = np.maximum(a, b)
        pos = hi - b  # max(a - b, 0), uint8
        neg = hi - a  # max(b - a, 0), uint8
        h_pos = np.asarray(_as_l_image(pos).histogram(), dtype=np.int64)
        h_neg = np.asarray(_as_l_image(neg).histogram(), dtype=np.int64)
        hist[256:] += h_pos[1:]  # differences +1..+255
        hist[:255] += h_neg[:0:-1]  # differences -255..-1
        hist[255] += a.size - h_pos[1:].sum() - h_neg[1:].sum()  # a == b
    return hist


def spatial_information(y: np.ndarray) -> float:
    """ITU-T P.910 spatial information of one luma frame ``(H, W) uint8`` (see module doc)."""
    h, w = y.shape
    if h < 3 or w < 3:
        return float("nan")
    s1 = 0.0  # sum of magnitudes
    s2 = 0.0  # sum of squared magnitudes (integers: exact in float64)
    n = 0
    for r0 in range(1, h - 1, _STRIP_ROWS):
        r1 = min(r0 + _STRIP_ROWS, h - 1)
        blk = y[r0 - 1 : r1 + 1].astype(np.int16)  # Sobel sums stay within +-1020
        hx = blk[:, 2:] - blk[:, :-2]  # horizontal [-1, 0, 1]
        gx = hx[:-2] + hx[2:]
        gx += hx[1:-1]
        gx += hx[1:-1]  # then vertical [1, 2, 1]
        sv = blk[:, :-2] + blk[:, 2:]
        sv += blk[:, 1:-1]
        sv += blk[:, 1:-1]  # horizontal [1, 2, 1]
        gy = sv[2:] - sv[:-2]  # then vertical [-1, 0, 1]
        m2 = gx.astype(np.float32)
        m2 *= m2
        fy = gy.astype(np.float32)
        fy *= fy
        m2 += fy  # squared magnitude, exact in float32 (integers < 2^24)
        s2 += float(m2.sum(dtype=np.float64))
        np.sqrt(m2, out=m2)
        s1 += float(m2.sum(dtype=np.float64))
        n += m2.size
    return _si_from_sums(s1, s2, n)


def _si_from_sums(s1: float, s2: float, n: int) -> float:
    """Population std from the sum and the sum of squares of ``n`` magnitudes."""
    if n <= 0:
        return float("nan")
    mean = s1 / n
    return math.sqrt(max(0.0, s2 / n - mean * mean))


def backend() -> str:
    """Which implementation computes the measures: ``"numba"`` or ``"numpy"``.

    ``numba`` (a fused compiled kernel, :mod:`analysis.fused`, ~3x faster)
    when numba is installed, else ``numpy`` (numpy + Pillow). The environment
    variable ``CLOUD3D_ANALYSIS_BACKEND=numpy|numba|auto`` forces a choice.
    Both give the same histograms, hence identical entropies; SI agrees to
    ~1e-9 relative.
    """
    global _BACKEND
    want = os.environ.get("CLOUD3D_ANALYSIS_BACKEND", "auto").strip().lower() or "auto"
    if want not in ("auto", "numba", "numpy"):
        raise Cloud3dError(f"CLOUD3D_ANALYSIS_BACKEND={want!r}: use auto, numba or numpy")
    if want == "numpy":
        return "numpy"
    if _BACKEND is None:
        try:
            import analysis.fused  # noqa: F401  (compiles lazily on first call)

            _BACKEND = "numba"
        except ImportError:
            _BACKEND = "numpy"
    if want == "numba" and _BACKEND != "numba":
        raise Cloud3dError(
            "CLOUD3D_ANALYSIS_BACKEND=numba but numba is not installed: pip install numba"
        )
    return _BACKEND


_BACKEND: str | None = None


def measures_of_rgb(rgb: np.ndarray, luma: str = "bt601") -> dict[str, float]:
    """The four :data:`MEASURES` of an ``(H, W, 3) uint8`` RGB array."""
    rgb = _check_rgb(rgb)
    if luma not in LUMA_WEIGHTS:
        raise ValueError(f"unknown luma weights {luma!r}; use one of {', '.join(LUMA_WEIGHTS)}")
    if backend() == "numba":
        from analysis.fused import fused_stats

        hist, gh, s1, s2 = fused_stats(rgb, LUMA_WEIGHTS[luma])
        h, w = rgb.shape[:2]
        return {
            "entropy_luma": entropy_bits(hist[3]),
            "entropy_rgb_mean": float(np.mean([entropy_bits(c) for c in hist[:3]])),
            "entropy_gradient": entropy_bits(gh),
            "si": _si_from_sums(s1, s2, (h - 2) * (w - 2)) if h >= 3 and w >= 3 else float("nan"),
        }
    img = Image.fromarray(rgb, "RGB")
    ch = np.asarray(img.histogram(), dtype=np.int64).reshape(3, 256)
    if luma == "bt601":
        y_img = img.convert("L")
        y = np.asarray(y_img)
        h_y = y_img.histogram()
    else:
        y = luma8(rgb, luma)
        h_y = _as_l_image(y).histogram()
    return {
        "entropy_luma": entropy_bits(h_y),
        "entropy_rgb_mean": float(np.mean([entropy_bits(c) for c in ch])),
        "entropy_gradient": entropy_bits(gradient_histogram(y)),
        "si": spatial_information(y),
    }


def prepare_backend() -> str:
    """Make the backend ready to run; returns its name (see :func:`backend`).

    With numba this compiles the kernel, or loads it from numba's on-disk cache
    (``analysis/__pycache__``). Call it in a parent process before starting
    worker processes: on a fresh checkout the workers then load the cached
    kernel (~0.5 s of CPU each) instead of each compiling it (~3 s each).
    """
    name = backend()
    if name == "numba":
        measures_of_rgb(np.zeros((3, 4, 3), np.uint8))
    return name


def image_measures(image: str | os.PathLike | np.ndarray, luma: str = "bt601") -> dict:
    """Measures of one image given as a file path or an ``(H, W, 3) uint8`` array.

    Returns a dict with every name in :data:`MEASURES` (floats) plus
    ``width``, ``height`` (pixels) and ``note`` (how the file was converted
    to 8-bit RGB, ``None`` if it already was). Raises
    :class:`cloud3d.errors.Cloud3dError` for unreadable/corrupt files
    and ``ValueError`` for arrays of the wrong shape or dtype.
    """
    note = None
    if isinstance(image, (str, os.PathLike, Path)):
        rgb, note = read_image_rgb(image)
    else:
        rgb = image
    out: dict = measures_of_rgb(rgb, luma=luma)
    out["width"] = int(rgb.shape[1])
    out["height"] = int(rgb.shape[0])
    out["note"] = note
    return out
