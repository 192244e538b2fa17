"""A worker process of the harness: ``python -m benchmarks.robust.worker FAMILY SEED START STOP
WORKDIR CPU_S RSS`` runs cases START..STOP-1 of FAMILY (one of :data:`FAMILIES`) and prints
one JSON line per case (:func:`benchmarks.robust.guard.emit`)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

from benchmarks.robust.guard import Budget, emit, run_case

#: the in-process families: each a module of ``benchmarks.robust`` with ``setup`` and ``case``
FAMILIES = ("streams", "files", "cards", "manifests")


def main(argv: list[str]) -> None:
    family, seed, start, stop, workdir, cpu_s, rss = argv
    if family not in FAMILIES:
        raise SystemExit(f"unknown family {family!r}: one of {', '.join(FAMILIES)}")
    mod = importlib.import_module(f"benchmarks.robust.{family}")
    import torch

    torch.set_num_threads(1)
    ctx = mod.setup(Path(workdir), int(seed))
    budget = Budget(float(cpu_s), int(rss))
    for i in range(int(start), int(stop)):
        name, fn = mod.case(ctx, int(seed), i)
        emit(run_case(family, i, name, fn, budget))


if __name__ == "__main__":
    main(sys.argv[1:])
