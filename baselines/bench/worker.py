"""The worker side of a bench: run one :class:`~baselines.bench.tasks.Task`, return a plain result row.

:func:`run_task` reads the image (from the shared path, or from the bytes sent
along), checks its sha256 against the manifest's, encodes, decodes, computes the
metrics (bpp, MSE, PSNR, MS-SSIM) and returns a dict of
:data:`baselines.bench.store.RESULT_COLUMNS`. A task's own failure (codec error, corrupt
image, wrong decoded size, time limit) becomes a ``failed`` row; it never raises.
Nothing pickled is ever stored: only the main process writes the store, from these
plain dicts.

Time limit: in a process-pool worker the task runs in the worker's main thread and
``SIGALRM`` interrupts it after ``task.timeout`` seconds (Python code stops at once;
C code such as a Pillow encoder stops when it hands control back to Python). On Dask
workers (threads, no signals) the main process's watchdog
(:mod:`baselines.bench.executor`) takes over.

Pool workers start with :func:`worker_init`: they ignore Ctrl-C (the main process
decides), keep torch and OpenMP to one thread, and die with the main process
(:func:`die_with_parent`), so a ``kill -9`` of ``cloud3d bench`` leaves no worker behind.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from baselines.bench.store import canonical_json
from baselines.bench.tasks import Task, label_slug, quality_slug
from baselines.codecs.base import Codec, CodecError
from cloud3d.errors import Cloud3dError
from cloud3d.lifetime import PR_SET_PDEATHSIG, die_with_parent  # noqa: F401 - tests import them here
from cloud3d.provenance import utc_stamp


class TaskTimeout(Exception):
    """Raised inside a worker by SIGALRM when a task exceeds its time limit."""


def _alarm(signum, frame):  # pragma: no cover - runs in worker processes
    raise TaskTimeout()


_CODEC_CACHE: dict[tuple[type, str], Codec] = {}


def _codec_for(task: Task) -> Codec:
    """One codec instance per (class, options) and process: models and binaries load once."""
    key = (task.codec_cls, canonical_json(task.options))
    codec = _CODEC_CACHE.get(key)
    if codec is None:
        codec = task.codec_cls(**task.options)
        _CODEC_CACHE[key] = codec
    return codec


def _keep_outputs(task: Task, codec: Codec, data: bytes, rec: np.ndarray) -> dict[str, str]:
    """Write the bitstream and reconstruction under ``task.keep``; returns both paths."""
    from cloud3d.atomic import atomic_write_bytes
    from cloud3d.imageio import write_png

    folder = Path(task.keep) / label_slug(task.codec_label) / f"{task.quality_param}{quality_slug(task.quality)}"
    base = folder / Path(task.relpath).with_suffix("")  # test/app-720p/3.png -> .../test/app-720p/3
    stream = base.with_name(base.name + codec.extension)
    recon = base.with_name(base.name + ".rec.png")
    atomic_write_bytes(stream, data)
    write_png(recon, rec)
    return {"bitstream": str(stream), "reconstruction": str(recon)}


def load_image(task: Task) -> tuple[np.ndarray, str | None]:
    """The task's image as ``(H, W, 3) uint8`` RGB and its conversion note, after checking its sha256.

    Reads the file once (or takes the bytes sent along) and decodes those same bytes.
    """
    from cloud3d.imageio import read_image_rgb
    from cloud3d.provenance import sha256_bytes

    blob = task.image_bytes
    if blob is None:
        with open(task.abspath, "rb") as f:
            blob = f.read()
    digest = sha256_bytes(blob)
    if digest != task.image_sha256:
        raise Cloud3dError(
            f"{task.relpath} changed since the manifest was written (sha256 {digest[:12]} != "
            f"{task.image_sha256[:12]}): re-run `cloud3d index`"
        )
    return read_image_rgb(blob, name=task.relpath)


def measure(task: Task, rgb: np.ndarray, row: dict[str, Any], note: str | None = None) -> None:
    """Encode and decode ``rgb`` with the task's codec and fill ``row`` with the measures.

    ``rgb`` is ``(H, W, 3) uint8``; ``row`` gets width/height, bytes, bpp, MSE, PSNR,
    MS-SSIM, the codec's times, details, provenance and ``status="ok"``. Raises on
    any failure (the caller records it).
    """
    from baselines import metrics

    h, w = rgb.shape[:2]
    row["width"], row["height"] = w, h
    codec = _codec_for(task)
    enc = codec.encode_timed(rgb, task.quality)
    dec = codec.decode_timed(enc.data)
    rec = dec.rgb
    if rec.shape != rgb.shape:
        raise CodecError(f"decoder returned shape {rec.shape}, expected {rgb.shape}")
    m = metrics.mse(rgb, rec)
    msssim = metrics.ms_ssim_rgb(rgb, rec)
    details: dict[str, Any] = {"encode": enc.details, "decode": dec.details,
                               "image_source": "path" if task.image_bytes is None else "sent bytes"}
    if note:
        details["input_note"] = note
    if task.keep:
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


def run_limited(work: Callable[[], None], row: dict[str, Any], timeout: float | None) -> None:
    """Run ``work()``; its failure, or overrunning ``timeout`` seconds, becomes ``status="failed"`` in ``row``.

    The limit is a ``SIGALRM`` timer when this is a process's main thread (pool
    workers); elsewhere (Dask worker threads) it is left to the main process's watchdog.
    """
    use_alarm = bool(timeout) and hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
    old = None
    try:
        if use_alarm:
            old = signal.signal(signal.SIGALRM, _alarm)
            signal.setitimer(signal.ITIMER_REAL, float(timeout))
        work()
    except TaskTimeout:
        row.update(status="failed", error=f"timeout: task exceeded {timeout:g} s")
    except Exception as exc:  # noqa: BLE001 - one task's failure must not stop the run
        row.update(status="failed", error=f"{type(exc).__name__}: {exc}")
    finally:
        if use_alarm:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, old)


def run_task(task: Task) -> dict[str, Any]:
    """Worker entry point: run one task and return a plain result row (never raises for task errors)."""
    row = task.record()
    row["host"] = socket.gethostname()
    row["started"] = utc_stamp(timespec="microseconds")

    def work() -> None:
        rgb, note = load_image(task)
        measure(task, rgb, row, note)

    run_limited(work, row, task.timeout)
    row["finished"] = utc_stamp(timespec="microseconds")
    return row


def failed_row(task: Task, error: str) -> dict[str, Any]:
    """The result row of a task that produced none (its worker died, or the watchdog gave up)."""
    row = task.record()
    row.update(status="failed", error=error, host=None, started=None, finished=utc_stamp(timespec="microseconds"))
    return row


def with_image_bytes(task: Task) -> Task:
    """``task`` carrying its image file's bytes (``--send-images``: workers need no shared path)."""
    with open(task.abspath, "rb") as f:
        return replace(task, image_bytes=f.read())


# ----------------------------------------------------------------------------------------
# pool worker start-up
# ----------------------------------------------------------------------------------------
def worker_init() -> None:  # pragma: no cover - runs in worker processes
    """Initializer of local pool workers (:func:`cloud3d.lifetime.process_pool` has already
    tied each to the main process)."""
    # Ctrl-C goes to the whole process group; the main process alone decides what to do.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # one pool process per core: keep torch (MS-SSIM) and OpenMP codecs single-threaded
    os.environ["OMP_NUM_THREADS"] = "1"
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)


