"""Reading a raw capture folder: which frames exist, at which resolutions, when captured.

Three input shapes are understood (see :func:`open_capture`):

* a capture **app folder** ``RAW/{app}/`` holding resolution folders
  (``1080p``, ``720p``, ``native`` or any ``{h}p``) with ``{index:06d}.png``
  files, plus an optional ``frames.csv`` log (see :mod:`cloud3d_dataset.capturelog`
  for the columns used);
* a capture **root** ``RAW/`` holding several app folders (``app`` picks one);
* a **plain folder of PNGs** (one app, named by ``app``); capture order is the
  file-name order (numeric stems numerically), the resolution comes from the
  image size (1920x1080 -> ``1080p``, 1280x720 -> ``720p``, else ``{h}p``).

Every candidate file is read once: its SHA-256 is computed and its PNG chunk
structure checked (signature, every chunk's CRC-32, ``IHDR`` first, ``IEND``
present) without inflating pixels, so packaging stays at filesystem speed.
Truncated or corrupted files, non-PNG files and frames missing at one of the
resolutions are listed as problems and skipped.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from cloud3d.errors import Cloud3dError
from cloud3d.imageio import PngInfo, inspect_png
from cloud3d.names import check_app_name
from cloud3d.resolutions import resolution_name, size_problem
from cloud3d_dataset.capturelog import CaptureLog, read_capture_log

_RES_DIR_RE = re.compile(r"^(\d+p|native)$")
_INDEX_RE = re.compile(r"^(\d+)\.png$", re.IGNORECASE)

@dataclass
class Frame:
    """One captured frame: its capture index and time, and its file at each source folder."""

    index: int
    capture_time: float  # epoch seconds, NaN when unknown
    files: dict[str, Path] = field(default_factory=dict)  # source folder name -> file
    info: dict[str, PngInfo] = field(default_factory=dict)
    scene: str = ""  # what it shows (frames.csv's scene column), "" when unknown


@dataclass
class Capture:
    """A raw capture of one app, after inspection.

    ``frames`` are the usable frames in capture order; ``sources`` maps each
    source folder name (``1080p``, ``native``, ``plain``...) to its frame size
    ``(width, height)``; ``problems`` lists ``(path, reason)`` for every file
    or frame that was skipped; ``notes`` are informational lines.
    """

    app: str
    root: Path
    kind: str  # "app-folder" | "plain-folder"
    frames: list[Frame]
    sources: dict[str, tuple[int, int]]
    problems: list[tuple[str, str]]
    notes: list[str]
    fingerprint: str

    @property
    def has_times(self) -> bool:
        return bool(self.frames) and all(math.isfinite(f.capture_time) for f in self.frames)

    @property
    def has_scenes(self) -> bool:
        """True when every frame names its scene (``frames.csv`` has a filled ``scene`` column)."""
        return bool(self.frames) and all(f.scene for f in self.frames)

    def frames_with(self, src: str) -> list[int]:
        """Positions (in :attr:`frames`) of the frames that have a file in folder ``src``."""
        return [k for k, f in enumerate(self.frames) if src in f.files]


def _is_app_folder(p: Path) -> bool:
    if (p / "frames.csv").is_file():
        return True
    return any(c.is_dir() and _RES_DIR_RE.match(c.name) for c in p.iterdir())


def _numeric_key(name: str) -> tuple:
    stem = name.rsplit(".", 1)[0]
    return (0, int(stem), name) if stem.isdigit() else (1, 0, name)


def locate(raw_dir: str | os.PathLike, app: str | None) -> tuple[Path, str, str]:
    """Decide what ``raw_dir`` is; return ``(folder, app_name, kind)``.

    ``kind`` is ``"app-folder"`` or ``"plain-folder"``. Raises
    :class:`Cloud3dError` when the folder is missing, empty, or a capture root
    with several apps and no ``app`` given.
    """
    raw = Path(raw_dir)
    if not raw.is_dir():
        raise Cloud3dError(f"raw capture folder not found: {raw}")
    if _is_app_folder(raw):
        name = app or raw.resolve().name
        return raw, _checked_app(name, raw), "app-folder"
    subapps = sorted(
        c.name
        for c in raw.iterdir()
        if c.is_dir() and not c.name.startswith(".") and _is_app_folder(c)
    )
    if subapps:
        if app is None:
            if len(subapps) == 1:
                return raw / subapps[0], _checked_app(subapps[0], raw), "app-folder"
            raise Cloud3dError(
                f"{raw} holds captures of several apps ({', '.join(subapps)}): choose one with --app"
            )
        if app not in subapps:
            raise Cloud3dError(f"no capture of app {app!r} in {raw} (found: {', '.join(subapps)})")
        return raw / app, _checked_app(app, raw), "app-folder"
    if any(c.is_file() and c.suffix.lower() == ".png" for c in raw.iterdir()):
        if app is None:
            raise Cloud3dError(f"{raw} is a plain folder of PNGs: name its app with --app NAME")
        return raw, _checked_app(app, raw), "plain-folder"
    raise Cloud3dError(
        f"{raw} holds no capture: expected resolution folders (1080p/720p/native) with frames.csv, "
        "app folders of those, or PNG files"
    )


def _checked_app(name: str, raw: Path) -> str:
    try:
        return check_app_name(name)
    except ValueError as exc:
        raise Cloud3dError(f"{exc} (folder {raw}); give a valid name with --app") from None


def _fingerprint(paths: list[Path], extra: bytes = b"") -> str:
    h = hashlib.sha256(extra)
    for p in paths:
        st = p.stat()
        h.update(f"{p}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


@dataclass
class Listing:
    """The files of one app's capture, listed but not yet read (cheap: directory scans only)."""

    folder: Path
    app: str
    kind: str
    per_source: dict[str, dict[int, Path]]  # source folder -> capture index -> file
    log: CaptureLog | None  # the kept rows of frames.csv, None without it
    notes: list[str]
    fingerprint: str  # changes when any listed file, frames.csv or the folder changes


