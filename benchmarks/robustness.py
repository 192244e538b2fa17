"""Robustness harness: hostile files and killed runs, with the figures that say whether we hold.

What it runs (the parts live in ``benchmarks/robust/``, see each module's docstring):

* ``streams``: adversarial ``.c3d`` streams (mutations with the CRC recomputed, forged
  headers, hostile LZMA strings, wrong models), decoded in-process in worker processes;
* ``files``: forged checkpoints and archives, corrupt, oversized and 16-bit images, hostile
  manifests, each fed to the library call that reads it, the same way;
* ``cards``: hostile model folders and cards (devices, pipes, deep or huge JSON, unknown
  architectures, hash clashes), listed and loaded, or met while decoding a real stream;
* ``manifests``: forged archive manifests and entry layouts (NaN, depth, long names,
  file/folder clashes, raw entries that are not the original), restored;
* ``cli``: a slice of all four through the real ``cloud3d`` command in subprocesses;
* ``kills``: ``capture``, ``split``, ``bench``, ``archive``, ``unarchive`` and ``crops``
  SIGKILLed at random moments and before chosen filesystem calls, then resumed and
  compared with an uninterrupted run.

It prints, per family: cases, accepted, clean errors, tracebacks, errors that are not one
line, crashes, hangs, cases over their budget, the peak memory and the slowest case; per
command: trials, runs killed, failed resumes, lost / duplicated / changed rows, orphaned
processes and leftovers. Exit status 1 when anything is a defect.

Budgets (what one case may cost; a case over its budget is a defect). Time is CPU time: on
a shared machine wall time measures the neighbours (a 1.1 CPU-second decode took 35 s of
wall time at a load of 23 on 2 cores):

* stream case, in-process: :data:`STREAM_BUDGET` (10 CPU s, 512 MiB of resident memory
  above what the worker held before the case);
* file, card and manifest case, in-process: :data:`FILE_BUDGET` (30 CPU s, 512 MiB above
  the worker);
* CLI case: :data:`CLI_BUDGET` (120 CPU s, 2 GiB peak resident set of the whole process,
  torch included);
* kill trial: each command (killed run, resume) at most 300 s.

Usage (the machine is shared: run it niced)::

    nice python benchmarks/robustness.py                       # the full run (see docs/robustness.md)
    nice python benchmarks/robustness.py --quick               # a few minutes
    python benchmarks/robustness.py --streams 2000 --files 0 --cli 0 --kills 0
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.robust.guard import BAD, Budget, CaseResult, run_family  # noqa: E402

STREAM_BUDGET = Budget(10.0, 512 * 2**20)
FILE_BUDGET = Budget(30.0, 512 * 2**20)
CLI_BUDGET = Budget(120.0, 2 * 2**30)
QUICK = {"streams": 300, "files": 200, "cards": 56, "manifests": 44, "cli": 12, "kills": 2}


def run_cases(family: str, n: int, seed: int, work: Path, budget: Budget, jobs: int,
              bar) -> list[CaseResult]:
    """Cases ``0..n-1`` of ``family`` in ``jobs`` parallel worker processes."""
    if n <= 0:
        return []
    bounds = [n * k // jobs for k in range(jobs + 1)]
    fwork = work / family
    with ThreadPoolExecutor(jobs) as pool:
        parts = pool.map(
            lambda k: run_family(family, bounds[k], bounds[k + 1], seed, fwork / f"job{k}",
                                 budget, on_result=lambda _r: bar.update()),
            range(jobs))
        return [r for part in parts for r in part]


def case_table(results: list[CaseResult]) -> list[dict]:
    rows = []
    for fam in dict.fromkeys(r.family for r in results):
        rs = [r for r in results if r.family == fam]
        c = Counter(r.outcome for r in rs)
        rows.append({
            "family": fam, "cases": len(rs), "accepted": c["accepted"], "clean": c["clean"],
            "traceback": c["traceback"], "multiline": c["multiline"], "crash": c["crash"],
            "hang": c["hang"], "over budget": c["over-time"] + c["over-memory"],
            "peak MiB": round(max(r.peak_rss for r in rs) / 2**20),
            "case peak MiB": round(max(r.extra_rss for r in rs) / 2**20),
            "max CPU s": round(max(r.cpu_s for r in rs), 2),
            "max wall s": round(max(r.wall_s for r in rs), 2),
        })
    return rows


def kill_table(trials) -> list[dict]:
    rows = []
    for cmd in dict.fromkeys(t.command for t in trials):
        ts = [t for t in trials if t.command == cmd]
        rows.append({
            "command": cmd, "trials": len(ts), "killed": sum(t.killed for t in ts),
            "at calls": sum(not t.how.startswith("random") for t in ts),
            "resume failed": sum(t.resume_rc != 0 for t in ts),
            "lost": sum(t.lost for t in ts), "duplicated": sum(t.duplicated for t in ts),
            "changed": sum(t.changed for t in ts), "orphans": sum(t.orphans for t in ts),
            "leftovers": sum(len(t.leftovers) for t in ts),
            "slowest s": max(t.wall_s for t in ts),
        })
    return rows


def print_table(rows: list[dict]) -> None:
    if not rows:
        return
    cols = list(rows[0])
    width = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in cols}
    print("  ".join(c.rjust(width[c]) for c in cols))
    for r in rows:
        print("  ".join(str(r[c]).rjust(width[c]) for c in cols))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="Example: nice python benchmarks/robustness.py --quick")
    ap.add_argument("--streams", type=int, default=10_000, help="stream cases (default 10000)")
    ap.add_argument("--files", type=int, default=2_000, help="file cases (default 2000)")
    ap.add_argument("--cards", type=int, default=700, help="model folder and card cases (default 700)")
    ap.add_argument("--manifests", type=int, default=550, help="archive manifest cases (default 550)")
    ap.add_argument("--cli", type=int, default=60, help="CLI cases (default 60)")
    ap.add_argument("--kills", type=int, default=20, help="kill trials per command (default 20)")
    ap.add_argument("--commands", default="capture,split,bench,archive,unarchive,crops",
                    help="commands to kill")
    ap.add_argument("--quick", action="store_true", help=f"a small slice: {QUICK}")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--jobs", type=int, default=1, help="parallel case workers (default 1)")
    ap.add_argument("--work", default=None, help="scratch folder (default: a temporary one, removed)")
    ap.add_argument("--json", default=None, help="write every case and trial here")
    args = ap.parse_args(argv)
    if args.quick:
        for k, v in QUICK.items():
            setattr(args, k, min(getattr(args, k), v))
    from tqdm import tqdm

    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="c3d-robust-"))
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    try:
        results: list[CaseResult] = []
        total = args.streams + args.files + args.cards + args.manifests + args.cli
        with tqdm(total=total, desc="cases", unit="case") as bar:
            results += run_cases("streams", args.streams, args.seed, work, STREAM_BUDGET,
                                 args.jobs, bar)
            for family in ("files", "cards", "manifests"):
                results += run_cases(family, getattr(args, family), args.seed, work,
                                     FILE_BUDGET, args.jobs, bar)
            if args.cli:
                from benchmarks.robust.cli_slice import run_slice

                results += run_slice(args.cli, args.seed, work, CLI_BUDGET,
                                     on_result=lambda _r: bar.update())
        trials = []
        commands = [c for c in args.commands.split(",") if c]
        if args.kills and commands:
            from benchmarks.robust.kills import run_trials

            with tqdm(total=args.kills * len(commands), desc="kill trials", unit="trial") as bar:
                trials = run_trials(commands, args.kills, work / "kills", args.seed,
                                    on_trial=lambda _t: bar.update())
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    wall = time.perf_counter() - t0
    print(f"\nrobustness harness, seed {args.seed}, {wall / 60:.1f} min")
    if results:
        print("\nhostile inputs (peak MiB: the largest resident set of a case's process; case "
              "peak MiB: what one in-process case added)")
        print_table(case_table(results))
    if trials:
        print("\nkill and resume")
        print_table(kill_table(trials))
    defects = [r for r in results if r.outcome in BAD]
    bad_trials = [t for t in trials if t.bad]
    for r in defects[:20]:
        print(f"DEFECT {r.family} #{r.index} {r.name}: {r.outcome}: {r.detail}")
    for t in bad_trials[:20]:
        print(f"DEFECT {t.command} killed at {t.how}: {t}")
    total_bad = len(defects) + len(bad_trials)
    print(f"\n{len(results)} cases, {len(trials)} kill trials: {total_bad} defect(s)")
    if args.json:
        Path(args.json).write_text(json.dumps({"cases": [asdict(r) for r in results],
                                               "trials": [asdict(t) for t in trials]}, indent=0))
    return 1 if total_bad else 0


if __name__ == "__main__":
    sys.exit(main())
