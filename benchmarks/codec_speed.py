"""Speed and memory of the learned codecs: compress/decompress time split into network and
entropy coding, per architecture and resolution, next to compressai's mbt2018-mean with the
same channel count (N = M = the c2f width) measured in the same run, both through this
codec (same container, float64 entropy-parameter path) and through compressai's own
``compress()``/``decompress()`` (row ``compressai-native-mbt2018-mean``, total time only).

    python benchmarks/codec_speed.py                      # all sizes, 720p+1080p, CPU (+CUDA)
    python benchmarks/codec_speed.py --sizes small-pruned,xsmall-pruned --res 720p \\
        --repeats 2 --device cpu --csv speed.csv

Models have random weights passed through ``update()`` (speed does not depend on training,
except entropy coding, which depends mildly on the symbol statistics). The input is a
synthetic game-like frame. Times: median of ``--repeats`` runs after one warm-up run,
``time.perf_counter`` with ``torch.cuda.synchronize()`` around GPU work. Peak memory:
``torch.cuda.max_memory_allocated`` on CUDA; on CPU the peak resident set size above the
level before the call (sampled every 2 ms from /proc/self/statm; tracemalloc does not see
torch's allocator).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

RES = {"720p": (1280, 720), "1080p": (1920, 1080)}
ALL_SIZES = ["large", "medium", "small", "xsmall", "large-pruned", "medium-pruned",
             "small-pruned", "xsmall-pruned"]


def synthetic_frame(w: int, h: int, seed: int = 0) -> np.ndarray:
    """A game-like frame: smooth gradients, flat rectangles, a little texture."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([120 + 80 * np.sin(xx / 97), 100 + 60 * np.cos(yy / 53), 90 + 0.05 * xx], 2)
    for _ in range(40):
        x0, y0 = rng.integers(0, w - 40), rng.integers(0, h - 40)
        img[y0 : y0 + rng.integers(20, 200), x0 : x0 + rng.integers(20, 300)] = rng.integers(0, 255, 3)
    img += rng.normal(0, 3, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakRSS:
    """Peak RSS above the starting level while the context is open (bytes)."""

    def __enter__(self):
        self.base = self.peak = _rss()
        self._stop = False
        self._t = threading.Thread(target=self._poll, daemon=True)
        self._t.start()
        return self

    def _poll(self):
        while not self._stop:
            self.peak = max(self.peak, _rss())
            time.sleep(0.002)

    def __exit__(self, *exc):
        self._stop = True
        self._t.join()
        self.peak = max(self.peak, _rss())
        self.delta = self.peak - self.base


def bench_one(arch: str, config: dict, rgb: np.ndarray, device: str, repeats: int,
              tile: str, coder: str, fp16: bool) -> dict:
    import torch

    from models.architectures import create_model
    from models.codec import compress_image_timed, decompress_image_timed

    torch.manual_seed(0)
    model = create_model(arch, **config)
    model.update(force=True)
    model.eval().to(device)
    rows = {"c": [], "d": []}
    mem = {}
    for i in range(repeats + 1):  # first run = warm-up
        for phase in ("c", "d"):
            if device == "cuda":
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
            with PeakRSS() as pr:
                t0 = time.perf_counter()
                if phase == "c":
                    r = compress_image_timed(model, rgb, tile=tile, coder=coder, device=device,
                                             fp16=fp16)
                    data = r.data
                else:
                    r = decompress_image_timed(model, data, device=device, fp16=fp16)
                if device == "cuda":
                    torch.cuda.synchronize()
                total = time.perf_counter() - t0
            if i > 0:
                rows[phase].append((total, r.network_s, r.entropy_s))
            mem[phase] = (torch.cuda.max_memory_allocated() if device == "cuda" else pr.delta)
    h, w = rgb.shape[:2]
    out = {"arch": arch, "config": ",".join(f"{k}={v}" for k, v in config.items()),
           "device": device, "width": w, "height": h, "bytes": len(data),
           "bpp": 8 * len(data) / (w * h)}
    for phase, name in (("c", "compress"), ("d", "decompress")):
        for j, part in enumerate(("total", "network", "entropy")):
            out[f"{name}_{part}_ms"] = 1e3 * statistics.median(x[j] for x in rows[phase])
        out[f"{name}_peak_mib"] = mem[phase] / 2**20
    del model
    if device == "cuda":
        torch.cuda.empty_cache()
    return out


def bench_native(n: int, rgb: np.ndarray, device: str, repeats: int) -> dict:
    """compressai's own MeanScaleHyperprior.compress()/decompress() (no time split available)."""
    import torch
    import torch.nn.functional as F
    from compressai.models import MeanScaleHyperprior

    torch.manual_seed(0)
    m = MeanScaleHyperprior(N=n, M=n)
    m.update(force=True)
    m.eval().to(device)
    h, w = rgb.shape[:2]
    x = torch.from_numpy(rgb).permute(2, 0, 1)[None].float().div(255)
    x = F.pad(x, (0, (-w) % 64, 0, (-h) % 64), mode="replicate").to(device)
    times = {"c": [], "d": []}
    mem = {}
    for i in range(repeats + 1):
        for phase in ("c", "d"):
            if device == "cuda":
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
            with PeakRSS() as pr, torch.no_grad():
                t0 = time.perf_counter()
                if phase == "c":
                    enc = m.compress(x)
                else:
                    m.decompress(enc["strings"], enc["shape"])
                if device == "cuda":
                    torch.cuda.synchronize()
                dt = time.perf_counter() - t0
            if i > 0:
                times[phase].append(dt)
            mem[phase] = torch.cuda.max_memory_allocated() if device == "cuda" else pr.delta
    nbytes = sum(len(s[0]) for s in enc["strings"])
    out = {"arch": "compressai-native-mbt2018-mean", "config": f"N={n},M={n}", "device": device,
           "width": w, "height": h, "bytes": nbytes, "bpp": 8 * nbytes / (w * h)}
    for phase, name in (("c", "compress"), ("d", "decompress")):
        out[f"{name}_total_ms"] = 1e3 * statistics.median(times[phase])
        out[f"{name}_network_ms"] = out[f"{name}_entropy_ms"] = float("nan")
        out[f"{name}_peak_mib"] = mem[phase] / 2**20
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default=",".join(ALL_SIZES),
                    help="comma list of c2f sizes, e.g. small,small-pruned")
    ap.add_argument("--res", default="720p,1080p", help="comma list of 720p, 1080p or WxH")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="auto", help="cpu, cuda, or auto (cpu and cuda if present)")
    ap.add_argument("--tile", default="whole")
    ap.add_argument("--coder", default="ans", choices=["ans", "lzma"])
    ap.add_argument("--fp16", action="store_true", help="transforms in float16 (CUDA only)")
    ap.add_argument("--no-reference", action="store_true",
                    help="skip the mbt2018-mean references (through this codec, and compressai's "
                         "own compress()/decompress())")
    ap.add_argument("--csv", help="also write the table here (CSV)")
    args = ap.parse_args(argv)

    import pandas as pd
    import torch

    from models.architectures import reference_for

    torch.backends.cudnn.benchmark = True
    if args.device == "auto":
        devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    else:
        devices = args.device.split(",")
    if "cuda" in devices and not torch.cuda.is_available():
        print("CUDA requested but not available", file=sys.stderr)
        return 1
    resolutions = []
    for r in args.res.split(","):
        if r in RES:
            resolutions.append(RES[r])
        else:
            w, _, h = r.partition("x")
            resolutions.append((int(w), int(h)))
    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    results = []
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, devices {devices}"
          + (f", GPU {torch.cuda.get_device_name()}" if "cuda" in devices else ""))
    for dev in devices:
        for w, h in resolutions:
            rgb = synthetic_frame(w, h)
            done_refs = set()
            for size in sizes:
                arch = f"c2f-{size}"
                jobs = [(arch, {})]
                ref, cfg = reference_for(arch)
                key = tuple(cfg.items())
                if not args.no_reference and key not in done_refs:
                    done_refs.add(key)
                    jobs.append((ref, cfg))
                    jobs.append(("native", cfg))
                for a, c in jobs:
                    if a == "native":
                        row = bench_native(c["N"], rgb, dev, args.repeats)
                    else:
                        row = bench_one(a, c, rgb, dev, args.repeats, args.tile, args.coder,
                                        args.fp16)
                    results.append(row)
                    print(f"{dev:4} {w}x{h} {row['arch'][:30]:30} {row['config']:10} "
                          f"enc {row['compress_total_ms']:8.1f} ms (net {row['compress_network_ms']:7.1f}"
                          f" + ent {row['compress_entropy_ms']:6.1f})  "
                          f"dec {row['decompress_total_ms']:8.1f} ms (net {row['decompress_network_ms']:7.1f}"
                          f" + ent {row['decompress_entropy_ms']:6.1f})  "
                          f"peak {row['compress_peak_mib']:7.0f}/{row['decompress_peak_mib']:7.0f} MiB",
                          flush=True)
    df = pd.DataFrame(results)
    if args.csv:
        df.to_csv(args.csv, index=False)
        print(f"wrote {args.csv}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
