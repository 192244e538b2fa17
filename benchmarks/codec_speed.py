"""Speed and memory of the learned codecs: compress/decompress time split into network and
entropy coding, per architecture and resolution, next to compressai's mbt2018-mean with the
same channel count (N = M = the c2f width) measured in the same run, both through this
codec (same container, float64 entropy-parameter path) and through compressai's own
``compress()``/``decompress()`` (row ``compressai-native-mbt2018-mean``, total time only).

    python benchmarks/codec_speed.py                      # all sizes, 720p+1080p, CPU (+CUDA)
    python benchmarks/codec_speed.py --sizes small-pruned,xsmall-pruned --res 720p \\
        --repeats 2 --device cpu --csv speed.csv
    python benchmarks/codec_speed.py --sizes xsmall-pruned --res 720p,1080p --threads 1,2 \\
        --no-reference --checkpoint best.pt --image frame.png   # + substream overhead, trained

Each c2f row runs once per ``--threads`` count (default 1, 2 and, where more cores are
available, all of them), the counts interleaved like every other row; a row's threads serve
torch and the rANS substreams alike (``threads=`` of :mod:`models.codec`). Times are split
into network, entropy coding and container (packing; parsing and the string bounds) ms,
and for each count above 1 the speed-up of the entropy phase and of the whole call against
one thread is printed. ``--substreams K`` is the K streams are coded with; the
"substream overhead" lines compare, per model and resolution, the bytes of a K-substream
stream with a one-substream stream of the same frame (random weights unless
``--checkpoint`` gives a trained model, which its architecture's timed rows then use too;
``--image`` a real frame, resized to each resolution).

Models have random weights passed through ``update()`` (speed does not depend on training,
except entropy coding, which depends mildly on the symbol statistics). The input is a
synthetic game-like frame. Times: best of ``--repeats`` runs after one warm-up run, all
configurations of one resolution interleaved round-robin (so load from other processes hits
them alike); wall time ``time.perf_counter`` (``torch.cuda.synchronize()`` around GPU work)
and CPU time ``time.process_time``. ``--threads`` sets torch's intra-op threads for every
row, the compressai-native reference included (which runs under ``torch.inference_mode``
like this codec). ``--plain`` adds this codec without its inference optimisations
(``fast=False``) for before/after comparisons. Peak memory:
``torch.cuda.max_memory_allocated`` on CUDA; on CPU the peak resident set size above the
level before the call (sampled every 2 ms from /proc/self/statm; tracemalloc does not see
torch's allocator).
"""

from __future__ import annotations

import argparse
import os
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


class _Runner:
    """One measured configuration; ``run(phase)`` does one compress ("c") or decompress ("d")."""

    arch: str
    config: str

    def __init__(self, device: str) -> None:
        self.device = device
        self.samples: dict[str, list[tuple[float, ...]]] = {"c": [], "d": []}
        self.threads: int | None = None
        self.mem: dict[str, int] = {}
        self.nbytes = 0

    def run(self, phase: str) -> tuple[float, float]:  # (network_s, entropy_s); nan if unknown
        raise NotImplementedError

    def measure(self, phase: str, keep: bool) -> None:
        import torch

        cuda = self.device == "cuda"
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        with PeakRSS() as pr:
            c0, t0 = time.process_time(), time.perf_counter()
            net, ent = self.run(phase)
            if cuda:
                torch.cuda.synchronize()
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        if keep:
            self.samples[phase].append((wall, cpu, net, ent, getattr(self, "container_s", 0.0)))
        self.mem[phase] = torch.cuda.max_memory_allocated() if cuda else pr.delta


