"""Kill ``capture``, ``split`` and ``bench`` (and, from :mod:`benchmarks.robust.kill_archive`,
``archive``, ``unarchive`` and ``crops``) mid-run, resume them, compare with a clean run.

Each scenario (:data:`SCENARIOS`) first runs its command once uninterrupted: that run is the
reference (its result rows, its wall time, and how often it called each filesystem
function of :data:`benchmarks.robust.killat.CALLS`). A trial then

1. runs the same command on a fresh copy of the inputs and SIGKILLs its main process,
   alternately at a random moment (uniform over the reference's wall time) and just before
   the N-th call of a filesystem function (drawn among the calls the reference made,
   ``python -m benchmarks.robust.killat``: the function first, weighted by the square root
   of its call count, then one of its calls);
2. waits 5 s and counts the processes of the run still alive (``orphans``: workers that
   outlived their parent), then kills them;
3. re-runs the plain command (the resume), which must exit with status 0;
4. compares the result with the reference: rows ``lost`` (in the reference, not after the
   resume), ``duplicated``, ``changed`` (same key, other content), and ``leftovers``
   (temporary files, state of an unfinished run, processes).

What a row is, per command:

* ``split``: a ``manifest.csv`` row of the dataset (key: path; content: sha256, bytes,
  width, height, source index); the dataset already holds another app, whose rows must
  survive; leftovers are ``cloud3d verify``'s ``leftover`` and ``extra`` findings, and
  any other verify problem counts as changed;
* ``bench``: a ``results`` row (key: image, codec, parameters; content: bytes, PSNR,
  MS-SSIM, status); leftovers are files next to the results store other than the store;
* ``capture``: a ``frames.csv`` row (key: index; content: the files' sha256). The resume
  is a second ``--count`` run, so the reference is what the killed run had logged with its
  files in place: none of those rows may be lost or changed after the resume, no index or
  file may appear twice, and :func:`capture.verify.check_capture` must find nothing.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.robust.procs import pids_with


def synthetic_capture(root: Path, app: str, count: int, size: tuple[int, int], seed: int) -> Path:
    """``count`` frames of capture's synthetic scene, ``size`` = (width, height), recorded by
    capture's own recorder into ``root/app/native/`` (frames.csv in the recorder's dialect).
    Its capture times are the wall clock's: split such captures in blocks of frames."""
    from capture import RecordOptions, SyntheticSource, record

    with SyntheticSource(*size, seed=seed) as src:
        record(src, root, app, RecordOptions(count=count, writer_kind="thread", progress=False))
    return root / app

#: seconds a single command may take before the harness calls it a hang
COMMAND_TIMEOUT = 300


@dataclass
class Trial:
    """One kill-and-resume trial; ``how`` is ``"random 1.23 s"`` or ``"os.replace #7"``."""

    command: str
    how: str
    killed: bool = False
    resume_rc: int | None = None
    resume_error: str = ""
    lost: int = 0
    duplicated: int = 0
    changed: int = 0
    orphans: int = 0
    leftovers: list[str] = field(default_factory=list)
    wall_s: float = 0.0

    @property
    def bad(self) -> bool:
        return bool(self.resume_rc != 0 or self.lost or self.duplicated or self.changed
                    or self.orphans or self.leftovers)


def _cli(*args: object) -> list[str]:
    return [sys.executable, "-m", "cloud3d.cli", *map(str, args)]


def _killat(call: str, n: int, *args: object) -> list[str]:
    return [sys.executable, "-m", "benchmarks.robust.killat", call, str(n), *map(str, args)]


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    return {**os.environ, "MPLBACKEND": "Agg", **(extra or {})}


class Scenario:
    """A command under test. Subclasses say how to prepare inputs, the arguments, and how to
    read the rows of a finished run."""

    name = ""

    def prepare(self, work: Path) -> None:
        """Make the inputs every trial copies (once)."""

    def fresh(self, work: Path, run: Path) -> None:
        """A trial's starting state in ``run`` (a new folder)."""
        run.mkdir(parents=True)

    def args(self, work: Path, run: Path) -> list[object]:
        raise NotImplementedError

    def rows(self, run: Path) -> dict[str, object]:
        """Key -> content of every row of a finished run."""
        raise NotImplementedError

    def duplicates(self, run: Path) -> int:
        return 0

    def leftovers(self, run: Path) -> list[str]:
        return []

    def before_resume(self, run: Path) -> None:
        """Hook: look at what the killed run left before the resume."""


