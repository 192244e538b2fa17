"""Runner overhead vs calling the codecs directly, and scaling from 1 to 2 workers.

Builds a small 720p dataset from the built-in synthetic scene, then times the
same work (read PNG, encode, decode, MSE/PSNR, MS-SSIM) for JPEG and WebP:

* ``direct``: a plain loop in this process (after one warm-up task),
* ``runner 1 worker``: :func:`baselines.bench.runner.run_bench` with one pool process
  into a fresh SQLite store (planning, pool start, pickling, commits included),
* ``runner 2 workers``: the same with two processes.

Targets (issue 5): overhead under 5 % at 720p; speed-up >= 1.8x from 1 to 2
workers on 2 free cores. Wall times use ``time.perf_counter``.

    .venv/bin/python benchmarks/bench_runner.py [--frames 12] [--repeat 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SPECS = ["jpeg:q=40,80", "webp:q=40,80"]


def make_dataset(root: Path, frames: int) -> None:
    from capture.synthetic import SyntheticScene
    from cloud3d.imageio import write_png
    from cloud3d_dataset.manifest import index_dataset

    scene = SyntheticScene(1280, 720, seed=3)
    for i in range(frames):
        write_png(root / "test" / "synthetic-720p" / f"{i}.png", scene.render(i * 9), encoder="fpng")
    index_dataset(root, progress=False)


def direct(root: Path) -> tuple[float, int]:
    """The runner's per-task work, called in a plain loop; returns (seconds, tasks)."""
    from baselines import metrics
    from baselines.codecs.registry import parse_codec_spec
    from cloud3d.imageio import read_image_rgb
    from cloud3d_dataset.manifest import image_paths

    df = image_paths(root, split="test")
    specs = [parse_codec_spec(s) for s in SPECS]
    codecs = [(s.make(), s.qualities) for s in specs]
    n = 0
    t0 = time.perf_counter()
    for path in df["abspath"]:
        for codec, qualities in codecs:
            for q in qualities:
                rgb, _ = read_image_rgb(path)
                enc = codec.encode_timed(rgb, q)
                rec = codec.decode_timed(enc.data).rgb
                metrics.psnr_from_mse(metrics.mse(rgb, rec))
                metrics.ms_ssim_db(metrics.ms_ssim_rgb(rgb, rec))
                metrics.bpp(len(enc.data), rgb.shape[1], rgb.shape[0])
                n += 1
    return time.perf_counter() - t0, n


def runner(root: Path, tmp: Path, workers: int, tag: str) -> tuple[float, int]:
    from baselines.bench.runner import BenchOptions, run_bench

    res = tmp / f"{tag}.sqlite"
    t0 = time.perf_counter()
    s = run_bench(root, SPECS, res,
                  BenchOptions(workers=workers, progress=False, command=f"bench_runner {tag}"))
    dt = time.perf_counter() - t0
    if s.failed or s.ok != s.total:
        raise SystemExit(f"runner failed: {s.line()} {s.failures[:3]}")
    return dt, s.ok


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=12, help="720p frames (default 12)")
    ap.add_argument("--repeat", type=int, default=2, help="repetitions; the median is reported (default 2)")
    args = ap.parse_args()
    # one thread per process everywhere, so 'direct' and one pool worker do the same work
    import torch

    torch.set_num_threads(1)
    from cloud3d.provenance import machine_description

    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        root = tmp / "ds"
        make_dataset(root, args.frames)
        direct(root)  # warm-up: imports, codec libraries, page cache
        times: dict[str, list[float]] = {"direct": [], "runner 1 worker": [], "runner 2 workers": []}
        n = 0
        for r in range(args.repeat):
            t, n = direct(root)
            times["direct"].append(t)
            times["runner 1 worker"].append(runner(root, tmp, 1, f"w1-{r}")[0])
            times["runner 2 workers"].append(runner(root, tmp, 2, f"w2-{r}")[0])
    med = {k: statistics.median(v) for k, v in times.items()}
    m = machine_description()
    print(f"machine: {m.get('cpu_model')}, {m.get('cores')} logical cores, load avg {os.getloadavg()[0]:.2f}")
    print(f"work: {args.frames} frames 1280x720 x {SPECS} = {n} tasks; median of {args.repeat} runs\n")
    print(f"{'configuration':<18} {'wall s':>8} {'ms/task':>8} {'vs direct':>10} {'speed-up':>9}")
    for k, v in med.items():
        vs = f"{100 * (v / med['direct'] - 1):+.1f}%"
        sp = f"{med['runner 1 worker'] / v:.2f}x" if k.startswith("runner") else ""
        print(f"{k:<18} {v:8.2f} {1000 * v / n:8.1f} {vs:>10} {sp:>9}")
    over = 100 * (med["runner 1 worker"] / med["direct"] - 1)
    speed = med["runner 1 worker"] / med["runner 2 workers"]
    print(f"\nrunner overhead (1 worker vs direct): {over:+.1f}%  (target < 5%)")
    print(f"scaling 1 -> 2 workers: {speed:.2f}x  (target >= 1.8x on 2 free cores)")


if __name__ == "__main__":
    main()
