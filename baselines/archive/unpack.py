"""``cloud3d unarchive``: restore the folder layout of an archive as PNG files.

What is guaranteed (see docs/archive.md):

* ``raw`` archives give back every original file byte for byte (its SHA-256 is checked);
* lossless codecs give back every pixel: each restored image's pixel hash is checked against
  the manifest's ``pixel_sha256`` of the original. The PNG file's bytes may differ from the
  original file's (another encoder or level), so the file hash is not guaranteed;
* lossy codecs give back their reconstruction; when the archive was verified at creation its
  pixel hash is compared, and files that decode differently here (another decoder build or
  device) are counted, not refused.

Every member's size and SHA-256 are checked before it is decoded, and the image size a
bitstream declares is checked against the manifest before any pixels are allocated. Each PNG
is written atomically, so an error or Ctrl-C never leaves a half-written file; re-running the
same command skips every file already restored and verified. The output folder is marked with
``.cloud3d-unarchive.json`` (which archive it holds); a non-empty folder without that mark is
refused unless ``force``.
"""

from __future__ import annotations

import functools
import io
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cloud3d.atomic import atomic_write_bytes, atomic_write_text, remove_stale_temps
from cloud3d.errors import Cloud3dError, describe_os_error
from cloud3d.imageio import encode_png, read_image_rgb
from cloud3d.provenance import sha256_bytes, sha256_file
from cloud3d.untrusted import quote
from cloud3d.wording import count

from .codecs import ArchiveCodec, cached_codec
from .container import ArchiveReader, safe_join
from .pack import mean_quality, pixel_sha256
from .tasks import run_jobs

MARKER = ".cloud3d-unarchive.json"


@dataclass
class UnarchiveSummary:
    """What :func:`unarchive` did: counts, wall seconds, the manifest's mean quality, notes."""

    out: Path
    codec: str
    files: int
    restored: int
    skipped: int
    seconds: float
    quality: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def line(self) -> str:
        q = "".join(f", {k} {v:.4f}" for k, v in self.quality.items())
        return (f"{count(self.restored, 'file')} restored, {self.skipped} already there ({self.codec}{q}), "
                f"{self.seconds:.1f} s")


def _peek_size(data: bytes) -> tuple[int, int] | None:
    """``(width, height)`` a bitstream declares, read from its header without decoding pixels;
    ``None`` when the format is not one Pillow or the ``.c3d`` parser knows."""
    from PIL import Image, UnidentifiedImageError

    try:
        import pillow_jxl  # noqa: F401  (lets Pillow read JPEG XL headers)
    except ImportError:
        pass
    try:
        with Image.open(io.BytesIO(data)) as im:
            return im.size
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        pass
    if data[:4] == b"C3DL":
        from models.bitstream import parse

        s = parse(data)
        return s.width, s.height
    return None


def _check_existing(ac: ArchiveCodec, entry: dict[str, Any], final: Path) -> bool:
    """True when ``final`` already holds this entry, restored and verified."""
    if final.is_symlink() or not final.is_file():
        return False
    if ac.codec is None:
        return sha256_file(final) == entry["sha256"]
    try:
        rgb, _ = read_image_rgb(final)
    except Cloud3dError:
        return False
    want = entry.get("pixel_sha256") if ac.lossless else entry.get("rec_sha256")
    if want is None:  # lossy archive made without verification: a complete PNG of the right size
        return rgb.shape == (entry["height"], entry["width"], 3)
    return pixel_sha256(rgb) == want


def _restore_one(job: tuple) -> dict[str, Any]:
    """Worker: decode one member and write its PNG; returns what the summary needs."""
    _, spec, override, entry, data, final, png_level = job
    ac = decoder(spec, override)
    path = entry["path"]
    mismatch = False
    if ac.codec is None:  # the member is the original file: it must have its size and hash
        if len(data) != entry["bytes"] or sha256_bytes(data) != entry["sha256"]:
            raise Cloud3dError(f"{path}: the archived file is not the original the manifest "
                               "describes (size or SHA-256 mismatch): not restored")
        out_bytes = data
    else:
        size = _peek_size(data)
        if size is not None and size != (entry["width"], entry["height"]):
            raise Cloud3dError(f"{path}: the bitstream declares {size[0]}x{size[1]} but the manifest "
                               f"{entry['width']}x{entry['height']}: refused")
        rgb = ac.codec.decode_timed(data).rgb
        if rgb.shape != (entry["height"], entry["width"], 3):
            raise Cloud3dError(f"{path}: decoded {rgb.shape}, the manifest says "
                               f"{entry['width']}x{entry['height']}")
        got = pixel_sha256(rgb)
        if ac.lossless:
            if entry.get("pixel_sha256") is None:
                raise Cloud3dError(f"{path}: the manifest gives no pixel_sha256, which a lossless "
                                   "archive needs to check the restored pixels: not restored")
            if got != entry["pixel_sha256"]:
                raise Cloud3dError(f"{path}: the decoded pixels differ from the original's (pixel "
                                   "SHA-256 mismatch): not restored")
        elif entry.get("rec_sha256") is not None:
            mismatch = got != entry["rec_sha256"]
        out_bytes = data if ac.restores_as_is(data) else encode_png(rgb, level=png_level)
    try:
        atomic_write_bytes(final, out_bytes)
    except OSError as exc:  # e.g. a folder where the file goes: name the file, not its temp
        raise Cloud3dError(f"{path}: cannot write {final}: {exc.strerror or exc}") from None
    return {"bytes": len(out_bytes), "sha256": sha256_bytes(out_bytes), "mismatch": mismatch}


