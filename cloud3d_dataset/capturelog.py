"""Reading a capture's ``frames.csv``: which frames were kept, when, where, showing what.

Only these columns are used (others are ignored):

* ``index``: the frame number (its files are ``{res}/{index:06d}.png``);
* ``kept`` (1/true/yes) or, in logs written by ``cloud3d capture``, ``status == "kept"``;
  rows that are not kept, or have no ``index``, are dropped frames without files;
* ``capture_time``: epoch seconds or ISO-8601 text (no zone = UTC);
* ``file_{res}`` (``cloud3d capture``): the frame's file in folder ``res``, empty when
  it has none there. A game captured natively at two sizes has each frame in one folder;
  without these columns every frame is expected in every folder;
* ``scene``: what the frame shows (a game's track or map); ``--group scene`` uses it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from cloud3d.errors import Cloud3dError


@dataclass
class CaptureLog:
    """The kept frames of a ``frames.csv``, by capture index.

    ``times``: epoch seconds (NaN when unknown). ``folders``: the resolution folders each
    frame has files in, or ``None`` when the log has no ``file_{res}`` columns.
    ``scenes``: each frame's scene (``""`` when empty), or ``None`` without the column.
    """

    times: dict[int, float]
    folders: dict[int, frozenset[str]] | None
    scenes: dict[int, str] | None


def _truthy(v) -> bool:
    if isinstance(v, str):
        return v.strip().lower() in ("1", "true", "yes", "y", "t")
    try:
        return bool(v) and not (isinstance(v, float) and math.isnan(v))
    except (TypeError, ValueError):
        return False


def _epoch_seconds(col: pd.Series) -> pd.Series:
    """Capture times as float epoch seconds: numbers pass through, ISO-8601 strings are parsed
    (naive times are taken as UTC); anything unparsable becomes NaN."""
    num = pd.to_numeric(col, errors="coerce")
    text = col.where(num.isna() & col.notna())
    if text.notna().any():
        parsed = pd.to_datetime(text, errors="coerce", utc=True, format="ISO8601")
        secs = (parsed - pd.Timestamp("1970-01-01", tz="UTC")) / pd.Timedelta(seconds=1)
        num = num.where(num.notna(), secs)
    return num.astype("float64")


def _index(value: str, path: Path) -> int:
    try:
        number = float(value)
        if number.is_integer() and number >= 0:
            return int(number)
    except (TypeError, ValueError):
        pass
    raise Cloud3dError(f"{path}: bad frame index {value!r}; fix or remove that row")


def _kept_rows(path: Path) -> pd.DataFrame:
    try:
        df = pd.read_csv(path, dtype=object)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError) as exc:
        raise Cloud3dError(f"cannot read {path}: {exc}; fix or remove it") from None
    if "index" not in df.columns:
        raise Cloud3dError(f"{path} has no 'index' column; fix or remove it")
    if "kept" in df.columns:
        df = df[[_truthy(v) for v in df["kept"]]]
    elif "status" in df.columns:
        df = df[df["status"].astype(str).str.strip().str.lower() == "kept"]
    return df[df["index"].notna()]


def read_capture_log(path: Path) -> CaptureLog | None:
    """The kept frames of ``path`` (see the module docstring); ``None`` if there is no file."""
    if not path.is_file():
        return None
    df = _kept_rows(path)
    times = (_epoch_seconds(df["capture_time"]) if "capture_time" in df.columns
             else pd.Series(float("nan"), index=df.index))
    indices = [_index(v, path) for v in df["index"]]
    file_cols = [c for c in df.columns if c.startswith("file_") and len(c) > 5]
    folders = None
    if file_cols:
        cells = df[file_cols].notna().to_numpy() & (df[file_cols].fillna("").to_numpy() != "")
        names = [c[5:] for c in file_cols]
        folders = {i: frozenset(n for n, has in zip(names, row, strict=True) if has)
                   for i, row in zip(indices, cells, strict=True)}
    scenes = None
    if "scene" in df.columns:
        scenes = dict(zip(indices, df["scene"].fillna("").astype(str).str.strip(), strict=True))
    return CaptureLog(dict(zip(indices, times.astype(float), strict=True)), folders, scenes)
