"""Packaging and verify speed: ``cloud3d split`` then ``cloud3d verify`` on synthetic captures.

Records 6 apps x ``--frames`` (default 1000) frames of capture's synthetic scene at
128x72 with capture's own recorder (frames.csv + ``native/``, fpng-encoded), then times,
with ``time.perf_counter``:

* packaging all apps into one dataset with hard links (800/100/100 scaled to
  ``--frames``, blocks of 10 frames; reads each file once for SHA-256 and the PNG
  chunk/CRC check, no pixel decoding);
* optionally (``--copy``) the same with copies;
* ``verify`` of the whole dataset (SHA-256 + full PNG decode per file,
  process pool).

Figures are files per second (one file = one frame at one resolution). The
raw files were just written, so they are in the page cache: these are
warm-cache figures. Usage::

    python benchmarks/split_bench.py                # 6,000 files
    python benchmarks/split_bench.py --frames 200   # quicker
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

from capture import RecordOptions, SyntheticSource, record
from cloud3d_dataset.split import build_splits
from cloud3d_dataset.verify import verify

APPS = ("supertuxkart", "0ad", "redeclipse", "dota2", "inmind", "imhotep")
SIZE = (128, 72)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=1000, help="frames per app (default 1000)")
    ap.add_argument("--workers", type=int, default=None, help="workers (default: CPU count)")
    ap.add_argument("--copy", action="store_true", help="also time packaging with copies")
    ap.add_argument(
        "--workdir", default=None, help="scratch folder (default: a temp folder, removed)"
    )
    args = ap.parse_args()

    base = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="split_bench-"))
    try:
        raw = base / "RAW"
        t0 = time.perf_counter()
        for i, app in enumerate(APPS):
            with SyntheticSource(*SIZE, seed=i) as src:
                record(src, raw, app, RecordOptions(count=args.frames, writer_kind="thread",
                                                    progress=False))
        n_files = len(APPS) * args.frames
        print(f"recorded {n_files} raw PNGs ({len(APPS)} apps x {args.frames}) "
              f"in {time.perf_counter() - t0:.1f} s")
        test = max(1, args.frames // 10)
        counts = {"train": args.frames - 2 * test, "val": test, "test": test}
        runs = [("link", False)] + ([("copy", True)] if args.copy else [])
        ds = base / "DS-link"
        for label, copy in runs:
            ds = base / f"DS-{label}"
            t0 = time.perf_counter()
            total = 0
            for app in APPS:
                r = build_splits(
                    raw,
                    ds,
                    app=app,
                    **counts,
                    block=10,
                    guard=0,
                    copy=copy,
                    workers=args.workers,
                    progress=False,
                )
                total += r.files
            dt = time.perf_counter() - t0
            print(f"package ({label}): {total} files in {dt:.2f} s = {total / dt:,.0f} files/s")
        t0 = time.perf_counter()
        rep = verify(ds, workers=args.workers, progress=False)
        dt = time.perf_counter() - t0
        status = "ok" if rep.ok else f"{len(rep.problems)} problems"
        print(
            f"verify: {rep.checked} files in {dt:.2f} s = {rep.checked / dt:,.0f} files/s ({status})"
        )
        print(
            f"machine: {os.cpu_count()} CPUs; warm page cache; timings on a shared machine are noisy"
        )
    finally:
        if not args.workdir:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
