"""``cloud3d demo``: the whole study on built-in synthetic frames, in minutes, on a plain machine.

Steps, each a call into the stage that owns it (the CLI and notebooks use
the same functions; :func:`run_demo` makes the calls)::

    capture   synthetic scene -> OUT/raw/synthetic/...              (capture.record)
              + the same scene shown in a real X window on a private
                Xvfb and captured from the screen, when Xvfb exists   (capture.LaunchSource)
    split     leakage-safe 8:1:1 splits -> OUT/dataset/              (cloud3d_dataset.split.build_splits)
    entropy   per-image entropy vs stand-in natural photos -> OUT/entropy/   (analysis.run_entropy)
    bench     fast codecs over the test split -> OUT/results.sqlite  (baselines.bench.runner.run_bench)
    report    tables, figures, index.html -> OUT/report/             (baselines.report.write_report)

Every step is resumable: re-running the demo into the same folder reuses what
is already there. All frames are labelled synthetic (app names ``synthetic``
and ``synthetic-window``); the natural-photo reference is a labelled stand-in
for DIV2K.
"""

from __future__ import annotations

import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import click

from cloud3d.errors import Cloud3dError
from cloud3d.resolutions import RESOLUTIONS

#: codecs the demo runs by default: installed with pip alone, and set to their
#: faster encoder presets (AVIF speed 8, x265 preset "fast") so the whole demo
#: fits in a few minutes on 2 cores; real studies pass their own ``--codec``
DEFAULT_CODECS: tuple[str, ...] = (
    "jpeg:q=30,50,70,90",
    "webp:q=30,50,70,90",
    "avif:q=30,50,70,90;speed=8",
    "hevc-intra:q=30,50,70,90;preset=fast",
)



#: fewest frames per capture that still split 8:1:1 into whole, guarded blocks
MIN_FRAMES = 20


