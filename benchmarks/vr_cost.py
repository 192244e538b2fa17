"""What variable rate costs: a variable-rate model against fixed-lambda models, on one split.

    python benchmarks/vr_cost.py DATASET --app supertuxkart --split test \\
        --fixed runs/stk-0.0067/best.pt runs/stk-0.025/best.pt --vr runs/stk-vr/best.pt --real

Every model runs over the split's whole frames in eval mode (quantization by rounding) through
``models.train_step.evaluate``: bpp *estimated* from the entropy models' likelihoods (per
pixel of the unpadded frame) and PSNR (RGB, mean of per-frame PSNR) of the reconstruction
rounded to 8 bits. The fixed models are points ``(bpp, PSNR)`` at their lambdas; the
variable-rate model gives one point per quality index (``--qualities`` to pick some). Printed:
the points, the points of equal lambda side by side, and the BD-rate / BD-PSNR of the
variable-rate curve against the fixed-lambda curve over their overlap
(``baselines.bdrate``, PCHIP). ``--real`` also codes every frame with every model and
quality through the real codec (``models.codec``: ``.c3d`` bytes, decoded pixels), prints
those points next to the estimates and gives the BD figures of the real points too.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _real_points(model, frames, quality: int | None = None) -> tuple[float, float]:
    """Mean bpp from real .c3d sizes and mean PSNR of the decoded 8-bit frames."""
    import numpy as np

    from models.codec import compress_image, decompress_image

    bpp = psnr = 0.0
    for i in range(len(frames)):
        rgb = frames.frames[i].numpy()
        data = compress_image(model, rgb, device="cpu", quality=quality)
        rec = decompress_image(model, data, device="cpu", quality=quality)
        mse = float(np.mean((rec.astype(np.float64) - rgb) ** 2))
        bpp += 8 * len(data) / (rgb.shape[0] * rgb.shape[1]) / len(frames)
        psnr += (10 * math.log10(255**2 / mse) if mse > 0 else 100.0) / len(frames)
    return bpp, psnr


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dataset")
    ap.add_argument("--app", default=None)
    ap.add_argument("--split", default="test")
    ap.add_argument("--fixed", nargs="+", required=True, help="fixed-lambda checkpoints")
    ap.add_argument("--vr", required=True, help="variable-rate checkpoint")
    ap.add_argument("--qualities", default=None, help="quality indexes (default: all)")
    ap.add_argument("--images", type=int, default=None, help="at most this many frames")
    ap.add_argument("--real", action="store_true", help="also code the fixed models for real")
    ap.add_argument("--csv", default=None)
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore", message=".*torch.jit.script.*")

    import pandas as pd
    import torch

    from baselines.bdrate import bd_psnr, bd_rate
    from cloud3d_dataset.torch_dataset import FrameBank
    from models.checkpoint import load_checkpoint
    from models.latent_model import model_qualities
    from models.prepared import prepare
    from models.train_step import evaluate

    dev = torch.device("cpu")
    frames = FrameBank(args.dataset, args.split, app=args.app, crop=None, limit=args.images)
    print(f"{len(frames)} frames of {args.split} ({args.app or 'all apps'})")
    rows = []
    for ck in args.fixed:
        model, meta = load_checkpoint(ck)
        if model_qualities(model):
            raise SystemExit(f"{ck} is variable-rate: pass it as --vr")
        t0 = time.perf_counter()
        (r,) = evaluate(model, frames, dev, lmbda=meta["lambda"])
        row = {"model": f"fixed λ={meta['lambda']:g}", "lambda": meta["lambda"],
               "step": meta.get("step"), "est bpp": r["bpp"], "PSNR": r["psnr"]}
        if args.real:
            row["real bpp"], row["real PSNR"] = _real_points(prepare(model, "cpu"), frames)
        row["s"] = round(time.perf_counter() - t0, 1)
        rows.append(row)
    vr, vmeta = load_checkpoint(args.vr)
    if not model_qualities(vr):
        raise SystemExit(f"{args.vr} is a fixed-rate checkpoint")
    qs = (list(range(model_qualities(vr))) if args.qualities is None
          else [int(q) for q in args.qualities.split(",")])
    t0 = time.perf_counter()
    pvr = prepare(vr, "cpu") if args.real else None
    for r in evaluate(vr, frames, dev, qualities=qs):
        rows.append({"model": f"VR q={r['quality']}", "lambda": r["lambda"],
                     "step": vmeta.get("step"), "est bpp": r["bpp"], "PSNR": r["psnr"]})
        if pvr is not None:
            rows[-1]["real bpp"], rows[-1]["real PSNR"] = _real_points(pvr, frames, r["quality"])
    rows[-1]["s"] = round(time.perf_counter() - t0, 1)
    table = pd.DataFrame(rows)
    with pd.option_context("display.width", 200, "display.float_format", "{:.4f}".format):
        print(table.to_string(index=False))
    fixed = table[table.model.str.startswith("fixed")].sort_values("est bpp")
    var = table[table.model.str.startswith("VR")].sort_values("est bpp")
    same = var.merge(fixed, on="lambda", suffixes=(" VR", " fixed"))
    for _, s in same.iterrows():
        print(f"λ={s['lambda']:g}: VR {s['est bpp VR']:.4f} bpp {s['PSNR VR']:.2f} dB, fixed "
              f"{s['est bpp fixed']:.4f} bpp {s['PSNR fixed']:.2f} dB "
              f"(rate {100 * (s['est bpp VR'] / s['est bpp fixed'] - 1):+.1f}%, "
              f"PSNR {s['PSNR VR'] - s['PSNR fixed']:+.2f} dB)")
    for what, b, q in (("estimated", "est bpp", "PSNR"), ("real", "real bpp", "real PSNR")):
        if b not in table:
            continue
        args_bd = (fixed[b], fixed[q], var[b], var[q])
        rate, why = bd_rate(*args_bd)
        dq, why_q = bd_psnr(*args_bd)
        print(f"BD-rate of VR against the fixed models ({what} bpp, PSNR): "
              + (f"{rate:+.2f}%" if not why else f"n/a ({why})")
              + "; BD-PSNR: " + (f"{dq:+.3f} dB" if not why_q else f"n/a ({why_q})"))
    if args.csv:
        table.to_csv(args.csv, index=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
