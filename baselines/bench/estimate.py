"""What a bench will cost, said before it starts: CPU seconds per curve, and where the figure comes from.

A VTM study of 100 frames x 6 QPs x 2 resolutions costs about 60 CPU hours; a JPEG
sweep a few minutes. ``cloud3d bench`` prints this plan first so the user can pick
``--workers`` or a Dask cluster. Per curve label, the seconds per task come from,
best first:

1. **stored timings** of earlier ``ok`` rows with the same label in the same store.
   A task's time is its worker's wall time (``finished - started``: read the PNG,
   encode, decode, metrics; workers run one thread each, so it is CPU time). The
   median is taken per (label, resolution, quality), else per (label, resolution);
   a resolution not measured yet uses the label's median seconds per pixel times the
   task's pixels.
2. **a calibration** in the bench's own workers, for labels with no stored rows
   (:func:`calibrate`): after a 64x64 warm-up (imports, model loading, first
   process start), the whole task path is timed on centre crops of 128x128 and
   256x256 pixels of the first image to do, at the label's middle quality, and
   ``seconds = fixed + per_pixel x pixels`` is fitted through the two points and
   extrapolated to each task. It costs three small encodes (a fraction of one frame's
   time for VTM, milliseconds for JPEG) and is rough (a crop is not the frame), so the
   printout says so.

The estimate is work on one core; the wall time divides it by the worker threads.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import pandas as pd

from baselines.bench.tasks import Task
from baselines.bench.worker import load_image, measure, run_limited

#: side of the warm-up crop and of the two timed centre crops (pixels)
WARMUP_SIDE = 64
CALIBRATION_SIDES = (128, 256)
#: tasks estimated at this many seconds or more are "slow": their curve gets its own line
SLOW_TASK_S = 1.0


@dataclass
class CostEstimate:
    """Estimated CPU time of one curve label's tasks to do.

    ``seconds`` is the total over ``tasks`` (``None`` when no figure could be had);
    ``source`` says where it comes from, in words.
    """

    label: str
    tasks: int
    seconds: float | None
    source: str

    @property
    def per_task(self) -> float | None:
        """Mean estimated seconds per task."""
        return None if self.seconds is None or not self.tasks else self.seconds / self.tasks


def _count(n: int, word: str) -> str:
    """``1 task``, ``3 tasks``."""
    return f"{n} {word}{'' if n == 1 else 's'}"


def _quality_key(q: Any) -> Any:
    try:
        return float(q)
    except (TypeError, ValueError):
        return str(q)


def task_seconds(stored: pd.DataFrame) -> pd.DataFrame:
    """Stored ``ok`` rows with their task time: adds ``seconds`` (finished - started) and ``pixels``.

    ``stored`` needs ``codec_label, resolution, quality, width, height, started, finished``;
    rows without both timestamps (or with a non-positive time) are dropped.
    """
    cols = ["codec_label", "resolution", "quality", "width", "height", "seconds", "pixels"]
    if stored.empty:
        return pd.DataFrame(columns=cols)
    df = stored.copy()
    started = pd.to_datetime(df["started"], utc=True, errors="coerce", format="ISO8601")
    finished = pd.to_datetime(df["finished"], utc=True, errors="coerce", format="ISO8601")
    df["seconds"] = (finished - started).dt.total_seconds()
    df["pixels"] = df["width"].astype(float) * df["height"].astype(float)
    df["quality"] = [_quality_key(q) for q in df["quality"]]
    df = df[(df["seconds"] > 0) & (df["pixels"] > 0)]
    return df[cols]


def stored_estimate(label: str, tasks: Sequence[Task], timed: pd.DataFrame) -> CostEstimate | None:
    """The estimate for ``tasks`` (all of curve ``label``) from :func:`task_seconds` rows, or ``None``.

    Each task gets the median seconds of stored rows with its label, resolution and
    quality; else with its label and resolution; else the label's median seconds per
    pixel times its pixels.
    """
    mine = timed[timed["codec_label"] == label]
    if mine.empty:
        return None
    by_quality = mine.groupby(["resolution", "quality"])["seconds"].median().to_dict()
    by_res = mine.groupby("resolution")["seconds"].median().to_dict()
    per_pixel = float((mine["seconds"] / mine["pixels"]).median())
    total, scaled = 0.0, 0
    for t in tasks:
        s = by_quality.get((t.resolution, _quality_key(t.quality)))
        if s is None:
            s = by_res.get(t.resolution)
        if s is None:
            s, scaled = per_pixel * t.pixels, scaled + 1
        total += s
    source = f"measured: median of {_count(len(mine), 'earlier result')} in this store"
    if scaled:
        source += f" ({_count(scaled, 'task')} at a new resolution scaled by pixel count)"
    return CostEstimate(label, len(tasks), total, source)


# ----------------------------------------------------------------------------------------
# calibration
# ----------------------------------------------------------------------------------------
def calibration_task(tasks: Sequence[Task]) -> Task:
    """The task a label's calibration starts from: the first image to do, at the middle quality."""
    first = tasks[0].image_sha256
    same_image = [t for t in tasks if t.image_sha256 == first]
    return replace(same_image[len(same_image) // 2], keep=None)


def _centre_crop(rgb, side: int):
    h, w = rgb.shape[:2]
    y, x = (h - side) // 2, (w - side) // 2
    return rgb[y : y + side, x : x + side]


def calibrate(task: Task) -> dict[str, Any]:
    """Worker side: time ``task``'s whole path on centre crops of its image (see the module docstring).

    Returns the task's record with ``status``, ``error`` on failure, and ``points``:
    ``[[pixels, seconds], ...]``, one per timed crop (the whole image, once, when it is
    no larger than the largest crop). ``task.timeout`` bounds the whole calibration.
    """
    row = task.record()
    row["status"] = "failed"
    points: list[list[float]] = []

    def work() -> None:
        rgb, _ = load_image(task)
        short = min(rgb.shape[:2])
        sides = [s for s in CALIBRATION_SIDES if s < short]
        crops = [_centre_crop(rgb, s) for s in sides] if len(sides) == len(CALIBRATION_SIDES) else [rgb]
        measure(task, _centre_crop(rgb, min(WARMUP_SIDE, short)), {})  # imports, model, first process
        for crop in crops:
            t0 = time.perf_counter()
            measure(task, crop, {})
            points.append([float(crop.shape[0] * crop.shape[1]), time.perf_counter() - t0])
        row["status"] = "ok"

    run_limited(work, row, task.timeout)
    row["points"] = points
    return row


def fit_seconds(points: Sequence[Sequence[float]]) -> Callable[[float], float]:
    """``pixels -> seconds`` through calibration points: a line ``fixed + per_pixel x pixels``
    through two points, proportional to pixels for one point (or when the line would need a
    negative fixed cost or slope)."""
    (p_big, t_big) = max(points, key=lambda pt: pt[0])
    if len(points) >= 2:
        (p_small, t_small) = min(points, key=lambda pt: pt[0])
        slope = (t_big - t_small) / (p_big - p_small)
        fixed = t_small - slope * p_small
        if slope > 0 and fixed >= 0:
            return lambda px: fixed + slope * px
    return lambda px: t_big * px / p_big


def calibrated_estimate(label: str, tasks: Sequence[Task], row: dict[str, Any]) -> CostEstimate:
    """The estimate for ``tasks`` from one :func:`calibrate` row."""
    if row.get("status") != "ok" or not row.get("points"):
        return CostEstimate(label, len(tasks), None, f"calibration failed: {row.get('error') or 'no timing'}")
    seconds = fit_seconds(row["points"])
    total = sum(seconds(t.pixels) for t in tasks)
    sides = " and ".join(f"{math.isqrt(int(p))}x{math.isqrt(int(p))}" for p, _ in row["points"])
    what = "the whole image" if len(row["points"]) == 1 else f"{sides} centre crops"
    return CostEstimate(label, len(tasks), total,
                        f"calibrated on {what} of {row['relpath']} at {row['quality_param']}={row['quality']}, "
                        "extrapolated by pixel count: rough (re-run after --limit 1 for measured figures)")


def estimate_costs(
    todo: Sequence[Task],
    stored: pd.DataFrame,
    run_calibrations: Callable[[list[Task]], Iterable[dict[str, Any]]],
) -> list[CostEstimate]:
    """One :class:`CostEstimate` per curve label in ``todo``, in plan order.

    ``stored`` holds earlier ``ok`` rows of the store (see :func:`task_seconds`);
    ``run_calibrations`` runs :func:`calibrate` on the given tasks (in the bench's
    workers) and yields their rows; it is called only for labels without stored rows.
    """
    by_label: dict[str, list[Task]] = defaultdict(list)
    for t in todo:
        by_label[t.codec_label].append(t)
    timed = task_seconds(stored)
    out: dict[str, CostEstimate] = {}
    for label, tasks in by_label.items():
        est = stored_estimate(label, tasks, timed)
        if est is not None:
            out[label] = est
    missing = [calibration_task(by_label[label]) for label in by_label if label not in out]
    if missing:
        for row in run_calibrations(missing):
            label = row["codec_label"]
            out[label] = calibrated_estimate(label, by_label[label], row)
    return [out[label] for label in by_label]


# ----------------------------------------------------------------------------------------
# the printout
# ----------------------------------------------------------------------------------------
def human_seconds(s: float) -> str:
    """``42 s``, ``3.5 min``, ``7.2 h``."""
    if s < 90:
        return f"{s:.3g} s"
    if s < 5400:
        return f"{s / 60:.3g} min"
    return f"{s / 3600:.3g} h"


def describe_plan(total: int, done: int, estimates: Sequence[CostEstimate], threads: int | None,
                  where: str = "workers") -> str:
    """The lines ``cloud3d bench`` prints before it starts.

    ``total`` planned tasks, ``done`` already in the store; ``estimates`` for the tasks to
    do; ``threads`` worker threads the run will use (``None``: not started); ``where``
    names them (``workers``, ``Dask threads``).
    """
    todo = sum(e.tasks for e in estimates)
    lines = [f"plan: {_count(total, 'task')}: {done} already done, {todo} to do"]
    if not todo:
        return lines[0]
    slow = [e for e in estimates if e.per_task is None or e.per_task >= SLOW_TASK_S]
    fast = [e for e in estimates if e not in slow]
    width = max(len(e.label) for e in estimates)
    lines.append("estimated CPU time (one core per task):")
    for e in slow:
        if e.seconds is None:
            lines.append(f"  {e.label:<{width}}  {_count(e.tasks, 'task')}: unknown ({e.source})")
        else:
            lines.append(f"  {e.label:<{width}}  {_count(e.tasks, 'task')} x {human_seconds(e.per_task)} = "
                         f"{human_seconds(e.seconds)}  ({e.source})")
    if fast:
        n, s = sum(e.tasks for e in fast), sum(e.seconds for e in fast)
        names = ", ".join(e.label for e in fast)
        lines.append(f"  fast codecs ({names}): {_count(n, 'task')}, {human_seconds(s)} in all "
                     f"(each under {SLOW_TASK_S:g} s per task)")
    known = [e.seconds for e in estimates if e.seconds is not None]
    if known:
        cpu = sum(known)
        line = f"  total {human_seconds(cpu)} of CPU"
        if threads:
            line += f": about {human_seconds(cpu / threads)} on {threads} {where}"
        if any(e.seconds is None for e in estimates):
            line += " (plus the unknown ones)"
        more = ("more cores: more workers in the Dask cluster" if where.startswith("Dask")
                else "more cores: --workers N, or a Dask cluster with --scheduler")
        lines.append(f"{line}; {more}")
    return "\n".join(lines)
