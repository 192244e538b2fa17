"""Run codecs over a dataset split: tasks, workers, executor loop, resume.

A *task* is one (image, codec, quality) triple, described by a plain dict so
it travels to a local process pool or a Dask cluster unchanged. The worker
function :func:`run_task` reads the image (from the shared path, or from bytes
sent along), encodes, decodes, computes metrics (bpp, PSNR, MSE, MS-SSIM) and
returns a plain dict ready for :class:`baselines.store.ResultsStore`. Nothing
pickled is ever stored.

:func:`run_bench` plans the tasks, skips those already finished in the store,
submits the rest to a ``concurrent.futures``-style executor
(``ProcessPoolExecutor`` locally, ``distributed.Client(...).get_executor()``
with ``--scheduler``) and commits each result as it arrives.

Timeouts: in a process-pool worker the task runs in the worker's main thread
and ``SIGALRM`` interrupts it after ``timeout`` seconds (Python code returns
at once; C code such as a Pillow encoder is interrupted when it hands control
back to Python). Subprocess codecs (BPG, VTM) also pass their own timeout to
``subprocess.run``. On Dask workers (tasks run in threads, no signals) the
main process records ``timeout`` once a task has been running for
``timeout + 30`` seconds and stops waiting for it; the worker thread itself
cannot be stopped from outside.
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import os
import shlex
import signal
import socket
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from baselines.codecs.base import Codec, CodecError, CodecUnavailable
from baselines.codecs.registry import CodecSpec, parse_codec_spec
from baselines.store import ResultsStore, canonical_json
from cloud3d.errors import Cloud3dError
from cloud3d.provenance import machine_description, package_versions, utc_stamp

#: extra seconds the main process waits beyond ``timeout`` before giving up on a task
WATCHDOG_GRACE_S = 30.0



# ----------------------------------------------------------------------------------------
# specs
# ----------------------------------------------------------------------------------------
def spec_label(spec: CodecSpec) -> str:
    """Curve label: the spec's ``label=``, else the codec's curve name
    (:meth:`Codec.curve_label`) plus the options that differ from the defaults."""
    if spec.label:
        return spec.label
    changed = {k: v for k, v in spec.options.items() if spec.cls.options_defaults.get(k) != v}
    base = spec.cls.curve_label(spec.qualities)
    return base + "".join(f";{k}={v}" for k, v in sorted(changed.items()))


def resolve_specs(specs: Sequence[str | CodecSpec]) -> list[CodecSpec]:
    """Parse every spec and check every codec is available, before any work starts.

    Raises :class:`Cloud3dError` listing all problems at once (unknown codec,
    bad parameter, unavailable codec with its install hint).
    """
    if not specs:
        raise Cloud3dError("no --codec given; list codecs with `cloud3d codecs`")
    out: list[CodecSpec] = []
    problems: list[str] = []
    for s in specs:
        if isinstance(s, CodecSpec):
            out.append(s)
            continue
        try:
            out.append(parse_codec_spec(s))
        except ValueError as exc:
            problems.append(f"--codec {s!r}: {exc}")
    for spec in out:
        reason = spec.make().availability()  # per instance: honours bpg_dir/vtm_dir options
        if reason:
            problems.append(f"codec {spec.cls.name} is not available here: {reason}")
    if problems:
        raise Cloud3dError("; ".join(problems))
    return out


# ----------------------------------------------------------------------------------------
# tasks
# ----------------------------------------------------------------------------------------
def task_key(task: dict[str, Any]) -> tuple[str, str, str, str]:
    return (task["image_sha256"], task["codec"], task["codec_version"], task["params"])


def plan_tasks(
    images: Iterable[dict[str, Any]],
    specs: Sequence[CodecSpec],
    dataset: str,
    keep: str | None = None,
    timeout: float | None = None,
) -> list[dict[str, Any]]:
    """One task dict per (image row, spec, quality); ``images`` are manifest rows with ``abspath``.

    Byte-identical images (same sha256) give the same result key, so they are
    planned once: the row carries the first path, and means are over distinct images.
    """
    codecs: list[tuple[CodecSpec, Codec, str, dict]] = []
    for spec in specs:
        codec = spec.make()
        try:
            version = codec.version()
            prov = codec.provenance()
        except CodecUnavailable as exc:
            raise Cloud3dError(f"codec {spec.cls.name} is not available here: {exc}") from None
        codecs.append((spec, codec, version, prov))
    labels = [spec_label(spec) for spec, *_ in codecs]  # once: a learned label reads checkpoints
    tasks = []
    seen: set[tuple[str, str, str, str]] = set()
    for img in images:
        for (spec, codec, version, _prov), label in zip(codecs, labels, strict=True):
            qp = spec.cls.quality
            for q in spec.qualities:
                pdict: dict[str, Any] = {"options": codec.options, qp.name: q}
                if isinstance(q, str) and Path(q).is_file():
                    # quality given by a file (a learned codec's checkpoint): absolute path for the
                    # workers, and its hash in the key so a retrained file is benchmarked again
                    q = str(Path(q).resolve())
                    pdict = {"options": codec.options, qp.name: q, f"{qp.name}_sha256": _file_sha(q)}
                if spec.label:
                    # a row belongs to one curve: the same setting under a chosen label is
                    # its own result (default labels follow from what the key already holds)
                    pdict["label"] = spec.label
                params = canonical_json(pdict)
                key = (img["sha256"], spec.cls.name, version, params)
                if key in seen:
                    continue  # byte-identical image already planned (first path wins)
                seen.add(key)
                tasks.append(
                    {
                        "image_sha256": img["sha256"],
                        "codec": spec.cls.name,
                        "codec_version": version,
                        "params": params,
                        "codec_label": label,
                        "quality_param": qp.name,
                        "quality": q,
                        "options": dict(codec.options),
                        "codec_cls": spec.cls,
                        "dataset": dataset,
                        "relpath": img["path"],
                        "abspath": img["abspath"],
                        "app": img["app"],
                        "resolution": img["resolution"],
                        "split": img["split"],
                        "width": int(img["width"]),
                        "height": int(img["height"]),
                        "keep": keep,
                        "timeout": timeout,
                    }
                )
    return tasks


def _file_sha(path: str, _cache: dict[str, str] = {}) -> str:  # noqa: B006 - per-process memo
    from cloud3d.provenance import sha256_file

    if path not in _cache:
        _cache[path] = sha256_file(path)
    return _cache[path]


def quality_slug(q: Any) -> str:
    """Short text for a quality value in file names: ``40``, ``0.5`` or a file's stem."""
    if isinstance(q, int | float) and not isinstance(q, bool):
        return f"{q:g}"
    return Path(str(q)).stem.replace(" ", "_")


