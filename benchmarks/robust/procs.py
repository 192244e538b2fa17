"""Processes seen through ``/proc``: children, liveness, and the processes of one run.

The home of these helpers; the tests import them from here (``tests/helpers.py``).
"""

from __future__ import annotations

import os


def child_pids(pid: int) -> set[int]:
    """PIDs of the live children of process ``pid`` (from /proc)."""
    out = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        out.add(int(entry))
            except (OSError, IndexError, ValueError):
                pass
    return out


def alive(pid: int) -> bool:
    """True while process ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def pids_with(marker: str) -> set[int]:
    """Live processes (not this one) whose command line contains ``marker`` (e.g. a run's
    unique output folder: forked workers share their parent's command line)."""
    out = set()
    needle = marker.encode()
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    if needle in f.read() and alive(int(entry)):
                        out.add(int(entry))
            except OSError:
                pass
    return out
