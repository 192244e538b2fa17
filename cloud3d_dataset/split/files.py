"""Making a split's image files: hard links (or copies) of raw frames, or re-encoded PNGs.

Raw frames that are 8-bit RGB PNGs of the output size are hard-linked (copied when linking
is impossible or asked for); frames that need resizing (Pillow Lanczos) or pixel-format
conversion, and every frame with ``--recompress``, are decoded and re-encoded as lossless
PNG in a process pool. Files already staged by an interrupted identical run are reused.
"""

from __future__ import annotations

import errno
import io
import math
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cloud3d.atomic import atomic_path, atomic_write_bytes
from cloud3d.errors import Cloud3dError
from cloud3d.imageio import read_image_rgb
from cloud3d.lifetime import process_pool
from cloud3d.provenance import sha256_bytes, sha256_file
from cloud3d_dataset.layout import SPLITS, image_relpath
from cloud3d_dataset.rawframes import Capture
from cloud3d_dataset.split.plan import Stream


@dataclass
class FileJobs:
    """What to stage: ``rows`` (manifest rows, filled in as files are made), ``links``
    ``(raw file, staged file, row)`` and ``encodes`` ``(worker job, row)``."""

    rows: list[dict] = field(default_factory=list)
    links: list[tuple[Path, Path, dict]] = field(default_factory=list)
    encodes: list[tuple[tuple, dict]] = field(default_factory=list)


def encode_png_max(rgb: np.ndarray) -> bytes:
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
        data = encode_png_max(rgb)
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


def make_files(jobs: FileJobs, result, copy: bool, workers: int | None, progress: bool) -> None:
    """Make every staged file; count them in ``result`` (``linked``, ``copied``, ``encoded``,
    ``notes``); fill each row's ``bytes`` and ``sha256``."""
    _link_all(jobs.links, result, copy, progress)
    _encode_all(jobs.encodes, result, workers, progress)
    result.files = len(jobs.rows)


def _link_all(links: list, result, copy: bool, progress: bool) -> None:
    from tqdm import tqdm

    copy_now = copy
    for src, dst, _row in tqdm(links, desc=f"link {result.app}", unit="img",
                               disable=not progress or not links):
        if dst.exists():  # staged by an interrupted identical run
            continue
        how = _link_or_copy(src, dst, copy_now)
        if how is None:
            result.linked += 1
            continue
        result.copied += 1
        if not copy_now:  # linking failed once: copy the rest without retrying
            copy_now = True
            result.notes.append(f"hard links impossible ({how}): files copied instead")


def _encode_all(encodes: list, result, workers: int | None, progress: bool) -> None:
    from tqdm import tqdm

    todo = [(j, r) for j, r in encodes if not Path(j[1]).exists()]
    for j, r in encodes:
        if Path(j[1]).exists():
            r.update(bytes=Path(j[1]).stat().st_size, sha256=sha256_file(j[1]))
    if not todo:
        return
    nworkers = workers or os.cpu_count() or 1
    by_dst = {j[1]: r for j, r in todo}
    notes: dict[str, int] = {}
    with process_pool(nworkers) as pool:
        it = pool.map(_make_encoded, [j for j, _ in todo],
                      chunksize=max(1, len(todo) // (nworkers * 8)))
        for dst, nbytes, sha, note in tqdm(it, total=len(todo), desc=f"encode {result.app}",
                                           unit="img", disable=not progress):
            by_dst[dst].update(bytes=nbytes, sha256=sha)
            result.encoded += 1
            if note:
                notes[note] = notes.get(note, 0) + 1
    result.notes.extend(f"{note}: {k} file(s)" for note, k in sorted(notes.items()))


def stage_jobs(cap: Capture, plan: dict, streams: list[Stream], staging: Path,
               recompress: bool) -> tuple[FileJobs, list]:
    """Manifest rows and the link/encode job of every file; ``n -> capture`` provenance."""
    jobs = FileJobs()
    provenance: list = []
    for stream in streams:
        rows_of_stream = []
        used = stream.positions[stream.split_of >= 0]
        splits = stream.split_of[stream.split_of >= 0]
        for n, (pos, s_idx) in enumerate(zip(used, splits, strict=True)):
            fr, split = cap.frames[pos], SPLITS[s_idx]
            t = None if math.isnan(fr.capture_time) else fr.capture_time
            rows_of_stream.append([n, split, fr.index, t])
            for res in stream.resolutions:
                jobs.rows.append(_file_job(jobs, fr, split, cap.app, res, n, plan[res], staging,
                                           recompress))
        provenance.append((stream.resolutions, rows_of_stream))
    return jobs, provenance


def _file_job(jobs: FileJobs, fr, split: str, app: str, res: str, n: int, source, staging: Path,
              recompress: bool) -> dict:
    """The manifest row of frame ``n`` at ``res``; queue its link (an 8-bit RGB PNG of the right
    size) or its re-encoding. ``source`` is ``(source folder, output size)``."""
    src, size = source
    rel = image_relpath(split, app, res, n)
    dst = staging / rel
    dst.parent.mkdir(parents=True, exist_ok=True)
    info = fr.info[src]
    row = {"split": split, "app": app, "resolution": res, "path": rel, "width": size[0],
           "height": size[1], "source_index": n, "capture_time": fr.capture_time}
    as_is = info.is_rgb8 and (info.width, info.height) == tuple(size)
    if as_is and not recompress:
        row.update(bytes=info.size, sha256=info.sha256)
        jobs.links.append((fr.files[src], dst, row))
    else:
        jobs.encodes.append(((str(fr.files[src]), str(dst), tuple(size), recompress, as_is), row))
    return row
