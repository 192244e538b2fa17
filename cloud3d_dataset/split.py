"""``build_splits``: package one app's raw capture into the dataset layout.

Output, inside ``DATASET/``::

    {train,validation,test}/{app}-{res}/{n}.png   the images
    manifest.csv (+ manifest.parquet)             one row per image, all apps
    .cloud3d/split-{app}.json                     how this app was split (parameters,
                                                  input fingerprint, n -> capture index)

Numbering: ``n`` is the frame's 0-based position, in capture order, among
the frames of the app that went into the dataset (all splits together), so a
1000-frame app is numbered 0..999 as in the reference dataset, and the same
``n`` is the same source frame at every resolution. The capture's own frame
index of each ``n`` is kept in ``split-{app}.json``.

Files are hard links to the raw frames when they are already 8-bit RGB PNGs
of the right size (copies when linking is impossible or ``copy=True``);
frames that need resizing (Lanczos) or pixel-format conversion, and every
frame with ``recompress=True``, are decoded and re-encoded as lossless PNG.

The build goes into ``DATASET/.cloud3d/staging-{app}-{key}/`` and is moved
into place at the end (one rename per ``{split}/{app}-{res}`` folder) under a
lock; the manifest and the record are written last. An interrupted run leaves
the staging folder, which the next identical run reuses.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import io
import json
import math
import os
import shutil
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from cloud3d.atomic import atomic_path, atomic_write_bytes, atomic_write_text
from cloud3d.errors import Cloud3dError, describe_os_error
from cloud3d.imageio import read_image_rgb
from cloud3d.provenance import sha256_bytes, sha256_file
from cloud3d.resolutions import RESOLUTIONS
from cloud3d_dataset.blocks import (
    DEFAULT_BLOCK_FRAMES,
    DEFAULT_BLOCK_SECONDS,
    DEFAULT_GUARD_FRACTION,
    Span,
    assign,
    assign_scaled,
    make_blocks,
    parse_span,
)
from cloud3d_dataset.layout import SPLITS, image_relpath, parse_group_dirname
from cloud3d_dataset.manifest import MANIFEST_COLUMNS, MANIFEST_NAME, load_manifest, write_manifest
from cloud3d_dataset.rawframes import (
    Capture,
    list_capture,
    open_capture,
    resolution_name,
    source_folders,
)

STATE_DIR = ".cloud3d"
RECORD_VERSION = 1


@dataclass
class SplitResult:
    """What :func:`build_splits` did.

    ``counts`` maps split -> frames per resolution; ``resolutions`` lists the
    output resolutions; ``files`` is the number of image files written;
    ``linked``/``copied``/``encoded`` how they were made; ``noop`` is True
    when an identical earlier run made this call do nothing.
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


def _parse_resolution(name: str) -> str:
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


def _plan_sources(
    cap_sizes: dict[str, tuple[int, int]], wanted: list[str] | None
) -> dict[str, tuple[str, tuple[int, int]]]:
    """Output resolution -> (source folder, output size)."""
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


def _spans(
    block: str | int | Span | None, guard: str | int | Span | None, has_times: bool
) -> tuple[Span, Span]:
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


# ----------------------------------------------------------------------------- file making


