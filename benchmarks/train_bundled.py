"""Train the bundled models side by side on one GPU within a wall-clock budget; print the speed.

This is the recipe that made ``models/bundled/``: one variable-rate model per game and one
general model, all ``c2f-xsmall-pruned-vr`` with the same number of steps, and (for the size
choice) a ``c2f-small-pruned-vr`` on one game. Every run is a plain ``cloud3d train`` process;
this script only decides the step count that fits the budget:

1. calibration: every run trains ``--calibrate`` steps at once (all processes together, so
   the rate includes their contention) and its steps/s is read from its ``log.csv``
   (``elapsed_s`` between step 10 and the last step);
2. the runs ``--resume`` to ``N`` steps, ``N`` chosen so that the slowest run of a group ends
   by the deadline (the runs of one group get the same ``N``). The learning-rate schedule
   (warm-up then cosine to ``lr/100``) is a function of the step and ``N``; the calibration
   steps are inside the fixed warm-up, so they follow the same schedule.

A run still going at the deadline plus ``--grace`` gets SIGTERM (it saves ``last.pt``; its
``best.pt`` is the best validation so far). Prints one line per run: steps, steps/s, crops/s,
wall time. Data: a dataset made by ``cloud3d crops`` (or any dataset).

    python benchmarks/train_bundled.py CROPS --out runs --budget 420 --device cuda
"""

from __future__ import annotations

import argparse
import csv
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

#: (run name, --app, --arch, group): runs of one group train the same number of steps
RUNS = [
    ("supertuxkart", "supertuxkart", "c2f-xsmall-pruned-vr", "xsmall"),
    ("redeclipse", "redeclipse", "c2f-xsmall-pruned-vr", "xsmall"),
    ("0ad", "0ad", "c2f-xsmall-pruned-vr", "xsmall"),
    ("general", "all", "c2f-xsmall-pruned-vr", "xsmall"),
    ("supertuxkart-small", "supertuxkart", "c2f-small-pruned-vr", "small"),
]


def _train_rows(log: Path) -> list[dict]:
    with open(log, newline="") as f:
        return [r for r in csv.DictReader(f) if r["phase"] == "train"]


def _rate(log: Path, skip: int = 10) -> float:
    """Steps per second after the first ``skip`` steps (CUDA start-up, cudnn autotuning)."""
    rows = _train_rows(log)
    a, b = rows[min(skip, len(rows) - 2)], rows[-1]
    return (int(b["step"]) - int(a["step"])) / max(1e-6, float(b["elapsed_s"]) - float(a["elapsed_s"]))


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", help="dataset folder (e.g. made by `cloud3d crops`)")
    ap.add_argument("--out", required=True, help="folder for the run folders")
    ap.add_argument("--budget", type=float, default=420.0, help="seconds from start to the deadline")
    ap.add_argument("--grace", type=float, default=20.0, help="seconds after it before SIGTERM")
    ap.add_argument("--calibrate", type=int, default=60, help="calibration steps")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--crop", type=int, default=256)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--warmup", type=int, default=300)
    ap.add_argument("--val-images", type=int, default=40)
    ap.add_argument("--threads", type=int, default=3, help="torch threads per run")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--runs", default=",".join(r[0] for r in RUNS), help="comma list of run names")
    ap.add_argument("--run", action="append", default=[], metavar="NAME:APP:ARCH:GROUP",
                    help="a run of your own instead of the defaults (repeatable)")
    return ap


