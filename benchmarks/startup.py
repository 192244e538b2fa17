"""Start-up time of the command line: ``cloud3d --help`` and ``cloud3d decompress`` of a small
stream, against ``python -c "import torch"`` measured in the same run.

    python benchmarks/startup.py                 # 1 warm-up + 5 timed runs of each command
    python benchmarks/startup.py --repeats 9 --top 20

Targets (issue 25): ``cloud3d --help`` answers in at most 0.5 s; ``cloud3d decompress`` of a
64x64 stream takes at most 1.3x the time of ``import torch`` (the decoder needs torch; the
rest is what the command adds). Each command runs as a fresh subprocess of this interpreter
(``python -m cloud3d.cli``, the same code as the ``cloud3d`` script); wall time from
``time.perf_counter`` around the whole process; the commands are interleaved round-robin so
that load from other processes hits them alike; the median and the best of the timed runs
are printed. Then ``python -X importtime`` of the decompress command gives the import
breakdown: the modules with the largest cumulative import time, top-level first.

The stream is made here: an untrained, seeded ``c2f-xsmall-pruned`` checkpoint and a 64x64
synthetic frame, compressed with ``cloud3d compress``.

What made ``decompress`` slow (5.1-5.4 s for 16 ms of decoding before issue 25) and what was
done: ``import compressai`` ran compressai's package ``__init__``, which imports
``compressai.datasets`` (torch_geometric, and through it ``torch._dynamo``) and
``compressai.registry.transforms`` (torch_geometric, torchvision): 3.7-4.9 s.
``models/light_compressai.py`` now loads only the submodules the codec uses, without that
``__init__``, and gives ``scipy.stats`` (imported by compressai's entropy models for one
call made only when tables are rebuilt) a stand-in that runs it on first use. A checkpoint's
config check built the model on torch's fake tensors, whose import pulls ``torch._dynamo``
(about 1 s); a config no larger than the architecture's default is now built on real tensors.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

#: the targets: --help in seconds, decompress as a multiple of `import torch`
HELP_TARGET_S = 0.5
DECOMPRESS_TARGET_RATIO = 1.3


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}


def make_stream(folder: Path) -> tuple[Path, Path]:
    """A seeded untrained checkpoint and a 64x64 stream made with it: (checkpoint, stream)."""
    import torch

    from cloud3d.imageio import write_png
    from models.architectures import create_model
    from models.checkpoint import save_checkpoint

    torch.manual_seed(0)
    model = create_model("c2f-xsmall-pruned")
    model.update(force=True)
    ckpt = save_checkpoint(folder / "tiny.pt", model.eval())
    import numpy as np

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:64, 0:64]
    frame = np.stack([xx * 4, yy * 4, (xx + yy) * 2], 2) + rng.integers(0, 8, (64, 64, 3))
    write_png(folder / "frame.png", frame.clip(0, 255).astype(np.uint8))
    stream = folder / "frame.c3d"
    subprocess.run([sys.executable, "-m", "cloud3d.cli", "compress", str(folder / "frame.png"),
                    "-m", str(ckpt), "-o", str(stream)], check=True, env=_env(),
                   stdout=subprocess.DEVNULL)
    return Path(ckpt), stream


def time_commands(commands: dict[str, list[str]], repeats: int) -> dict[str, list[float]]:
    """Wall seconds of each command, one warm-up run each, then ``repeats`` rounds."""
    times: dict[str, list[float]] = {name: [] for name in commands}
    for round_ in range(repeats + 1):
        for name, argv in commands.items():
            t = time.perf_counter()
            subprocess.run(argv, check=True, env=_env(), stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
            if round_:  # round 0 is the warm-up (file cache, .pyc)
                times[name].append(time.perf_counter() - t)
    return times


def import_breakdown(argv: list[str], top: int) -> list[tuple[float, float, int, str]]:
    """``-X importtime`` of ``argv`` (a ``python ...`` command): the ``top`` modules by
    cumulative import time as (cumulative s, self s, depth, name)."""
    r = subprocess.run([argv[0], "-X", "importtime", *argv[1:]], env=_env(), text=True,
                       capture_output=True, check=True)
    rows = []
    for line in r.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        first, cum_us, name = line.split("|", 2)
        self_us = first.split(":")[1]
        name = name[1:]  # one space after the bar, then two per level of nesting
        depth = (len(name) - len(name.lstrip(" "))) // 2
        rows.append((int(cum_us) / 1e6, int(self_us) / 1e6, depth, name.strip()))
    rows.sort(reverse=True)
    return rows[:top]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=5, help="timed runs per command (after 1 warm-up)")
    ap.add_argument("--top", type=int, default=15, help="modules shown in the import breakdown")
    args = ap.parse_args(argv)
    py = sys.executable
    with tempfile.TemporaryDirectory() as tmp:
        ckpt, stream = make_stream(Path(tmp))
        out = str(Path(tmp) / "decoded.png")
        decompress = [py, "-m", "cloud3d.cli", "decompress", str(stream), "-m", str(ckpt), "-o", out]
        commands = {
            "python -c 'import torch'": [py, "-c", "import torch"],
            "cloud3d --help": [py, "-m", "cloud3d.cli", "--help"],
            "cloud3d decompress (64x64)": decompress,
        }
        times = time_commands(commands, args.repeats)
        print(f"{'command':30s} {'median s':>9s} {'best s':>8s}   ({args.repeats} runs after 1 warm-up)")
        for name, ts in times.items():
            print(f"{name:30s} {statistics.median(ts):9.3f} {min(ts):8.3f}")
        torch_s = statistics.median(times["python -c 'import torch'"])
        help_s = statistics.median(times["cloud3d --help"])
        dec_s = statistics.median(times["cloud3d decompress (64x64)"])
        ok_help = help_s <= HELP_TARGET_S
        ok_dec = dec_s <= DECOMPRESS_TARGET_RATIO * torch_s
        print(f"\ncloud3d --help: {help_s:.3f} s (target <= {HELP_TARGET_S} s): "
              f"{'met' if ok_help else 'NOT met'}")
        print(f"cloud3d decompress: {dec_s / torch_s:.2f}x import torch (target <= "
              f"{DECOMPRESS_TARGET_RATIO}x): {'met' if ok_dec else 'NOT met'}")
        print(f"\nimport breakdown of cloud3d decompress (python -X importtime), top {args.top} "
              "by cumulative time:")
        print(f"{'cumulative s':>12s} {'self s':>7s}  module")
        for cum, self_s, depth, name in import_breakdown(decompress, args.top):
            print(f"{cum:12.3f} {self_s:7.3f}  {'  ' * depth}{name}")
    return 0 if ok_help and ok_dec else 1


if __name__ == "__main__":
    sys.exit(main())
