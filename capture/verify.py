"""Check that a capture folder's files and ``frames.csv`` agree (read-only).

Used by tests and handy after a crash: :func:`check_capture` decodes every
PNG and compares it with the log. The recorder repairs what it finds on its
next start (see :meth:`capture.framelog.FrameLog.reconcile`).
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

from cloud3d.errors import Cloud3dError
from cloud3d.imageio import read_image_rgb
from cloud3d.provenance import sha256_file

from .framelog import COLUMNS, LEGACY_COLUMNS
from .resize import NAMES

_PNG_RE = re.compile(r"^\d{6,}\.png$")


def check_capture(app_dir: str | Path, decode: bool = True) -> dict[str, list[str]]:
    """Compare ``app_dir/frames.csv`` with the PNGs beside it.

    Returns problem lists (empty lists mean consistent):

    * ``missing``: rows whose file does not exist;
    * ``hash_mismatch``: files whose SHA-256 differs from their row;
    * ``undecodable``: PNGs that fail to decode fully (or are not 8-bit RGB);
    * ``unlogged``: PNGs that no row refers to (a crash between writing a PNG and its row);
    * ``temp_files``: leftover ``.*.tmp`` files of interrupted atomic writes;
    * ``partial_line``: ``["frames.csv"]`` if its last line is incomplete.
    """
    app_dir = Path(app_dir)
    out: dict[str, list[str]] = {k: [] for k in
                                 ("missing", "hash_mismatch", "undecodable", "unlogged",
                                  "temp_files", "partial_line")}
    log = app_dir / "frames.csv"
    text = log.read_text(encoding="utf-8") if log.exists() else ""
    if text and not text.endswith("\n"):
        out["partial_line"].append("frames.csv")
        text = text[: text.rfind("\n") + 1]
    rows = list(csv.DictReader(io.StringIO(text))) if text else []
    if rows and list(rows[0].keys()) not in (COLUMNS, LEGACY_COLUMNS):
        raise Cloud3dError(f"{log} does not have the capture columns")
    logged: dict[str, str] = {}
    for row in rows:
        for res in NAMES:
            if row[f"file_{res}"]:
                logged[row[f"file_{res}"]] = row[f"sha256_{res}"]
    for rel, digest in logged.items():
        p = app_dir / rel
        if not p.is_file():
            out["missing"].append(rel)
        elif sha256_file(p) != digest:
            out["hash_mismatch"].append(rel)
    for res in NAMES:
        folder = app_dir / res
        if not folder.is_dir():
            continue
        for p in sorted(folder.iterdir()):
            rel = f"{res}/{p.name}"
            if p.name.startswith(".") and p.name.endswith(".tmp"):
                out["temp_files"].append(rel)
                continue
            if not _PNG_RE.match(p.name):
                continue
            if rel not in logged:
                out["unlogged"].append(rel)
            if decode:
                try:
                    _, note = read_image_rgb(p)
                    if note is not None:
                        out["undecodable"].append(f"{rel} ({note})")
                except Cloud3dError:
                    out["undecodable"].append(rel)
    return out
