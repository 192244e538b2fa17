"""The robustness harness (``benchmarks/robustness.py``): its always-on slice (every family of
hostile inputs, one kill trial of each command issue 23 made resumable), and the kills that
found the split's leftovers (issue 16 item 9).

The full harness (10,000 streams, kill trials per command) is a benchmark, run by hand; its
figures are in docs/robustness.md. Here a few dozen cases of each family run through the same
worker processes and guards, and must end as accepted or as one-line errors within budget.
"""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from helpers import write_capture

from benchmarks.robust.guard import BAD, Budget, run_case, run_family
from benchmarks.robust.procs import alive
from benchmarks.robustness import FILE_BUDGET, STREAM_BUDGET
from cloud3d.errors import Cloud3dError
from cloud3d_dataset.verify import verify


@pytest.mark.parametrize("family, n, budget", [("streams", 36, STREAM_BUDGET),
                                                ("files", 32, FILE_BUDGET),
                                                ("cards", 14, FILE_BUDGET),  # each variant once
                                                ("manifests", 11, FILE_BUDGET)])
def test_always_on_slice(tmp_path, family, n, budget):
    results = run_family(family, 0, n, 0, tmp_path, budget)
    assert [r.index for r in results] == list(range(n))
    bad = [(r.name, r.outcome, r.detail) for r in results if r.outcome in BAD]
    assert not bad
    assert {r.outcome for r in results} <= {"accepted", "clean"}
    assert any(r.outcome == "clean" for r in results)  # the cases do reach the checks


@pytest.mark.parametrize("command", ["archive", "unarchive", "crops"])
def test_one_kill_trial_of_each_new_command(tmp_path, command):
    # killed before a filesystem call drawn among those a full run makes, then resumed:
    # the same rows as an uninterrupted run, nothing left over, no process left
    from benchmarks.robust.kills import Runner, all_scenarios

    trial = Runner(all_scenarios()[command], tmp_path, seed=0).trial(random_moment=False)
    assert trial.killed and not trial.bad, trial


def test_the_guard_tells_outcomes_apart():
    budget = Budget(20.0, 64 * 2**20)

    def loop():
        while True:
            pass

    def one_line():
        raise Cloud3dError("bad file")

    outcomes = {name: run_case("t", 0, name, fn, budget).outcome for name, fn in {
        "ok": lambda: None, "clean": one_line, "traceback": lambda: [][1],
        "multiline": lambda: (_ for _ in ()).throw(Cloud3dError("a\nb")),
        "memory": lambda: b"x" * (200 * 2**20)}.items()}  # touched, not just reserved
    outcomes["hang"] = run_case("t", 0, "hang", loop, Budget(0.5, 2**30)).outcome
    assert outcomes == {"ok": "accepted", "clean": "clean", "traceback": "traceback",
                        "multiline": "multiline", "hang": "hang", "memory": "over-memory"}


def test_pool_workers_of_split_and_verify_die_with_their_parent():
    # an idle ProcessPoolExecutor worker outlived a SIGKILLed parent forever (found by the
    # harness's split trials); split and verify now make their pools with process_pool
    code = ("import os, signal, time; from cloud3d.lifetime import process_pool;"
            "pool = process_pool(2); list(pool.map(abs, range(4)));"
            "print(*[p.pid for p in pool._processes.values()], flush=True);"
            "os.kill(os.getpid(), signal.SIGKILL)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    pids = [int(x) for x in r.stdout.split()]
    assert r.returncode == -9 and len(pids) == 2
    deadline = time.monotonic() + 10
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [p for p in pids if alive(p)]


def _killat(call: str, n: int, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "benchmarks.robust.killat", call, str(n),
                           *map(str, args)], capture_output=True, text=True, timeout=300)


def _leftovers(ds) -> list[str]:
    return [p.path for p in verify(ds, workers=1, progress=False).problems]


def test_a_killed_split_leaves_nothing_after_its_resume(tmp_path, run_cli):
    raw = tmp_path / "raw"
    write_capture(raw, "kart", 40, seed=1)
    ds = tmp_path / "ds"
    args = ("split", raw / "kart", "--out", ds, "--train", 20, "--val", 5, "--test", 5,
            "--block", 5, "--resolutions", "72p,36p", "--workers", 1, "--quiet")
    # killed after the manifest and the record, before the pending marker is removed
    r = _killat("os.unlink", 1, *args)
    assert r.returncode == -9, r.stderr
    assert ".cloud3d/pending-kart.json" in _leftovers(ds)
    r = run_cli(*args)
    assert r.returncode == 0, r.stderr
    assert _leftovers(ds) == []  # before the fix: the identical run was a no-op that left it
    # killed at the commit's first step, with a half-written frame in a staged folder (what a
    # worker killed inside an atomic write leaves)
    r = _killat("shutil.rmtree", 1, *args, "--force", "--seed", 3)
    assert r.returncode == -9, r.stderr
    staged = next((ds / ".cloud3d").glob("staging-kart-*/test/kart-36p"))
    (staged / ".9.png.q1w2e3.tmp").write_bytes(b"half a frame")
    (ds / ".manifest.csv.abc123.tmp").write_bytes(b"half a manifest")
    r = run_cli(*args, "--force", "--seed", 3)
    assert r.returncode == 0, r.stderr
    assert _leftovers(ds) == []  # before the fix: the temp file was moved into the dataset
