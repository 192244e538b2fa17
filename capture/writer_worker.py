"""PNG writer worker process: ``python -m capture.writer_worker`` (started by the recorder).

Protocol (JSON lines): the first stdin line is the configuration
(``app_dir``, ``resolutions``, ``fit``, ``encoder``, ``level``); every next
line is a job (the worker first answers ``{"ready": true}``) ``{"shm": name, "shape": [h, w, 3], "index": n}`` whose pixels
sit in that shared-memory block. For each job one result line goes to stdout:
``{"index", "fields", "enc", "rsz", "nbytes", "err"}``. End of stdin (the
parent closed it, or died) ends the worker; it also gets SIGKILL when its
parent dies (``PR_SET_PDEATHSIG``) and ignores SIGINT (the parent drives a
clean stop).

A separate interpreter rather than a ``multiprocessing`` child: it works
from any caller (threads, notebooks, scripts without a ``__main__`` guard).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import signal
import sys
from multiprocessing import resource_tracker, shared_memory
from pathlib import Path

import numpy as np

from .writer import write_frame


def _die_with_parent() -> None:
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _attach(name: str) -> shared_memory.SharedMemory:
    shm = shared_memory.SharedMemory(name=name)
    # the parent owns the block: keep this process's resource tracker from unlinking it
    with contextlib.suppress(Exception):
        resource_tracker.unregister(shm._name, "shared_memory")  # noqa: SLF001
    return shm


def main() -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent()
    cfg = json.loads(sys.stdin.readline() or "null")
    if not cfg:
        return 0
    app_dir, resolutions = Path(cfg["app_dir"]), tuple(cfg["resolutions"])
    if cfg["encoder"] == "fpng":
        import fpng  # noqa: F401  # load the encoder before saying ready
    sys.stdout.write(json.dumps({"ready": True}) + "\n")
    sys.stdout.flush()
    shms: dict[str, shared_memory.SharedMemory] = {}
    failed = False
    try:
        for line in sys.stdin:
            job = json.loads(line)
            index = job["index"]
            out = {"index": index, "fields": None, "enc": 0.0, "rsz": 0.0, "nbytes": 0, "err": None}
            if failed:
                out["err"] = "discarded"
            else:
                name = job["shm"]
                if name not in shms:
                    shms[name] = _attach(name)
                rgb = np.ndarray(tuple(job["shape"]), np.uint8, buffer=shms[name].buf)
                try:
                    fields, enc, rsz, nbytes = write_frame(app_dir, rgb, index, resolutions,
                                                           cfg["fit"], cfg["encoder"], cfg["level"])
                    out.update(fields=fields, enc=enc, rsz=rsz, nbytes=nbytes)
                except Exception as exc:  # report, then discard later jobs
                    failed = True
                    out["err"] = [getattr(exc, "errno", None), getattr(exc, "strerror", None) or str(exc),
                                  getattr(exc, "filename", None), type(exc).__name__]
                del rgb
                if job.get("once"):
                    shms.pop(name).close()
            sys.stdout.write(json.dumps(out) + "\n")
            sys.stdout.flush()
    except BrokenPipeError:
        pass
    finally:
        for s in shms.values():
            s.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