class SplitScenario(Scenario):
    """``cloud3d split`` of app ``kart`` (72p linked, 36p resized in a pool of 2) into a
    dataset that already holds app ``other``."""

    name = "split"

    def prepare(self, work: Path) -> None:
        from cloud3d_dataset.split import build_splits

        synthetic_capture(work / "raw", "kart", 120, (128, 72), seed=1)
        synthetic_capture(work / "raw", "other", 40, (128, 72), seed=2)
        build_splits(work / "raw" / "other", work / "base", train=20, val=5, test=5,
                     progress=False, workers=1, block=5)

    def fresh(self, work: Path, run: Path) -> None:
        shutil.copytree(work / "base", run / "ds", symlinks=True)

    def args(self, work: Path, run: Path) -> list[object]:
        return ["split", work / "raw" / "kart", "--out", run / "ds", "--train", 80, "--val", 10,
                "--test", 10, "--block", 5, "--resolutions", "72p,36p", "--workers", 2, "--quiet"]

    def rows(self, run: Path) -> dict[str, object]:
        import pandas as pd

        df = pd.read_csv(run / "ds" / "manifest.csv", dtype=str)
        cols = ["sha256", "bytes", "width", "height", "source_index"]
        return {r["path"]: tuple(r[c] for c in cols) for _, r in df.iterrows()}

    def duplicates(self, run: Path) -> int:
        import pandas as pd

        df = pd.read_csv(run / "ds" / "manifest.csv", dtype=str)
        return int(df["path"].duplicated().sum())

    def leftovers(self, run: Path) -> list[str]:
        from cloud3d_dataset.verify import verify

        rep = verify(run / "ds", workers=1, progress=False)
        return [f"{p.kind}: {p.path}" for p in rep.problems]


class BenchScenario(Scenario):
    """``cloud3d bench`` of JPEG (2 qualities) and WebP (1) over a 6-image 180p test split,
    2 workers (18 result rows)."""

    name = "bench"

    def prepare(self, work: Path) -> None:
        from cloud3d_dataset.split import build_splits

        synthetic_capture(work / "raw", "kart", 70, (320, 180), seed=3)
        build_splits(work / "raw" / "kart", work / "ds", train=40, val=6, test=6,
                     progress=False, workers=1, block=4)

    def args(self, work: Path, run: Path) -> list[object]:
        return ["bench", work / "ds", "--split", "test", "--codec", "jpeg:q=20,80",
                "--codec", "webp:q=50", "--results", run / "r.sqlite", "--workers", 2,
                "--no-estimate", "--quiet"]

    def _rows(self, run: Path) -> list[tuple]:
        con = sqlite3.connect(run / "r.sqlite")
        try:
            return con.execute("SELECT image_sha256, codec, params, bytes, psnr_rgb, ms_ssim, "
                               "status FROM results").fetchall()
        finally:
            con.close()

    def rows(self, run: Path) -> dict[str, object]:
        return {f"{r[0]}|{r[1]}|{r[2]}": (r[3], r[4], r[5], r[6]) for r in self._rows(run)}

    def duplicates(self, run: Path) -> int:
        keys = Counter(f"{r[0]}|{r[1]}|{r[2]}" for r in self._rows(run))
        return sum(k - 1 for k in keys.values())

    def leftovers(self, run: Path) -> list[str]:
        return [p.name for p in run.iterdir() if p.name != "r.sqlite"]


class CaptureScenario(Scenario):
    """``cloud3d capture synthetic --count 30`` at 320x180 with 2 writer processes."""

    name = "capture"

    def args(self, work: Path, run: Path) -> list[object]:
        return ["capture", "synthetic", "--out", run / "cap", "--app", "syn", "--count", 30,
                "--size", "320x180", "--writers", 2, "--no-progress"]

    def _logged(self, run: Path) -> list[dict]:
        import csv

        log = run / "cap" / "syn" / "frames.csv"
        if not log.exists():
            return []
        text = log.read_text()
        text = text[: text.rfind("\n") + 1]
        return list(csv.DictReader(text.splitlines()))

    def rows(self, run: Path) -> dict[str, object]:
        out = {}
        for r in self._logged(run):
            files = [(k, v) for k, v in r.items() if k.startswith("file_") and v]
            if r.get("status") == "kept" and all((run / "cap" / "syn" / v).is_file() for _, v in files):
                out[r["index"]] = tuple(sorted((k, v) for k, v in r.items() if k.startswith("sha256_")))
        return out

    def duplicates(self, run: Path) -> int:
        rows = self._logged(run)
        idx = Counter(r["index"] for r in rows)
        files = Counter(v for r in rows for k, v in r.items() if k.startswith("file_") and v)
        return sum(k - 1 for k in idx.values()) + sum(k - 1 for k in files.values())

    def leftovers(self, run: Path) -> list[str]:
        from capture.verify import check_capture

        found = check_capture(run / "cap" / "syn")
        return [f"{k}: {v}" for k, vs in found.items() for v in vs]


