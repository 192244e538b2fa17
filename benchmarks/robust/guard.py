"""Run one hostile case under a budget and say how it ended.

Outcomes (:data:`OUTCOMES`):

* ``accepted``: the call returned (a mutated stream may still be a valid one);
* ``clean``: a :class:`~cloud3d.errors.Cloud3dError` with a non-empty one-line message;
* ``multiline``: a ``Cloud3dError`` whose message is empty or spans several lines;
* ``traceback``: any other exception (``ValueError``, a bare ``MemoryError``...);
* ``hang``: still running when the CPU-time budget ran out (SIGPROF in the worker), or
  silent past the parent's wall-clock watchdog (native code ignoring the signal, a block);
* ``crash``: the worker process died inside the case (signal, abort, OOM kill);
* ``over-time`` / ``over-memory``: it ended well but used more than its budget.

Time is CPU time (user + system) of the case, not wall time: on a shared machine a
starved process can take 30 times its CPU time in wall time (seen here at a load of 23 on
2 cores), and the budget is about what a case costs. Memory is the case's own peak
resident set: the kernel's high-water mark (``VmHWM``) is
reset before each case (``/proc/self/clear_refs``) and read after it, so the figure is
what this case touched, on top of what the worker already held.

Cases run in worker processes (``python -m benchmarks.robust.worker``) that stream one JSON
line per case to the parent; a worker that dies is replaced and the case it was running is
counted as a crash, so one bad case cannot end the harness.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

OUTCOMES = ("accepted", "clean", "multiline", "traceback", "hang", "crash", "over-time",
            "over-memory")
#: seconds a worker may spend setting up (building models, files) before its first case
SETUP_LIMIT_S = 1800.0
#: outcomes that are defects
BAD = ("multiline", "traceback", "hang", "crash", "over-time", "over-memory")


@dataclass(frozen=True)
class Budget:
    """What one case may cost: ``cpu_s`` seconds of CPU time and ``rss`` bytes of resident
    memory above what its process held before it."""

    cpu_s: float
    rss: int


@dataclass
class CaseResult:
    """How case ``index`` (``name``) of ``family`` ended; ``detail`` is the error's first
    300 characters; ``wall_s``/``cpu_s`` its wall and CPU seconds; ``peak_rss`` the case's
    peak resident set (bytes), ``extra_rss`` the part above the worker's resident set
    before the case."""

    family: str
    index: int
    name: str
    outcome: str
    detail: str = ""
    wall_s: float = 0.0
    peak_rss: int = 0
    extra_rss: int = 0
    cpu_s: float = 0.0


class CaseTimeout(BaseException):
    """Raised by SIGPROF in a case past its CPU-time budget (a BaseException, so that no
    ``except Exception`` in the code under test swallows it)."""


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


def reset_peak() -> None:
    """Reset this process's peak-RSS mark (Linux >= 4.0)."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def _alarm(_signum, _frame) -> None:
    raise CaseTimeout


def classify(exc: BaseException | None) -> tuple[str, str]:
    """``(outcome, detail)`` of a case that raised ``exc`` (``None``: it returned)."""
    from cloud3d.errors import Cloud3dError

    if exc is None:
        return "accepted", ""
    if isinstance(exc, CaseTimeout):
        return "hang", "time budget exceeded"
    if isinstance(exc, Cloud3dError):
        msg = str(exc)
        ok = msg.strip() and "\n" not in msg.strip()
        return ("clean" if ok else "multiline"), msg[:300]
    return "traceback", f"{type(exc).__name__}: {str(exc)[:280]}"


