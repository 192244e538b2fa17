"""Find codecs by name and parse ``--codec`` specs.

Codec classes live in modules listed in :data:`CODEC_MODULES`; each module
defines ``CODECS: list[type[Codec]]``. Modules are imported lazily so listing
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

Without ``:PARAM=...`` the codec's default sweep is used. ``label=NAME`` (any codec) names
the curve in results and reports; by default it is the codec's own curve name (see
:meth:`Codec.curve_label`) plus the options that differ from the defaults.
"""

from __future__ import annotations

import importlib
import os
import re
from dataclasses import dataclass, field
from typing import Any

from baselines.codecs.base import Codec
from cloud3d.errors import Cloud3dError

#: the environment variable naming extra codec modules (comma-separated)
MODULES_ENV = "CLOUD3D_CODEC_MODULES"

#: modules that define ``CODECS``
CODEC_MODULES: tuple[str, ...] = (
    "baselines.codecs.pillow_codecs",
    "baselines.codecs.heif",
    "baselines.codecs.bpg",
    "baselines.codecs.vtm",
    "baselines.codecs.learned",
)


#: what ``label=`` accepts (it names files of kept bitstreams and report rows)
LABEL_RE = re.compile(r"[A-Za-z0-9_.+@-]{1,64}")


def codec_modules() -> tuple[str, ...]:
    """:data:`CODEC_MODULES` plus any in ``$CLOUD3D_CODEC_MODULES`` (comma-separated module names).

    The variable lets a user (or a test) plug in codecs of their own without
    editing this file; those modules must define ``CODECS`` like the built-in ones.
    """
    extra = [m.strip() for m in os.environ.get(MODULES_ENV, "").split(",") if m.strip()]
    return CODEC_MODULES + tuple(dict.fromkeys(m for m in extra if m not in CODEC_MODULES))


def _plugin_codecs(modname: str) -> list[type[Codec]]:
    """The ``CODECS`` of a user's module named in ``$CLOUD3D_CODEC_MODULES``.

    Raises:
        Cloud3dError: the module cannot be imported (e.g. misspelled, or not on
            PYTHONPATH) or defines no list of Codec subclasses called ``CODECS``.
    """
    try:
        mod = importlib.import_module(modname)
    except ImportError as exc:
        raise Cloud3dError(
            f"{MODULES_ENV} names codec module {modname!r}, which cannot be imported ({exc}); "
            "check the spelling and that its folder is on PYTHONPATH"
        ) from exc
    codecs = getattr(mod, "CODECS", None)
    if not isinstance(codecs, list | tuple) or not all(isinstance(c, type) and issubclass(c, Codec) for c in codecs):
        raise Cloud3dError(f"{MODULES_ENV}: module {modname!r} defines no CODECS list of Codec classes")
    return list(codecs)


def all_codecs() -> dict[str, type[Codec]]:
    """Every codec class by name, in registration order (available or not).

    The built-in modules import their optional libraries lazily, so this never fails
    for a missing library; a bad module in ``$CLOUD3D_CODEC_MODULES`` is a Cloud3dError.
    """
    out: dict[str, type[Codec]] = {}
    for modname in codec_modules():
        if modname in CODEC_MODULES:
            classes = importlib.import_module(modname).CODECS
        else:
            classes = _plugin_codecs(modname)
        for cls in classes:
            out[cls.name] = cls
    return out


def get_codec_class(name: str) -> type[Codec]:
    """The codec class called ``name``; ValueError listing valid names otherwise."""
    codecs = all_codecs()
    if name not in codecs:
        raise ValueError(f"unknown codec {name!r}; known codecs: {', '.join(codecs)}")
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
    head, *opt_parts = spec.split(";")
    name, _, qpart = head.partition(":")
    cls = get_codec_class(name.strip())
    options: dict[str, Any] = {}
    for part in opt_parts:
        if not part.strip():
            continue
        key, eq, val = part.partition("=")
        if not eq:
            raise ValueError(f"{cls.name}: option {part!r} must look like KEY=VALUE")
        options[key.strip()] = _coerce(val.strip())
    label = options.pop("label", None)
    if label is not None:
        label = str(label)
        if not LABEL_RE.fullmatch(label):
            raise ValueError(f"{cls.name}: label {label!r} must be 1-64 letters, digits or . _ + - @")
    qp = cls.quality
    param = None
    custom = None
    if qpart:
        key, eq, vals = qpart.partition("=")
        if eq:
            custom = cls.parse_qualities(key.strip(), [v.strip() for v in vals.split(",")
                                                       if v.strip()])
    if custom is not None:
        param, qualities = custom
    elif qpart:
        if not eq or key.strip() != qp.name:
            raise ValueError(
                f"{cls.name}: expected '{cls.name}:{qp.name}=V1,V2,...' ({qp.meaning}, "
                f"{qp.low:g}..{qp.high:g}), got {spec!r}"
            )
        qualities = [qp.check(_coerce(v.strip())) for v in vals.split(",") if v.strip()]
    else:
        qualities = [qp.check(v) for v in qp.default_sweep]
    if not qualities:
        raise ValueError(f"{cls.name}: no quality values given and no default sweep")
    cls(**options)  # validates option names early
    return CodecSpec(cls=cls, options=options, qualities=qualities, label=label,
                     quality_param=param)
