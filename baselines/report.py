"""Turn a results store into tables, RD plots, BD-rate, timing, CompressAI JSON and index.html.

Averaging (stated in every table header and in docs/baselines.md):

* ``mean_psnr`` is the arithmetic mean of per-image PSNR (each capped at
  100 dB so lossless images stay finite); ``psnr_of_mean_mse`` is the PSNR of
  the mean per-image MSE. RD curves and BD-rates use ``mean_psnr``.
* ``mean_ms_ssim`` is the mean of per-image MS-SSIM; ``ms_ssim_db`` is
  ``-10 log10(1 - mean_ms_ssim)`` (as CompressAI's plots do) and
  ``mean_ms_ssim_db`` the mean of per-image dB values (capped at 100 dB).
* ``mean_bpp`` is the mean of per-image bpp (8 * bytes / (W * H)).

Only ``status == "ok"`` rows enter the aggregates; failed rows are listed in
``per_image.csv`` with their error.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis.plots import pyplot, save_figure
from baselines import metrics
from baselines.bd_columns import BD_COLUMNS, BD_VALUES
from baselines.bdrate import MIN_OVERLAP, bd_overlap, bd_quality, bd_rate
from baselines.bench.store import ResultsStore
from baselines.bench.tasks import label_slug
from baselines.bench_figures import report_sections
from baselines.html_report import write_index_html
from cloud3d.atomic import atomic_write_text
from cloud3d.errors import Cloud3dError

#: preferred anchors, in order, when ``--anchor`` is not given
ANCHOR_PREFERENCE = ("bpg", "vtm", "hevc-intra", "jpeg")
GROUP = ["codec_label", "quality_param", "quality", "app", "resolution"]


def _capped(s: pd.Series) -> pd.Series:
    return s.astype(float).clip(upper=metrics.PSNR_CAP_DB)


def per_quality_table(ok: pd.DataFrame, by: list[str] | None = None) -> pd.DataFrame:
    """Aggregate ok rows per (codec, quality, app, resolution) (or ``by``); see module docstring."""
    by = by or GROUP
    rows = []
    for key, g in ok.groupby(by, sort=True, dropna=False):
        mean_ms = float(g["ms_ssim"].mean())
        rec: dict[str, Any] = dict(zip(by, key if isinstance(key, tuple) else (key,), strict=True))
        rec.update(
            n=len(g),
            mean_bpp=float(g["bpp"].mean()),
            mean_bytes=float(g["bytes"].mean()),
            mean_psnr=float(_capped(g["psnr_rgb"]).mean()),
            psnr_of_mean_mse=metrics.cap_psnr(metrics.psnr_from_mse(float(g["mse"].mean()))),
            n_psnr_capped=int(np.isinf(g["psnr_rgb"].astype(float)).sum()),
            mean_ms_ssim=mean_ms,
            ms_ssim_db=metrics.cap_psnr(metrics.ms_ssim_db(mean_ms)),
            mean_ms_ssim_db=float(_capped(g["ms_ssim_db"]).mean()),
        )
        for col, name in (("encode_s", "encode"), ("decode_s", "decode")):
            v = g[col].astype(float)
            rec[f"{name}_mean_s"] = float(v.mean())
            rec[f"{name}_median_s"] = float(v.median())
            rec[f"{name}_std_s"] = float(v.std(ddof=1)) if len(v) > 1 else 0.0
        rec["convert_enc_mean_s"] = float(g["convert_enc_s"].astype(float).mean())
        rec["convert_dec_mean_s"] = float(g["convert_dec_s"].astype(float).mean())
        rows.append(rec)
    return pd.DataFrame(rows)


def choose_anchor(labels: list[str], anchor: str | None) -> str:
    """The anchor curve label: ``anchor`` if present, else the first of :data:`ANCHOR_PREFERENCE`."""
    if anchor is not None:
        if anchor not in labels:
            raise Cloud3dError(f"anchor codec {anchor!r} has no results; codecs in this store: {', '.join(labels)}")
        return anchor
    for name in ANCHOR_PREFERENCE:
        if name in labels:
            return name
    return sorted(labels)[0]


def bd_table(pq: pd.DataFrame, anchor: str) -> pd.DataFrame:
    """BD-rate (%) and BD-PSNR (dB) of every codec vs ``anchor`` per (app, resolution).

    Uses mean bpp and mean PSNR per quality (PCHIP, see :mod:`baselines.bdrate`);
    also BD-rate on MS-SSIM dB. Each value has ``<name>_overlap``, the share (0..1) of
    the two curves' joint range that both cover on the axis it averages over (quality
    for BD-rate, log10 bpp for BD-PSNR), and ``<name>_low_overlap``, True below
    :data:`baselines.bdrate.MIN_OVERLAP` (75 %): such a value describes a small part of
    the curves and is flagged in ``reason`` and on the page. ``reason`` explains NaNs.
    """
    rows = []
    for (app, res), g in pq.groupby(["app", "resolution"], sort=True):
        a = g[g["codec_label"] == anchor]
        for label, t in g.groupby("codec_label", sort=True):
            if label == anchor:
                continue
            rec: dict[str, Any] = {"app": app, "resolution": res, "codec": label, "anchor": anchor,
                                   "n_points": len(t), "anchor_points": len(a)}
            reasons = []
            for name, what, col, axis in BD_VALUES:
                if a.empty:
                    value, overlap, why = math.nan, math.nan, ""
                else:
                    curves = (a["mean_bpp"], a[col], t["mean_bpp"], t[col])
                    value, why = (bd_quality if name == "bd_psnr" else bd_rate)(*curves)
                    overlap = bd_overlap(*curves, axis=axis)
                low = bool(overlap < MIN_OVERLAP)  # False for NaN (unusable curve: see reason)
                rec.update({BD_COLUMNS[name]: value, f"{name}_overlap": overlap, f"{name}_low_overlap": low})
                if why:
                    reasons.append(f"{what}: {why}")
                elif low:
                    reasons.append(f"{what}: curves overlap on {overlap:.0%} of their "
                                   f"{'quality' if axis == 'quality' else 'log-rate'} range "
                                   f"(< {MIN_OVERLAP:.0%}): unreliable")
            if a.empty:
                reasons = [f"anchor {anchor} has no results for {app}-{res}"]
            rec["reason"] = "; ".join(reasons)
            rows.append(rec)
    cols = ["app", "resolution", "codec", "anchor", "n_points", "anchor_points"]
    for name, *_ in BD_VALUES:
        cols += [BD_COLUMNS[name], f"{name}_overlap", f"{name}_low_overlap"]
    return pd.DataFrame(rows, columns=[*cols, "reason"])


def timing_table(ok: pd.DataFrame, machine: dict[str, Any]) -> pd.DataFrame:
    """Mean/median encode and decode seconds per frame per codec and resolution (paper Table 2 style)."""
    rows = []
    for (label, res), g in ok.groupby(["codec_label", "resolution"], sort=True):
        rows.append({
            "codec": label, "resolution": res, "n": len(g),
            "encode_mean_s": float(g["encode_s"].mean()), "encode_median_s": float(g["encode_s"].median()),
            "decode_mean_s": float(g["decode_s"].mean()), "decode_median_s": float(g["decode_s"].median()),
            "convert_enc_mean_s": float(g["convert_enc_s"].mean()),
            "convert_dec_mean_s": float(g["convert_dec_s"].mean()),
            "hosts": ",".join(sorted({str(h) for h in g["host"].dropna()})),
            "cpu_model": machine.get("cpu_model", ""), "cores": machine.get("cores", ""),
            "ram_gib": machine.get("ram_gib", ""),
        })
    return pd.DataFrame(rows)


def _finite(v: float) -> float | None:
    return float(v) if v is not None and math.isfinite(float(v)) else None


def _quality_value(q: Any) -> Any:
    try:
        return float(q)
    except (TypeError, ValueError):
        return str(q)  # e.g. a learned codec's checkpoint path


def compressai_json(pq: pd.DataFrame, label: str, description: str) -> dict[str, Any]:
    """CompressAI-style results dict for one codec curve (points sorted by bpp)."""
    g = pq[pq["codec_label"] == label].sort_values("mean_bpp")
    return {
        "name": label,
        "description": description,
        "results": {
            "quality": [_quality_value(q) for q in g["quality"]],
            "bpp": [_finite(v) for v in g["mean_bpp"]],
            "psnr-rgb": [_finite(v) for v in g["mean_psnr"]],
            "ms-ssim-rgb": [_finite(v) for v in g["mean_ms_ssim"]],
            "ms-ssim-rgb-db": [_finite(v) for v in g["ms_ssim_db"]],
            "encoding_time": [_finite(v) for v in g["encode_mean_s"]],
            "decoding_time": [_finite(v) for v in g["decode_mean_s"]],
        },
    }


def rd_plots(pq: pd.DataFrame, out: Path) -> dict[str, dict[str, list[Path]]]:
    """``rd_<app>-<res>_psnr`` and ``_msssim`` PNG+SVG, one line per codec; returns paths by group.

    Lossless points (PSNR capped at 100 dB) are left out of the plots.
    """
    plt = pyplot()
    made: dict[str, dict[str, list[Path]]] = {}
    for (app, res), g in pq.groupby(["app", "resolution"], sort=True):
        name = f"{app}-{res}"
        made[name] = {}
        for metric, col, ylabel in (("psnr", "mean_psnr", "PSNR RGB (dB, mean over images)"),
                                    ("msssim", "ms_ssim_db", "MS-SSIM RGB (dB, -10 log10(1 - mean))")):
            fig, ax = plt.subplots(figsize=(6.4, 4.4))
            for label, c in g.groupby("codec_label", sort=True):
                c = c[c["mean_psnr"] < metrics.PSNR_CAP_DB].sort_values("mean_bpp")
                if c.empty:
                    continue
                ax.plot(c["mean_bpp"], c[col], marker="o", ms=4, label=label)
            ax.set_xlabel("rate (bits per pixel, mean over images)")
            ax.set_ylabel(ylabel)
            ax.set_title(f"{name}: {'PSNR' if metric == 'psnr' else 'MS-SSIM'} vs rate")
            ax.grid(True, alpha=0.3)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=8)
            try:
                made[name][metric] = save_figure(fig, out / f"rd_{name}_{metric}")
            finally:
                plt.close(fig)
    return made


def _write_csv(df: pd.DataFrame, path: Path) -> Path:
    atomic_write_text(path, df.to_csv(index=False, lineterminator="\n"))
    return path


def write_report(
    results: str | os.PathLike,
    out: str | os.PathLike,
    anchor: str | None = None,
    dataset: str | os.PathLike | None = None,
    entropy: str | os.PathLike | None = None,
    title: str | None = None,
    bench_folder: str | os.PathLike | None = None,
    bench_video: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Write every report file into ``out`` and return ``{name: path(s)}``.

    Files: ``per_image.csv``, ``per_quality.csv``, ``bd_rate.csv``,
    ``timing.csv``, ``rd_<app>-<res>_{psnr,msssim}.{png,svg}``,
    ``compressai/<codec>.json`` (all images) and
    ``compressai/<app>-<res>/<codec>.json``, and ``index.html``; with ``bench_folder`` /
    ``bench_video`` (CSVs of those commands) also ``bench_folder.{png,svg}`` /
    ``bench_video.{png,svg}`` and their sections (:mod:`baselines.bench_figures`).
    """
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise Cloud3dError(f"cannot create report folder {out}: {exc.strerror}") from None
    with ResultsStore(results, readonly=True) as store:
        allrows = store.results()
        runs = store.runs()
    if allrows.empty:
        raise Cloud3dError(f"{results} holds no results yet: run `cloud3d bench` first")
    ok = allrows[allrows["status"] == "ok"].copy()
    if ok.empty:
        raise Cloud3dError(f"every task in {results} failed; see the error column (e.g. with sqlite3)")
    machine = runs["machine"].iloc[-1] if len(runs) else {}
    files: dict[str, Any] = {}
    files["per_image"] = _write_csv(allrows, out / "per_image.csv")
    pq = per_quality_table(ok)
    files["per_quality"] = _write_csv(pq, out / "per_quality.csv")
    labels = sorted(pq["codec_label"].unique())
    anchor = choose_anchor(labels, anchor)
    bd = bd_table(pq, anchor)
    files["bd_rate"] = _write_csv(bd, out / "bd_rate.csv")
    timing = timing_table(ok, machine)
    files["timing"] = _write_csv(timing, out / "timing.csv")
    files["rd"] = rd_plots(pq, out)

    overall = per_quality_table(ok, by=["codec_label", "quality_param", "quality"])
    cj: list[Path] = []
    versions = ok.groupby("codec_label")["codec_version"].first().to_dict()
    for label in labels:
        desc = f"{label} ({versions.get(label, '')}), mean over all images in {Path(results).name}"
        p = out / "compressai" / f"{label_slug(label)}.json"
        atomic_write_text(p, json.dumps(compressai_json(overall, label, desc), indent=2) + "\n")
        cj.append(p)
        for (app, res), g in pq.groupby(["app", "resolution"], sort=True):
            if label in set(g["codec_label"]):
                p = out / "compressai" / f"{app}-{res}" / f"{label_slug(label)}.json"
                d = f"{label} ({versions.get(label, '')}), mean over {app}-{res}"
                atomic_write_text(p, json.dumps(compressai_json(g, label, d), indent=2) + "\n")
                cj.append(p)
    files["compressai"] = cj
    if dataset is None:
        ds = sorted({str(d) for d in ok["dataset"].dropna()})
        if len(ds) == 1 and (Path(ds[0]) / "manifest.csv").is_file():
            dataset = ds[0]  # the dataset the results came from, when it is still there
    files["index"] = write_index_html(
        out, title=title or "cloud3d baseline report", results=Path(results), allrows=allrows, pq=pq,
        bd=bd, anchor=anchor, timing=timing, runs=runs, rd=files["rd"], dataset=dataset, entropy=entropy,
        extra_html=report_sections(out, bench_folder, bench_video),
    )
    return files