class TaskTimeout(Exception):
    """Raised inside a worker by SIGALRM when a task exceeds its time limit."""


def _alarm(signum, frame):  # pragma: no cover - runs in worker processes
    raise TaskTimeout()


_CODEC_CACHE: dict[tuple[type, str], Codec] = {}


def _codec_for(task: dict[str, Any]) -> Codec:
    key = (task["codec_cls"], canonical_json(task["options"]))
    codec = _CODEC_CACHE.get(key)
    if codec is None:
        codec = task["codec_cls"](**task["options"])
        _CODEC_CACHE[key] = codec
    return codec


def _keep_outputs(task: dict[str, Any], codec: Codec, data: bytes, rec) -> dict[str, str]:
    from cloud3d.atomic import atomic_write_bytes
    from cloud3d.imageio import write_png

    q = task["quality"]
    slug = task["codec_label"].replace(";", "_").replace("=", "-").replace("/", "-")
    base = Path(task["keep"]) / slug / f"{task['quality_param']}{quality_slug(q)}" / Path(task["relpath"]).with_suffix("")
    stream = base.with_name(base.name + codec.extension)
    recon = base.with_name(base.name + ".rec.png")
    atomic_write_bytes(stream, data)
    write_png(recon, rec)
    return {"bitstream": str(stream), "reconstruction": str(recon)}


