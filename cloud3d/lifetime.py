"""Worker processes that die with their parent, even when the parent is SIGKILLed.

A ``ProcessPoolExecutor`` worker waits on its task queue forever once its parent is gone (it
holds the queue's other end itself), so a ``kill -9`` of a command left its idle workers
behind (issue 16 item 8 for ``bench``; the robustness harness found the same in ``split``).
:func:`process_pool` makes pools whose workers call :func:`die_with_parent` first.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from multiprocessing.context import BaseContext

#: Linux ``prctl`` option: signal this process when its parent dies (``<linux/prctl.h>``)
PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int, use_prctl: bool = True, poll_s: float = 1.0) -> str:
    """Make this process exit when its parent dies, even by SIGKILL; returns the method used.

    ``parent_pid`` is the process expected to have started this one (a pool's main
    process; with the ``forkserver`` start method the parent is the fork server, which
    exits with it). On Linux the kernel sends SIGKILL the moment the parent goes
    (``prctl(PR_SET_PDEATHSIG)``, no polling): ``"prctl"``. Elsewhere, or with
    ``use_prctl=False``, a daemon thread checks every ``poll_s`` seconds whether this
    process was re-parented (the parent is gone) and then ends it with ``os._exit``:
    ``"thread"``. Either way a parent that died before this call ends the process at once.
    Without this, pool workers of a killed ``cloud3d bench`` wait on their task queue forever.
    """
    method = "thread"
    if use_prctl and sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)  # the running program's symbols, libc's prctl among them
        if libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) == 0:
            method = "prctl"
    ppid = os.getppid()
    if ppid != parent_pid and not _pid_alive(parent_pid):
        os._exit(1)  # the parent died before the death signal was armed
    if method == "thread":
        def watch() -> None:
            while os.getppid() == ppid:
                time.sleep(poll_s)
            os._exit(1)

        threading.Thread(target=watch, name="die-with-parent", daemon=True).start()
    return method


def exec_dies_with_parent() -> None:
    """A ``subprocess.Popen(preexec_fn=...)`` hook: the program about to be executed gets
    SIGKILL when the thread that started it ends, even by SIGKILL (Linux; elsewhere a no-op).

    For helpers such as Xvfb and a captured app, whose clean stop the parent drives but
    which must not outlive a ``kill -9`` of the parent. The kernel keeps the setting across
    ``execve`` except for set-user-ID programs, and ties it to the creating *thread*: start
    such children from a thread that lives as long as they should (the main thread).
    Runs between fork and exec: no Python threads, no allocation-heavy work."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _init_worker(parent_pid: int, initializer: Callable[..., object] | None,
                 initargs: tuple) -> None:
    """A pool worker's start: tie its life to the parent's, then the caller's initializer."""
    die_with_parent(parent_pid)
    if initializer is not None:
        initializer(*initargs)


def process_pool(workers: int, initializer: Callable[..., object] | None = None,
                 initargs: tuple = (), mp_context: BaseContext | None = None) -> ProcessPoolExecutor:
    """A process pool of ``workers`` whose workers end when this process ends (even by SIGKILL).

    The one way the toolkit starts worker processes (``bench``, ``archive``, ``unarchive``,
    ``split``, ``verify``, ``analyse``...). ``initializer(*initargs)`` runs in each worker
    after it is tied to this process; ``mp_context`` picks the start method (default: the
    platform's)."""
    return ProcessPoolExecutor(max_workers=workers, mp_context=mp_context,
                               initializer=_init_worker,
                               initargs=(os.getpid(), initializer, tuple(initargs)))


def stop_pool(pool: ProcessPoolExecutor) -> None:
    """Stop a pool of :func:`process_pool` now: queued tasks are cancelled, running ones
    abandoned (their workers terminated, not awaited; one stuck in C code cannot block)."""
    pool.shutdown(wait=False, cancel_futures=True)
    procs = list((getattr(pool, "_processes", None) or {}).values())
    for p in procs:
        try:
            p.terminate()
        except Exception:  # noqa: BLE001 - already gone
            pass
    for p in procs:
        p.join(timeout=5)
