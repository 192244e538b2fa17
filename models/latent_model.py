"""The interface every learned model offers to the codec: :class:`LatentModel`.

:mod:`models.architectures` implements it (Coarse-to-Fine family, compressai references);
:mod:`models.codec`, :mod:`models.prepared` and :mod:`models.entropy` use nothing else, so a
new architecture only has to provide these members to get ``.c3d`` streams.

Latents are ordered finest first: ``y`` (level 0), ``z`` (level 1) and, in two-level
hyperprior models, ``w`` (level 2). The coarsest level is coded with the factorized prior
``bottleneck``; every other level ``k`` with the Gaussian conditional ``gaussians[k]``, whose
means and scales come from ``param_nets[k]`` applied to the dequantized level ``k + 1``.

Progressive levels (optional): a ``param_nets[k]`` that is a :class:`ProgressiveNet` codes
its level in a fixed number of passes (groups of elements given by boolean masks), each
pass's parameters conditioned on the level above *and* on the groups coded before it
(e.g. the multi-scale progressive model of :mod:`models.msp`). :func:`walk_groups` is the one
loop over those passes, used by the training forward pass and by the coder
(:func:`models.entropy.code_levels`) alike; a plain net is one pass over the whole level.

Variable-rate models (optional; the ``c2f-*-vr`` architectures, gain units of
:mod:`models.variable_rate`): ``num_qualities > 0`` and ``lambdas`` (one per quality index,
ascending); their ``latents(x, quality)`` and ``synthesis(y_hat, quality)`` take an
int quality index in ``0 .. num_qualities - 1``. The quality only scales the analysis and
synthesis transforms, never the entropy-parameter path, so the determinism rules of
:mod:`models.entropy` hold for every quality. Fixed-rate models have no ``num_qualities``
(or 0) and take no quality argument; :func:`model_qualities` reads this uniformly.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor, nn

__all__ = ["LatentModel", "ProgressiveNet", "level_passes", "model_qualities", "walk_groups"]


@runtime_checkable
class LatentModel(Protocol):
    """A learned image codec model as the coding path sees it (a ``torch.nn.Module``).

    Attributes:
        arch: registry name (e.g. ``"c2f-small-pruned"``), recorded in every stream.
        stride: total down-sampling; inputs are padded to a multiple of it (64 or 128).
        latent_strides: down-sampling factor of each latent, finest first (e.g. [16, 64]).
        latent_channels: channel count of each latent, finest first.
    """

    arch: str
    stride: int
    latent_strides: list[int]
    latent_channels: list[int]

    def latents(self, x: Tensor) -> list[Tensor]:
        """Analysis: ``x`` ``(B, 3, H, W)`` in 0..1, H and W multiples of ``stride`` ->
        float latents ``(B, latent_channels[k], H / latent_strides[k], W / ...)``, finest
        first. Variable-rate models take a quality index as second argument."""
        ...

    @property
    def bottleneck(self) -> Any:
        """compressai ``EntropyBottleneck``: factorized prior of the coarsest latent."""
        ...

    @property
    def gaussians(self) -> list[Any]:
        """compressai ``GaussianConditional`` of each latent but the coarsest."""
        ...

    @property
    def param_nets(self) -> list[nn.Module]:
        """``param_nets[k]``: dequantized latent ``k + 1`` -> raw entropy parameters of ``k``."""
        ...

    def split_params(self, k: int, raw: Tensor) -> tuple[Tensor | None, Tensor]:
        """Raw parameters of level ``k`` -> ``(means or None, scales)``, each shaped like
        latent ``k``."""
        ...

    def synthesis(self, y_hat: Tensor) -> Tensor:
        """g_s: dequantized ``y`` -> ``(B, 3, H, W)`` reconstruction, nominal range 0..1.
        Variable-rate models take a quality index as second argument."""
        ...

    def config(self) -> dict[str, Any]:
        """Constructor arguments recorded in checkpoints (JSON-able)."""
        ...

    # the nn.Module methods the coding path uses
    def update(self, scale_table: Any = None, force: bool = False) -> bool: ...

    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, Any]: ...

    def to(self, *args: Any, **kwargs: Any) -> Any: ...

    def eval(self) -> Any: ...


def model_qualities(model: Any) -> int:
    """Number of quality indexes of a variable-rate model; 0 for a fixed-rate model."""
    n = getattr(model, "num_qualities", 0) or 0
    return int(n)


@runtime_checkable
class ProgressiveNet(Protocol):
    """A ``param_nets[k]`` that codes level ``k`` in ``num_groups`` passes (see module docstring).

    The raw parameters of every pass have the layout a plain net's output has (what
    ``split_params(k, raw)`` takes), for the whole level; only the elements of that pass's
    mask are used.
    """

    num_groups: int

    def features(self, upper: Tensor) -> Tensor:
        """Dequantized level ``k + 1`` -> features shared by all passes (hyper-synthesis)."""
        ...

    def group_masks(self, shape: tuple[int, ...], device: torch.device) -> list[Tensor]:
        """``num_groups`` boolean masks of ``shape`` (level ``k``'s shape), disjoint and
        covering it, in coding order. They depend on the shape alone."""
        ...

    def group_params(self, g: int, features: Tensor, decoded: Tensor, done: Tensor) -> Tensor:
        """Raw parameters of pass ``g`` from the shared features and the level decoded so
        far: ``decoded`` holds the dequantized values where ``done`` (bool, the union of
        the masks of passes ``< g``) and zeros elsewhere."""
        ...


#: ``step(g, mask, raw) -> values``: code pass ``g`` (``mask`` None: one pass over the whole
#: level) from its raw parameters; returns the dequantized level, valid where ``mask``
GroupStep = Callable[[int, Tensor | None, Tensor], Tensor]


def walk_groups(net: nn.Module, upper: Tensor, shape: tuple[int, ...], step: GroupStep) -> Tensor:
    """The passes of one level, in order: the loop shared by training and coding.

    A plain net is called once on ``upper`` and ``step(0, None, raw)`` codes the whole
    level. A :class:`ProgressiveNet` gets its features once, then for each pass ``g`` its raw
    parameters from the features and what the earlier passes decoded, and ``step(g, mask,
    raw)`` codes that pass. Returns the dequantized level (``shape``), each element from the
    pass that coded it.
    """
    if not isinstance(net, ProgressiveNet):
        return step(0, None, net(upper))
    feats = net.features(upper)
    decoded = torch.zeros(shape, dtype=feats.dtype, device=feats.device)
    done = torch.zeros(shape, dtype=torch.bool, device=feats.device)
    for g, mask in enumerate(net.group_masks(shape, feats.device)):
        values = step(g, mask, net.group_params(g, feats, decoded, done))
        decoded = torch.where(mask, values.to(decoded.dtype), decoded)
        done = done | mask
    return decoded


def level_passes(model: Any) -> list[int]:
    """Entropy-coding passes of each level, finest first (1 for the coarsest level and for
    every level whose parameter net is not a :class:`ProgressiveNet`)."""
    nets = list(model.param_nets)
    return [int(n.num_groups) if isinstance(n, ProgressiveNet) else 1 for n in nets] + [1]