def list_capture(
    raw_dir: str | os.PathLike, app: str | None = None, sources: list[str] | None = None
) -> Listing:
    """List one app's capture files (see :func:`locate`); ``sources`` limits the folders read."""
    folder, app_name, kind = locate(raw_dir, app)
    notes: list[str] = []
    log: CaptureLog | None = None
    per_source: dict[str, dict[int, Path]] = {}
    if kind == "plain-folder":
        pngs = sorted(
            (c for c in folder.iterdir() if c.is_file() and c.suffix.lower() == ".png"),
            key=lambda c: _numeric_key(c.name),
        )
        per_source["plain"] = {i: p for i, p in enumerate(pngs)}
        notes.append("plain folder: capture order = file-name order; no capture times")
        csv_bytes = b""
    else:
        csv_path = folder / "frames.csv"
        log = read_capture_log(csv_path)
        csv_bytes = csv_path.read_bytes() if csv_path.is_file() else b""
        for d in sorted(folder.iterdir()):
            if not (d.is_dir() and _RES_DIR_RE.match(d.name)):
                continue
            if sources is not None and d.name not in sources:
                continue
            files: dict[int, Path] = {}
            for f in d.iterdir():
                m = _INDEX_RE.match(f.name)
                if m and f.is_file():
                    files[int(m.group(1))] = f
            per_source[d.name] = files
        if not per_source:
            raise Cloud3dError(
                f"{folder} has no resolution folders (1080p, 720p, native or {{h}}p) with PNGs"
            )
    all_paths = sorted(p for files in per_source.values() for p in files.values())
    fingerprint = _fingerprint(all_paths, csv_bytes + str(folder.resolve()).encode())
    return Listing(folder, app_name, kind, per_source, log, notes, fingerprint)


