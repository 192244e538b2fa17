"""``frames.csv``: the per-frame capture log, appended row by row, and its repair on start.

One row per grabbed frame, written only after all of that frame's PNGs are
safely renamed into place (so a row never points at a missing file), then
flushed and fsync'ed. A capture killed at any moment therefore leaves, at
worst, PNGs without rows and a partly written last line; :meth:`FrameLog.reconcile`
repairs both on the next start: it cuts the partial line, removes rows whose
files vanished, deletes PNGs (and temp files) no row refers to, and returns
the next free frame index so numbering continues.

Columns (pandas: ``pd.read_csv(path, dtype={"reason": str})``):

========================  ===========================================================
index                     frame number of kept frames (file ``{res}/{index:06d}.png``); empty if dropped
status                    ``kept`` or ``dropped``
reason                    drop reason (``black``, ``uniform``, ``duplicate``, ``writers_behind``); empty if kept
run                       start time of the capture run (UTC, ``YYYYmmddTHHMMSSZ``)
grab                      0-based number of the grab within its run
capture_time              UTC ISO-8601 time of the grab (microseconds)
source                    source kind (``window``, ``screen``, ``launch``, ``video``, ``synthetic``)
synthetic                 ``1`` for the built-in synthetic scene, else ``0``
scene                     what the app showed (a game's track, map or scenario, as named by its
                          recipe); empty when the source does not say. ``cloud3d split --group
                          scene`` keeps whole scenes in one split
x, y, width, height       source geometry of the grabbed frame, pixels
grab_ms                   time to grab the frame, milliseconds
encode_ms                 PNG encoding time summed over resolutions, milliseconds
file_{res}, sha256_{res}  for res in 1080p, 720p, native: path relative to the app folder and SHA-256; empty if not written
========================  ===========================================================
"""

from __future__ import annotations

import csv
import io
import os
import re
import threading
from pathlib import Path

from cloud3d.atomic import atomic_write_text
from cloud3d.errors import Cloud3dError

from .resize import NAMES

COLUMNS = [
    "index", "status", "reason", "run", "grab", "capture_time", "source", "synthetic", "scene",
    "x", "y", "width", "height", "grab_ms", "encode_ms",
]
for _r in NAMES:
    COLUMNS += [f"file_{_r}", f"sha256_{_r}"]

#: the columns before ``scene`` was added; such logs are upgraded (scene left empty) on start
LEGACY_COLUMNS = [c for c in COLUMNS if c != "scene"]

_PNG_RE = re.compile(r"^\d{6,}\.png$")


def frame_relpath(resolution: str, index: int) -> str:
    """Path of a frame's PNG relative to the app folder, e.g. ``720p/000042.png``."""
    return f"{resolution}/{index:06d}.png"


class FrameLog:
    """Thread-safe appender for ``{app_dir}/frames.csv`` (see module doc for columns)."""

    def __init__(self, app_dir: str | os.PathLike) -> None:
        self.app_dir = Path(app_dir)
        self.path = self.app_dir / "frames.csv"
        self._lock = threading.Lock()
        self._fh = None

    # -- start-up repair ---------------------------------------------------------------
    def reconcile(self) -> tuple[int, dict[str, int]]:
        """Make log and files agree; return ``(next_index, counts of repairs)``."""
        fixes = {"partial_line": 0, "rows_without_files": 0, "files_without_rows": 0, "temp_files": 0,
                 "added_scene_column": 0}
        rows: list[dict[str, str]] = []
        if self.path.exists():
            text = self.path.read_text(encoding="utf-8")
            if text and not text.endswith("\n"):
                text = text[: text.rfind("\n") + 1]
                fixes["partial_line"] = 1
            reader = csv.DictReader(io.StringIO(text))
            legacy = bool(text) and reader.fieldnames == LEGACY_COLUMNS
            fixes["added_scene_column"] = int(legacy)
            if text and not legacy and reader.fieldnames != COLUMNS:
                raise Cloud3dError(
                    f"{self.path} has unexpected columns {reader.fieldnames}: it was not written by "
                    "this version of cloud3d capture; move it away or choose another --out folder"
                )
            for row in reader:
                files = [row[f"file_{r}"] for r in NAMES if row.get(f"file_{r}")]
                if row["status"] == "kept" and not all((self.app_dir / f).is_file() for f in files):
                    fixes["rows_without_files"] += 1
                    continue
                rows.append(row)
        referenced = {row[f"file_{r}"] for row in rows for r in NAMES if row.get(f"file_{r}")}
        for res in NAMES:
            folder = self.app_dir / res
            if not folder.is_dir():
                continue
            for p in folder.iterdir():
                rel = f"{res}/{p.name}"
                if p.name.startswith(".") and p.name.endswith(".tmp"):
                    p.unlink()
                    fixes["temp_files"] += 1
                elif _PNG_RE.match(p.name) and rel not in referenced:
                    p.unlink()
                    fixes["files_without_rows"] += 1
        if (not self.path.exists() or fixes["partial_line"] or fixes["rows_without_files"]
                or fixes["added_scene_column"]):
            buf = io.StringIO()
            w = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n", restval="")
            w.writeheader()
            w.writerows(rows)
            atomic_write_text(self.path, buf.getvalue())
        indices = [int(r["index"]) for r in rows if r["index"]]
        return (max(indices) + 1 if indices else 0), fixes

    # -- appending ---------------------------------------------------------------------
    def append(self, row: dict) -> None:
        """Append one row (missing columns left empty), flush and fsync it."""
        buf = io.StringIO()
        csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n", extrasaction="raise").writerow(
            {k: ("" if row.get(k) is None else row.get(k)) for k in COLUMNS}
        )
        data = buf.getvalue().encode("utf-8")
        with self._lock:
            if self._fh is None:
                self._fh = open(self.path, "ab")
            self._fh.write(data)
            self._fh.flush()
            os.fsync(self._fh.fileno())

    def close(self) -> None:
        with self._lock:
            if self._fh is not None:
                self._fh.close()
                self._fh = None
