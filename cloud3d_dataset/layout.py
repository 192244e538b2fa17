"""The dataset's folder layout: ``{split}/{app}-{res}/{n}.png``.

Numbering convention (as in the reference Cloud 3D dataset, e.g.
``test/dota2-1080p/665.png``): ``n`` is the frame's position, 0-based, in the
capture order of its app (all kept frames, across every split). A split folder
therefore holds a subset of 0..N-1, and the same ``n`` names the same source
frame at every resolution.

Frames we write are named ``{n}.png`` (no leading zeros). Frames a user brings may be
zero-padded (``0001.png``): every reader accepts any ASCII decimal name, and the frame's
number is its value (``0001.png`` is frame 1). Two files of one group with the same
number (``1.png`` and ``01.png``) are refused by ``cloud3d index``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from cloud3d.names import check_app_name

SPLITS: tuple[str, ...] = ("train", "validation", "test")

_GROUP_RE = re.compile(r"^(?P<app>[A-Za-z0-9_.+]+(?:-[A-Za-z0-9_.+]+)*?)-(?P<res>\d+p)$")
# a frame file's name: ASCII digits only (str.isdigit() would also take other scripts'
# digits), at most 12 of them (a trillion frames), so that int() stays cheap on any name
_FRAME_RE = re.compile(r"^(?P<n>[0-9]{1,12})\.png$")


@dataclass(frozen=True)
class Group:
    """One ``{app}-{res}`` folder inside a split."""

    split: str
    app: str
    resolution: str  # e.g. "1080p", "720p" (any "<height>p")

    @property
    def relpath(self) -> str:
        return f"{self.split}/{self.app}-{self.resolution}"


def group_dirname(app: str, resolution: str) -> str:
    """Folder name for an app at a resolution, e.g. ``("dota2", "1080p") -> "dota2-1080p"``."""
    return f"{check_app_name(app)}-{resolution}"


def parse_group_dirname(name: str) -> tuple[str, str] | None:
    """Inverse of :func:`group_dirname`; ``None`` if ``name`` is not ``{app}-{N}p``."""
    m = _GROUP_RE.match(name)
    if not m:
        return None
    return m.group("app"), m.group("res")


def image_relpath(split: str, app: str, resolution: str, n: int) -> str:
    """Relative path of frame ``n``: ``{split}/{app}-{res}/{n}.png`` (POSIX separators)."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    return f"{split}/{group_dirname(app, resolution)}/{int(n)}.png"


def frame_number(name: str) -> int | None:
    """The frame number of a file name: ``"12.png" -> 12``, ``"0012.png" -> 12``; ``None``
    for a name that is not ASCII digits (1-12 of them) followed by ``.png``."""
    m = _FRAME_RE.match(name)
    return int(m.group("n")) if m else None


def layout_problem(path: str, split: str, app: str, resolution: str, n: int) -> str | None:
    """Why ``path`` is not frame ``n`` of ``{split}/{app}-{res}`` in the layout (``None``: it is).

    The folder must be exactly the group's, and the file name any decimal spelling of ``n``
    (``7.png`` or ``0007.png``). Raises :class:`ValueError` for a bad split or app name.
    """
    expect = image_relpath(split, app, resolution, n)
    folder, _, name = path.rpartition("/")
    if folder != expect.rpartition("/")[0] or frame_number(name) != int(n):
        return f"path {path!r} is not the layout's {expect!r} (or a zero-padded form of it)"
    return None


def scan_layout(root: str | Path) -> tuple[list[tuple[Group, int, Path]], list[Path]]:
    """Find every ``{split}/{app}-{res}/{n}.png`` under ``root``.

    Returns ``(images, extras)``: ``images`` is a sorted list of
    ``(group, n, absolute_path)``; ``extras`` lists files under the split
    folders that do not fit the layout (wrong names, other extensions).
    Hidden files (``.name``, e.g. temporary files) are ignored.
    """
    root = Path(root)
    images: list[tuple[Group, int, Path]] = []
    extras: list[Path] = []
    for split in SPLITS:
        sdir = root / split
        if not sdir.is_dir():
            continue
        for gdir in sorted(sdir.iterdir()):
            if gdir.name.startswith("."):
                continue
            parsed = parse_group_dirname(gdir.name) if gdir.is_dir() else None
            if parsed is None:
                extras.extend([gdir] if gdir.is_file() else sorted(p for p in gdir.rglob("*") if p.is_file()))
                continue
            group = Group(split, *parsed)
            for f in sorted(gdir.iterdir()):
                if f.name.startswith("."):
                    continue
                n = frame_number(f.name)
                if n is not None and f.is_file():
                    images.append((group, n, f))
                else:
                    extras.append(f)
    images.sort(key=lambda t: (t[0].split, t[0].app, t[0].resolution, t[1], t[2].name))
    return images, extras
