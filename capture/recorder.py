"""The recorder: pace grabs, filter frames, hand kept frames to the writer pool, summarise.

:func:`record` is the public entry point used by the CLI and by other stages
(e.g. the demo). Output layout for an app name ``APP``::

    OUT/APP/frames.csv          per-frame log (see capture.framelog)
    OUT/APP/runs.jsonl          one JSON line per run: settings, source, tools, summary
    OUT/APP/{res}/{index:06d}.png   8-bit RGB lossless PNG per kept frame and resolution

Grabbing never waits for encoding: kept frames go to a bounded queue. When
the queue is full the ``policy`` decides: ``wait`` blocks the grabber (each
wait is counted and timed, and reported) or ``drop`` drops the frame with
reason ``writers_behind`` (counted, logged in frames.csv). Nothing is
dropped silently.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from cloud3d.errors import Cloud3dError, describe_os_error
from cloud3d.names import check_app_name
from cloud3d.provenance import package_versions, utc_now

from .filters import FrameFilter
from .framelog import FrameLog
from .options import RecordOptions
from .resize import check_fit, parse_resolutions
from .source import FrameSource, SourceExhausted
from .writer import Job, make_pool


@dataclass
class CaptureSummary:
    """What a capture run did. Times in seconds unless the name says ``_ms``.

    ``requested`` is ``count`` if given, else ``duration * fps`` (0 if neither
    bounds the run); ``requested_s`` is ``duration`` when it, not a count, bounds the run (a
    run of 1 s at 30 fps grabs at 0, 1/30, ..., 1 s: 31 frames). ``achieved_fps`` is grabs per second of capture time
    (after warm-up); ``written_fps`` counts kept frames written.
    """

    app: str
    app_dir: str
    source: str
    synthetic: bool
    resolutions: list[str]
    run: str
    requested: int = 0
    requested_s: float = 0.0
    grabbed: int = 0
    written: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    first_index: int | None = None
    last_index: int | None = None
    backpressure_waits: int = 0
    backpressure_wait_s: float = 0.0
    late_grabs: int = 0
    elapsed_s: float = 0.0
    achieved_fps: float = 0.0
    written_fps: float = 0.0
    mean_grab_ms: float = 0.0
    mean_encode_ms: float = 0.0
    mean_resize_ms: float = 0.0
    bytes_written: int = 0
    repairs: dict[str, int] = field(default_factory=dict)
    interrupted: bool = False
    stalled: bool = False
    stopped_because: str = ""

    def to_dict(self) -> dict:
        return asdict(self)

    def to_text(self) -> str:
        """Human-readable multi-line summary."""
        drops = ", ".join(f"{k}={v}" for k, v in sorted(self.dropped.items())) or "none"
        label = " [SYNTHETIC]" if self.synthetic else ""
        lines = [
            f"capture {self.app}{label} -> {self.app_dir}  ({self.source}, {', '.join(self.resolutions)})",
            f"  requested {f'{self.requested_s:g} s' if self.requested_s else self.requested or '-'}, "
            f"grabbed {self.grabbed}, written {self.written}"
            f" (frames {self.first_index}..{self.last_index}), dropped: {drops}",
            f"  {self.elapsed_s:.1f} s: {self.achieved_fps:.1f} grabs/s, {self.written_fps:.1f} written/s;"
            f" mean grab {self.mean_grab_ms:.1f} ms, encode {self.mean_encode_ms:.1f} ms"
            f" + resize {self.mean_resize_ms:.1f} ms per PNG; {self.bytes_written / 1e6:.1f} MB",
        ]
        if self.backpressure_waits:
            lines.append(
                f"  writers fell behind: the grabber waited {self.backpressure_waits} times "
                f"({self.backpressure_wait_s:.1f} s); add --writers or lower --fps"
            )
        if self.late_grabs:
            lines.append(f"  {self.late_grabs} grabs started late (source slower than --fps)")
        fixed = {k: v for k, v in self.repairs.items() if v}
        if fixed:
            lines.append(f"  repaired the folder from an earlier interrupted run: {fixed}")
        if self.stopped_because:
            lines.append(f"  stopped: {self.stopped_because}")
        return "\n".join(lines)


def _check_writable(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-test-{os.getpid()}"
        with open(probe, "wb") as f:
            f.write(b"x")
            f.flush()
            os.fsync(f.fileno())
        probe.unlink()
    except OSError as exc:
        raise Cloud3dError(f"output folder not usable: {describe_os_error(exc, folder)}") from None


def record(
    source: FrameSource,
    out_dir: str | os.PathLike,
    app: str,
    options: RecordOptions | None = None,
    *,
    stop=None,
) -> CaptureSummary:
    """Capture frames from ``source`` into ``out_dir/app`` and return a :class:`CaptureSummary`.

    Args:
        source: any :class:`capture.source.FrameSource` (not closed here).
        out_dir: output root; frames go to ``out_dir/app/{res}/{index:06d}.png``.
        app: application name (letters, digits, ``_ . + -``).
        options: what to capture and how (:class:`capture.options.RecordOptions`; its
            defaults when ``None``). Give ``count`` or ``duration`` unless the source is a video.
        stop: optional ``threading.Event``; when set, the capture ends cleanly.

    Ctrl-C (KeyboardInterrupt) ends the capture cleanly too: queued frames are
    written, the summary has ``interrupted=True``. Write errors (disk full...)
    raise :class:`Cloud3dError` after the queue is drained; finished frames stay.
    """
    opts = options if options is not None else RecordOptions()
    resolutions = _check(source, app, opts)
    app_dir = Path(out_dir) / app
    _check_writable(app_dir)
    log = FrameLog(app_dir)
    try:
        next_index, repairs = log.reconcile()
    except OSError as exc:
        raise Cloud3dError(describe_os_error(exc, log.path)) from None
    requested, requested_s = opts.requested()
    summary = CaptureSummary(
        app=app, app_dir=str(app_dir), source=source.kind, synthetic=source.synthetic,
        resolutions=list(resolutions), run=utc_now().strftime("%Y%m%dT%H%M%SZ"), repairs=repairs,
        requested=requested, requested_s=requested_s,
    )
    rec = _Recording(source, opts, resolutions, summary, log, next_index, stop)
    rec.run()
    _raise_write_error(rec.pool, app_dir)
    _append_run(app_dir, summary, source, opts.settings(rec.flt.config))
    return summary


def _check(source: FrameSource, app: str, opts: RecordOptions) -> tuple[str, ...]:
    """Refuse a bad app name or setting before anything is written; returns the resolutions."""
    try:
        check_app_name(app)
    except ValueError as exc:
        raise Cloud3dError(str(exc)) from None
    resolutions = parse_resolutions(opts.resolutions)
    opts.check(source.kind)
    check_fit(*(source.geometry.width, source.geometry.height) if source.geometry else (16, 9),
              resolutions, opts.fit)
    return resolutions


class _Recording:
    """One run's moving parts (writer pool, filter, log, progress bar) and its grab loop.

    :meth:`run` paces grabs, filters frames, hands kept ones to the pool and fills the
    summary; the pool, bar and log are closed whatever happens.
    """

    def __init__(self, source: FrameSource, opts: RecordOptions, resolutions: tuple[str, ...],
                 summary: CaptureSummary, log: FrameLog, next_index: int, stop) -> None:
        from tqdm import tqdm

        self.source, self.opts, self.resolutions = source, opts, resolutions
        self.summary, self.log, self.stop = summary, log, stop
        self.flt = FrameFilter(opts.filters)
        self.dropped: Counter[str] = Counter()
        self.last_redraw = 0.0
        geo = source.geometry
        shape = (geo.height, geo.width, 3) if geo is not None else (1080, 1920, 3)
        app_dir = Path(summary.app_dir)
        try:
            self.pool = make_pool(opts.writer_kind, app_dir, log, resolutions, fit=opts.fit,
                                  encoder=opts.encoder, level=opts.level, workers=opts.writers,
                                  queue_size=opts.queue_size, frame_shape=shape)
        except (RuntimeError, OSError) as exc:
            raise Cloud3dError(f"cannot start the PNG writers: {exc}") from None
        self.bar = tqdm(total=opts.count, unit="frame", desc=f"capture {summary.app}",
                        disable=not opts.progress, dynamic_ncols=True, leave=True)
        self.pool.on_written = lambda _i: self.bar.update(1)
        self.base_row = {"run": summary.run, "source": source.kind,
                         "synthetic": int(source.synthetic), "scene": opts.scene or ""}
        self.grab_s = 0.0
        self.kept = 0
        self.index = next_index

    def run(self) -> None:
        """Warm up, loop until a stop condition, then close everything and fill the summary."""
        summary, pool = self.summary, self.pool
        t_start = time.perf_counter()
        try:
            if self.opts.warmup > 0:
                self.source.skip(self.opts.warmup)
            t_start = time.perf_counter()
            self._loop(t_start)
        except KeyboardInterrupt:
            summary.interrupted = True
            summary.stopped_because = "interrupted (Ctrl-C): queued frames were written"
        except OSError as exc:
            raise Cloud3dError(describe_os_error(exc, self.log.path)) from None
        finally:
            with contextlib.suppress(KeyboardInterrupt):
                pool.close()
            self.bar.close()
            self.log.close()
        self._summarise(time.perf_counter() - t_start)

    def _loop(self, t_start: float) -> None:
        opts, summary = self.opts, self.summary
        next_tick = t_start
        self.last_kept = t_start
        interval = 1.0 / opts.fps if opts.fps else 0.0
        while not self._should_stop(t_start):
            if interval and self.source.realtime:
                next_tick = self._pace(next_tick, interval)
            when = utc_now()
            t0 = time.perf_counter()
            try:
                rgb = self.source.grab()
            except SourceExhausted:
                summary.stopped_because = "end of source"
                break
            self._handle(rgb, when, t0)

    def _should_stop(self, t_start: float) -> bool:
        opts, summary = self.opts, self.summary
        if self.stop is not None and self.stop.is_set():
            summary.stopped_because = "stop requested"
            return True
        if self.pool.error is not None:
            return True
        if opts.count is not None and self.kept >= opts.count:
            return True
        now = time.perf_counter()
        if opts.duration is not None and now - t_start >= opts.duration:
            return True
        watch_stall = opts.stall_timeout is not None and self.source.realtime
        if watch_stall and now - self.last_kept >= opts.stall_timeout:
            summary.stalled = True
            summary.stopped_because = (f"stalled: no new frame kept for {opts.stall_timeout:g} s "
                                       f"(the app froze or stopped drawing)")
            return True
        return False

    def _pace(self, next_tick: float, interval: float) -> float:
        """Sleep until the next tick of a live source; a grab already late restarts the clock."""
        now = time.perf_counter()
        if now < next_tick:
            time.sleep(next_tick - now)
        elif now - next_tick > interval:
            self.summary.late_grabs += 1
            next_tick = now
        return next_tick + interval

    def _handle(self, rgb, when, t0: float) -> None:
        """Log one grabbed frame: keep it (queued for the writers) or drop it with a reason."""
        summary, g = self.summary, self.source.geometry
        grab_ms = (time.perf_counter() - t0) * 1e3
        self.grab_s += grab_ms / 1e3
        row = dict(self.base_row, grab=summary.grabbed, capture_time=when.isoformat(timespec="microseconds"),
                   x=g.x, y=g.y, width=g.width, height=g.height, grab_ms=f"{grab_ms:.2f}")
        summary.grabbed += 1
        if (g.width, g.height) != (rgb.shape[1], rgb.shape[0]):
            row.update(width=rgb.shape[1], height=rgb.shape[0])
        check_fit(rgb.shape[1], rgb.shape[0], self.resolutions, self.opts.fit)  # window may have been resized
        reason = self.flt.check(rgb)
        if reason is None and not self._submit(Job(self.index, rgb, dict(row, index=self.index, status="kept"))):
            reason = "writers_behind" if self.pool.error is None else None
        if reason is not None:
            self.dropped[reason] += 1
            self.log.append(dict(row, status="dropped", reason=reason))
        if self.opts.progress:
            # kept frames redraw the bar through update(); a run of drops (a stalled or
            # black window) redraws it here, twice a second, so the counts stay live
            redraw = reason is not None and t0 - self.last_redraw >= 0.5
            self.bar.set_postfix(dropped=sum(self.dropped.values()), queue=self.pool.pending(), refresh=redraw)
            self.last_redraw = t0 if redraw else self.last_redraw

    def _submit(self, job: Job) -> bool:
        """Queue a kept frame; under the ``wait`` policy block (counted, timed) until it fits."""
        pool, summary = self.pool, self.summary
        ok = pool.submit(job, block=False)
        if not ok and self.opts.policy == "wait":
            summary.backpressure_waits += 1
            tw = time.perf_counter()
            while not ok and pool.error is None:
                ok = pool.submit(job, block=True, timeout=0.2)
            summary.backpressure_wait_s += time.perf_counter() - tw
        if ok:
            if summary.first_index is None:
                summary.first_index = self.index
            summary.last_index = self.index
            self.index += 1
            self.kept += 1
            self.last_kept = time.perf_counter()
        return ok

    def _summarise(self, elapsed: float) -> None:
        summary, pool = self.summary, self.pool
        summary.written = pool.written
        summary.dropped = dict(self.dropped)
        summary.elapsed_s = elapsed
        summary.achieved_fps = summary.grabbed / elapsed if elapsed > 0 else 0.0
        summary.written_fps = pool.written / elapsed if elapsed > 0 else 0.0
        summary.mean_grab_ms = self.grab_s / summary.grabbed * 1e3 if summary.grabbed else 0.0
        summary.mean_encode_ms = pool.encode_s / pool.encodes * 1e3 if pool.encodes else 0.0
        summary.mean_resize_ms = pool.resize_s / pool.encodes * 1e3 if pool.encodes else 0.0
        summary.bytes_written = pool.bytes
        if pool.written < self.kept:
            summary.last_index = summary.first_index + pool.written - 1 if pool.written else None


def _raise_write_error(pool, app_dir: Path) -> None:
    """A writer failed (disk full...): one message, and the frames finished so far stay."""
    if pool.error is None:
        return
    exc = pool.error
    msg = describe_os_error(exc, pool.error_path) if isinstance(exc, OSError) else str(exc)
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        msg = f"disk full while writing {pool.error_path}: free some space or choose another --out"
    raise Cloud3dError(
        f"{msg}; {pool.written} frames were written completely and are kept in {app_dir}"
    )


def _append_run(app_dir: Path, summary: CaptureSummary, source: FrameSource, settings: dict) -> None:
    """Append one JSON line describing this run (settings, source, tool versions, summary)."""
    tools = package_versions("numpy", "pillow", "fpng", "mss")
    line = json.dumps({"settings": settings, "source": source.describe(), "tools": tools,
                       "summary": summary.to_dict()}, default=str)
    try:
        with open(app_dir / "runs.jsonl", "a", encoding="utf-8") as f:
            f.write(line + "\n")
            f.flush()
            os.fsync(f.fileno())
    except OSError as exc:
        raise Cloud3dError(describe_os_error(exc, app_dir / "runs.jsonl")) from None
