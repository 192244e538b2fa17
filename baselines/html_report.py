"""``index.html``: one static, self-contained report page (no network, printable).

Figures are files next to the page (relative links); entropy figures from the
analysis stage are copied into ``entropy/`` under the report folder so the
folder can be moved or zipped as a whole. Every link is checked to exist
before it is written. A small inline script marks figures that fail to load
(``body[data-broken-images]`` and a visible warning), which is also what the
tests look for when they render the page in headless Chromium.
"""

from __future__ import annotations

import html
import json
import math
import os
import shutil
from pathlib import Path
from typing import Any

import pandas as pd

from baselines.bd_columns import BD_COLUMNS, BD_TITLES
from baselines.bdrate import MIN_OVERLAP
from cloud3d.atomic import atomic_write_text
from cloud3d.provenance import utc_now

#: entropy output files written by the analysis stage (``cloud3d entropy``)
ENTROPY_FIGURE_GLOBS = ("density_*.png", "density_panels_*.png", "box_*.png")

_CSS = """
body { font-family: system-ui, -apple-system, 'Segoe UI', sans-serif; max-width: 1100px; margin: 2em auto;
       padding: 0 1em; color: #222; line-height: 1.45; }
h1 { border-bottom: 2px solid #444; padding-bottom: .2em; }
h2 { margin-top: 2em; border-bottom: 1px solid #bbb; }
table { border-collapse: collapse; margin: .8em 0; font-size: 0.88em; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }
th { background: #f0f0f0; }
td.t, th.t { text-align: left; white-space: nowrap; }
figure { display: inline-block; margin: .5em 1em .5em 0; vertical-align: top; }
figure img { width: 480px; max-width: 100%; border: 1px solid #ddd; }
figcaption { font-size: .85em; color: #555; }
pre { background: #f6f6f6; padding: .6em; white-space: pre-wrap; word-break: break-all; font-size: .85em; }
.note { color: #666; font-size: .9em; }
.missing { color: #a33; }
#broken { display: none; color: #a33; font-weight: bold; }
td.flagged { color: #888; background: #fbf3e4; font-style: italic; }
td.flagged small { font-size: .8em; }
nav a { margin-right: 1em; }
@media print {
  body { max-width: none; margin: 0; font-size: 10pt; }
  nav, #broken { display: none !important; }
  h2 { page-break-before: auto; page-break-after: avoid; }
  figure, table { page-break-inside: avoid; }
  figure img { max-width: 48%; }
  a { color: inherit; text-decoration: none; }
}
"""

_SCRIPT = """
window.addEventListener('load', function () {
  var bad = [];
  document.querySelectorAll('img').forEach(function (im) {
    if (!im.complete || im.naturalWidth === 0) { bad.push(im.getAttribute('src')); }
  });
  document.body.setAttribute('data-broken-images', String(bad.length));
  if (bad.length) {
    var el = document.getElementById('broken');
    el.textContent = bad.length + ' figure(s) failed to load: ' + bad.join(', ');
    el.style.display = 'block';
  }
});
"""


def _e(v: Any) -> str:
    return html.escape(str(v), quote=True)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        if math.isnan(v):
            return "–"
        if math.isinf(v):
            return "inf"
        if abs(v) >= 1000 or v == int(v) and abs(v) < 1e6:
            return f"{v:.6g}"
        return f"{v:.4g}" if abs(v) < 0.01 else f"{v:.3f}"
    return str(v)


def table_html(df: pd.DataFrame, max_rows: int = 400, notes: pd.DataFrame | None = None) -> str:
    """A pandas DataFrame as an escaped HTML table (text columns left-aligned).

    ``notes``, same index and columns as ``df`` (or a subset of the columns), marks cells:
    a non-empty note shows the value in a ``flagged`` cell (grey, in brackets, with the
    note under it and as its tooltip) instead of like the others.
    """
    if df.empty:
        return '<p class="note">(empty)</p>'
    text_cols = {c for c in df.columns if not pd.api.types.is_numeric_dtype(df[c])}
    head = "".join(f'<th class="{"t" if c in text_cols else ""}">{_e(c)}</th>' for c in df.columns)
    body = []
    for i, r in df.head(max_rows).iterrows():
        cells = []
        for c in df.columns:
            cls = "t" if c in text_cols else ""
            note = notes.at[i, c] if notes is not None and c in notes.columns else ""
            if note:
                cells.append(f'<td class="{cls} flagged" title="{_e(note)}">({_e(_fmt(r[c]))})'
                             f"<br><small>{_e(note)}</small></td>")
            else:
                cells.append(f'<td class="{cls}">{_e(_fmt(r[c]))}</td>')
        body.append(f"<tr>{''.join(cells)}</tr>")
    more = f'<p class="note">{len(df) - max_rows} more rows in the CSV.</p>' if len(df) > max_rows else ""
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>{more}"


