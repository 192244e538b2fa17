"""MSP probability model vs the hyperprior it extends: BD-rate (PSNR) and decode time.

Two sets of checkpoints (one per lambda each, e.g. ``cloud3d train`` runs of c2f-small and
c2f-small-msp with the same steps, crop, batch and lr) are run over the same frames of a
dataset split::

    python benchmarks/msp_compare.py /work/data/dataset --app supertuxkart --res 720p \\
        --anchor runs/c2f-small-0.004/best.pt runs/c2f-small-0.02/best.pt \\
        --test runs/c2f-small-msp-0.004/best.pt runs/c2f-small-msp-0.02/best.pt \\
        --csv msp_compare.csv

Per checkpoint and frame: the real ``.c3d`` stream (rANS, whole frame) and its decode;
bpp = 8 * stream bytes / pixels, PSNR over RGB (:func:`baselines.metrics.psnr_rgb`), both
averaged over frames. Decode time: ``time.perf_counter`` around
:func:`models.codec.decompress_image_timed` (network and entropy parts as it reports them)
of the first ``--timing-frames`` frames, after one warm-up decode, median per frame; all
checkpoints timed in the same loop over frames (round robin), so load from other processes
hits them alike. ``passes``: the entropy-decoding passes per frame the decoder reports (a
sequential step each), compared with what the architecture declares. BD-rate of the test
curve against the anchor curve (:func:`baselines.bdrate.bd_rate`, PCHIP; negative = the
test needs fewer bits at equal PSNR) with the overlap of their PSNR ranges.

Prints one table row per checkpoint and the BD-rate line; ``--csv`` writes the rows
(loadable with pandas).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _frames(root: str, split: str, app: str, res: str, every: int,
            limit: int | None) -> list[str]:
    from cloud3d_dataset.manifest import image_paths

    rows = image_paths(Path(root), split=split, app=app, resolution=res)
    paths = list(rows["abspath"])
    if not paths:
        raise SystemExit(f"no {split} frames of {app} at {res} in {root}")
    paths = paths[::every]
    return paths[:limit] if limit else paths


def measure(checkpoints: list[str], frames: list[str], timing_frames: int, threads: int) -> list[dict]:
    """One row per checkpoint: arch, lambda, steps, bpp, psnr, decode times, passes."""
    import torch
    from tqdm import tqdm

    from baselines.metrics import bpp, psnr_rgb
    from cloud3d.imageio import read_png_rgb
    from models.checkpoint import load_checkpoint
    from models.codec import compress_image, decompress_image_timed, prepare
    from models.latent_model import level_passes

    torch.set_num_threads(threads)
    models = []
    for ck in checkpoints:
        model, meta = load_checkpoint(ck)
        models.append((ck, meta, prepare(model, "cpu")))
    acc = {ck: {"bpp": [], "psnr": [], "dec": [], "net": [], "ent": [], "passes": set()}
           for ck in checkpoints}
    for i, path in enumerate(tqdm(frames, desc="frames", unit="frame")):
        rgb = read_png_rgb(path)
        h, w = rgb.shape[:2]
        for ck, _meta, pm in models:
            data = compress_image(pm, rgb)
            if i == 0:  # warm-up decode
                decompress_image_timed(pm, data)
            t0 = time.perf_counter()
            r = decompress_image_timed(pm, data)
            dt = time.perf_counter() - t0
            a = acc[ck]
            a["bpp"].append(bpp(len(data), w, h))
            a["psnr"].append(psnr_rgb(rgb, r.rgb))
            a["passes"].add(r.passes)
            if i < timing_frames:
                a["dec"].append(dt)
                a["net"].append(r.network_s)
                a["ent"].append(r.entropy_s)
    rows = []
    for ck, meta, pm in models:
        a = acc[ck]
        declared = sum(level_passes(pm.model))
        if a["passes"] != {declared}:
            raise SystemExit(f"{ck}: decoder reported passes {sorted(a['passes'])}, "
                             f"{pm.arch} declares {declared}")
        rows.append({
            "checkpoint": ck, "arch": pm.arch, "lambda": meta.get("lambda"),
            "steps": meta.get("step"), "frames": len(frames),
            "bpp": statistics.fmean(a["bpp"]), "psnr": statistics.fmean(a["psnr"]),
            "decode_s": statistics.median(a["dec"]), "network_s": statistics.median(a["net"]),
            "entropy_s": statistics.median(a["ent"]), "passes": declared,
        })
    return rows


def _markdown(df) -> str:
    """A pipe table of ``df`` (floats to 4 significant digits)."""
    cells = [[f"{v:.4g}" if isinstance(v, float) else str(v) for v in row]
             for row in df.itertuples(index=False)]
    lines = ["| " + " | ".join(df.columns) + " |", "|" + "---|" * len(df.columns)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in cells])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("dataset")
    ap.add_argument("--app", required=True)
    ap.add_argument("--res", default="720p")
    ap.add_argument("--split", default="test")
    ap.add_argument("--anchor", nargs="+", required=True, help="hyperprior checkpoints")
    ap.add_argument("--test", nargs="+", required=True, help="MSP checkpoints")
    ap.add_argument("--every", type=int, default=1, help="every K-th frame (manifest order)")
    ap.add_argument("--limit", type=int, default=None, help="first N of those frames only")
    ap.add_argument("--timing-frames", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    ap.add_argument("--csv", default=None)
    args = ap.parse_args(argv)

    import pandas as pd

    from baselines.bdrate import bd_overlap, bd_rate

    frames = _frames(args.dataset, args.split, args.app, args.res, args.every, args.limit)
    rows = measure(args.anchor + args.test, frames, args.timing_frames, args.threads)
    df = pd.DataFrame(rows)
    df["role"] = ["anchor"] * len(args.anchor) + ["test"] * len(args.test)
    print(f"{len(frames)} {args.split} frames of {args.app} {args.res} (every {args.every}); "
          f"decode times: median of "
          f"{min(args.timing_frames, len(frames))} frames after a warm-up, CPU, "
          f"{args.threads} threads")
    cols = ["role", "arch", "lambda", "steps", "bpp", "psnr", "decode_s", "network_s",
            "entropy_s", "passes"]
    print(_markdown(df[cols]))
    an, te = df[df.role == "anchor"], df[df.role == "test"]
    value, why = bd_rate(an.bpp, an.psnr, te.bpp, te.psnr)
    overlap = bd_overlap(an.bpp, an.psnr, te.bpp, te.psnr)
    print(f"BD-rate (PSNR) of {te.arch.iloc[0]} against {an.arch.iloc[0]}: "
          + (f"{value:+.2f} %" if not why else f"n/a ({why})")
          + f"; PSNR-range overlap {overlap:.0%}")
    if args.csv:
        df.to_csv(args.csv, index=False)
        print(f"wrote {args.csv}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
