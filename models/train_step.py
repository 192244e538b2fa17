"""One training step of a learned codec, its loss, optimizers, learning-rate schedule and the
validation pass: the pieces :mod:`models.train` runs and ``benchmarks/train_speed.py`` times.

Loss (compressai convention), per sample ``i`` of a batch, then averaged::

    L_i = lambda_i * 255^2 * MSE(x_i, x_hat_i) + bpp_i

with x, x_hat in 0..1 (so ``255^2 * MSE`` is the MSE in 8-bit code values squared) and
``bpp_i = sum(-log2 likelihoods of sample i) / (H * W)``: the rate of y, z (and w) estimated
by the entropy models. ``lambda_i`` is one number for a fixed-rate model, or the lambda of
the quality index drawn for sample ``i`` (variable-rate models, :mod:`models.variable_rate`).

Learning rate: linear warm-up from ``lr / warmup`` to ``lr`` over ``warmup`` steps, then
``plateau`` (the default: constant ``lr``, and a cosine decay to ``min_lr_ratio * lr`` over the
last ``decay`` steps only), ``cosine`` decay over the whole run, or ``constant``, see
:func:`lr_at`. A plateau run can be continued to more steps from its un-decayed state
(``plateau.pt``, :mod:`models.train`), where a cosine run would have to restart its schedule.
"""

from __future__ import annotations

import math
import time
from typing import Any

import torch
import torch.nn.functional as F

from models.fast_inference import inference_copy, to_channels_last

#: learning-rate schedules :func:`lr_at` knows
SCHEDULES = ("plateau", "cosine", "constant")


class PhaseTimer:
    """Wall and CPU seconds per named phase: ``lap(name)`` charges the time since the previous
    lap (or :meth:`start`) to ``name``. Sums are in :attr:`wall` and :attr:`cpu`."""

    def __init__(self) -> None:
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}
        self.start()

    def start(self) -> None:
        self._w, self._c = time.perf_counter(), time.process_time()

    def lap(self, name: str) -> None:
        w, c = time.perf_counter(), time.process_time()
        self.wall[name] = self.wall.get(name, 0.0) + w - self._w
        self.cpu[name] = self.cpu.get(name, 0.0) + c - self._c
        self._w, self._c = w, c


def _no_lap(name: str) -> None:
    pass


def rd_loss(out: dict[str, Any], x: torch.Tensor, lmbda: float | torch.Tensor,
            num_pixels: int | None = None) -> dict[str, torch.Tensor]:
    """``{"loss", "bpp", "mse", "psnr"}`` (batch means) for a forward output and target ``x``
    ``(B, 3, H, W)``. ``lmbda``: a float, or a ``(B,)`` tensor (one lambda per sample).
    ``num_pixels``: pixels per sample the rate is divided by (default ``H * W``; pass the
    unpadded count when ``x`` was padded)."""
    n = num_pixels if num_pixels is not None else x.shape[2] * x.shape[3]
    bpp_i = sum(torch.log(lk.float()).flatten(1).sum(1) for lk in out["likelihoods"].values())
    bpp_i = bpp_i / (-math.log(2) * n)
    x_hat = out["x_hat"].float()[..., : x.shape[2], : x.shape[3]]
    mse_i = (x_hat - x).square().flatten(1).mean(1)
    if isinstance(lmbda, torch.Tensor):
        lmbda = lmbda.to(mse_i.device, mse_i.dtype)
    loss = (lmbda * 255**2 * mse_i + bpp_i).mean()
    mse = mse_i.mean()
    psnr = -10 * torch.log10(mse.detach().clamp_min(1e-10))
    return {"loss": loss, "bpp": bpp_i.mean(), "mse": mse, "psnr": psnr}


def make_optimizers(model: torch.nn.Module, lr: float, aux_lr: float
                    ) -> tuple[torch.optim.Optimizer, torch.optim.Optimizer]:
    """Adam for the network and Adam for compressai's ``*.quantiles`` (the auxiliary loss).

    The main Adam uses torch's fused kernel: measured with ``benchmarks/train_speed.py`` on
    this 2-core machine, it cuts the optimizer phase of c2f-small-pruned (10.5 M parameters)
    from about 325 to 175-215 ms per step and that of c2f-xsmall-pruned (3.9 M) from
    about 40 to 15-25 ms of CPU (docs/studies/2026-11-29-train-speed-cpu.md)."""
    main = [p for n, p in model.named_parameters() if not n.endswith(".quantiles") and p.requires_grad]
    aux = [p for n, p in model.named_parameters() if n.endswith(".quantiles") and p.requires_grad]
    return torch.optim.Adam(main, lr=lr, fused=True), torch.optim.Adam(aux, lr=aux_lr)


def decay_start(total: int, schedule: str, warmup: int, decay: int) -> int:
    """First step of the final decay: ``total - decay`` for ``plateau`` (never inside the
    warm-up), ``warmup`` for ``cosine``, ``total`` for ``constant`` (no decay)."""
    if schedule == "plateau":
        return max(warmup, total - decay)
    return warmup if schedule == "cosine" else total