def _compute(task: dict[str, Any], row: dict[str, Any]) -> None:
    from baselines import metrics
    from cloud3d.imageio import read_image_rgb
    from cloud3d.provenance import sha256_bytes

    blob = task.get("image_bytes")
    if blob is None:
        with open(task["abspath"], "rb") as f:
            blob = f.read()
    digest = sha256_bytes(blob)
    if digest != task["image_sha256"]:
        raise Cloud3dError(
            f"{task['relpath']} changed since the manifest was written (sha256 {digest[:12]} != "
            f"{task['image_sha256'][:12]}): re-run `cloud3d index`"
        )
    # decode the bytes already read (and hashed): one read per task, also on Dask workers
    rgb, note = read_image_rgb(blob, name=task["relpath"])
    h, w = rgb.shape[:2]
    row["width"], row["height"] = w, h
    codec = _codec_for(task)
    enc = codec.encode_timed(rgb, task["quality"])
    dec = codec.decode_timed(enc.data)
    rec = dec.rgb
    if rec.shape != rgb.shape:
        raise CodecError(f"decoder returned shape {rec.shape}, expected {rgb.shape}")
    m = metrics.mse(rgb, rec)
    msssim = metrics.ms_ssim_rgb(rgb, rec)
    details = {"encode": enc.details, "decode": dec.details,
               "image_source": "path" if task.get("image_bytes") is None else "sent bytes"}
    if note:
        details["input_note"] = note
    if task.get("keep"):
        details["kept"] = _keep_outputs(task, codec, enc.data, rec)
    row.update(
        bytes=len(enc.data),
        bpp=metrics.bpp(len(enc.data), w, h),
        psnr_rgb=metrics.psnr_from_mse(m),
        mse=m,
        ms_ssim=msssim,
        ms_ssim_db=metrics.ms_ssim_db(msssim),
        encode_s=enc.encode_s,
        decode_s=dec.decode_s,
        convert_enc_s=enc.convert_s,
        convert_dec_s=dec.convert_s,
        details=details,
        provenance={"version": codec.version(), **codec.provenance()},
        status="ok",
    )


def run_task(task: dict[str, Any]) -> dict[str, Any]:
    """Worker entry point: run one task and return a plain result row (never raises for task errors)."""
    row: dict[str, Any] = {
        k: task[k]
        for k in (
            "image_sha256", "codec", "codec_version", "params", "codec_label", "quality_param",
            "quality", "options", "dataset", "relpath", "app", "resolution", "split", "width", "height",
        )
    }
    row["host"] = socket.gethostname()
    row["started"] = utc_stamp(timespec="microseconds")
    timeout = task.get("timeout")
    use_alarm = bool(timeout) and hasattr(signal, "setitimer") and _in_main_thread()
    old = None
    try:
        if use_alarm:
            old = signal.signal(signal.SIGALRM, _alarm)
            signal.setitimer(signal.ITIMER_REAL, float(timeout))
        _compute(task, row)
    except TaskTimeout:
        row.update(status="failed", error=f"timeout: task exceeded {timeout:g} s")
    except Exception as exc:  # noqa: BLE001 - one task's failure must not stop the run
        row.update(status="failed", error=f"{type(exc).__name__}: {exc}")
    finally:
        if use_alarm:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, old)
    row["finished"] = utc_stamp(timespec="microseconds")
    return row


def _in_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _worker_init() -> None:  # pragma: no cover - runs in worker processes
    # Ctrl-C goes to the whole process group; the main process alone decides what to do.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # one pool process per core: keep torch (MS-SSIM) and OpenMP codecs single-threaded
    os.environ["OMP_NUM_THREADS"] = "1"
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)


# ----------------------------------------------------------------------------------------
# machine and versions
# ----------------------------------------------------------------------------------------
def software_versions(codec_versions: dict[str, str]) -> dict[str, Any]:
    """Python, the packages a bench result depends on, and each codec's version string."""
    pkgs = package_versions("cloud3d", "numpy", "pillow", "pillow-heif", "pytorch-msssim", "dask", "distributed")
    return {**pkgs, "codecs": codec_versions}


# ----------------------------------------------------------------------------------------
# the run
# ----------------------------------------------------------------------------------------
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


