"""Train a learned codec on a cloud3d dataset (one model per app and lambda, or ``app="all"``).

Loss (compressai convention)::

    L = lambda * 255^2 * MSE(x, x_hat) + bpp

with x, x_hat in 0..1 (so ``255^2 * MSE`` is the MSE in 8-bit code values squared) and
``bpp = sum(-log2 likelihoods) / (batch * H * W)``: the rate of y, z (and w) estimated by the
entropy models. The paper's lambdas (0.0001 .. 0.16) are used on this scale as given.

The auxiliary loss of compressai's EntropyBottleneck (which fits its quantiles) has its own
Adam optimizer over the ``*.quantiles`` parameters; everything else is in the main Adam.
On CUDA the transforms run under bfloat16 autocast ("AMP"; entropy models stay float32,
bfloat16 needs no loss scaling). Validation runs on full frames of the validation split in
eval mode (rounding instead of noise), padded to the model's stride by edge replication.

Outputs in ``out_dir``: ``last.pt`` (weights + optimizer states, for ``resume``), ``best.pt``
(lowest validation loss so far; training loss when there is no validation split) and
``log.csv`` (step, phase, loss, bpp, mse, psnr, aux_loss, lr, elapsed_s).
"""

from __future__ import annotations

import csv
import io
import math
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from cloud3d.atomic import atomic_write_text
from cloud3d.errors import Cloud3dError

LOG_FIELDS = ["step", "phase", "loss", "bpp", "mse", "psnr", "aux_loss", "lr", "elapsed_s"]


@dataclass
class TrainConfig:
    """Everything ``cloud3d train`` takes (see the CLI help for meanings)."""

    dataset: str
    out: str
    app: str = "all"
    arch: str = "c2f-small-pruned"
    lmbda: float = 0.01
    steps: int = 100_000
    batch: int = 8
    crop: int = 256
    lr: float = 1e-4
    aux_lr: float = 1e-3
    device: str = "auto"
    resume: bool = False
    val_every: int = 1000
    val_images: int = 20
    resolution: str | None = None
    workers: int = 2
    seed: int = 0
    clip: float = 1.0
    progress: bool = True


def rd_loss(out: dict[str, Any], x: torch.Tensor, lmbda: float,
            num_pixels: int | None = None) -> dict[str, torch.Tensor]:
    """``{"loss", "bpp", "mse", "psnr"}`` for a forward output and target ``x`` (B, 3, H, W)."""
    n = num_pixels if num_pixels is not None else x.shape[0] * x.shape[2] * x.shape[3]
    bpp = sum(torch.log(lk.float()).sum() for lk in out["likelihoods"].values()) / (
        -math.log(2) * n
    )
    x_hat = out["x_hat"].float()[..., : x.shape[2], : x.shape[3]]
    mse = F.mse_loss(x_hat, x)
    loss = lmbda * 255**2 * mse + bpp
    psnr = -10 * torch.log10(mse.detach().clamp_min(1e-10))
    return {"loss": loss, "bpp": bpp, "mse": mse, "psnr": psnr}


def _optimizers(model: torch.nn.Module, lr: float, aux_lr: float):
    main = [p for n, p in model.named_parameters() if not n.endswith(".quantiles") and p.requires_grad]
    aux = [p for n, p in model.named_parameters() if n.endswith(".quantiles") and p.requires_grad]
    return torch.optim.Adam(main, lr=lr), torch.optim.Adam(aux, lr=aux_lr)


def _pad(x: torch.Tensor, stride: int) -> torch.Tensor:
    ph, pw = (-x.shape[2]) % stride, (-x.shape[3]) % stride
    return F.pad(x, (0, pw, 0, ph), mode="replicate") if (ph or pw) else x


def evaluate(model: Any, images: torch.utils.data.Dataset, lmbda: float, device: torch.device,
             limit: int | None = None) -> dict[str, float]:
    """Mean loss/bpp/mse/psnr over full frames (eval mode); PSNR averaged per image."""
    model.eval()
    n = len(images) if limit is None else min(limit, len(images))
    acc = {"loss": 0.0, "bpp": 0.0, "mse": 0.0, "psnr": 0.0}
    with torch.no_grad():
        for i in range(n):
            x = images[i][None].to(device)
            out = model(_pad(x, model.stride))
            r = rd_loss(out, x, lmbda, num_pixels=x.shape[2] * x.shape[3])
            for k in acc:
                acc[k] += float(r[k]) / n
    model.train()
    return acc


def _append_log(path: Path, row: dict[str, Any]) -> None:
    new = not path.exists()
    with open(path, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=LOG_FIELDS)
        if new:
            w.writeheader()
        w.writerow({k: row.get(k, "") for k in LOG_FIELDS})


def _truncate_log(path: Path, step: int) -> None:
    """Drop log rows after ``step`` (written after the checkpoint a resume starts from)."""
    if not path.exists():
        return
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    keep = [r for r in rows if r.get("step", "").isdigit() and int(r["step"]) <= step]
    if len(keep) == len(rows):
        return
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=LOG_FIELDS, lineterminator="\r\n")
    w.writeheader()
    w.writerows({k: r.get(k, "") for k in LOG_FIELDS} for r in keep)
    atomic_write_text(path, buf.getvalue())


