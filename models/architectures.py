"""Learned codec architectures: the paper's Coarse-to-Fine family (Table 1) and two compressai references.

Every model here is a :class:`compressai.models.CompressionModel` that implements
:class:`models.latent_model.LatentModel` (the interface :mod:`models.codec` and
:mod:`models.train` use: ``latents``, ``bottleneck``, ``gaussians``, ``param_nets``,
``split_params``, ``synthesis``), variable-rate contract included: ``num_qualities`` (0 for a
fixed-rate model) and ``lambdas`` (one per quality index, ascending; empty when fixed-rate).

The variable-rate models (``c2f-*-vr``) are the Coarse-to-Fine models with the gain units of
:mod:`models.variable_rate` on y. Their ``latents``, ``synthesis`` and ``forward`` need a
quality index ``0..num_qualities-1`` (``forward`` also takes a ``(B,)`` integer tensor, one
index per sample); a fixed-rate model refuses one (ValueError).

``forward(x, quality=None)`` returns ``{"x_hat": ..., "likelihoods": {"y": ..., "z": ..., ["w": ...]}}`` for
the rate-distortion loss (additive uniform noise in training mode, rounding around the
predicted means in eval mode).

Choices the paper (Table 1, Sec. 3.3) leaves open, as implemented here:

* g_a: four 5x5 stride-2 convolutions with GDN between them (3 GDNs), g_s: four 5x5 stride-2
  transposed convolutions with inverse GDN between them (Balle et al. 2018 layout). The
  last g_a layer has as many channels as the others (Table 1: 4 layers of N), so M = N.
* g_s takes only y_hat (Table 1 lists N input channels for g_s), i.e. no fusion of the
  hyper-decoder outputs h1/h2 into the synthesis.
* h_a1: 3x3 stride-1, 5x5 stride-2, 5x5 stride-2 (LeakyReLU between) -> z at 1/64;
  h_s1 mirrors it with transposed convolutions. Channel triples exactly as in Table 1.
* h_a2: 3x3 stride-1, 3x3 stride-1, 5x5 stride-2 -> w at 1/128; h_s2: 5x5 transposed
  stride-2, 3x3, 3x3. One stride-2 layer only, so the total stride is 128 (padding a 1080-row
  frame to 1152 rather than 1280 rows).
* The hyper-decoders end with M (resp. Cz) channels (Table 1: M = N), so a "Pro-Est" head of two 1x1
  convolutions (C -> 2C -> 2C, LeakyReLU between) turns h1 (h2) into the means and scales
  of a Gaussian conditional for y (z). w, and z in the pruned model, use a factorized prior.

``c2f-{size}-m{M}[-pruned]...``: our extension of Table 1, a wide latent. The transforms keep
N channels, but the last g_a layer, the first g_s layer, h_a1's input and h_s1's output (and
so the Pro-Est head) have M > N channels. Those layers run at 1/16 of the pixels, so the cost
is small, while a 48-channel y caps the slim models' quality (docs/models.md, "Wide latents").
Registered: M in :data:`WIDE_LATENTS` for the sizes in :data:`WIDE_SIZES`.

``c2f-{size}[-pruned]-msp``: the same model with y coded by the multi-scale progressive
probability model of :mod:`models.msp` (4 passes: the stride-2 sub-grid of y, then the other
three quarters, each in two channel slices; pass 0 is the plain model's Pro-Est prediction,
the others add a context net over the passes decoded before them).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from compressai.entropy_models import EntropyBottleneck, GaussianConditional
from compressai.layers import GDN
from compressai.models import CompressionModel, MeanScaleHyperprior, ScaleHyperprior
from compressai.models.utils import conv, deconv
from torch import Tensor, nn

from cloud3d.registry import Registry
from models.latent_model import walk_groups
from models.msp import MSP_CHANNEL_GROUPS, MSP_SCALES, MSPContext, MSPParams
from models.variable_rate import DEFAULT_LAMBDAS, GainUnit

__all__ = [
    "C2F_SIZES",
    "ARCHITECTURES",
    "REGISTRY",
    "Architecture",
    "C2FModel",
    "arch_names",
    "create_model",
]


@dataclass(frozen=True)
class C2FSize:
    """Table 1 row: g_a/g_s width and the (out1, out2, out3) channels of each hyper layer."""

    n: int
    h_a1: tuple[int, int, int]
    h_s1: tuple[int, int, int]
    h_a2: tuple[int, int, int]
    h_s2: tuple[int, int, int]


#: Table 1 of the reference paper (input channels: N for h_a1, 256 for h_s1/h_a2, 128 for h_s2).
C2F_SIZES: dict[str, C2FSize] = {
    "large": C2FSize(384, (768, 1536, 256), (1536, 1536, 384), (512, 256, 128), (512, 512, 256)),
    "medium": C2FSize(192, (384, 768, 256), (768, 384, 192), (512, 128, 128), (128, 256, 256)),
    "small": C2FSize(96, (192, 384, 256), (384, 192, 96), (256, 128, 128), (128, 256, 256)),
    "xsmall": C2FSize(48, (96, 192, 256), (192, 96, 48), (256, 128, 128), (128, 256, 256)),
}


#: latent widths M registered as ``c2f-{size}-m{M}...`` (for the sizes in WIDE_SIZES)
WIDE_LATENTS: tuple[int, ...] = (96, 128, 192)
WIDE_SIZES: tuple[str, ...] = ("xsmall", "small")


def c2f_name(size: str, m: int | None = None, pruned: bool = False, msp: bool = False,
             variable_rate: bool = False) -> str:
    """Architecture name of a Coarse-to-Fine model, e.g. ``c2f-xsmall-m192-pruned-vr``."""
    return (f"c2f-{size}" + (f"-m{m}" if m else "") + ("-pruned" if pruned else "")
            + ("-msp" if msp else "") + ("-vr" if variable_rate else ""))


def _pro_est(c: int) -> nn.Module:
    """Probability-estimation head: C hyper-decoder features -> 2C (means, scales)."""
    return nn.Sequential(
        nn.Conv2d(c, 2 * c, 1), nn.LeakyReLU(inplace=True), nn.Conv2d(2 * c, 2 * c, 1)
    )


class _LatentModel(CompressionModel):
    """Shared forward pass over the ``latents / param_nets / gaussians / bottleneck`` interface."""

    arch: str = ""
    stride: int = 64
    #: down-sampling factor and channel count of each latent, finest first
    latent_strides: list[int]
    latent_channels: list[int]
    #: variable rate: number of quality indexes (0: fixed-rate) and their lambdas, ascending
    num_qualities: int = 0
    lambdas: tuple[float, ...] = ()

    @property
    def gain_unit(self) -> GainUnit | None:
        """The gain tables of a variable-rate model (submodule ``gain``), else None."""
        return self._modules.get("gain")  # type: ignore[return-value]

    def latents(self, x: Tensor, quality: int | Tensor | None = None) -> list[Tensor]:
        raise NotImplementedError  # pragma: no cover - abstract

    def _check_quality(self, quality: int | Tensor | None) -> None:
        """ValueError when a fixed-rate model gets a quality or a variable-rate one none."""
        if self.gain_unit is None and quality is not None:
            raise ValueError(f"{self.arch} is a fixed-rate model: it takes no quality index")
        if self.gain_unit is not None and quality is None:
            raise ValueError(f"{self.arch} is a variable-rate model: pass a quality index "
                             f"0..{self.num_qualities - 1}")

    def _analysis(self, x: Tensor, quality: int | Tensor | None) -> Tensor:
        """``y = g_a(x)``, times ``gain[quality]`` for a variable-rate model."""
        self._check_quality(quality)
        y, gain = self.g_a(x), self.gain_unit
        return y if gain is None else gain.scale(y, quality)

    def split_params(self, k: int, raw: Tensor) -> tuple[Tensor | None, Tensor]:
        means, scales = raw.chunk(2, 1)
        return means, scales

    @property
    def bottleneck(self) -> EntropyBottleneck:
        return self.entropy_bottleneck

    @property
    def gaussians(self) -> list[GaussianConditional]:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def param_nets(self) -> list[nn.Module]:  # pragma: no cover - abstract
        raise NotImplementedError

    def synthesis(self, y_hat: Tensor, quality: int | Tensor | None = None) -> Tensor:
        """``g_s(y_hat)``, with ``y_hat`` times ``inv_gain[quality]`` first when variable-rate."""
        self._check_quality(quality)
        gain = self.gain_unit
        return self.g_s(y_hat if gain is None else gain.unscale(y_hat, quality))

    def forward(self, x: Tensor, quality: int | Tensor | None = None) -> dict[str, Any]:
        """``x``: ``(B, 3, H, W)`` in 0..1, H and W multiples of :attr:`stride`; ``quality``:
        see the module docstring (variable-rate models only)."""
        # Under autocast (AMP) only the transforms run in reduced precision: the entropy
        # models (likelihoods, factorized-prior matmuls) always run in float32.
        lat = [t.float() for t in self.latents(x, quality)]
        names = ["y", "z", "w"][: len(lat)]
        with torch.autocast(x.device.type, enabled=False):
            upper, top_lik = self.bottleneck(lat[-1])
        likelihoods = {names[-1]: top_lik}
        for k in reversed(range(len(lat) - 1)):
            means, scales = self._level_params(k, upper, lat[k])
            with torch.autocast(x.device.type, enabled=False):
                upper, lik = self.gaussians[k](lat[k], scales, means=means)
            likelihoods[names[k]] = lik
        return {"x_hat": self.synthesis(upper, quality).float(), "likelihoods": likelihoods}

    def _level_params(self, k: int, upper: Tensor, latent: Tensor) -> tuple[Tensor | None, Tensor]:
        """Means (or None) and scales of level ``k`` for the forward pass, pass by pass for a
        progressive level (:func:`~models.latent_model.walk_groups`). A pass sees the earlier
        passes' elements as the coder will: with uniform noise in training, rounded around
        their predicted means in eval mode."""
        got: dict[str, Tensor | None] = {}

        def step(g: int, mask: Tensor | None, raw: Tensor) -> Tensor:
            with torch.autocast(raw.device.type, enabled=False):
                means, scales = self.split_params(k, raw.float())
            if mask is None:
                got["means"], got["scales"] = means, scales
                return latent
            m = torch.zeros_like(scales) if means is None else means
            got["means"] = m if g == 0 else torch.where(mask, m, got["means"])
            got["scales"] = scales if g == 0 else torch.where(mask, scales, got["scales"])
            if self.training:
                return latent + torch.empty_like(latent).uniform_(-0.5, 0.5)
            return torch.round(latent - m) + m

        walk_groups(self.param_nets[k], upper, tuple(latent.shape), step)
        return got["means"], got["scales"]

    def config(self) -> dict[str, Any]:
        """Constructor arguments recorded in checkpoints (see :func:`create_model`)."""
        return {}


class C2FModel(_LatentModel):
    """Coarse-to-Fine hyperprior model slimmed as in Table 1; ``pruned`` drops h_a2/h_s2;
    ``lambdas`` (a ladder) makes it variable-rate (arch name ending in ``-vr``); ``msp`` codes y
    with the multi-scale progressive model of :mod:`models.msp` (its first pass is the plain
    model's prediction); ``m``: the latent width M of y (None: M = N, Table 1)."""

    def __init__(self, size: str, pruned: bool = False,
                 lambdas: tuple[float, ...] | list[float] | None = None, msp: bool = False,
                 m: int | None = None) -> None:
        super().__init__()
        if size not in C2F_SIZES:
            raise ValueError(f"unknown size {size!r}; valid: {', '.join(C2F_SIZES)}")
        s = C2F_SIZES[size]
        n = s.n
        if m is not None and m < 1:
            raise ValueError(f"latent width must be positive, got {m}")
        ym = m or n
        self.size_name, self.pruned, self.msp, self.latent_width = size, pruned, msp, ym
        self.arch = c2f_name(size, m, pruned, msp, bool(lambdas))
        if lambdas:
            self.gain = GainUnit(lambdas, ym)
            self.num_qualities = self.gain.num_qualities
            self.lambdas = tuple(float(v) for v in lambdas)
        act = nn.LeakyReLU
        self.g_a = nn.Sequential(
            conv(3, n), GDN(n), conv(n, n), GDN(n), conv(n, n), GDN(n), conv(n, ym)
        )
        self.g_s = nn.Sequential(
            deconv(ym, n), GDN(n, inverse=True), deconv(n, n), GDN(n, inverse=True),
            deconv(n, n), GDN(n, inverse=True), deconv(n, 3),
        )  # fmt: skip
        a1, s1 = s.h_a1, (*s.h_s1[:2], ym)
        cz = a1[2]
        self.h_a1 = nn.Sequential(
            conv(ym, a1[0], stride=1, kernel_size=3), act(inplace=True),
            conv(a1[0], a1[1]), act(inplace=True), conv(a1[1], a1[2]),
        )  # fmt: skip
        self.h_s1 = nn.Sequential(
            deconv(cz, s1[0]), act(inplace=True), deconv(s1[0], s1[1]), act(inplace=True),
            conv(s1[1], s1[2], stride=1, kernel_size=3),
        )  # fmt: skip
        self.pe1 = _pro_est(s1[2])
        self.gaussian_y = GaussianConditional(None)
        if msp:
            self.msp_context = MSPContext(s1[2], ym, MSP_SCALES * MSP_CHANNEL_GROUPS)
            nets: list[nn.Module] = [MSPParams(self.h_s1, self.pe1, self.msp_context,
                                               MSP_SCALES, MSP_CHANNEL_GROUPS)]
        else:
            nets = [nn.Sequential(self.h_s1, self.pe1)]
        gaussians = [self.gaussian_y]
        if pruned:
            self.entropy_bottleneck = EntropyBottleneck(cz)
            self.stride = 64
            self.latent_strides, self.latent_channels = [16, 64], [ym, cz]
        else:
            a2, s2 = s.h_a2, s.h_s2
            self.h_a2 = nn.Sequential(
                conv(cz, a2[0], stride=1, kernel_size=3), act(inplace=True),
                conv(a2[0], a2[1], stride=1, kernel_size=3), act(inplace=True),
                conv(a2[1], a2[2]),
            )  # fmt: skip
            self.h_s2 = nn.Sequential(
                deconv(a2[2], s2[0]), act(inplace=True),
                conv(s2[0], s2[1], stride=1, kernel_size=3), act(inplace=True),
                conv(s2[1], s2[2], stride=1, kernel_size=3),
            )  # fmt: skip
            if s2[2] != cz:
                raise ValueError("h_s2 must output as many channels as z")
            self.pe2 = _pro_est(cz)
            self.gaussian_z = GaussianConditional(None)
            self.entropy_bottleneck = EntropyBottleneck(a2[2])
            nets.append(nn.Sequential(self.h_s2, self.pe2))
            gaussians.append(self.gaussian_z)
            self.stride = 128
            self.latent_strides, self.latent_channels = [16, 64, 128], [ym, cz, a2[2]]
        # plain lists (not ModuleLists): the modules are registered under their own names
        self._nets = nets
        self._gaussians = gaussians

    @property
    def gaussians(self) -> list[GaussianConditional]:
        return self._gaussians

    @property
    def param_nets(self) -> list[nn.Module]:
        return self._nets

    def latents(self, x: Tensor, quality: int | Tensor | None = None) -> list[Tensor]:
        y = self._analysis(x, quality)
        z = self.h_a1(y)
        return [y, z] if self.pruned else [y, z, self.h_a2(z)]

    def config(self) -> dict[str, Any]:
        return {"lambdas": list(self.lambdas)} if self.gain_unit is not None else {}


class _CompressaiReference(_LatentModel):
    """Glue shared by compressai's single-hyperprior models: latents y (stride 16) and z
    (stride 64), one Gaussian conditional whose parameters come from ``h_s``."""

    stride = 64

    def _setup(self, N: int, M: int) -> None:
        self.latent_strides, self.latent_channels = [16, 64], [M, N]
        self._cfg = {"N": N, "M": M}

    def config(self) -> dict[str, Any]:
        return dict(self._cfg)

    @property
    def gaussians(self) -> list[GaussianConditional]:
        return [self.gaussian_conditional]

    @property
    def param_nets(self) -> list[nn.Module]:
        return [self.h_s]


class Bmshj2018Hyperprior(ScaleHyperprior, _CompressaiReference):
    """compressai's ``bmshj2018-hyperprior`` (scale-only Gaussian) behind the common interface."""

    arch = "bmshj2018-hyperprior"

    def __init__(self, N: int = 128, M: int = 192) -> None:
        ScaleHyperprior.__init__(self, N=N, M=M)
        self._setup(N, M)

    forward = _LatentModel.forward  # compressai's own forward comes first in the MRO

    def split_params(self, k: int, raw: Tensor) -> tuple[Tensor | None, Tensor]:
        return None, raw

    def latents(self, x: Tensor, quality: int | Tensor | None = None) -> list[Tensor]:
        y = self._analysis(x, quality)
        return [y, self.h_a(torch.abs(y))]


class Mbt2018Mean(MeanScaleHyperprior, _CompressaiReference):
    """compressai's ``mbt2018-mean`` (mean-and-scale hyperprior) behind the common interface."""

    arch = "mbt2018-mean"

    def __init__(self, N: int = 128, M: int = 192) -> None:
        MeanScaleHyperprior.__init__(self, N=N, M=M)
        self._setup(N, M)

    forward = _LatentModel.forward  # compressai's own forward comes first in the MRO

    def split_params(self, k: int, raw: Tensor) -> tuple[Tensor | None, Tensor]:
        scales, means = raw.chunk(2, 1)  # compressai's order
        return means, scales

    def latents(self, x: Tensor, quality: int | Tensor | None = None) -> list[Tensor]:
        y = self._analysis(x, quality)
        return [y, self.h_a(y)]


def _c2f(size: str, pruned: bool, variable_rate: bool = False,
         msp: bool = False, m: int | None = None) -> Callable[..., _LatentModel]:
    name = c2f_name(size, m, pruned, msp, variable_rate)

    def make(**kwargs: Any) -> _LatentModel:
        lambdas = kwargs.pop("lambdas", None) if variable_rate else None
        if kwargs:
            takes = "takes only lambdas=[...]" if variable_rate else "takes no options"
            raise ValueError(f"{name}: {takes}, got {', '.join(kwargs)}")
        return C2FModel(size, pruned, lambdas=(lambdas or DEFAULT_LAMBDAS) if variable_rate
                        else None, msp=msp, m=m)

    return make


@dataclass(frozen=True)
class Architecture:
    """A registered architecture: its short name and ``make(**config)``, the factory of a
    fresh model (``config`` as in :func:`create_model`)."""

    name: str
    make: Callable[..., _LatentModel]


#: this module's architectures (``c2f-*-vr``: variable-rate (gain units), with the config
#: ``lambdas``, default :data:`models.variable_rate.DEFAULT_LAMBDAS`)
ARCHITECTURES: list[Architecture] = [
    *[Architecture(f"c2f-{s}", _c2f(s, False)) for s in C2F_SIZES],
    *[Architecture(f"c2f-{s}-pruned", _c2f(s, True)) for s in C2F_SIZES],
    *[Architecture(f"c2f-{s}-vr", _c2f(s, False, True)) for s in C2F_SIZES],
    *[Architecture(f"c2f-{s}-pruned-vr", _c2f(s, True, True)) for s in C2F_SIZES],
    *[Architecture(f"c2f-{s}-msp", _c2f(s, False, msp=True)) for s in C2F_SIZES],
    *[Architecture(f"c2f-{s}-pruned-msp", _c2f(s, True, msp=True)) for s in C2F_SIZES],
    *[Architecture(c2f_name(s, m, p, variable_rate=v), _c2f(s, p, v, m=m))
      for s in WIDE_SIZES for m in WIDE_LATENTS for p in (False, True) for v in (False, True)],
    Architecture("bmshj2018-hyperprior", Bmshj2018Hyperprior),
    Architecture("mbt2018-mean", Mbt2018Mean),
]

#: the environment variable naming a user's architecture modules (comma-separated)
MODULES_ENV = "CLOUD3D_ARCH_MODULES"

#: every architecture by name (:class:`cloud3d.registry.Registry`): this module's, then those
#: of the modules in ``$CLOUD3D_ARCH_MODULES``, each defining ``ARCHITECTURES``, a list of
#: :class:`Architecture` whose models set ``arch`` to the entry's name
REGISTRY: Registry[Architecture] = Registry(
    "architecture", (__name__,), "ARCHITECTURES", env_var=MODULES_ENV, what="Architecture objects",
    accepts=lambda a: isinstance(a, Architecture),
)


def arch_names() -> list[str]:
    """Registered architecture names."""
    return list(REGISTRY)


def create_model(arch: str, **config: Any) -> _LatentModel:
    """A fresh (untrained) model. ``config``: ``N``/``M`` for the compressai references,
    ``lambdas`` (ascending ladder) for the variable-rate ``c2f-*-vr`` models.

    Raises ValueError naming the valid architectures when ``arch`` is unknown.
    """
    known = REGISTRY.entries()
    if arch not in known:
        raise ValueError(f"unknown architecture {arch!r}; valid: {', '.join(known)}")
    return known[arch].make(**config)


def reference_for(arch: str) -> tuple[str, dict[str, int]]:
    """compressai ``mbt2018-mean`` config with the channel counts of a c2f model (N, and M of
    a wide-latent model, else M = N)."""
    if arch.startswith("c2f-") and arch in REGISTRY:
        model = create_model(arch) if "-vr" not in arch else create_model(arch, lambdas=[0.01])
        return "mbt2018-mean", {"N": C2F_SIZES[model.size_name].n, "M": model.latent_width}
    raise ValueError(f"{arch} is not a c2f model")
