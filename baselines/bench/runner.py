"""Run codecs over a dataset split: :func:`run_bench` plans, resumes, executes and records.

The pieces, each in its own module:

* :mod:`baselines.bench.tasks`: parse the ``--codec`` specs and plan one frozen
  :class:`~baselines.bench.tasks.Task` per (image, codec, quality);
* :mod:`baselines.bench.worker`: what a worker does with a task (read, encode, decode,
  metrics) and how pool workers start (and die with the main process);
* :mod:`baselines.bench.executor`: local process pool or Dask, the window of tasks in
  flight and the watchdog;
* :mod:`baselines.bench.estimate`: the plan and CPU-time estimate printed before a run;
* :mod:`baselines.bench.store`: the SQLite results file.

:func:`run_bench` skips tasks already finished in the store, runs the rest and
commits each result as it arrives (only this process writes the store).
"""

from __future__ import annotations

import concurrent.futures as cf
import os
import shlex
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from baselines.bench.estimate import calibrate, describe_plan, estimate_costs
from baselines.bench.executor import TaskExecutor
from baselines.bench.store import ResultsStore
from baselines.bench.tasks import Task, plan_tasks, resolve_specs
from baselines.codecs.registry import CodecSpec
from cloud3d.provenance import machine_description, package_versions, utc_stamp

#: stored columns the cost estimate reads from earlier results
_TIMING_COLUMNS = ("codec_label", "resolution", "quality", "width", "height", "started", "finished")


def software_versions(codec_versions: dict[str, str]) -> dict[str, Any]:
    """Python, the packages a bench result depends on, and each codec's version string."""
    pkgs = package_versions("cloud3d", "numpy", "pillow", "pillow-heif", "pytorch-msssim", "dask", "distributed")
    return {**pkgs, "codecs": codec_versions}


@dataclass
class BenchSummary:
    """What :func:`run_bench` returns: task counts and the run id in the store."""

    total: int = 0
    skipped: int = 0
    ok: int = 0
    failed: int = 0
    timeouts: int = 0
    interrupted: bool = False
    run_id: int | None = None
    failures: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["failures"] = self.failures[:20]
        return d

    def line(self) -> str:
        s = f"{self.ok} ok, {self.failed} failed"
        if self.timeouts:
            s += f" ({self.timeouts} timeouts)"
        return s + f", {self.skipped} already done, {self.total} tasks"

    def count(self, row: dict[str, Any]) -> None:
        """Count one result row."""
        if row["status"] == "ok":
            self.ok += 1
            return
        self.failed += 1
        if str(row.get("error", "")).startswith("timeout"):
            self.timeouts += 1
        self.failures.append(f"{row['relpath']} {row['codec_label']} {row['quality_param']}={row['quality']}: "
                             f"{row['error']}")


@dataclass(frozen=True)
class BenchOptions:
    """Which images a bench run takes and how it runs them.

    Attributes:
        split, apps, resolutions: select images from the manifest (``None`` = all).
        limit: keep the first N images per (app, resolution).
        workers: local pool processes (``None``: the pool's default).
        scheduler: ``tcp://host:port`` of a Dask cluster instead of the local pool.
        keep: folder where each task's decoded image is kept (``None``: not kept).
        timeout: seconds one task may take before it is recorded as a timeout.
        retry_failed: re-run tasks whose stored row failed (ok rows are always skipped).
        send_images: ship image bytes with each task (Dask workers without the shared path).
        progress: show a tqdm bar on stderr.
        command: the command line stored with the run (default: ``sys.argv``).
    """

    split: str | None = "test"
    apps: Sequence[str] | None = None
    resolutions: Sequence[str] | None = None
    limit: int | None = None
    workers: int | None = None
    scheduler: str | None = None
    keep: str | os.PathLike | None = None
    timeout: float | None = None
    retry_failed: bool = True
    send_images: bool = False
    progress: bool = True
    command: str | None = None