def _bd_section(bd: pd.DataFrame) -> str:
    """The BD table: values from curves overlapping on less than 75 % of their range are flagged cells."""
    titles = BD_TITLES
    view = bd[["app", "resolution", "codec", "n_points", "anchor_points",
               *BD_COLUMNS.values(), "reason"]].rename(columns={BD_COLUMNS[k]: v for k, v in titles.items()})
    notes = pd.DataFrame("", index=bd.index, columns=list(titles.values()))
    for name, title in titles.items():
        low = bd[f"{name}_low_overlap"].astype(bool) & bd[BD_COLUMNS[name]].notna()
        notes.loc[low, title] = [f"low overlap: {v:.0%}" for v in bd.loc[low, f"{name}_overlap"]]
    n_low = int((notes != "").to_numpy().sum())
    legend = (f'<p class="note">{n_low} value(s) in grey brackets come from curves that share less than '
              f"{MIN_OVERLAP:.0%} of their range (overlap = common interval / joint interval on the axis "
              "the delta averages over, as the bjontegaard package computes it): they describe a small part "
              "of the curves; do not compare them with the others. The overlap of every value is in "
              "bd_rate.csv.</p>") if n_low else ""
    return table_html(view, notes=notes) + legend


def _rel(out: Path, p: Path) -> str:
    return Path(os.path.relpath(p, out)).as_posix()


def _figure(out: Path, path: Path, caption: str, extra: Path | None = None) -> str:
    if not path.is_file():
        return f'<p class="missing">figure missing: {_e(path.name)}</p>'
    link = f' (<a href="{_e(_rel(out, extra))}">SVG</a>)' if extra is not None and extra.is_file() else ""
    return (f'<figure><img src="{_e(_rel(out, path))}" alt="{_e(caption)}">'
            f"<figcaption>{_e(caption)}{link}</figcaption></figure>")


def _dataset_section(dataset: str | os.PathLike | None) -> str:
    if dataset is None:
        return '<p class="note">No dataset folder given (use <code>--dataset DIR</code>).</p>'
    from cloud3d.errors import Cloud3dError
    from cloud3d_dataset.manifest import load_manifest

    try:
        df = load_manifest(dataset)
    except Cloud3dError as exc:
        return f'<p class="missing">Dataset summary unavailable: {_e(exc)}</p>'
    counts = df.groupby(["app", "resolution", "split"]).size().unstack("split", fill_value=0)
    counts = counts.reindex(columns=[s for s in ("train", "validation", "test") if s in counts.columns])
    counts["total"] = counts.sum(axis=1)
    counts = counts.reset_index()
    size = df.groupby(["app", "resolution"])[["width", "height"]].first().reset_index()
    counts = counts.merge(size, on=["app", "resolution"], how="left")
    return (f"<p>Dataset <code>{_e(Path(dataset).resolve())}</code>: {len(df)} images, "
            f"{df['bytes'].sum() / 1e6:.1f} MB of PNG (counts from <code>manifest.csv</code>).</p>"
            + table_html(counts))


def _entropy_tables(summary: pd.DataFrame) -> str:
    """Two compact tables from the analysis ``summary.csv``: luma entropy in full, then means of every measure."""
    parts = []
    lum = summary[summary["measure"] == "entropy_luma"]
    if not lum.empty:
        cols = [c for c in ("group", "n", "mean", "median", "std", "p5", "p95", "ks_stat", "ks_pvalue",
                            "wasserstein", "share_below_ref_median") if c in lum.columns]
        parts.append("<h3>Luma entropy H(Y), bits</h3>" + table_html(lum[cols]))
        parts.append('<p class="note">ks_stat/ks_pvalue: two-sample Kolmogorov-Smirnov test against the '
                     "reference; wasserstein in bits; share_below_ref_median: fraction of the group's images "
                     "with lower entropy than the reference median.</p>")
    if {"group", "measure", "mean"} <= set(summary.columns):
        means = summary.pivot_table(index="group", columns="measure", values="mean", sort=False).reset_index()
        parts.append("<h3>Mean of every measure per group</h3>" + table_html(means))
    parts.append('<p><a href="entropy/summary.csv">full summary table (CSV)</a></p>')
    return "\n".join(parts)


