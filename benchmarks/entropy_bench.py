"""Throughput of the entropy analysis on 1080p PNGs vs decoding the same PNGs alone.

Target (issue 4): the four measures together add at most 25 % to the PNG
decode time, i.e. the analysis is decode-bound, and throughput scales with
processes. Prints a table; exits 0 either way (it measures, it does not gate).

    .venv/bin/python benchmarks/entropy_bench.py                 # 8 frames, 1 and 2 processes
    .venv/bin/python benchmarks/entropy_bench.py --frames 24 --workers 1,2,4 --repeat 3

Frames: half from ``tests/conftest.make_game_like_frame`` (gradient sky,
noisy textured ground: a heavy PNG), half from a shaded-scene generator here
(flat boxes, smoothly textured floor, sky gradient, HUD: closer to many rendered frames).
Timing: ``time.perf_counter`` around whole passes, after one warm-up pass;
the per-stage breakdown also reports CPU time (``time.process_time``), which
is less disturbed by other load on the machine.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from analysis.measures import (  # noqa: E402
    backend,
    entropy_bits,
    gradient_histogram,
    image_measures,
    measures_of_rgb,
    spatial_information,
)
from cloud3d_dataset.files import read_image_rgb, write_png  # noqa: E402


def shaded_frame(h: int, w: int, seed: int) -> np.ndarray:
    """Shaded boxes over a textured, lit floor and a sky gradient, with a HUD bar."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.empty((h, w, 3), np.float32)
    horizon = h * 0.45
    sky = yy < horizon
    img[sky] = np.stack([120 + 0 * yy, 170 + 40 * yy / h, 235 + 0 * yy], -1)[sky]
    floor = ~sky
    shade = 80 + 60 * (yy - horizon) / (h - horizon)
    checker = ((xx // 64 + yy // 32) % 2) * 18
    img[floor] = np.stack([shade + checker, shade * 0.9 + checker, shade * 0.6], -1)[floor]
    for _ in range(12):
        x0, y0 = rng.integers(0, w - 200), rng.integers(int(horizon) - 150, h - 150)
        bw, bh = rng.integers(60, 300), rng.integers(60, 260)
        col = rng.integers(30, 230, 3)
        img[y0 : y0 + bh, x0 : x0 + bw] = col
        img[y0 : y0 + bh // 3, x0 : x0 + bw] = np.minimum(col * 1.3, 255)  # lit top face
    # surface texture: smooth noise (+-12 levels) like texture maps and lighting, not pixel noise
    tex = rng.normal(size=(h // 2, w // 2)).astype(np.float32)
    tex = np.repeat(np.repeat(tex, 2, axis=0), 2, axis=1)[:h, :w]
    tex = (tex + np.roll(tex, 1, 0) + np.roll(tex, 1, 1) + np.roll(tex, (1, 1), (0, 1))) * 3.0
    img[floor] += tex[floor][:, None]
    img[h - 90 :, :] = (25, 25, 30)
    img[h - 70 : h - 40, 40 : 40 + int(rng.integers(200, 600))] = (200, 40, 40)
    return np.clip(img, 0, 255).astype(np.uint8)


def make_frames(folder: Path, n: int, h: int, w: int) -> list[str]:
    from conftest import make_game_like_frame

    paths = []
    for i in range(n):
        rgb = (
            make_game_like_frame(h, w, seed=i, t=i / max(n, 1))
            if i % 2 == 0
            else shaded_frame(h, w, i)
        )
        p = folder / f"{i}.png"
        write_png(p, rgb)
        paths.append(str(p))
    return paths


def decode_only(path: str) -> int:
    rgb, _ = read_image_rgb(path)
    return int(rgb.shape[0])


def decode_and_measure(path: str) -> int:
    m = image_measures(path)
    return int(m["height"])


def timed_pass(pool, fn, paths: list[str]) -> float:
    t0 = time.perf_counter()
    if pool is None:
        for p in paths:
            fn(p)
    else:
        list(pool.imap_unordered(fn, paths, chunksize=1))
    return time.perf_counter() - t0


def stage_breakdown(paths: list[str], repeat: int) -> list[tuple[str, float, float]]:
    """(stage, wall ms/img, cpu ms/img) in this process for decode and each measure step."""
    from PIL import Image

    rgbs = [read_image_rgb(p)[0] for p in paths]
    ys = [np.asarray(Image.fromarray(r).convert("L")) for r in rgbs]

    def luma_hists(r):
        img = Image.fromarray(r, "RGB")
        [entropy_bits(c) for c in np.asarray(img.histogram()).reshape(3, 256)]
        entropy_bits(img.convert("L").histogram())

    stages = [
        ("decode (read_image_rgb)", lambda i: read_image_rgb(paths[i])),
        ("numpy: luma + histograms", lambda i: luma_hists(rgbs[i])),
        ("numpy: gradient histogram", lambda i: gradient_histogram(ys[i])),
        ("numpy: spatial information", lambda i: spatial_information(ys[i])),
        ("numpy: all four measures", lambda i: _with_backend("numpy", measures_of_rgb, rgbs[i])),
    ]
    if _numba_available():
        stages.append(
            ("numba: all four measures", lambda i: _with_backend("numba", measures_of_rgb, rgbs[i]))
        )
    out = []
    for name, fn in stages:
        fn(0)  # warm-up
        walls, cpus = [], []
        for _ in range(repeat):
            w0, c0 = time.perf_counter(), time.process_time()
            for i in range(len(paths)):
                fn(i)
            walls.append((time.perf_counter() - w0) / len(paths) * 1e3)
            cpus.append((time.process_time() - c0) / len(paths) * 1e3)
        out.append((name, min(walls), min(cpus)))
    return out


def _numba_available() -> bool:
    try:
        import analysis.fused  # noqa: F401
    except ImportError:
        return False
    return True


def _with_backend(name: str, fn, *args):
    old = os.environ.get("CLOUD3D_ANALYSIS_BACKEND")
    os.environ["CLOUD3D_ANALYSIS_BACKEND"] = name
    try:
        return fn(*args)
    finally:
        if old is None:
            del os.environ["CLOUD3D_ANALYSIS_BACKEND"]
        else:
            os.environ["CLOUD3D_ANALYSIS_BACKEND"] = old


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=8, help="number of 1080p PNGs (default 8)")
    ap.add_argument(
        "--workers", default="1,2", help="process counts to try, comma-separated (default 1,2)"
    )
    ap.add_argument(
        "--repeat",
        type=int,
        default=2,
        help="timed passes per setting; the best is kept (default 2)",
    )
    ap.add_argument("--height", type=int, default=1080)
    ap.add_argument("--width", type=int, default=1920)
    args = ap.parse_args(argv)
    workers = [int(x) for x in args.workers.split(",") if x.strip()]

    with tempfile.TemporaryDirectory(prefix="entropy-bench-") as tmp:
        paths = make_frames(Path(tmp), args.frames, args.height, args.width)
        mb = statistics.mean(os.path.getsize(p) for p in paths) / 1e6
        print(
            f"{args.frames} PNGs {args.width}x{args.height}, mean {mb:.2f} MB; cpu cores: {os.cpu_count()}"
        )
        try:
            load = os.getloadavg()[0]
            print(
                f"load average (1 min) at start: {load:.2f}  (timings on a loaded machine are noisy)"
            )
        except OSError:
            pass

        print("\nper-stage cost in one process (best of passes, ms per image):")
        print(f"  {'stage':<28} {'wall':>8} {'cpu':>8}")
        rows = stage_breakdown(paths, args.repeat)
        for name, wall, cpu in rows:
            print(f"  {name:<28} {wall:8.1f} {cpu:8.1f}")
        dec_cpu = rows[0][2]
        for name, _wall, cpu in rows:
            if name.endswith("all four measures"):
                print(
                    f"  {name.split(':')[0]}: measures / decode (cpu) = +{100 * cpu / dec_cpu:.0f} %  (target <= +25 %)"
                )

        backends = ["numpy", "numba"] if _numba_available() else ["numpy"]
        print(f"\nthroughput (images/s, best of passes); default backend here: {backend()}")
        print(
            f"  {'backend':<7} {'processes':>9} {'decode only':>12} {'decode+measures':>16} {'overhead':>9} {'scaling':>8}"
        )
        for be in backends:
            os.environ["CLOUD3D_ANALYSIS_BACKEND"] = be  # inherited by the worker processes
            base = None
            for w in workers:
                pool = None if w == 1 else multiprocessing.get_context("spawn").Pool(w)
                try:
                    for fn in (
                        decode_only,
                        decode_and_measure,
                    ):  # warm-up: imports, JIT, page cache
                        timed_pass(pool, fn, paths[: max(1, w)] * 2)
                    t_dec = min(timed_pass(pool, decode_only, paths) for _ in range(args.repeat))
                    t_all = min(
                        timed_pass(pool, decode_and_measure, paths) for _ in range(args.repeat)
                    )
                finally:
                    if pool is not None:
                        pool.terminate()
                        pool.join()
                r_dec, r_all = len(paths) / t_dec, len(paths) / t_all
                base = base or r_all
                print(
                    f"  {be:<7} {w:>9} {r_dec:12.2f} {r_all:16.2f} {100 * (t_all / t_dec - 1):8.0f}% {r_all / base:7.2f}x"
                )


if __name__ == "__main__":
    main()