class CodecRunner(_Runner):
    """This codec (``models.codec``): container, float64 entropy-parameter path, rANS/LZMA."""

    def __init__(self, arch: str, config: dict, rgb: np.ndarray, device: str, tile: str,
                 coder: str, fp16: bool, fast: bool, threads: int | None = None,
                 substreams: int | None = None, model=None) -> None:
        from models.codec import prepare

        super().__init__(device)
        # prepared once, as a caller coding many frames does (inference copy, tables, hash)
        self.model = prepare(model if model is not None else random_model(arch, config),
                             device, fast=fast)
        self.arch = arch + ("" if fast else " (plain)")
        self.config = ",".join(f"{k}={v}" for k, v in config.items())
        self.rgb, self.tile, self.coder, self.fp16, self.fast = rgb, tile, coder, fp16, fast
        self.threads, self.substreams = threads, substreams

    def run(self, phase: str) -> tuple[float, float]:
        from models.codec import compress_image_timed, decompress_image_timed

        if phase == "c":
            r = compress_image_timed(self.model, self.rgb, tile=self.tile, coder=self.coder,
                                     device=self.device, fp16=self.fp16, fast=self.fast,
                                     threads=self.threads, substreams_k=self.substreams)
            self.data = r.data
            self.nbytes = len(r.data)
        else:
            r = decompress_image_timed(self.model, self.data, device=self.device, fp16=self.fp16,
                                       fast=self.fast, threads=self.threads)
        self.container_s = r.container_s
        return r.network_s, r.entropy_s


def random_model(arch: str, config: dict):
    """``arch`` with seeded random weights, entropy tables built, eval mode."""
    import torch

    from models.architectures import create_model

    torch.manual_seed(0)
    model = create_model(arch, **config)
    model.update(force=True)
    return model.eval()


