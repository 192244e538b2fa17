"""Throughput of the entropy analysis on 1080p PNGs vs decoding the same PNGs alone.

Target (issue 4): the four measures together add at most 25 % to the PNG
decode time, i.e. the analysis is decode-bound, and throughput scales with
processes. Prints a table; exits 0 either way (it measures, it does not gate).

    .venv/bin/python benchmarks/entropy_bench.py                 # 8 frames, 1 and 2 processes
    .venv/bin/python benchmarks/entropy_bench.py --frames 24 --workers 1,2,4 --repeat 3

Frames: half from ``tests/conftest.make_game_like_frame`` (gradient sky,
noisy textured ground: a heavy PNG), half from a shaded-scene generator here
(flat boxes, smoothly textured floor, sky gradient, HUD: closer to many rendered frames).
Timing: ``time.perf_counter`` (wall) and ``time.process_time`` (CPU) around
whole passes, after one warm-up pass. The stages are timed interleaved (each
repeat runs every stage once, in turn) and the best repeat is kept, so other
load on the machine hits all stages alike; CPU time is the figure to compare on
a shared machine. In the throughput part every worker also reports the CPU time
its tasks took, so the overhead is given in CPU terms there too.
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
from cloud3d.imageio import read_image_rgb, write_png  # noqa: E402


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


def decode_only(path: str) -> float:
    """Decode one PNG; returns the CPU seconds this process spent on it."""
    c0 = time.process_time()
    read_image_rgb(path)
    return time.process_time() - c0


def decode_and_measure(path: str) -> float:
    """Decode one PNG and compute the four measures; returns the CPU seconds spent."""
    c0 = time.process_time()
    image_measures(path)
    return time.process_time() - c0


def timed_pass(pool, fn, paths: list[str]) -> tuple[float, float]:
    """(wall seconds for the whole pass, CPU seconds summed over the tasks)."""
    t0 = time.perf_counter()
    if pool is None:
        cpu = [fn(p) for p in paths]
    else:
        cpu = list(pool.imap_unordered(fn, paths, chunksize=1))
    return time.perf_counter() - t0, sum(cpu)


def stage_breakdown(paths: list[str], repeat: int) -> list[tuple[str, float, float]]:
    """(stage, wall ms/img, cpu ms/img) in this process for decode and each measure step."""
    from PIL import Image

    rgbs = [read_image_rgb(p)[0] for p in paths]
    ys = [np.asarray(Image.fromarray(r).convert("L")) for r in rgbs]

    def luma_hists(r):
        img = Image.fromarray(r, "RGB")
        [entropy_bits(c) for c in np.asarray(img.histogram()).reshape(3, 256)]
        entropy_bits(img.convert("L").histogram())

    def inflate_only(i):
        with Image.open(paths[i]) as im:
            im.load()

    stages = [
        ("decode (read_image_rgb)", lambda i: read_image_rgb(paths[i])),
        ("  of which PNG inflate", inflate_only),
        ("numpy: luma + histograms", lambda i: luma_hists(rgbs[i])),
        ("numpy: gradient histogram", lambda i: gradient_histogram(ys[i])),
        ("numpy: spatial information", lambda i: spatial_information(ys[i])),
        ("numpy: all four measures", lambda i: _with_backend("numpy", measures_of_rgb, rgbs[i])),
    ]
    if _numba_available():
        from analysis.fused import fused_stats
        from analysis.measures import LUMA_WEIGHTS

        stages.append(
            ("numba: fused kernel alone", lambda i: fused_stats(rgbs[i], LUMA_WEIGHTS["bt601"]))
        )
        stages.append(
            ("numba: all four measures", lambda i: _with_backend("numba", measures_of_rgb, rgbs[i]))
        )
    for _name, fn in stages:
        fn(0)  # warm-up (imports, numba cache load)
    walls = {name: [] for name, _ in stages}
    cpus = {name: [] for name, _ in stages}
    for _ in range(repeat):  # interleaved: every stage once per repeat
        for name, fn in stages:
            w0, c0 = time.perf_counter(), time.process_time()
            for i in range(len(paths)):
                fn(i)
            walls[name].append((time.perf_counter() - w0) / len(paths) * 1e3)
            cpus[name].append((time.process_time() - c0) / len(paths) * 1e3)
    return [(name, min(walls[name]), min(cpus[name])) for name, _ in stages]


def first_call_cost() -> tuple[float, float] | None:
    """CPU ms of the first and second measures call in a fresh process (numba cache load)."""
    import subprocess

    code = (
        "import time, numpy as np; from analysis.measures import measures_of_rgb; "
        "rgb = np.zeros((1080, 1920, 3), np.uint8); c = time.process_time(); "
        "measures_of_rgb(rgb); c1 = time.process_time(); measures_of_rgb(rgb); "
        "print((c1 - c) * 1e3, (time.process_time() - c1) * 1e3)"
    )
    try:
        out = subprocess.run(
            [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300
        )
        first, second = (float(x) for x in out.stdout.split())
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return None
    return first, second


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


def _print_stages(paths: list[str], repeat: int) -> None:
    """The per-stage cost table in one process, the measures' overhead over decoding, and
    numba's first-call cost."""
    print("\nper-stage cost in one process (best of interleaved passes, ms per image):")
    print(f"  {'stage':<28} {'wall':>8} {'cpu':>8}")
    rows = stage_breakdown(paths, repeat)
    for name, wall, cpu in rows:
        print(f"  {name:<28} {wall:8.1f} {cpu:8.1f}")
    dec_cpu = rows[0][2]
    for name, _wall, cpu in rows:
        if name.endswith("all four measures"):
            print(
                f"  {name.split(':')[0]}: measures / decode (cpu) = +{100 * cpu / dec_cpu:.0f} %"
                "  (target <= +25 %)"
            )
    if _numba_available():
        fc = first_call_cost()
        if fc is not None:
            print(
                f"  numba, fresh process: first call {fc[0]:.0f} ms cpu (import numba, load "
                f"the cached kernel; once per worker), second {fc[1]:.1f} ms"
            )