def _make_executor(workers: int | None, scheduler: str | None):
    """Return ``(executor, close)``: a concurrent.futures-style executor and its cleanup."""
    if scheduler:
        try:
            from distributed import Client
        except ImportError:  # pragma: no cover - dask is a dependency
            raise Cloud3dError("--scheduler needs dask[distributed]: pip install 'dask[distributed]'") from None
        try:
            client = Client(scheduler, timeout=30)
        except OSError as exc:
            raise Cloud3dError(f"cannot connect to Dask scheduler {scheduler}: {exc}") from None
        return client.get_executor(pure=False), client, "dask"
    n = workers or os.cpu_count() or 1
    return cf.ProcessPoolExecutor(max_workers=n, initializer=_worker_init), None, "local"


def _kill_pool(executor) -> None:
    """Stop a process pool now (used on Ctrl-C): running tasks are abandoned, not awaited."""
    executor.shutdown(wait=False, cancel_futures=True)
    procs = getattr(executor, "_processes", None) or {}
    for p in list(procs.values()):
        try:
            p.terminate()
        except Exception:  # noqa: BLE001
            pass
    for p in list(procs.values()):
        p.join(timeout=5)


def run_bench(
    dataset_dir: str | os.PathLike,
    specs: Sequence[str | CodecSpec],
    results: str | os.PathLike,
    split: str | None = "test",
    apps: Sequence[str] | None = None,
    resolutions: Sequence[str] | None = None,
    workers: int | None = None,
    scheduler: str | None = None,
    executor: cf.Executor | None = None,
    keep: str | os.PathLike | None = None,
    limit: int | None = None,
    timeout: float | None = None,
    retry_failed: bool = True,
    send_images: bool = False,
    progress: bool = True,
    command: str | None = None,
) -> BenchSummary:
    """Run every (image, codec, quality) task not yet finished in ``results``.

    ``dataset_dir`` must have a manifest; ``split``/``apps``/``resolutions``
    select images (``None`` = all); ``limit`` keeps the first N images per
    (app, resolution). ``specs`` are ``--codec`` strings or parsed
    :class:`CodecSpec`. Local runs use ``workers`` processes; ``scheduler``
    (``tcp://host:port``) uses a Dask cluster; ``executor`` passes any
    ready ``concurrent.futures``-style executor (the caller shuts it down).
    Finished ok rows are skipped; failed rows are retried unless
    ``retry_failed=False``. ``send_images`` ships image bytes with each task
    (for Dask workers without the shared path). Returns a :class:`BenchSummary`;
    on Ctrl-C the rows finished so far are kept and KeyboardInterrupt is re-raised
    after the summary is stored.
    """
    from tqdm import tqdm

    from cloud3d_dataset.manifest import image_paths

    specs = resolve_specs(specs)
    root = Path(dataset_dir).resolve()
    df = image_paths(root, split=split, app=list(apps) if apps else None,
                     resolution=list(resolutions) if resolutions else None)
    if limit:
        df = df.groupby(["app", "resolution"], sort=False).head(int(limit)).reset_index(drop=True)
    keep_dir = str(Path(keep).resolve()) if keep else None
    tasks = plan_tasks(df.to_dict("records"), specs, str(root), keep=keep_dir, timeout=timeout)

    summary = BenchSummary(total=len(tasks))
    with ResultsStore(results) as store:
        done = store.statuses()
        todo = []
        for t in tasks:
            st = done.get(task_key(t))
            if st == "ok" or (st is not None and not retry_failed):
                summary.skipped += 1
            else:
                todo.append(t)
        codec_versions: dict[str, str] = {}
        for t in tasks:
            codec_versions.setdefault(t["codec_label"], t["codec_version"])
        run_id = store.start_run(
            utc_stamp(timespec="microseconds"),
            command or " ".join(shlex.quote(a) for a in sys.argv),
            software_versions(codec_versions),
            machine_description(),
        )
        summary.run_id = run_id
        try:
            if todo:
                _execute(todo, store, summary, run_id, workers, scheduler, executor, timeout, progress, tqdm,
                         send_images)
        except KeyboardInterrupt:
            summary.interrupted = True
            store.finish_run(run_id, utc_stamp(timespec="microseconds"), summary.as_dict())
            raise
        store.finish_run(run_id, utc_stamp(timespec="microseconds"), summary.as_dict())
    return summary


