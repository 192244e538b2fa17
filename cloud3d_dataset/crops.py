"""A crop dataset: square windows cut from the frames of a dataset, as a dataset of its own.

Training samples random crops, so a model trained on a fixed ``size``-pixel window of every
frame sees the same pictures at a fraction of the bytes: a 256-pixel window of a 720p frame is
7% of it. That is what makes a training set small enough to send to a GPU machine, or to keep
next to a model as the record of what it saw. ``cloud3d train`` reads a crop dataset like any
other (crop side at most ``size``).

Layout: ``OUT/{split}/{app}-{size}p/{n}.png`` (the "resolution" of a group is its height, so
``supertuxkart-256p``), ``OUT/manifest.csv`` as ``cloud3d index`` writes it, and
``OUT/crops.csv``, one row per crop: ``split, app, n, source`` (path in the source dataset),
``source_sha256, x, y, size`` (pixels; window = columns x..x+size-1, rows y..y+size-1).
Window positions are uniform over each frame, drawn from ``seed`` per frame (the same
arguments give the same crops).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from cloud3d.atomic import atomic_write_text, remove_stale_temps
from cloud3d.errors import Cloud3dError
from cloud3d.imageio import read_png_rgb, write_png
from cloud3d_dataset.layout import image_relpath
from cloud3d_dataset.manifest import image_paths, index_dataset

__all__ = ["CROPS_LOG", "make_crops"]

#: provenance table written next to the manifest
CROPS_LOG = "crops.csv"
#: columns of :data:`CROPS_LOG`
LOG_COLUMNS = ["split", "app", "n", "source", "source_sha256", "x", "y", "size"]
#: marks a crop folder whose run has not finished (the hash of its crops.csv to be)
PENDING = ".cloud3d/pending-crops.json"


def _windows(rows: pd.DataFrame, size: int, per_frame: int, seed: int) -> list[tuple[int, int]]:
    """``per_frame`` (x, y) window corners per row, reproducible per (seed, source path)."""
    out = []
    for path, w, h in zip(rows["path"], rows["width"], rows["height"], strict=True):
        key = hashlib.sha256(path.encode()).digest()[:16]  # the whole path, not its tail
        rng = np.random.default_rng([seed, *np.frombuffer(key, dtype="<u4").tolist()])
        for _ in range(per_frame):
            out.append((int(rng.integers(0, int(w) - size + 1)), int(rng.integers(0, int(h) - size + 1))))
    return out


def make_crops(src: str | os.PathLike, out: str | os.PathLike, size: int = 256,
               per_frame: int = 1, splits: tuple[str, ...] = ("train", "validation"),
               app: str | list[str] | None = None, resolution: str | list[str] | None = None,
               seed: int = 0, workers: int = 2, progress: bool = True) -> pd.DataFrame:
    """Write the crop dataset of ``src`` into the new folder ``out``; returns crops.csv's rows.

    Args:
        src: a dataset folder (with ``manifest.csv``).
        out: a folder that does not exist yet or is empty, or one holding an earlier run of
            the same crops (killed or finished): that run is resumed, its crops kept.
        size: window side in pixels; every selected frame must be at least this large.
        per_frame: windows per frame (each its own image).
        splits, app, resolution: the selection of ``src`` (``None``: all apps / resolutions).
        seed: seed of the window positions.
    """
    if size < 1 or per_frame < 1:
        raise Cloud3dError("the crop size and crops per frame must be at least 1")
    dst = Path(out)
    if dst.exists() and not dst.is_dir():
        raise Cloud3dError(f"{dst} exists and is not a folder: choose a new one")
    rows = image_paths(src, split=list(splits), app=app, resolution=resolution)
    small = rows[(rows["width"] < size) | (rows["height"] < size)]
    if len(small):
        r = small.iloc[0]
        raise Cloud3dError(f"{len(small)} frame(s) are smaller than {size} px, e.g. {r['path']} "
                           f"({r['width']}x{r['height']}): choose a smaller --size")
    corners = _windows(rows, size, per_frame, seed)
    jobs, counters = [], {}
    for i, r in enumerate(rows.itertuples(index=False)):
        for k in range(per_frame):
            key = (r.split, r.app)
            n = counters.get(key, 0)
            counters[key] = n + 1
            x, y = corners[i * per_frame + k]
            jobs.append({"split": r.split, "app": r.app, "n": n, "source": r.path,
                         "source_sha256": r.sha256, "x": x, "y": y, "size": size,
                         "_abspath": r.abspath, "_i": i})

    log = pd.DataFrame([{k: v for k, v in j.items() if not k.startswith("_")} for j in jobs],
                       columns=LOG_COLUMNS)
    pending = _start_or_resume(dst, log)
    for j in jobs:
        j["_path"] = dst / image_relpath(j["split"], j["app"], f"{size}p", j["n"])
    for folder, names in _by_folder(j["_path"] for j in jobs).items():
        remove_stale_temps(folder, names)  # half-written crops of a killed run

    def cut(frame_jobs: list[dict]) -> None:
        todo = [j for j in frame_jobs if not j["_path"].is_file()]  # written whole or not at all
        if not todo:
            return
        rgb = read_png_rgb(frame_jobs[0]["_abspath"])
        for j in todo:
            win = rgb[j["y"] : j["y"] + size, j["x"] : j["x"] + size]
            j["_path"].parent.mkdir(parents=True, exist_ok=True)
            write_png(j["_path"], np.ascontiguousarray(win), level=9)

    by_frame: dict[int, list[dict]] = {}
    for j in jobs:
        by_frame.setdefault(j["_i"], []).append(j)
    from tqdm import tqdm

    with ThreadPoolExecutor(max(1, workers)) as pool:
        list(tqdm(pool.map(cut, by_frame.values()), total=len(by_frame), desc="crop frames",
                  unit="frame", disable=not progress))
    atomic_write_text(dst / CROPS_LOG, log.to_csv(index=False, lineterminator="\n"))
    index_dataset(dst, progress=progress)
    pending.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        pending.parent.rmdir()  # the state folder, when nothing else is in it
    return log


def _by_folder(paths) -> dict[Path, set[str]]:
    out: dict[Path, set[str]] = {}
    for p in paths:
        out.setdefault(p.parent, set()).add(p.name)
    return out


def _start_or_resume(dst: Path, log: pd.DataFrame) -> Path:
    """Claim ``dst`` for the crops of ``log``; returns the pending marker to remove once done.

    A new or empty folder is claimed. A folder holding the pending marker of the same crops
    (a killed run of the same command) or their finished ``crops.csv`` (a finished run) is
    resumed: crops already written are kept. Any other non-empty folder is refused."""
    marker = dst / PENDING
    plan = log.to_csv(index=False, lineterminator="\n")
    digest = hashlib.sha256(plan.encode()).hexdigest()
    remove_stale_temps(marker.parent, [marker.name])  # a run killed while claiming the folder
    with contextlib.suppress(OSError):
        marker.parent.rmdir()  # only when that left it empty
    if dst.is_dir() and any(dst.iterdir()):
        mine = False
        try:
            mine = json.loads(marker.read_text()).get("crops_sha256") == digest
        except (OSError, ValueError, AttributeError):
            pass
        if not mine:
            try:
                mine = (dst / CROPS_LOG).read_text() == plan
            except (OSError, UnicodeDecodeError):
                pass
        if not mine:
            raise Cloud3dError(f"{dst} is not an empty folder and holds no earlier run of these crops "
                               "(same dataset, selection, size, count and seed): choose a new "
                               "folder")
    atomic_write_text(marker, json.dumps({"crops_sha256": digest}) + "\n")
    return marker
