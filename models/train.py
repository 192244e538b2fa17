"""Train a learned codec on a cloud3d dataset: one model per app and lambda, one
variable-rate model per app (``c2f-*-vr``: a whole ladder of lambdas), or ``app="all"``.

Data: every frame of the train split is decoded once into memory
(:class:`cloud3d_dataset.torch_dataset.FrameBank`, up to ``cache_gb``; beyond that a window
of each frame) and each step draws ``batch`` random ``crop`` x ``crop`` crops from it,
mirrored left-right at random, in the training process (no loader workers: both cores go
to the network).

Loss, optimizers and the learning-rate schedule: :mod:`models.train_step`. A variable-rate
model draws a quality index per crop (stratified over the ladder,
:func:`models.variable_rate.sample_qualities`) and weighs each crop's loss with its lambda.
On CUDA the transforms run under bfloat16 autocast ("AMP"; entropy models stay float32).
Validation runs on whole frames of the validation split (spread over it), eval mode, at
every quality of a variable-rate model.

Outputs in ``out_dir``: ``last.pt`` (weights + optimizer states, for ``resume``), ``best.pt``
(lowest validation loss so far, the mean over qualities for a variable-rate model; training
loss when there is no validation split), ``plateau.pt`` (``plateau`` schedule: the state at
the first step of the final decay, weights + optimizer states, never decayed) and ``log.csv``
(see :data:`LOG_FIELDS`; validation rows of a variable-rate model carry ``quality`` and
``lambda``).

Resuming is exact: the crops, flips, qualities and training noise of step ``k`` come from
generators seeded with ``(seed, k)``, so a run killed at any step and resumed with the same
settings ends with the same weights as one that ran through (on the same machine and thread
count). ``resume`` with a larger ``steps`` than the run was planned for continues the
schedule: a ``plateau`` run already in its final decay goes back to ``plateau.pt`` and trains
on at the constant rate, so the decay happens once, at the new end.

Every checkpoint records ``gpx_seen``: the gigapixels of training crops the weights have
seen, those of its ``init`` source included.

Stopping: SIGINT (Ctrl-C) and SIGTERM both stop a run at the step reached with ``last.pt``
written (KeyboardInterrupt; the CLI exits 130). SIGINT is set up explicitly because a run
started in the background by a non-interactive shell (``cmd &`` in a script) inherits an
ignored SIGINT, which Python then leaves ignored.
"""

from __future__ import annotations

import contextlib
import csv
import io
import math
import os
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from cloud3d.atomic import atomic_write_text
from cloud3d.errors import Cloud3dError
from models.curves import plot_curves
from models.train_step import (
    SCHEDULES,
    decay_start,
    evaluate,
    lr_at,
    make_optimizers,
    rd_loss,
    set_lr,
    train_step,
)

__all__ = ["LOG_FIELDS", "TrainConfig", "rd_loss", "train"]

#: columns of log.csv; elapsed_s / cpu_s: wall / CPU seconds (this process, all threads) since
#: the run (or its last resume) started
LOG_FIELDS = ["step", "phase", "quality", "lambda", "loss", "bpp", "mse", "psnr", "aux_loss",
              "lr", "elapsed_s", "cpu_s", "gpx"]