def demo_block_frames(n_frames: int) -> int:
    """Split block length (frames) for a demo capture of ``n_frames``.

    Synthetic frames come faster than real time, so the capture-time default
    (10 s blocks) would leave one block; about 25 blocks keep the 8:1:1 split
    possible on a few dozen frames while whole blocks still go to one split.
    """
    return max(2, n_frames // 25)


@dataclass
class DemoResult:
    """Where the demo wrote everything, and how long each step took (seconds)."""

    out: Path
    raw: Path
    dataset: Path
    entropy: Path
    results: Path
    report: Path
    apps: list[str] = field(default_factory=list)
    step_seconds: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def index_html(self) -> Path:
        return self.report / "index.html"


def _say(msg: str) -> None:
    click.echo(f"[demo] {msg}", err=True)


def _kept_frames(app_dir: Path) -> int:
    """Frames already captured for an app: rows of its frames.csv with ``status == kept``."""
    import pandas as pd

    log = app_dir / "frames.csv"
    if not log.is_file():
        return 0
    status = pd.read_csv(log, usecols=["status"], dtype=str)["status"]
    return int((status.str.strip().str.lower() == "kept").sum())


def _capture_synthetic(raw: Path, app: str, frames: int, res: list[str], seed: int) -> None:
    from capture import RecordOptions, SyntheticSource, record

    have = _kept_frames(raw / app)
    if have >= frames:
        _say(f"capture {app}: {have} frames already there, skipped")
        return
    w, h = max((RESOLUTIONS[r] for r in res), key=lambda s: s[0])
    with SyntheticSource(w, h, seed=seed) as src:
        summary = record(src, raw, app, RecordOptions(resolutions=tuple(res), count=frames - have))
    _say(summary.to_text())


def _capture_window(raw: Path, app: str, frames: int, res: list[str], seed: int) -> None:
    """Show the synthetic scene in a real X window on a private Xvfb and capture that window."""
    from capture import LaunchSource, RecordOptions, record

    have = _kept_frames(raw / app)
    if have >= frames:
        _say(f"capture {app}: {have} frames already there, skipped")
        return
    w, h = RESOLUTIONS["720p"]
    cmd = [sys.executable, "-m", "capture.showwindow", "--size", f"{w}x{h}", "--seed", str(seed), "--fps", "8"]
    with LaunchSource(cmd, size=(w, h), timeout=60.0) as src:
        summary = record(src, raw, app, RecordOptions(resolutions=tuple(res), count=frames - have,
                                                     fps=4.0, warmup=1.0))
    _say(summary.to_text())


def run_demo(
    out: str | Path = "demo-out",
    frames: int = 100,
    resolutions: tuple[str, ...] = ("720p",),
    codecs: tuple[str, ...] = DEFAULT_CODECS,
    models: tuple[str, ...] = (),
    window: str = "auto",
    window_frames: int | None = None,
    workers: int | None = None,
    seed: int = 0,
) -> DemoResult:
    """Run the whole study into ``out`` and return where everything is.

    Args:
        out: output folder (created; re-running resumes).
        frames: synthetic frames to capture (split 8:1:1 in whole blocks, so at least 20).
        resolutions: dataset resolutions, ``720p`` and/or ``1080p``.
        codecs: ``--codec`` specs for the benchmark (see ``cloud3d codecs``).
        models: learned-codec checkpoints, benchmarked as ``learned:checkpoint=...``.
        window: ``auto`` (capture a real Xvfb window when Xvfb is installed),
            ``on`` (require it) or ``off``.
        window_frames: frames for the window capture (default ``frames // 3``, at least 20).
        workers: benchmark worker processes (default: CPU count).
        seed: synthetic scene seed.
    """
    from analysis.pipeline import EntropyOptions, run_entropy
    from baselines.bench.runner import BenchOptions, run_bench
    from baselines.report import write_report
    from cloud3d_dataset.split import build_splits

    bad = [r for r in resolutions if r not in RESOLUTIONS]
    if bad or not resolutions:
        raise Cloud3dError(f"unknown resolution(s) {bad}: use {', '.join(RESOLUTIONS)}")
    if frames < MIN_FRAMES or (window_frames is not None and window_frames < MIN_FRAMES):
        raise Cloud3dError(f"the demo needs at least {MIN_FRAMES} frames per capture for 8:1:1 splits in whole blocks")
    if window not in ("auto", "on", "off"):
        raise Cloud3dError("window must be auto, on or off")
    have_xvfb = shutil.which("Xvfb") is not None
    if window == "on" and not have_xvfb:
        raise Cloud3dError("--window on needs Xvfb: apt-get install xvfb")
    out = Path(out)
    res = DemoResult(
        out=out, raw=out / "raw", dataset=out / "dataset", entropy=out / "entropy",
        results=out / "results.sqlite", report=out / "report",
    )
    res.apps.append("synthetic")
    use_window = window == "on" or (window == "auto" and have_xvfb)
    if use_window:
        res.apps.append("synthetic-window")
    elif window == "auto":
        res.notes.append("Xvfb not installed: the real virtual-display window capture was skipped")
    wframes = window_frames if window_frames is not None else max(MIN_FRAMES, frames // 3)

    def step(name: str, fn, *args, **kwargs):
        _say(f"== {name}")
        t0 = time.perf_counter()
        value = fn(*args, **kwargs)
        res.step_seconds[name] = time.perf_counter() - t0
        return value

    step("capture synthetic", _capture_synthetic, res.raw, "synthetic", frames, list(resolutions), seed)
    if use_window:
        step("capture window (Xvfb)", _capture_window, res.raw, "synthetic-window", wframes,
             list(resolutions), seed + 1)
    for app in res.apps:
        n = frames if app == "synthetic" else wframes
        step(f"split {app}", build_splits, res.raw / app, res.dataset, app=app, scale_counts=True,
             seed=seed, block=demo_block_frames(n), resolutions=list(resolutions))
    step("entropy", run_entropy, res.dataset, None, res.entropy,
         EntropyOptions(command=["cloud3d", "entropy", str(res.dataset), "--out", str(res.entropy)]))
    specs = list(codecs) + [f"learned:checkpoint={m}" for m in models]
    command = " ".join(["cloud3d", "bench", str(res.dataset), "--split", "test",
                        *[f"--codec '{s}'" for s in specs], "--results", str(res.results)])
    summary = step("bench", run_bench, res.dataset, specs, res.results,
                   BenchOptions(split="test", workers=workers, command=command))
    if getattr(summary, "failed", 0):
        res.notes.append(f"{summary.failed} benchmark task(s) failed: see {res.results}")
    step("report", write_report, res.results, res.report, dataset=res.dataset, entropy=res.entropy,
         anchor="jpeg", title="cloud3d demo (synthetic frames)")
    return res


@click.command("demo")
@click.option("--out", "out", type=click.Path(file_okay=False), default="demo-out", show_default=True,
              help="Output folder; re-running resumes.")
@click.option("--frames", type=click.IntRange(min=20), default=100, show_default=True,
              help="Synthetic frames to capture (split 8:1:1).")
@click.option("--resolutions", default="720p", show_default=True,
              help="Comma-separated dataset resolutions: 720p, 1080p.")
@click.option("--codec", "codecs", multiple=True,
              help="Codec spec to benchmark (repeatable); default: "
                   + " ".join(DEFAULT_CODECS))
@click.option("--model", "models", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="Learned-codec checkpoint to benchmark too (repeatable).")
@click.option("--window", type=click.Choice(["auto", "on", "off"]), default="auto", show_default=True,
              help="Also capture the scene from a real X window on a private Xvfb.")
@click.option("--window-frames", type=click.IntRange(min=20), default=None,
              help="Frames for the window capture (default: FRAMES/3, at least 20).")
@click.option("--workers", type=click.IntRange(min=1), default=None, help="Benchmark processes (default: all cores).")
@click.option("--seed", type=int, default=0, show_default=True, help="Synthetic scene seed.")
def demo_cmd(out, frames, resolutions, codecs, models, window, window_frames, workers, seed) -> None:
    """Run the whole study on built-in synthetic frames: capture, split, entropy, codecs, report.

    Needs no game, GPU or download; about a minute on 2 idle cores with the defaults.

    \b
    Example:
      cloud3d demo --out demo-out
      cloud3d demo --out demo-out --resolutions 720p,1080p --model runs/a/best.pt
    """
    t0 = time.perf_counter()
    res = run_demo(
        out=out, frames=frames, resolutions=tuple(r.strip() for r in resolutions.split(",") if r.strip()),
        codecs=tuple(codecs) or DEFAULT_CODECS, models=tuple(models), window=window,
        window_frames=window_frames, workers=workers, seed=seed,
    )
    for note in res.notes:
        _say(f"note: {note}")
    steps = ", ".join(f"{k} {v:.0f}s" for k, v in res.step_seconds.items())
    click.echo(f"demo finished in {time.perf_counter() - t0:.0f} s ({steps})")
    click.echo(f"dataset: {res.dataset}")
    click.echo(f"results: {res.results}")
    click.echo(f"report:  {res.index_html.resolve()}")


def register(group: click.Group) -> None:
    """Add ``demo`` to the ``cloud3d`` group."""
    group.add_command(demo_cmd)