def run_case(family: str, index: int, name: str, fn: Callable[[], object],
             budget: Budget) -> CaseResult:
    """Run ``fn()`` under ``budget`` in this process and classify it (see the module
    docstring)."""
    reset_peak()
    before = _status_kb("VmRSS")
    old = signal.signal(signal.SIGPROF, _alarm)
    signal.setitimer(signal.ITIMER_PROF, budget.cpu_s)
    t0, c0 = time.perf_counter(), time.process_time()
    exc: BaseException | None = None
    try:
        fn()
    except BaseException as e:  # noqa: BLE001 - every way out is a finding to classify
        if isinstance(e, KeyboardInterrupt):
            raise
        exc = e
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
        signal.signal(signal.SIGPROF, old)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    peak = _status_kb("VmHWM")
    outcome, detail = classify(exc)
    extra = max(0, peak - before)
    if outcome in ("accepted", "clean"):
        if cpu > budget.cpu_s:
            outcome, detail = "over-time", f"{cpu:.1f} CPU s > {budget.cpu_s} s; {detail}"
        elif extra > budget.rss:
            outcome, detail = "over-memory", f"{extra / 2**20:.0f} MiB > {budget.rss / 2**20:.0f} MiB; {detail}"
    return CaseResult(family, index, name, outcome, detail, round(wall, 4), peak, extra,
                      round(cpu, 4))


# ----------------------------------------------------------------------------- workers


def run_family(family: str, start: int, stop: int, seed: int, workdir: Path, budget: Budget,
               on_result: Callable[[CaseResult], None] | None = None) -> list[CaseResult]:
    """Run cases ``start..stop-1`` of ``family`` in worker processes, one at a time, and
    return their results. A worker that dies (or, once it has answered its first case, is
    silent for 20 times the CPU budget plus two minutes of wall time) is killed and
    replaced; its case is a ``crash`` or ``hang``. A worker's set-up (models, files) may take
    up to :data:`SETUP_LIMIT_S` on a loaded machine before its first answer. ``on_result``
    sees each result as it comes (progress)."""
    results: list[CaseResult] = []
    nxt = start
    while nxt < stop:
        argv = [sys.executable, "-m", "benchmarks.robust.worker", family, str(seed), str(nxt),
                str(stop), str(workdir), str(budget.cpu_s), str(budget.rss)]
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env={**os.environ, "PYTHONFAULTHANDLER": "1"})
        silent_limit = 20 * budget.cpu_s + 120  # wall clock: a starved process is slow
        for line, timed_out in _lines(proc, silent_limit):
            if timed_out and nxt >= stop:  # done, but slow to exit: not a case
                proc.kill()
                break
            if timed_out:
                proc.kill()
                r = CaseResult(family, nxt, "?", "hang", f"no answer in {silent_limit:.0f} s")
            else:
                r = CaseResult(**json.loads(line))
            results.append(r)
            if on_result:
                on_result(r)
            nxt = r.index + 1
            if timed_out:
                break
        rc = proc.wait()
        err = proc.stderr.read().decode(errors="replace")[-300:] if proc.stderr else ""
        if nxt < stop and rc != 0 and not (results and results[-1].outcome == "hang"
                                          and results[-1].index == nxt - 1):
            r = CaseResult(family, nxt, "?", "crash", f"worker exit status {rc}: {err.strip()}")
            results.append(r)
            if on_result:
                on_result(r)
            nxt += 1
        elif nxt < stop and rc == 0:
            raise RuntimeError(f"worker for {family} stopped at case {nxt} of {stop}: {err}")
    return results


def _lines(proc: subprocess.Popen, silent_limit: float) -> Iterator[tuple[str, bool]]:
    """The worker's stdout lines; ``(..., True)`` once when it stays silent too long (its
    set-up, before the first line, may take :data:`SETUP_LIMIT_S`)."""
    buf = b""
    fd = proc.stdout.fileno()
    first = True
    while True:
        ready, _, _ = select.select([fd], [], [], SETUP_LIMIT_S if first else silent_limit)
        if not ready:
            yield "", True
            return
        chunk = os.read(fd, 65536)
        if not chunk:
            return
        buf += chunk
        first = first and b"\n" not in buf
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            if line.startswith(b"{"):
                yield line.decode(), False


def emit(r: CaseResult) -> None:
    """Worker side: one JSON line per case."""
    sys.stdout.write(json.dumps(asdict(r)) + "\n")
    sys.stdout.flush()