SCENARIOS = {s.name: s for s in (CaptureScenario(), SplitScenario(), BenchScenario())}


def _wait(proc: subprocess.Popen, timeout: float) -> int | None:
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        return None


def _kill_all(pids: set[int]) -> None:
    for p in pids:
        try:
            os.kill(p, signal.SIGKILL)
        except OSError:
            pass


class Runner:
    """Trials of one scenario in ``work`` (reference first)."""

    def __init__(self, scenario: Scenario, work: Path, seed: int) -> None:
        self.s, self.work, self.rng = scenario, work / scenario.name, random.Random(seed)
        self.work.mkdir(parents=True, exist_ok=True)
        self.count = 0
        self.s.prepare(self.work)
        ref = self._new_run()
        counts = ref / "calls.json"
        t0 = time.perf_counter()
        p = subprocess.run(_killat("os.replace", 0, *self.s.args(self.work, ref)),
                           capture_output=True, text=True, timeout=COMMAND_TIMEOUT,
                           env=_env({"CLOUD3D_KILLAT_COUNTS": str(counts)}))
        self.ref_wall = time.perf_counter() - t0
        if p.returncode != 0:
            raise RuntimeError(f"reference {self.s.name} run failed: {p.stderr[-2000:]}")
        self.calls = {k: v for k, v in json.loads(counts.read_text()).items() if v}
        counts.unlink()
        self.reference = self.s.rows(ref)
        if isinstance(self.s, CaptureScenario):
            self.reference = {}  # capture compares against the killed run's own rows

    def _new_run(self) -> Path:
        self.count += 1
        run = self.work / f"run{self.count:03d}"
        shutil.rmtree(run, ignore_errors=True)
        self.s.fresh(self.work, run)
        return run

    def trial(self, random_moment: bool) -> Trial:
        run = self._new_run()
        args = self.s.args(self.work, run)
        t0 = time.perf_counter()
        if random_moment:
            at = self.rng.uniform(0.05, 1.0) * self.ref_wall
            t = Trial(self.s.name, f"random {at:.2f} s")
            proc = subprocess.Popen(_cli(*args), stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL, env=_env())
            rc = _wait(proc, at)
            if rc is None:
                proc.send_signal(signal.SIGKILL)
                rc = proc.wait()
        else:
            names = sorted(self.calls)  # a function, weighted by the root of its calls, then a call
            call = self.rng.choices(names, weights=[self.calls[c] ** 0.5 for c in names])[0]
            pick = self.rng.randrange(self.calls[call])
            t = Trial(self.s.name, f"{call} #{pick + 1}")
            proc = subprocess.Popen(_killat(call, pick + 1, *args), stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL, env=_env())
            rc = _wait(proc, COMMAND_TIMEOUT)
            if rc is None:
                proc.kill()
                rc = proc.wait()
        t.killed = rc == -signal.SIGKILL
        time.sleep(5)
        left = pids_with(str(run))
        t.orphans = len(left)
        _kill_all(left)
        before = self.s.rows(run) if isinstance(self.s, CaptureScenario) else None
        p = subprocess.run(_cli(*args), capture_output=True, text=True,
                           timeout=COMMAND_TIMEOUT, env=_env())
        t.resume_rc = p.returncode
        if p.returncode != 0:
            t.resume_error = (p.stderr.strip().splitlines() or [""])[-1][:300]
        ref = before if before is not None else self.reference
        if p.returncode == 0:
            got = self.s.rows(run)
            t.lost = sum(1 for k in ref if k not in got)
            t.changed = sum(1 for k in ref if k in got and got[k] != ref[k])
            if before is None:
                t.changed += sum(1 for k in got if k not in ref)  # rows nobody asked for
            t.duplicated = self.s.duplicates(run)
            t.leftovers = self.s.leftovers(run)
        t.leftovers += [f"process {p}" for p in pids_with(str(run))]
        t.wall_s = round(time.perf_counter() - t0, 2)
        if not t.bad:
            shutil.rmtree(run, ignore_errors=True)
        return t


def all_scenarios() -> dict[str, Scenario]:
    """These and those of :mod:`benchmarks.robust.kill_archive` (archive, unarchive, crops)."""
    from benchmarks.robust.kill_archive import SCENARIOS as more

    return {**SCENARIOS, **more}


def run_trials(names: list[str], n: int, work: Path, seed: int, on_trial=None) -> list[Trial]:
    """``n`` trials per scenario in ``names`` (alternately random moments and chosen calls)."""
    out = []
    scenarios = all_scenarios()
    for name in names:
        r = Runner(scenarios[name], work, seed)
        for i in range(n):
            t = r.trial(random_moment=i % 2 == 0)
            out.append(t)
            if on_trial:
                on_trial(t)
    return out