def run_bench(
    dataset_dir: str | os.PathLike,
    specs: Sequence[str | CodecSpec],
    results: str | os.PathLike,
    options: BenchOptions | None = None,
    *,
    executor: cf.Executor | None = None,
    announce: Callable[[str], Any] | None = None,
) -> BenchSummary:
    """Run every (image, codec, quality) task not yet finished in ``results``.

    ``dataset_dir`` must have a manifest. ``specs`` are ``--codec`` strings or parsed
    :class:`CodecSpec`. ``options`` selects the images and says how to run them
    (:class:`BenchOptions`; its defaults when ``None``). ``executor`` passes any ready
    ``concurrent.futures``-style executor instead of the local pool or Dask (the caller
    shuts it down). ``announce``, when given, receives the plan before any task runs: task
    counts and the estimated CPU time per curve (:mod:`baselines.bench.estimate`; it may run a
    short calibration in the workers).
    Returns a :class:`BenchSummary`; on Ctrl-C the rows finished so far are kept and
    KeyboardInterrupt is re-raised after the summary is stored.
    """
    opts = options if options is not None else BenchOptions()
    tasks = _plan(dataset_dir, specs, opts)
    summary = BenchSummary(total=len(tasks))
    with ResultsStore(results) as store:
        todo = _unfinished(tasks, store.statuses(), opts.retry_failed, summary)
        codec_versions: dict[str, str] = {}
        for t in tasks:
            codec_versions.setdefault(t.codec_label, t.codec_version)
        run_id = store.start_run(
            utc_stamp(timespec="microseconds"),
            opts.command or " ".join(shlex.quote(a) for a in sys.argv),
            software_versions(codec_versions),
            machine_description(),
        )
        summary.run_id = run_id
        try:
            with TaskExecutor(opts.workers, opts.scheduler, executor, opts.timeout, opts.send_images) as ex:
                if todo:
                    ex.start(len(todo))
                if announce is not None:
                    _announce(announce, ex, store, todo, summary)
                _execute(ex, store, todo, summary, opts.progress)
        except KeyboardInterrupt:
            summary.interrupted = True
            store.finish_run(run_id, utc_stamp(timespec="microseconds"), summary.as_dict())
            print(f"\ninterrupted: {summary.line()}; results so far are saved in {store.path}", file=sys.stderr)
            raise
        store.finish_run(run_id, utc_stamp(timespec="microseconds"), summary.as_dict())
    return summary


def _plan(dataset_dir: str | os.PathLike, specs: Sequence[str | CodecSpec], opts: BenchOptions) -> list[Task]:
    """One task per (selected image, codec, quality), in manifest order."""
    from cloud3d_dataset.manifest import image_paths

    specs = resolve_specs(specs)
    root = Path(dataset_dir).resolve()
    df = image_paths(root, split=opts.split, app=list(opts.apps) if opts.apps else None,
                     resolution=list(opts.resolutions) if opts.resolutions else None)
    if opts.limit:
        df = df.groupby(["app", "resolution"], sort=False).head(int(opts.limit)).reset_index(drop=True)
    keep_dir = str(Path(opts.keep).resolve()) if opts.keep else None
    return plan_tasks(df.to_dict("records"), specs, str(root), keep=keep_dir, timeout=opts.timeout)


def _unfinished(tasks: list[Task], done: dict[tuple, str], retry_failed: bool,
                summary: BenchSummary) -> list[Task]:
    """The tasks to run: not stored yet, or stored as failed when ``retry_failed``; counts skips."""
    todo: list[Task] = []
    for t in tasks:
        st = done.get(t.key)
        if st == "ok" or (st is not None and not retry_failed):
            summary.skipped += 1
        else:
            todo.append(t)
    return todo


def _announce(announce: Callable[[str], Any], ex: TaskExecutor, store: ResultsStore, todo: list[Task],
              summary: BenchSummary) -> None:
    """Hand ``announce`` the plan: counts and the estimated CPU time per curve."""
    estimates = estimate_costs(todo, store.results("ok", columns=_TIMING_COLUMNS),
                               lambda ts: ex.results(ts, calibrate))
    announce(describe_plan(summary.total, summary.skipped, estimates, ex.threads() if todo else None,
                           "Dask threads" if ex.kind == "dask" else "workers"))


def _execute(ex: TaskExecutor, store: ResultsStore, todo: list[Task], summary: BenchSummary,
             progress: bool) -> None:
    """Run ``todo`` and commit each result row to the store as it arrives."""
    from tqdm import tqdm

    bar = tqdm(total=len(todo), desc="bench", unit="task", disable=not progress, dynamic_ncols=True)
    try:
        for row in ex.results(todo):
            row["run_id"] = summary.run_id
            store.put(row)
            summary.count(row)
            bar.update(1)
            bar.set_postfix(ok=summary.ok, failed=summary.failed, refresh=False)
    finally:
        bar.close()