def source_folders(raw_dir: str | os.PathLike, app: str | None = None) -> list[str]:
    """Names of the resolution folders of a capture (``["plain"]`` for a plain folder)."""
    folder, _, kind = locate(raw_dir, app)
    if kind == "plain-folder":
        return ["plain"]
    return sorted(d.name for d in folder.iterdir() if d.is_dir() and _RES_DIR_RE.match(d.name))


def open_capture(
    raw_dir: str | os.PathLike | Listing,
    app: str | None = None,
    sources: list[str] | None = None,
    strict: bool = False,
    workers: int | None = None,
    progress: bool = True,
) -> Capture:
    """Find, read and check every frame of one app's capture.

    ``raw_dir`` may be a :class:`Listing` from :func:`list_capture`.
    ``sources`` limits which resolution folders are read (``None`` = all).
    Frames whose file is unreadable, corrupt, or missing in one of the read
    folders it should be in are dropped and listed in ``problems`` (a frame should
    be in every folder, unless ``frames.csv`` names its files: then in those).
    Within one folder all frames must share a size: frames of a minority size are
    dropped and reported (``strict=True`` makes that an error). Non-8-bit-RGB frames
    are kept (converted later) unless ``strict``, which refuses them.
    """
    listing = raw_dir if isinstance(raw_dir, Listing) else list_capture(raw_dir, app, sources)
    problems: list[tuple[str, str]] = []
    notes: list[str] = list(listing.notes)
    frames = _candidate_frames(listing, problems, notes)
    bad = _inspect_files(frames, listing.app, workers, progress, problems)
    sizes = {src: _folder_size(listing.folder / src, src, frames, bad, strict, problems, notes)
             for src in listing.per_source}
    sizes = {src: size for src, size in sizes.items() if size is not None}
    _check_pixel_formats(listing.folder, frames, bad, strict, notes)
    usable = [fr for i, fr in sorted(frames.items()) if i not in bad]
    if listing.kind == "plain-folder" and "plain" in sizes:
        sizes = _name_plain_folder(usable, sizes["plain"])
    return Capture(app=listing.app, root=listing.folder, kind=listing.kind, frames=usable,
                   sources=sizes, problems=problems, notes=notes,
                   fingerprint=listing.fingerprint)


def _candidate_frames(listing: Listing, problems: list, notes: list) -> dict[int, Frame]:
    """Frames to read: the kept rows of ``frames.csv`` (else every file seen), each with its
    files in the folders it should have; frames missing a file are reported and left out."""
    per_source, log = listing.per_source, listing.log
    if log is not None:
        candidates = sorted(log.times)
        for src, files in per_source.items():
            extra = sorted(set(files) - set(log.times))
            if extra:
                notes.append(f"{src}: {len(extra)} PNG file(s) not kept in frames.csv ignored")
    else:
        candidates = sorted(set().union(*[set(f) for f in per_source.values()]))
    frames: dict[int, Frame] = {}
    for i in candidates:
        wanted = list(per_source)
        if log is not None and log.folders is not None:  # the log says where its files are
            wanted = [src for src in per_source if src in log.folders.get(i, ())]
            if not wanted:
                continue  # its files are in folders not read this time
        missing = [src for src in wanted if i not in per_source[src]]
        for src in missing:
            problems.append((str(listing.folder / src / f"{i:06d}.png"),
                             "missing (frame skipped at every resolution)"))
        if missing:
            continue
        frames[i] = Frame(
            index=i, capture_time=log.times.get(i, float("nan")) if log else float("nan"),
            files={src: per_source[src][i] for src in wanted},
            scene=(log.scenes or {}).get(i, "") if log else "")
    return frames