def lr_at(step: int, total: int, lr: float, schedule: str = "plateau", warmup: int = 0,
          min_lr_ratio: float = 0.01, decay: int = 0) -> float:
    """Learning rate for step ``step`` (0-based: the step about to run) of ``total``.

    Warm-up: ``lr * (step + 1) / warmup`` for ``step < warmup``. Then ``lr`` until the decay
    start ``d`` (:func:`decay_start`: ``total - decay`` for ``plateau``, ``warmup`` for
    ``cosine``, never for ``constant``), and from there
    ``lr * (r + (1 - r) * (1 + cos(pi * t)) / 2)`` with ``r = min_lr_ratio`` and
    ``t = (step - d) / (total - d)`` in 0..1 (``step - d + 1`` for ``plateau``, whose last
    step runs at ``r * lr``; held at ``r * lr`` past ``total``).
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; valid: {', '.join(SCHEDULES)}")
    if step < warmup:
        return lr * (step + 1) / warmup
    d = decay_start(total, schedule, warmup, decay)
    if step < d:
        return lr
    # a plateau's decay ends on its last step (t = 1 there), a whole-run cosine just before
    t = min(1.0, (step - d + (schedule == "plateau")) / max(1, total - d))
    return lr * (min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t)))


def set_lr(opt: torch.optim.Optimizer, lr: float) -> None:
    for group in opt.param_groups:
        group["lr"] = lr


def train_step(model: Any, opt: torch.optim.Optimizer, aux_opt: torch.optim.Optimizer,
               x: torch.Tensor, lmbda: float | torch.Tensor,
               quality: torch.Tensor | None = None, clip: float = 1.0, amp: bool = False,
               timer: PhaseTimer | None = None) -> dict[str, float]:
    """One optimisation step on batch ``x`` ``(B, 3, H, W)`` (on the model's device).

    ``quality``: ``(B,)`` indexes for a variable-rate model (``lmbda`` then holds the
    matching lambdas), None for a fixed-rate one. ``amp``: bfloat16 autocast of the
    transforms (CUDA). Phases charged to ``timer``: forward (model + loss), backward,
    optimizer (clipping + Adam), aux (quantile loss and its Adam). Returns the batch's
    loss, bpp, mse, psnr and aux_loss as floats.
    """
    lap = timer.lap if timer is not None else _no_lap
    opt.zero_grad(set_to_none=True)
    aux_opt.zero_grad(set_to_none=True)
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=amp):
        out = model(x) if quality is None else model(x, quality)
    r = rd_loss(out, x, lmbda)
    lap("forward")
    r["loss"].backward()
    lap("backward")
    if clip > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
    opt.step()
    lap("optimizer")
    aux = model.aux_loss()
    aux.backward()
    aux_opt.step()
    vals = {k: float(v.detach()) for k, v in r.items()}
    vals["aux_loss"] = float(aux.detach())
    lap("aux")
    return vals


def _pad(x: torch.Tensor, stride: int) -> torch.Tensor:
    ph, pw = (-x.shape[2]) % stride, (-x.shape[3]) % stride
    return F.pad(x, (0, pw, 0, ph), mode="replicate") if (ph or pw) else x


def evaluate(model: Any, images: Any, device: torch.device, limit: int | None = None,
             qualities: list[int] | None = None, lmbda: float | None = None
             ) -> list[dict[str, float]]:
    """Rate and distortion on whole frames, eval mode (rounding, no noise).

    ``images``: a sequence of ``(3, H, W)`` float tensors in 0..1 (e.g. a
    :class:`cloud3d_dataset.torch_dataset.FrameBank`); the first ``limit`` are used, each
    padded to the model's stride by edge replication. ``qualities``: the quality indexes of
    a variable-rate model (one result each, its own lambda); None for a fixed-rate model
    with ``lmbda``. Returns one dict per quality: ``quality`` (or None), ``lambda``, ``bpp``
    (estimated from the likelihoods, per unpadded pixel), ``mse`` and ``psnr`` of the
    reconstruction rounded to 8 bits (PSNR averaged per image), ``loss``.

    Runs on an inference copy of the model (:func:`models.fast_inference.inference_copy`:
    fused GDN, channels-last), as the codec does.
    """
    n = len(images) if limit is None else min(limit, len(images))
    net = inference_copy(model).to(device)
    points = [(None, lmbda)] if qualities is None else [(q, model.lambdas[q]) for q in qualities]
    results = []
    with torch.no_grad():
        for q, lam in points:
            acc = {"bpp": 0.0, "mse": 0.0, "psnr": 0.0, "loss": 0.0}
            for i in range(n):
                x = images[i][None].to(device)
                xin = to_channels_last(_pad(x, model.stride))
                out = net(xin) if q is None else net(xin, q)
                out["x_hat"] = (out["x_hat"].float().clamp(0, 1) * 255).round() / 255
                r = rd_loss(out, x, lam, num_pixels=x.shape[2] * x.shape[3])
                for k in acc:
                    acc[k] += float(r[k]) / n
            results.append({"quality": q, "lambda": lam, **acc})
    return results