def _launch(args: argparse.Namespace, out: Path, name: str, app: str, arch: str, steps: int,
            resume: bool) -> subprocess.Popen:
    """Start one ``cloud3d train`` run; its command goes to NAME.cmd.json, its output to NAME.out."""
    # the calibration validates once, at its end; the main phase 8 times
    cmd = [sys.executable, "-m", "cloud3d.cli", "train", args.data, "--app", app, "--arch", arch,
           "--out", str(out / name), "--steps", str(steps), "--batch", str(args.batch),
           "--crop", str(args.crop), "--lr", str(args.lr), "--warmup", str(args.warmup),
           "--device", args.device, "--val-every", str(max(1, steps // 8) if resume else steps),
           "--val-images", str(args.val_images), "--threads", str(args.threads)]
    if resume:
        cmd.append("--resume")
    (out / f"{name}.cmd.json").write_text(json.dumps(cmd))
    log = open(out / f"{name}.out", "a")
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)


def _wait_all(procs: dict[str, subprocess.Popen], hard: float) -> dict[str, int]:
    """Exit codes of all ``procs``; those still running at ``hard`` (perf_counter) get SIGTERM."""
    codes = {}
    while len(codes) < len(procs):
        for name, p in procs.items():
            if name not in codes and p.poll() is not None:
                codes[name] = p.returncode
        if time.perf_counter() > hard:
            for name, p in procs.items():
                if name not in codes and p.poll() is None:
                    print(f"{name}: past the deadline, SIGTERM", flush=True)
                    p.send_signal(signal.SIGTERM)
            hard = float("inf")
        time.sleep(0.5)
    return codes


def _plan_steps(runs: list[tuple], rates: dict[str, float], cal_s: float, left: float,
                calibrate: int) -> dict[str, int]:
    """One shared step count per group, from its slowest run's rate and the time left (s)."""
    # a resumed run pays its start-up again (imports, CUDA, frame bank, validation): the
    # calibration's wall time beyond its steps; 15% of the rest is kept for the 8 validations
    # and checkpoints and for the rate falling when all runs are at work
    steps = {}
    for group in sorted({g for *_, g in runs}):
        names = [n for n, *_, g in runs if g == group and n in rates]
        if not names:
            continue
        rate = min(rates[n] for n in names)
        startup = max(0.0, cal_s - calibrate / rate)
        n_steps = int(calibrate + rate * max(0.0, left - startup) * 0.85)
        for n in names:
            steps[n] = n_steps
    return steps


def main() -> int:
    ap = _parser()
    args = ap.parse_args()
    t0 = time.perf_counter()
    deadline = t0 + args.budget
    if args.run:
        runs = [tuple(r.split(":")) for r in args.run]
        if any(len(r) != 4 for r in runs):
            ap.error("--run takes NAME:APP:ARCH:GROUP")
    else:
        runs = [r for r in RUNS if r[0] in args.runs.split(",")]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    started = time.perf_counter()
    codes = _wait_all({n: _launch(args, out, n, a, arch, args.calibrate, False) for n, a, arch, _ in runs},
                      deadline)
    cal_s = time.perf_counter() - started
    rates = {n: _rate(out / n / "log.csv") for n, *_ in runs if codes[n] == 0}
    print(f"calibration: {cal_s:.1f} s; steps/s " + ", ".join(f"{n} {r:.2f}" for n, r in rates.items()),
          flush=True)
    steps = _plan_steps(runs, rates, cal_s, deadline - time.perf_counter(), args.calibrate)
    print("steps: " + ", ".join(f"{n} {s}" for n, s in steps.items()), flush=True)
    started = time.perf_counter()
    procs = {n: _launch(args, out, n, a, arch, steps[n], True) for n, a, arch, _ in runs if n in steps}
    codes = _wait_all(procs, deadline + args.grace)
    wall = time.perf_counter() - started
    for n, a, arch, _ in runs:
        if n not in procs:
            print(f"{n}: calibration failed (see {out / n}.out)")
            continue
        rows = _train_rows(out / n / "log.csv")
        reached = int(rows[-1]["step"]) if rows else 0
        r = _rate(out / n / "log.csv", skip=args.calibrate + 10)
        print(f"{n}: {arch} app={a} exit {codes[n]}, {reached}/{steps[n]} steps, {r:.2f} steps/s "
              f"({r * args.batch:.0f} crops/s of {args.crop}x{args.crop}), main phase {wall:.0f} s",
              flush=True)
    print(f"total {time.perf_counter() - t0:.0f} s (budget {args.budget:.0f} s)")
    return 0 if all(c == 0 for c in codes.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