def _execute(todo, store, summary, run_id, workers, scheduler, executor, timeout, progress, tqdm,
             send_images=False) -> None:
    own = executor is None
    client = None
    kind = "given"
    if own:
        executor, client, kind = _make_executor(min(workers or os.cpu_count() or 1, len(todo)), scheduler)
    bar = tqdm(total=len(todo), desc="bench", unit="task", disable=not progress, dynamic_ncols=True)
    pending: dict[cf.Future, dict] = {}
    submitted: dict[cf.Future, float] = {}
    running_since: dict[cf.Future, float] = {}
    # keep a bounded window in flight (two tasks per worker thread) so that a task starts at most
    # one task-duration after it is submitted, which bounds the watchdog below
    threads = workers or os.cpu_count() or 1
    if client is not None:
        threads = max(1, sum(client.nthreads().values()))
    n_slots = 2 * threads
    queue = list(reversed(todo))
    abandoned = 0  # tasks given up by the watchdog; their workers may still be busy
    try:
        while queue or pending:
            while queue and len(pending) < n_slots:
                t = queue.pop()
                if send_images:  # read at submission so only the tasks in flight hold image bytes
                    with open(t["abspath"], "rb") as f:
                        t = {**t, "image_bytes": f.read()}
                fut = executor.submit(run_task, t)
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
                    row = _failed_row(task, f"worker failed: {type(exc).__name__}: {exc}")
                _record(store, summary, row, run_id, bar)
            if timeout:
                for fut in list(pending):
                    if fut.running() and fut not in running_since:
                        running_since[fut] = now
                    if fut in running_since:  # process pools report when a task starts
                        waited, limit = now - running_since[fut], timeout + WATCHDOG_GRACE_S
                    else:  # Dask's executor does not: count from submission, one task may be ahead
                        waited, limit = now - submitted[fut], 2 * timeout + WATCHDOG_GRACE_S
                    if waited > limit:
                        task = pending.pop(fut)
                        running_since.pop(fut, None)
                        submitted.pop(fut, None)
                        fut.cancel()
                        abandoned += 1
                        row = _failed_row(task, f"timeout: no result after {waited:.0f} s (limit {timeout:g} s)")
                        _record(store, summary, row, run_id, bar)
    except KeyboardInterrupt:
        bar.close()
        for fut in pending:
            fut.cancel()
        if own:
            if kind == "local":
                _kill_pool(executor)
            else:
                executor.shutdown(wait=False)
                client.close()
        print(f"\ninterrupted: {summary.line()}; results so far are saved in {store.path}", file=sys.stderr)
        raise
    bar.close()
    if own:
        if abandoned and kind == "local":
            _kill_pool(executor)  # a worker stuck in C code would otherwise block shutdown
        else:
            executor.shutdown(wait=not abandoned)
        if client is not None:
            client.close()


def _failed_row(task: dict[str, Any], error: str) -> dict[str, Any]:
    row = {
        k: task[k]
        for k in (
            "image_sha256", "codec", "codec_version", "params", "codec_label", "quality_param",
            "quality", "options", "dataset", "relpath", "app", "resolution", "split", "width", "height",
        )
    }
    row.update(status="failed", error=error, host=None, started=None, finished=utc_stamp(timespec="microseconds"))
    return row


def _record(store: ResultsStore, summary: BenchSummary, row: dict[str, Any], run_id: int, bar) -> None:
    row["run_id"] = run_id
    store.put(row)
    if row["status"] == "ok":
        summary.ok += 1
    else:
        summary.failed += 1
        if str(row.get("error", "")).startswith("timeout"):
            summary.timeouts += 1
        summary.failures.append(f"{row['relpath']} {row['codec_label']} {row['quality_param']}={row['quality']}: "
                                f"{row['error']}")
    bar.update(1)
    bar.set_postfix(ok=summary.ok, failed=summary.failed, refresh=False)


def result_json(row: dict[str, Any]) -> str:
    """A result row as JSON text (for logs and debugging)."""
    return json.dumps(row, default=str, sort_keys=True)
