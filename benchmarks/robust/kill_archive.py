"""Kill scenarios of ``archive``, ``unarchive`` and ``crops`` (issue 23), run by
:mod:`benchmarks.robust.kills` like its own.

What a row is, per command:

* ``archive``: a manifest entry of the finished archive (key: path; content: the
  original's and the bitstream's SHA-256 and the pixel hash); leftovers are files next to
  the archive other than itself (staging folders, temporary files);
* ``unarchive``: a restored file (key: relative path; content: its SHA-256), the dataset
  manifest included; leftovers are ``cloud3d verify``'s ``leftover`` and ``extra``
  findings and any temporary file in the output folder;
* ``crops``: a crop PNG (key: relative path; content: its SHA-256) and each ``crops.csv``
  row; leftovers as for ``unarchive``, plus the pending marker.
"""

from __future__ import annotations

import json
import shutil
import tarfile
from pathlib import Path

from benchmarks.robust.kills import Scenario, synthetic_capture
from cloud3d.provenance import sha256_file


def _dataset(work: Path, frames: int, size: tuple[int, int], seed: int) -> None:
    from cloud3d_dataset.split import build_splits

    synthetic_capture(work / "raw", "kart", 2 * frames, size, seed=seed)
    build_splits(work / "raw" / "kart", work / "ds", train=frames - 16, val=8, test=8,
                 progress=False, workers=1, block=4)


def _files(root: Path) -> dict[str, object]:
    return {p.relative_to(root).as_posix(): sha256_file(p)
            for p in sorted(root.rglob("*")) if p.is_file() and not p.name.startswith(".")}


def _verify_leftovers(root: Path) -> list[str]:
    from cloud3d_dataset.verify import verify

    found = [f"{p.kind}: {p.path}" for p in verify(root, workers=1, progress=False).problems
             if p.kind in ("leftover", "extra")]
    return found + [f"temporary file: {p.relative_to(root)}" for p in root.rglob(".*.tmp")]


class ArchiveScenario(Scenario):
    """``cloud3d archive`` of a 16-image 180p selection with webp-lossless, 2 workers."""

    name = "archive"

    def prepare(self, work: Path) -> None:
        _dataset(work, 40, (320, 180), 5)

    def args(self, work: Path, run: Path) -> list[object]:
        return ["archive", work / "ds", "--split", "test", "--split", "validation", "-o",
                run / "a.tar", "--codec", "webp-lossless", "--workers", 2, "--quiet"]

    def rows(self, run: Path) -> dict[str, object]:
        with tarfile.open(run / "a.tar") as tf:
            doc = json.loads(tf.extractfile(tf.next()).read())
        return {e["path"]: (e["sha256"], e["member_sha256"], e["pixel_sha256"])
                for e in doc["body"]["entries"]}

    def leftovers(self, run: Path) -> list[str]:
        return [p.name for p in run.iterdir() if p.name != "a.tar"]


class UnarchiveScenario(Scenario):
    """``cloud3d unarchive`` of that archive (png, so every file is decoded and re-encoded),
    2 workers."""

    name = "unarchive"

    def prepare(self, work: Path) -> None:
        from baselines.archive.pack import archive_folder

        _dataset(work, 40, (320, 180), 6)
        archive_folder(work / "ds", work / "a.tar", "png", split=["test", "validation"],
                       workers=1, progress=False)
        shutil.rmtree(work / "raw")

    def args(self, work: Path, run: Path) -> list[object]:
        return ["unarchive", work / "a.tar", "-o", run / "out", "--workers", 2, "--quiet"]

    def rows(self, run: Path) -> dict[str, object]:
        return _files(run / "out")

    def leftovers(self, run: Path) -> list[str]:
        return _verify_leftovers(run / "out")


class CropsScenario(Scenario):
    """``cloud3d crops`` of the 24 train and validation frames (180p), 2 windows of 64 px
    each, 2 threads."""

    name = "crops"

    def prepare(self, work: Path) -> None:
        _dataset(work, 32, (320, 180), 7)

    def args(self, work: Path, run: Path) -> list[object]:
        return ["crops", work / "ds", "-o", run / "crops", "--size", 64, "--per-frame", 2,
                "--workers", 2, "--quiet"]

    def rows(self, run: Path) -> dict[str, object]:
        rows = _files(run / "crops")
        rows.pop("crops.csv", None)
        rows.pop("manifest.csv", None)
        lines = (run / "crops" / "crops.csv").read_text().splitlines()
        rows.update({f"crops.csv:{k}": line for k, line in enumerate(lines)})
        return rows

    def leftovers(self, run: Path) -> list[str]:
        found = _verify_leftovers(run / "crops")
        return found + [p.name for p in (run / "crops" / ".cloud3d").glob("*")]


SCENARIOS = {s.name: s for s in (ArchiveScenario(), UnarchiveScenario(), CropsScenario())}
