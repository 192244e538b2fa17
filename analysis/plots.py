"""Figures of the measure distributions: density overlay (paper Fig. 3), per-app panels, box/violin.

Every figure is written twice, ``<base>.png`` (200 dpi) and ``<base>.svg``,
atomically. Inputs are per-image tables with a ``group`` column (``{app}-{res}``
or the reference name), an ``app`` column (empty for the reference) and one
column per measure. Densities are histograms normalised to unit area plus a
Gaussian kernel density estimate (``scipy.stats.gaussian_kde``, Scott's
bandwidth, but at least one histogram bin wide so a near-constant group does
not dwarf the others); groups with fewer than 2 distinct values get no KDE curve.
"""

from __future__ import annotations

import math
import os
import textwrap
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.measures import LABELS
from cloud3d.atomic import atomic_path

_REF_COLOR = "black"


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend with the figure style of every cloud3d plot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update(
        {"font.size": 10, "axes.titlesize": 11, "legend.fontsize": 8, "svg.hashsalt": "cloud3d"}
    )
    return plt


def save_figure(fig, base: str | os.PathLike) -> list[Path]:
    """Write ``fig`` as ``base.png`` (200 dpi) and ``base.svg`` atomically; return both paths."""
    base = Path(base)
    out = []
    for ext, kw in ((".png", {"dpi": 200}), (".svg", {"metadata": {"Date": None}})):
        path = base.with_name(base.name + ext)
        with atomic_path(path, suffix=ext) as tmp:
            fig.savefig(tmp, format=ext[1:], bbox_inches="tight", **kw)
        out.append(path)
    return out


def _label(measure: str) -> str:
    return LABELS.get(measure, measure)


def _unit(measure: str) -> str:
    label = _label(measure)
    return label[label.rfind("(") + 1 : -1] if label.endswith(")") else "unit"


def _finite(values) -> np.ndarray:
    v = np.asarray(values, dtype=np.float64)
    return v[np.isfinite(v)]


def _edges(all_values: np.ndarray, bins: int | None) -> np.ndarray:
    lo, hi = float(all_values.min()), float(all_values.max())
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    if bins is None:
        bins = int(np.clip(np.sqrt(all_values.size) * 1.5, 15, 60))
    return np.linspace(lo, hi, bins + 1)


def _draw(ax, values: np.ndarray, edges: np.ndarray, color, label: str, ref: bool) -> None:
    if values.size == 0:
        return
    ax.hist(
        values,
        bins=edges,
        density=True,
        histtype="stepfilled",
        alpha=0.18 if ref else 0.15,
        color="0.5" if ref else color,
        edgecolor="none",
    )
    lw = 2.4 if ref else 1.6
    ls = "--" if ref else "-"
    if np.unique(values).size >= 2:
        from scipy.stats import gaussian_kde

        pad = 0.05 * (edges[-1] - edges[0])
        xs = np.linspace(edges[0] - pad, edges[-1] + pad, 400)
        kde = gaussian_kde(values)
        std = float(values.std(ddof=1))
        min_bw = (
            edges[1] - edges[0]
        )  # never narrower than one histogram bin (keeps curves comparable)
        if kde.factor * std < min_bw:
            kde.set_bandwidth(min_bw / std)
        ax.plot(xs, kde(xs), color=color, lw=lw, ls=ls, label=label)
    else:
        ax.hist(
            values,
            bins=edges,
            density=True,
            histtype="step",
            color=color,
            lw=lw,
            ls=ls,
            label=label,
        )


def _colors(n: int):
    plt = pyplot()
    cmap = plt.get_cmap("tab10" if n <= 10 else "tab20")
    return [cmap(i % cmap.N) for i in range(n)]


def _groups(df: pd.DataFrame, reference_name: str) -> list[str]:
    return sorted(g for g in df["group"].unique() if g != reference_name)


