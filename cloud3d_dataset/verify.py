"""``verify``: check a dataset against its manifest, file by file.

For every manifest row: the file exists, its path follows the layout
(``{split}/{app}-{res}/{source_index}.png``), its size in bytes and SHA-256
match, and it decodes fully as an 8-bit RGB PNG of the recorded width and
height, which must also be the size of its resolution group (1280x720 in a ``720p``
group). Rows whose path leaves the layout are reported and never opened. Files under the
split folders that the manifest does not list are reported as extra, and the leftovers of
an interrupted build (temporary files, staging folders, pending markers) as ``leftover``.
Work runs in a process pool (SHA-256 + PNG decode per file) with a progress bar; an image
is decoded only after its header's size passed the pixel budget.
"""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass, field
from pathlib import Path

from cloud3d.errors import Cloud3dError
from cloud3d.imageio import check_image_size, parse_png_header
from cloud3d.lifetime import process_pool
from cloud3d_dataset.layout import SPLITS, scan_layout
from cloud3d_dataset.manifest import duplicate_paths, load_manifest, row_problems


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one file: ``kind`` is ``missing``, ``size``, ``sha256``,
    ``decode``, ``dimensions``, ``too-large``, ``format``, ``layout``, ``duplicate``, ``extra``
    or ``leftover``."""

    path: str
    kind: str
    detail: str


@dataclass
class VerifyReport:
    """Result of :func:`verify`: ``checked`` manifest rows, ``problems`` found (empty = all good)."""

    dataset: Path
    checked: int
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def by_kind(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for p in self.problems:
            out[p.kind] = out.get(p.kind, 0) + 1
        return out


def _check_one(job: tuple[str, str, int, str, int, int]) -> list[Problem]:
    """Worker: check one file (``(abspath, relpath, bytes, sha256, width, height)``)."""
    from PIL import Image

    path, rel, nbytes, sha, w, h = job
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return [Problem(rel, "missing", "file listed in the manifest does not exist")]
    except OSError as exc:
        return [Problem(rel, "missing", f"cannot read: {exc}")]
    out = []
    if len(data) != nbytes:
        out.append(Problem(rel, "size", f"{len(data)} bytes, manifest says {nbytes}"))
    digest = hashlib.sha256(data).hexdigest()
    if digest != sha:
        out.append(Problem(rel, "sha256", f"sha256 {digest[:12]}..., manifest says {sha[:12]}..."))
    try:
        header = parse_png_header(data[:33])
        check_image_size(header.width, header.height, rel)
    except (ValueError, Cloud3dError) as exc:
        out.append(Problem(rel, "decode", f"not decoded: {exc}"))
        return out
    try:
        with Image.open(io.BytesIO(data)) as im:
            fmt, mode, size = im.format, im.mode, im.size
            im.load()
    except Exception as exc:  # noqa: BLE001 - any decoder failure is a finding, not a crash
        out.append(Problem(rel, "decode", f"does not decode as an image: {exc}"))
        return out
    if fmt != "PNG":
        out.append(Problem(rel, "format", f"{fmt} file, expected PNG"))
    elif mode != "RGB" or not header.is_rgb8:
        out.append(Problem(rel, "format", f"PNG {header.describe_format()}, expected 8-bit RGB"))
    if size != (w, h):
        out.append(Problem(rel, "dimensions", f"{size[0]}x{size[1]}, manifest says {w}x{h}"))
    return out


def verify(
    dataset_dir: str | os.PathLike, workers: int | None = None, progress: bool = True
) -> VerifyReport:
    """Check every file of a dataset against ``manifest.csv``; see the module docstring.

    Raises :class:`~cloud3d.errors.Cloud3dError` only when the dataset or its
    manifest cannot be read; problems with files are returned in the report.
    """
    from tqdm import tqdm

    root = Path(dataset_dir)
    df = load_manifest(root, strict=False)
    report = VerifyReport(dataset=root, checked=len(df))
    report.problems.extend(Problem(p, "duplicate", "listed by more than one manifest row")
                           for p in duplicate_paths(df))
    df = df.drop_duplicates("path")
    jobs = []
    for r in df.itertuples(index=False):
        problems = row_problems(root, r)
        if problems:  # never open a row's file before its path and size are sane (e.g. "../x")
            report.problems.extend(Problem(r.path, kind, why) for kind, why in problems)
            continue
        jobs.append(
            (str(root / r.path), r.path, int(r.bytes), r.sha256, int(r.width), int(r.height))
        )
    nworkers = max(1, min(workers or os.cpu_count() or 1, len(jobs) or 1))
    chunk = max(1, min(64, len(jobs) // (nworkers * 8) or 1))
    if nworkers == 1:
        results = map(_check_one, jobs)
        pool = None
    else:
        pool = process_pool(nworkers)
        results = pool.map(_check_one, jobs, chunksize=chunk)
    try:
        for probs in tqdm(
            results, total=len(jobs), desc="verify", unit="img", disable=not progress
        ):
            report.problems.extend(probs)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    listed = set(df["path"])
    images, extras = scan_layout(root)
    for _group, _n, p in images:
        rel = p.relative_to(root).as_posix()
        if rel not in listed:
            report.problems.append(Problem(rel, "extra", "file not in the manifest"))
    for p in extras:
        report.problems.append(
            Problem(p.relative_to(root).as_posix(), "extra", "file does not fit the layout")
        )
    report.problems.extend(Problem(rel, "leftover", why) for rel, why in leftovers(root))
    report.problems.sort(key=lambda p: (p.path, p.kind))
    return report


#: files a dataset root may hold besides the split folders
ROOT_FILES = {"manifest.csv", "manifest.parquet", "README.md", "LICENSE"}


def leftovers(root: Path) -> list[tuple[str, str]]:
    """What an interrupted build left behind: ``(relative path, why)`` pairs.

    Temporary files (``.NAME.*.tmp`` from atomic writes) anywhere in the layout or at the
    root, and ``pending-*``/``staging-*``/``trash-*`` entries in the ``.cloud3d`` state folder.
    """
    out: list[tuple[str, str]] = []
    dirs = [root] + [d for s in SPLITS for d in [root / s, *sorted((root / s).glob("*"))] if d.is_dir()]
    for d in dirs:
        for f in sorted(d.glob(".*")):
            if f.is_file() and f.name.endswith((".tmp", ".parquet")) and f.name != ".cloud3d":
                out.append((f.relative_to(root).as_posix(), "temporary file of an interrupted write"))
    state = root / ".cloud3d"
    if state.is_dir():
        for f in sorted(state.iterdir()):
            if f.name.startswith(("pending-", "staging-", "trash-")) or f.name.endswith(".tmp"):
                out.append((f.relative_to(root).as_posix(), "state of an unfinished split"))
    return out