def _entropy_section(out: Path, entropy: str | os.PathLike | None) -> str:
    if entropy is None:
        return '<p class="note">No entropy analysis given (use <code>--entropy ENTROPY_OUT_DIR</code>).</p>'
    src = Path(entropy)
    if not src.is_dir():
        return f'<p class="missing">Entropy folder not found: {_e(src)}</p>'
    parts: list[str] = []
    figs_dir = src / "figures"
    found: list[Path] = []
    if figs_dir.is_dir():
        for pattern in ENTROPY_FIGURE_GLOBS:
            found += [f for f in sorted(figs_dir.glob(pattern)) if f not in found]
    # the paper's Fig. 3 (luma entropy density) first, then the summary table, then the rest
    found.sort(key=lambda f: f.name != "density_entropy_luma.png")
    figures = []
    if found:
        dest = out / "entropy"
        dest.mkdir(parents=True, exist_ok=True)
        for f in found:
            target = dest / f.name
            shutil.copyfile(f, target)
            figures.append(_figure(out, target, f.stem.replace("_", " ")))
        parts.append(figures[0])
    else:
        parts.append(f'<p class="missing">No entropy figures in {_e(figs_dir)} '
                     "(expected figures/density_&lt;measure&gt;.png).</p>")
    summary = src / "summary.csv"
    if summary.is_file():
        try:
            parts.append(_entropy_tables(pd.read_csv(summary)))
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
            parts.append(f'<p class="missing">cannot read {_e(summary)}: {_e(exc)}</p>')
    else:
        parts.append(f'<p class="missing">No summary.csv in {_e(src)}.</p>')
    if len(figures) > 1:
        parts.append("<h3>More entropy figures</h3>" + "\n".join(figures[1:]))
    for name in ("per_image.csv", "summary.csv"):
        if (src / name).is_file():
            (out / "entropy").mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src / name, out / "entropy" / name)
    if (src / "per_image.csv").is_file():
        parts.append('<p><a href="entropy/per_image.csv">per-image entropy table (CSV)</a></p>')
    run = src / "run.json"
    if run.is_file():
        try:
            info = json.loads(run.read_text())
            parts.append("<details><summary>Analysis run (run.json)</summary><pre>"
                         + _e(json.dumps(info, indent=2, sort_keys=True)) + "</pre></details>")
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            parts.append(f'<p class="missing">cannot read {_e(run)}: {_e(exc)}</p>')
    else:
        parts.append(f'<p class="missing">No run.json in {_e(src)}.</p>')
    return "\n".join(parts)


def _runs_section(runs: pd.DataFrame) -> str:
    if runs.empty:
        return '<p class="note">No runs recorded.</p>'
    parts = []
    for _, r in runs.iterrows():
        summ = r["summary"] or {}
        line = ", ".join(f"{k}={summ[k]}" for k in ("ok", "failed", "skipped", "total") if k in summ)
        parts.append(
            f"<h3>Run {int(r['id'])}: {_e(r['started'])} → {_e(r['finished'] or 'unfinished')}</h3>"
            f"<pre>{_e(r['command'])}</pre><p>{_e(line)}{' (interrupted)' if summ.get('interrupted') else ''}</p>"
        )
    last = runs.iloc[-1]
    parts.append("<h3>Software versions (last run)</h3><pre>"
                 + _e(json.dumps(last["versions"], indent=2, sort_keys=True)) + "</pre>")
    parts.append("<h3>Machine (last run)</h3><pre>"
                 + _e(json.dumps(last["machine"], indent=2, sort_keys=True)) + "</pre>")
    return "\n".join(parts)


def _rd_figures_html(out: Path, rd: dict[str, dict[str, list[Path]]]) -> str:
    """The RD figures of each curve group: a PNG (linking its SVG) per metric."""
    parts = []
    for name, figs in rd.items():
        parts.append(f"<h3>{_e(name)}</h3>")
        for metric, label in (("psnr", "PSNR"), ("msssim", "MS-SSIM")):
            paths = figs.get(metric, [])
            png = next((p for p in paths if p.suffix == ".png"), None)
            svg = next((p for p in paths if p.suffix == ".svg"), None)
            if png is not None:
                parts.append(_figure(out, png, f"{name}: {label} vs bpp", svg))
    return "".join(parts)


def _machine_line(runs: pd.DataFrame) -> str:
    """The last run's machine in a few words (CPU, cores, RAM)."""
    machine = runs["machine"].iloc[-1] if len(runs) else {}
    if not machine:
        return "unknown machine"
    return (f"{machine.get('cpu_model', '?')}, {machine.get('cores', '?')} logical cores, "
            f"{machine.get('ram_gib', '?')} GiB RAM")


