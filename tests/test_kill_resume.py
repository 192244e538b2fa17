"""Every long command resumes after a SIGKILL, with no leftovers and no orphans (issue 23):
``archive``, ``unarchive``, ``crops`` and ``bench``, killed just before a chosen
filesystem call (``benchmarks.robust.killat``, the harness's own tool) and run again.

Real commands on a tiny real dataset; what the resume gives is compared with what an
uninterrupted run gives.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from helpers import alive, make_dataset

from cloud3d_dataset.verify import verify


def _killat(call: str, n: int, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "benchmarks.robust.killat", call, str(n),
                           *map(str, args)], capture_output=True, text=True, timeout=300)


def _leftovers(folder) -> list:
    """What ``cloud3d verify`` finds but the frame sizes (the tiny frames do not fit their
    group's name, which is not what these tests are about)."""
    return [p for p in verify(folder, workers=1, progress=False).problems
            if p.kind != "dimensions"]


def test_archive_and_unarchive_pool_workers_die_with_their_parent(tmp_path):
    # archive's pool was a plain ProcessPoolExecutor: its idle workers outlived a kill -9
    code = ("import os, signal; from baselines.archive.tasks import run_jobs;"
            "from benchmarks.robust.procs import child_pids;"
            "it = run_jobs(len, [(i,) for i in range(8)], 8, workers=2, progress=False);"
            "next(it); print(*child_pids(os.getpid()), flush=True);"
            "os.kill(os.getpid(), signal.SIGKILL)")
    with open(tmp_path / "out.txt", "w") as out:  # not pipes: surviving workers would hold them
        r = subprocess.run([sys.executable, "-c", code], stdout=out, stderr=out, timeout=120)
    text = (tmp_path / "out.txt").read_text()
    pids = [int(x) for x in text.split()] if r.returncode == -9 else []
    assert r.returncode == -9 and len(pids) >= 2, text
    deadline = time.monotonic() + 10
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = [p for p in pids if alive(p)]
    for p in left:  # so that a failure leaves no process behind
        os.kill(p, signal.SIGKILL)
    assert not left


def test_archive_killed_in_its_clean_up_resumes(tmp_path, run_cli):
    ds = make_dataset(tmp_path / "ds", apps=("alpha",), n=3, h=40, w=48)
    out = tmp_path / "a.tar"
    args = ("archive", ds, "-o", out, "--codec", "png", "--quiet")
    r = _killat("shutil.rmtree", 1, *args)  # the archive is in place, its staging not removed
    assert r.returncode == -9 and out.is_file(), r.stderr
    made = out.read_bytes()
    r = run_cli(*args)
    assert r.returncode == 0, r.stderr  # "already exists: use --force" before the fix
    assert "4 files (4 re-used" in r.stdout
    assert out.read_bytes() == made
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tar", "ds"]


def test_unarchive_killed_mid_way_resumes_without_leftovers(tmp_path, run_cli):
    ds = make_dataset(tmp_path / "ds", apps=("alpha",), n=3, h=40, w=48)
    assert run_cli("archive", ds, "-o", tmp_path / "a.tar", "--codec", "png", "--quiet").returncode == 0
    out = tmp_path / "out"
    args = ("unarchive", tmp_path / "a.tar", "-o", out, "--quiet")
    r = _killat("os.replace", 3, *args)  # the marker and one PNG written, the next one half
    assert r.returncode == -9, r.stderr
    assert list(out.rglob(".*.tmp"))
    r = run_cli(*args)
    assert r.returncode == 0, r.stderr
    assert not list(out.rglob(".*.tmp"))  # the killed write's temp file stayed before the fix
    assert _leftovers(out) == []


def test_crops_killed_mid_way_resumes_to_the_same_crops(tmp_path, run_cli):
    ds = make_dataset(tmp_path / "ds", apps=("alpha",), n=3, h=40, w=48)
    args = ("crops", ds, "--size", 16, "--per-frame", 2, "--splits", "test", "--workers", 1, "--quiet")
    assert run_cli(*args, "-o", tmp_path / "ref").returncode == 0
    out = tmp_path / "crops"
    r = _killat("os.replace", 4, *args, "-o", out)  # some crops written, no manifest yet
    assert r.returncode == -9, r.stderr
    assert not (out / "manifest.csv").exists()
    r = run_cli(*args, "-o", out)
    assert r.returncode == 0, r.stderr  # "is not an empty folder" before the fix
    assert _leftovers(out) == []
    assert (out / "crops.csv").read_text() == (tmp_path / "ref" / "crops.csv").read_text()
    ref = sorted(p.relative_to(tmp_path / "ref") for p in (tmp_path / "ref").rglob("*.png"))
    assert sorted(p.relative_to(out) for p in out.rglob("*.png")) == ref
    assert all((out / p).read_bytes() == (tmp_path / "ref" / p).read_bytes() for p in ref)
    assert not (out / ".cloud3d").exists()
    # a finished crop folder is not refused either: the same command finds nothing to do
    assert run_cli(*args, "-o", out).returncode == 0
    # killed while writing its pending marker (found by the harness, seed 1): resumes too
    r = _killat("os.replace", 1, *args, "-o", tmp_path / "early")
    assert r.returncode == -9, r.stderr
    r = run_cli(*args, "-o", tmp_path / "early")
    assert r.returncode == 0, r.stderr
    assert _leftovers(tmp_path / "early") == [] and not (tmp_path / "early" / ".cloud3d").exists()


def test_a_killed_bench_leaves_only_its_results_file(tmp_path):
    ds = make_dataset(tmp_path / "ds", apps=("alpha",), n=3, h=40, w=48)
    res = tmp_path / "res"
    r = _killat("ResultsStore.put", 2, "bench", ds, "--split", "test", "--codec", "jpeg:q=50,80",
                "--results", res / "r.sqlite", "--workers", 1, "--no-estimate", "--quiet")
    assert r.returncode == -9, r.stderr
    assert [p.name for p in res.iterdir()] == ["r.sqlite"]  # and -wal, -shm before the fix


def test_bench_folder_killed_writing_its_table_resumes_without_leftovers(tmp_path, run_cli):
    import json

    ds = make_dataset(tmp_path / "ds", apps=("alpha",), n=3, h=40, w=48)
    args = ("bench-folder", ds, "--method", "tar", "--codec", "png", "--quiet", "--out")
    counts = tmp_path / "calls.json"
    r = subprocess.run([sys.executable, "-m", "benchmarks.robust.killat", "os.replace", "0",
                        *map(str, args), tmp_path / "ref" / "t.csv"], capture_output=True,
                       text=True, timeout=300, env={**os.environ, "CLOUD3D_KILLAT_COUNTS": str(counts)})
    assert r.returncode == 0, r.stderr
    last = json.loads(counts.read_text())["os.replace"]
    # the table's last atomic write: the figure beside it is written after it, so go back
    # from the run's last os.replace to the first kill that leaves the table's temp file
    for n in range(last, 0, -1):
        run = tmp_path / f"run{n}"
        r = _killat("os.replace", n, *args, run / "t.csv")
        assert r.returncode == -9, r.stderr
        if list(run.glob(".t.csv.*.tmp")):
            break
    else:
        raise AssertionError("no kill left the table's temporary file")
    r = run_cli(*args, run / "t.csv")
    assert r.returncode == 0, r.stderr
    names = sorted(p.name for p in run.iterdir())
    assert "t.csv" in names and set(names) <= {"t.csv", "t.png", "t.svg"}, names  # no temp file
