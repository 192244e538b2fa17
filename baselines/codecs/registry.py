"""Find codecs by name and parse ``--codec`` specs.

Codec classes live in modules listed in :data:`CODEC_MODULES`, plus the user's own modules
named in ``$CLOUD3D_CODEC_MODULES``; each module defines ``CODECS: list[type[Codec]]``
(:data:`REGISTRY`, the :class:`cloud3d.registry.Registry` that games and architectures use
too). Codec modules import their optional libraries only when a codec is used, so listing
codecs never fails because one optional library is missing.

Spec syntax (one ``--codec`` option)::

    NAME[:PARAM=V1,V2,...][;OPTION=VALUE;...]
    jpeg:q=20,40,60,80
    bpg:qp=22,27,32,37;subsampling=420
    hevc-intra:q=30,50;preset=fast
    learned:checkpoint=runs/a/best.pt     (codecs whose quality is fixed by a file)
    learned:checkpoint=runs/all-0.01/best.pt,runs/all-0.04/best.pt;label=general
    learned:model=supertuxkart              (a bundled model, every quality of it)
    learned:model=supertuxkart@1,supertuxkart@4

A value holding ``,`` or ``;`` (a path, say) goes in double quotes, e.g.
``learned:checkpoint="runs/a,b/best.pt"``; see :mod:`baselines.codecs.spec_text` for the
exact rules. Without ``:PARAM=...`` the codec's default sweep is used. ``label=NAME`` (any codec) names
the curve in results and reports; by default it is the codec's own curve name (see
:meth:`Codec.curve_label`) plus the options that differ from the defaults.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from baselines.codecs.base import Codec
from baselines.codecs.spec_text import SpecText, spec_name, split_spec
from cloud3d.registry import Registry

#: the environment variable naming extra codec modules (comma-separated)
MODULES_ENV = "CLOUD3D_CODEC_MODULES"

#: modules that define ``CODECS``
CODEC_MODULES: tuple[str, ...] = (
    "baselines.codecs.pillow_codecs",
    "baselines.codecs.heif",
    "baselines.codecs.bpg",
    "baselines.codecs.vtm",
    "baselines.codecs.learned",
    "baselines.archive.codecs",
)

#: every codec class by name: :data:`CODEC_MODULES`, then the modules in ``$CLOUD3D_CODEC_MODULES``
#: (a user's own codecs, without editing this file); see :class:`cloud3d.registry.Registry`
REGISTRY: Registry[type[Codec]] = Registry(
    "codec", CODEC_MODULES, "CODECS", env_var=MODULES_ENV, what="Codec classes",
    accepts=lambda c: isinstance(c, type) and issubclass(c, Codec),
)

#: what ``label=`` accepts (it names files of kept bitstreams and report rows)
LABEL_RE = re.compile(r"[A-Za-z0-9_.+@-]{1,64}")


def all_codecs() -> dict[str, type[Codec]]:
    """Every codec class by name, in registration order (available or not).

    The built-in modules import their optional libraries lazily, so this never fails
    for a missing library; a bad module in ``$CLOUD3D_CODEC_MODULES`` is a Cloud3dError.
    """
    return REGISTRY.entries()


def get_codec_class(name: str) -> type[Codec]:
    """The codec class called ``name``; ValueError listing valid names otherwise."""
    codecs = all_codecs()
    if name not in codecs:
        raise ValueError(REGISTRY.unknown(name, codecs))
    return codecs[name]


@dataclass
class CodecSpec:
    """A parsed ``--codec`` option: codec class, constructor options, quality values."""

    cls: type[Codec]
    options: dict[str, Any] = field(default_factory=dict)
    qualities: list[float | int] = field(default_factory=list)
    label: str | None = None  # curve name chosen with ``label=``; None: the default name
    #: name of the quality parameter given (None: the codec's ``quality.name``)
    quality_param: str | None = None

    def make(self) -> Codec:
        return self.cls(**self.options)


def _coerce(value: str) -> Any:
    for conv in (int, float):
        try:
            return conv(value)
        except ValueError:
            pass
    if value.lower() in ("true", "false"):
        return value.lower() == "true"
    return value


def parse_codec_spec(spec: str) -> CodecSpec:
    """Parse ``NAME[:PARAM=V1,V2][;OPT=VAL...]`` (see module docstring).

    Raises ValueError with a message listing valid names, parameters, ranges
    and options when anything is wrong.
    """
    cls = get_codec_class(spec_name(spec))
    return build_codec_spec(cls, split_spec(spec, cls.name), spec)


def build_codec_spec(cls: type[Codec], parts: SpecText, spec: str) -> CodecSpec:
    """The :class:`CodecSpec` of ``cls`` from the parts of ``spec`` (``spec`` names it in
    messages); the checks of :func:`parse_codec_spec`."""
    options: dict[str, Any] = {}
    for key, val, quoted in parts.options:
        options[key] = val if quoted else _coerce(val)
    label = options.pop("label", None)
    if label is not None:
        label = str(label)
        if not LABEL_RE.fullmatch(label):
            raise ValueError(f"{cls.name}: label {label!r} must be 1-64 letters, digits or . _ + - @")
    qp = cls.quality
    param = None
    custom = None
    if parts.qtext and parts.has_eq:
        custom = cls.parse_qualities(parts.key, [v for v, _ in parts.values])
    if custom is not None:
        param, qualities = custom
    elif parts.qtext:
        if not parts.has_eq or parts.key != qp.name:
            raise ValueError(
                f"{cls.name}: expected '{cls.name}:{qp.name}=V1,V2,...' ({qp.meaning}, "
                f"{qp.low:g}..{qp.high:g}), got {spec!r}"
            )
        qualities = [qp.check(v if quoted else _coerce(v)) for v, quoted in parts.values]
    else:
        qualities = [qp.check(v) for v in qp.default_sweep]
    if not qualities:
        raise ValueError(f"{cls.name}: no quality values given and no default sweep")
    cls(**options)  # validates option names early
    return CodecSpec(cls=cls, options=options, qualities=qualities, label=label,
                     quality_param=param)
