"""A slice of the hostile inputs through the real ``cloud3d`` command, one subprocess each.

Case ``i`` of the slice takes family ``i % 4`` and that family's case ``j = i // 4``:
stream case ``j`` (:func:`benchmarks.robust.streams.mutant`, written to a file and read by
``cloud3d decompress`` with the checkpoint of the model that decodes it), file case ``j``
(:func:`benchmarks.robust.files.case_with_argv`: ``decompress -m FORGED.pt``, ``compress
IMAGE``, ``unarchive ARCHIVE``, ``entropy``/``verify``/``bench`` of a hostile manifest),
card case ``j`` (:func:`benchmarks.robust.cards.case_with_argv`: ``decompress`` without
``-m`` of a real stream, ``CLOUD3D_MODEL_DIR`` set to the hostile folder) or manifest case
``j`` (:func:`benchmarks.robust.manifests.case_with_argv`: ``unarchive`` of the forged
archive).

Outcomes are those of :mod:`benchmarks.robust.guard`, read from the process: exit status 0
is ``accepted``; status 1 whose last line of standard error starts with ``error: `` (or,
for ``verify``, is its one-line ``FAILED: ...`` summary of the problems it lists) and
holds no traceback is ``clean``; a traceback is ``traceback``, an error that is not one
``error:`` line ``multiline``, a signal ``crash``, a run past the time budget ``hang``.
Time is the process's CPU time and memory its peak resident set (both from ``os.wait4``),
against the budget in full (importing torch alone costs about 400 MB); a process still
running after ten times its CPU budget in wall time is killed as a hang.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from benchmarks.robust.guard import Budget, CaseResult


def run_cli(argv: list[object], budget: Budget, family: str, index: int, name: str,
            cwd: Path, env: dict[str, str] | None = None) -> CaseResult:
    """Run ``cloud3d ARGV`` and classify how it ended."""
    err_path = cwd / f"stderr-{index}.txt"
    with open(err_path, "wb") as err:
        t0 = time.perf_counter()
        p = subprocess.Popen([sys.executable, "-m", "cloud3d.cli", *map(str, argv)],
                             stdout=subprocess.DEVNULL, stderr=err, cwd=cwd,
                             env={**os.environ, "MPLBACKEND": "Agg", **(env or {})})
        timer = threading.Timer(10 * budget.cpu_s, p.kill)  # wall clock, for a starved machine
        timer.start()
        _, status, usage = os.wait4(p.pid, 0)
        timer.cancel()
        p.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - t0
    text = err_path.read_text(errors="replace")
    err_path.unlink()
    lines = [ln for ln in text.splitlines() if ln.strip()]
    last = lines[-1] if lines else ""
    rss = usage.ru_maxrss * 1024
    cpu = usage.ru_utime + usage.ru_stime
    rc = p.returncode
    if wall >= 10 * budget.cpu_s and rc == -signal.SIGKILL:
        outcome, detail = "hang", f"killed after {10 * budget.cpu_s:.0f} s of wall time"
    elif rc < 0:
        outcome, detail = "crash", f"signal {-rc}: {last[:200]}"
    elif "Traceback (most recent call last)" in text:
        outcome, detail = "traceback", last[:300]
    elif rc == 0:
        outcome, detail = "accepted", ""
    elif rc == 1 and (last.startswith("error: ")
                      or (str(argv[0]) == "verify" and last.startswith("FAILED: "))):
        outcome, detail = "clean", last[:300]  # verify's report of what it found counts too
    else:
        outcome, detail = "multiline", f"exit {rc}: {last[:280]}"
    if outcome in ("accepted", "clean") and cpu > budget.cpu_s:
        outcome, detail = "over-time", f"{cpu:.1f} CPU s > {budget.cpu_s} s"
    elif outcome in ("accepted", "clean") and rss > budget.rss:
        outcome, detail = "over-memory", f"{rss / 2**20:.0f} MiB > {budget.rss / 2**20:.0f} MiB"
    return CaseResult(family, index, name, outcome, detail, round(wall, 3), rss, rss,
                      round(cpu, 3))


def run_slice(n: int, seed: int, work: Path, budget: Budget,
              on_result: Callable[[CaseResult], None] | None = None) -> list[CaseResult]:
    """The first ``n`` cases of the slice (see the module docstring)."""
    from benchmarks.robust import cards, files, manifests, streams
    from models.checkpoint import save_checkpoint

    work = work / "cli"
    work.mkdir(parents=True, exist_ok=True)
    sctx = streams.setup(work, seed)
    fctx = files.setup(work, seed)
    cctx = cards.setup(work, seed)
    mctx = manifests.setup(work, seed)
    ckpts = {}
    for arch, pm in [*sctx.models.items(), *((a + "-other", m) for a, m in sctx.other.items())]:
        ckpts[id(pm)] = save_checkpoint(work / f"{arch}.pt", pm.model)
    out = []
    for i in range(n):
        kind, j, env = i % 4, i // 4, None
        if kind == 0:
            name, data, pm = streams.mutant(sctx, seed, j)
            src = work / "case.c3d"
            src.write_bytes(data)
            (work / "case.png").unlink(missing_ok=True)
            argv = ["decompress", src, "-m", ckpts[id(pm)], "-o", work / "case.png"]
        elif kind == 1:
            name, _call, argv = files.case_with_argv(fctx, seed, j)
        elif kind == 2:
            name, _call, argv, env = cards.case_with_argv(cctx, seed, j)
        else:
            name, _call, argv = manifests.case_with_argv(mctx, seed, j)
        family = "cli-" + ("streams", "files", "cards", "manifests")[kind]
        r = run_cli(argv, budget, family, i, name, work, env)
        out.append(r)
        if on_result:
            on_result(r)
    return out
