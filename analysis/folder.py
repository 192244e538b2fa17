"""Measure many images in parallel, with a resumable SQLite cache keyed by content hash.

Cache file: ``<cache_dir>/measures.sqlite`` (plain SQLite, no pickled data):

``measures(sha256, version, luma, width, height, note, entropy_luma,
entropy_rgb_mean, entropy_gradient, si)``
    one row per distinct image content; primary key
    ``(sha256, version, luma)`` where ``version`` is
    :data:`analysis.measures.MEASURES_VERSION`.
``file_hashes(path, fingerprint, sha256)``
    remembers the content hash of every file measured, so an unchanged file is not
    hashed again. The fingerprint is size, modification time, inode change time (ctime,
    which no user call can set back), inode and device: restoring a file's mtime after
    changing it does not fool it.

Results are stored under the SHA-256 of the bytes the worker actually decoded, never
under a hash merely claimed by a manifest, so a cache entry always describes its key.

Results are committed in small batches while the work runs, so an
interrupted run keeps what it finished and the next run resumes.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sqlite3
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import as_completed
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from analysis.measures import MEASURES, MEASURES_VERSION, image_measures, prepare_backend
from cloud3d.errors import Cloud3dError
from cloud3d.imageio import read_image_rgb
from cloud3d.lifetime import process_pool, stop_pool
from cloud3d.provenance import sha256_bytes, sha256_file

#: File extensions treated as images in a reference folder (case-insensitive).
IMAGE_EXTENSIONS = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pnm", ".gif"}
)

CACHE_NAME = "measures.sqlite"

_COLS = ("width", "height", "note", *MEASURES)


class MeasureCache:
    """Per-image results in SQLite, keyed by ``(sha256, MEASURES_VERSION, luma)``."""

    def __init__(self, cache_dir: str | os.PathLike):
        self.path = Path(cache_dir) / CACHE_NAME
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(self.path, timeout=30)
            self.db.execute("PRAGMA journal_mode=WAL")
            cols = ", ".join(f"{m} REAL" for m in MEASURES)
            self.db.execute(
                "CREATE TABLE IF NOT EXISTS measures (sha256 TEXT NOT NULL, version TEXT NOT NULL, "
                f"luma TEXT NOT NULL, width INTEGER, height INTEGER, note TEXT, {cols}, "
                "PRIMARY KEY (sha256, version, luma))"
            )
            self.db.execute(
                "CREATE TABLE IF NOT EXISTS file_hashes (path TEXT PRIMARY KEY, fingerprint TEXT, "
                "sha256 TEXT)"
            )
            self.db.commit()
        except sqlite3.DatabaseError as exc:
            raise Cloud3dError(
                f"cannot use the measures cache {self.path}: {exc} (is the folder writable? "
                "if the file is damaged, delete it to start afresh)"
            ) from None

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> MeasureCache:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def get_many(self, shas: Iterable[str], luma: str) -> dict[str, dict]:
        """Cached results for the given hashes (missing ones are absent from the dict)."""
        want = list(dict.fromkeys(shas))
        out: dict[str, dict] = {}
        names = ", ".join(_COLS)
        for i in range(0, len(want), 500):
            chunk = want[i : i + 500]
            q = (
                f"SELECT sha256, {names} FROM measures WHERE version=? AND luma=? "
                f"AND sha256 IN ({','.join('?' * len(chunk))})"
            )
            for row in self.db.execute(q, (MEASURES_VERSION, luma, *chunk)):
                out[row[0]] = dict(zip(_COLS, row[1:], strict=True))
        return out

    def put_many(self, items: Sequence[tuple[str, dict]], luma: str) -> None:
        """Store ``(sha256, result)`` pairs and commit."""
        names = ", ".join(_COLS)
        q = (
            f"INSERT OR REPLACE INTO measures (sha256, version, luma, {names}) "
            f"VALUES (?, ?, ?, {', '.join('?' * len(_COLS))})"
        )
        self.db.executemany(
            q, [(sha, MEASURES_VERSION, luma, *(r[c] for c in _COLS)) for sha, r in items]
        )
        self.db.commit()

    def file_sha(self, path: Path) -> str:
        """SHA-256 of ``path``'s bytes; from the ``file_hashes`` table when its fingerprint
        (size, mtime, ctime, inode, device) is unchanged, else read and hashed."""
        path = Path(path)
        st = path.stat()
        key = str(path.resolve())
        fingerprint = f"{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}:{st.st_ino}:{st.st_dev}"
        row = self.db.execute(
            "SELECT fingerprint, sha256 FROM file_hashes WHERE path=?", (key,)
        ).fetchone()
        if row and row[0] == fingerprint:
            return row[1]
        sha = sha256_file(path)
        self.db.execute(
            "INSERT OR REPLACE INTO file_hashes (path, fingerprint, sha256) VALUES (?, ?, ?)",
            (key, fingerprint, sha),
        )
        return sha

    def commit(self) -> None:
        self.db.commit()


@dataclass
class MeasureStats:
    """What a :func:`measure_paths` call did."""

    computed: int = 0  #: images decoded and measured in this call
    cached: int = 0  #: images answered from the cache without reading them
    corrupt: list[tuple[str, str]] = field(default_factory=list)  #: (path, message)


def _worker_init() -> None:
    """Workers ignore Ctrl-C: the parent handles it, saves finished results and stops them."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _task(args: tuple[str, str, str]) -> tuple[str, dict | None, str | None]:
    """Worker: measure one file whose bytes must hash to ``sha256``.

    Returns (path, result or None, error message or None).
    """
    path, luma, expect = args
    try:
        with open(path, "rb") as f:
            data = f.read()
        if sha256_bytes(data) != expect:
            return path, None, f"{path} changed while being measured (its sha256 is no longer {expect[:12]}...)"
        rgb, note = read_image_rgb(data, name=path)
        return path, {**image_measures(rgb, luma=luma), "note": note}, None
    except Cloud3dError as exc:
        return path, None, str(exc)
    except (OSError, ValueError, MemoryError) as exc:
        return path, None, f"cannot measure {path}: {exc}"


