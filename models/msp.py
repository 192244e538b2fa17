"""Multi-scale progressive (MSP) probability model of the finest latent ``y``.

After Zhang et al. 2022 ("Leveraging progressive model and overfitting for efficient
learned image compression", arXiv 2210.04112, paper 001 of ``../shared/papers``): ``y`` is
coded in a fixed number of passes, coarse spatial scales first and channel groups within
each scale, each pass's Gaussian parameters conditioned on the hyperprior *and* on every
pass decoded before it. The number of passes does not grow with the image (O(1) sequential
entropy-decoding steps, unlike the O(n) of an autoregressive context model); within a pass
every element is decoded at once.

Our reading (the full text of the paper was not at hand; only its first pages are in
``../shared/papers``): the scales are the polyphase sub-grids of ``y``, so nothing is coded
twice. With ``scales=2`` the coarse scale is the stride-2 sub-grid (even rows and even
columns, a quarter of the positions) and the fine scale the other three quarters; with
``scales=3`` the coarsest is the stride-4 sub-grid, then the rest of the stride-2 one, then
the rest. Within a scale the channels are cut into ``channel_groups`` equal slices. Pass
order: scale by scale (coarse first), channel slice by channel slice. The default
``c2f-*-msp`` models use 2 scales x 2 channel slices = 4 passes for ``y`` (so a two-level
``c2f-small-msp`` stream takes 4 + 1 + 1 = 6 entropy-decoding passes, a pruned one 4 + 1).

Parameters of pass ``g``:

* ``g = 0``: the hyperprior's own Pro-Est head on the hyper-synthesis features (the plain
  c2f model's prediction);
* ``g >= 1``: a 3x3 convolution over the partly decoded ``y`` (zeros where not yet decoded)
  plus one channel giving, per position, the share of channels already decoded (tells the
  translation-invariant convolution which sub-grid it sits on), LeakyReLU, then a head of
  two 1x1 convolutions over ``[hyper features, context]`` -> ``2C`` (means, scales).

Determinism: the whole :class:`MSPParams` is a parameter net (``param_nets[0]``), so the
coder runs it as a float64 copy like every other parameter net (rule 1 of
:mod:`models.entropy`). Its inputs are the dequantized level above and the partly decoded
``y``, ``symbol + snapped mean``: exact values, identical on encoder and decoder; the masks
depend on the latent's shape alone; each pass's means are snapped to the 1/64 grid and its
scales turned into table indexes by the same float64 comparisons as any level's (rules 2
and 3). Encoder and decoder walk the passes through the same loop
(:func:`models.latent_model.walk_groups` inside :func:`models.entropy.code_levels`), so
they see the same context before each pass.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["MSP_CHANNEL_GROUPS", "MSP_SCALES", "MSPContext", "MSPParams", "msp_masks"]

#: spatial scales of the registry's ``c2f-*-msp`` models
MSP_SCALES = 2
#: channel slices per scale of the registry's ``c2f-*-msp`` models
MSP_CHANNEL_GROUPS = 2


def msp_masks(shape: tuple[int, ...], scales: int, channel_groups: int,
              device: torch.device | str = "cpu") -> list[Tensor]:
    """The passes' boolean masks over a latent of ``shape`` ``(B, C, H, W)``, coding order.

    Scale ``s`` (0 = coarsest) holds the positions whose row and column are multiples of
    ``2^(scales-1-s)`` and that no coarser scale holds; the channels are cut into
    ``channel_groups`` contiguous slices (the last one takes the remainder). Empty masks
    (tiny latents) are kept so that the number of passes never depends on the shape.
    """
    b, c, h, w = shape
    if scales < 1 or not 1 <= channel_groups <= c:
        raise ValueError(f"MSP needs scales >= 1 and 1..{c} channel groups")
    rows = torch.arange(h, device=device).view(h, 1)
    cols = torch.arange(w, device=device).view(1, w)
    taken = torch.zeros(h, w, dtype=torch.bool, device=device)
    spatial = []
    for s in range(scales):
        step = 2 ** (scales - 1 - s)
        grid = (rows % step == 0) & (cols % step == 0)
        spatial.append(grid & ~taken)
        taken |= grid
    size = c // channel_groups
    chan = torch.arange(c, device=device)
    slices = [(chan >= i * size) & ((chan < (i + 1) * size) if i < channel_groups - 1 else True)
              for i in range(channel_groups)]
    return [(sl.view(1, c, 1, 1) & sp.view(1, 1, h, w)).expand(b, c, h, w).contiguous()
            for sp in spatial for sl in slices]


class MSPContext(nn.Module):
    """The learned context of passes ``1 .. passes - 1``: for each, a 3x3 convolution over the
    partly decoded latent (+ one decoded-share channel) and a two-layer 1x1 head.

    ``c_feat``: channels of the hyper-synthesis features; ``c_lat``: channels of ``y``.
    """

    def __init__(self, c_feat: int, c_lat: int, passes: int) -> None:
        super().__init__()
        act = nn.LeakyReLU
        self.ctx = nn.ModuleList(
            nn.Sequential(nn.Conv2d(c_lat + 1, c_lat, 3, padding=1), act(inplace=True))
            for _ in range(passes - 1))
        self.heads = nn.ModuleList(
            nn.Sequential(nn.Conv2d(c_feat + c_lat, 2 * c_lat, 1), act(inplace=True),
                          nn.Conv2d(2 * c_lat, 2 * c_lat, 1))
            for _ in range(passes - 1))


class MSPParams(nn.Module):
    """``param_nets[0]`` of an MSP model: a :class:`~models.latent_model.ProgressiveNet`.

    Holds references to modules registered on the model under their own names (``hyper``:
    the hyper-synthesis ``h_s1``; ``head0``: its Pro-Est head; ``context``: the
    :class:`MSPContext`), like the plain models' ``nn.Sequential(h_s1, pe1)``.
    """

    def __init__(self, hyper: nn.Module, head0: nn.Module, context: MSPContext,
                 scales: int, channel_groups: int) -> None:
        super().__init__()
        self.hyper, self.head0, self.context = hyper, head0, context
        self.scales, self.channel_groups = scales, channel_groups
        self.num_groups = scales * channel_groups
        if len(context.heads) != self.num_groups - 1:
            raise ValueError("MSPContext has the wrong number of passes")

    @property
    def heads(self) -> list[nn.Module]:
        """The last layers' owners of each pass (pass 0: the Pro-Est head)."""
        return [self.head0, *self.context.heads]

    def features(self, upper: Tensor) -> Tensor:
        """``(B, c_feat, H, W)`` hyper-synthesis features at ``y``'s resolution."""
        return self.hyper(upper)

    def group_masks(self, shape: tuple[int, ...], device: torch.device) -> list[Tensor]:
        return msp_masks(shape, self.scales, self.channel_groups, device)

    def group_params(self, g: int, features: Tensor, decoded: Tensor, done: Tensor) -> Tensor:
        """Raw ``(B, 2C, H, W)`` parameters (means, scales) of pass ``g``."""
        if g == 0:
            return self.head0(features)
        share = done.to(decoded.dtype).mean(1, keepdim=True)
        ctx = self.context.ctx[g - 1](torch.cat([decoded, share], 1))
        return self.context.heads[g - 1](torch.cat([features, ctx], 1))

    def forward(self, upper: Tensor) -> Tensor:  # pragma: no cover - guard
        raise TypeError("MSPParams is progressive: walk its passes with "
                        "models.latent_model.walk_groups")
