"""Which files an archive or a folder benchmark takes: a dataset selection or a folder of PNGs.

* A dataset (a folder with ``manifest.csv``): the manifest rows of the selection
  (``split``/``app``/``resolution``, each ``None`` = all), found through the manifest as every
  stage does; their recorded size and SHA-256 are checked when the files are read.
* Any other folder: every regular ``*.png`` file below it (case-insensitive suffix), in sorted
  order; hidden files and folders (``.name``) and symbolic links are left out.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cloud3d.errors import Cloud3dError

from .container import check_relpath


@dataclass(frozen=True)
class SourceFile:
    """One input file: ``relpath`` (POSIX, relative to the root), ``abspath``, ``bytes`` on disk,
    and the dataset manifest's ``sha256`` (``None`` for a plain folder)."""

    relpath: str
    abspath: Path
    bytes: int
    sha256: str | None = None


@dataclass
class Sources:
    """The files of one selection, in a fixed order, and how they were chosen."""

    root: Path
    kind: str  # "dataset" or "folder"
    files: list[SourceFile]
    selection: dict[str, Any] = field(default_factory=dict)
    dataset_rows: list[dict[str, Any]] | None = None  # manifest rows (JSON-safe), datasets only

    @property
    def total_bytes(self) -> int:
        return sum(f.bytes for f in self.files)

    def describe(self) -> dict[str, Any]:
        """What an archive manifest records about its input."""
        return {"kind": self.kind, "root_name": self.root.resolve().name, "selection": self.selection,
                "files": len(self.files), "bytes": self.total_bytes}


def _as_list(v: str | list[str] | tuple[str, ...] | None) -> list[str] | None:
    if v is None or isinstance(v, str):
        return None if v is None else [v]
    return list(v) or None


def list_sources(root: str | os.PathLike, split: str | list[str] | None = None,
                 app: str | list[str] | None = None,
                 resolution: str | list[str] | None = None) -> Sources:
    """The input files under ``root`` (see the module docstring); :class:`Cloud3dError` when
    there are none or ``root`` is not a folder."""
    root = Path(root)
    if not root.is_dir():
        raise Cloud3dError(f"input folder not found: {root}")
    split_l, app_l, res_l = _as_list(split), _as_list(app), _as_list(resolution)
    if (root / "manifest.csv").is_file():
        return _dataset(root, split_l, app_l, res_l)
    if split_l or app_l or res_l:
        raise Cloud3dError(f"{root} has no manifest.csv: --split/--app/--resolution select from a "
                           f"dataset (run `cloud3d index {root}` if it has the dataset layout)")
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            p = Path(dirpath) / name
            if name.startswith(".") or p.suffix.lower() != ".png" or p.is_symlink() or not p.is_file():
                continue
            rel = check_relpath(p.relative_to(root).as_posix(), "input file")
            files.append(SourceFile(rel, p, p.stat().st_size))
    if not files:
        raise Cloud3dError(f"no PNG files under {root}")
    files.sort(key=lambda f: f.relpath)
    return Sources(root=root, kind="folder", files=files)


def _dataset(root: Path, split, app, resolution) -> Sources:
    from cloud3d_dataset.manifest import image_paths

    df = image_paths(root, split=split, app=app, resolution=resolution)
    files = [SourceFile(check_relpath(r.path, "manifest path"), Path(r.abspath), int(r.bytes), r.sha256)
             for r in df.itertuples(index=False)]
    rows = df.drop(columns="abspath")
    rows = rows.astype(object).where(rows.notna(), None)  # NaN capture times -> null in JSON
    return Sources(root=root, kind="dataset", files=files,
                   selection={"split": split, "app": app, "resolution": resolution},
                   dataset_rows=rows.to_dict(orient="records"))
