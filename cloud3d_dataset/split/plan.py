"""Planning a split: which capture folder makes which output resolution, which frames are
split together (streams), and the block spans."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cloud3d.errors import Cloud3dError
from cloud3d.resolutions import RESOLUTIONS, resolution_name
from cloud3d_dataset.blocks import (
    DEFAULT_BLOCK_FRAMES,
    DEFAULT_BLOCK_SECONDS,
    DEFAULT_GUARD_FRACTION,
    Span,
    parse_span,
)
from cloud3d_dataset.rawframes import Capture


def parse_resolution(name: str) -> str:
    """Check an output resolution name: ``1080p``, ``720p`` or any ``{height}p``."""
    name = name.strip()
    if name in RESOLUTIONS or (name.endswith("p") and name[:-1].isdigit() and int(name[:-1]) > 0):
        return name
    raise Cloud3dError(f"bad resolution {name!r}: use 1080p, 720p or another {{height}}p")


def _target_size(res: str, src_size: tuple[int, int]) -> tuple[int, int]:
    if res in RESOLUTIONS:
        return RESOLUTIONS[res]
    h = int(res[:-1])
    w = int(round(src_size[0] * h / src_size[1] / 2)) * 2
    return max(w, 2), h


def plan_sources(
    cap_sizes: dict[str, tuple[int, int]], wanted: list[str] | None
) -> dict[str, tuple[str, tuple[int, int]]]:
    """Output resolution -> (source folder, output size).

    Every resolution folder of the capture names one (``native`` by its frame size; named
    folders win); ``wanted`` ones that the capture lacks are made from the smallest larger
    folder with the same aspect ratio.
    """
    natural: dict[str, str] = {}
    for src in sorted(cap_sizes, key=lambda s: (s == "native", s)):  # named folders win over native
        natural.setdefault(resolution_name(*cap_sizes[src]) if src == "native" else src, src)
    if wanted is None:
        return {r: (s, cap_sizes[s]) for r, s in natural.items()}
    plan = {}
    for res in wanted:
        if res in natural:
            plan[res] = (natural[res], cap_sizes[natural[res]])
            continue
        # Resize from the smallest source that is at least as large, with the same aspect ratio.
        best = None
        for src, (w, h) in cap_sizes.items():
            tw, th = _target_size(res, (w, h))
            if w >= tw and h >= th and abs(w * th - h * tw) <= max(w, h):
                if best is None or w * h < best[1][0] * best[1][1]:
                    best = (src, (w, h), (tw, th))
        if best is None:
            have = ", ".join(f"{s} ({w}x{h})" for s, (w, h) in sorted(cap_sizes.items()))
            raise Cloud3dError(
                f"cannot make {res}: it needs a larger capture with the same aspect ratio; have {have}"
            )
        plan[res] = (best[0], best[2])
    return plan


def spans(
    block: str | int | Span | None, guard: str | int | Span | None, has_times: bool
) -> tuple[Span, Span]:
    """Block and guard spans: the given ones (checked), or the defaults (10 s and 1 s with
    capture times, else 20 and 2 frames)."""
    b = (
        parse_span(block)
        if block is not None
        else (
            Span(DEFAULT_BLOCK_SECONDS, "s") if has_times else Span(DEFAULT_BLOCK_FRAMES, "frames")
        )
    )
    if b.unit == "s" and not has_times:
        raise Cloud3dError(
            f"--block {b} is in seconds but capture times are unknown (no frames.csv, or frames "
            "without a capture_time): "
            "give a frame count, e.g. --block 20"
        )
    if guard is None:
        g = (
            Span(round(b.value * DEFAULT_GUARD_FRACTION, 6), "s")
            if b.unit == "s"
            else Span(max(1, round(b.value * DEFAULT_GUARD_FRACTION)), "frames")
        )
    else:
        g = parse_span(guard)
        if g.value == 0:
            g = Span(0.0, b.unit)
        if g.unit != b.unit:
            raise Cloud3dError(
                f"--guard {g} and --block {b} must use the same unit (seconds or frames)"
            )
    return b, g


@dataclass
class Stream:
    """Frames split together: ``positions`` (into ``Capture.frames``, capture order) give
    the files of every resolution in ``resolutions``; ``split_of`` (same length) is each
    frame's split index, ``-1`` when unused."""

    resolutions: list[str]
    positions: np.ndarray
    split_of: np.ndarray | None = None


def make_streams(cap: Capture, plan: dict[str, tuple[str, tuple[int, int]]]) -> list[Stream]:
    """One stream for all resolutions when every frame has every source folder, else one per
    output resolution (frames rendered at each size on their own)."""
    folders = {src for src, _ in plan.values()}
    if all(folders <= f.files.keys() for f in cap.frames):
        return [Stream(sorted(plan), np.arange(len(cap.frames)))]
    return [Stream([res], np.asarray(cap.frames_with(src), dtype=np.int64))
            for res, (src, _) in sorted(plan.items())]
