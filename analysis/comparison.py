"""Per-group statistics of the measures and their distance to the reference distribution.

``summary.csv`` has one row per (group, measure) with these columns:

=========================== ===============================================
group                       ``{app}-{res}`` or the reference name
measure                     one of :data:`analysis.measures.MEASURES`
n                           number of images
mean, median                of the group's values
std                         sample standard deviation (``ddof=1``; NaN if n < 2)
p5, p25, p75, p95           percentiles (linear interpolation, numpy default)
ks_stat, ks_pvalue          two-sample Kolmogorov-Smirnov test of the group
                            against the reference (``scipy.stats.ks_2samp``,
                            two-sided, exact p-value for small samples)
wasserstein                 1-Wasserstein (earth mover's) distance to the
                            reference, in the measure's unit
share_below_ref_median      share (0..1) of the group's images whose value is
                            strictly below the reference's median
=========================== ===============================================

Reference rows carry NaN in the four comparison columns.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from analysis.measures import MEASURES

SUMMARY_COLUMNS: tuple[str, ...] = (
    "group",
    "measure",
    "n",
    "mean",
    "median",
    "std",
    "p5",
    "p25",
    "p75",
    "p95",
    "ks_stat",
    "ks_pvalue",
    "wasserstein",
    "share_below_ref_median",
)


def describe(values: Sequence[float] | np.ndarray) -> dict[str, float]:
    """n, mean, median, std (ddof=1), p5, p25, p75, p95 of the finite values."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    n = int(v.size)
    if n == 0:
        nan = float("nan")
        return {
            "n": 0,
            "mean": nan,
            "median": nan,
            "std": nan,
            "p5": nan,
            "p25": nan,
            "p75": nan,
            "p95": nan,
        }
    p5, p25, p50, p75, p95 = np.percentile(v, [5, 25, 50, 75, 95])
    return {
        "n": n,
        "mean": float(v.mean()),
        "median": float(p50),
        "std": float(v.std(ddof=1)) if n > 1 else float("nan"),
        "p5": float(p5),
        "p25": float(p25),
        "p75": float(p75),
        "p95": float(p95),
    }


def distance_to_reference(values: np.ndarray, ref: np.ndarray) -> dict[str, float]:
    """KS statistic and p-value, Wasserstein distance, share below the reference median."""
    from scipy import stats

    v = np.asarray(values, dtype=np.float64)
    r = np.asarray(ref, dtype=np.float64)
    v = v[np.isfinite(v)]
    r = r[np.isfinite(r)]
    nan = float("nan")
    if v.size == 0 or r.size == 0:
        return {"ks_stat": nan, "ks_pvalue": nan, "wasserstein": nan, "share_below_ref_median": nan}
    ks = stats.ks_2samp(v, r)
    return {
        "ks_stat": float(ks.statistic),
        "ks_pvalue": float(ks.pvalue),
        "wasserstein": float(stats.wasserstein_distance(v, r)),
        "share_below_ref_median": float(np.mean(v < np.median(r))),
    }


def compare(
    df: pd.DataFrame,
    reference_df: pd.DataFrame,
    measures: Sequence[str] = MEASURES,
    group_col: str = "group",
    reference_name: str | None = None,
) -> pd.DataFrame:
    """Summary table (:data:`SUMMARY_COLUMNS`) of every group in ``df`` against ``reference_df``.

    ``df`` holds one row per image with a ``group_col`` column and one column
    per measure; ``reference_df`` the reference images' measures. The
    reference's own rows come first, named ``reference_name`` (default: the
    single value of ``reference_df[group_col]``, else ``"reference"``), with
    NaN comparisons; then the groups in sorted order.
    """
    if reference_name is None:
        names = reference_df[group_col].unique() if group_col in reference_df else []
        reference_name = str(names[0]) if len(names) == 1 else "reference"
    rows = []
    for m in measures:
        ref = reference_df[m].to_numpy(dtype=np.float64)
        rows.append(
            {
                "group": reference_name,
                "measure": m,
                **describe(ref),
                **distance_to_reference(np.array([]), np.array([])),
            }
        )
    for g in sorted(df[group_col].unique()):
        sub = df[df[group_col] == g]
        for m in measures:
            vals = sub[m].to_numpy(dtype=np.float64)
            ref = reference_df[m].to_numpy(dtype=np.float64)
            rows.append(
                {"group": g, "measure": m, **describe(vals), **distance_to_reference(vals, ref)}
            )
    out = pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))
    out["n"] = out["n"].astype("int64")
    return out