class TodayRunner(CodecRunner):
    """The coding path before container v3, in the same run: one compressai rANS string per
    level from Python lists (the encoder of that code, repeated here), container version 1,
    decoded by the version-1 path that cloud3d keeps (compressai's decoder, one thread for
    the entropy coder; torch runs on this row's threads)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.arch += " (before v3)"

    def run(self, phase: str) -> tuple[float, float]:
        from models import bitstream
        from models.codec import decompress_image_timed
        from models.substreams import torch_threads

        if phase == "d":
            r = decompress_image_timed(self.model, self.data, device=self.device,
                                       fp16=self.fp16, fast=self.fast, threads=self.threads)
            self.container_s = r.container_s
            return r.network_s, r.entropy_s
        with torch_threads(self.threads):
            times, strings = self._encode_v1()
        t0 = time.perf_counter()
        s = bitstream.Stream(self.model.arch, self.model.weights_hash, self.rgb.shape[1],
                             self.rgb.shape[0], 0, "ans", len(self.model.latent_strides),
                             [strings])
        self.data = bitstream.pack(s)
        self.nbytes = len(self.data)
        self.container_s = time.perf_counter() - t0
        return times["network"], times["entropy"]

    def _encode_v1(self):
        import torch
        from compressai import ans

        from models.codec import _encode_tile, _pad, _rgb_to_tensor

        def to_list(t):
            return t.reshape(-1).to("cpu", torch.int32).numpy().tolist()

        pm, times = self.model, {"network": 0.0, "entropy": 0.0}
        levels = _encode_tile(pm, _pad(_rgb_to_tensor(self.rgb), pm.stride), self.fp16, None,
                              times)
        t0 = time.perf_counter()
        enc, strings = ans.RansEncoder(), []
        for k, (sym, idx) in enumerate(zip(levels.symbols, levels.indexes, strict=True)):
            tb, masks = pm.entropy.tables(k), levels.masks[k]
            if masks is None:
                sl, il = to_list(sym), to_list(idx)
            else:
                sl = [v for m in masks for v in to_list(sym[m])]
                il = [v for m in masks for v in to_list(idx[m])]
            strings.append(enc.encode_with_indexes(sl, il, tb.cdf, tb.lengths, tb.offsets))
        times["entropy"] += time.perf_counter() - t0
        return times, strings


class NativeRunner(_Runner):
    """compressai's own MeanScaleHyperprior.compress()/decompress() under inference_mode.

    The input is padded to a multiple of 64 (replicate) once, outside the timed region;
    the output is not converted to uint8 (compressai returns a float tensor).
    """

    def __init__(self, n: int, rgb: np.ndarray, device: str, threads: int | None = None) -> None:
        import torch
        import torch.nn.functional as F
        from compressai.models import MeanScaleHyperprior

        super().__init__(device)
        self.threads = threads
        torch.manual_seed(0)
        self.m = MeanScaleHyperprior(N=n, M=n)
        self.m.update(force=True)
        self.m.eval().to(device)
        self.arch, self.config = "compressai-native-mbt2018-mean", f"N={n},M={n}"
        h, w = rgb.shape[:2]
        x = torch.from_numpy(rgb).permute(2, 0, 1)[None].float().div(255)
        self.x = F.pad(x, (0, (-w) % 64, 0, (-h) % 64), mode="replicate").to(device)

    def run(self, phase: str) -> tuple[float, float]:
        import torch

        from models.substreams import torch_threads

        with torch.inference_mode(), torch_threads(self.threads):
            if phase == "c":
                self.enc = self.m.compress(self.x)
                self.nbytes = sum(len(s[0]) for s in self.enc["strings"])
            else:
                self.m.decompress(self.enc["strings"], self.enc["shape"])
        return float("nan"), float("nan")


def run_interleaved(runners: list[_Runner], repeats: int) -> None:
    """One warm-up round, then ``repeats`` rounds; each round runs every runner's compress then
    decompress in turn, so load from other processes hits all configurations alike."""
    for i in range(repeats + 1):
        for r in runners:
            for phase in ("c", "d"):
                r.measure(phase, keep=i > 0)


def summarise(r: _Runner, w: int, h: int) -> dict:
    """Best-of-repeats wall and CPU time (ms) per phase, with the network/entropy split of the
    repeat with the best wall time."""
    out = {"arch": r.arch, "config": r.config, "device": r.device, "width": w, "height": h,
           "bytes": r.nbytes, "bpp": 8 * r.nbytes / (w * h)}
    for phase, name in (("c", "compress"), ("d", "decompress")):
        best = min(r.samples[phase])
        out[f"{name}_total_ms"] = 1e3 * best[0]
        out[f"{name}_cpu_ms"] = 1e3 * min(x[1] for x in r.samples[phase])
        out[f"{name}_network_ms"] = 1e3 * best[2]
        out[f"{name}_entropy_ms"] = 1e3 * best[3]
        out[f"{name}_container_ms"] = 1e3 * best[4]
        out[f"{name}_peak_mib"] = r.mem[phase] / 2**20
    return out


def thread_counts(text: str | None) -> list[int]:
    """``--threads`` as counts: the given comma list, else 1, 2 and all available cores."""
    from models.substreams import available_cores

    if text:
        return [int(v) for v in text.split(",") if v.strip()]
    return sorted({1, 2, available_cores()})


def load_frame(path: str | None, w: int, h: int) -> np.ndarray:
    """``path`` (any Pillow image) resized to ``w x h``, or the synthetic frame."""
    if not path:
        return synthetic_frame(w, h)
    from PIL import Image

    with Image.open(path) as im:
        return np.array(im.convert("RGB").resize((w, h), Image.Resampling.LANCZOS))


def substream_overhead(model, rgb: np.ndarray, k: int, device: str) -> tuple[int, int]:
    """Bytes of ``rgb``'s stream with one substream per level and with up to ``k``."""
    from models.codec import compress_image

    one = compress_image(model, rgb, device=device, substreams_k=1)
    many = compress_image(model, rgb, device=device, substreams_k=k)
    return len(one), len(many)


