"""``cloud3d archive``: code every file of a dataset selection or folder into one tar archive.

Work is staged in ``.{OUT name}.partial/`` next to the archive: each file's bitstream and its
manifest entry are written there atomically as soon as it is coded, so a run stopped by an
error or Ctrl-C loses nothing; the same command resumes, re-using every staged file whose
source is unchanged (same size and modification time, and the dataset manifest's SHA-256).
The archive itself appears in one rename once every file is coded, and the staging folder is
removed. The same command run again once the archive exists (after a kill during that
clean-up, or after a run that finished) finds it: when it is the complete archive of exactly
these files (names, sizes, SHA-256) with this codec and settings, it is reported and what a
killed run left is removed; any other existing file is refused unless ``force``.

With ``verify`` (the default) every bitstream is decoded again before it is accepted: a lossless
codec must give back exactly the original pixels, and a lossy one's reconstruction is measured
(MSE, PSNR, MS-SSIM by :mod:`baselines.metrics`) and its pixel hash recorded, so unarchive can
tell whether it decodes the same.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cloud3d.atomic import atomic_path, atomic_write_bytes, atomic_write_text, remove_stale_temps
from cloud3d.errors import Cloud3dError
from cloud3d.imageio import parse_png_header, read_image_rgb
from cloud3d.provenance import sha256_bytes, sha256_file, utc_stamp
from cloud3d.wording import count

from .codecs import ArchiveCodec, cached_codec
from .container import FORMAT_VERSION, member_name, write_archive
from .sources import SourceFile, Sources, list_sources
from .tasks import run_jobs


@dataclass
class ArchiveSummary:
    """What :func:`archive_folder` did: counts, sizes in bytes, wall seconds, mean quality."""

    out: Path
    codec: str
    files: int
    reused: int
    original_bytes: int
    archive_bytes: int
    seconds: float
    quality: dict[str, float] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        """Compression rate as seed 002 defines it: original bytes / compressed bytes."""
        return self.original_bytes / self.archive_bytes if self.archive_bytes else float("nan")

    def line(self) -> str:
        q = "".join(f", {k} {v:.4f}" for k, v in self.quality.items())
        reused = f" ({self.reused} re-used from an interrupted run)" if self.reused else ""
        return (f"{count(self.files, 'file')}{reused}, {self.original_bytes:,} -> {self.archive_bytes:,} bytes "
                f"(rate {self.rate:.3f}) with {self.codec}{q}, {self.seconds:.1f} s")


def pixel_sha256(rgb: np.ndarray) -> str:
    """SHA-256 of an ``(H, W, 3) uint8`` array's C-order bytes (the manifest's pixel hash)."""
    return sha256_bytes(np.ascontiguousarray(rgb, dtype=np.uint8).tobytes())


def _quality(ref: np.ndarray, rec: np.ndarray) -> dict[str, Any]:
    from baselines.metrics import ms_ssim_rgb, mse, psnr_from_mse

    m = mse(ref, rec)
    p = psnr_from_mse(m)
    try:
        ms = ms_ssim_rgb(ref, rec)
    except ValueError:  # below 11 px MS-SSIM is undefined
        ms = None
    return {"mse": m, "psnr": None if p == float("inf") else p, "ms_ssim": ms,
            "rec_sha256": pixel_sha256(rec)}


def _encode_one(job: tuple) -> dict[str, Any]:
    """Worker: code one file into the staging folder; returns its manifest entry."""
    index, spec, sf, stage, verify = job
    ac = cached_codec(spec)
    sf: SourceFile
    st = os.stat(sf.abspath)
    data = Path(sf.abspath).read_bytes()
    sha = sha256_bytes(data)
    if sf.sha256 and sha != sf.sha256:
        raise Cloud3dError(f"{sf.relpath} changed since the dataset manifest was written "
                           "(SHA-256 differs): run `cloud3d verify` on the dataset")
    entry: dict[str, Any] = {"path": sf.relpath, "bytes": len(data), "sha256": sha,
                             "member": member_name(sf.relpath, ac.extension)}
    if ac.codec is None:
        try:
            header = parse_png_header(data[:33])
        except ValueError as exc:
            raise Cloud3dError(f"{sf.relpath}: {exc}") from None
        bitstream = data
        entry.update(width=header.width, height=header.height, pixel_sha256=None, encode_s=0.0)
    else:
        rgb, note = read_image_rgb(data, name=sf.relpath)
        if note and ac.lossless:
            raise Cloud3dError(f"{sf.relpath}: {note}; a lossless archive keeps 8-bit RGB pixels "
                               "exactly, so store this folder with --codec raw")
        enc = ac.codec.encode_timed(rgb, ac.quality)
        bitstream = enc.data
        entry.update(width=int(rgb.shape[1]), height=int(rgb.shape[0]),
                     pixel_sha256=pixel_sha256(rgb), encode_s=enc.encode_s)
        if note:
            entry["note"] = note
        if verify:
            rec = ac.codec.decode_timed(bitstream).rgb
            if ac.lossless:
                if rec.shape != rgb.shape or not np.array_equal(rec, rgb):
                    raise Cloud3dError(f"{sf.relpath}: {ac.name} did not give back the exact pixels: "
                                       "not archived")
            elif rec.shape != rgb.shape:
                raise Cloud3dError(f"{sf.relpath}: {ac.name} decoded {rec.shape}, expected {rgb.shape}")
            else:
                entry.update(_quality(rgb, rec))
    entry.update(member_bytes=len(bitstream), member_sha256=sha256_bytes(bitstream))
    atomic_write_bytes(stage / f"{index:06d}.bin", bitstream)
    atomic_write_text(stage / f"{index:06d}.json", json.dumps(
        {"entry": entry, "source_bytes": st.st_size, "source_mtime_ns": st.st_mtime_ns}))
    return entry


def _staged(stage: Path, index: int, sf: SourceFile) -> dict[str, Any] | None:
    """The staged entry of file ``index`` if it is complete and its source is unchanged."""
    meta_path = stage / f"{index:06d}.json"
    try:
        meta = json.loads(meta_path.read_text())
        entry = meta["entry"]
        st = os.stat(sf.abspath)
        if (entry["path"] != sf.relpath or meta["source_bytes"] != st.st_size
                or meta["source_mtime_ns"] != st.st_mtime_ns
                or (sf.sha256 is not None and entry["sha256"] != sf.sha256)
                or sha256_file(stage / f"{index:06d}.bin") != entry["member_sha256"]):
            return None
        return entry
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _stage_path(out: Path) -> Path:
    return out.parent / f".{out.name}.partial"


def _trash_path(out: Path) -> Path:
    return out.parent / f".{out.name}.partial-trash"


def _stage_key(ac: ArchiveCodec, verify: bool) -> dict[str, Any]:
    return {"format": FORMAT_VERSION, "codec": ac.describe(), "verify": verify}


def _clear_leftovers(out: Path) -> None:
    """Remove what a killed run left that holds nothing to re-use: a half-written archive
    (its temporary file) and a staging folder already being removed."""
    remove_stale_temps(out.parent, [out.name])
    if _trash_path(out).exists():
        shutil.rmtree(_trash_path(out), ignore_errors=True)


def _finish(out: Path) -> None:
    """Remove the staging folder: renamed first, so a kill half-way through never leaves a
    staging folder missing files (:func:`_clear_leftovers` removes the rest)."""
    stage, trash = _stage_path(out), _trash_path(out)
    if stage.exists():
        os.replace(stage, trash)
    shutil.rmtree(trash, ignore_errors=True)


def _archive_of(out: Path, ac: ArchiveCodec, verify: bool,
                sources: Sources) -> list[dict[str, Any]] | None:
    """The entries of ``out`` when it is the complete archive of exactly ``sources`` (same
    names, sizes and SHA-256) with this codec and settings, else ``None``: what a re-run of
    the command that made it finds (after a kill in its clean-up, or after it finished)."""
    from .container import ArchiveReader

    try:
        with ArchiveReader(out) as reader:
            body, entries, missing = reader.body, reader.entries, reader.missing
    except Cloud3dError:
        return None
    codec = json.loads(json.dumps(ac.describe()))  # as the manifest holds it
    if missing or body.get("codec") != codec or body.get("verified") is not verify:
        return None
    if [e["path"] for e in entries] != [sf.relpath for sf in sources.files]:
        return None
    for e, sf in zip(entries, sources.files, strict=True):
        if e["bytes"] != sf.bytes or e["sha256"] != (sf.sha256 or sha256_file(sf.abspath)):
            return None
    return entries


def _summary_of(out: Path, ac: ArchiveCodec, sources: Sources, entries: list[dict[str, Any]],
                seconds: float) -> ArchiveSummary:
    """The summary of the finished archive ``out`` (every file re-used)."""
    return ArchiveSummary(out=out, codec=ac.spec, files=len(entries), reused=len(entries),
                          original_bytes=sources.total_bytes, archive_bytes=out.stat().st_size,
                          seconds=seconds, quality=mean_quality(entries))


def _stage_dir(out: Path, ac: ArchiveCodec, verify: bool) -> Path:
    """The staging folder, emptied first when it belongs to another codec or setting."""
    stage = _stage_path(out)
    key = _stage_key(ac, verify)
    state = stage / "state.json"
    if stage.is_dir():
        try:
            same = json.loads(state.read_text()) == key
        except (OSError, ValueError):
            same = False
        if not same:
            shutil.rmtree(stage)
    stage.mkdir(parents=True, exist_ok=True)
    if not state.is_file():
        atomic_write_text(state, json.dumps(key))
    return stage


def mean_quality(entries: list[dict[str, Any]]) -> dict[str, float]:
    """Mean PSNR (per image, inf capped at 100 dB), PSNR of the mean MSE and mean MS-SSIM of
    the entries that carry them (lossy archives made with verification)."""
    from baselines.metrics import aggregate_psnr

    def num(v: Any) -> bool:
        return isinstance(v, int | float) and not isinstance(v, bool) and v >= 0

    measured = [e for e in entries if num(e.get("mse"))]
    if not measured:
        return {}
    agg = aggregate_psnr(e["mse"] for e in measured)
    out = {"mean_psnr": agg["mean_psnr"], "psnr_of_mean_mse": agg["psnr_of_mean_mse"]}
    ms = [e["ms_ssim"] for e in measured if num(e.get("ms_ssim"))]
    if ms:
        out["mean_ms_ssim"] = float(np.mean(ms))
    return out


def archive_folder(src: str | os.PathLike, out: str | os.PathLike, spec: str,
                   split: str | list[str] | None = None, app: str | list[str] | None = None,
                   resolution: str | list[str] | None = None, workers: int = 1,
                   verify: bool = True, force: bool = False, progress: bool = True) -> ArchiveSummary:
    """Write the archive ``out`` of the files of ``src`` (see :mod:`baselines.archive.sources`)
    coded with ``spec`` (see :func:`baselines.archive.codecs.resolve_codec`).

    Raises :class:`Cloud3dError` when ``out`` exists and is not the archive of these files
    with this codec and settings (unless ``force``; when it is, it is reported as it is),
    when the input is empty, or when any file cannot be coded; files coded so far stay
    staged for a re-run.
    """
    t0 = time.perf_counter()
    ac = cached_codec(spec.strip())
    sources: Sources = list_sources(src, split=split, app=app, resolution=resolution)
    out = Path(out)
    if out.is_dir():
        raise Cloud3dError(f"{out} is a folder: give the archive's file name, e.g. {out}/archive.tar")
    if out.exists() and not force:
        done = _archive_of(out, ac, verify, sources)
        if done is None:
            raise Cloud3dError(f"{out} already exists and is not the archive of these files with "
                               "this codec: use --force to replace it")
        _finish(out)  # what a run killed in its clean-up left
        _clear_leftovers(out)
        return _summary_of(out, ac, sources, done, time.perf_counter() - t0)
    _clear_leftovers(out)
    stage = _stage_dir(out, ac, verify)
    entries: dict[int, dict[str, Any]] = {}
    jobs = []
    for i, sf in enumerate(sources.files):
        staged = _staged(stage, i, sf)
        if staged is not None:
            entries[i] = staged
        else:
            jobs.append((i, ac.spec, sf, stage, verify))
    reused = len(entries)
    failures = []
    for o in run_jobs(_encode_one, jobs, len(jobs), workers=workers, desc=f"archive {ac.name}",
                      progress=progress):
        if o.error:
            failures.append(o.error)
        else:
            entries[o.key] = o.value
    if failures:
        raise Cloud3dError(
            f"{len(failures)} of {len(sources.files)} files could not be archived (first: "
            f"{failures[0]}); the {len(entries)} coded are kept in {stage} and re-used by the same command"
        )
    ordered = [entries[i] for i in range(len(sources.files))]
    body = {
        "created": utc_stamp(), "tool": _tool_version(), "codec": ac.describe(),
        "source": sources.describe(), "dataset_rows": sources.dataset_rows,
        "verified": verify, "entries": ordered,
    }
    members = [(e["member"], stage / f"{i:06d}.bin") for i, e in enumerate(ordered)]
    with atomic_path(out) as tmp:
        write_archive(tmp, body, members, mtime=int(time.time()))
    _finish(out)
    return ArchiveSummary(out=out, codec=ac.spec, files=len(ordered), reused=reused,
                          original_bytes=sources.total_bytes, archive_bytes=out.stat().st_size,
                          seconds=time.perf_counter() - t0, quality=mean_quality(ordered))


def _tool_version() -> str:
    from cloud3d.provenance import package_versions

    return f"cloud3d {package_versions('cloud3d')['cloud3d']}"