@dataclass
class TrainConfig:
    """Everything ``cloud3d train`` takes (see the CLI help for meanings).

    ``arch`` ending in ``-vr`` trains a variable-rate model over ``lambdas`` (None: the
    architecture's default ladder); ``lmbda`` is then unused. ``init``: a checkpoint, model
    card or model name whose weights a new run starts from (same architecture and
    configuration; optimizer states start fresh; ignored when resuming). ``deadline``: a
    ``time.time()`` after which the run stops as on SIGTERM (``last.pt`` keeps the step
    reached; :class:`KeyboardInterrupt`); a ``plateau`` run whose measured pace would miss
    it ends sooner instead, its decay moved forward with it (``steps_total`` and
    ``decay_start`` in the checkpoints say what it did). ``channels_last``: the network and batches in
    channels-last memory order (faster convolutions on some GPUs). ``warmup=None``: 5% of
    ``steps``, at most 1000. ``decay=None``: the ``plateau`` schedule's final decay is 10% of
    ``steps``. ``threads=0``: torch's default (one per core).
    """

    dataset: str
    out: str
    app: str = "all"
    arch: str = "c2f-small-pruned"
    lmbda: float = 0.01
    lambdas: tuple[float, ...] | None = None
    steps: int = 100_000
    batch: int = 8
    crop: int = 256
    lr: float = 1e-4
    schedule: str = "plateau"
    warmup: int | None = None
    decay: int | None = None
    min_lr_ratio: float = 0.01
    aux_lr: float = 1e-3
    device: str = "auto"
    resume: bool = False
    val_every: int = 1000
    val_images: int = 20
    resolution: str | None = None
    threads: int = 0
    cache_gb: float = 8.0
    seed: int = 0
    clip: float = 1.0
    progress: bool = True
    init: str | None = None
    deadline: float | None = None
    channels_last: bool = False

    @property
    def variable_rate(self) -> bool:
        return self.arch.endswith("-vr")

    def warmup_steps(self) -> int:
        return min(1000, self.steps // 20) if self.warmup is None else self.warmup

    def decay_steps(self) -> int:
        return max(1, self.steps // 10) if self.decay is None else self.decay

    def decay_start(self) -> int:
        """First step of the final decay (``steps`` when the schedule has none)."""
        return decay_start(self.steps, self.schedule, self.warmup_steps(), self.decay_steps())

    def gpx_per_step(self) -> float:
        """Gigapixels of training crops one step sees."""
        return self.batch * self.crop * self.crop / 1e9


def step_seed(seed: int, step: int) -> int:
    """Seed of step ``step``'s random draws (crops, flips, qualities, noise): a function of the
    run's seed and the step only, so that a resumed run draws what an unbroken one does."""
    return (seed * 1_000_003 + step * 7919 + 12345) % (2**63 - 1)

def _append_log(path: Path, row: dict[str, Any]) -> None:
    new = not path.exists()
    with open(path, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=LOG_FIELDS)
        if new:
            w.writeheader()
        w.writerow({k: row.get(k, "") for k in LOG_FIELDS})


def _truncate_log(path: Path, step: int) -> None:
    """Drop log rows after ``step`` (written after the checkpoint a resume starts from); a
    log with older columns is rewritten with :data:`LOG_FIELDS` (missing values empty)."""
    if not path.exists():
        return
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
        header = reader.fieldnames
    keep = [r for r in rows if r.get("step", "").isdigit() and int(r["step"]) <= step]
    if len(keep) == len(rows) and header == LOG_FIELDS:
        return
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=LOG_FIELDS, lineterminator="\r\n")
    w.writeheader()
    w.writerows({k: r.get(k, "") for k in LOG_FIELDS} for r in keep)
    atomic_write_text(path, buf.getvalue())


def _check_config(cfg: TrainConfig) -> None:
    if cfg.steps < 1 or cfg.batch < 1:
        raise Cloud3dError("--steps and --batch must be at least 1")
    if not cfg.lr > 0 or not 0 <= cfg.min_lr_ratio <= 1:
        raise Cloud3dError("--lr must be positive and the final LR ratio in 0..1")
    if cfg.schedule not in SCHEDULES:
        raise Cloud3dError(f"unknown --schedule {cfg.schedule!r}; valid: {', '.join(SCHEDULES)}")
    if cfg.warmup is not None and cfg.warmup < 0:
        raise Cloud3dError("--warmup must be 0 or more steps")
    if cfg.decay is not None and cfg.decay < 0:
        raise Cloud3dError("--decay must be 0 or more steps")
    if cfg.lambdas is not None and not cfg.variable_rate:
        raise Cloud3dError("a lambda ladder needs a variable-rate architecture (--variable-rate)")
    if cfg.cache_gb <= 0:
        raise Cloud3dError("--cache-gb must be positive")


def _check_resume(meta: dict[str, Any], cfg: TrainConfig, model: Any, last: Path) -> None:
    mine = {"arch": cfg.arch, "app": cfg.app}
    if cfg.variable_rate:
        mine["lambdas"] = list(model.lambdas)
        theirs = {**meta, "lambdas": meta.get("config", {}).get("lambdas")}
    else:
        mine["lambda"] = cfg.lmbda
        theirs = meta
    for key, value in mine.items():
        if theirs.get(key) != value:
            raise Cloud3dError(f"{last} was trained with {key}={theirs.get(key)}, not {value}: "
                               "use the original settings or another --out")


@contextlib.contextmanager
def _stop_signals():
    """While inside: SIGINT and SIGTERM raise KeyboardInterrupt (main thread only; the
    previous handlers come back afterwards)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

    def stop(signum, frame):
        raise KeyboardInterrupt(signal.Signals(signum).name)

    for sig in old:
        signal.signal(sig, stop)
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


def _load_init(model: Any, ref: str) -> dict[str, Any]:
    """Copy the weights of ``ref`` (see :func:`models.library.open_model`) into ``model``;
    returns what the checkpoint metadata records of it. Cloud3dError when ``ref`` is another
    architecture or configuration (e.g. another lambda ladder)."""
    from models.checkpoint import load_weights
    from models.library import open_model

    src, info = open_model(ref)
    if src.arch != model.arch or src.config() != model.config():
        raise Cloud3dError(f"--init {ref} is {src.arch} {src.config()}, this run trains "
                           f"{model.arch} {model.config()}: the architecture and its "
                           "configuration must be the same")
    load_weights(model, src.state_dict(), ref)
    meta = info.get("meta") or {}
    return {"ref": ref, "kind": info["kind"], "step": meta.get("step"), "app": meta.get("app"),
            "gpx_seen": meta.get("gpx_seen")}


def train(cfg: TrainConfig) -> dict[str, Any]:
    """Run (or resume) training; returns the final metrics. See the module docstring."""
    with _stop_signals():
        return _train(cfg)


def _restore(cfg: TrainConfig, model: Any, opt: Any, aux_opt: Any, out: Path
             ) -> tuple[int, float, float, dict[str, Any] | None]:
    """Load the state a run starts from: ``(step, best_loss, gpx_seen, init_meta)``.

    A fresh run starts at step 0 (from ``cfg.init``'s weights when given). A resumed run
    starts from ``last.pt``, or from ``plateau.pt`` when ``cfg.steps`` moved the end of a
    ``plateau`` schedule past a decay that had already begun (module docstring)."""
    from models.checkpoint import load_weights, read_checkpoint

    last = out / "last.pt"
    if not (cfg.resume and last.exists()):
        init_meta = _load_init(model, cfg.init) if cfg.init is not None else None
        gpx = float((init_meta or {}).get("gpx_seen") or 0.0)
        return 0, math.inf, gpx, init_meta
    ck = read_checkpoint(last)
    meta = ck["meta"]
    _check_resume(meta, cfg, model, last)
    planned = int(meta.get("steps_total") or cfg.steps)
    old_decay = int(meta.get("decay_start") or planned)  # as that run planned it
    src = last
    if cfg.steps > planned and int(meta["step"]) > old_decay and meta.get("schedule") == "plateau":
        src = out / "plateau.pt"
        if not src.exists():
            raise Cloud3dError(f"{last} is already in its final decay and {src} is missing: "
                               "continue with --init from best.pt in another --out instead")
        ck = read_checkpoint(src)
        meta = ck["meta"]
        if cfg.progress:
            print(f"note: {out} was planned for {planned} steps and had begun its decay: going "
                  f"on from {src.name} (step {meta['step']}) at the constant rate",
                  file=sys.stderr)
    load_weights(model, ck["state_dict"], str(src))
    opt.load_state_dict(ck["optimizer"])
    aux_opt.load_state_dict(ck["aux_optimizer"])
    step = int(meta["step"])
    _truncate_log(out / "log.csv", step)
    return (step, float(meta.get("best_loss", math.inf)), float(meta.get("gpx_seen") or 0.0),
            meta.get("init"))


def _train(cfg: TrainConfig) -> dict[str, Any]:
    from tqdm import tqdm

    from cloud3d_dataset.torch_dataset import FrameBank
    from models.architectures import create_model
    from models.checkpoint import save_checkpoint
    from models.codec import resolve_device
    from models.variable_rate import sample_qualities

    _check_config(cfg)
    out = Path(cfg.out)
    last, best, log, plateau = out / "last.pt", out / "best.pt", out / "log.csv", out / "plateau.pt"
    if last.exists() and not cfg.resume:
        raise Cloud3dError(f"{out} already holds a run (last.pt): pass --resume to continue it "
                           "or choose another --out")
    dev = resolve_device(cfg.device)
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    app = None if cfg.app == "all" else cfg.app
    try:
        model = create_model(cfg.arch, **({"lambdas": list(cfg.lambdas)} if cfg.lambdas else {}))
    except ValueError as exc:
        raise Cloud3dError(str(exc)) from None
    if cfg.crop % model.stride:
        raise Cloud3dError(f"--crop {cfg.crop} is not a multiple of {cfg.arch}'s stride "
                           f"({model.stride} px)")
    out.mkdir(parents=True, exist_ok=True)
    model.to(dev).train()
    fmt = torch.channels_last if cfg.channels_last else torch.contiguous_format
    model.to(memory_format=fmt)
    opt, aux_opt = make_optimizers(model, cfg.lr, cfg.aux_lr)
    step, best_loss, gpx_seen, init_meta = _restore(cfg, model, opt, aux_opt, out)
    if step >= cfg.steps:
        return {"step": step, "done": True, "best_loss": best_loss, "gpx_seen": gpx_seen}

    threads = torch.get_num_threads()
    train_set = FrameBank(cfg.dataset, "train", app=app, resolution=cfg.resolution,
                          crop=cfg.crop, max_bytes=int(cfg.cache_gb * 2**30), threads=threads,
                          progress=cfg.progress, seed=cfg.seed)
    if train_set.windowed and cfg.progress:
        print(f"note: the train frames exceed --cache-gb {cfg.cache_gb:g}: each frame keeps one "
              "window of its area that fits", file=sys.stderr)
    try:
        val_set = FrameBank(cfg.dataset, "validation", app=app, resolution=cfg.resolution,
                            crop=None, limit=cfg.val_images, threads=threads)
    except Cloud3dError:
        val_set = None
    gen = torch.Generator()
    amp = dev.type == "cuda"
    vr = cfg.variable_rate
    ladder = torch.tensor(model.lambdas, dtype=torch.float32) if vr else None
    qualities = list(range(model.num_qualities)) if vr else None
    warmup, decay, d_start = cfg.warmup_steps(), cfg.decay_steps(), cfg.decay_start()
    t_start, c_start = time.perf_counter(), time.process_time()
    lam_meta = None if vr else cfg.lmbda

    def _times() -> dict[str, float]:
        return {"elapsed_s": round(time.perf_counter() - t_start, 3),
                "cpu_s": round(time.process_time() - c_start, 3), "gpx": round(gpx_seen, 9)}

    def save(metrics: dict[str, float], paths: tuple[Path, ...]) -> None:
        meta = {"lambda": lam_meta, "app": cfg.app, "dataset": os.path.abspath(cfg.dataset),
                "step": step, "steps_total": total, "decay_start": d_start,
                "schedule": cfg.schedule, "metrics": metrics,
                "best_loss": best_loss, "gpx_seen": gpx_seen, "train_config": asdict(cfg)}
        if vr:
            meta["lambdas"] = list(model.lambdas)
        if init_meta is not None:
            meta["init"] = init_meta
        extra = {"optimizer": opt.state_dict(), "aux_optimizer": aux_opt.state_dict()}
        for p in paths:
            save_checkpoint(p, model, meta, None if p == best else extra)
        if last in paths:
            plot_curves(log, out / "curves.png", cfg.batch * cfg.crop**2)  # models/curves.py

    def validate() -> dict[str, float]:
        """Log one row per quality; returns the metrics of the point (mean over qualities)."""
        res = evaluate(model, val_set, dev, cfg.val_images, qualities=qualities, lmbda=lam_meta)
        times = _times()
        for r in res:
            _append_log(log, {"step": step, "phase": "validation", **r, **times})
        metrics = {k: sum(r[k] for r in res) / len(res) for k in ("loss", "bpp", "mse", "psnr")}
        if vr:
            metrics["per_quality"] = [{k: r[k] for k in ("quality", "lambda", "bpp", "psnr")}
                                      for r in res]
        return metrics

    if step == 0 and val_set is not None:  # the untrained model's validation loss as baseline
        validate()
    label = f"λ={cfg.lmbda}" if not vr else f"{model.num_qualities} qualities"
    total = cfg.steps  # a deadline may bring the end (and the decay) forward
    bar = tqdm(total=total, initial=step, desc=f"train {cfg.arch} {label}",
               disable=not cfg.progress, unit="step")
    run_avg: dict[str, float] = {}
    metrics: dict[str, Any] = {}
    saved_step = first_step = step
    t_loop = time.perf_counter()
    try:
        while step < total:
            if cfg.deadline is not None:
                if time.time() > cfg.deadline:
                    raise KeyboardInterrupt("deadline")
                if cfg.schedule == "plateau" and step - first_step >= 3:
                    per_step = (time.perf_counter() - t_loop) / (step - first_step)
                    fit = step + int((cfg.deadline - time.time()) / per_step)
                    if fit < total:  # the machine got slower: end (and decay) sooner
                        total = max(step + 1, fit)
                        if step < d_start:
                            d_start = max(step, total - decay)
                        bar.total = total
            if step == d_start and d_start < total and cfg.schedule == "plateau":
                save({k: run_avg.get(k, math.nan) for k in ("loss", "bpp", "mse", "psnr")},
                     (plateau,))
            lr = lr_at(step, total, cfg.lr, cfg.schedule, warmup, cfg.min_lr_ratio,
                       total - d_start if cfg.schedule == "plateau" else decay)
            set_lr(opt, lr)
            gen.manual_seed(step_seed(cfg.seed, step))
            torch.manual_seed(step_seed(cfg.seed, step) + 1)  # the training noise
            x = train_set.sample(cfg.batch, gen)
            quality = sample_qualities(cfg.batch, model.num_qualities, gen) if vr else None
            lmbda = ladder[quality] if vr else cfg.lmbda
            x = x.to(dev, non_blocking=True).contiguous(memory_format=fmt)
            vals = train_step(model, opt, aux_opt, x, lmbda,
                              quality=quality, clip=cfg.clip, amp=amp)
            step += 1
            gpx_seen += cfg.gpx_per_step()
            for k, v in vals.items():
                run_avg[k] = v if k not in run_avg else 0.9 * run_avg[k] + 0.1 * v
            bar.update(1)
            bar.set_postfix(loss=f"{run_avg['loss']:.3f}", bpp=f"{run_avg['bpp']:.3f}",
                            psnr=f"{run_avg['psnr']:.2f}", lr=f"{lr:.2g}")
            _append_log(log, {"step": step, "phase": "train", "lambda": lam_meta, **vals,
                              "lr": lr, **_times()})
            if step % cfg.val_every == 0 or step >= total:
                if val_set is not None:
                    metrics = validate()
                else:
                    metrics = {k: run_avg[k] for k in ("loss", "bpp", "mse", "psnr")}
                is_best = metrics["loss"] < best_loss
                if is_best:
                    best_loss = metrics["loss"]
                save(metrics, (best, last) if is_best else (last,))
                saved_step = step
    except KeyboardInterrupt:
        bar.close()
        if step > saved_step:
            save({k: run_avg[k] for k in ("loss", "bpp", "mse", "psnr")}, (last,))
        print(f"\ninterrupted at step {step}: {last} holds it; continue with --resume",
              file=sys.stderr)
        raise
    bar.close()
    return {"step": step, "done": True, "best_loss": best_loss, "gpx_seen": round(gpx_seen, 4),
            **{k: v for k, v in metrics.items() if k != "per_quality"}}