def plot_density(
    df: pd.DataFrame,
    measure: str,
    out_base: str | os.PathLike,
    reference_name: str,
    bins: int | None = None,
    title: str | None = None,
) -> list[Path]:
    """Overlay of every group's density and the reference's (the paper's Fig. 3 style).

    ``df`` holds dataset and reference rows together (reference rows have
    ``group == reference_name``). Writes ``out_base.png`` and ``.svg``.
    """
    plt = pyplot()
    groups = _groups(df, reference_name)
    allv = _finite(df[measure])
    if allv.size == 0:
        raise ValueError(f"no finite values of {measure} to plot")
    edges = _edges(allv, bins)
    fig, ax = plt.subplots(figsize=(7.0, 4.2))
    ref = _finite(df.loc[df["group"] == reference_name, measure])
    _draw(ax, ref, edges, _REF_COLOR, f"{reference_name} (n={ref.size})", ref=True)
    for g, c in zip(groups, _colors(len(groups)), strict=True):
        v = _finite(df.loc[df["group"] == g, measure])
        _draw(ax, v, edges, c, f"{g} (n={v.size})", ref=False)
    ax.set_xlabel(_label(measure))
    ax.set_ylabel(f"Density (1/{_unit(measure)})")
    ax.set_title(title or f"{_label(measure).split(' (')[0]}: apps vs {reference_name}")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", frameon=False, ncol=2 if len(groups) > 6 else 1)
    try:
        return save_figure(fig, out_base)
    finally:
        plt.close(fig)


def plot_density_panels(
    df: pd.DataFrame,
    measure: str,
    out_base: str | os.PathLike,
    reference_name: str,
    bins: int | None = None,
) -> list[Path]:
    """One panel per app (its resolutions as separate curves), each against the reference."""
    plt = pyplot()
    data = df[df["group"] != reference_name]
    apps = sorted(a for a in data["app"].dropna().unique() if a != "")
    if not apps:
        raise ValueError("no dataset rows to plot")
    allv = _finite(df[measure])
    edges = _edges(allv, bins)
    ncols = min(3, len(apps))
    nrows = math.ceil(len(apps) / ncols)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(4.0 * ncols, 3.1 * nrows), squeeze=False, sharex=True
    )
    ref = _finite(df.loc[df["group"] == reference_name, measure])
    groups = _groups(df, reference_name)
    color_of = dict(zip(groups, _colors(len(groups)), strict=True))
    for ax, app in zip(axes.flat, apps, strict=False):
        _draw(ax, ref, edges, _REF_COLOR, f"{reference_name} (n={ref.size})", ref=True)
        for g in sorted(data.loc[data["app"] == app, "group"].unique()):
            v = _finite(data.loc[data["group"] == g, measure])
            _draw(ax, v, edges, color_of[g], f"{g} (n={v.size})", ref=False)
        ax.set_title(app)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(loc="best", frameon=False, fontsize=7)
    for ax in axes.flat[len(apps) :]:
        ax.set_visible(False)
    for ax in axes[-1, :]:
        ax.set_xlabel(_label(measure))
    for ax in axes[:, 0]:
        ax.set_ylabel(f"Density (1/{_unit(measure)})")
    fig.tight_layout()
    try:
        return save_figure(fig, out_base)
    finally:
        plt.close(fig)


def plot_box(
    df: pd.DataFrame,
    measure: str,
    out_base: str | os.PathLike,
    reference_name: str,
    order: Sequence[str] | None = None,
) -> list[Path]:
    """Violin (shape) plus box (quartiles, 1.5 IQR whiskers) per group; reference first."""
    plt = pyplot()
    groups = list(order) if order is not None else [reference_name, *_groups(df, reference_name)]
    values = [_finite(df.loc[df["group"] == g, measure]) for g in groups]
    keep = [(g, v) for g, v in zip(groups, values, strict=True) if v.size]
    if not keep:
        raise ValueError(f"no finite values of {measure} to plot")
    groups, values = [k[0] for k in keep], [k[1] for k in keep]
    fig, ax = plt.subplots(figsize=(max(5.0, 0.9 * len(groups) + 2), 4.2))
    pos = np.arange(1, len(groups) + 1)
    vio_idx = [i for i, v in enumerate(values) if np.unique(v).size >= 2]
    if vio_idx:
        parts = ax.violinplot(
            [values[i] for i in vio_idx], positions=pos[vio_idx], showextrema=False
        )
        colors = _colors(len(groups))
        for body, i in zip(parts["bodies"], vio_idx, strict=True):
            body.set_facecolor("0.6" if groups[i] == reference_name else colors[i])
            body.set_alpha(0.35)
    ax.boxplot(values, positions=pos, widths=0.25, showfliers=True, flierprops={"markersize": 3})
    ax.set_xticks(pos)
    ax.set_xticklabels(
        [f"{textwrap.fill(g, 18)}\n(n={v.size})" for g, v in zip(groups, values, strict=True)],
        rotation=30,
        ha="right",
    )
    ax.set_ylabel(_label(measure))
    ax.set_title(f"{_label(measure).split(' (')[0]} per group")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    try:
        return save_figure(fig, out_base)
    finally:
        plt.close(fig)
