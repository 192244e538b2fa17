"""Latent overfitting: BD-rate gain and encode-time cost per step count, on real frames.

    python benchmarks/overfit_gain.py /work/data/dataset --model runs/supertuxkart/best.pt \\
        --app supertuxkart --frames 2 --crop 256 --steps 0,50,200,500 --csv lof.csv

Rate points: every quality of a variable-rate checkpoint (``--qualities`` picks some; the
lambda of the cost is that quality's), or each of several fixed-rate checkpoints
(``--model a.pt,b.pt``; the lambda each records). Frames: ``--frames`` evenly spaced frames of
the dataset's test split for ``--app`` (720p), optionally centre-cropped to ``--crop`` pixels
a side (0: whole frames; on a CPU one step costs about a forward and a backward pass of the
synthesis, so whole 720p frames take seconds per step).

For each rate point, frame and step count the stream comes from
:func:`models.overfit.compress_overfit` (step count 0: the plain encoder); rate is the
stream's bytes, PSNR that of the unchanged decoder's output. Encode time: the whole call
(``time.perf_counter``; with overfitting it includes the plain encode, the refinement, the
overfitted encode and both decodes of the keep-the-better check), after one untimed warm-up
encode per rate point; ``refine_s`` is the refinement alone. Per step count the script
prints the BD-rate (and BD-PSNR) of the mean RD curve (over frames, one point per rate
point) against step count 0, the mean encode time and its ratio to the plain encoder, and
how often the overfitted stream was kept.

Rows go to ``--csv`` as they are made (pandas-loadable); a rerun skips the rows already
there, so an interrupted run resumes. Run it niced on a shared machine.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

FIELDS = ["app", "frame", "crop", "point", "quality", "lambda", "steps", "bytes", "bpp", "psnr",
          "mse", "cost", "kept", "encode_s", "refine_s", "greedy_moves", "model"]


def _frames(dataset: str, app: str, n: int) -> list[Path]:
    from cloud3d_dataset.manifest import image_paths

    df = image_paths(dataset, split="test", app=app, resolution="720p")
    paths = sorted(df["abspath"], key=lambda p: int(Path(p).stem))
    pick = np.unique(np.linspace(0, len(paths) - 1, min(n, len(paths))).round().astype(int))
    return [Path(paths[i]) for i in pick]


def _crop(rgb: np.ndarray, side: int) -> np.ndarray:
    if side <= 0:
        return rgb
    h, w = rgb.shape[:2]
    s = min(side, h, w)
    y0, x0 = (h - s) // 2, (w - s) // 2
    return np.ascontiguousarray(rgb[y0 : y0 + s, x0 : x0 + s])


def _points(models: list[str], qualities: str | None) -> list[dict]:
    """``{"name", "model", "quality", "lambda", "path"}`` per rate point (models prepared)."""
    from models.checkpoint import load_checkpoint
    from models.latent_model import model_qualities
    from models.prepared import prepare

    out = []
    for path in models:
        model, meta = load_checkpoint(path)
        pm = prepare(model, "cpu")
        n = model_qualities(model)
        if n:
            qs = range(n) if qualities is None else [int(q) for q in qualities.split(",")]
            out += [{"name": f"q{q}", "model": pm, "quality": q, "lambda": float(model.lambdas[q]),
                     "path": path} for q in qs]
        else:
            out.append({"name": Path(path).parent.name or Path(path).stem, "model": pm,
                        "quality": None, "lambda": meta.get("lambda"), "path": path})
    return out


def _bd(df, steps: int) -> tuple[float, float]:
    """BD-rate (%) and BD-PSNR (dB) of the mean curve at ``steps`` against steps 0."""
    from baselines.bdrate import bd_psnr, bd_rate

    mean = df.groupby(["steps", "point"])[["bpp", "psnr"]].mean().reset_index()
    a, t = mean[mean.steps == 0].sort_values("bpp"), mean[mean.steps == steps].sort_values("bpp")
    if len(a) < 2 or len(t) < 2:
        return math.nan, math.nan
    r, _ = bd_rate(a.bpp, a.psnr, t.bpp, t.psnr)
    q, _ = bd_psnr(a.bpp, a.psnr, t.bpp, t.psnr)
    return r, q


def _fmt(v: float, spec: str, unit: str = "") -> str:
    return "-" if not math.isfinite(v) else f"{v:{spec}}{unit}"


def summary(df) -> str:
    """A markdown table: per step count, BD-rate/BD-PSNR vs plain, cost change, times, kept."""
    base = df[df.steps == 0].set_index(["point", "frame"])
    lines = ["| steps | BD-rate vs plain | BD-PSNR | mean cost change | encode s/frame | "
             "x plain | refine s/step | overfit kept |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for steps, g in df.groupby("steps"):
        r, q = _bd(df, steps)
        joined = g.set_index(["point", "frame"]).join(base, rsuffix="_0", how="inner")
        dcost = 100 * (joined.cost / joined.cost_0 - 1).mean()
        enc = g.encode_s.mean()
        per_step = (g.refine_s / g.steps).mean() if steps else math.nan
        kept = (g.kept == "overfit").mean() if steps else math.nan
        cells = [_fmt(r, "+.2f", " %"), _fmt(q, "+.3f", " dB"), _fmt(dcost, "+.2f", " %"),
                 _fmt(enc, ".2f"), _fmt(enc / base.encode_s.mean(), ".1f"),
                 _fmt(per_step, ".3f"), _fmt(kept * 100, ".0f", " %")]
        lines.append(f"| {steps} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dataset")
    ap.add_argument("--model", required=True, help="checkpoint(s), comma-separated")
    ap.add_argument("--app", required=True)
    ap.add_argument("--frames", type=int, default=2)
    ap.add_argument("--crop", type=int, default=256, help="centre crop side, 0 = whole frame")
    ap.add_argument("--steps", default="0,50,200,500")
    ap.add_argument("--qualities", default=None, help="variable-rate: indexes (default all)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    ap.add_argument("--csv", required=True)
    a = ap.parse_args(argv)

    import pandas as pd
    import torch
    from tqdm import tqdm

    from cloud3d.atomic import atomic_write_text
    from cloud3d.imageio import read_png_rgb
    from models.codec import decompress_image
    from models.overfit import compress_overfit

    if a.threads:
        torch.set_num_threads(a.threads)
    steps = [int(s) for s in a.steps.split(",")]
    if 0 not in steps:
        steps = [0, *steps]
    frames = [(p, _crop(read_png_rgb(p), a.crop)) for p in _frames(a.dataset, a.app, a.frames)]
    points = _points(a.model.split(","), a.qualities)
    csv = Path(a.csv)
    df = pd.read_csv(csv) if csv.exists() else pd.DataFrame(columns=FIELDS)
    done = {(r.point, r.frame, int(r.steps)) for r in df.itertuples()}
    todo = [(pt, f, s) for pt in points for f in frames for s in steps
            if (pt["name"], f[0].stem, s) not in done]
    warmed: set[str] = set()
    rows = df.to_dict("records")
    for pt, (path, rgb), s in tqdm(todo, desc="overfit_gain", unit="encode"):
        if pt["name"] not in warmed:  # one untimed encode: lazy inits, caches
            compress_overfit(pt["model"], rgb, 0, lmbda=pt["lambda"], quality=pt["quality"])
            warmed.add(pt["name"])
        t0 = time.perf_counter()
        r = compress_overfit(pt["model"], rgb, s, lmbda=pt["lambda"], quality=pt["quality"],
                             progress=True)
        wall = time.perf_counter() - t0
        point = r.plain if r.kept == "plain" else r.overfit
        if point is None:  # steps 0: decode the plain stream for its PSNR
            rec = decompress_image(pt["model"], r.data, quality=pt["quality"])
            mse = float(np.mean((rec.astype(np.float64) - rgb.astype(np.float64)) ** 2))
            bpp = 8 * len(r.data) / (rgb.shape[0] * rgb.shape[1])
            psnr = 10 * math.log10(255**2 / mse) if mse else math.inf
            cost = bpp + r.lmbda * mse
        else:
            mse, bpp, psnr, cost = point.mse, point.bpp, point.psnr, point.cost
        rows.append({"app": a.app, "frame": path.stem, "crop": a.crop, "point": pt["name"],
                     "quality": pt["quality"], "lambda": r.lmbda, "steps": s,
                     "bytes": len(r.data), "bpp": bpp, "psnr": psnr, "mse": mse, "cost": cost,
                     "kept": r.kept, "encode_s": wall, "refine_s": r.refine_s,
                     "greedy_moves": r.greedy_moves, "model": pt["path"]})
        atomic_write_text(csv, pd.DataFrame(rows, columns=FIELDS).to_csv(index=False))
    df = pd.read_csv(csv)
    print(f"{len(frames)} frames of {a.app} (test split, 720p, crop {a.crop or 'none'}), "
          f"{len(points)} rate points, torch threads {torch.get_num_threads()}")
    print(summary(df))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("\ninterrupted: the rows made so far are in --csv; run it again to resume",
              file=sys.stderr)
        sys.exit(130)