def _pool_context() -> multiprocessing.context.BaseContext:
    """The worker start method: ``fork`` where the platform has it, else ``spawn``.

    A spawned worker re-runs the caller's main script to rebuild its ``__main__``; from a
    plain script without an ``if __name__ == "__main__"`` guard that runs the caller's
    ``measure_folder`` call again inside the worker, which fails and is restarted for ever.
    Forked workers run nothing of the caller: they only measure (file reads, PNG decoding,
    numpy and numba kernels, no threads of their own).
    """
    if "fork" in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("spawn")  # pragma: no cover - Windows


def default_workers() -> int:
    """One worker process per CPU core available to this process."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


def measure_paths(
    paths: Sequence[str | os.PathLike],
    sha256s: Sequence[str],
    cache: MeasureCache,
    luma: str = "bt601",
    workers: int | None = None,
    progress: bool = True,
    desc: str = "measure",
) -> tuple[pd.DataFrame, MeasureStats]:
    """Measures of every file, from the cache where possible, else decoded in worker processes.

    ``sha256s[i]`` is the content hash of ``paths[i]`` as :meth:`MeasureCache.file_sha`
    found it; a worker re-hashes the bytes it decodes and refuses a file whose content no
    longer matches, so results are always stored under the hash of what was measured.
    Files sharing a hash are measured once.
    Returns a DataFrame with one row per input path that could be measured
    (columns ``path``, ``sha256``, ``width``, ``height``, ``note`` and the
    :data:`MEASURES`), and the stats, whose ``corrupt`` lists files that
    could not be decoded.
    """
    paths = [str(p) for p in paths]
    if len(paths) != len(sha256s):
        raise ValueError("paths and sha256s differ in length")
    known = cache.get_many(sha256s, luma)
    stats = MeasureStats(cached=sum(1 for s in sha256s if s in known))
    todo: dict[str, str] = {}  # sha -> first path with that content
    for p, s in zip(paths, sha256s, strict=True):
        if s not in known and s not in todo:
            todo[s] = p
    failed = _measure_missing(todo, cache, luma, max(1, workers or default_workers()), progress,
                              desc, known, stats)
    rows = []
    for p, s in zip(paths, sha256s, strict=True):
        if s in known:
            rows.append({"path": p, "sha256": s, **known[s]})
        else:
            stats.corrupt.append((p, failed.get(s, "not measured")))
    df = pd.DataFrame(rows, columns=["path", "sha256", *_COLS])
    return df, stats


def _measure_missing(todo: dict[str, str], cache: MeasureCache, luma: str, workers: int,
                     progress: bool, desc: str, known: dict[str, dict], stats: MeasureStats
                     ) -> dict[str, str]:
    """Measure ``todo`` (``{sha: path}``) in ``workers`` processes (1: here), adding each
    result to ``known`` and committing it to the cache as it comes (every 64 results or 2 s,
    and on Ctrl-C); returns ``{sha: message}`` of the files that could not be measured."""
    from tqdm import tqdm

    path_sha = {p: s for s, p in todo.items()}
    failed: dict[str, str] = {}  # sha -> message
    tasks = [(p, luma, s) for s, p in todo.items()]
    pending: list[tuple[str, dict]] = []
    last_commit = time.monotonic()

    def flush() -> None:
        nonlocal last_commit
        if pending:
            cache.put_many(pending, luma)
            pending.clear()
        last_commit = time.monotonic()

    pool = futures = None
    if workers > 1 and len(tasks) > 1:
        prepare_backend()  # compile once here: the workers inherit (or load) the kernel
        # workers fork before the progress bar's monitor thread starts (submitting starts
        # them), and die with this process (cloud3d.lifetime)
        pool = process_pool(min(workers, len(tasks)), initializer=_worker_init,
                            mp_context=_pool_context())
        futures = [pool.submit(_task, t) for t in tasks]
    bar = tqdm(total=len(tasks), desc=desc, unit="img", disable=not progress or not tasks)
    try:
        if pool is None:
            results = map(_task, tasks)
        else:
            results = (f.result() for f in as_completed(futures))
        for path, res, err in results:
            sha = path_sha[path]
            if err is not None:
                failed[sha] = err
            else:
                known[sha] = res
                pending.append((sha, res))
                stats.computed += 1
            bar.update(1)
            if len(pending) >= 64 or time.monotonic() - last_commit > 2.0:
                flush()
        flush()
    finally:
        if pool is not None:
            stop_pool(pool)
        bar.close()
        try:
            flush()  # keep finished work on Ctrl-C too
        except sqlite3.Error:
            pass
    return failed


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/cloud3d/analysis`` (default ``~/.cache/cloud3d/analysis``)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "cloud3d" / "analysis"


def list_images(folder: str | os.PathLike) -> tuple[list[Path], list[Path]]:
    """Image files under ``folder`` (recursive, sorted) and the other files skipped.

    A file is an image when its extension is in :data:`IMAGE_EXTENSIONS`;
    hidden files and folders (names starting with ``.``) are ignored.
    """
    root = Path(folder)
    if not root.is_dir():
        raise Cloud3dError(f"reference folder not found: {root}")
    images: list[Path] = []
    skipped: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            p = Path(dirpath) / name
            (images if p.suffix.lower() in IMAGE_EXTENSIONS else skipped).append(p)
    return sorted(images), sorted(skipped)


def measure_folder(
    folder: str | os.PathLike,
    cache_dir: str | os.PathLike | None = None,
    luma: str = "bt601",
    workers: int | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Measures of every image under ``folder`` (e.g. DIV2K_train_HR).

    Returns one row per decodable image: ``path`` (relative to ``folder``,
    POSIX), ``sha256``, ``width``, ``height``, ``note`` and the
    :data:`MEASURES`. ``df.attrs`` holds ``skipped`` (non-image files,
    relative paths), ``corrupt`` (``(path, message)`` pairs),
    ``computed`` and ``cached`` counts. Results are cached in
    ``cache_dir`` (default :func:`default_cache_dir`, so a read-only
    reference folder is never written to). Raises
    :class:`Cloud3dError` if the folder holds no image.
    """
    root = Path(folder)
    images, skipped = list_images(root)
    if not images:
        raise Cloud3dError(
            f"no images in {root} (looked for {', '.join(sorted(IMAGE_EXTENSIONS))}; "
            f"{len(skipped)} other file(s) skipped)"
        )
    with MeasureCache(cache_dir or default_cache_dir()) as cache:
        shas = []
        for p in images:
            try:
                shas.append(cache.file_sha(p))
            except OSError as exc:
                raise Cloud3dError(f"cannot read {p}: {exc.strerror or exc}") from None
        cache.commit()
        df, stats = measure_paths(
            images, shas, cache, luma=luma, workers=workers, progress=progress, desc="reference"
        )
    df["path"] = [Path(p).relative_to(root).as_posix() for p in df["path"]]
    df.attrs["skipped"] = [p.relative_to(root).as_posix() for p in skipped]
    df.attrs["corrupt"] = [(Path(p).relative_to(root).as_posix(), m) for p, m in stats.corrupt]
    df.attrs["computed"] = stats.computed
    df.attrs["cached"] = stats.cached
    return df
