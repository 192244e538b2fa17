"""``curves.png``: a training run's loss, bpp and PSNR against step and gigapixels seen.

Drawn from the run's ``log.csv`` (:data:`models.train_files.LOG_FIELDS`) beside it, and redrawn each
time ``cloud3d train`` validates and saves, so a run can be watched as it goes. Layout: three
rows (rate-distortion loss, bits per pixel, PSNR in dB) by two columns (x = optimizer step;
x = gigapixels of training crops seen, i.e. step x batch x crop^2 / 1e9, or the log's ``gpx``
column where it has one). Training rows are drawn as a thin line of their running mean over
``SMOOTH`` steps; validation rows as points joined by lines, one series per quality index of a
variable-rate model (``quality`` empty: one series).
"""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path

from cloud3d.atomic import atomic_path

#: steps in the running mean of the training curves
SMOOTH = 25

#: (log column, axis label) of the three rows
PANELS = (("loss", "loss: λ·255²·MSE + bpp"), ("bpp", "bits per pixel"), ("psnr", "PSNR RGB (dB)"))


def _num(v: str | None) -> float:
    try:
        return float(v) if v not in (None, "") else math.nan
    except ValueError:
        return math.nan


def read_log(path: str | os.PathLike, pixels_per_step: int | None = None) -> list[dict]:
    """The rows of ``log.csv`` as dicts of floats (``phase`` and ``quality`` kept as text), with
    ``gpx`` (gigapixels seen at that step) from the log or from ``pixels_per_step``."""
    rows = []
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            row = {k: _num(r.get(k)) for k in ("step", "loss", "bpp", "psnr", "gpx")}
            row["phase"], row["quality"] = r.get("phase", ""), r.get("quality") or ""
            if math.isnan(row["gpx"]) and pixels_per_step:
                row["gpx"] = row["step"] * pixels_per_step / 1e9
            rows.append(row)
    return rows


def _running_mean(values: list[float], n: int) -> list[float]:
    out, window, total = [], [], 0.0
    for v in values:
        window.append(v)
        total += v
        if len(window) > n:
            total -= window.pop(0)
        out.append(total / len(window))
    return out


def plot_curves(log_csv: str | os.PathLike, out_png: str | os.PathLike,
                pixels_per_step: int | None = None, title: str | None = None) -> Path:
    """Draw ``out_png`` (written atomically) from ``log_csv``; returns its path. Rows with a
    non-finite value are left out of that panel (a diverged step stays visible in log.csv)."""
    from analysis.plots import pyplot

    rows = read_log(log_csv, pixels_per_step)
    train = [r for r in rows if r["phase"] == "train"]
    val = [r for r in rows if r["phase"] == "validation"]
    xs = [("step", "optimizer step")]
    if any(math.isfinite(r["gpx"]) for r in rows):
        xs.append(("gpx", "gigapixels of training crops seen"))
    plt = pyplot()
    fig, axes = plt.subplots(len(PANELS), len(xs), figsize=(5.5 * len(xs), 8.4), squeeze=False,
                             layout="constrained")
    for i, (col, label) in enumerate(PANELS):
        for j, (xcol, xlabel) in enumerate(xs):
            ax = axes[i][j]
            pts = [(r[xcol], r[col]) for r in train if math.isfinite(r[col]) and math.isfinite(r[xcol])]
            if pts:
                ax.plot([p[0] for p in pts], _running_mean([p[1] for p in pts], SMOOTH), lw=0.8,
                        color="0.55", label=f"train (mean of {SMOOTH} steps)")
            for k, q in enumerate(sorted({r["quality"] for r in val}, key=lambda s: (len(s), s))):
                pts = [(r[xcol], r[col]) for r in val if r["quality"] == q
                       and math.isfinite(r[col]) and math.isfinite(r[xcol])]
                if pts:
                    ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", ms=3, lw=1,
                            color=f"C{k % 10}", label="validation" + (f" q{q}" if q else ""))
            if col == "loss" and all(r["loss"] > 0 for r in rows if math.isfinite(r["loss"])):
                ax.set_yscale("log")
            if j == 0:
                ax.set_ylabel(label)
            ax.grid(True, alpha=0.3)
            if i == len(PANELS) - 1:
                ax.set_xlabel(xlabel)
            if i == 0 and j == 0 and ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=7)
    last = rows[-1]["step"] if rows else 0
    fig.suptitle(title or f"{Path(log_csv).parent.name}: step {last:.0f}")
    out_png = Path(out_png)
    try:
        with atomic_path(out_png, suffix=".png") as tmp:
            fig.savefig(tmp, format="png", dpi=110)
    finally:
        plt.close(fig)
    return out_png