def _prepare_out(out: Path, body_sha256: str, archive: Path, force: bool) -> None:
    marker = out / MARKER
    if out.exists() and not out.is_dir():
        raise Cloud3dError(f"{out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        try:
            mine = json.loads(marker.read_text()).get("body_sha256") == body_sha256
        except (OSError, ValueError, AttributeError):
            mine = False
        if not mine and not force:
            raise Cloud3dError(f"{out} is not empty and holds no earlier restore of this archive: "
                               "choose an empty folder, or --force to restore into it anyway")
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(marker, json.dumps({"archive": str(archive), "body_sha256": body_sha256}) + "\n")


def _remove_temps(todo) -> None:
    """Remove what a killed earlier restore left of the PNGs still to write (the temporary
    files of their atomic writes), so a resumed restore leaves nothing behind."""
    by_folder: dict[Path, set[str]] = {}
    for _, final in todo:
        by_folder.setdefault(final.parent, set()).add(final.name)
    for folder, names in by_folder.items():
        remove_stale_temps(folder, names)


def warm_up(ac: ArchiveCodec) -> None:
    """Code one 64x64 image: loads libraries and, for a learned codec, the weights its
    decoder needs (the learned codec finds them by the stream's weights hash)."""
    if ac.codec is None:
        return
    y, x = np.mgrid[0:64, 0:64]
    img = np.stack([x * 4, y * 4, (x + y) * 2], axis=-1).astype(np.uint8)
    ac.codec.decode_timed(ac.codec.encode_timed(img, ac.quality).data)


@functools.lru_cache(maxsize=8)
def decoder(spec: str, checkpoint: str | None = None) -> ArchiveCodec:
    """The archive's codec, warmed up (:func:`warm_up`), once per process."""
    ac = cached_codec(spec, checkpoint)
    warm_up(ac)
    return ac


def _archive_codec(body: dict[str, Any], archive: str | os.PathLike, checkpoint: str | None
                   ) -> tuple[str, ArchiveCodec, list[str]]:
    """``(spec, codec, notes)`` of the codec the manifest names; a note when its version
    differs from the archiving one."""
    codec_info = body.get("codec") if isinstance(body.get("codec"), dict) else {}
    spec = codec_info.get("spec")
    if not isinstance(spec, str) or len(spec) > 500:
        raise Cloud3dError(f"{archive}: the manifest names no codec (or not one of at most "
                           "500 characters)")
    ac = cached_codec(spec, checkpoint)
    notes = []
    if ac.version() != codec_info.get("version"):
        notes.append(f"archived with {quote(codec_info.get('version'))}, decoding with "
                     f"{ac.version()!r}")
    return spec, ac, notes


def _plan_restore(entries: list[dict[str, Any]], out: Path, ac: ArchiveCodec, failures: list[str]
                  ) -> tuple[dict[int, tuple[dict, Path]], int]:
    """``({entry index: (entry, final path)}, skipped)``: the entries still to restore, and how
    many are already in ``out`` intact; refused paths are appended to ``failures``."""
    jobs_meta: dict[int, tuple[dict, Path]] = {}
    skipped = 0
    for i, entry in enumerate(entries):
        try:
            if entry["path"].split("/")[0] == MARKER:
                raise Cloud3dError(f"{entry['path']}: path under the restore's own state "
                                   f"file {MARKER}: refused")
            final = safe_join(out, entry["path"])
            done = _check_existing(ac, entry, final)
        except Cloud3dError as exc:
            failures.append(str(exc))
            continue
        except OSError as exc:
            failures.append(f"{entry['path']}: {describe_os_error(exc)}")
            continue
        if done:
            skipped += 1
        else:
            jobs_meta[i] = (entry, final)
    return jobs_meta, skipped


def _member_jobs(reader: ArchiveReader, out: Path, jobs_meta: dict[int, tuple[dict, Path]],
                 settings: tuple[str, str | None, int], failures: list[str]):
    """Read each member to restore and yield its :func:`_restore_one` job; a member that cannot
    be read or placed is appended to ``failures`` instead. ``settings``: (spec, checkpoint,
    png_level)."""
    spec, checkpoint, png_level = settings
    for i, (entry, final) in jobs_meta.items():
        try:
            data = reader.read_member(entry)
            final.parent.mkdir(parents=True, exist_ok=True)
            safe_join(out, entry["path"])  # again, now that its folders exist
        except Cloud3dError as exc:
            failures.append(f"{entry['path']}: {exc}")
            continue
        except OSError as exc:  # e.g. a file where the entry needs a folder
            failures.append(f"{entry['path']}: {describe_os_error(exc)}")
            continue
        yield (i, spec, checkpoint, entry, data, final, png_level)


def unarchive(archive: str | os.PathLike, out: str | os.PathLike, workers: int = 1,
              force: bool = False, checkpoint: str | None = None, png_level: int = 1,
              progress: bool = True) -> UnarchiveSummary:
    """Restore ``archive`` into the folder ``out`` (see the module docstring).

    ``checkpoint`` replaces a learned codec's checkpoint path recorded in the archive;
    ``png_level`` is the zlib level (0..9) of PNGs written from decoded pixels. Raises
    :class:`Cloud3dError` naming the first problem when any file could not be restored; every
    other file is restored all the same.
    """
    t0 = time.perf_counter()
    out = Path(out)
    with ArchiveReader(archive) as reader:
        body = reader.body
        spec, ac, notes = _archive_codec(body, archive, checkpoint)
        remove_stale_temps(out, [MARKER])  # a restore killed while it marked the folder
        _prepare_out(out, reader.body_sha256, Path(archive), force)
        remove_stale_temps(out, ["manifest.csv"])  # ... or while it wrote the manifest
        restored: dict[int, dict[str, Any]] = {}
        failures: list[str] = []
        jobs_meta, skipped = _plan_restore(reader.entries, out, ac, failures)
        _remove_temps(jobs_meta.values())
        if jobs_meta:
            decoder(spec, checkpoint)  # warm in this process (and in forked workers)
        jobs = _member_jobs(reader, out, jobs_meta, (spec, checkpoint, png_level), failures)
        for o in run_jobs(_restore_one, jobs, len(jobs_meta), workers=workers,
                          desc=f"unarchive {ac.name}", progress=progress):
            if o.error:
                failures.append(o.error)
            else:
                restored[o.key] = o.value
        entries = reader.entries
    mismatched = sum(r["mismatch"] for r in restored.values())
    if mismatched:
        notes.append(f"{mismatched} files decode differently here than when archived "
                     "(another decoder build or device)")
    if failures:
        raise Cloud3dError(f"{len(failures)} of {len(entries)} files could not be restored "
                           f"(first: {failures[0]}); the other {len(entries) - len(failures)} are in {out}")
    if body.get("dataset_rows"):
        _write_dataset_manifest(out, body["dataset_rows"], entries, restored)
    return UnarchiveSummary(out=out, codec=spec, files=len(entries), restored=len(restored),
                            skipped=skipped, seconds=time.perf_counter() - t0,
                            quality=mean_quality(entries), notes=notes)


def _write_dataset_manifest(out: Path, rows: list[dict[str, Any]], entries: list[dict[str, Any]],
                            restored: dict[int, dict[str, Any]]) -> None:
    """``manifest.csv`` for the restored files (sizes and hashes of the files as written), so
    the folder is a dataset again (``cloud3d verify`` passes)."""
    import pandas as pd

    from cloud3d_dataset.manifest import write_manifest

    by_path = {}
    for i, e in enumerate(entries):
        r = restored.get(i)
        p = out / e["path"]
        by_path[e["path"]] = (r["bytes"], r["sha256"]) if r else (p.stat().st_size, sha256_file(p))
    bad = Cloud3dError("the archive's dataset rows do not match its files: manifest.csv not written")
    try:
        df = pd.DataFrame(rows)
        if "path" not in df.columns or len(df) != len(by_path) or set(df["path"]) != set(by_path):
            raise bad
        df["bytes"] = [by_path[p][0] for p in df["path"]]
        df["sha256"] = [by_path[p][1] for p in df["path"]]
        write_manifest(out, df)
    except (ValueError, TypeError, KeyError, Cloud3dError):
        raise bad from None