def _encode_png_max(rgb: np.ndarray) -> bytes:
    """Lossless PNG at Pillow's maximum effort (zlib level 9 + optimize)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb, "RGB").save(buf, format="PNG", optimize=True, compress_level=9)
    return buf.getvalue()


def _make_encoded(
    job: tuple[str, str, tuple[int, int], bool, bool],
) -> tuple[str, int, str, str | None]:
    """Worker: decode ``src``, convert/resize, encode, write ``dst`` atomically.

    ``job`` is ``(src, dst, (width, height), recompress, as_is)``; ``as_is``
    says the source is already an 8-bit RGB PNG of the right size, in which
    case a recompressed file that is not smaller than the source is replaced
    by the source bytes. Returns ``(dst, bytes, sha256, conversion note)``.
    """
    from PIL import Image

    from cloud3d.imageio import encode_png

    src, dst, size, recompress, as_is = job
    rgb, note = read_image_rgb(src)
    if (rgb.shape[1], rgb.shape[0]) != tuple(size):
        img = Image.fromarray(rgb, "RGB").resize(tuple(size), Image.Resampling.LANCZOS)
        rgb = np.ascontiguousarray(np.asarray(img), dtype=np.uint8)
    if recompress:
        data = _encode_png_max(rgb)
        with Image.open(io.BytesIO(data)) as im:
            back = np.asarray(im.convert("RGB"))
        if not np.array_equal(back, rgb):  # pragma: no cover - would be an encoder bug
            raise Cloud3dError(f"recompressed PNG of {src} does not decode to the same pixels")
        if as_is:
            original = Path(src).read_bytes()
            if len(original) <= len(data):
                data = original
    else:
        data = encode_png(rgb, "zlib", 6)
    atomic_write_bytes(dst, data)
    return dst, len(data), sha256_bytes(data), note


def _link_or_copy(src: Path, dst: Path, copy: bool) -> str | None:
    """Hard-link ``src`` to ``dst``, or copy it atomically when ``copy`` or linking is impossible.

    Returns ``None`` when linked, ``"copied"`` when copied on request, or the
    reason linking failed (another filesystem, permissions...) when it fell back
    to a copy.
    """
    why = "copied"
    if not copy:
        try:
            os.link(src, dst)
            return None
        except FileExistsError:
            raise
        except OSError as exc:
            if exc.errno not in (
                errno.EXDEV,
                errno.EPERM,
                errno.EMLINK,
                errno.ENOTSUP,
                errno.EACCES,
                errno.EOPNOTSUPP,
            ):
                raise
            why = exc.strerror or str(exc)
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)
    return why


# ----------------------------------------------------------------------------- state


def _record_path(root: Path, app: str) -> Path:
    return root / STATE_DIR / f"split-{app}.json"


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise Cloud3dError(
            f"cannot read {path}: {exc}; delete it and re-run with --force"
        ) from None


@contextlib.contextmanager
def _locked(root: Path):
    (root / STATE_DIR).mkdir(parents=True, exist_ok=True)
    with open(root / STATE_DIR / "lock", "a+") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def _existing_app_groups(root: Path, app: str) -> list[Path]:
    out = []
    for split in SPLITS:
        d = root / split
        if d.is_dir():
            for g in sorted(d.iterdir()):
                parsed = parse_group_dirname(g.name)
                if g.is_dir() and parsed is not None and parsed[0] == app:
                    out.append(g)
    return out


def _manifest_apps(root: Path) -> set[str]:
    if not (root / MANIFEST_NAME).is_file():
        return set()
    return set(load_manifest(root)["app"])


# ----------------------------------------------------------------------------- main entry


def build_splits(
    raw_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    app: str | None = None,
    train: int = 800,
    val: int = 100,
    test: int = 100,
    seed: int = 0,
    block: str | int | None = None,
    guard: str | int | None = None,
    resolutions: list[str] | str | None = None,
    scale_counts: bool = False,
    copy: bool = False,
    recompress: bool = False,
    strict: bool = False,
    force: bool = False,
    workers: int | None = None,
    progress: bool = True,
) -> SplitResult:
    """Split one app's capture into ``{train,validation,test}/{app}-{res}/{n}.png`` under ``out_dir``.

    Args:
        raw_dir: capture app folder, capture root (with ``app``) or plain PNG folder.
        out_dir: dataset root (created if missing; other apps in it are left untouched).
        app: app name (default: the capture folder's name; required for plain folders).
        train, val, test: exact frame counts per resolution.
        seed: seed of the block shuffle.
        block: block length, ``"10s"`` (seconds) or ``20``/``"20"`` (frames); default
            10 s with capture times, else 20 frames.
        guard: unused gap kept between frames of different splits, same unit as
            ``block``; default a tenth of the block.
        resolutions: output resolutions (``"1080p,720p"`` or a list); default every
            resolution folder of the capture. Missing ones are resized (Lanczos)
            from a larger capture.
        scale_counts: when frames are short, keep the counts' ratio on fewer frames
            instead of failing.
        copy: copy files instead of hard-linking.
        recompress: re-encode every PNG at maximum lossless compression (pixels checked).
        strict: refuse non-8-bit-RGB frames and mixed sizes instead of converting/skipping.
        force: replace this app's existing splits when the parameters differ.
        workers: parallel workers for reading/encoding (default: CPU count).
        progress: show tqdm progress bars.

    Raises:
        Cloud3dError: bad input, not enough frames, or existing data without ``force``.
    """
    from tqdm import tqdm

    root = Path(out_dir)
    counts = {"train": int(train), "validation": int(val), "test": int(test)}
    if any(c < 0 for c in counts.values()) or sum(counts.values()) == 0:
        raise Cloud3dError("split counts must be >= 0 and not all zero")
    if isinstance(resolutions, str):
        resolutions = [r for r in resolutions.split(",") if r.strip()]
    wanted = [_parse_resolution(r) for r in resolutions] if resolutions else None
    if root.exists() and not root.is_dir():
        raise Cloud3dError(f"--out {root} exists and is not a folder")

    # Which raw folders need reading: only the exact ones when every wanted resolution has one.
    folders = source_folders(raw_dir, app)
    sources = None
    if wanted is not None and all(r in folders for r in wanted):
        sources = list(wanted)
    listing = list_capture(raw_dir, app, sources)
    app = listing.app
    params = {
        "version": RECORD_VERSION,
        "raw": str(listing.folder.resolve()),
        "app": app,
        "counts": counts,
        "seed": int(seed),
        "block": None if block is None else str(parse_span(block)),
        "guard": None if guard is None else str(parse_span(guard)),
        "resolutions": wanted,
        "scale_counts": bool(scale_counts),
        "copy": bool(copy),
        "recompress": bool(recompress),
        "strict": bool(strict),
    }
    key = hashlib.sha256(
        json.dumps({"params": params, "input": listing.fingerprint}, sort_keys=True).encode()
    ).hexdigest()[:16]

    # Existing state of the target.
    record = _read_json(_record_path(root, app)) if root.is_dir() else None
    if record is not None and record.get("key") == key and app in _manifest_apps(root):
        return SplitResult(
            app=app,
            dataset=root,
            counts=record["counts"],
            resolutions=record["resolutions"],
            block=record["block"],
            guard=record["guard"],
            files=record["files"],
            noop=True,
        )
    pending = _read_json(root / STATE_DIR / f"pending-{app}.json") if root.is_dir() else None
    resuming = pending is not None and pending.get("key") == key
    if root.is_dir() and not force and not resuming:
        if record is not None or _existing_app_groups(root, app) or app in _manifest_apps(root):
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

    cap: Capture = open_capture(listing, strict=strict, workers=workers, progress=progress)
    if not cap.frames:
        raise Cloud3dError(
            f"no usable frames in {cap.root}: {len(cap.problems)} problem(s)"
            + (f", e.g. {cap.problems[0][0]}: {cap.problems[0][1]}" if cap.problems else "")
        )
    plan = _plan_sources(cap.sources, wanted)
    b_span, g_span = _spans(block, guard, cap.has_times)
    times = np.array([f.capture_time for f in cap.frames], dtype=np.float64)
    a = assign(times, counts, b_span, g_span, seed)
    final_counts = counts
    if a is None:
        scaled = assign_scaled(times, counts, b_span, g_span, seed) if scale_counts else None
        if scaled is None:
            best = assign_scaled(times, counts, b_span, g_span, seed)
            got = sum(best[1].values()) if best else 0
            coord = times if b_span.unit == "s" else np.arange(len(times), dtype=np.float64)
            nblocks = len(make_blocks(coord, b_span))
            raise Cloud3dError(
                f"not enough frames for app {app!r}: {sum(counts.values())} needed "
                f"(train {counts['train']}, validation {counts['validation']}, test {counts['test']}), "
                f"{len(cap.frames)} usable frames in {cap.root} ({nblocks} block(s) of {b_span}), "
                f"of which at most {got} fit in the "
                f"{counts['train']}:{counts['validation']}:{counts['test']} ratio with --block {b_span} "
                f"and --guard {g_span} (whole blocks per split). Capture more, lower --train/--val/--test, "
                "use --scale-counts, or a shorter --block"
            )
        a, final_counts = scaled
    used = np.flatnonzero(a.split_of >= 0)  # capture-order positions going into the dataset

    # Stage the files.
    state = root / STATE_DIR
    staging = state / f"staging-{app}-{key}"
    state.mkdir(parents=True, exist_ok=True)
    for old in state.glob(f"staging-{app}-*"):
        if old != staging:
            shutil.rmtree(old, ignore_errors=True)
    result = SplitResult(
        app=app,
        dataset=root,
        counts=final_counts,
        resolutions=sorted(plan),
        block=str(b_span),
        guard=str(g_span),
        problems=cap.problems,
        notes=list(cap.notes),
    )
    if final_counts != counts:
        result.notes.append(f"counts scaled to {final_counts} (--scale-counts)")
    rows: list[dict] = []
    link_jobs: list[tuple[Path, Path, dict]] = []
    enc_jobs: list[tuple[tuple, dict]] = []
    provenance = []
    for n, pos in enumerate(used):
        fr = cap.frames[pos]
        split = SPLITS[a.split_of[pos]]
        provenance.append(
            [n, split, fr.index, None if math.isnan(fr.capture_time) else fr.capture_time]
        )
        for res, (src, size) in plan.items():
            rel = image_relpath(split, app, res, n)
            dst = staging / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            info = cap.frames[pos].info[src]
            row = {
                "split": split,
                "app": app,
                "resolution": res,
                "path": rel,
                "width": size[0],
                "height": size[1],
                "source_index": n,
                "capture_time": fr.capture_time,
            }
            if info.is_rgb8 and (info.width, info.height) == tuple(size) and not recompress:
                row.update(bytes=info.size, sha256=info.sha256)
                link_jobs.append((fr.files[src], dst, row))
            else:
                as_is = info.is_rgb8 and (info.width, info.height) == tuple(size)
                enc_jobs.append(
                    ((str(fr.files[src]), str(dst), tuple(size), recompress, as_is), row)
                )
            rows.append(row)

    copy_now = copy
    try:
        for src, dst, _row in tqdm(
            link_jobs, desc=f"link {app}", unit="img", disable=not progress or not link_jobs
        ):
            if dst.exists():  # staged by an interrupted identical run
                continue
            how = _link_or_copy(src, dst, copy_now)
            if how is None:
                result.linked += 1
            else:
                result.copied += 1
                if not copy_now:  # linking failed once: copy the rest without retrying
                    copy_now = True
                    result.notes.append(f"hard links impossible ({how}): files copied instead")
        todo = [(j, r) for j, r in enc_jobs if not Path(j[1]).exists()]
        for j, r in enc_jobs:
            if Path(j[1]).exists():
                r.update(bytes=Path(j[1]).stat().st_size, sha256=sha256_file(j[1]))
        if todo:
            nworkers = workers or os.cpu_count() or 1
            by_dst = {j[1]: r for j, r in todo}
            notes: dict[str, int] = {}
            with ProcessPoolExecutor(max_workers=nworkers) as pool:
                it = pool.map(
                    _make_encoded,
                    [j for j, _ in todo],
                    chunksize=max(1, len(todo) // (nworkers * 8)),
                )
                for dst, nbytes, sha, note in tqdm(
                    it, total=len(todo), desc=f"encode {app}", unit="img", disable=not progress
                ):
                    by_dst[dst].update(bytes=nbytes, sha256=sha)
                    result.encoded += 1
                    if note:
                        notes[note] = notes.get(note, 0) + 1
            result.notes.extend(f"{note}: {k} file(s)" for note, k in sorted(notes.items()))
        result.files = len(rows)
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

    # Commit: swap the staged group folders into place, then manifest, then record.
    with _locked(root):
        atomic_write_text(state / f"pending-{app}.json", json.dumps({"key": key}))
        trash = state / f"trash-{app}-{key}"
        shutil.rmtree(trash, ignore_errors=True)  # left over from an interrupted commit
        for g in _existing_app_groups(root, app):
            dest = trash / g.parent.name / g.name
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(g, dest)
        for split in SPLITS:
            sdir = staging / split
            if not sdir.is_dir():
                continue
            (root / split).mkdir(parents=True, exist_ok=True)
            for g in sorted(sdir.iterdir()):
                os.replace(g, root / split / g.name)
        new = pd.DataFrame(rows, columns=list(MANIFEST_COLUMNS))
        if (root / MANIFEST_NAME).is_file():
            old = load_manifest(root)
            new = pd.concat([old[old["app"] != app], new], ignore_index=True)
        write_manifest(root, new)
        rec = {
            "key": key,
            "params": params,
            "input_fingerprint": cap.fingerprint,
            "counts": final_counts,
            "resolutions": sorted(plan),
            "sources": {r: s for r, (s, _) in sorted(plan.items())},
            "block": str(b_span),
            "guard": str(g_span),
            "files": len(rows),
            "blocks": len(a.blocks),
            "frames": {"usable": len(cap.frames), "used": len(used)},
            "problems": [list(p) for p in cap.problems],
            "notes": result.notes,
            "n_to_capture": provenance,
        }
        atomic_write_text(_record_path(root, app), json.dumps(rec, indent=1, sort_keys=True) + "\n")
        (state / f"pending-{app}.json").unlink(missing_ok=True)
        shutil.rmtree(trash, ignore_errors=True)
        shutil.rmtree(staging, ignore_errors=True)
    return result
