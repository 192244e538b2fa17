"""Training speed of the learned codecs on this machine: steps/s and where a step's time goes.

    python benchmarks/train_speed.py DATASET --app supertuxkart
    python benchmarks/train_speed.py DATASET --app supertuxkart --arch c2f-xsmall-pruned \\
        --crops 128,192,256 --batches 8,16 --settings default --rounds 3 --csv speed.csv
    python benchmarks/train_speed.py DATASET --app supertuxkart --settings \\
        "data=png,workers=2,threads=2,layout=nchw,adam=loop" "data=bank,threads=2"

Each *setting* is one way of running ``models.train_step.train_step`` (the step
``cloud3d train`` runs) on random crops of the app's train frames:

* ``data=png`` decodes a PNG per crop through ``Cloud3dImages`` and a torch ``DataLoader``
  with ``workers`` processes (what ``cloud3d train`` did before the frame bank);
  ``data=bank`` draws crops from frames decoded once into memory (``FrameBank``, what it
  does now);
* ``threads``: torch intra-op threads; ``layout``: ``nchw`` or ``cl`` (channels-last model
  and batches); ``adam``: ``fused`` (one kernel over all parameters) or ``loop`` (torch's
  per-tensor CPU default); ``compile=1``: ``torch.compile`` of the model (inductor);
  ``vr=1``: the variable-rate model of the same size (per-sample qualities).

``--settings default`` is the list in :data:`DEFAULT_SETTINGS` (from the old path to the
new one, one change at a time). Every setting x crop x batch gets its own model (same
seed) and warm-up steps, then all of them run ``--steps`` timed steps in turn for
``--rounds`` rounds (round-robin, so load from other processes hits them alike). Reported first: the CPU
time to make one batch both ways (one thread). Per row: the median over rounds of the wall
time per step (``time.perf_counter``) and of the CPU time per step (``time.process_time``: this process and its threads; DataLoader
workers are separate processes and not included), steps/s, megapixels/s, the fastest
round, and the wall milliseconds (``ms``) and CPU milliseconds (``cpu``) per phase: data (getting the batch), forward (model +
loss), backward, optimizer (clipping + Adam), aux (the entropy bottleneck's quantile loss
and its Adam). ``--profile`` also prints torch's profiler table (top operators by self CPU
time) for the first setting. ``--omp-wait`` sets ``OMP_WAIT_POLICY`` (``passive``, the
default, is what ``cloud3d train`` uses: idle OpenMP threads sleep instead of spinning,
which matters on a machine shared with other jobs).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PHASES = ("data", "forward", "backward", "optimizer", "aux")

#: the settings ``--settings default`` compares, old training path first
DEFAULT_SETTINGS = (
    "data=png,workers=2,threads=2,layout=nchw,adam=loop",  # cloud3d train before issue 13
    "data=png,workers=1,threads=1,layout=nchw,adam=loop",
    "data=bank,threads=2,layout=nchw,adam=loop",
    "data=bank,threads=2,layout=nchw,adam=fused",  # cloud3d train now
    "data=bank,threads=1,layout=nchw,adam=fused",  # cloud3d train --threads 1
    "data=bank,threads=2,layout=cl,adam=fused",  # tried, not kept
)

KEYS = {"data": ("bank", "png"), "workers": None, "threads": None, "layout": ("cl", "nchw"),
        "adam": ("fused", "loop"), "compile": ("0", "1"), "vr": ("0", "1")}


def parse_setting(text: str) -> dict[str, str]:
    """``"key=value,..."`` -> dict with defaults filled in (what ``cloud3d train`` does)."""
    s = {"data": "bank", "workers": "0", "threads": "2", "layout": "nchw", "adam": "fused",
         "compile": "0", "vr": "0"}
    for part in filter(None, text.split(",")):
        key, _, value = part.partition("=")
        if key not in KEYS or (KEYS[key] and value not in KEYS[key]):
            raise SystemExit(f"bad setting {part!r} in {text!r}; keys: {', '.join(KEYS)}")
        s[key] = value
    return s


class Row:
    """One setting x crop x batch: its model, optimizers and batch source."""

    def __init__(self, args, setting: str, crop: int, batch: int, bank) -> None:
        import torch

        from cloud3d_dataset.torch_dataset import Cloud3dImages
        from models.architectures import create_model
        from models.train_step import make_optimizers

        self.name, self.s, self.crop, self.batch = setting, parse_setting(setting), crop, batch
        torch.manual_seed(0)
        arch = args.arch + ("-vr" if self.s["vr"] == "1" else "")
        self.model = create_model(arch).train()
        if crop % self.model.stride:
            raise SystemExit(f"--crops: {crop} is not a multiple of {arch}'s stride "
                             f"({self.model.stride})")
        self.cl = self.s["layout"] == "cl"
        if self.cl:
            self.model.to(memory_format=torch.channels_last)
        self.opt, self.aux_opt = make_optimizers(self.model, args.lr, 1e-3)
        if self.s["adam"] == "loop":
            params = self.opt.param_groups[0]["params"]
            self.opt = torch.optim.Adam(params, lr=args.lr, foreach=False)
        self.net = torch.compile(self.model) if self.s["compile"] == "1" else self.model
        if self.net is not self.model:  # train_step calls aux_loss on what it gets
            self.net.aux_loss = self.model.aux_loss
        self.gen = torch.Generator().manual_seed(0)
        self.bank = bank
        self.loader = None
        if self.s["data"] == "png":
            ds = Cloud3dImages(args.dataset, "train", app=args.app, crop=crop, random=True)
            workers = int(self.s["workers"])
            self.loader = torch.utils.data.DataLoader(
                ds, batch_size=batch, shuffle=True, drop_last=True, num_workers=workers,
                persistent_workers=workers > 0)
            self._it = iter(self.loader)
        self.wall: list[float] = []
        self.cpu: list[float] = []
        self.phases: dict[str, float] = dict.fromkeys(PHASES, 0.0)
        self.phases_cpu: dict[str, float] = dict.fromkeys(PHASES, 0.0)
        self.timed_steps = 0

    def batch_tensor(self):
        if self.loader is None:
            x = self.bank.sample(self.batch, self.gen, crop=self.crop)
        else:
            try:
                x = next(self._it)
            except StopIteration:
                self._it = iter(self.loader)
                x = next(self._it)
        import torch

        return x.contiguous(memory_format=torch.channels_last) if self.cl else x.contiguous()

    def steps(self, n: int, timed: bool) -> None:
        import torch

        from models.train_step import PhaseTimer, train_step
        from models.variable_rate import sample_qualities

        torch.set_num_threads(int(self.s["threads"]))
        timer = PhaseTimer()
        w0, c0 = time.perf_counter(), time.process_time()
        for _ in range(n):
            timer.start()
            x = self.batch_tensor()
            q, lam = None, 0.01
            if self.model.num_qualities:
                q = sample_qualities(self.batch, self.model.num_qualities, self.gen)
                lam = torch.tensor(self.model.lambdas)[q]
            timer.lap("data")
            train_step(self.net, self.opt, self.aux_opt, x, lam, quality=q, timer=timer)
        if timed:
            self.wall.append((time.perf_counter() - w0) / n)
            self.cpu.append((time.process_time() - c0) / n)
            for k in PHASES:
                self.phases[k] += timer.wall.get(k, 0.0)
                self.phases_cpu[k] += timer.cpu.get(k, 0.0)
            self.timed_steps += n

    def result(self) -> dict:
        wall = statistics.median(self.wall)
        px = self.crop * self.crop * self.batch
        return {
            "setting": self.name, "crop": self.crop, "batch": self.batch,
            "s/step": round(wall, 3), "steps/s": round(1 / wall, 3),
            "Mpx/s": round(px / wall / 1e6, 3), "best s/step": round(min(self.wall), 3),
            "cpu s/step": round(statistics.median(self.cpu), 3),
            **{f"{k} ms": round(1e3 * v / self.timed_steps) for k, v in self.phases.items()},
            **{f"{k} cpu": round(1e3 * v / self.timed_steps)
               for k, v in self.phases_cpu.items()},
        }


def data_cost(args, bank, crop: int, batch: int, repeats: int = 3) -> None:
    """CPU time to make one batch: a PNG decoded per crop vs crops from the frame bank."""
    import torch

    from cloud3d_dataset.torch_dataset import Cloud3dImages

    ds = Cloud3dImages(args.dataset, "train", app=args.app, crop=crop, random=True)
    gen = torch.Generator().manual_seed(0)
    png, mem = [], []
    for r in range(repeats + 1):
        c0 = time.process_time()
        torch.stack([ds[(r * batch + i) % len(ds)] for i in range(batch)])
        c1 = time.process_time()
        bank.sample(batch, gen, crop=crop)
        c2 = time.process_time()
        if r:  # the first round warms up
            png.append(c1 - c0)
            mem.append(c2 - c1)
    print(f"one batch of {batch} crops of {crop} px, CPU ms (median of {repeats}): "
          f"a PNG decoded per crop {1e3 * statistics.median(png):.0f}, "
          f"frame bank {1e3 * statistics.median(mem):.1f}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dataset", help="cloud3d dataset folder (its train split is used)")
    ap.add_argument("--app", default=None, help="app of the train split (default: all)")
    ap.add_argument("--arch", default="c2f-small-pruned", help="fixed-rate architecture")
    ap.add_argument("--crops", default="128,256", help="crop sides, comma-separated")
    ap.add_argument("--batches", default="8", help="batch sizes, comma-separated")
    ap.add_argument("--settings", nargs="+", default=["default"],
                    help="settings (see above), or 'default'")
    ap.add_argument("--steps", type=int, default=4, help="timed steps per row and round")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps per row first")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--profile", action="store_true", help="profiler table of the first row")
    ap.add_argument("--csv", default=None, help="also write the table here")
    ap.add_argument("--omp-wait", choices=["passive", "active"], default="passive",
                    help="OMP_WAIT_POLICY for this run (cloud3d train uses passive)")
    args = ap.parse_args(argv)
    if "torch" in sys.modules:
        raise SystemExit("torch is already imported: OMP_WAIT_POLICY would not apply")
    os.environ["OMP_WAIT_POLICY"] = args.omp_wait.upper()
    warnings.filterwarnings("ignore", message=".*torch.jit.script.*")

    import pandas as pd
    import torch

    from cloud3d_dataset.torch_dataset import FrameBank

    settings = [s for item in args.settings
                for s in (DEFAULT_SETTINGS if item == "default" else [item])]
    crops = [int(c) for c in args.crops.split(",")]
    batches = [int(b) for b in args.batches.split(",")]
    t0 = time.perf_counter()
    bank = FrameBank(args.dataset, "train", app=args.app, crop=max(crops), progress=True)
    print(f"frame bank: {len(bank)} frames, {bank.nbytes / 2**20:.0f} MiB, decoded in "
          f"{time.perf_counter() - t0:.1f} s ({torch.get_num_threads()} threads)")
    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, OMP_WAIT_POLICY={args.omp_wait}, load average "
          f"{os.getloadavg()[0]:.2f} at start; arch {args.arch}; {args.steps} steps x "
          f"{args.rounds} rounds per row after {args.warmup} warm-up steps")
    data_cost(args, bank, max(crops), max(batches))
    rows = [Row(args, s, c, b, bank) for s in settings for c in crops for b in batches]
    for r in rows:
        r.steps(args.warmup, timed=False)
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU]) as prof:
            rows[0].steps(args.steps, timed=False)
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=20))
    for _ in range(args.rounds):
        for r in rows:
            r.steps(args.steps, timed=True)
    print(f"load average {os.getloadavg()[0]:.2f} at the end")
    table = pd.DataFrame([r.result() for r in rows])
    with pd.option_context("display.width", 250, "display.max_columns", 30,
                           "display.max_colwidth", 60):
        print(table.to_string(index=False))
    if args.csv:
        table.to_csv(args.csv, index=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
