"""Run one function over many jobs, in this process or a process pool, with a progress bar.

Used by archive (encode per file) and unarchive (decode per file). Jobs are taken lazily from
an iterator and at most ``2 * workers`` are in flight, so a job that carries data (a member's
bytes) never makes the whole archive sit in memory. A job that raises a user error
(:class:`~cloud3d.errors.Cloud3dError`, ``OSError``) gives a failure for that job and the rest
go on; any other exception is a bug and stops the run.
"""

from __future__ import annotations

import concurrent.futures as cf
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from cloud3d.errors import Cloud3dError, describe_os_error
from cloud3d.lifetime import process_pool


@dataclass
class Outcome:
    """What one job gave: ``key`` (the job's first element), ``value`` or ``error`` (one line)."""

    key: Any
    value: Any = None
    error: str | None = None


def _call(fn: Callable[[Any], Any], job: tuple) -> Outcome:
    try:
        return Outcome(job[0], value=fn(job))
    except Cloud3dError as exc:
        return Outcome(job[0], error=str(exc))
    except OSError as exc:
        return Outcome(job[0], error=describe_os_error(exc))


def run_jobs(fn: Callable[[tuple], Any], jobs: Iterable[tuple], total: int, workers: int = 1,
             desc: str = "", progress: bool = True) -> Iterator[Outcome]:
    """Yield an :class:`Outcome` per job (completion order). ``fn`` must be a module-level
    function when ``workers > 1``; each job is a tuple whose first element names it."""
    from tqdm import tqdm

    bar = tqdm(total=total, desc=desc, unit="file", disable=not progress)
    try:
        if workers <= 1:
            for job in jobs:
                yield _call(fn, job)
                bar.update()
            return
        pool = process_pool(workers)  # workers die with this process, even by SIGKILL
        try:
            it = iter(jobs)
            pending: set[cf.Future] = set()
            while True:
                while len(pending) < 2 * workers:
                    job = next(it, None)
                    if job is None:
                        break
                    pending.add(pool.submit(_call, fn, job))
                if not pending:
                    break
                done, pending = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
                for fut in done:
                    yield fut.result()
                    bar.update()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    finally:
        bar.close()
