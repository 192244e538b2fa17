"""Paths read from files (manifests, archives, streams) are untrusted: they stay inside their root.

A dataset's ``manifest.csv`` or an archive's member list may come from someone else. A
row naming ``/elsewhere/file`` or ``../../x`` must never make the toolkit read or write
outside the folder it was given. :func:`resolve_inside` is the one check every reader of
such paths goes through.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

from cloud3d.errors import Cloud3dError


def relpath_problem(rel: object) -> str | None:
    """Why ``rel`` is not a plain relative POSIX path (``None`` when it is one).

    Refused: non-strings, empty names, absolute paths, backslashes, NUL bytes, and any
    ``.``/``..``/empty component.
    """
    if not isinstance(rel, str) or not rel:
        return "empty or not a string"
    if "\\" in rel or "\x00" in rel:
        return "contains a backslash or NUL byte"
    if rel.startswith("/"):
        return "is absolute"
    parts = PurePosixPath(rel).parts
    if rel.endswith("/") or any(p in ("", ".", "..") for p in rel.split("/")) or not parts:
        return "has an empty, '.' or '..' component"
    return None


def resolve_inside(root: str | os.PathLike, rel: object, source: str) -> Path:
    """``root / rel`` if it names something inside ``root``, symlinks resolved; else refuse.

    Args:
        root: the trusted folder (dataset root, output folder of an archive...).
        rel: the untrusted relative path, POSIX separators.
        source: where ``rel`` came from, for the message (e.g. ``"manifest.csv row 7"``).

    Returns:
        The absolute path (not resolved: symlinks inside the root keep their names).

    Raises:
        Cloud3dError: ``rel`` is not a plain relative path, or it (or a symlink on its way)
        leads outside ``root``.
    """
    why = relpath_problem(rel)
    if why is not None:
        raise Cloud3dError(f"{source}: path {rel!r} {why}; refusing it (paths must stay inside {root})")
    base = Path(root).resolve()
    path = Path(root) / str(rel)
    real = path.resolve()
    if real != base and base not in real.parents:
        raise Cloud3dError(f"{source}: path {rel!r} leads outside {root} (through a symlink?); refusing it")
    return path