def print_speedups(rows: list[dict]) -> None:
    """For each arch of one device/resolution: entropy and total speed-up of t vs 1 thread."""
    base = {(r["arch"], r["config"]): r for r in rows if r["threads"] == 1}
    for r in rows:
        b = base.get((r["arch"], r["config"]))
        if b is None or r["threads"] == 1 or r["arch"].startswith("compressai"):
            continue
        parts = []
        for ph in ("compress", "decompress"):
            ent = b[f"{ph}_entropy_ms"] / max(r[f"{ph}_entropy_ms"], 1e-9)
            tot = b[f"{ph}_total_ms"] / max(r[f"{ph}_total_ms"], 1e-9)
            parts.append(f"{ph} entropy x{ent:.2f}, total x{tot:.2f}")
        print(f"     speed-up {r['arch']} {r['threads']} vs 1 threads: " + "; ".join(parts),
              flush=True)


def _parser() -> argparse.ArgumentParser:
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
    ap.add_argument("--threads", default=None,
                    help="comma list of thread counts, one row each (default: 1, 2 and all "
                         "available cores)")
    ap.add_argument("--substreams", type=int, default=None,
                    help="K, the most rANS substreams per latent level (default: the codec's, 4)")
    ap.add_argument("--checkpoint", default=None,
                    help="a trained checkpoint (.pt): its architecture's rows and substream-"
                         "overhead lines use it; default: random weights")
    ap.add_argument("--image", default=None,
                    help="a real frame (resized to each resolution) instead of the synthetic one")
    ap.add_argument("--today", action="store_true",
                    help="also run the coding path before container v3 (compressai's coder on "
                         "one string per level, version 1) at the same thread counts")
    ap.add_argument("--plain", action="store_true",
                    help="also run this codec with fast=False (compressai's GDN and NCHW layers "
                         "as they are), i.e. before/after the inference optimisations")
    ap.add_argument("--csv", help="also write the table here (CSV)")
    return ap


def _resolutions(text: str) -> list[tuple[int, int]]:
    """``720p``, ``1080p`` or ``WxH`` names, comma-separated, as (width, height)."""
    resolutions = []
    for r in text.split(","):
        if r in RES:
            resolutions.append(RES[r])
        else:
            w, _, h = r.partition("x")
            resolutions.append((int(w), int(h)))
    return resolutions


def _print_method(counts: list[int], k: int, devices: list[str], repeats: int) -> None:
    import torch

    print(f"torch {torch.__version__}, OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}, "
          f"thread counts {counts}, substreams K={k}, devices "
          f"{devices}" + (f", GPU {torch.cuda.get_device_name()}" if "cuda" in devices else "")
          + f", load average {os.getloadavg()[0]:.1f}")
    print(f"each figure: best of {repeats} repeats after 1 warm-up, all rows of one "
          "resolution (every thread count included) interleaved round-robin per repeat; wall = "
          "time.perf_counter, cpu = time.process_time (all threads of this process); "
          "network/entropy/container split from the best-wall repeat.\n"
          "  c2f-* / mbt2018-mean rows: this codec (models.codec: uint8 in/out, padding, "
          "container, float64 entropy-parameter path, rANS substreams), inference_mode, fused "
          "GDN + channels-last transforms; '(plain)': the same with compressai's layers.\n"
          "  compressai-native-mbt2018-mean: compressai's MeanScaleHyperprior.compress()/"
          "decompress() on a pre-padded float tensor, inference_mode, same threads.")


def _runners(args: argparse.Namespace, sizes: list[str], counts: list[int], k: int, trained,
             rgb: np.ndarray, dev: str) -> list[_Runner]:
    """Every row of one (device, resolution): each size, its reference and compressai's own
    coder (unless --no-reference), at each thread count, plus --today / --plain variants."""
    from models.architectures import reference_for

    done_refs = set()
    runners: list[_Runner] = []
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
            for t in counts:
                if a == "native":
                    runners.append(NativeRunner(c["N"], rgb, dev, t))
                    continue
                own = trained if trained is not None and trained.arch == a else None
                runners.append(CodecRunner(a, c, rgb, dev, args.tile, args.coder,
                                           args.fp16, True, t, k, model=own))
                if args.today and args.tile == "whole" and args.coder == "ans":
                    runners.append(TodayRunner(a, c, rgb, dev, args.tile, args.coder,
                                               args.fp16, True, t, k,
                                               model=runners[-1].model.model))
                if args.plain:
                    runners.append(CodecRunner(a, c, rgb, dev, args.tile, args.coder,
                                               args.fp16, False, t, k))
    return runners


