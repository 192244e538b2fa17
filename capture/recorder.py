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

from .filters import FilterConfig, FrameFilter
from .framelog import FrameLog
from .resize import check_fit, parse_resolutions
from .source import FrameSource, SourceExhausted
from .writer import KINDS, Job, make_pool

POLICIES = ("wait", "drop")


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
    resolutions=("native",),
    fps: float | None = None,
    count: int | None = None,
    duration: float | None = None,
    warmup: float = 0.0,
    fit: str = "error",
    filters: FilterConfig | None = None,
    writers: int = 2,
    queue_size: int = 8,
    policy: str = "wait",
    writer_kind: str = "process",
    encoder: str = "fpng",
    level: int = 1,
    progress: bool = True,
    stop=None,
    stall_timeout: float | None = None,
    scene: str | None = None,
) -> CaptureSummary:
    """Capture frames from ``source`` into ``out_dir/app`` and return a :class:`CaptureSummary`.

    Args:
        source: any :class:`capture.source.FrameSource` (not closed here).
        out_dir: output root; frames go to ``out_dir/app/{res}/{index:06d}.png``.
        app: application name (letters, digits, ``_ . + -``).
        resolutions: any of ``1080p``, ``720p``, ``native``.
        fps: target grabs per second (``None``: as fast as possible).
        count: stop after this many frames are kept (written).
        duration: stop after this many seconds of capture (after warm-up).
        warmup: seconds skipped before capturing (live sources wait; video and
            synthetic sources skip that much content).
        fit: ``error`` | ``scale`` | ``crop`` | ``pad`` for non-16:9 sources.
        filters: drop thresholds (default :class:`FilterConfig`).
        writers, queue_size: PNG writers and how many kept frames may wait for them.
        writer_kind: ``process`` (default; fpng holds the GIL, see capture.writer) or ``thread``.
        policy: ``wait`` or ``drop`` when the queue is full.
        encoder, level: PNG encoder (``fpng`` or ``zlib``) and zlib level.
        progress: show a tqdm bar on stderr.
        stop: optional ``threading.Event``; when set, the capture ends cleanly.
        stall_timeout: live sources only: end the capture when no frame has been kept for
            this many seconds (the app froze or shows one still image); the summary then
            has ``stalled=True``. ``None``: wait for as long as it takes.
        scene: what the source shows (a game's track or map); written to every row's
            ``scene`` column so that ``cloud3d split --group scene`` can keep scenes apart.

    Ctrl-C (KeyboardInterrupt) ends the capture cleanly too: queued frames are
    written, the summary has ``interrupted=True``. Write errors (disk full...)
    raise :class:`Cloud3dError` after the queue is drained; finished frames stay.
    """
    from tqdm import tqdm

    try:
        check_app_name(app)
    except ValueError as exc:
        raise Cloud3dError(str(exc)) from None
    resolutions = parse_resolutions(resolutions)
    if policy not in POLICIES:
        raise Cloud3dError(f"unknown queue policy {policy!r}: use wait or drop")
    if writer_kind not in KINDS:
        raise Cloud3dError(f"unknown writer kind {writer_kind!r}: use process or thread")
    if fps is not None and fps <= 0:
        raise Cloud3dError("--fps must be positive")
    if count is not None and count < 1:
        raise Cloud3dError("--count must be at least 1")
    if duration is not None and duration <= 0:
        raise Cloud3dError("--duration must be positive")
    if stall_timeout is not None and stall_timeout <= 0:
        raise Cloud3dError("--stall-timeout must be positive")
    if count is None and duration is None and source.kind != "video":
        raise Cloud3dError("say when to stop: give --count N or --duration SECONDS")
    check_fit(*(source.geometry.width, source.geometry.height) if source.geometry else (16, 9),
              resolutions, fit)

    app_dir = Path(out_dir) / app
    _check_writable(app_dir)
    log = FrameLog(app_dir)
    try:
        next_index, repairs = log.reconcile()
    except OSError as exc:
        raise Cloud3dError(describe_os_error(exc, log.path)) from None
    run = utc_now().strftime("%Y%m%dT%H%M%SZ")
    summary = CaptureSummary(
        app=app, app_dir=str(app_dir), source=source.kind, synthetic=source.synthetic,
        resolutions=list(resolutions), run=run, repairs=repairs,
        requested=count if count is not None else int(duration * fps) if duration and fps else 0,
        requested_s=float(duration) if count is None and duration else 0.0,
    )
    flt = FrameFilter(filters)
    dropped: Counter[str] = Counter()
    last_redraw = 0.0
    geo = source.geometry
    shape = (geo.height, geo.width, 3) if geo is not None else (1080, 1920, 3)
    try:
        pool = make_pool(writer_kind, app_dir, log, resolutions, fit=fit, encoder=encoder,
                         level=level, workers=writers, queue_size=queue_size, frame_shape=shape)
    except (RuntimeError, OSError) as exc:
        raise Cloud3dError(f"cannot start the PNG writers: {exc}") from None
    bar = tqdm(total=count, unit="frame", desc=f"capture {app}", disable=not progress,
               dynamic_ncols=True, leave=True)
    pool.on_written = lambda _i: bar.update(1)
    base_row = {"run": run, "source": source.kind, "synthetic": int(source.synthetic),
                "scene": scene or ""}
    grab_s = 0.0
    kept = 0
    index = next_index
    t_start = time.perf_counter()
    try:
        if warmup > 0:
            source.skip(warmup)
        t_start = time.perf_counter()
        next_tick = t_start
        last_kept = t_start
        watch_stall = stall_timeout is not None and source.realtime
        interval = 1.0 / fps if fps else 0.0
        while True:
            if stop is not None and stop.is_set():
                summary.stopped_because = "stop requested"
                break
            if pool.error is not None:
                break
            if count is not None and kept >= count:
                break
            now = time.perf_counter()
            if duration is not None and now - t_start >= duration:
                break
            if watch_stall and now - last_kept >= stall_timeout:
                summary.stalled = True
                summary.stopped_because = (f"stalled: no new frame kept for {stall_timeout:g} s "
                                           f"(the app froze or stopped drawing)")
                break
            if interval and source.realtime:
                if now < next_tick:
                    time.sleep(next_tick - now)
                elif now - next_tick > interval:
                    summary.late_grabs += 1
                    next_tick = now
                next_tick += interval
            when = utc_now()
            t0 = time.perf_counter()
            try:
                rgb = source.grab()
            except SourceExhausted:
                summary.stopped_because = "end of source"
                break
            grab_ms = (time.perf_counter() - t0) * 1e3
            grab_s += grab_ms / 1e3
            g = source.geometry
            row = dict(base_row, grab=summary.grabbed, capture_time=when.isoformat(timespec="microseconds"),
                       x=g.x, y=g.y, width=g.width, height=g.height, grab_ms=f"{grab_ms:.2f}")
            summary.grabbed += 1
            if (g.width, g.height) != (rgb.shape[1], rgb.shape[0]):
                row.update(width=rgb.shape[1], height=rgb.shape[0])
            check_fit(rgb.shape[1], rgb.shape[0], resolutions, fit)  # window may have been resized
            reason = flt.check(rgb)
            if reason is None:
                job = Job(index, rgb, dict(row, index=index, status="kept"))
                ok = pool.submit(job, block=False)
                if not ok and policy == "wait":
                    summary.backpressure_waits += 1
                    tw = time.perf_counter()
                    while not ok and pool.error is None:
                        ok = pool.submit(job, block=True, timeout=0.2)
                    summary.backpressure_wait_s += time.perf_counter() - tw
                if ok:
                    if summary.first_index is None:
                        summary.first_index = index
                    summary.last_index = index
                    index += 1
                    kept += 1
                    last_kept = time.perf_counter()
                elif pool.error is None:
                    reason = "writers_behind"
            if reason is not None:
                dropped[reason] += 1
                log.append(dict(row, status="dropped", reason=reason))
            if progress:
                # kept frames redraw the bar through update(); a run of drops (a stalled or
                # black window) redraws it here, twice a second, so the counts stay live
                redraw = reason is not None and t0 - last_redraw >= 0.5
                bar.set_postfix(dropped=sum(dropped.values()), queue=pool.pending(), refresh=redraw)
                last_redraw = t0 if redraw else last_redraw
    except KeyboardInterrupt:
        summary.interrupted = True
        summary.stopped_because = "interrupted (Ctrl-C): queued frames were written"
    except OSError as exc:
        raise Cloud3dError(describe_os_error(exc, log.path)) from None
    finally:
        with contextlib.suppress(KeyboardInterrupt):
            pool.close()
        bar.close()
        log.close()
    elapsed = time.perf_counter() - t_start
    summary.written = pool.written
    summary.dropped = dict(dropped)
    summary.elapsed_s = elapsed
    summary.achieved_fps = summary.grabbed / elapsed if elapsed > 0 else 0.0
    summary.written_fps = pool.written / elapsed if elapsed > 0 else 0.0
    summary.mean_grab_ms = grab_s / summary.grabbed * 1e3 if summary.grabbed else 0.0
    summary.mean_encode_ms = pool.encode_s / pool.encodes * 1e3 if pool.encodes else 0.0
    summary.mean_resize_ms = pool.resize_s / pool.encodes * 1e3 if pool.encodes else 0.0
    summary.bytes_written = pool.bytes
    if pool.written < kept:
        summary.last_index = summary.first_index + pool.written - 1 if pool.written else None
    if pool.error is not None:
        exc = pool.error
        msg = describe_os_error(exc, pool.error_path) if isinstance(exc, OSError) else str(exc)
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            msg = f"disk full while writing {pool.error_path}: free some space or choose another --out"
        raise Cloud3dError(
            f"{msg}; {pool.written} frames were written completely and are kept in {app_dir}"
        )
    _append_run(app_dir, summary, source, dict(
        fps=fps, count=count, duration=duration, warmup=warmup, fit=fit, policy=policy, scene=scene,
        writers=writers, writer_kind=writer_kind, queue_size=queue_size, encoder=encoder, level=level,
        filters=asdict(flt.config)))
    return summary


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