def _inspect_files(frames: dict[int, Frame], app: str, workers: int | None, progress: bool,
                   problems: list) -> set[int]:
    """Read every file once (:func:`cloud3d.imageio.inspect_png`) in a thread pool; fill
    ``Frame.info`` and return the indices of frames with an unreadable or corrupt file."""
    from tqdm import tqdm

    jobs = [(i, src, p) for i, fr in frames.items() for src, p in fr.files.items()]

    def inspect(job):
        try:
            return job, inspect_png(job[2]), None
        except (OSError, ValueError) as exc:
            return job, None, str(exc)

    bad: set[int] = set()
    with ThreadPoolExecutor(max_workers=workers or min(8, (os.cpu_count() or 1) * 2)) as pool:
        for (i, src, p), info, err in tqdm(pool.map(inspect, jobs), total=len(jobs),
                                           desc=f"read {app}", unit="img", disable=not progress):
            if err is not None:
                problems.append((str(p), f"unreadable or corrupt: {err} (skipped)"))
                bad.add(i)
            else:
                frames[i].info[src] = info
    return bad


def _folder_size(path: Path, src: str, frames: dict[int, Frame], bad: set[int], strict: bool,
                 problems: list, notes: list) -> tuple[int, int] | None:
    """The frame size of folder ``src``: its most common one; frames of other sizes are
    reported and added to ``bad`` (``strict``: an error). ``None`` if it has no good frame."""
    counts: dict[tuple[int, int], int] = {}
    for i, fr in frames.items():
        inf = fr.info.get(src)
        if i not in bad and inf is not None:
            counts[(inf.width, inf.height)] = counts.get((inf.width, inf.height), 0) + 1
    if not counts:
        return None
    size = max(counts, key=lambda s: (counts[s], s))
    if len(counts) > 1:
        sizes = ", ".join(f"{w}x{h}: {c}" for (w, h), c in sorted(counts.items()))
        msg = f"mixed resolutions in {path} ({sizes})"
        if strict:
            raise Cloud3dError(msg + "; move the odd-sized frames out (or drop --strict to skip them)")
        notes.append(msg + f"; frames not {size[0]}x{size[1]} are skipped")
        for i, fr in frames.items():
            inf = fr.info.get(src)
            if i not in bad and inf is not None and (inf.width, inf.height) != size:
                problems.append((str(fr.files[src]), f"size {inf.width}x{inf.height} differs "
                                 f"from the folder's {size[0]}x{size[1]} (skipped)"))
                bad.add(i)
    why = size_problem(src, *size) if re.match(r"^\d+p$", src) else None  # not native, plain
    if why is not None:
        raise Cloud3dError(f"{path} holds {size[0]}x{size[1]} frames ({why}): rename the folder "
                           "(e.g. to native) or fix the capture")
    return size


def _check_pixel_formats(folder: Path, frames: dict[int, Frame], bad: set[int], strict: bool,
                         notes: list) -> None:
    """8-bit RGB is linked as is; other formats are converted later (noted) or refused."""
    odd: dict[str, int] = {}
    for i, fr in frames.items():
        if i in bad:
            continue
        for inf in fr.info.values():
            if not inf.is_rgb8:
                odd[inf.describe_format()] = odd.get(inf.describe_format(), 0) + 1
    if not odd:
        return
    formats = ", ".join(f"{k}: {v}" for k, v in sorted(odd.items()))
    if strict:
        raise Cloud3dError(f"{folder} has frames that are not 8-bit RGB ({formats}); drop --strict "
                           "to convert them")
    notes.append(f"converted to 8-bit RGB (alpha dropped, 16-bit scaled by 1/257): {formats}")


def _name_plain_folder(usable: list[Frame], size: tuple[int, int]) -> dict[str, tuple[int, int]]:
    """A plain folder's frames become the resolution named by their size (e.g. ``720p``)."""
    name = resolution_name(*size)
    for fr in usable:
        fr.files = {name: fr.files["plain"]}
        fr.info = {name: fr.info["plain"]}
    return {name: size}
