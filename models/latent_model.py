"""The interface every learned model offers to the codec: :class:`LatentModel`.

:mod:`models.architectures` implements it (Coarse-to-Fine family, compressai references);
:mod:`models.codec`, :mod:`models.prepared` and :mod:`models.entropy` use nothing else, so a
new architecture only has to provide these members to get ``.c3d`` streams.

Latents are ordered finest first: ``y`` (level 0), ``z`` (level 1) and, in two-level
hyperprior models, ``w`` (level 2). The coarsest level is coded with the factorized prior
``bottleneck``; every other level ``k`` with the Gaussian conditional ``gaussians[k]``, whose
means and scales come from ``param_nets[k]`` applied to the dequantized level ``k + 1``.

Variable-rate models (optional; the ``c2f-*-vr`` architectures, gain units of
:mod:`models.variable_rate`): ``num_qualities > 0`` and ``lambdas`` (one per quality index,
ascending); their ``latents(x, quality)`` and ``synthesis(y_hat, quality)`` take an
int quality index in ``0 .. num_qualities - 1``. The quality only scales the analysis and
synthesis transforms, never the entropy-parameter path, so the determinism rules of
:mod:`models.entropy` hold for every quality. Fixed-rate models have no ``num_qualities``
(or 0) and take no quality argument; :func:`model_qualities` reads this uniformly.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from torch import Tensor, nn

__all__ = ["LatentModel", "model_qualities"]


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
