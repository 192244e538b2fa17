"""Capture speed on Xvfb: grab rate, PNG encode time, full capture rate and drops.

For each size (1280x720 and 1920x1080) this starts a private Xvfb with a
real X client showing the synthetic scene (``capture.showwindow``, redrawn
twice a second so it loads the CPU little), then measures:

1. grab-only rate of the window source (mss ``XGetImage`` + BGRA->RGB);
2. PNG encode time per frame: fpng and zlib level 1, both checked bit-exact
   on decode, with file sizes; and fpng on 1 vs 2 threads (does it release the GIL?);
3. a full capture with :func:`capture.record` (writer processes, then writer
   threads) at the target rate (30 fps at
   720p, 20 fps at 1080p), duplicates kept so every grab is encoded, policy
   ``wait``: achieved grabs/s, frames written, back-pressure waits and drops.

Usage:  python benchmarks/capture_bench.py [--seconds 5] [--sizes 720p,1080p]
Timings use time.perf_counter after one warm-up call. Run on an idle machine
for figures you intend to quote.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time

import numpy as np

from capture.filters import FilterConfig
from capture.launch import LaunchSource
from capture.options import RecordOptions
from capture.recorder import record
from cloud3d.imageio import encode_png
from cloud3d.resolutions import RESOLUTIONS

TARGET_FPS = {"720p": 30.0, "1080p": 20.0}


def _timed(fn, reps: int) -> float:
    fn()  # warm-up
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - t0) / reps


def _decode(data: bytes) -> np.ndarray:
    import io

    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def bench_size(name: str, seconds: float, writers: int, kinds=("process", "thread")) -> dict:
    w, h = RESOLUTIONS[name]
    cmd = [sys.executable, "-m", "capture.showwindow", "--size", f"{w}x{h}", "--fps", "2"]
    out: dict = {"size": name}
    with LaunchSource(cmd, size=(w, h), timeout=60) as src:
        time.sleep(1.0)
        # 1. grab-only
        src.grab()
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            frame = src.grab()
            n += 1
        out["grab_fps"] = n / (time.perf_counter() - t0)
        # 2. encode
        reps = max(3, int(seconds))
        for enc, level in (("fpng", 1), ("zlib", 1)):
            data = encode_png(frame, encoder=enc, level=level)
            assert np.array_equal(_decode(data), frame), f"{enc} is not lossless"
            out[f"{enc}_ms"] = _timed(lambda e=enc, lv=level: encode_png(frame, encoder=e, level=lv),
                                      reps) * 1e3
            out[f"{enc}_MB"] = len(data) / 1e6
        per = 2 * reps

        def work():
            for _ in range(reps):
                encode_png(frame, encoder="fpng")

        ths = [threading.Thread(target=work) for _ in range(2)]
        t0 = time.perf_counter()
        for t in ths:
            t.start()
        for t in ths:
            t.join()
        out["fpng_2threads_ms_per_frame"] = (time.perf_counter() - t0) / per * 1e3
        # 3. full capture, with writer processes and with writer threads
        out["capture"] = {}
        for kind in kinds:
            with tempfile.TemporaryDirectory() as tmp:
                s = record(src, tmp, "bench", RecordOptions(
                    resolutions=(name,), fps=TARGET_FPS[name], duration=seconds,
                    filters=FilterConfig(drop_duplicates=False), writers=writers, writer_kind=kind,
                    policy="wait", progress=False))
            out["capture"][kind] = dict(
                capture_fps=s.achieved_fps, written=s.written, grabbed=s.grabbed,
                dropped=sum(s.dropped.values()), waits=s.backpressure_waits,
                wait_s=s.backpressure_wait_s, late=s.late_grabs, mean_grab_ms=s.mean_grab_ms,
                mean_encode_ms=s.mean_encode_ms)
    out["target_fps"] = TARGET_FPS[name]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=5.0, help="seconds per measurement (default 5)")
    ap.add_argument("--sizes", default="720p,1080p", help="comma-separated: 720p,1080p")
    ap.add_argument("--writers", type=int, default=2, help="PNG writers for the full capture")
    ap.add_argument("--kinds", default="process,thread", help="writer kinds to compare")
    args = ap.parse_args()
    print(f"capture benchmark: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}, "
          f"{args.seconds:g} s per measurement")
    for name in args.sizes.split(","):
        r = bench_size(name.strip(), args.seconds, args.writers, tuple(args.kinds.split(",")))
        print(f"\n== {r['size']} window on Xvfb")
        print(f"grab only          : {r['grab_fps']:7.1f} frames/s")
        print(f"PNG encode fpng    : {r['fpng_ms']:7.1f} ms/frame ({r['fpng_MB']:.2f} MB), bit-exact")
        print(f"PNG encode zlib l1 : {r['zlib_ms']:7.1f} ms/frame ({r['zlib_MB']:.2f} MB), bit-exact")
        print(f"fpng on 2 threads  : {r['fpng_2threads_ms_per_frame']:7.1f} ms/frame of wall time")
        for kind, c in r["capture"].items():
            ok = c["capture_fps"] >= 0.95 * r["target_fps"] and c["dropped"] == 0
            print(f"capture, {kind:7s}  : {c['capture_fps']:7.1f} grabs/s of {r['target_fps']:.0f} target, "
                  f"{c['written']} written of {c['grabbed']} grabbed, dropped {c['dropped']}, "
                  f"writer waits {c['waits']} ({c['wait_s']:.2f} s), late grabs {c['late']}, "
                  f"grab {c['mean_grab_ms']:.1f} ms, encode {c['mean_encode_ms']:.1f} ms "
                  f"-> {'meets' if ok else 'MISSES'} target")


if __name__ == "__main__":
    main()
