"""Provenance: what lets a result be re-derived and trusted.

One home for the facts recorded next to every table row and run log:

* content hashes (:func:`sha256_bytes`, :func:`sha256_file`), hex SHA-256;
* UTC timestamps (:func:`utc_now`, :func:`utc_stamp`), ISO 8601 with an explicit offset;
* versions of Python packages (:func:`package_versions`) and of external programs
  (:func:`tool_version`, first line of their version output);
* the machine (:func:`machine_description`): CPU model, cores, RAM, OS, Python, and
  torch/CUDA when torch is installed.
"""

from __future__ import annotations

import datetime as _dt
import functools
import hashlib
import importlib.util
import os
import platform
import socket
import subprocess
from collections.abc import Sequence
from typing import Any


def sha256_bytes(data: bytes | memoryview) -> str:
    """Hex SHA-256 of a byte string."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def utc_now() -> _dt.datetime:
    """The current time as a timezone-aware UTC datetime."""
    return _dt.datetime.now(_dt.UTC)


def utc_stamp(when: _dt.datetime | None = None, timespec: str = "seconds") -> str:
    """ISO 8601 UTC timestamp, e.g. ``2026-11-29T17:28:52+00:00`` (``timespec`` as in isoformat)."""
    return (when or utc_now()).astimezone(_dt.UTC).isoformat(timespec=timespec)


def package_versions(*dists: str) -> dict[str, str]:
    """Installed version of each distribution (``"not installed"`` when absent), plus Python's."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for dist in dists:
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = "not installed"
    return out


@functools.lru_cache(maxsize=32)
def _tool_version_cached(argv: tuple[str, ...], timeout: float) -> str:
    try:
        proc = subprocess.run(list(argv), capture_output=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    lines = (proc.stdout + proc.stderr).decode("utf-8", "replace").strip().splitlines()
    return lines[0].strip() if lines else "unknown"


def tool_version(argv: Sequence[str], timeout: float = 30.0) -> str:
    """First line a program prints for ``argv`` (e.g. ``["ffmpeg", "-version"]``); ``"unknown"``
    if it cannot run. Cached per argument list within a process."""
    return _tool_version_cached(tuple(str(a) for a in argv), timeout)


def _first_field(path: str, key: str) -> str | None:
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(key):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def machine_description() -> dict[str, Any]:
    """Host, CPU model (``/proc/cpuinfo``), logical cores, RAM (GiB), OS, Python; torch/CUDA if installed.

    torch is described only when it is installed, and a broken torch is reported as such
    rather than raised (a benchmark run must not stop on it).
    """
    desc: dict[str, Any] = {
        "host": socket.gethostname(),
        "cpu_model": _first_field("/proc/cpuinfo", "model name") or platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "os": platform.platform(),
        "python": platform.python_version(),
    }
    mem = _first_field("/proc/meminfo", "MemTotal")
    if mem:
        desc["ram_gib"] = round(int(mem.split()[0]) / 1024**2, 1)
    if importlib.util.find_spec("torch") is not None:
        try:
            import torch

            desc["torch"] = torch.__version__
            desc["cuda"] = torch.version.cuda if torch.cuda.is_available() else None
            if torch.cuda.is_available():
                desc["gpu"] = torch.cuda.get_device_name(0)
        except Exception as exc:  # noqa: BLE001 - a broken torch must not stop a bench run
            desc["torch"] = f"unusable: {exc}"
    return desc