def _throughput_passes(paths: list[str], w: int, repeat: int) -> tuple[list, list]:
    """``repeat`` interleaved (wall s, cpu s) passes of decoding only and of decoding plus the
    measures with ``w`` processes (1: in this process), after one warm-up pass of each."""
    pool = (
        None
        if w == 1
        else multiprocessing.get_context("spawn").Pool(w, initializer=_warm_worker)
    )
    try:
        if pool is None:
            _warm_worker()
        for fn in (decode_only, decode_and_measure):  # warm-up: page cache
            timed_pass(pool, fn, paths[: max(1, w)])
        dec, meas = [], []
        for _ in range(repeat):  # interleaved
            dec.append(timed_pass(pool, decode_only, paths))
            meas.append(timed_pass(pool, decode_and_measure, paths))
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()
    return dec, meas


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

        _print_stages(paths, args.repeat)
        backends = ["numpy", "numba"] if _numba_available() else ["numpy"]
        print(
            "\nthroughput (best of interleaved passes; cpu = ms per image summed over the "
            f"workers' tasks); default backend here: {backend()}"
        )
        print(
            f"  {'backend':<7} {'procs':>5} {'decode img/s':>12} {'+measures img/s':>15} "
            f"{'wall ovh':>8} {'decode cpu':>10} {'+meas. cpu':>10} {'cpu ovh':>7} {'scaling':>7}"
        )
        for be in backends:
            os.environ["CLOUD3D_ANALYSIS_BACKEND"] = be  # inherited by the worker processes
            base = None
            for w in workers:
                dec, meas = _throughput_passes(paths, w, args.repeat)
                t_dec, t_all = min(t for t, _ in dec), min(t for t, _ in meas)
                c_dec = min(c for _, c in dec) / len(paths) * 1e3
                c_all = min(c for _, c in meas) / len(paths) * 1e3
                r_dec, r_all = len(paths) / t_dec, len(paths) / t_all
                base = base or r_all
                print(
                    f"  {be:<7} {w:>5} {r_dec:12.2f} {r_all:15.2f} {100 * (t_all / t_dec - 1):7.0f}%"
                    f" {c_dec:10.1f} {c_all:10.1f} {100 * (c_all / c_dec - 1):6.0f}%"
                    f" {r_all / base:6.2f}x"
                )


def _warm_worker() -> None:
    """Pool initializer: import and run the measures once (numba loads its cached kernel)."""
    measures_of_rgb(np.zeros((8, 8, 3), np.uint8))


if __name__ == "__main__":
    main()
