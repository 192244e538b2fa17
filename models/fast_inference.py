"""Inference-only copies of the learned models: cached GDN parameters, channels-last layout.

The models in :mod:`models.architectures` are compressai modules written for training: every
GDN forward re-runs the non-negative reparametrisation of beta/gamma and a generic 1x1
convolution over a ``(B, C, H, W)`` tensor, and all layers use the NCHW layout, for which
oneDNN (mkldnn) reorders data around each convolution. :func:`inference_copy` returns a deep
copy of a model for coding only, with

* every :class:`compressai.layers.GDN` replaced by :class:`FusedGDN`: beta and gamma
  reparametrised once, and the normalisation ``x * rsqrt(beta + gamma @ x^2)`` (``sqrt``
  for the inverse) computed as a matrix product over the channels-last pixels, in blocks of
  rows small enough to stay in cache on CPU, written over the preceding convolution's output
  (no new full-size tensor);
* all parameters and the working tensors in ``torch.channels_last`` memory format.

Same layers, same weights, same shapes: only the evaluation order of the arithmetic changes,
so outputs agree with the original model to float32 rounding (tested in
``tests/test_models_fast.py``). The original model is not touched; a
:class:`~models.prepared.PreparedModel` rebuilds the copy when a fingerprint of the state
tensors changes (see :func:`state_fingerprint`), so ``load_state_dict``, optimiser steps or
``update()`` on the original invalidate it.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from compressai.layers import GDN
from torch import Tensor, nn

__all__ = ["FusedGDN", "inference_copy", "state_fingerprint", "to_channels_last"]

#: pixels per block of the CPU GDN (1024 x C floats: L2-cache sized for C <= 384)
CPU_BLOCK_PIXELS = 1024


class FusedGDN(nn.Module):
    """Evaluation-time GDN / inverse GDN with beta and gamma precomputed from a trained GDN.

    Input and output: ``(B, C, H, W)`` float tensors (any memory format; the output is
    channels-last). Computes ``out[c] = x[c] * (beta[c] + sum_j gamma[c, j] x[j]^2)^(-1/2)``
    (``^(+1/2)`` when ``inverse``), exactly compressai's GDN formula. ``inplace``: on CPU,
    overwrite a channels-last input with the result instead of allocating a new tensor (for
    use right after a convolution whose output nothing else reads).
    """

    def __init__(self, gdn: GDN, inplace: bool = False) -> None:
        super().__init__()
        with torch.no_grad():
            beta = gdn.beta_reparam(gdn.beta).detach().clone()
            gamma = gdn.gamma_reparam(gdn.gamma).detach()
        self.inverse = bool(gdn.inverse)
        self.inplace = inplace
        self.register_buffer("beta", beta)
        # gamma^T, so that (pixels, C) @ gamma_t gives the normalisation pool per pixel
        self.register_buffer("gamma_t", gamma.t().contiguous())

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        xf = x.permute(0, 2, 3, 1).reshape(-1, c)  # a view when x is channels-last
        beta, gamma_t = self.beta.to(xf.dtype), self.gamma_t.to(xf.dtype)
        if x.device.type != "cpu" or torch.is_autocast_enabled(x.device.type) or x.requires_grad:
            pool = torch.addmm(beta, xf * xf, gamma_t)
            out = xf * (pool.sqrt() if self.inverse else pool.rsqrt())
            return out.view(b, h, w, c).permute(0, 3, 1, 2)
        # CPU: blocks of pixels with two reused cache-sized buffers; x is read from memory
        # once and the result written once (into x itself when inplace)
        out = xf if self.inplace else torch.empty_like(xf)
        n = min(CPU_BLOCK_PIXELS, xf.shape[0])
        sq, pool = xf.new_empty((n, c)), xf.new_empty((n, c))
        for s in range(0, xf.shape[0], n):
            a = xf[s : s + n]
            k = a.shape[0]
            torch.mul(a, a, out=sq[:k])
            p = torch.addmm(beta, sq[:k], gamma_t, out=pool[:k])
            p.sqrt_() if self.inverse else p.rsqrt_()
            torch.mul(a, p, out=out[s : s + k])
        return out.view(b, h, w, c).permute(0, 3, 1, 2)


def to_channels_last(x: Tensor) -> Tensor:
    """``x`` in channels-last memory format (4-D tensors only; others unchanged)."""
    return x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x


def _swap_gdn(module: nn.Module, shared: set[int]) -> None:
    prev = None
    for name, child in module.named_children():
        if id(child) in shared:
            pass
        elif isinstance(child, GDN):
            # in a Sequential, a convolution's output feeds only the next layer: reuse it
            inplace = isinstance(module, nn.Sequential) and isinstance(
                prev, nn.Conv2d | nn.ConvTranspose2d)
            setattr(module, name, FusedGDN(child, inplace=inplace))
        else:
            _swap_gdn(child, shared)
        prev = child


def inference_copy(model: nn.Module, share: list[nn.Module] | tuple = ()) -> Any:
    """A deep copy of ``model`` in eval mode with fused GDNs and channels-last weights.

    ``share``: submodules the copy only refers to (not copied, not converted, mode untouched),
    e.g. layers the caller evaluates elsewhere; sharing them saves their memory (hundreds of
    MiB for the hyper-synthesis of c2f-large). Use the copy only for inference; train the
    original.
    """
    shared = {id(m) for m in share}
    fast = copy.deepcopy(model, {id(m): m for m in share})
    _swap_gdn(fast, shared)
    _convert(fast, shared)
    return fast


def _convert(module: nn.Module, shared: set[int]) -> None:
    """Eval mode, channels-last 4-D weights, no grad; not descending into shared modules."""
    if id(module) in shared:
        return
    module.training = False
    for p in module.parameters(recurse=False):
        if p.dim() == 4:
            p.data = p.data.contiguous(memory_format=torch.channels_last)
        p.requires_grad_(False)
    for child in module.children():
        _convert(child, shared)


def state_fingerprint(model: nn.Module) -> tuple:
    """Cheap identity of a model's current weights: (name, storage, version, device) per tensor.

    Any in-place update (``load_state_dict``, optimiser step, ``update()``) bumps a tensor's
    version counter, and re-assigned tensors change storage, so a changed fingerprint means
    derived caches are stale. (A ``torch.no_grad`` copy into ``.data`` bypassing the
    version counter would not be seen; nothing in cloud3d does that.)
    """
    return tuple(
        (name, id(t), t.data_ptr(), _version(t), str(t.device), t.dtype)
        for name, t in model.state_dict(keep_vars=True).items()
    )


def _version(t: Tensor) -> int:
    try:
        return t._version
    except RuntimeError:  # an inference tensor (made under inference_mode) has no counter
        return -1
