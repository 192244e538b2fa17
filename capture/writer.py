"""Writer pools: a bounded queue of kept frames feeding PNG writers.

Each job is one kept frame: for every requested resolution a writer resizes
it (:func:`capture.resize.fit_frame`), encodes a lossless 8-bit RGB PNG
(fpng by default), writes it atomically and hashes it; then the parent
appends the frame's row to ``frames.csv`` (PNG first, row second).

Two kinds, chosen by measurement (``benchmarks/capture_bench.py``):

* ``process`` (default): worker processes. The fpng extension keeps the GIL
  while it encodes (its module imports no ``PyEval_SaveThread``), so encoder
  threads would stall the grabbing thread. Frames travel through a ring of
  shared-memory slots (one copy, no pickling); the number of slots is the
  queue bound. Workers ignore SIGINT (the parent drives a clean stop) and die
  with the parent (``PR_SET_PDEATHSIG``), so a killed capture leaves no
  orphans.
* ``thread``: writer threads in the same process (no start-up cost; fine for
  small frames or the zlib encoder, which releases the GIL).

The first write error (disk full, permission...) stops the pool: files of the
failing frame are removed, later jobs are discarded, and
:attr:`error` holds the exception for the recorder to report.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cloud3d.atomic import atomic_write_bytes
from cloud3d.imageio import encode_png
from cloud3d.provenance import sha256_bytes

from .framelog import FrameLog, frame_relpath
from .resize import fit_frame

KINDS = ("process", "thread")


@dataclass
class Job:
    """A kept frame waiting to be written: its index, pixels and partial ``frames.csv`` row."""

    index: int
    rgb: np.ndarray
    row: dict = field(default_factory=dict)


def write_frame(app_dir: Path, rgb: np.ndarray, index: int, resolutions, fit: str, encoder: str,
                level: int) -> tuple[dict, float, float, int]:
    """Write one frame at every resolution; return ``(row fields, encode s, resize s, bytes)``.

    On failure the files already written for this frame are removed and the
    exception propagates.
    """
    done: list[Path] = []
    fields: dict = {}
    enc = rsz = 0.0
    nbytes = 0
    try:
        for res in resolutions:
            t0 = time.perf_counter()
            img = fit_frame(rgb, res, fit)
            t1 = time.perf_counter()
            data = encode_png(img, encoder=encoder, level=level)
            t2 = time.perf_counter()
            rsz, enc = rsz + (t1 - t0), enc + (t2 - t1)
            rel = frame_relpath(res, index)
            atomic_write_bytes(app_dir / rel, data)
            done.append(app_dir / rel)
            fields[f"file_{res}"] = rel
            fields[f"sha256_{res}"] = sha256_bytes(data)
            nbytes += len(data)
    except BaseException:
        for p in done:
            with contextlib.suppress(OSError):
                p.unlink()
        raise
    fields["encode_ms"] = f"{enc * 1e3:.2f}"
    return fields, enc, rsz, nbytes


class _PoolBase:
    """Counters, error state and row logging shared by both pool kinds."""

    def __init__(self, app_dir: Path, log: FrameLog, resolutions, fit, encoder, level) -> None:
        self.app_dir, self.log = Path(app_dir), log
        self.resolutions, self.fit, self.encoder, self.level = tuple(resolutions), fit, encoder, level
        self.error: BaseException | None = None
        self.error_path: Path | None = None
        self._lock = threading.Lock()
        self.written = 0
        self.discarded = 0
        self.bytes = 0
        self.encode_s = 0.0
        self.resize_s = 0.0
        self.encodes = 0
        self.on_written = None  # optional callback(index), called from a pool thread
        self._closed = False

    def _fail(self, exc: BaseException, path) -> None:
        with self._lock:
            if self.error is None:
                self.error, self.error_path = exc, path

    def _finish(self, index: int, row: dict, fields: dict, enc: float, rsz: float, nbytes: int) -> None:
        """Append the row of a frame whose PNGs are on disk (removing them if that fails)."""
        try:
            self.log.append({**row, **fields})
        except BaseException as exc:
            for res in self.resolutions:
                with contextlib.suppress(OSError):
                    (self.app_dir / frame_relpath(res, index)).unlink()
            self._fail(exc, self.log.path)
            return
        with self._lock:
            self.written += 1
            self.bytes += nbytes
            self.encode_s += enc
            self.resize_s += rsz
            self.encodes += len(self.resolutions)
        if self.on_written is not None:
            self.on_written(index)


class ThreadWriterPool(_PoolBase):
    """``workers`` writer threads consuming a queue of at most ``queue_size`` jobs."""

    kind = "thread"

    def __init__(self, app_dir, log, resolutions, fit="error", encoder="fpng", level=1,
                 workers=2, queue_size=8) -> None:
        super().__init__(app_dir, log, resolutions, fit, encoder, level)
        self.queue: queue.Queue[Job | None] = queue.Queue(maxsize=max(1, queue_size))
        self._threads = [threading.Thread(target=self._run, name=f"png-writer-{i}", daemon=True)
                         for i in range(max(1, workers))]
        for t in self._threads:
            t.start()

    def pending(self) -> int:
        return self.queue.qsize()

    def submit(self, job: Job, block: bool, timeout: float | None = None) -> bool:
        """Queue ``job``; returns False if the queue stayed full (non-blocking or timed out)."""
        try:
            self.queue.put(job, block=block, timeout=timeout)
            return True
        except queue.Full:
            return False

    def _run(self) -> None:
        while True:
            job = self.queue.get()
            if job is None:
                return
            if self.error is not None:
                with self._lock:
                    self.discarded += 1
                continue
            try:
                fields, enc, rsz, nbytes = write_frame(self.app_dir, job.rgb, job.index,
                                                       self.resolutions, self.fit, self.encoder,
                                                       self.level)
            except BaseException as exc:
                self._fail(exc, getattr(exc, "filename", None) or self.app_dir)
                continue
            self._finish(job.index, job.row, fields, enc, rsz, nbytes)

    def close(self) -> None:
        """Finish every queued job, then stop the threads (idempotent)."""
        if self._closed:
            return
        self._closed = True
        for _ in self._threads:
            self.queue.put(None)
        for t in self._threads:
            t.join()


class ProcessWriterPool(_PoolBase):
    """``workers`` writer processes fed through ``queue_size`` shared-memory frame slots.

    Slots are sized for ``frame_shape`` (the expected frame); a larger frame
    (a window that grew) gets a one-off shared-memory block. Each worker is a
    fresh interpreter (``python -m capture.writer_worker``) in its own session,
    so a Ctrl-C in the terminal reaches only the recorder, which then drains
    the queue.
    """

    kind = "process"

    def __init__(self, app_dir, log, resolutions, fit="error", encoder="fpng", level=1,
                 workers=2, queue_size=8, frame_shape=(1080, 1920, 3)) -> None:
        import json
        import subprocess
        import sys
        from multiprocessing import shared_memory

        super().__init__(app_dir, log, resolutions, fit, encoder, level)
        self.slot_bytes = max(1, int(np.prod(frame_shape)))
        self._shms = [shared_memory.SharedMemory(create=True, size=self.slot_bytes)
                      for _ in range(max(1, queue_size))]
        self._free: queue.Queue[int] = queue.Queue()
        for i in range(len(self._shms)):
            self._free.put(i)
        self._pending: dict[int, tuple[dict, int | None, object]] = {}  # index -> (row, slot, once)
        self._busy = [0] * max(1, workers)
        cfg = json.dumps({"app_dir": str(self.app_dir), "resolutions": list(self.resolutions),
                          "fit": fit, "encoder": encoder, "level": level})
        root = str(Path(__file__).resolve().parent.parent)
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            [root, *filter(None, [os.environ.get("PYTHONPATH")])]))
        self._procs = []
        try:
            for _ in range(max(1, workers)):
                p = subprocess.Popen([sys.executable, "-m", "capture.writer_worker"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env,
                                     text=True, bufsize=1, start_new_session=True)
                p.stdin.write(cfg + "\n")
                p.stdin.flush()
                self._procs.append(p)
            for p in self._procs:  # wait until each has loaded numpy/Pillow/fpng
                if "ready" not in p.stdout.readline():
                    raise RuntimeError(f"PNG writer process {p.pid} failed to start "
                                       f"(status {p.wait()}); see the messages above")
        except BaseException:
            self._abort()
            raise
        self._readers = [threading.Thread(target=self._read, args=(i,), daemon=True,
                                          name=f"png-writer-{i}") for i in range(len(self._procs))]
        for t in self._readers:
            t.start()

    def pending(self) -> int:
        return len(self._pending)

    def submit(self, job: Job, block: bool, timeout: float | None = None) -> bool:
        """Copy ``job`` into a free slot and send it to the least busy worker; False if no slot
        freed up in time."""
        import json
        from multiprocessing import shared_memory

        try:
            slot = self._free.get(block=block, timeout=timeout)
        except queue.Empty:
            return False
        rgb = np.ascontiguousarray(job.rgb)
        once = None
        if rgb.nbytes <= self.slot_bytes:
            shm = self._shms[slot]
        else:  # frame grew: a one-off block, freed when its result arrives
            once = shm = shared_memory.SharedMemory(create=True, size=rgb.nbytes)
        np.ndarray(rgb.shape, np.uint8, buffer=shm.buf)[...] = rgb
        with self._lock:
            w = min(range(len(self._procs)), key=lambda i: self._busy[i])
            self._busy[w] += 1
            self._pending[job.index] = (job.row, slot, once)
        msg = {"shm": shm.name, "shape": list(rgb.shape), "index": job.index, "once": once is not None}
        try:
            self._procs[w].stdin.write(json.dumps(msg) + "\n")
            self._procs[w].stdin.flush()
        except (BrokenPipeError, OSError):
            self._fail(RuntimeError(f"PNG writer process {self._procs[w].pid} is gone"), self.app_dir)
        return True

    def _read(self, w: int) -> None:
        import json

        proc = self._procs[w]
        for line in proc.stdout:
            res = json.loads(line)
            index = res["index"]
            with self._lock:
                row, slot, once = self._pending.pop(index)
                self._busy[w] -= 1
            if once is not None:
                once.close()
                with contextlib.suppress(FileNotFoundError):
                    once.unlink()
            self._free.put(slot)
            err = res["err"]
            if err == "discarded":
                with self._lock:
                    self.discarded += 1
            elif err is not None:
                code, msg, fname, tname = err
                exc = OSError(code, msg, fname) if code is not None else RuntimeError(f"{tname}: {msg}")
                self._fail(exc, fname)
            else:
                self._finish(index, row, res["fields"], res["enc"], res["rsz"], res["nbytes"])
        if self._busy[w]:
            self._fail(RuntimeError(f"PNG writer process {proc.pid} exited unexpectedly "
                                    f"(status {proc.wait()})"), self.app_dir)

    def close(self) -> None:
        """Write every queued frame, stop the workers and free the shared memory (idempotent)."""
        if self._closed:
            return
        self._closed = True
        for p in self._procs:
            with contextlib.suppress(OSError):
                p.stdin.close()
        for t in self._readers:
            t.join()
        self._abort()

    def _abort(self) -> None:
        import subprocess

        for p in self._procs:
            with contextlib.suppress(OSError):
                p.stdin.close()
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
            if p.stdout:
                p.stdout.close()
        for s in self._shms:
            s.close()
            with contextlib.suppress(FileNotFoundError):
                s.unlink()


def make_pool(kind: str, app_dir, log, resolutions, fit="error", encoder="fpng", level=1,
              workers=2, queue_size=8, frame_shape=(1080, 1920, 3)):
    """Create a writer pool of ``kind`` (``process`` or ``thread``)."""
    if kind == "thread":
        return ThreadWriterPool(app_dir, log, resolutions, fit, encoder, level, workers, queue_size)
    if kind == "process":
        return ProcessWriterPool(app_dir, log, resolutions, fit, encoder, level, workers, queue_size,
                                 frame_shape)
    raise ValueError(f"unknown writer kind {kind!r}: use process or thread")


# Backwards-compatible name: the thread pool.
WriterPool = ThreadWriterPool