def train(cfg: TrainConfig) -> dict[str, Any]:
    """Run (or resume) training; returns the final metrics. See module docstring."""
    from tqdm import tqdm

    from cloud3d_dataset.torch_dataset import Cloud3dImages
    from models.architectures import create_model
    from models.checkpoint import load_weights, read_checkpoint, save_checkpoint
    from models.codec import resolve_device

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    last, best, log = out / "last.pt", out / "best.pt", out / "log.csv"
    if cfg.steps < 1 or cfg.batch < 1:
        raise Cloud3dError("--steps and --batch must be at least 1")
    if last.exists() and not cfg.resume:
        raise Cloud3dError(f"{out} already holds a run (last.pt): pass --resume to continue it "
                           "or choose another --out")
    dev = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)
    app = None if cfg.app == "all" else cfg.app
    try:
        model = create_model(cfg.arch)
    except ValueError as exc:
        raise Cloud3dError(str(exc)) from None
    model.to(dev).train()
    opt, aux_opt = _optimizers(model, cfg.lr, cfg.aux_lr)
    step, best_loss = 0, math.inf
    if cfg.resume and last.exists():
        ck = read_checkpoint(last)
        meta = ck["meta"]
        for key, mine in (("arch", cfg.arch), ("lambda", cfg.lmbda), ("app", cfg.app)):
            if meta.get(key) != mine:
                raise Cloud3dError(f"{last} was trained with {key}={meta.get(key)}, not {mine}: "
                                   "use the original settings or another --out")
        load_weights(model, ck["state_dict"], str(last))
        model.to(dev).train()
        opt.load_state_dict(ck["optimizer"])
        aux_opt.load_state_dict(ck["aux_optimizer"])
        step, best_loss = int(meta["step"]), float(meta.get("best_loss", math.inf))
        _truncate_log(log, step)
    if step >= cfg.steps:
        return {"step": step, "done": True, "best_loss": best_loss}

    train_set = Cloud3dImages(cfg.dataset, "train", app=app, resolution=cfg.resolution,
                              crop=cfg.crop, random=True)
    try:
        val_set = Cloud3dImages(cfg.dataset, "validation", app=app, resolution=cfg.resolution,
                                crop=None)
    except Cloud3dError:
        val_set = None
    loader = torch.utils.data.DataLoader(
        train_set, batch_size=cfg.batch, shuffle=True, drop_last=len(train_set) >= cfg.batch,
        num_workers=cfg.workers, persistent_workers=cfg.workers > 0,
    )
    amp = dev.type == "cuda"
    t_start = time.perf_counter()
    run_meta = {"lambda": cfg.lmbda, "app": cfg.app, "dataset": os.path.abspath(cfg.dataset),
                "config": asdict(cfg)}

    def save(metrics: dict[str, float], is_best: bool) -> None:
        meta = {**run_meta, "step": step, "metrics": metrics, "best_loss": best_loss}
        meta.pop("config")
        meta["train_config"] = asdict(cfg)
        extra = {"optimizer": opt.state_dict(), "aux_optimizer": aux_opt.state_dict()}
        if is_best:
            save_checkpoint(best, model, meta)
        save_checkpoint(last, model, meta, extra)

    if step == 0 and val_set is not None:  # the untrained model's validation loss as baseline
        metrics = evaluate(model, val_set, cfg.lmbda, dev, cfg.val_images)
        _append_log(log, {"step": 0, "phase": "validation", **metrics, "elapsed_s": 0.0})
    bar = tqdm(total=cfg.steps, initial=step, desc=f"train {cfg.arch} λ={cfg.lmbda}",
               disable=not cfg.progress, unit="step")
    run_avg: dict[str, float] = {}
    metrics: dict[str, float] = {}
    saved_step = step
    try:
        while step < cfg.steps:
            for x in loader:
                x = x.to(dev, non_blocking=True)
                opt.zero_grad(set_to_none=True)
                aux_opt.zero_grad(set_to_none=True)
                with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
                    out_ = model(x)
                r = rd_loss(out_, x, cfg.lmbda)
                r["loss"].backward()
                if cfg.clip > 0:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
                opt.step()
                aux = model.aux_loss()
                aux.backward()
                aux_opt.step()
                step += 1
                vals = {k: float(v.detach()) for k, v in r.items()}
                vals["aux_loss"] = float(aux.detach())
                for k, v in vals.items():
                    run_avg[k] = v if k not in run_avg else 0.9 * run_avg[k] + 0.1 * v
                bar.update(1)
                bar.set_postfix(loss=f"{run_avg['loss']:.3f}", bpp=f"{run_avg['bpp']:.3f}",
                                psnr=f"{run_avg['psnr']:.2f}")
                _append_log(log, {"step": step, "phase": "train", **vals, "lr": cfg.lr,
                                  "elapsed_s": round(time.perf_counter() - t_start, 3)})
                if step % cfg.val_every == 0 or step >= cfg.steps:
                    if val_set is not None:
                        metrics = evaluate(model, val_set, cfg.lmbda, dev, cfg.val_images)
                        _append_log(log, {"step": step, "phase": "validation", **metrics,
                                          "elapsed_s": round(time.perf_counter() - t_start, 3)})
                    else:
                        metrics = {k: run_avg[k] for k in ("loss", "bpp", "mse", "psnr")}
                    is_best = metrics["loss"] < best_loss
                    if is_best:
                        best_loss = metrics["loss"]
                    save(metrics, is_best)
                    saved_step = step
                    model.train()
                if step >= cfg.steps:
                    break
    except KeyboardInterrupt:
        bar.close()
        if step > saved_step:
            save({k: run_avg[k] for k in ("loss", "bpp", "mse", "psnr")}, False)
        print(f"\ninterrupted at step {step}: {last} holds it; continue with --resume",
              file=sys.stderr)
        raise
    bar.close()
    return {"step": step, "done": True, "best_loss": best_loss, **metrics}
