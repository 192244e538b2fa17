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
(see :data:`models.train_files.LOG_FIELDS`; validation rows of a variable-rate model carry ``quality`` and
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
written (KeyboardInterrupt; the CLI exits 130), between optimizer steps, never inside one
(:mod:`models.stop_signals`).
"""

from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from cloud3d.errors import Cloud3dError
from models.curves import plot_curves
from models.stop_signals import StopSignals
from models.train_files import append_log, restore
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

__all__ = ["TrainConfig", "rd_loss", "train"]

#: columns of log.csv; elapsed_s / cpu_s: wall / CPU seconds (this process, all threads) since
#: the run (or its last resume) started
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


def train(cfg: TrainConfig) -> dict[str, Any]:
    """Run (or resume) training; returns the final metrics. See the module docstring."""
    with StopSignals() as stop:
        return _train(cfg, stop)


def _train(cfg: TrainConfig, stop: StopSignals) -> dict[str, Any]:
    _check_config(cfg)
    out = Path(cfg.out)
    if (out / "last.pt").exists() and not cfg.resume:
        raise Cloud3dError(f"{out} already holds a run (last.pt): pass --resume to continue it "
                           "or choose another --out")
    run = _Run(cfg, stop)
    if run.step >= cfg.steps:
        return {"step": run.step, "done": True, "best_loss": run.best_loss, "gpx_seen": run.gpx_seen}
    run.open_data()
    return run.loop()


_METRICS = ("loss", "bpp", "mse", "psnr")


class _Run:
    """One training run: model, optimizers, data, counters and the files in ``cfg.out``.

    Built in the order that keeps runs bit-exact (seed, model, optimizers, restored state,
    then the data); :meth:`loop` trains to the end or the deadline, saving as it goes.
    """

    def __init__(self, cfg: TrainConfig, stop: StopSignals) -> None:
        from models.architectures import create_model
        from models.codec import resolve_device

        self.cfg, self.out, self.stop = cfg, Path(cfg.out), stop
        out = self.out
        self.last, self.best, self.log, self.plateau = (out / "last.pt", out / "best.pt",
                                                        out / "log.csv", out / "plateau.pt")
        self.dev = resolve_device(cfg.device)
        if cfg.threads > 0:
            torch.set_num_threads(cfg.threads)
        torch.manual_seed(cfg.seed)
        try:
            model = create_model(cfg.arch, **({"lambdas": list(cfg.lambdas)} if cfg.lambdas else {}))
        except ValueError as exc:
            raise Cloud3dError(str(exc)) from None
        if cfg.crop % model.stride:
            raise Cloud3dError(f"--crop {cfg.crop} is not a multiple of {cfg.arch}'s stride "
                               f"({model.stride} px)")
        out.mkdir(parents=True, exist_ok=True)
        model.to(self.dev).train()
        self.fmt = torch.channels_last if cfg.channels_last else torch.contiguous_format
        model.to(memory_format=self.fmt)
        self.model = model
        self.opt, self.aux_opt = make_optimizers(model, cfg.lr, cfg.aux_lr)
        self.step, self.best_loss, self.gpx_seen, self.init_meta = restore(
            cfg, model, self.opt, self.aux_opt, out)
        self.vr = cfg.variable_rate
        self.lam_meta = None if self.vr else cfg.lmbda
        self.total = cfg.steps  # a deadline may bring the end (and the decay) forward
        self.run_avg: dict[str, float] = {}

    def open_data(self) -> None:
        """The cached train frames, the validation images (when the split has them), and the
        per-step random generator; starts the run's clocks."""
        from cloud3d_dataset.torch_dataset import FrameBank

        cfg = self.cfg
        app = None if cfg.app == "all" else cfg.app
        threads = torch.get_num_threads()
        self.train_set = FrameBank(cfg.dataset, "train", app=app, resolution=cfg.resolution,
                                   crop=cfg.crop, max_bytes=int(cfg.cache_gb * 2**30), threads=threads,
                                   progress=cfg.progress, seed=cfg.seed)
        if self.train_set.windowed and cfg.progress:
            print(f"note: the train frames exceed --cache-gb {cfg.cache_gb:g}: each frame keeps one "
                  "window of its area that fits", file=sys.stderr)
        try:
            self.val_set = FrameBank(cfg.dataset, "validation", app=app, resolution=cfg.resolution,
                                     crop=None, limit=cfg.val_images, threads=threads)
        except Cloud3dError:
            self.val_set = None
        self.gen = torch.Generator()
        self.amp = self.dev.type == "cuda"
        self.ladder = torch.tensor(self.model.lambdas, dtype=torch.float32) if self.vr else None
        self.qualities = list(range(self.model.num_qualities)) if self.vr else None
        self.warmup, self.decay, self.d_start = cfg.warmup_steps(), cfg.decay_steps(), cfg.decay_start()
        self.t_start, self.c_start = time.perf_counter(), time.process_time()

    def _times(self) -> dict[str, float]:
        return {"elapsed_s": round(time.perf_counter() - self.t_start, 3),
                "cpu_s": round(time.process_time() - self.c_start, 3), "gpx": round(self.gpx_seen, 9)}

    def save(self, metrics: dict[str, float], paths: tuple[Path, ...]) -> None:
        """Write the model (and, except to best.pt, the optimizer states) to each of ``paths``."""
        from models.checkpoint import save_checkpoint

        cfg = self.cfg
        meta = {"lambda": self.lam_meta, "app": cfg.app, "dataset": os.path.abspath(cfg.dataset),
                "step": self.step, "steps_total": self.total, "decay_start": self.d_start,
                "schedule": cfg.schedule, "metrics": metrics,
                "best_loss": self.best_loss, "gpx_seen": self.gpx_seen, "train_config": asdict(cfg)}
        if self.vr:
            meta["lambdas"] = list(self.model.lambdas)
        if self.init_meta is not None:
            meta["init"] = self.init_meta
        extra = {"optimizer": self.opt.state_dict(), "aux_optimizer": self.aux_opt.state_dict()}
        for p in paths:
            save_checkpoint(p, self.model, meta, None if p == self.best else extra)
        if self.last in paths:
            plot_curves(self.log, self.out / "curves.png", cfg.batch * cfg.crop**2)  # models/curves.py

    def validate(self) -> dict[str, float]:
        """Log one row per quality; returns the metrics of the point (mean over qualities)."""
        res = evaluate(self.model, self.val_set, self.dev, self.cfg.val_images,
                       qualities=self.qualities, lmbda=self.lam_meta)
        times = self._times()
        for r in res:
            append_log(self.log, {"step": self.step, "phase": "validation", **r, **times})
        metrics = {k: sum(r[k] for r in res) / len(res) for k in _METRICS}
        if self.vr:
            metrics["per_quality"] = [{k: r[k] for k in ("quality", "lambda", "bpp", "psnr")}
                                      for r in res]
        return metrics

    def loop(self) -> dict[str, Any]:
        """Train from ``self.step`` to the end; Ctrl-C saves last.pt and re-raises."""
        from tqdm import tqdm

        cfg = self.cfg
        if self.step == 0 and self.val_set is not None:  # the untrained model's validation loss as baseline
            self.validate()
        label = f"λ={cfg.lmbda}" if not self.vr else f"{self.model.num_qualities} qualities"
        self.bar = tqdm(total=self.total, initial=self.step, desc=f"train {cfg.arch} {label}",
                        disable=not cfg.progress, unit="step")
        metrics: dict[str, Any] = {}
        saved_step = first_step = self.step
        t_loop = time.perf_counter()
        try:
            while self.step < self.total:
                if cfg.deadline is not None:
                    self._meet_deadline(first_step, t_loop)
                if self.step == self.d_start and self.d_start < self.total and cfg.schedule == "plateau":
                    self.save({k: self.run_avg.get(k, math.nan) for k in _METRICS}, (self.plateau,))
                with self.stop.step():  # a signal waits for the step to be whole
                    self._train_one_step()
                if self.step % cfg.val_every == 0 or self.step >= self.total:
                    metrics = self._checkpoint()
                    saved_step = self.step
        except KeyboardInterrupt:
            self.bar.close()
            if self.step > saved_step:
                self.save({k: self.run_avg[k] for k in _METRICS}, (self.last,))
            print(f"\ninterrupted at step {self.step}: {self.last} holds it; continue with --resume",
                  file=sys.stderr)
            raise
        self.bar.close()
        return {"step": self.step, "done": True, "best_loss": self.best_loss,
                "gpx_seen": round(self.gpx_seen, 4), **{k: v for k, v in metrics.items() if k != "per_quality"}}

    def _meet_deadline(self, first_step: int, t_loop: float) -> None:
        """Stop at the deadline; in a ``plateau`` schedule, end (and decay) sooner when the
        steps left no longer fit before it."""
        cfg, step = self.cfg, self.step
        if time.time() > cfg.deadline:
            raise KeyboardInterrupt("deadline")
        if cfg.schedule == "plateau" and step - first_step >= 3:
            per_step = (time.perf_counter() - t_loop) / (step - first_step)
            fit = step + int((cfg.deadline - time.time()) / per_step)
            if fit < self.total:  # the machine got slower: end (and decay) sooner
                self.total = max(step + 1, fit)
                if step < self.d_start:
                    self.d_start = max(step, self.total - self.decay)
                self.bar.total = self.total

    def _train_one_step(self) -> None:
        """One optimizer step on a batch drawn from the step's own seed; logs the train row."""
        from models.variable_rate import sample_qualities

        cfg, step, gen, vr = self.cfg, self.step, self.gen, self.vr
        lr = lr_at(step, self.total, cfg.lr, cfg.schedule, self.warmup, cfg.min_lr_ratio,
                   self.total - self.d_start if cfg.schedule == "plateau" else self.decay)
        set_lr(self.opt, lr)
        gen.manual_seed(step_seed(cfg.seed, step))
        torch.manual_seed(step_seed(cfg.seed, step) + 1)  # the training noise
        x = self.train_set.sample(cfg.batch, gen)
        quality = sample_qualities(cfg.batch, self.model.num_qualities, gen) if vr else None
        lmbda = self.ladder[quality] if vr else cfg.lmbda
        x = x.to(self.dev, non_blocking=True).contiguous(memory_format=self.fmt)
        vals = train_step(self.model, self.opt, self.aux_opt, x, lmbda,
                          quality=quality, clip=cfg.clip, amp=self.amp)
        self.step += 1
        self.gpx_seen += cfg.gpx_per_step()
        run_avg = self.run_avg
        for k, v in vals.items():
            run_avg[k] = v if k not in run_avg else 0.9 * run_avg[k] + 0.1 * v
        self.bar.update(1)
        self.bar.set_postfix(loss=f"{run_avg['loss']:.3f}", bpp=f"{run_avg['bpp']:.3f}",
                             psnr=f"{run_avg['psnr']:.2f}", lr=f"{lr:.2g}")
        append_log(self.log, {"step": self.step, "phase": "train", "lambda": self.lam_meta, **vals,
                               "lr": lr, **self._times()})

    def _checkpoint(self) -> dict[str, Any]:
        """Validate (or take the running averages without validation images), keep the best,
        save; returns the metrics."""
        if self.val_set is not None:
            metrics = self.validate()
        else:
            metrics = {k: self.run_avg[k] for k in _METRICS}
        is_best = metrics["loss"] < self.best_loss
        if is_best:
            self.best_loss = metrics["loss"]
        self.save(metrics, (self.best, self.last) if is_best else (self.last,))
        return metrics
