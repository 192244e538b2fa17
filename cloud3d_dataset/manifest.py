"""``manifest.csv``: the one table that says what a dataset contains.

One row per image file, columns (in this order):

============== ==========================================================
split          ``train`` | ``validation`` | ``test``
app            application name, e.g. ``supertuxkart``
resolution     ``1080p``, ``720p`` (any ``<height>p``)
path           path relative to the dataset root, POSIX separators
width, height  pixels (from the PNG header)
bytes          file size on disk
sha256         hex SHA-256 of the file bytes
source_index   ``n`` in ``{n}.png``: the frame's position among the app's dataset frames
capture_time   seconds since the epoch when captured; empty when unknown
============== ==========================================================

Rows are sorted by (split, app, resolution, source_index), so the same
dataset always gives a byte-identical file. A Parquet copy
(``manifest.parquet``) is written too when pyarrow is installed.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pandas as pd

from cloud3d.atomic import atomic_path, atomic_write_text
from cloud3d.errors import Cloud3dError
from cloud3d.imageio import check_image_size, read_png_header
from cloud3d.provenance import sha256_file
from cloud3d.resolutions import size_problem
from cloud3d.safepaths import resolve_inside
from cloud3d_dataset.layout import SPLITS, layout_problem, scan_layout

MANIFEST_NAME = "manifest.csv"
MANIFEST_COLUMNS: tuple[str, ...] = (
    "split",
    "app",
    "resolution",
    "path",
    "width",
    "height",
    "bytes",
    "sha256",
    "source_index",
    "capture_time",
)

def _sort(df: pd.DataFrame) -> pd.DataFrame:
    order = {s: i for i, s in enumerate(SPLITS)}
    key = df["split"].map(order)
    df = df.assign(_k=key).sort_values(["_k", "app", "resolution", "source_index"], kind="stable")
    return df.drop(columns="_k").reset_index(drop=True)


def normalize(df: pd.DataFrame) -> pd.DataFrame:
    """Return ``df`` with exactly :data:`MANIFEST_COLUMNS`, proper dtypes, canonical order."""
    missing = [c for c in MANIFEST_COLUMNS if c not in df.columns]
    if missing:
        raise Cloud3dError(f"manifest is missing columns: {', '.join(missing)}")
    df = df.loc[:, list(MANIFEST_COLUMNS)].copy()
    for c in ("width", "height", "bytes", "source_index"):
        df[c] = _int_column(df, c)
    df["capture_time"] = pd.to_numeric(df["capture_time"], errors="coerce").astype("float64")
    for c in ("split", "app", "resolution", "path", "sha256"):
        # an empty field is "" (pandas 3 keeps it as a float NaN through astype(str))
        df[c] = df[c].where(df[c].notna(), "").astype(str)
    return _sort(df)


def duplicate_paths(df: pd.DataFrame) -> list[str]:
    """Paths listed by more than one row of a manifest (each once, sorted)."""
    return sorted(set(df.loc[df["path"].duplicated(), "path"]))


def _int_column(df: pd.DataFrame, column: str) -> pd.Series:
    """``df[column]`` as int64; :class:`Cloud3dError` naming the first row that is not a
    non-negative integer (row numbers count the header as line 1, as an editor shows them)."""
    values = pd.to_numeric(df[column], errors="coerce")
    bad = values.isna() | (values < 0) | (values != values.round()) | (values > 2**53)
    if bad.any():
        pos = int(bad.to_numpy().nonzero()[0][0])
        raise Cloud3dError(f"manifest line {pos + 2}: {column} {df[column].iloc[pos]!r} is not a "
                           "non-negative integer (corrupt or hand-edited manifest.csv?)")
    return values.astype("int64")


def row_problems(root: Path, row: Any) -> list[tuple[str, str]]:
    """What is wrong with one manifest row before any file is opened, as ``(kind, message)``
    pairs with kind ``layout``, ``dimensions`` (size not that of the resolution group) or
    ``too-large`` (over the pixel budget) (empty list: nothing).

    Checked: the path is the layout's ``{split}/{app}-{res}/{n}.png`` for the row's own
    fields (``n`` may be zero-padded, see :func:`~cloud3d_dataset.layout.layout_problem`) and stays inside ``root`` (symlinks resolved); the recorded size belongs to the
    row's resolution group and fits the pixel budget.
    """
    out = []
    try:
        why = layout_problem(row.path, row.split, row.app, row.resolution, row.source_index)
    except ValueError as exc:
        out.append(("layout", str(exc)))
    else:
        if why:
            out.append(("layout", why))
        else:
            try:
                resolve_inside(root, row.path, "manifest")
            except Cloud3dError as exc:
                out.append(("layout", str(exc)))
    why = size_problem(row.resolution, int(row.width), int(row.height))
    if why:
        out.append(("dimensions", why))
    try:
        check_image_size(int(row.width), int(row.height), row.path)
    except Cloud3dError as exc:
        out.append(("too-large", str(exc)))
    return out


def write_manifest(dataset_dir: str | os.PathLike, df: pd.DataFrame) -> Path:
    """Write ``manifest.csv`` (and ``manifest.parquet`` if pyarrow is present) atomically."""
    root = Path(dataset_dir)
    df = normalize(df)
    text = df.to_csv(index=False, lineterminator="\n", float_format="%.6f")
    out = root / MANIFEST_NAME
    atomic_write_text(out, text)
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        pass
    else:
        with atomic_path(root / "manifest.parquet", suffix=".parquet") as tmp:
            df.to_parquet(tmp, index=False)
    return out


def load_manifest(dataset_dir: str | os.PathLike, strict: bool = True) -> pd.DataFrame:
    """Read a dataset's manifest as a DataFrame with :data:`MANIFEST_COLUMNS`.

    A manifest may come from someone else, so with ``strict`` (the default, for every
    reader that then opens the files) a row whose path is not the layout's (e.g. one that
    leaves the dataset folder), whose recorded size is over the pixel budget, or a path
    listed twice stops the command with one message (see :func:`row_problems`). ``cloud3d verify`` reads with
    ``strict=False`` and reports such rows, and sizes that do not fit their group, instead.

    Raises :class:`Cloud3dError` if the folder or manifest is missing (with the hint to
    run ``cloud3d index``), unreadable, or (strict) holds a bad row.
    """
    root = Path(dataset_dir)
    if not root.is_dir():
        raise Cloud3dError(f"dataset folder not found: {root}")
    path = root / MANIFEST_NAME
    if not path.is_file():
        raise Cloud3dError(
            f"{root} has no {MANIFEST_NAME}: build it with `cloud3d split` or, for an existing "
            f"dataset in the {{split}}/{{app}}-{{res}}/{{n}}.png layout, run `cloud3d index {root}`"
        )
    try:
        df = pd.read_csv(path, dtype={"sha256": str, "path": str, "app": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise Cloud3dError(f"cannot read {path}: {exc}") from None
    df = normalize(df)
    if strict:
        twice = duplicate_paths(df)
        if twice:
            raise Cloud3dError(f"{path}: {len(twice)} path(s) listed more than once, e.g. "
                               f"{twice[0]!r} (run `cloud3d verify {root}` for every problem)")
        for row in df.itertuples(index=False):
            problems = [p for p in row_problems(root, row) if p[0] != "dimensions"]
            if problems:
                raise Cloud3dError(f"{path}: row for {row.path!r}: {problems[0][1]} "
                                   f"(run `cloud3d verify {root}` for every problem)")
    return df


def select(
    df: pd.DataFrame,
    split: str | Iterable[str] | None = None,
    app: str | Iterable[str] | None = None,
    resolution: str | Iterable[str] | None = None,
) -> pd.DataFrame:
    """Rows of a manifest matching the given split/app/resolution (each a value or a list; ``None`` = all)."""
    mask = pd.Series(True, index=df.index)
    for col, want in (("split", split), ("app", app), ("resolution", resolution)):
        if want is None:
            continue
        values = [want] if isinstance(want, str) else list(want)
        mask &= df[col].isin(values)
    return df[mask].reset_index(drop=True)


def image_paths(
    dataset_dir: str | os.PathLike,
    split: str | Iterable[str] | None = None,
    app: str | Iterable[str] | None = None,
    resolution: str | Iterable[str] | None = None,
) -> pd.DataFrame:
    """Manifest rows for a selection, with an added ``abspath`` column. Raises if nothing matches."""
    root = Path(dataset_dir)
    df = select(load_manifest(root), split=split, app=app, resolution=resolution)
    if df.empty:
        raise Cloud3dError(
            f"no images in {root} for split={split or 'any'} app={app or 'any'} "
            f"resolution={resolution or 'any'} (see `cloud3d stats {root}`)"
        )
    df["abspath"] = [str(root / p) for p in df["path"]]  # each path checked by load_manifest
    return df


def _row_for(root: Path, group, n: int, path: Path) -> dict:
    header = read_png_header(path)
    w, h = header.width, header.height
    return {
        "split": group.split,
        "app": group.app,
        "resolution": group.resolution,
        "path": path.relative_to(root).as_posix(),
        "width": w,
        "height": h,
        "bytes": path.stat().st_size,
        "sha256": sha256_file(path),
        "source_index": n,
        "capture_time": float("nan"),
    }


def _refuse_same_number(root: Path, images: list) -> None:
    """One message for two files of one group that name the same frame (``1.png``, ``01.png``)."""
    seen: dict[tuple, Path] = {}
    for group, n, path in images:
        first = seen.setdefault((group, n), path)
        if first is not path:
            raise Cloud3dError(
                f"{root}: {first.relative_to(root).as_posix()} and {path.relative_to(root).as_posix()} "
                f"are both frame {n} of {group.relpath}: rename or remove one, then index again")


def index_dataset(dataset_dir: str | os.PathLike, workers: int | None = None, progress: bool = True) -> pd.DataFrame:
    """Build and write ``manifest.csv`` for a dataset that has the layout but no manifest.

    Reads each PNG's header (size) and bytes (sha256); does not decode pixels. Frame names
    may be zero-padded (``0001.png`` is frame 1); two names for one frame are refused.
    Files that do not fit the layout are ignored here (``cloud3d verify``
    reports them). Returns the manifest.
    """
    from tqdm import tqdm

    root = Path(dataset_dir)
    if not root.is_dir():
        raise Cloud3dError(f"dataset folder not found: {root}")
    images, _extras = scan_layout(root)
    if not images:
        raise Cloud3dError(
            f"no images found under {root}: expected {{train,validation,test}}/{{app}}-{{res}}/{{n}}.png"
        )
    _refuse_same_number(root, images)
    workers = workers or min(8, (os.cpu_count() or 1) * 2)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        rows = list(
            tqdm(
                pool.map(lambda t: _row_for(root, *t), images),
                total=len(images),
                desc="index",
                unit="img",
                disable=not progress,
            )
        )
    df = pd.DataFrame(rows, columns=list(MANIFEST_COLUMNS))
    write_manifest(root, df)
    return normalize(df)
