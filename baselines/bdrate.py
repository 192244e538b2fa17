"""Bjontegaard delta metrics (BD-rate, BD-PSNR) with piecewise cubic interpolation.

Method (VCEG-M33 by G. Bjontegaard, 2001, as updated in common practice, e.g.
JVET CTC / VCEG-AL22): each RD curve is a set of (rate, quality) points.

* **BD-rate** (%): interpolate ``log10(rate)`` as a function of quality with a
  monotone piecewise cubic Hermite interpolant (PCHIP, Fritsch-Carlson, via
  :class:`scipy.interpolate.PchipInterpolator`) for each curve, integrate
  both over the *overlapping* quality interval, and take the mean difference
  ``d`` (test minus anchor) of the log rates: ``BD-rate = (10**d - 1) * 100``.
  Negative means the test codec needs fewer bits for the same quality.
* **BD-PSNR** (dB, or BD-quality in the quality's units): interpolate quality
  as a function of ``log10(rate)`` and average the difference over the
  overlapping log-rate interval. Positive means better quality at the same rate.

The original VCEG-M33 fitted a cubic polynomial through four points; PCHIP is
used here because it passes through every point and never overshoots, so it
works with any number of points >= 2.

When the result cannot be computed (fewer than 2 points, non-finite values,
quality not strictly monotone in rate, or no overlap) the functions return
``nan`` and a one-line reason instead of raising.

**Overlap.** A delta averages over the interval both curves cover, so two curves
that share little of their range give a number about a small part of either.
:func:`bd_overlap` measures that share as the ``bjontegaard`` package (FAU-LMS) does:
the length of the common interval over the length of the union of both intervals,
on the axis the delta integrates over (quality for BD-rate, ``log10(rate)`` for
BD-PSNR), from 0 (disjoint) to 1 (same range). Below :data:`MIN_OVERLAP` (75 %, that
package's default and common practice) a value should not be presented like the others.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

#: overlap fraction below which a BD value is flagged as unreliable (see :func:`bd_overlap`)
MIN_OVERLAP = 0.75


def _prepare(rate: Sequence[float], quality: Sequence[float], name: str) -> tuple[np.ndarray, np.ndarray, str]:
    r = np.asarray(rate, dtype=np.float64)
    q = np.asarray(quality, dtype=np.float64)
    if r.shape != q.shape or r.ndim != 1:
        return r, q, f"{name}: rate and quality must be 1-D and the same length"
    ok = np.isfinite(r) & np.isfinite(q) & (r > 0)
    r, q = r[ok], q[ok]
    if len(r) < 2:
        return r, q, f"{name}: fewer than 2 usable points"
    order = np.argsort(r)
    r, q = r[order], q[order]
    if np.any(np.diff(r) <= 0) or np.any(np.diff(q) <= 0):
        return r, q, f"{name}: quality is not strictly increasing with rate"
    return np.log10(r), q, ""


def _prepare_pair(
    anchor_rate: Sequence[float],
    anchor_quality: Sequence[float],
    test_rate: Sequence[float],
    test_quality: Sequence[float],
) -> tuple[tuple[np.ndarray, ...], str]:
    """Both curves through :func:`_prepare`: ``((log_ra, qa, log_rt, qt), reason)``."""
    la, qa, why = _prepare(anchor_rate, anchor_quality, "anchor")
    if why:
        return (la, qa, la, qa), why
    lt, qt, why = _prepare(test_rate, test_quality, "test")
    return (la, qa, lt, qt), why


def _overlap(xa: np.ndarray, xt: np.ndarray) -> tuple[float, float, float]:
    """``(lo, hi, fraction)``: the common interval of two point sets and its share of their union."""
    lo, hi = max(xa.min(), xt.min()), min(xa.max(), xt.max())
    union = max(xa.max(), xt.max()) - min(xa.min(), xt.min())
    return lo, hi, (max(hi - lo, 0.0) / union if union > 0 else 0.0)


def _mean_diff(xa: np.ndarray, ya: np.ndarray, xt: np.ndarray, yt: np.ndarray) -> tuple[float, str]:
    """Mean of (test - anchor) interpolants y(x) over the overlap of the x ranges."""
    from scipy.interpolate import PchipInterpolator

    lo, hi, _ = _overlap(xa, xt)
    if not hi > lo:
        return math.nan, f"no overlap: anchor {xa.min():.4g}..{xa.max():.4g}, test {xt.min():.4g}..{xt.max():.4g}"
    ia = PchipInterpolator(xa, ya).integrate(lo, hi)
    it = PchipInterpolator(xt, yt).integrate(lo, hi)
    return float((it - ia) / (hi - lo)), ""


def bd_rate(
    anchor_rate: Sequence[float],
    anchor_quality: Sequence[float],
    test_rate: Sequence[float],
    test_quality: Sequence[float],
) -> tuple[float, str]:
    """BD-rate in percent of ``test`` against ``anchor``; returns ``(value, reason)``.

    ``reason`` is empty on success; otherwise value is ``nan`` and reason says why.
    Rates are any positive unit (bpp, kbps); quality e.g. PSNR dB.
    """
    (la, qa, lt, qt), why = _prepare_pair(anchor_rate, anchor_quality, test_rate, test_quality)
    if why:
        return math.nan, why
    d, why = _mean_diff(qa, la, qt, lt)
    if why:
        return math.nan, "quality ranges do not overlap (" + why + ")"
    return (10.0**d - 1.0) * 100.0, ""


def bd_quality(
    anchor_rate: Sequence[float],
    anchor_quality: Sequence[float],
    test_rate: Sequence[float],
    test_quality: Sequence[float],
) -> tuple[float, str]:
    """BD-PSNR (or BD-quality): mean quality gain of ``test`` at equal rate; ``(value, reason)``."""
    (la, qa, lt, qt), why = _prepare_pair(anchor_rate, anchor_quality, test_rate, test_quality)
    if why:
        return math.nan, why
    d, why = _mean_diff(la, qa, lt, qt)
    if why:
        return math.nan, "rate ranges do not overlap (" + why + ")"
    return d, ""


#: alias: BD-PSNR when quality is PSNR in dB
bd_psnr = bd_quality


def bd_overlap(
    anchor_rate: Sequence[float],
    anchor_quality: Sequence[float],
    test_rate: Sequence[float],
    test_quality: Sequence[float],
    axis: str = "quality",
) -> float:
    """Overlap of two RD curves, 0..1, on the axis a delta integrates over (see the module docstring).

    ``axis="quality"`` is the quality range (what :func:`bd_rate` averages over),
    ``axis="rate"`` the ``log10(rate)`` range (what :func:`bd_quality` averages over).
    Uses the same points as the deltas (non-finite and non-positive rates dropped);
    ``nan`` when either curve is unusable (then the delta is ``nan`` with its reason).
    """
    if axis not in ("quality", "rate"):
        raise ValueError(f"axis must be 'quality' or 'rate', not {axis!r}")
    (la, qa, lt, qt), why = _prepare_pair(anchor_rate, anchor_quality, test_rate, test_quality)
    if why:
        return math.nan
    return _overlap(qa, qt)[2] if axis == "quality" else _overlap(la, lt)[2]
