"""``capture launch``: a real X program on a private Xvfb, and no processes left behind."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import uuid

import pytest
from helpers import CLI, alive

from capture.verify import check_capture

pytestmark = pytest.mark.xvfb


def _marked(marker: str) -> list[int]:
    """PIDs of live processes whose command line contains ``marker``."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in cmd and alive(int(entry)):
            pids.append(int(entry))
    return pids


def _launch_cmd(out, app_argv, extra=()):
    return [*CLI, "capture", "launch", "--size", "320x180",
            "--app", "win", "--out", str(out), "--no-progress", *extra, "--", *app_argv]


def _app_with_child(marker_seconds: str, *show_args: str) -> list[str]:
    """A shell that forks a marked ``sleep`` child, then becomes the showwindow client."""
    show = " ".join([sys.executable, "-m", "capture.showwindow", "--size", "320x180", *show_args])
    return ["sh", "-c", f"sleep {marker_seconds} & exec {show}"]


def _pids_from(stderr: str) -> tuple[int, int]:
    m = re.search(r"launch: Xvfb pid (\d+) on :\d+; app pid (\d+)", stderr)
    assert m, stderr
    return int(m.group(1)), int(m.group(2))


def _assert_all_gone(pids, marker):
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and (any(alive(p) for p in pids) or _marked(marker)):
        time.sleep(0.1)
    assert not [p for p in pids if alive(p)], "Xvfb or the app survived"
    assert _marked(marker) == [], "the app's child process survived"


def _marker() -> str:
    return f"{1000 + uuid.uuid4().int % 8000}.{uuid.uuid4().int % 997}"


def test_launch_captures_and_cleans_up(xvfb_binary, tmp_path):
    marker = _marker()
    r = subprocess.run(_launch_cmd(tmp_path, _app_with_child(marker), ("--count", "4", "--fps", "8")),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "written 4" in r.stdout
    _assert_all_gone(_pids_from(r.stderr), marker)
    assert all(v == [] for v in check_capture(tmp_path / "win").values())
    assert len(list((tmp_path / "win" / "native").glob("*.png"))) == 4


def test_launch_app_that_dies_reports_its_stderr(xvfb_binary, tmp_path):
    marker = _marker()
    app = ["sh", "-c", f"sleep {marker} & echo 'fatal: no GPU found' >&2; exit 3"]
    r = subprocess.run(_launch_cmd(tmp_path, app, ("--count", "2", "--timeout", "20")),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1
    err = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert len(err) == 1 and "exited with status 3 before opening a window" in err[0]
    assert "fatal: no GPU found" in err[0]
    _assert_all_gone(_pids_from(r.stderr), marker)


def test_launch_window_timeout(xvfb_binary, tmp_path):
    marker = _marker()
    app = ["sh", "-c", f"echo 'loading assets' >&2; exec sleep {marker}"]
    r = subprocess.run(_launch_cmd(tmp_path, app, ("--count", "2", "--timeout", "1.5")),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1
    err = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert len(err) == 1 and "opened no window within 2 s" in err[0] and "loading assets" in err[0]
    _assert_all_gone(_pids_from(r.stderr), marker)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_launch_interrupted_flushes_and_cleans_up(xvfb_binary, tmp_path, sig):
    marker = _marker()
    errf = tmp_path / "stderr.txt"
    with open(errf, "w") as err:
        proc = subprocess.Popen(_launch_cmd(tmp_path, _app_with_child(marker),
                                            ("--duration", "120", "--fps", "10")),
                                stdout=subprocess.PIPE, stderr=err, text=True)
    log = tmp_path / "win" / "frames.csv"
    deadline = time.monotonic() + 60
    while not (log.exists() and log.read_text().count("\n") >= 4):
        assert proc.poll() is None, errf.read_text()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, errf.read_text()
    assert "interrupted" in out + errf.read_text() and "written" in out
    _assert_all_gone(_pids_from(errf.read_text()), marker)
    assert all(v == [] for v in check_capture(tmp_path / "win").values())


def test_launch_sigkilled_leaves_no_xvfb_or_app(xvfb_binary, tmp_path):
    """kill -9 of the capture cannot run its clean-up: the kernel ends Xvfb and the app with it
    (a parent-death signal), so nothing renders on for hours. The app's own children are
    outside its reach and are not checked here."""
    errf = tmp_path / "stderr.txt"
    show = [sys.executable, "-m", "capture.showwindow", "--size", "320x180", "--pattern"]
    with open(errf, "w") as err:
        proc = subprocess.Popen(_launch_cmd(tmp_path, show, ("--duration", "300", "--fps", "10")),
                                stdout=subprocess.DEVNULL, stderr=err)
    try:
        log = tmp_path / "win" / "frames.csv"
        deadline = time.monotonic() + 120
        while not (log.exists() and log.read_text().count("\n") >= 3):
            assert proc.poll() is None and time.monotonic() < deadline, errf.read_text()
            time.sleep(0.05)
        pids = _pids_from(errf.read_text())
        assert all(alive(p) for p in pids)
    finally:
        proc.kill()
        proc.wait(timeout=30)
    deadline = time.monotonic() + 10
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [p for p in pids if alive(p)], "Xvfb or the app outlived a SIGKILLed capture"


def test_launch_key_presses_reach_the_window(xvfb_binary, tmp_path):
    import shutil

    if shutil.which("xdotool") is None:
        pytest.skip("xdotool is not installed (apt-get install xdotool)")
    log = tmp_path / "app.log"
    show = [sys.executable, "-m", "capture.showwindow", "--size", "320x180", "--pattern"]
    r = subprocess.run(_launch_cmd(tmp_path, show, ("--count", "3", "--key", "Return", "--key", "space",
                                                    "--key-interval", "0.3", "--app-log", str(log))),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert log.read_text().count("key press") == 2


def test_launch_stall_timeout_ends_a_frozen_app_keeping_its_frames(xvfb_binary, tmp_path):
    marker = _marker()
    app = _app_with_child(marker, "--pattern", "--fps", "20", "--freeze-after", "2")
    r = subprocess.run(_launch_cmd(tmp_path, app, ("--count", "1000", "--fps", "5",
                                                  "--stall-timeout", "1.5")),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1, r.stderr
    err = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert len(err) == 1 and "stalled: no new frame kept for 1.5 s" in err[0]
    assert "stopped: stalled" in r.stdout
    m = re.search(r"written (\d+)", r.stdout)
    assert m and 3 <= int(m.group(1)) <= 15, r.stdout  # ~2 s of picture at 5 fps
    assert "duplicate=" in r.stdout  # the frozen picture was grabbed and dropped, then the stop
    _assert_all_gone(_pids_from(r.stderr), marker)
    assert all(v == [] for v in check_capture(tmp_path / "win").values())
    assert len(list((tmp_path / "win" / "native").glob("*.png"))) == int(m.group(1))
