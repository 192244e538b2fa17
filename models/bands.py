"""Synthesis in row bands on a thread pool: the CPU decoder's way to use several cores.

Why
---
Torch's own intra-op threads scale g_s poorly on a small CPU (2 threads: about x1.3 on a
720p frame, and far worse while another process competes for the cores: every layer ends
in a barrier). Cutting the latent into horizontal bands and running each band's g_s on its
own thread, one torch thread each, keeps every core busy from the first layer to the last.

Exactness
---------
g_s is a chain of convolutions (transposed or not) and point-wise layers (GDN, IGDN,
activations, a variable-rate model's per-channel gain). An output row depends only on the
latent rows within :func:`synthesis_halo` of it, so a band computed with that many extra
latent rows above and below (where the latent has them) and then cropped holds the rows a
whole-image pass computes, from the same inputs through the same layers. The bands of a
latent depend only on its height and the band count, never on the thread count. A g_s with
any other kind of layer has no halo (``None``) and is never cut.

Shapes: ``y`` is ``(1, C, h, w)`` float32 (latent rows ``h``); g_s maps latent row ``r`` to
output rows ``[r * s, (r + 1) * s)`` with ``s`` = :func:`synthesis_scale`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

if TYPE_CHECKING:
    from models import substreams

#: layers that mix channels but no positions (a band needs no extra rows for them)
_POINTWISE = ("GDN", "FusedGDN", "ReLU", "LeakyReLU", "GELU", "PReLU", "Sigmoid", "Tanh",
              "Identity", "GainUnit")
#: fewest latent rows a band holds (excluding its halo): smaller bands cost more in halo
#: than another thread earns
MIN_BAND_ROWS = 8


def _walk(net: nn.Module) -> list[nn.Module] | None:
    """The layers of ``net`` in order, or None when its order is not a plain chain."""
    if isinstance(net, nn.Sequential):
        out: list[nn.Module] = []
        for m in net:
            sub = _walk(m)
            if sub is None:
                return None
            out.extend(sub)
        return out
    return [net]


def synthesis_halo(g_s: nn.Module) -> tuple[int, int] | None:
    """``(halo, scale)`` of ``g_s``: latent rows a band needs on each side for its output
    rows to be exact, and output rows per latent row; None when ``g_s`` is not a chain of
    2-D convolutions and point-wise layers (then it is never cut into bands)."""
    layers = _walk(g_s)
    if not layers:
        return None
    radius, scale = 0, 1  # radius: rows each side, in the current layer's output rows
    for m in reversed(layers):
        if type(m).__name__ in _POINTWISE:
            continue
        if not isinstance(m, nn.Conv2d | nn.ConvTranspose2d):
            return None
        (k, _), (s, _), (p, _), (d, _) = m.kernel_size, m.stride, m.padding, m.dilation
        reach = d * (k - 1)
        if isinstance(m, nn.ConvTranspose2d):
            # output row o reads input rows i with o = i*s - p + d*t (0 <= t < k); a band's
            # edges fall on multiples of s, so it needs ceil((radius + p or reach - p) / s)
            # more input rows on each side; the output must be exactly s times the input
            if reach + 1 + m.output_padding[0] - 2 * p != s:
                return None
            radius = -(-(radius + max(p, reach - p)) // s)
            scale *= s
        else:
            # a size-keeping stride-1 convolution: output row o reads o - p + d*t
            if s != 1 or reach != 2 * p:
                return None
            radius += p
    return radius, scale


def band_rows(h: int, n: int) -> list[tuple[int, int]]:
    """``n`` contiguous bands of ``h`` latent rows, as ``(first, end)`` (sizes differ by at
    most one)."""
    return [(j * h // n, (j + 1) * h // n) for j in range(n)]


def band_count(h: int, threads: int, halo: int | None) -> int:
    """Bands to cut ``h`` latent rows into for ``threads`` threads (1: no cut)."""
    if halo is None or threads <= 1:
        return 1
    return max(1, min(threads, h // max(MIN_BAND_ROWS, halo)))


def synthesize_bands(fn: Callable[[Tensor], Tensor], y: Tensor, n: int, halo: int, scale: int,
                     workers: substreams.Workers | None) -> Tensor:
    """``fn(y)`` computed as ``n`` row bands of ``y`` with ``halo`` extra rows each side,
    each on a worker with one torch thread, cropped and joined: ``(1, 3, h * scale, W)``."""
    h = y.shape[2]
    cut = band_rows(h, n)
    before = torch.get_num_threads()

    def one(j: int) -> Tensor:
        a, b = cut[j]
        lo, hi = max(0, a - halo), min(h, b + halo)
        torch.set_num_threads(1)  # this worker thread's own intra-op setting
        with torch.inference_mode():
            out = fn(y[:, :, lo:hi])
        return out[:, :, (a - lo) * scale : (b - lo) * scale]

    try:
        parts = [one(j) for j in range(n)] if workers is None else workers.map(one, n)
    finally:
        torch.set_num_threads(before)  # the shared settings back to the caller's
    return torch.cat(parts, dim=2)
