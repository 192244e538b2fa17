"""Latent overfitting (LOF): refine one image's latents for its own rate-distortion cost.

The analysis transform g_a was trained for the average image; for one given image, latents
other than ``g_a(x)`` usually code it for less. Latent overfitting (Zhang et al. 2022,
"Leveraging progressive model and overfitting for efficient learned image compression",
arXiv 2210.04112, Sec. LOF) searches for them at encode time. Only the encoder changes: the
stream is made from the refined latents by the ordinary coding path
(:data:`models.codec.Refine`), so the unchanged decoder and weights read it.

Cost, on the training loss's scale (:func:`models.train.rd_loss`)::

    J = R + lambda * D,   R = bits / pixels (bpp),   D = 255^2 * MSE (x in 0..1)

``lambda``: the model's own (a fixed-rate checkpoint records it in its metadata) or, for a
variable-rate model, ``model.lambdas[quality]``.

Method, per tile
----------------
1. **Gradient refinement**: ``steps`` Adam steps on y, z (and w) with a straight-through
   rounding surrogate. Every level is rounded around its offset as the encoder rounds it
   (the factorized prior's medians; means snapped to the 1/64 grid of
   :data:`models.entropy.MEAN_GRID`); the forward pass sees the rounded value, the backward
   pass the identity. The rate term is the entropy models' likelihood of the rounded values,
   the distortion that of ``g_s(rounded y)`` on the tile's unpadded pixels, so the loss of a
   step is the cost of the quantized latents (up to the coder's CDF-table precision).
   Gradients reach z (and w) through the entropy parameters of the level below. Because
   every step's loss is a quantized cost, the lowest seen is kept, not the last; after
   ``max(PATIENCE_MIN, steps / 20)`` steps without a new lowest, Adam restarts from the
   best latents with half the learning rate.
2. **Greedy search on the quantized y** (our reading of the paper's greedy search; only the
   paper's first pages were at hand, see docs/models.md, "Latent overfitting"). With z
   (and w) fixed, the exact rate of every y symbol is known from the coder's CDF tables and
   the gradient of the distortion predicts what moving a symbol by +-1 does. The moves with
   the largest predicted gain are tried in one batch; the batch is kept only if the real
   cost (exact bits, distortion of the real synthesis) falls, otherwise it is halved.
   ``greedy_rounds`` bounds the syntheses spent.
3. **Never worse**: the plain and the overfitted stream are both made and decoded by the
   unchanged decoder; the overfitted one is kept only if its real cost (bytes of the stream,
   decoded pixels) is lower. ``steps=0`` is exactly the plain encoder.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from cloud3d.errors import Cloud3dError
from models import bitstream
from models.codec import (
    _check_quality,
    _check_tile,
    compress_image_timed,
    decompress_image,
    prepare,
)
from models.entropy import MEAN_GRID, code_levels
from models.latent_model import LatentModel, model_qualities
from models.prepared import PreparedModel

__all__ = ["MAX_STEPS", "OverfitResult", "RDPoint", "check_steps", "compress_overfit",
           "overfit_lambda"]

#: most refinement steps accepted (a typo like 5000000 would run for days)
MAX_STEPS = 100_000
#: Adam learning rate on latents in quantization-step units
DEFAULT_LR = 0.02
#: steps without a new best before the learning rate halves and Adam restarts from the best
#: latents (at least this many, else 5 % of the steps)
PATIENCE_MIN = 10
#: greedy-search batches tried per tile (each costs one synthesis, plus one backward if kept)
DEFAULT_GREEDY_ROUNDS = 12


@dataclass
class RDPoint:
    """A real stream's rate and distortion: ``bytes``, ``bpp`` (8 * bytes / pixels),
    ``mse`` (8-bit code values squared), ``psnr`` (dB) and ``cost`` = bpp + lambda * mse."""

    bytes: int
    bpp: float
    mse: float
    psnr: float
    cost: float


@dataclass
class OverfitResult:
    """What :func:`compress_overfit` made.

    ``data``: the stream kept; ``kept``: ``"overfit"`` or ``"plain"``; ``plain`` /
    ``overfit``: the two streams' :class:`RDPoint` (None when ``steps == 0``);
    ``refine_s``: seconds spent refining; ``encode_s``: the whole call (plain encode,
    refinement, overfitted encode and both decodes); ``greedy_moves``: symbols the greedy
    search changed.
    """

    data: bytes
    kept: str
    steps: int
    lmbda: float
    plain: RDPoint | None
    overfit: RDPoint | None
    refine_s: float
    encode_s: float
    greedy_moves: int


def check_steps(steps: Any) -> int:
    """``steps`` as an int in ``0..MAX_STEPS``; :class:`Cloud3dError` otherwise."""
    if isinstance(steps, bool) or not isinstance(steps, int | np.integer) \
            or not 0 <= int(steps) <= MAX_STEPS:
        raise Cloud3dError(f"overfit steps must be an integer 0..{MAX_STEPS}, got {steps!r}")
    return int(steps)


def overfit_lambda(model: LatentModel | PreparedModel, quality: int | None,
                   lmbda: float | None) -> float:
    """The lambda of the cost ``J``: ``model.lambdas[quality]`` for a variable-rate model,
    else ``lmbda`` (the model's own, from its checkpoint). :class:`Cloud3dError` when it is
    missing, not a positive finite number, or contradicts a variable-rate model's ladder."""
    m = model.model if isinstance(model, PreparedModel) else model
    if model_qualities(m):
        q = _check_quality(m, quality)
        own = float(m.lambdas[q])
        if lmbda is not None and not math.isclose(float(lmbda), own):
            raise Cloud3dError(f"{m.arch} quality {q} has lambda {own:g}, not {lmbda!r}")
        return own
    if lmbda is None:
        raise Cloud3dError(f"overfitting {m.arch} needs the lambda it was trained for (its "
                           "checkpoint records it as 'lambda')")
    if isinstance(lmbda, bool) or not isinstance(lmbda, int | float) \
            or not (math.isfinite(lmbda) and lmbda > 0):
        raise Cloud3dError(f"lambda must be a positive number, got {lmbda!r}")
    return float(lmbda)


def _ste_round(v: Tensor, offset: Tensor | float) -> Tensor:
    """``round(v - offset) + offset`` forwards, the identity backwards."""
    return v + (torch.round(v - offset) + offset - v).detach()


def _bottleneck_bits(eb: Any, v: Tensor) -> Tensor:
    """Bits of the rounded coarsest latent ``v`` ``(1, C, h, w)`` under the factorized prior."""
    c = v.shape[1]
    lik, _, _ = eb._likelihood(v.permute(1, 0, 2, 3).reshape(c, 1, -1))
    if eb.use_likelihood_bound:
        lik = eb.likelihood_lower_bound(lik)
    return -torch.log2(lik).sum()


def _surrogate(model: Any, lat: list[Tensor], x: Tensor, hw: tuple[int, int],
               quality: int | None, lmbda: float) -> Tensor:
    """``J`` of the rounded latents ``lat`` (float32 leaves, finest first) for tile ``x``."""
    h, w = hw
    eb = model.bottleneck
    med = eb._get_medians().detach().reshape(1, -1, 1, 1)
    upper = _ste_round(lat[-1], med)
    bits = _bottleneck_bits(eb, upper)
    for k in reversed(range(len(lat) - 1)):
        means, scales = model.split_params(k, model.param_nets[k](upper))
        g = model.gaussians[k]
        if means is None:
            q = _ste_round(lat[k], 0.0)
        else:
            means = _ste_round(means / MEAN_GRID, 0.0) * MEAN_GRID
            q = lat[k] + (torch.round(lat[k] - means.detach()) + means.detach() - lat[k]).detach()
        lik = g._likelihood(q, scales, means)
        if g.use_likelihood_bound:
            lik = g.likelihood_lower_bound(lik)
        bits = bits - torch.log2(lik).sum()
        upper = q
    x_hat = model.synthesis(upper) if quality is None else model.synthesis(upper, quality)
    mse = (x_hat[..., :h, :w] - x[..., :h, :w]).square().mean()
    return bits / (h * w) + lmbda * 255**2 * mse


@contextlib.contextmanager
def _frozen(model: Any):
    """Weights without gradients for the duration (only the latents are optimised)."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, f in flags:
            p.requires_grad_(f)


class _BitTable:
    """Exact bits of every in-range symbol of a Gaussian conditional's CDF tables.

    ``bits[i, v]``: cost of value ``v = symbol - offset[i]`` under table ``i``; ``inf`` where
    the coder would escape to bypass coding (the greedy search never moves there).
    """

    def __init__(self, g: Any, device: torch.device) -> None:
        cdf = g._quantized_cdf.to(device, torch.float64)
        freq = cdf[:, 1:] - cdf[:, :-1]
        valid = torch.arange(freq.shape[1], device=device)[None] < \
            (g._cdf_length.to(device).reshape(-1, 1) - 2)
        bits = -torch.log2(freq.clamp_min(1) / 2**16)
        self.bits = torch.where(valid & (freq > 0), bits, torch.inf)
        self.offsets = g._offset.to(device, torch.float64).reshape(-1)

    def __call__(self, symbols: Tensor, idx: Tensor) -> Tensor:
        """Bits of each symbol (float64, same shape); ``inf`` for escaped values."""
        i = idx.long()
        v = symbols - self.offsets[i]
        inside = (v >= 0) & (v < self.bits.shape[1])
        vi = v.clamp(0, self.bits.shape[1] - 1).long()
        return torch.where(inside, self.bits[i, vi], torch.inf)


class _Refiner:
    """The :data:`models.codec.Refine` hook: steps 1 and 2 of the module docstring."""

    def __init__(self, steps: int, lmbda: float, lr: float, greedy_rounds: int,
                 bar: Any) -> None:
        self.steps, self.lmbda, self.lr, self.rounds, self.bar = steps, lmbda, lr, greedy_rounds, bar
        self.moves = 0
        self.seconds = 0.0

    def __call__(self, pm: PreparedModel, x: Tensor, hw: tuple[int, int], quality: int | None,
                 lat: list[Tensor]) -> list[Tensor]:
        t0 = time.perf_counter()
        model = pm.model
        with _frozen(model), torch.enable_grad():
            best = self._adam(model, x, hw, quality, lat)
            out = self._greedy(pm, x, hw, quality, best)
        self.seconds += time.perf_counter() - t0
        return out

    def _adam(self, model: Any, x: Tensor, hw: tuple[int, int], quality: int | None,
              lat: list[Tensor]) -> list[Tensor]:
        params = [t.to(x.device, torch.float32).requires_grad_(True) for t in lat]
        lr = self.lr
        opt = torch.optim.Adam(params, lr=lr)
        best_cost, best = math.inf, [p.detach().clone() for p in params]
        since = 0  # steps since the best was found
        patience = max(PATIENCE_MIN, self.steps // 20)
        for _ in range(self.steps):
            loss = _surrogate(model, params, x, hw, quality, self.lmbda)
            if loss.item() < best_cost:
                best_cost, best, since = loss.item(), [p.detach().clone() for p in params], 0
            else:
                since += 1
            if since >= patience:  # stuck: go back to the best latents with half the step
                lr, since = lr / 2, 0
                with torch.no_grad():
                    for p, b in zip(params, best, strict=True):
                        p.copy_(b)
                opt = torch.optim.Adam(params, lr=lr)
                loss = _surrogate(model, params, x, hw, quality, self.lmbda)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            self.bar.update(1)
        with torch.no_grad():
            if _surrogate(model, params, x, hw, quality, self.lmbda).item() < best_cost:
                best = [p.detach().clone() for p in params]
        return best

    def _greedy(self, pm: PreparedModel, x: Tensor, hw: tuple[int, int], quality: int | None,
                lat: list[Tensor]) -> list[Tensor]:
        """Quantize ``lat`` as the encoder does, then search on the y symbols (step 2)."""
        ep = pm.entropy
        lat64 = [t.to(ep.pdev, torch.float64).contiguous() for t in lat]
        found: dict[int, tuple[Tensor, Tensor] | None] = {}

        def symbols(k: int, mask: Tensor | None, offset: Tensor, idx: Tensor) -> Tensor:
            # a progressive (MSP) level is coded pass by pass: a symbol move there changes the
            # parameters of the later passes, which this search does not model, so it skips them
            found[k] = (offset, idx) if mask is None else None
            return torch.round((lat64[k] if mask is None else lat64[k][mask]) - offset)

        levels = code_levels(ep, [tuple(t.shape) for t in lat64], symbols,
                             {"network": 0.0, "entropy": 0.0})
        if self.rounds == 0 or len(lat64) < 2 or found.get(0) is None:
            return lat64
        means, idx = found[0]  # type: ignore[misc]
        table = _BitTable(pm.model.gaussians[0], ep.pdev)
        s = levels.symbols[0].clone()
        h, w = hw
        model = pm.model

        def cost(sym: Tensor, grad: bool) -> tuple[float, Tensor | None]:
            y = (sym + means).to(x.device, torch.float32).requires_grad_(grad)
            x_hat = model.synthesis(y) if quality is None else model.synthesis(y, quality)
            d = self.lmbda * 255**2 * (x_hat[..., :h, :w] - x[..., :h, :w]).square().mean()
            g = torch.autograd.grad(d, y)[0].to(ep.pdev, torch.float64) if grad else None
            return table(sym, idx).sum().item() / (h * w) + d.item(), g

        with torch.no_grad():
            base_bits = table(s, idx)
        j, g = cost(s, True)
        k = None
        for _ in range(self.rounds):
            with torch.no_grad():
                gains = []
                for step in (-1.0, 1.0):
                    d_bits = (table(s + step, idx) - base_bits) / (h * w)
                    gains.append(-(d_bits + g * step))
                gain = torch.maximum(gains[0], gains[1])
                step = torch.where(gains[1] >= gains[0], 1.0, -1.0)
                gain = torch.where(torch.isfinite(base_bits) & torch.isfinite(gain), gain,
                                   -torch.inf)
                order = torch.argsort(gain.reshape(-1), descending=True)
                n_pos = int((gain > 0).sum())
            if n_pos == 0:
                break
            k = max(1, n_pos // 4) if k is None else min(k, n_pos)
            pick = order[:k]
            trial = s.clone().reshape(-1)
            trial[pick] += step.reshape(-1)[pick]
            trial = trial.reshape(s.shape)
            j_new, _ = cost(trial, False)
            if j_new < j:
                s, j, self.moves = trial, j_new, self.moves + k
                with torch.no_grad():
                    base_bits = table(s, idx)
                _, g = cost(s, True)
            else:
                k //= 2
                if k == 0:
                    break
        return [s + means, *lat64[1:]]


def _rd_point(pm: PreparedModel, data: bytes, rgb: np.ndarray, quality: int | None,
              lmbda: float) -> RDPoint:
    """The real rate and distortion of ``data``: its bytes, and the pixels the unchanged
    decoder makes of it."""
    rec = decompress_image(pm, data, quality=quality)
    mse = float(np.mean((rec.astype(np.float64) - rgb.astype(np.float64)) ** 2))
    bpp = 8 * len(data) / (rgb.shape[0] * rgb.shape[1])
    psnr = math.inf if mse == 0 else 10 * math.log10(255**2 / mse)
    return RDPoint(len(data), bpp, mse, psnr, bpp + lmbda * mse)


def compress_overfit(model: LatentModel | PreparedModel, rgb: np.ndarray, steps: int,
                     lmbda: float | None = None, quality: int | None = None,
                     tile: int | str | None = "whole", coder: str = "ans",
                     device: str | torch.device | None = None, lr: float = DEFAULT_LR,
                     greedy_rounds: int = DEFAULT_GREEDY_ROUNDS,
                     progress: bool = False) -> OverfitResult:
    """Compress ``rgb`` (``(H, W, 3) uint8``) with ``steps`` steps of latent overfitting.

    ``lmbda``: the model's lambda (fixed-rate models; variable-rate ones use
    ``model.lambdas[quality]``, see :func:`overfit_lambda`). ``tile``, ``coder``, ``device``,
    ``quality``: as for :func:`models.codec.compress_image_timed`. ``lr``: Adam learning rate
    (latents are in quantization steps); ``greedy_rounds``: batches the greedy search tries
    per tile (0: none). ``progress``: a tqdm bar over the refinement steps (stderr).
    Returns the stream with the lower real cost (see the module docstring); ``steps=0`` is
    the plain encoder's stream, byte for byte.
    """
    t0 = time.perf_counter()
    steps = check_steps(steps)
    lam = overfit_lambda(model, quality, lmbda)
    if not (isinstance(lr, int | float) and not isinstance(lr, bool) and math.isfinite(lr)
            and lr > 0):
        raise Cloud3dError(f"overfit learning rate must be a positive number, got {lr!r}")
    if isinstance(greedy_rounds, bool) or not isinstance(greedy_rounds, int) \
            or not 0 <= greedy_rounds <= 10_000:
        raise Cloud3dError(f"greedy rounds must be an integer 0..10000, got {greedy_rounds!r}")
    pm = prepare(model, device)
    plain = compress_image_timed(pm, rgb, tile=tile, coder=coder, quality=quality).data
    if steps == 0:
        return OverfitResult(plain, "plain", 0, lam, None, None, 0.0,
                             time.perf_counter() - t0, 0)
    from tqdm import tqdm

    n_tiles = len(list(bitstream.tile_grid(rgb.shape[1], rgb.shape[0], _check_tile(pm, tile))))
    with tqdm(total=steps * n_tiles, desc="overfit", unit="step", disable=not progress,
              leave=False) as bar:
        ref = _Refiner(steps, lam, float(lr), greedy_rounds, bar)
        over = compress_image_timed(pm, rgb, tile=tile, coder=coder, quality=quality,
                                    refine=ref).data
    p_plain = _rd_point(pm, plain, rgb, quality, lam)
    p_over = _rd_point(pm, over, rgb, quality, lam)
    kept = "overfit" if p_over.cost < p_plain.cost else "plain"
    return OverfitResult(over if kept == "overfit" else plain, kept, steps, lam, p_plain,
                         p_over, ref.seconds, time.perf_counter() - t0, ref.moves)
