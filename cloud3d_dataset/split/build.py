"""``build_splits``: package one app's raw capture into the dataset layout.

Output, inside ``DATASET/``::

    {train,validation,test}/{app}-{res}/{n}.png   the images
    manifest.csv (+ manifest.parquet)             one row per image, all apps
    .cloud3d/split-{app}.json                     how this app was split (parameters,
                                                  input fingerprint, n -> capture index)

Streams: when every frame has a file at every output resolution (one grab written at
several sizes), the resolutions are split together, and the same ``n`` is the same source
frame at every resolution. When the capture rendered each resolution on its own (``cloud3d
capture game`` runs the game at each window size; ``frames.csv`` names each frame's files),
each resolution is a stream of its own, split with the same rules.

Numbering: ``n`` is the frame's 0-based position, in capture order, among the frames of its
stream that went into the dataset (all splits together), so a 1000-frame app is numbered
0..999 as in the reference dataset. The capture's own frame index of each ``n`` is kept in
``split-{app}.json``.

Grouping: by default whole time blocks go to one split (:mod:`cloud3d_dataset.blocks`);
``group="scene"`` gives whole scenes (``frames.csv``'s ``scene`` column) to one split at
every resolution, so no test track or map is seen in training.

Files are hard links to the raw frames when they are already 8-bit RGB PNGs of the right
size, else re-encoded (:mod:`cloud3d_dataset.split.files`). The build goes into
``DATASET/.cloud3d/staging-{app}-{key}/`` and is committed at the end
(:mod:`cloud3d_dataset.split.state`). An interrupted run leaves the staging folder, which
the next identical run reuses.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cloud3d.errors import Cloud3dError, describe_os_error
from cloud3d_dataset.blocks import (
    Span,
    assign,
    assign_groups,
    largest_scaled,
    make_blocks,
    parse_span,
)
from cloud3d_dataset.layout import SPLITS
from cloud3d_dataset.manifest import MANIFEST_NAME
from cloud3d_dataset.rawframes import Capture, Listing, list_capture, open_capture, source_folders
from cloud3d_dataset.split.files import FileJobs, make_files, stage_jobs
from cloud3d_dataset.split.plan import Stream, make_streams, parse_resolution, plan_sources, spans
from cloud3d_dataset.split.state import (
    STATE_DIR,
    commit,
    existing_app_groups,
    finish_leftovers,
    fresh_staging,
    manifest_apps,
    read_json,
    record_path,
)

RECORD_VERSION = 1
GROUPS = ("time", "scene")


@dataclass
class SplitOptions:
    """How to split (see :func:`build_splits` for each field)."""

    train: int = 800
    val: int = 100
    test: int = 100
    seed: int = 0
    block: str | int | None = None
    guard: str | int | None = None
    resolutions: list[str] | str | None = None
    group: str = "time"
    scale_counts: bool = False
    copy: bool = False
    recompress: bool = False
    strict: bool = False
    force: bool = False
    workers: int | None = None
    progress: bool = True

    def counts(self) -> dict[str, int]:
        counts = {"train": int(self.train), "validation": int(self.val), "test": int(self.test)}
        if any(c < 0 for c in counts.values()) or sum(counts.values()) == 0:
            raise Cloud3dError("split counts must be >= 0 and not all zero")
        return counts

    def wanted(self) -> list[str] | None:
        res = self.resolutions
        if isinstance(res, str):
            res = [r for r in res.split(",") if r.strip()]
        return [parse_resolution(r) for r in res] if res else None


@dataclass
class SplitResult:
    """What :func:`build_splits` did.

    ``counts`` maps split -> frames per resolution; ``resolutions`` lists the
    output resolutions; ``files`` is the number of image files written;
    ``linked``/``copied``/``encoded`` how they were made; ``noop`` is True
    when an identical earlier run made this call do nothing. With ``--group scene``,
    ``block`` is ``"scene"`` and ``scenes`` maps each split to its scenes.
    """

    app: str
    dataset: Path
    counts: dict[str, int]
    resolutions: list[str]
    block: str
    guard: str
    files: int = 0
    linked: int = 0
    copied: int = 0
    encoded: int = 0
    noop: bool = False
    problems: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    scenes: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class Assignment:
    """The split of every stream, and how it was made (for the result and the record)."""

    counts: dict[str, int]
    block: str
    guard: str
    units: int  # time blocks or scenes
    scenes: dict[str, list[str]] = field(default_factory=dict)


def build_splits(
    raw_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    app: str | None = None,
    options: SplitOptions | None = None,
    **kwargs,
) -> SplitResult:
    """Split one app's capture into ``{train,validation,test}/{app}-{res}/{n}.png`` under ``out_dir``.

    Args:
        raw_dir: capture app folder, capture root (with ``app``) or plain PNG folder.
        out_dir: dataset root (created if missing; other apps in it are left untouched).
        app: app name (default: the capture folder's name; required for plain folders).
        options: a :class:`SplitOptions`; or give its fields as keywords:
            ``train, val, test``: exact frame counts per resolution;
            ``seed``: seed of the block (or scene) shuffle;
            ``block``: block length, ``"10s"`` (seconds) or ``20``/``"20"`` (frames); default
            10 s with capture times, else 20 frames;
            ``guard``: unused gap kept between frames of different splits, same unit as
            ``block``; default a tenth of the block;
            ``resolutions``: output resolutions (``"1080p,720p"`` or a list); default every
            resolution folder of the capture; missing ones are resized (Lanczos) from a
            larger capture;
            ``group``: ``"time"`` (blocks) or ``"scene"`` (whole scenes per split);
            ``scale_counts``: when frames are short, keep the counts' ratio on fewer frames;
            ``copy``: copy files instead of hard-linking;
            ``recompress``: re-encode every PNG at maximum lossless compression;
            ``strict``: refuse non-8-bit-RGB frames and mixed sizes;
            ``force``: replace this app's existing splits when the parameters differ;
            ``workers``: parallel workers (default: CPU count); ``progress``: tqdm bars.

    Raises:
        Cloud3dError: bad input, not enough frames, or existing data without ``force``.
    """
    opts = dataclasses.replace(options or SplitOptions(), **kwargs)
    root = Path(out_dir)
    if opts.group not in GROUPS:
        raise Cloud3dError(f"bad --group {opts.group!r}: use time or scene")
    counts, wanted = opts.counts(), opts.wanted()
    if root.exists() and not root.is_dir():
        raise Cloud3dError(f"--out {root} exists and is not a folder")
    listing = _listing(raw_dir, app, wanted)
    params = _params(listing, opts, counts, wanted)
    key = hashlib.sha256(
        json.dumps({"params": params, "input": listing.fingerprint}, sort_keys=True).encode()
    ).hexdigest()[:16]
    done = _earlier_result(root, listing.app, key, opts.force)
    if done is not None:
        return done
    cap = open_capture(listing, strict=opts.strict, workers=opts.workers, progress=opts.progress)
    if not cap.frames:
        raise Cloud3dError(
            f"no usable frames in {cap.root}: {len(cap.problems)} problem(s)"
            + (f", e.g. {cap.problems[0][0]}: {cap.problems[0][1]}" if cap.problems else "")
        )
    plan = plan_sources(cap.sources, wanted)
    streams = make_streams(cap, plan)
    a = _assign_scenes(cap, streams, counts, opts) if opts.group == "scene" else \
        _assign_time(cap, streams, counts, opts)
    result = SplitResult(app=cap.app, dataset=root, counts=a.counts, resolutions=sorted(plan),
                         block=a.block, guard=a.guard, problems=cap.problems,
                         notes=list(cap.notes), scenes=a.scenes)
    if a.counts != counts:
        result.notes.append(f"counts scaled to {a.counts} (--scale-counts)")
    staging = fresh_staging(root, cap.app, key)
    jobs, provenance = stage_jobs(cap, plan, streams, staging, opts.recompress)
    _make(jobs, result, opts, root, staging)
    record = _record(key, params, cap, plan, streams, a, result, provenance)
    commit(root, cap.app, key, staging, jobs.rows, record)
    return result


# ----------------------------------------------------------------------------- steps


def _listing(raw_dir, app: str | None, wanted: list[str] | None) -> Listing:
    """List the capture, reading only the exact folders when every wanted resolution has one."""
    folders = source_folders(raw_dir, app)
    sources = list(wanted) if wanted is not None and all(r in folders for r in wanted) else None
    return list_capture(raw_dir, app, sources)


def _params(listing: Listing, opts: SplitOptions, counts: dict, wanted: list[str] | None) -> dict:
    """The arguments that decide the result (with the input fingerprint, they make the key)."""
    params = {
        "version": RECORD_VERSION,
        "raw": str(listing.folder.resolve()),
        "app": listing.app,
        "counts": counts,
        "seed": int(opts.seed),
        "block": None if opts.block is None else str(parse_span(opts.block)),
        "guard": None if opts.guard is None else str(parse_span(opts.guard)),
        "resolutions": wanted,
        "scale_counts": bool(opts.scale_counts),
        "copy": bool(opts.copy),
        "recompress": bool(opts.recompress),
        "strict": bool(opts.strict),
    }
    if opts.group != "time":  # time blocks keep the keys of datasets made before --group
        params["group"] = opts.group
    return params


def _earlier_result(root: Path, app: str, key: str, force: bool) -> SplitResult | None:
    """A no-op result when an identical run finished; an error when the dataset holds
    something else that ``force`` would replace; ``None`` to go on."""
    if not root.is_dir():
        return None
    record = read_json(record_path(root, app))
    if record is not None and record.get("key") == key and app in manifest_apps(root):
        finish_leftovers(root, app)  # a run killed after its record was written
        return SplitResult(app=app, dataset=root, counts=record["counts"],
                           resolutions=record["resolutions"], block=record["block"],
                           guard=record["guard"], files=record["files"], noop=True,
                           scenes=record.get("scenes", {}))
    pending = read_json(root / STATE_DIR / f"pending-{app}.json")
    if force or (pending is not None and pending.get("key") == key):
        return None
    if record is not None or existing_app_groups(root, app) or app in manifest_apps(root):
        raise Cloud3dError(
            f"{root} already holds app {app!r} made with other arguments or inputs: "
            "re-run with --force to replace it (other apps stay untouched), or choose another --out"
        )
    known = {MANIFEST_NAME, "manifest.parquet", STATE_DIR, *SPLITS}
    foreign = [p.name for p in root.iterdir() if p.name not in known]
    if foreign and not (root / MANIFEST_NAME).is_file():
        raise Cloud3dError(
            f"--out {root} is not empty and is not a cloud3d dataset ({', '.join(sorted(foreign)[:5])}): "
            "choose an empty folder, or use --force to add the dataset there anyway"
        )
    return None


def _assign_time(cap: Capture, streams: list[Stream], counts: dict, opts: SplitOptions) -> Assignment:
    """Whole time blocks per split, each stream on its own (see :func:`blocks.assign`)."""
    b_span, g_span = spans(opts.block, opts.guard, cap.has_times)
    times = [np.array([cap.frames[p].capture_time for p in s.positions], dtype=np.float64)
             for s in streams]

    def attempt(c: dict[str, int]):
        out = [assign(t, c, b_span, g_span, opts.seed) for t in times]
        return None if any(x is None for x in out) else out

    final, got = counts, attempt(counts)
    if got is None:
        scaled = largest_scaled(counts, min(len(t) for t in times), attempt)
        if not opts.scale_counts or scaled is None:
            best = sum(scaled[1].values()) if scaled else 0
            raise Cloud3dError(_short_of_frames(cap, streams, times, counts, b_span, g_span, best))
        got, final = scaled
    for s, a in zip(streams, got, strict=True):
        s.split_of = a.split_of
    return Assignment(final, str(b_span), str(g_span), sum(len(a.blocks) for a in got))


def _short_of_frames(cap, streams, times, counts, b_span: Span, g_span: Span, best: int) -> str:
    k = min(range(len(times)), key=lambda i: len(times[i]))  # the shortest stream
    coord = times[k] if b_span.unit == "s" else np.arange(len(times[k]), dtype=np.float64)
    nblocks = len(make_blocks(coord, b_span))
    where = f" at {streams[k].resolutions[0]}" if len(streams) > 1 else ""
    return (
        f"not enough frames for app {cap.app!r}{where}: {sum(counts.values())} needed "
        f"(train {counts['train']}, validation {counts['validation']}, test {counts['test']}), "
        f"{len(times[k])} usable frames in {cap.root} ({nblocks} block(s) of {b_span}), "
        f"of which at most {best} fit in the "
        f"{counts['train']}:{counts['validation']}:{counts['test']} ratio with --block {b_span} "
        f"and --guard {g_span} (whole blocks per split). Capture more, lower --train/--val/--test, "
        "use --scale-counts, or a shorter --block"
    )


def _assign_scenes(cap: Capture, streams: list[Stream], counts: dict,
                   opts: SplitOptions) -> Assignment:
    """Whole scenes per split, the same scene in the same split in every stream."""
    unnamed = sum(1 for f in cap.frames if not f.scene)
    if unnamed:
        raise Cloud3dError(
            f"--group scene needs the scene of every frame, but {unnamed} of {len(cap.frames)} "
            f"frames in {cap.root} have none (frames.csv's scene column): capture with `cloud3d "
            "capture game`, or give --scene to the other capture commands"
        )
    labels = [[cap.frames[p].scene for p in s.positions] for s in streams]
    final, got = counts, assign_groups(labels, counts, opts.seed)
    if got is None:
        scaled = largest_scaled(counts, min(len(lab) for lab in labels),
                                lambda c: assign_groups(labels, c, opts.seed))
        if not opts.scale_counts or scaled is None:
            per = ", ".join(f"{n} {sum(1 for x in labels[0] if x == n)}"
                            for n in sorted(set(labels[0])))
            best = sum(scaled[1].values()) if scaled else 0
            raise Cloud3dError(
                f"not enough frames for app {cap.app!r} with whole scenes per split: "
                f"{sum(counts.values())} needed (train {counts['train']}, validation "
                f"{counts['validation']}, test {counts['test']}); frames per scene: {per}; at most "
                f"{best} fit in that ratio. Capture more scenes (a test or validation split takes "
                "whole scenes), lower --train/--val/--test, or use --scale-counts"
            )
        got, final = scaled
    for s, arr in zip(streams, got.split_of, strict=True):
        s.split_of = arr
    scenes = {split: got.groups(split) for split in SPLITS}
    return Assignment(final, "scene", "0", len(got.owner), scenes)


def _make(jobs: FileJobs, result: SplitResult, opts: SplitOptions, root: Path, staging: Path) -> None:
    try:
        make_files(jobs, result, opts.copy, opts.workers, opts.progress)
    except Cloud3dError as exc:
        raise Cloud3dError(
            f"{exc}; fix or remove that frame and re-run (nothing was added to {root}; "
            f"finished files are kept in {staging})"
        ) from None
    except OSError as exc:
        raise Cloud3dError(
            describe_os_error(exc)
            + f" (partial work kept in {staging}; re-run the same command to resume)"
        ) from None


def _record(key: str, params: dict, cap: Capture, plan: dict, streams: list[Stream],
            a: Assignment, result: SplitResult, provenance: list) -> dict:
    """The ``split-{app}.json`` record. ``n_to_capture`` rows are ``[n, split, capture index,
    capture time]``; with one stream per resolution it maps each resolution to its rows."""
    if len(provenance) == 1:
        n_to_capture = provenance[0][1]
    else:
        n_to_capture = {res[0]: rows for res, rows in provenance}
    used = sum(int((s.split_of >= 0).sum()) for s in streams)
    rec = {
        "key": key,
        "params": params,
        "input_fingerprint": cap.fingerprint,
        "counts": a.counts,
        "resolutions": sorted(plan),
        "sources": {r: s for r, (s, _) in sorted(plan.items())},
        "block": a.block,
        "guard": a.guard,
        "files": result.files,
        "blocks": a.units,
        "frames": {"usable": len(cap.frames), "used": used},
        "problems": [list(p) for p in cap.problems],
        "notes": result.notes,
        "n_to_capture": n_to_capture,
    }
    if len(streams) > 1:
        rec["streams"] = "one per resolution (rendered at each size on its own)"
    if a.scenes:
        rec["group"] = "scene"
        rec["scenes"] = a.scenes
    return rec
