"""A bounded queue feeding a pool of PNG writer threads.

Each job is one kept frame: for every requested resolution a worker resizes
it (:func:`capture.resize.fit_frame`), encodes a lossless 8-bit RGB PNG
(fpng by default), writes it atomically and hashes it, then appends the
frame's row to ``frames.csv``. Threads rather than processes: the PNG
encoders, SHA-256 and file writes release the GIL for most of their work
(measured in ``benchmarks/capture_bench.py``), and threads avoid copying
multi-megabyte frames between processes.

The first write error (disk full, permission...) stops the pool: files of
the failing frame are removed, later jobs are discarded, and
:attr:`WriterPool.error` holds the exception for the recorder to report.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cloud3d_dataset.files import atomic_write_bytes, encode_png, sha256_bytes

from .framelog import FrameLog, frame_relpath
from .resize import fit_frame


@dataclass
class Job:
    """A kept frame waiting to be written: its index, pixels and partial ``frames.csv`` row."""

    index: int
    rgb: np.ndarray
    row: dict = field(default_factory=dict)


class WriterPool:
    """``workers`` threads consuming a queue of at most ``queue_size`` jobs."""

    def __init__(
        self,
        app_dir: Path,
        log: FrameLog,
        resolutions: tuple[str, ...],
        fit: str = "error",
        encoder: str = "fpng",
        level: int = 1,
        workers: int = 2,
        queue_size: int = 8,
    ) -> None:
        self.app_dir, self.log = Path(app_dir), log
        self.resolutions, self.fit, self.encoder, self.level = resolutions, fit, encoder, level
        self.queue: queue.Queue[Job | None] = queue.Queue(maxsize=max(1, queue_size))
        self.error: BaseException | None = None
        self.error_path: Path | None = None
        self._lock = threading.Lock()
        self.written = 0
        self.discarded = 0
        self.bytes = 0
        self.encode_s = 0.0
        self.resize_s = 0.0
        self.encodes = 0
        self.on_written = None  # optional callback(index) from a worker thread
        self._threads = [
            threading.Thread(target=self._run, name=f"png-writer-{i}", daemon=True)
            for i in range(max(1, workers))
        ]
        for t in self._threads:
            t.start()

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
            try:
                if job is None:
                    return
                if self.error is not None:
                    with self._lock:
                        self.discarded += 1
                    continue
                self._write(job)
            finally:
                self.queue.task_done()

    def _write(self, job: Job) -> None:
        done: list[Path] = []
        path = None
        try:
            row = dict(job.row)
            enc = rsz = 0.0
            nbytes = 0
            for res in self.resolutions:
                t0 = time.perf_counter()
                img = fit_frame(job.rgb, res, self.fit)
                t1 = time.perf_counter()
                data = encode_png(img, encoder=self.encoder, level=self.level)
                t2 = time.perf_counter()
                rsz, enc = rsz + (t1 - t0), enc + (t2 - t1)
                rel = frame_relpath(res, job.index)
                path = self.app_dir / rel
                atomic_write_bytes(path, data)
                done.append(path)
                row[f"file_{res}"] = rel
                row[f"sha256_{res}"] = sha256_bytes(data)
                nbytes += len(data)
            row["encode_ms"] = f"{enc * 1e3:.2f}"
            path = self.log.path
            self.log.append(row)
        except BaseException as exc:  # stop the pool; leave no file without a row
            for p in done:
                with contextlib.suppress(OSError):
                    p.unlink()
            with self._lock:
                if self.error is None:
                    self.error, self.error_path = exc, path
            return
        with self._lock:
            self.written += 1
            self.bytes += nbytes
            self.encode_s += enc
            self.resize_s += rsz
            self.encodes += len(self.resolutions)
        if self.on_written is not None:
            self.on_written(job.index)

    def close(self) -> None:
        """Finish every queued job, then stop the threads."""
        for _ in self._threads:
            self.queue.put(None)
        for t in self._threads:
            t.join()
