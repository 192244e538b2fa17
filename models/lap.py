"""Training laps: the bundled models' training plan, continued in pieces of a wall budget.

Compute comes in pieces (minutes on a lent GPU, or a background CPU job), so the plan is a
sequence of laps. One lap of a plan stage (:data:`STAGES`):

1. **Start.** From the lap folder's own run (``RUNS/STAGE/last.pt`` with its optimizer
   states: the schedule continues exactly, see :mod:`models.train`), else from the weights in
   the repository (the bundled model of the stage, ``--init``), else from the stage's
   ``init`` (a fine-tune starts from the general model), else from scratch.
2. **Throughput.** A few timed training steps of the architecture (perf_counter, after
   warm-up steps, ``torch.cuda.synchronize`` on a GPU) give steps/s and Mpx/s; the lap's
   step count is what fits the budget left, with a margin (a slower pace than the probe saw
   brings the end and the decay forward, :class:`~models.train.TrainConfig` ``deadline``). On a GPU, up to a minute goes to
   a sweep of batch sizes and memory orders (:func:`sweep_throughput`) and the lap trains
   with the fastest (one process; the frames stay in host memory and batches are copied
   non-blocking; ``torch.compile`` and GPU-resident frames are not tried yet).
3. **Train** with the ``plateau`` schedule: constant learning rate, then a short decay (a fifth
   of the lap's steps) at the end. The next lap goes back to the un-decayed ``plateau.pt``.
   Each lap has its own seed (its index in ``laps.csv``): other crops, and other windows
   where the frames exceed the memory budget.
   A run still going at the budget's end stops as on SIGTERM.
4. **Validate** the decayed model on the validation split with the real codec (``.c3d``
   bytes, RGB PSNR of the decoded 8-bit frames) next to JPEG (Pillow, 4:2:0, a quality sweep)
   on the same frames: ``jpeg_saving_pct`` is how many percent fewer bytes the model needs
   than JPEG at the model's PSNR (JPEG's rate interpolated in log-rate between its two
   qualities around that PSNR; empty when that PSNR is outside JPEG's sweep).
   ``jpeg_dpsnr_db`` is the model's PSNR minus JPEG's at the model's rate.
5. **Keep.** The row goes to ``RUNS/STAGE/laps.csv``; when the saving improved by
   :data:`KEEP_GAIN_PCT` points or more over the repository's card (or there is none; where
   a saving is not measurable, the dB at equal rate count, :func:`gain_over`), the
   model is exported to the bundle folder (fp16 ``.npz`` + card with ``status: preview``,
   gigapixels seen, lambda, data and the validation figures), ready to commit.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cloud3d.errors import Cloud3dError

__all__ = ["KEEP_GAIN_PCT", "STAGES", "Stage", "run_lap"]

#: points of validation saving vs JPEG a lap must gain for its weights to be kept
KEEP_GAIN_PCT = 3.0
#: JPEG qualities of the validation comparison
JPEG_SWEEP = (2, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95)
#: rate points per dB where only PSNR at equal rate is measurable (at the ~6 dB per doubling
#: of rate of image codecs at these rates, 1 dB is about 12% of rate)
PCT_PER_DB = 12.0


@dataclass(frozen=True)
class Stage:
    """One model of the plan: bundle ``name``, training ``app`` (``all``: every game),
    architecture, fixed lambda, and the model a fresh run starts from (``init``)."""

    name: str
    app: str
    arch: str
    lmbda: float
    init: str | None = None


#: The plan (docs/models.md, "Training plan"): the general model gets the bulk of the
#: compute; each game's model is fine-tuned from it.
STAGES: dict[str, Stage] = {
    s.name: s for s in (
        Stage("general", "all", "c2f-xsmall-m192-pruned", 0.013),
        Stage("supertuxkart", "supertuxkart", "c2f-xsmall-m192-pruned", 0.013, init="general"),
        Stage("redeclipse", "redeclipse", "c2f-xsmall-m192-pruned", 0.013, init="general"),
        Stage("0ad", "0ad", "c2f-xsmall-m192-pruned", 0.013, init="general"),
    )
}


def measure_throughput(arch: str, batch: int, crop: int, device: str, steps: int = 4,
                       warmup: int = 2, channels_last: bool = False) -> dict[str, float]:
    """Training steps/s and Mpx/s of ``arch`` on random crops (``steps`` timed steps after
    ``warmup``; a scratch model, so the run's weights are untouched)."""
    import torch

    from models.architectures import create_model
    from models.train_step import make_optimizers, train_step

    dev = torch.device(device)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = create_model(arch).to(dev).train().to(memory_format=fmt)
    opt, aux = make_optimizers(model, 1e-5, 1e-5)
    x = torch.rand(batch, 3, crop, crop, device=dev).contiguous(memory_format=fmt)
    amp = dev.type == "cuda"
    for _ in range(warmup):
        train_step(model, opt, aux, x, 0.01, amp=amp)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(steps):
        train_step(model, opt, aux, x, 0.01, amp=amp)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    rate = steps / (time.perf_counter() - t)
    return {"steps_per_s": rate, "mpx_per_s": rate * batch * crop * crop / 1e6}


#: batch sizes and memory orders the GPU throughput sweep tries
SWEEP = tuple((b, cl) for b in (8, 16, 32) for cl in (False, True))


def sweep_throughput(arch: str, crop: int, device: str, budget_s: float = 60.0,
                     progress: bool = True, settings: tuple[tuple[int, bool], ...] = SWEEP
                     ) -> tuple[int, bool, dict[str, float]]:
    """Try the ``settings`` (batch, channels_last) pairs (each a few timed steps; stops at
    ``budget_s``) and return the ``(batch, channels_last, speed)`` of the most Mpx/s. One
    process, no per-step host syncs besides the loss values."""
    t0, best = time.perf_counter(), None
    for batch, cl in settings:
        if time.perf_counter() - t0 > budget_s:
            break
        try:
            speed = measure_throughput(arch, batch, crop, device, steps=6, channels_last=cl)
        except RuntimeError as exc:  # out of memory: larger batches will not fit either
            if progress:
                print(f"  batch {batch} channels_last={cl}: {str(exc).splitlines()[0]}")
            break
        if progress:
            print(f"  batch {batch:3d} channels_last={cl!s:5s}: {speed['mpx_per_s']:8.2f} Mpx/s")
        if best is None or speed["mpx_per_s"] > best[2]["mpx_per_s"]:
            best = (batch, cl, speed)
    if best is None:
        raise Cloud3dError(f"no training step of {arch} ran on {device}")
    return best


def _jpeg_points(frames: list[np.ndarray]) -> list[tuple[float, float]]:
    """(bpp, PSNR) of JPEG 4:2:0 at each :data:`JPEG_SWEEP` quality, pooled over ``frames``
    (bits of all frames over their pixels; PSNR of the pooled MSE)."""
    from PIL import Image

    points = []
    pixels = sum(f.shape[0] * f.shape[1] for f in frames)
    for q in JPEG_SWEEP:
        nbytes, sse = 0, 0.0
        for f in frames:
            buf = io.BytesIO()
            Image.fromarray(f).save(buf, "JPEG", quality=q, subsampling=2, optimize=True)
            nbytes += buf.tell()
            rec = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
            sse += float(np.square(rec.astype(np.float64) - f).sum())
        points.append((8 * nbytes / pixels, _psnr(sse / (3 * pixels))))
    return points


def _psnr(mse: float) -> float:
    return 10 * math.log10(255**2 / mse) if mse > 0 else math.inf


def jpeg_rate_at(points: list[tuple[float, float]], psnr: float) -> float | None:
    """JPEG's bpp at ``psnr``: log-rate interpolated between the two sweep points around it
    (``None`` outside the sweep)."""
    pts = sorted(points, key=lambda p: p[1])
    for (r0, p0), (r1, p1) in zip(pts, pts[1:], strict=False):
        if p0 <= psnr <= p1 and p1 > p0:
            t = (psnr - p0) / (p1 - p0)
            return math.exp(math.log(r0) + t * (math.log(r1) - math.log(r0)))
    return None


def jpeg_psnr_at(points: list[tuple[float, float]], bpp: float) -> float | None:
    """JPEG's PSNR at ``bpp``: interpolated in log-rate between the sweep points around it
    (``None`` outside the sweep)."""
    pts = sorted(points)
    for (r0, p0), (r1, p1) in zip(pts, pts[1:], strict=False):
        if r0 <= bpp <= r1 and r1 > r0:
            return p0 + (p1 - p0) * (math.log(bpp) - math.log(r0)) / (math.log(r1) - math.log(r0))
    return None


def gain_over(before: dict[str, Any] | None, now: dict[str, Any]) -> float | None:
    """How much ``now`` improved on ``before`` (validation dicts of :func:`validate`), in
    points of rate saving vs JPEG when both have one, else in dB of PSNR gain vs JPEG at equal
    rate times :data:`PCT_PER_DB` (``inf`` with no ``before``: the first model is kept;
    ``None``: not measurable)."""
    if before is None:
        return math.inf
    if now.get("jpeg_saving_pct") is not None and before.get("jpeg_saving_pct") is not None:
        return now["jpeg_saving_pct"] - before["jpeg_saving_pct"]
    if now.get("jpeg_dpsnr_db") is None or before.get("jpeg_dpsnr_db") is None:
        return None
    return (now["jpeg_dpsnr_db"] - before["jpeg_dpsnr_db"]) * PCT_PER_DB


def validate(model: Any, dataset: str, app: str | None, limit: int) -> dict[str, Any]:
    """The model's real-codec rate and PSNR on ``limit`` validation frames (spread over the
    split), pooled like :func:`_jpeg_points`, and its saving vs JPEG at that PSNR."""
    from cloud3d.imageio import read_png_rgb
    from cloud3d_dataset.manifest import image_paths
    from models.codec import compress_image, decompress_image

    rows = image_paths(dataset, split="validation", app=app)
    keep = np.unique(np.linspace(0, len(rows) - 1, max(1, min(limit, len(rows)))).round())
    frames = [read_png_rgb(rows["abspath"].iloc[int(i)]) for i in keep]
    pixels = sum(f.shape[0] * f.shape[1] for f in frames)
    nbytes, sse = 0, 0.0
    for f in frames:
        data = compress_image(model, f)
        nbytes += len(data)
        rec = decompress_image(model, data)
        sse += float(np.square(rec.astype(np.float64) - f).sum())
    bpp, psnr = 8 * nbytes / pixels, _psnr(sse / (3 * pixels))
    jpeg = _jpeg_points(frames)
    ref = jpeg_rate_at(jpeg, psnr)
    at_rate = jpeg_psnr_at(jpeg, bpp)
    return {"frames": len(frames), "bpp": bpp, "psnr": psnr,
            "jpeg_bpp_at_psnr": ref,
            "jpeg_saving_pct": None if ref is None else 100 * (1 - bpp / ref),
            "jpeg_dpsnr_db": None if at_rate is None else psnr - at_rate}


def _start_point(stage: Stage, run: Path, bundle_dir: Path) -> str | None:
    """``--init`` of a fresh lap run (None: resume the folder's own run, or from scratch)."""
    if (run / "last.pt").exists():
        return None
    if (bundle_dir / f"{stage.name}.json").exists():
        return str(bundle_dir / f"{stage.name}.json")
    if stage.init is not None and (bundle_dir / f"{stage.init}.json").exists():
        return str(bundle_dir / f"{stage.init}.json")
    return None


def _dataset_id(dataset: str) -> str:
    """First 12 hex digits of the SHA-256 of the dataset's manifest.csv (which frames)."""
    with open(Path(dataset) / "manifest.csv", "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()[:12]


def _throughput(st: Stage, device: str, batch: int, crop: int, budget_s: float,
                progress: bool) -> tuple[int, bool, dict[str, float]]:
    """``(batch, channels_last, speed)`` the lap trains with: on CUDA the fastest settings a
    sweep of up to a minute finds, else ``batch`` as given measured on ``device``."""
    if device == "cuda":  # a minute of the lap on the settings that train fastest
        if progress:
            print(f"throughput sweep of {st.arch}, {crop} px crops:")
        return sweep_throughput(st.arch, crop, device, min(60.0, budget_s / 10), progress)
    return batch, False, measure_throughput(st.arch, batch, crop, device)


def _start_step(run: Path) -> int:
    """The step the lap starts from: plateau.pt's when there is one, else last.pt's, else 0."""
    from models.checkpoint import read_checkpoint

    if (run / "plateau.pt").exists():
        return int(read_checkpoint(run / "plateau.pt")["meta"]["step"])
    return int(read_checkpoint(run / "last.pt")["meta"]["step"]) if (run / "last.pt").exists() else 0


def _export_lap(run: Path, st: Stage, bdir: Path, dataset: str, meta: dict[str, Any],
                val: dict[str, Any], row: dict[str, Any]) -> None:
    """Export a kept lap's last.pt as the stage's float16 preview bundle with its card."""
    import pandas as pd

    from models.bundle import export_bundle, read_card

    stage = st.name
    table = run / "laps.csv"
    done = float(pd.read_csv(table)["cpu_s"].sum()) if table.exists() else 0.0
    ref = (meta.get("init") or {}).get("ref") or ""  # the card this run started from
    start_card = read_card(ref) if ref.endswith(".json") and Path(ref).is_file() else {}
    cpu_h = float(start_card.get("cpu_hours") or 0.0) + (done + row["cpu_s"]) / 3600
    extra = {"status": "preview", "validation": val, "cpu_hours": round(cpu_h, 3),
             "command": f"cloud3d lap DATASET --stage {stage} (laps: RUNS/{stage}/laps.csv)",
             "test": {"note": "not measured yet: cloud3d models study DATASET "
                              "--update-cards"},
             "data": {"dataset": os.path.basename(os.path.abspath(dataset)),
                      "manifest_sha256_12": _dataset_id(dataset), "app": st.app},
             "plan_stage": stage,
             "description": f"{st.arch} at lambda {st.lmbda} ({st.app}); a preview until "
                            "its test-split figures meet the targets of docs/models.md"}
    export_bundle(run / "last.pt", stage, bdir, extra, dtype="float16")


@dataclass(frozen=True)
class LapOptions:
    """How a lap runs (the stage and budget say what it trains and for how long).

    ``device``: ``cpu`` or ``cuda``; ``bundle_dir``: where the repository's weights are read
    and kept (None: the package's bundled folder); ``batch`` (the throughput probe may raise
    it on a GPU) and ``crop`` (pixels, square); ``lr``; ``threads``: torch's CPU threads (0:
    its own setting); ``val_frames``: validation frames per app; ``steps``: train exactly this
    many steps (None: as many as the budget allows; the budget then only stops a run that
    overruns it); ``progress``: bars and notes on stderr."""

    device: str = "cpu"
    bundle_dir: str | os.PathLike | None = None
    batch: int = 8
    crop: int = 256
    lr: float = 1e-4
    threads: int = 0
    val_frames: int = 12
    steps: int | None = None
    progress: bool = True


def run_lap(dataset: str, runs: str | os.PathLike, budget_s: float, stage: str | Stage = "general",
            options: LapOptions | None = None) -> dict[str, Any]:
    """One lap of ``stage`` within ``budget_s`` wall seconds (see the module docstring);
    returns its ``laps.csv`` row. ``stage``: a name in :data:`STAGES`, or a :class:`Stage` of
    one's own; ``options``: :class:`LapOptions` (its defaults when None)."""
    import pandas as pd
    import torch

    from models.checkpoint import load_checkpoint
    from models.library import BUNDLED_DIR
    from models.train import TrainConfig, train

    o = options if options is not None else LapOptions()
    device, batch, crop, progress = o.device, o.batch, o.crop, o.progress
    t0, c0 = time.time(), time.process_time()
    if isinstance(stage, str) and stage not in STAGES:
        raise Cloud3dError(f"unknown stage {stage!r}; the plan has {', '.join(STAGES)}")
    st = STAGES[stage] if isinstance(stage, str) else stage
    stage = st.name
    from cloud3d_dataset.manifest import image_paths

    image_paths(dataset, split="train", app=None if st.app == "all" else st.app)  # before any work
    bdir = Path(o.bundle_dir) if o.bundle_dir is not None else BUNDLED_DIR
    run = Path(runs) / stage
    init = _start_point(st, run, bdir)
    if o.threads > 0:
        torch.set_num_threads(o.threads)
    batch, channels_last, speed = _throughput(st, device, batch, crop, budget_s, progress)
    start = _start_step(run)
    # the budget left after this point, less the validation (about 1/6) and a margin
    left = budget_s - (time.time() - t0)
    lap_steps = o.steps or max(2, int(speed["steps_per_s"] * left * 0.8))
    if progress:
        print(f"lap {stage}: {st.arch}, {speed['steps_per_s']:.2f} steps/s = "
              f"{speed['mpx_per_s']:.2f} Mpx/s (batch {batch} x {crop} px on {device}); "
              f"steps {start} -> {start + lap_steps}" + (f", from {init}" if init else ""))
    # a new seed each lap: other frame windows (when the frames exceed the cache) and crops;
    # a lap run again after a kill has the same index, so it resumes exactly
    lap_index = len(pd.read_csv(run / "laps.csv")) if (run / "laps.csv").exists() else 0
    cfg = TrainConfig(dataset=dataset, out=str(run), app=st.app, arch=st.arch, lmbda=st.lmbda,
                      seed=lap_index,
                      steps=start + lap_steps, batch=batch, crop=crop, lr=o.lr,
                      schedule="plateau", decay=max(1, lap_steps // 5),
                      warmup=0 if start else None, device=device,
                      resume=(run / "last.pt").exists(), val_every=10**9, val_images=4,
                      threads=o.threads, init=init, progress=progress,
                      deadline=t0 + budget_s * 0.9, channels_last=channels_last)
    try:
        res = train(cfg)
    except KeyboardInterrupt:  # the deadline (or Ctrl-C): last.pt holds the step reached
        if time.time() < t0 + budget_s * 0.9:
            raise
        return {"stage": stage, "kept": False,
                "status": "stopped at the deadline before the decay ended: the next lap "
                          "continues from last.pt"}
    model, meta = load_checkpoint(run / "last.pt")
    model.eval()
    val = validate(model, dataset, None if st.app == "all" else st.app, o.val_frames)
    row = {"stage": stage, "arch": st.arch, "lambda": st.lmbda, "step": res["step"],
           "gpx_seen": round(float(meta.get("gpx_seen") or 0.0), 6), "lap_steps": lap_steps,
           "mpx_per_s": round(speed["mpx_per_s"], 3), "device": device,
           "wall_s": round(time.time() - t0, 1), "cpu_s": round(time.process_time() - c0, 1),
           **val}
    from models.bundle import read_card

    card_path = bdir / f"{stage}.json"
    before = read_card(card_path).get("validation") if card_path.exists() else None
    gain = gain_over(before, val)
    row["gain_pct"] = gain
    row["kept"] = gain is not None and gain >= KEEP_GAIN_PCT
    if row["kept"]:
        _export_lap(run, st, bdir, dataset, meta, val, row)
    table = run / "laps.csv"
    pd.DataFrame([row]).to_csv(table, mode="a", header=not table.exists(), index=False)
    return row
