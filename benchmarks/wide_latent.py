"""What a wide latent buys and costs: the linear ceiling of each latent width on real frames,
and each architecture's parameters and network time per frame.

Ceiling: the best K-dimensional linear basis (PCA) of the 16x16 RGB blocks of the frames
(one block per latent position, as y has at stride 16), fitted on the train split and used on
the validation split; the PSNR of that reconstruction bounds what a latent of K channels can
carry through a linear transform. Cost: parameters, and the median wall time (perf_counter,
after warm-up; ``torch.cuda.synchronize`` on a GPU) of the analysis (g_a, h_a) and synthesis
(g_s) networks on a whole frame.

Training at equal steps (``--train-steps N``): one ``cloud3d train`` run per architecture,
same data, seed, lambda, batch and crops, then the validation row of each (whole validation
frames, estimated rate) and its steps/s.

    python benchmarks/wide_latent.py DATASET --res 720p --device cpu
    python benchmarks/wide_latent.py DATASET --train-steps 200 --runs runs/wide --archs \
        c2f-xsmall-pruned,c2f-xsmall-m192-pruned,c2f-small-pruned
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ARCHS = ("c2f-xsmall-pruned", "c2f-xsmall-m96-pruned", "c2f-xsmall-m128-pruned",
         "c2f-xsmall-m192-pruned", "c2f-small-pruned", "c2f-small-m192-pruned")
WIDTHS = (48, 96, 128, 192, 320)


def blocks(frames: list[np.ndarray], b: int = 16) -> np.ndarray:
    """All ``b x b`` RGB blocks of the frames as rows of a ``(n, 3 b^2)`` float64 array."""
    out = []
    for f in frames:
        h, w = (f.shape[0] // b) * b, (f.shape[1] // b) * b
        t = f[:h, :w].reshape(h // b, b, w // b, b, 3).transpose(0, 2, 1, 3, 4)
        out.append(t.reshape(-1, b * b * 3).astype(np.float64))
    return np.concatenate(out)


def ceiling(train: np.ndarray, test: np.ndarray, widths: tuple[int, ...]) -> dict[int, float]:
    """PSNR (dB, 8-bit peak) of ``test`` blocks through the first K principal components of
    ``train`` blocks, for each K in ``widths``."""
    mean = train.mean(0)
    cov = np.cov(train - mean, rowvar=False)
    _, vecs = np.linalg.eigh(cov)
    vecs = vecs[:, ::-1]
    x = test - mean
    out = {}
    for k in widths:
        v = vecs[:, :k]
        mse = float(np.square(x - (x @ v) @ v.T).mean())
        out[k] = 10 * np.log10(255**2 / mse)
    return out


def net_times(arch: str, h: int, w: int, device: str, repeats: int) -> tuple[int, float, float]:
    """(parameters, analysis ms, synthesis ms) of ``arch`` on one ``h x w`` frame."""
    import torch

    from models.architectures import create_model

    dev = torch.device(device)
    m = create_model(arch).to(dev).eval()
    params = sum(p.numel() for p in m.parameters())
    x = torch.rand(1, 3, h, w, device=dev)

    def timed(fn) -> float:
        with torch.no_grad():
            fn()  # warm-up
            ts = []
            for _ in range(repeats):
                if dev.type == "cuda":
                    torch.cuda.synchronize()
                t = time.perf_counter()
                fn()
                if dev.type == "cuda":
                    torch.cuda.synchronize()
                ts.append(time.perf_counter() - t)
        return 1000 * statistics.median(ts)

    with torch.no_grad():
        y = m.latents(x)[0]
    return params, timed(lambda: m.latents(x)), timed(lambda: m.synthesis(torch.round(y)))


def train_compare(dataset: str, archs: list[str], steps: int, runs: Path, lmbda: float,
                  batch: int, crop: int, device: str) -> None:
    """Train each of ``archs`` for ``steps`` (resuming a run folder left by an earlier call)
    and print its last validation row and training speed."""
    import pandas as pd

    print(f"\ntraining at equal steps: {steps} steps, batch {batch} x {crop} px, lambda {lmbda}, "
          f"{device}; validation on whole frames")
    print(f"{'arch':26s} {'steps/s':>8s} {'loss':>7s} {'bpp':>7s} {'PSNR dB':>8s}")
    for arch in archs:
        out = runs / arch
        cmd = [sys.executable, "-m", "cloud3d.cli", "train", dataset, "--app", "all",
               "--arch", arch, "--lambda", str(lmbda), "--out", str(out), "--steps", str(steps),
               "--batch", str(batch), "--crop", str(crop), "--lr", "2e-4",
               "--val-every", str(steps), "--val-images", "8", "--device", device, "--seed", "1"]
        if (out / "last.pt").exists():
            cmd.append("--resume")
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        log = pd.read_csv(out / "log.csv")
        tr, val = log[log.phase == "train"], log[log.phase == "validation"].iloc[-1]
        a, b = tr.iloc[min(5, len(tr) - 2)], tr.iloc[-1]
        rate = (b.step - a.step) / max(1e-9, b.elapsed_s - a.elapsed_s)
        print(f"{arch:26s} {rate:8.3f} {val.loss:7.3f} {val.bpp:7.3f} {val.psnr:8.2f}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dataset", nargs="?", help="dataset folder (the ceiling needs one)")
    ap.add_argument("--res", default="720p", help="resolution group (and frame size of the timing)")
    ap.add_argument("--frames", type=int, default=24, help="frames per split for the ceiling")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--archs", default=",".join(ARCHS))
    ap.add_argument("--train-steps", type=int, default=0, help="also train each arch this long")
    ap.add_argument("--runs", default="runs/wide-latent", help="run folders of --train-steps")
    ap.add_argument("--lambda", dest="lmbda", type=float, default=0.013)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--crop", type=int, default=256)
    args = ap.parse_args()
    if args.train_steps:
        if not args.dataset:
            ap.error("--train-steps needs a dataset")
        train_compare(args.dataset, args.archs.split(","), args.train_steps, Path(args.runs),
                      args.lmbda, args.batch, args.crop, args.device)
        return 0
    if args.dataset:
        from cloud3d.imageio import read_png_rgb
        from cloud3d_dataset.manifest import image_paths

        def frames(split: str) -> list[np.ndarray]:
            rows = image_paths(args.dataset, split=split, resolution=args.res)
            keep = np.unique(np.linspace(0, len(rows) - 1, min(args.frames, len(rows))).round())
            return [read_png_rgb(rows["abspath"].iloc[int(i)]) for i in keep]

        c = ceiling(blocks(frames("train")), blocks(frames("validation")), WIDTHS)
        print("linear ceiling (PCA of 16x16 RGB blocks, fit on train, PSNR on validation):")
        for k, v in c.items():
            print(f"  {k:4d} channels: {v:5.2f} dB")
    h = int(args.res.rstrip("p"))
    w = h * 16 // 9
    print(f"\nnetworks on one {w}x{h} frame, {args.device}, median of {args.repeats}:")
    print(f"{'arch':26s} {'params':>10s} {'analysis ms':>12s} {'synthesis ms':>13s}")
    for arch in args.archs.split(","):
        p, a, s = net_times(arch, h, w, args.device, args.repeats)
        print(f"{arch:26s} {p:10,d} {a:12.1f} {s:13.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
