"""A dataset's split state (``DATASET/.cloud3d/``): records, the lock, staging and the commit.

``split-{app}.json`` records how an app was split (its key: arguments + input
fingerprint); ``pending-{app}.json`` marks a commit in progress; ``staging-{app}-{key}/``
holds files being built; ``trash-{app}-{key}/`` the app's replaced folders during a commit.
The commit swaps the staged ``{split}/{app}-{res}`` folders into place under a lock, then
writes the manifest and the record, so a failure or Ctrl-C leaves either the old state or
something the next identical run finishes. That run (or a no-op one, when the kill came
after the record) also removes what the killed one left: its pending marker, staging and
trash folders, and the temporary files of atomic writes in the root, the state folder and
the app's group folders (:func:`remove_leftovers`; ``cloud3d verify`` reports them until
then).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
from pathlib import Path

import pandas as pd

from cloud3d.atomic import atomic_write_text
from cloud3d.errors import Cloud3dError
from cloud3d_dataset.layout import SPLITS, parse_group_dirname
from cloud3d_dataset.manifest import MANIFEST_COLUMNS, MANIFEST_NAME, load_manifest, write_manifest

STATE_DIR = ".cloud3d"


def record_path(root: Path, app: str) -> Path:
    """Where the record of ``app``'s split lives."""
    return root / STATE_DIR / f"split-{app}.json"


def read_json(path: Path) -> dict | None:
    """A state file's JSON, ``None`` if missing; unreadable files are an error naming the fix."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise Cloud3dError(
            f"cannot read {path}: {exc}; delete it and re-run with --force"
        ) from None


@contextlib.contextmanager
def locked(root: Path):
    """Hold the dataset's exclusive lock (``.cloud3d/lock``) for the block."""
    (root / STATE_DIR).mkdir(parents=True, exist_ok=True)
    with open(root / STATE_DIR / "lock", "a+") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def existing_app_groups(root: Path, app: str) -> list[Path]:
    """The ``{split}/{app}-{res}`` folders of ``app`` in the dataset."""
    out = []
    for split in SPLITS:
        d = root / split
        if d.is_dir():
            for g in sorted(d.iterdir()):
                parsed = parse_group_dirname(g.name)
                if g.is_dir() and parsed is not None and parsed[0] == app:
                    out.append(g)
    return out


def manifest_apps(root: Path) -> set[str]:
    """Apps listed in the dataset's manifest (empty without one)."""
    if not (root / MANIFEST_NAME).is_file():
        return set()
    return set(load_manifest(root)["app"])


def fresh_staging(root: Path, app: str, key: str) -> Path:
    """``.cloud3d/staging-{app}-{key}`` (kept if it exists: an identical run resumes it);
    other runs' staging folders of this app are deleted."""
    state = root / STATE_DIR
    staging = state / f"staging-{app}-{key}"
    state.mkdir(parents=True, exist_ok=True)
    for old in state.glob(f"staging-{app}-*"):
        if old != staging:
            shutil.rmtree(old, ignore_errors=True)
    return staging


def _temp_files(folder: Path) -> list[Path]:
    """Temporary files of interrupted atomic writes (``.NAME.*.tmp``/``.NAME.*.parquet``)."""
    if not folder.is_dir():
        return []
    return [f for f in folder.glob(".*") if f.is_file() and f.name.endswith((".tmp", ".parquet"))]


def remove_leftovers(root: Path, app: str) -> list[str]:
    """Remove what interrupted runs for ``app`` left (call under :func:`locked`): its pending
    marker, ``staging-{app}-*`` and ``trash-{app}-*`` folders, temporary
    files in the root, the state folder and ``app``'s group folders. Returns the removed
    paths, relative to ``root``. Other apps' staging is theirs to resume and stays."""
    state = root / STATE_DIR
    gone: list[Path] = []
    if state.is_dir():
        for p in [state / f"pending-{app}.json", *state.glob(f"staging-{app}-*"),
                  *state.glob(f"trash-{app}-*")]:
            if not (p.exists() or p.is_symlink()):
                continue
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)
            gone.append(p)
    for folder in [root, state, *existing_app_groups(root, app)]:
        for f in _temp_files(folder):
            f.unlink(missing_ok=True)
            gone.append(f)
    return sorted(p.relative_to(root).as_posix() for p in gone)


def finish_leftovers(root: Path, app: str) -> list[str]:
    """:func:`remove_leftovers` under the dataset's lock (nothing to do: no lock taken)."""
    if not (root / STATE_DIR).is_dir():
        return []
    with locked(root):
        return remove_leftovers(root, app)


def commit(root: Path, app: str, key: str, staging: Path, rows: list[dict], record: dict) -> None:
    """Swap the staged folders of ``app`` into place, then write the manifest and ``record``."""
    state = root / STATE_DIR
    with locked(root):
        atomic_write_text(state / f"pending-{app}.json", json.dumps({"key": key}))
        trash = state / f"trash-{app}-{key}"
        shutil.rmtree(trash, ignore_errors=True)  # left over from an interrupted commit
        for g in existing_app_groups(root, app):
            dest = trash / g.parent.name / g.name
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(g, dest)
        for split in SPLITS:
            sdir = staging / split
            if not sdir.is_dir():
                continue
            (root / split).mkdir(parents=True, exist_ok=True)
            for g in sorted(sdir.iterdir()):
                for f in _temp_files(g):  # a killed run's half-written file: never moved in
                    f.unlink()
                os.replace(g, root / split / g.name)
        new = pd.DataFrame(rows, columns=list(MANIFEST_COLUMNS))
        if (root / MANIFEST_NAME).is_file():
            old = load_manifest(root)
            new = pd.concat([old[old["app"] != app], new], ignore_index=True)
        write_manifest(root, new)
        atomic_write_text(record_path(root, app), json.dumps(record, indent=1, sort_keys=True) + "\n")
        (state / f"pending-{app}.json").unlink(missing_ok=True)
        shutil.rmtree(trash, ignore_errors=True)
        shutil.rmtree(staging, ignore_errors=True)
        remove_leftovers(root, app)
