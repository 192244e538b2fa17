"""Where tasks run: a local process pool or a Dask cluster, a bounded window in flight, a watchdog.

:class:`TaskExecutor` hands tasks to a ``concurrent.futures``-style executor
(``ProcessPoolExecutor`` locally, ``distributed.Client(...).get_executor()`` with a
scheduler address, or one the caller made) and yields one result row per task as
results arrive. It keeps two tasks per worker thread in flight, so a task starts at
most one task-duration after it is submitted; that bounds the watchdog.

Watchdog: with a time limit, a task without a result ``timeout +``
:data:`WATCHDOG_GRACE_S` seconds after it started (process pools report the start)
or ``2 * timeout + WATCHDOG_GRACE_S`` after it was submitted (Dask does not) gets a
``timeout`` row and is given up. A Dask worker thread cannot be stopped from
outside and stays busy until its codec returns; a local pool with a stuck worker is
terminated at the end of the run.

Leaving the ``with`` block on an exception (Ctrl-C included) stops at once: pending
tasks are cancelled, a local pool is terminated, a Dask client closed. Rows already
yielded are the caller's; nothing else is lost.
"""

from __future__ import annotations

import concurrent.futures as cf
import os
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from baselines.bench.tasks import Task
from baselines.bench.worker import failed_row, run_task, with_image_bytes, worker_init
from cloud3d.errors import Cloud3dError
from cloud3d.lifetime import process_pool, stop_pool

#: extra seconds the main process waits beyond ``timeout`` before giving up on a task
WATCHDOG_GRACE_S = 30.0


class TaskExecutor:
    """Run tasks on ``workers`` local processes, a Dask ``scheduler``, or a given ``executor``.

    Use as a context manager around :meth:`results`::

        with TaskExecutor(workers=2, timeout=60) as ex:
            for row in ex.results(tasks):
                store.put(row)

    ``workers`` defaults to the CPU count (a local pool never starts more processes
    than tasks); ``executor`` is any ready ``concurrent.futures``-style executor, which
    the caller shuts down; ``timeout`` is seconds per task (see the module docstring);
    ``send_images`` reads each image in the main process at submission and ships its
    bytes with the task (for Dask workers without the dataset path).
    """

    def __init__(
        self,
        workers: int | None = None,
        scheduler: str | None = None,
        executor: cf.Executor | None = None,
        timeout: float | None = None,
        send_images: bool = False,
    ) -> None:
        self.workers = workers
        self.scheduler = scheduler
        self.executor = executor
        self.timeout = timeout
        self.send_images = send_images
        self.kind = "given" if executor is not None else ("dask" if scheduler else "local")
        self._client: Any = None
        self._processes = 0  # size of the local pool once started
        self._pending: dict[cf.Future, Task] = {}
        self._abandoned = 0  # tasks given up by the watchdog; their workers may still be busy

    # -- start and stop ----------------------------------------------------------------
    def __enter__(self) -> TaskExecutor:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self._shutdown()
        else:
            self._stop_now()

    def start(self, n_tasks: int) -> None:
        """Start the pool or connect to Dask, for a run of ``n_tasks`` (no-op when started or given)."""
        if self.executor is not None:
            return
        if self.kind == "dask":
            try:
                from distributed import Client
            except ImportError:  # pragma: no cover - dask is a dependency
                raise Cloud3dError("--scheduler needs dask[distributed]: pip install 'dask[distributed]'") from None
            try:
                self._client = Client(self.scheduler, timeout=30)
            except OSError as exc:
                raise Cloud3dError(f"cannot connect to Dask scheduler {self.scheduler}: {exc}") from None
            self.executor = self._client.get_executor(pure=False)
        else:
            self._processes = min(self.workers or os.cpu_count() or 1, max(1, n_tasks))
            self.executor = process_pool(self._processes, initializer=worker_init)

    def threads(self) -> int:
        """Worker threads tasks run on: the Dask cluster's, the local pool's processes, else
        ``workers`` (default: CPU count)."""
        if self._client is not None:
            return max(1, sum(self._client.nthreads().values()))
        return self._processes or self.workers or os.cpu_count() or 1

    def _shutdown(self) -> None:
        if self.kind == "given" or self.executor is None:
            return
        if self._abandoned and self.kind == "local":
            stop_pool(self.executor)  # a worker stuck in C code would otherwise block shutdown
        else:
            self.executor.shutdown(wait=not self._abandoned)
        if self._client is not None:
            self._client.close()

    def _stop_now(self) -> None:
        for fut in self._pending:
            fut.cancel()
        if self.kind == "given" or self.executor is None:
            return
        if self.kind == "local":
            stop_pool(self.executor)
        else:
            self.executor.shutdown(wait=False)
            self._client.close()

    # -- the loop ----------------------------------------------------------------------
    def results(
        self, tasks: Sequence[Task], fn: Callable[[Task], dict[str, Any]] = run_task
    ) -> Iterator[dict[str, Any]]:
        """Yield ``fn(task)`` for every task, in completion order (see the module docstring).

        ``fn`` runs in the workers (:func:`~baselines.bench.worker.run_task` by default) and
        returns a row that starts with the task's record; a task whose worker died or that
        the watchdog gave up gets a ``failed`` row (:func:`~baselines.bench.worker.failed_row`).
        """
        if not tasks:
            return
        self.start(len(tasks))
        n_slots = 2 * self.threads()
        pending = self._pending
        submitted: dict[cf.Future, float] = {}
        running_since: dict[cf.Future, float] = {}
        queue = list(reversed(tasks))
        while queue or pending:
            while queue and len(pending) < n_slots:
                t = queue.pop()
                if self.send_images:  # read at submission so only the tasks in flight hold image bytes
                    t = with_image_bytes(t)
                fut = self.executor.submit(fn, t)
                pending[fut] = t
                submitted[fut] = time.monotonic()
            done, _ = cf.wait(list(pending), timeout=0.5, return_when=cf.FIRST_COMPLETED)
            now = time.monotonic()
            for fut in done:
                task = pending.pop(fut)
                running_since.pop(fut, None)
                submitted.pop(fut, None)
                try:
                    row = fut.result()
                except Exception as exc:  # noqa: BLE001 - worker crashed (e.g. killed by the OOM killer)
                    row = failed_row(task, f"worker failed: {type(exc).__name__}: {exc}")
                yield row
            if not self.timeout:
                continue
            for fut in list(pending):
                if fut.running() and fut not in running_since:
                    running_since[fut] = now
                if fut in running_since:  # process pools report when a task starts
                    waited, limit = now - running_since[fut], self.timeout + WATCHDOG_GRACE_S
                else:  # Dask's executor does not: count from submission, one task may be ahead
                    waited, limit = now - submitted[fut], 2 * self.timeout + WATCHDOG_GRACE_S
                if waited > limit:
                    task = pending.pop(fut)
                    running_since.pop(fut, None)
                    submitted.pop(fut, None)
                    fut.cancel()
                    self._abandoned += 1
                    yield failed_row(task, f"timeout: no result after {waited:.0f} s (limit {self.timeout:g} s)")