def _print_row(dev: str, w: int, h: int, row: dict) -> None:
    print(f"{dev:4} {w}x{h} {row['arch'][:30]:30} {row['config']:10} t={row['threads']:<2} "
          f"enc {row['compress_total_ms']:7.0f} ms wall {row['compress_cpu_ms']:7.0f}"
          f" cpu (net {row['compress_network_ms']:6.0f} + ent "
          f"{row['compress_entropy_ms']:5.1f} + cont {row['compress_container_ms']:4.1f})"
          f"  dec {row['decompress_total_ms']:7.0f} ms wall "
          f"{row['decompress_cpu_ms']:7.0f} cpu (net {row['decompress_network_ms']:6.0f}"
          f" + ent {row['decompress_entropy_ms']:5.1f} + cont "
          f"{row['decompress_container_ms']:4.1f})  "
          f"peak {row['compress_peak_mib']:5.0f}/{row['decompress_peak_mib']:5.0f} MiB",
          flush=True)


def _print_overheads(sizes: list[str], trained, rgb: np.ndarray, k: int, dev: str, rows: list[dict]) -> None:
    """The substream overhead of each size (K substreams vs one), stored in its rows too."""
    for size in sizes:
        arch = f"c2f-{size}"
        if trained is not None and trained.arch != arch:
            continue
        model = trained if trained is not None else random_model(arch, {})
        one, many = substream_overhead(model, rgb, k, dev)
        for row in rows:
            if row["arch"] == arch:
                row["bytes_one_substream"] = one
        print(f"     substream overhead {arch} ({'trained' if trained else 'random'} "
              f"weights): K={k} {many} bytes vs 1 substream {one} bytes: "
              f"{100 * (many - one) / one:+.3f}%", flush=True)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # idle OpenMP threads sleep instead of spinning (before torch loads OpenMP): on a machine
    # shared with other jobs a spinning thread holds the core another thread's work needs
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

    import pandas as pd
    import torch

    from models.substreams import DEFAULT_SUBSTREAMS

    torch.backends.cudnn.benchmark = True
    counts = thread_counts(args.threads)
    k = args.substreams or DEFAULT_SUBSTREAMS
    if args.device == "auto":
        devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    else:
        devices = args.device.split(",")
    if "cuda" in devices and not torch.cuda.is_available():
        print("CUDA requested but not available", file=sys.stderr)
        return 1
    resolutions = _resolutions(args.res)
    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    trained = None
    if args.checkpoint:
        from models.checkpoint import load_checkpoint

        trained, _ = load_checkpoint(args.checkpoint)
        trained.update(force=True)
    results = []
    _print_method(counts, k, devices, args.repeats)
    for dev in devices:
        for w, h in resolutions:
            rgb = load_frame(args.image, w, h)
            runners = _runners(args, sizes, counts, k, trained, rgb, dev)
            print(f"{dev} {w}x{h}: load average {os.getloadavg()[0]:.1f} before", flush=True)
            run_interleaved(runners, args.repeats)
            rows = []
            for r in runners:
                row = summarise(r, w, h)
                row["threads"] = r.threads or torch.get_num_threads()
                rows.append(row)
                _print_row(dev, w, h, row)
            print(f"     load average {os.getloadavg()[0]:.1f} after", flush=True)
            print_speedups(rows)
            if args.coder == "ans":
                _print_overheads(sizes, trained, rgb, k, dev, rows)
            results.extend(rows)
    df = pd.DataFrame(results)
    if args.csv:
        df.to_csv(args.csv, index=False)
        print(f"wrote {args.csv}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