def _table_links_html(out: Path) -> str:
    """Links to the report's CSV tables (and CompressAI JSON files) that exist."""
    links = [p for p in ("per_image.csv", "per_quality.csv", "bd_rate.csv", "timing.csv") if (out / p).is_file()]
    cj = sorted((out / "compressai").glob("*.json")) if (out / "compressai").is_dir() else []
    html = " · ".join(f'<a href="{_e(p)}">{_e(p)}</a>' for p in links)
    if cj:
        html += " · CompressAI JSON: " + " ".join(f'<a href="{_e(_rel(out, p))}">{_e(p.stem)}</a>' for p in cj)
    return html


def _failed_html(allrows: pd.DataFrame, n_failed: int) -> str:
    """The failed tasks (up to 50 rows), or nothing."""
    if not n_failed:
        return ""
    f = allrows[allrows["status"] != "ok"][["relpath", "codec_label", "quality", "error"]]
    return f"<h3>Failed tasks ({n_failed})</h3>" + table_html(f, max_rows=50)


def write_index_html(
    out: Path,
    title: str,
    results: Path,
    allrows: pd.DataFrame,
    pq: pd.DataFrame,
    bd: pd.DataFrame,
    anchor: str,
    timing: pd.DataFrame,
    runs: pd.DataFrame,
    rd: dict[str, dict[str, list[Path]]],
    dataset: str | os.PathLike | None = None,
    entropy: str | os.PathLike | None = None,
    extra_html: str = "",
) -> Path:
    """Write ``out/index.html`` from the report's tables and figure paths; returns its path.
    ``extra_html``: sections placed after the timing tables (bench-folder, bench-video)."""
    n_ok = int((allrows["status"] == "ok").sum())
    n_failed = len(allrows) - n_ok
    rd_html = _rd_figures_html(out, rd)
    pq_view = pq[["codec_label", "quality_param", "quality", "app", "resolution", "n", "mean_bpp",
                  "mean_psnr", "psnr_of_mean_mse", "mean_ms_ssim", "ms_ssim_db", "encode_mean_s",
                  "decode_mean_s"]]
    t_view = timing[["codec", "resolution", "n", "encode_mean_s", "encode_median_s", "decode_mean_s",
                     "decode_median_s", "convert_enc_mean_s", "convert_dec_mean_s"]]
    machine_line = _machine_line(runs)
    link_html = _table_links_html(out)
    failed_html = _failed_html(allrows, n_failed)

    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_e(title)}</title>
<style>{_CSS}</style>
</head><body data-broken-images="unknown">
<h1>{_e(title)}</h1>
<p class="note">Generated {_e(utc_now().strftime('%Y-%m-%d %H:%M UTC'))} from
<code>{_e(results.resolve())}</code>: {n_ok} successful and {n_failed} failed tasks.</p>
<p id="broken"></p>
<nav><a href="#dataset">Dataset</a><a href="#entropy">Entropy</a><a href="#rd">RD curves</a>
<a href="#bd">BD-rate</a><a href="#timing">Timing</a><a href="#provenance">Commands &amp; versions</a></nav>
<p>Tables: {link_html}</p>

<h2 id="dataset">Dataset</h2>
{_dataset_section(dataset)}

<h2 id="entropy">Entropy analysis</h2>
{_entropy_section(out, entropy)}

<h2 id="rd">Rate-distortion curves</h2>
<p class="note">Rate: mean bits per pixel (8 × bytes / (W × H)). PSNR: mean of per-image PSNR on 8-bit RGB
(peak 255, MSE over all pixels and channels); MS-SSIM: -10 log10(1 - mean MS-SSIM) on RGB. Lossless points
(PSNR = inf) are left out of the plots.</p>
{rd_html}
<h3>Per-quality means</h3>
{table_html(pq_view)}
{failed_html}

<h2 id="bd">BD-rate against {_e(anchor)}</h2>
<p class="note">Bjontegaard deltas with piecewise cubic (PCHIP) interpolation of log10(bpp) vs quality
over the overlapping range (VCEG-M33 method with PCHIP instead of the cubic polynomial). Negative BD-rate:
fewer bits than {_e(anchor)} at equal quality. NaN rows give their reason.</p>
{_bd_section(bd)}

<h2 id="timing">Timing</h2>
<p class="note">Mean and median wall seconds per frame (time.perf_counter; external processes included,
colour conversion reported separately) on: {_e(machine_line)}.</p>
{table_html(t_view)}
{extra_html}
<h2 id="provenance">Commands and versions</h2>
{_runs_section(runs)}
<script>{_SCRIPT}</script>
</body></html>
"""
    path = out / "index.html"
    atomic_write_text(path, page)
    return path
