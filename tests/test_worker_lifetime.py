"""Pool workers die with the main process: a ``kill -9`` of ``cloud3d bench`` leaves no process behind.

Without it, the workers of a killed bench wait on their task queue forever (each holding
its codec, e.g. a loaded model). The tests start real processes and kill them for real.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import ROOT, make_dataset, plugin_cli_argv, wait_rows


def _children(pid: int) -> list[int]:
    """Pids whose parent is ``pid`` (from /proc)."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry.name))
    return out


def _running(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie (a dead child not yet reaped by its new parent)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def _wait_gone(pids: list[int], limit: float) -> list[int]:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline and any(_running(p) for p in pids):
        time.sleep(0.05)
    return [p for p in pids if _running(p)]


pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")


@pytest.mark.slow
def test_killing_the_main_bench_process_ends_its_workers(tmp_path):
    ds = make_dataset(tmp_path / "ds")
    res = tmp_path / "r.sqlite"
    args = ["bench", str(ds), "--codec", "test-quant:bits=1,2,3,4;sleep=1", "--results", str(res),
            "--workers", "2", "--quiet", "--no-estimate"]
    # output to a file, not a pipe: surviving workers would hold a pipe open
    log = (tmp_path / "bench.log").open("w")
    proc = subprocess.Popen(plugin_cli_argv(args), stdout=log, stderr=log, start_new_session=True)
    try:
        wait_rows(res, 1, proc)  # the pool is up and its workers are busy with tasks
        workers = _children(proc.pid)
        assert len(workers) >= 2, workers
        os.kill(proc.pid, signal.SIGKILL)  # the main process only, not its process group
        proc.wait(timeout=30)
        t0 = time.monotonic()
        left = _wait_gone(workers, limit=10)
        assert not left, f"workers {left} outlived the killed bench"
        print(f"workers gone {time.monotonic() - t0:.2f} s after the kill")
    finally:
        log.close()
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_fallback_thread_ends_an_orphan(tmp_path):
    """Without prctl (other systems), a thread notices the re-parenting and ends the process."""
    orphan = (
        "import os, sys, time; from baselines.bench.worker import die_with_parent;"
        "m = die_with_parent(os.getppid(), use_prctl=False, poll_s=0.1); print(m, flush=True); time.sleep(120)"
    )
    parent = (
        "import subprocess, sys, time;"
        f"p = subprocess.Popen([sys.executable, '-c', {orphan!r}], stdout=sys.stdout);"
        "print(p.pid, flush=True); time.sleep(120)"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-c", parent], stdout=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)
    try:
        child = int(proc.stdout.readline())
        assert proc.stdout.readline().strip() == "thread"
        assert _running(child)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        assert not _wait_gone([child], limit=5), "the orphan kept running"
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl is Linux only")
def test_prctl_is_what_linux_workers_use(tmp_path):
    code = "import os; from baselines.bench.worker import die_with_parent; print(die_with_parent(os.getppid()))"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    assert out.stdout.strip() == "prctl", out.stderr
