"""Variable rate for one model: per-quality channel gains on the latent y (gain units).

Method (Cui et al., "Asymmetric Gained Deep Image Compression with Continuous Rate
Adaptation", CVPR 2021): a model trained for a ladder of Q lambdas holds two tables of
per-channel factors, ``gain[q]`` and ``inv_gain[q]`` (Q x M). The analysis output is scaled
channel-wise, ``y = g_a(x) * gain[q]``, before the hyperprior and quantization, and the
synthesis sees ``g_s(y_hat * inv_gain[q])``. A larger gain means a finer effective
quantization step on ``g_a(x)``, so more bits and less distortion. Training samples the
quality index per crop and weights each crop's loss with its own lambda, so a single
network learns every point of the ladder.

Choices made here (the paper leaves them open or does otherwise):

* Only y is gained (the paper also gains the hyper latent). The hyperprior and the
  entropy-parameter path see the scaled latent ``y``, so the codec's float64 parameter path
  and its cross-device determinism rules do not change.
* The factors are stored as natural logarithms (always positive; interpolating two adjacent
  rows linearly in the log domain is the paper's continuous rate adaptation).
* Initialisation: ``log gain[q] = 0.5 * ln(lambda_q / lambda_ref)`` with ``lambda_ref`` the
  geometric mean of the ladder, and ``log inv_gain = -log gain``. At high rate the
  MSE-optimal quantization step scales as ``lambda^-1/2``, so the ladder starts out ordered
  instead of at equal rates (the paper initialises with ones).
* Quality indexes of a batch are stratified: a random offset, then consecutive indexes
  modulo Q, shuffled; each batch of B >= Q crops covers the ladder evenly.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence

import torch
from torch import Tensor, nn

__all__ = ["DEFAULT_LAMBDAS", "GainUnit", "check_lambdas", "sample_qualities"]

#: default lambda ladder (loss = lambda * 255^2 * MSE + bpp), ascending; quality index q
#: picks DEFAULT_LAMBDAS[q]. compressai's mean-scale lambdas for its qualities 1-7 (a factor
#: of about 1.9 between neighbours; docs/models.md, "Variable rate").
DEFAULT_LAMBDAS: tuple[float, ...] = (0.0018, 0.0035, 0.0067, 0.0130, 0.0250, 0.0483, 0.0932)


def check_lambdas(lambdas: Sequence[float]) -> tuple[float, ...]:
    """``lambdas`` as a tuple of floats; ValueError unless 2..64 positive, strictly ascending."""
    lam = tuple(float(v) for v in lambdas)
    if not 2 <= len(lam) <= 64:
        raise ValueError(f"a variable-rate ladder needs 2 to 64 lambdas, got {len(lam)}")
    if any(not (v > 0 and math.isfinite(v)) for v in lam):
        raise ValueError(f"lambdas must be positive and finite, got {list(lam)}")
    if any(b <= a for a, b in zip(lam, lam[1:], strict=False)):
        raise ValueError(f"lambdas must be strictly ascending, got {list(lam)}")
    return lam


class GainUnit(nn.Module):
    """Gain and inverse-gain tables for ``len(lambdas)`` qualities and ``channels`` channels.

    Parameters ``log_gain`` and ``log_inv_gain``: ``(Q, channels)`` float32 natural logs.
    ``quality``: a Python int in ``0..Q-1`` (one quality for the whole batch), or an integer
    tensor of shape ``(B,)`` (one per sample, training).
    """

    def __init__(self, lambdas: Sequence[float], channels: int) -> None:
        super().__init__()
        lam = torch.tensor(check_lambdas(lambdas), dtype=torch.float64)
        init = (0.5 * (lam.log() - lam.log().mean())).float()[:, None].repeat(1, channels)
        self.log_gain = nn.Parameter(init.clone())
        self.log_inv_gain = nn.Parameter(-init)

    @property
    def num_qualities(self) -> int:
        return int(self.log_gain.shape[0])

    def _factors(self, table: Tensor, quality: int | Tensor) -> Tensor:
        q = self.num_qualities
        if isinstance(quality, Tensor):
            if quality.dtype.is_floating_point or quality.dtype == torch.bool or quality.dim() != 1:
                raise ValueError("a per-sample quality must be a 1-D integer tensor")
            if quality.numel() and (int(quality.min()) < 0 or int(quality.max()) >= q):
                raise ValueError(f"quality indexes must be in 0..{q - 1}")
            return table[quality.to(table.device)].exp()[:, :, None, None]
        try:
            if isinstance(quality, bool):
                raise TypeError
            index = operator.index(quality)
        except TypeError:
            raise ValueError(f"quality must be an int in 0..{q - 1}, got {quality!r}") from None
        if not 0 <= index < q:
            raise ValueError(f"quality {index} is out of range: this model has qualities 0..{q - 1}")
        return table[index].exp()[None, :, None, None]

    def scale(self, y: Tensor, quality: int | Tensor) -> Tensor:
        """``y * gain[quality]``, channel-wise; ``y``: ``(B, channels, h, w)``."""
        return y * self._factors(self.log_gain, quality).to(y.dtype)

    def unscale(self, y_hat: Tensor, quality: int | Tensor) -> Tensor:
        """``y_hat * inv_gain[quality]``, channel-wise (before the synthesis)."""
        return y_hat * self._factors(self.log_inv_gain, quality).to(y_hat.dtype)


def sample_qualities(batch: int, num_qualities: int, generator: torch.Generator | None = None
                     ) -> Tensor:
    """``(batch,)`` int64 quality indexes, stratified over ``0..num_qualities-1`` (see above)."""
    offset = int(torch.randint(0, num_qualities, (), generator=generator))
    q = (offset + torch.arange(batch)) % num_qualities
    return q[torch.randperm(batch, generator=generator)]
