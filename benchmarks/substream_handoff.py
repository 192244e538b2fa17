"""Where a decode's entropy phase goes, pass by pass, on 1 and 2 threads (issue 22).

    python benchmarks/substream_handoff.py                       # c2f-xsmall-pruned, 720p
    python benchmarks/substream_handoff.py --arch c2f-small-pruned --res 1080p --decodes 60

Decodes one stream of a synthetic game-like frame (random weights through ``update()``, as
``codec_speed.py``) ``--decodes`` times per thread count, the counts alternating, and times
every substream pass with ``time.perf_counter`` stamps around the pass
(``LevelDecoder.decode_pass``) and around each thread's kernel call (``rans.decode_share``):

* ``setup``: pass start to the calling thread's kernel start (allocation, waking the pool
  thread, numba's dispatch);
* ``caller`` / ``worker``: each thread's kernel time for its share of the substreams;
* ``delay``: the pool thread's kernel start after the caller's (wake-up and GIL hand-over);
* ``tail``: the last kernel's end to the pass's end (the join).

Prints the median and the minimum of each column per pass and thread count (microseconds),
then the entropy phase (``DecompressResult.entropy_s``) and the whole decode, min and
median, with the 2-thread speed-ups. Run it on a quiet machine: the figures are tens of
microseconds. Sets ``OMP_WAIT_POLICY=PASSIVE`` unless set, as the CLI does.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--arch", default="c2f-xsmall-pruned")
    ap.add_argument("--res", default="720p", help="720p, 1080p or WxH")
    ap.add_argument("--decodes", type=int, default=40, help="decodes per thread count")
    args = ap.parse_args()
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

    import pandas as pd
    from codec_speed import RES, random_model, synthetic_frame

    from models import rans, substreams
    from models.codec import compress_image_timed, decompress_image_timed, prepare

    w, h = RES[args.res] if args.res in RES else map(int, args.res.split("x"))
    pm = prepare(random_model(args.arch, {}), "cpu")
    data = compress_image_timed(pm, synthetic_frame(w, h), threads=1).data

    stamps: list[tuple[str, float, float]] = []
    kernel, decode_pass = rans.decode_share, substreams.LevelDecoder.decode_pass

    def timed_kernel(*a, **k):
        t = time.perf_counter()
        r = kernel(*a, **k)
        who = "caller" if threading.current_thread() is threading.main_thread() else "worker"
        stamps.append((who, t, time.perf_counter()))
        return r

    def timed_pass(self, *a, **k):
        t = time.perf_counter()
        r = decode_pass(self, *a, **k)
        stamps.append(("pass", t, time.perf_counter()))
        return r

    rans.decode_share = timed_kernel
    substreams.LevelDecoder.decode_pass = timed_pass
    rows, calls = [], []
    for rep in range(args.decodes + 1):  # the first round warms up
        for threads in (1, 2):
            stamps.clear()
            t0 = time.perf_counter()
            r = decompress_image_timed(pm, data, threads=threads)
            wall = time.perf_counter() - t0
            if rep:
                calls.append((threads, r.entropy_s * 1e3, wall * 1e3))
                rows += _passes(threads, stamps)
    cols = ["threads", "pass", "total", "setup", "caller", "delay", "worker", "tail"]
    df = pd.DataFrame(rows, columns=cols)
    print(f"{args.arch} {w}x{h}, {args.decodes} decodes per thread count; microseconds per pass")
    print("median:\n" + df.groupby(["threads", "pass"]).median().round(0).to_string())
    print("minimum:\n" + df.groupby(["threads", "pass"]).min().round(0).to_string())
    c = pd.DataFrame(calls, columns=["threads", "entropy_ms", "decode_ms"])
    mn, md = c.groupby("threads").min(), c.groupby("threads").median()
    for name, col in (("entropy phase", "entropy_ms"), ("whole decode", "decode_ms")):
        print(f"{name}: 1 thread min {mn[col][1]:.3f} / median {md[col][1]:.3f} ms, "
              f"2 threads min {mn[col][2]:.3f} / median {md[col][2]:.3f} ms: speed-up "
              f"x{mn[col][1] / mn[col][2]:.2f} (min) x{md[col][1] / md[col][2]:.2f} (median)")


def _passes(threads: int, stamps: list[tuple[str, float, float]]) -> list[tuple]:
    """One row per pass from the stamps of one decode (kernel calls come before their pass's
    own stamp, which is written when the pass ends)."""
    rows, kernels = [], []
    for who, a, b in stamps:
        if who != "pass":
            kernels.append((who, a, b))
            continue
        caller = [k for k in kernels if k[0] == "caller"]
        worker = [k for k in kernels if k[0] == "worker"]
        kernels = []
        if not caller:  # a small pass decoded in pure Python: no kernel call
            continue
        c, wk = caller[0], worker[0] if worker else None
        end = max(c[2], wk[2] if wk else 0.0)
        rows.append((threads, len(rows), (b - a) * 1e6, (c[1] - a) * 1e6, (c[2] - c[1]) * 1e6,
                     (wk[1] - c[1]) * 1e6 if wk else 0.0, (wk[2] - wk[1]) * 1e6 if wk else 0.0,
                     (b - end) * 1e6))
    return rows


if __name__ == "__main__":
    main()
