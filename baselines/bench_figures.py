"""Figures of ``cloud3d bench-folder`` and ``cloud3d bench-video`` tables, and their report sections.

* :func:`folder_figure`: one point per row of a bench-folder CSV (:mod:`baselines.archive.folder_bench`):
  compressed size (MB = 10^6 bytes) against compress + decompress time (s), lossless rows filled,
  lossy rows hollow, each labelled with its method; and, when lossy rows have a PSNR, a second
  panel of their rate (bpp) against mean PSNR (dB). Failed rows (an ``error``) are left out.
* :func:`video_figure`: one panel per app-resolution group of a bench-video CSV
  (:mod:`baselines.video`), bit rate (Mbps at the run's fps) against mean PSNR (dB), one line
  per codec and rate mode, points in order of rate.

Both write ``base.png`` and ``base.svg`` (:func:`analysis.plots.save_figure`). The commands draw
them beside their CSV; ``cloud3d report --bench-folder CSV --bench-video CSV`` draws them into
the report folder with the tables below (:func:`report_sections`).
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from analysis.plots import pyplot, save_figure
from baselines import metrics
from baselines.html_report import _e, _figure, table_html
from cloud3d.errors import Cloud3dError


def _ok_rows(df: pd.DataFrame) -> pd.DataFrame:
    return df[df["error"].isna()] if "error" in df else df


def folder_figure(df: pd.DataFrame, base: str | os.PathLike) -> list[Path]:
    """Size-vs-time (and rate-vs-PSNR for lossy rows) of a bench-folder table; returns the
    PNG and SVG paths. Raises :class:`Cloud3dError` when no row succeeded."""
    ok = _ok_rows(df)
    if ok.empty:
        raise Cloud3dError("no successful bench-folder row to plot")
    lossy = ok[~ok["lossless"].astype(bool) & ok["mean_psnr"].notna()] if "mean_psnr" in ok else ok[:0]
    plt = pyplot()
    fig, axes = plt.subplots(1, 2 if len(lossy) else 1, figsize=(12 if len(lossy) else 6.4, 4.6),
                             squeeze=False, layout="constrained")
    ax = axes[0][0]
    for lossless, marker_face in ((True, None), (False, "none")):
        part = ok[ok["lossless"].astype(bool) == lossless]
        if part.empty:
            continue
        ax.scatter(part["total_s"], part["compressed_bytes"] / 1e6, s=36,
                   facecolors=marker_face or "C0", edgecolors="C0",
                   label="lossless" if lossless else "lossy")
        for _, r in part.iterrows():
            ax.annotate(r["method"], (r["total_s"], r["compressed_bytes"] / 1e6), fontsize=7,
                        xytext=(4, 3), textcoords="offset points")
    original_mb = float(ok["original_bytes"].iloc[0]) / 1e6
    ax.axhline(original_mb, color="0.5", lw=0.8, ls="--")
    ax.annotate(f"original PNGs {original_mb:.2f} MB", (0, original_mb), xycoords=("axes fraction", "data"),
                fontsize=7, color="0.4", xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel("compress + decompress time (s, median of runs)")
    ax.set_ylabel("compressed size (MB)")
    ax.set_ylim(bottom=0)
    ax.margins(x=0.3)  # room for the labels of the slowest rows
    ax.set_xlim(left=0)
    ax.set_title(f"{int(ok['files'].iloc[0])} files: size vs time")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    if len(lossy):
        ax2 = axes[0][1]
        for _, r in lossy.iterrows():
            ax2.scatter(r["bpp"], min(r["mean_psnr"], metrics.PSNR_CAP_DB), s=36, color="C1")
            ax2.annotate(r["method"], (r["bpp"], r["mean_psnr"]), fontsize=7, xytext=(4, 3),
                         textcoords="offset points")
        ax2.set_xlabel("rate (bits per pixel)")
        ax2.set_ylabel("PSNR RGB (dB, mean over images)")
        ax2.margins(x=0.25, y=0.15)
        ax2.set_title("lossy rows: rate vs PSNR")
        ax2.grid(True, alpha=0.3)
    try:
        return save_figure(fig, base)
    finally:
        plt.close(fig)


def video_figure(df: pd.DataFrame, base: str | os.PathLike) -> list[Path]:
    """Mbps-vs-PSNR of a bench-video table, one panel per app-resolution; returns the PNG and
    SVG paths. Raises :class:`Cloud3dError` when the table is empty."""
    if df.empty:
        raise Cloud3dError("no bench-video row to plot")
    groups = list(df.groupby(["app", "resolution"], sort=True))
    cols = min(3, len(groups))
    rows = -(-len(groups) // cols)
    plt = pyplot()
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 4.2 * rows), squeeze=False,
                             layout="constrained")
    for i, ((app, res), g) in enumerate(groups):
        ax = axes[i // cols][i % cols]
        for (codec, mode), c in g.groupby(["codec", "rate_mode"], sort=True):
            c = c.sort_values("mbps")
            ax.plot(c["mbps"], c["mean_psnr"].clip(upper=metrics.PSNR_CAP_DB), marker="o", ms=4,
                    label=f"{codec} ({mode})")
            for _, r in c.iterrows():
                ax.annotate(f"{mode} {int(r['value'])}", (r["mbps"], r["mean_psnr"]), fontsize=6,
                            xytext=(3, -9), textcoords="offset points", color="0.35")
        fps = g["fps"].iloc[0]
        ax.set_xlabel(f"bit rate (Mbps at {float(fps):g} fps)")
        ax.set_ylabel("PSNR RGB (dB, mean over frames)")
        ax.set_title(f"{app}-{res}: {int(g['frames'].iloc[0])} frames")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    for j in range(len(groups), rows * cols):
        axes[j // cols][j % cols].set_visible(False)
    try:
        return save_figure(fig, base)
    finally:
        plt.close(fig)


def read_table(path: str | os.PathLike, what: str) -> pd.DataFrame:
    """A bench-folder or bench-video CSV (``what`` names the command); a one-line
    :class:`Cloud3dError` naming the file if it cannot be read as one."""
    need = {"bench-folder": {"method", "compressed_bytes", "total_s", "lossless"},
            "bench-video": {"app", "resolution", "codec", "rate_mode", "value", "mbps", "mean_psnr"}}[what]
    try:
        df = pd.read_csv(path)
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise Cloud3dError(f"cannot read {path} as a {what} CSV: {str(exc).splitlines()[0]}") from None
    missing = sorted(need - set(df.columns))
    if missing:
        raise Cloud3dError(f"{path} is not a {what} CSV: no column {missing[0]!r}")
    return df


def report_sections(out: Path, folder_csv: str | os.PathLike | None,
                    video_csv: str | os.PathLike | None) -> str:
    """HTML sections for the report in ``out``: each given CSV's figure (drawn into ``out``)
    and its table. Empty when neither is given."""
    html = []
    if folder_csv is not None:
        df = read_table(folder_csv, "bench-folder")
        png = folder_figure(df, out / "bench_folder")[0]
        cols = [c for c in ("method", "lossless", "files", "compressed_bytes", "compression_rate", "bpp",
                            "compress_s", "decompress_s", "total_s", "bit_exact", "mean_psnr",
                            "mean_ms_ssim", "error") if c in df]
        html.append('<h2 id="folder">Whole folders (bench-folder)</h2>'
                    f'<p class="note">From <code>{_e(Path(folder_csv).resolve())}</code>.</p>'
                    + _figure(out, png, "compressed size vs compress + decompress time; lossy rows: "
                                        "rate vs PSNR") + table_html(df[cols]))
    if video_csv is not None:
        df = read_table(video_csv, "bench-video")
        png = video_figure(df, out / "bench_video")[0]
        cols = [c for c in ("app", "resolution", "codec", "rate_mode", "value", "frames", "mbps", "bpp",
                            "mean_psnr", "min_psnr", "encode_s", "decode_s") if c in df]
        html.append('<h2 id="video">Video sequences (bench-video)</h2>'
                    f'<p class="note">From <code>{_e(Path(video_csv).resolve())}</code>.</p>'
                    + _figure(out, png, "bit rate vs PSNR per app and resolution") + table_html(df[cols]))
    return "\n".join(html)
