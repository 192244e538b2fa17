"""A capture killed with SIGKILL, and one that fills the disk, leave consistent folders."""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import subprocess
import time

import pandas as pd
import pytest
from helpers import CLI, alive, child_pids

from capture.verify import check_capture


def _capture_cmd(out, count, size="320x180", extra=()):
    return [*CLI, "capture", "synthetic", "--count", str(count),
            "--size", size, "--out", str(out), "--no-progress", *extra]


def _rows(path):
    try:
        return max(0, path.read_text().count("\n") - 1)
    except FileNotFoundError:
        return 0


def test_sigkill_leaves_consistent_folder_and_rerun_continues(tmp_path):
    log = tmp_path / "synthetic" / "frames.csv"
    proc = subprocess.Popen(_capture_cmd(tmp_path, 100000, "640x360", ("--res", "native,720p")),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while _rows(log) < 8:
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "capture wrote no rows"
            time.sleep(0.05)
        writers = child_pids(proc.pid)
        assert writers, "expected PNG writer processes"
    finally:
        proc.kill()
        proc.wait(timeout=10)
        proc.stderr.close()
    deadline = time.monotonic() + 5
    while any(alive(p) for p in writers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(alive(p) for p in writers), "writer processes outlived the killed capture"
    app = tmp_path / "synthetic"
    found = check_capture(app)
    # every logged frame exists, matches its hash and decodes; every PNG decodes
    assert found["missing"] == [] and found["hash_mismatch"] == [] and found["undecodable"] == []
    # at most the frames in flight (2 writers x 2 resolutions) were written but not yet logged
    assert len(found["unlogged"]) <= 4
    before = pd.read_csv(log, dtype={"reason": str}) if not found["partial_line"] else None
    if before is not None:
        next_index = int(before["index"].max()) + 1
    r = subprocess.run(_capture_cmd(tmp_path, 2, "640x360", ("--res", "native,720p")),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    after = check_capture(app)
    assert all(v == [] for v in after.values()), after
    df = pd.read_csv(log, dtype={"reason": str})
    kept = df[df["status"] == "kept"]
    assert kept["index"].is_unique
    if before is not None:
        assert sorted(kept["index"])[-2:] == [next_index, next_index + 1]


@contextlib.contextmanager
def _tiny_filesystem(path):
    """A real 1 MiB tmpfs at ``path`` if we may mount; else None (caller falls back)."""
    path.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(path)],
                       capture_output=True, timeout=20) if os.geteuid() == 0 else None
    if r is None or r.returncode != 0:
        yield None
        return
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=20)


def _limit_file_size():
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (40_000, 40_000))


def test_disk_full_gives_one_clear_message(tmp_path):
    with _tiny_filesystem(tmp_path / "tiny") as fs:
        if fs is not None:  # real ENOSPC on a full tmpfs
            r = subprocess.run(_capture_cmd(fs, 500), capture_output=True, text=True, timeout=120)
            expect = "disk full while writing"
        else:  # no mount rights: a real write failing at the file-size limit (EFBIG)
            r = subprocess.run(_capture_cmd(tmp_path / "out", 500), capture_output=True, text=True,
                               timeout=120, preexec_fn=_limit_file_size)
            expect = "File too large"
            fs = tmp_path / "out"
        assert r.returncode == 1
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and expect in lines[0], r.stderr
        assert "frames were written completely" in lines[0]
        found = check_capture(fs / "synthetic")
        assert found["missing"] == [] and found["hash_mismatch"] == []
        assert found["undecodable"] == [] and found["unlogged"] == []


@pytest.mark.parametrize("bad", [["--count", "0"], ["--fps", "-1"], ["--size", "12x9"]])
def test_bad_numbers(tmp_path, bad):
    args = _capture_cmd(tmp_path, 1)
    args += bad
    r = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and r.stderr.startswith("error: ") and "Traceback" not in r.stderr
