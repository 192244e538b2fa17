"""The codec interface every baseline (and every learned codec) implements.

A codec turns an ``(H, W, 3) uint8`` RGB array into bytes and back. Quality is
one codec-specific parameter (JPEG ``q``, BPG ``qp``, a learned model's
checkpoint...) plus optional keyword options; its meaning and range are part of
the codec's description so the CLI can validate input and list valid values.

One primitive: a codec implements :meth:`Codec.encode_timed` and
:meth:`Codec.decode_timed` (the bytes or pixels plus how long the codec proper
and the conversions around it took); :meth:`Codec.encode` and
:meth:`Codec.decode` derive from them. Codecs that run external programs
derive from :class:`baselines.codecs.external.ExternalCodec`, which does the
timing, the temporary files and the provenance for them.

The option checks every codec uses (:func:`check_choice`, :func:`check_int`,
:func:`check_number`, :func:`check_rgb`) live here too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from cloud3d.errors import CodecError, CodecUnavailable

__all__ = [
    "Codec", "CodecError", "CodecUnavailable", "DecodeResult", "EncodeResult", "QualityParam",
    "check_choice", "check_int", "check_number", "check_rgb",
]


def check_choice(codec: str, key: str, value: Any, valid: tuple) -> Any:
    """``value`` if it is one of ``valid``, else ValueError naming the codec, option and choices."""
    if value not in valid:
        raise ValueError(f"{codec}: option {key}={value!r} invalid; valid: {', '.join(map(str, valid))}")
    return value


def check_int(codec: str, key: str, value: Any, low: int, high: int) -> int:
    """``value`` as an int in ``low..high`` (``8.0`` passes, ``8.5`` and ``"x"`` do not), else ValueError."""
    try:
        v = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"{codec}: option {key} must be an integer {low}..{high}, got {value!r}") from None
    if not low <= v <= high or v != value:
        raise ValueError(f"{codec}: option {key} must be an integer {low}..{high}, got {value!r}")
    return v


def check_number(codec: str, key: str, value: Any, low: float, high: float) -> float:
    """``value`` as a float in ``low < value <= high`` (e.g. a timeout in seconds), else ValueError."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        v = float("nan")
    if isinstance(value, bool) or not low < v <= high:
        raise ValueError(f"{codec}: option {key} must be a number in ({low:g}, {high:g}], got {value!r}")
    return v


def check_rgb(rgb: np.ndarray, codec: str) -> None:
    """CodecError unless ``rgb`` is an ``(H, W, 3) uint8`` array with H, W >= 1."""
    if not (isinstance(rgb, np.ndarray) and rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3
            and rgb.shape[0] > 0 and rgb.shape[1] > 0):
        shape = getattr(rgb, "shape", None)
        raise CodecError(f"{codec}: expected an (H, W, 3) uint8 RGB array, got {shape}")


@dataclass(frozen=True)
class QualityParam:
    """The codec's quality knob: name (as in ``jpeg:q=...``), meaning and valid range."""

    name: str
    meaning: str
    low: float
    high: float
    integer: bool = True
    higher_is_better: bool = True
    default_sweep: tuple[float, ...] = ()

    def check(self, value: float) -> float | int:
        """Validate ``value``; returns it as int when the parameter is integer."""
        if self.integer and float(value) != int(float(value)):
            raise ValueError(f"{self.name} must be an integer, got {value}")
        v = int(float(value)) if self.integer else float(value)
        if not (self.low <= v <= self.high):
            raise ValueError(f"{self.name}={v} out of range {self.low:g}..{self.high:g} ({self.meaning})")
        return v


@dataclass
class EncodeResult:
    """What :meth:`Codec.encode_timed` returns.

    ``data`` is the exact bitstream that would be written to disk; bpp uses
    its length. Times are wall seconds (``time.perf_counter``):
    ``encode_s`` covers the codec proper (external process included),
    ``convert_s`` colour conversion / file I/O around it that a real system
    might avoid. ``details`` holds codec-specific extras (e.g. network vs
    entropy-coding time for learned codecs).
    """

    data: bytes
    encode_s: float
    convert_s: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class DecodeResult:
    """Reconstruction ``(H, W, 3) uint8`` with wall times as in :class:`EncodeResult`."""

    rgb: np.ndarray
    decode_s: float
    convert_s: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)


class Codec:
    """Base class. Subclasses set the class attributes and implement
    :meth:`encode_timed` / :meth:`decode_timed`.

    Instances are created with keyword options (``Codec(**options)``) and must
    be picklable (they travel to worker processes and Dask workers), so keep
    heavy state lazy.
    """

    #: short kebab-case name used on the command line, e.g. ``"jpeg"``
    name: ClassVar[str] = ""
    #: one-line description
    description: ClassVar[str] = ""
    #: the quality parameter
    quality: ClassVar[QualityParam]
    #: allowed keyword options and their defaults, e.g. ``{"subsampling": "444"}``
    options_defaults: ClassVar[dict[str, Any]] = {}
    #: True if decode(encode(x)) == x for every quality
    lossless: ClassVar[bool] = False
    #: file extension for kept bitstreams (``--keep``)
    extension: ClassVar[str] = ".bin"

    def __init__(self, **options: Any) -> None:
        unknown = set(options) - set(self.options_defaults)
        if unknown:
            valid = ", ".join(sorted(self.options_defaults)) or "none"
            raise ValueError(f"{self.name}: unknown option(s) {', '.join(sorted(unknown))}; valid: {valid}")
        self.options: dict[str, Any] = {**self.options_defaults, **options}

    # -- quality values ------------------------------------------------------------------
    @classmethod
    def parse_qualities(cls, key: str, values: list[str]) -> tuple[str, list[Any]] | None:
        """``NAME:KEY=V1,V2`` read the codec's own way: ``(parameter name, quality values)``,
        or None for the standard grammar (``KEY`` is :attr:`quality`'s name, values checked
        by it). Raises ValueError with the reason for values it refuses."""
        return None

    def quality_key(self, quality: Any) -> dict[str, Any]:
        """Extra result-key fields identifying what ``quality`` stands for (e.g. the hash of
        the weights a name refers to), so that a changed model is benchmarked again."""
        return {}

    # -- availability and provenance -------------------------------------------------
    @classmethod
    def curve_label(cls, qualities: list[Any]) -> str:
        """Default name of the curve these quality values make (the codec name)."""
        return cls.name

    def availability(self) -> str | None:
        """``None`` if this codec, with these options (e.g. a binary folder), can run here;
        else a one-line reason with how to install what is missing."""
        return None

    def version(self) -> str:
        """Version string recorded with every result (library/binary version, options).

        It is part of a result's resume key, so it names everything that changes the
        bitstream and nothing else (not paths or timeouts).
        """
        return "unknown"

    def provenance(self) -> dict[str, Any]:
        """Extra provenance (binary path and hash, command line, config hash...)."""
        return {}

    def options_text(self, exclude: tuple[str, ...] = ()) -> str:
        """``"[k=v,...]"`` of the options in name order (``""`` when there are none left)."""
        opts = ",".join(f"{k}={v}" for k, v in sorted(self.options.items()) if k not in exclude)
        return f"[{opts}]" if opts else ""

    # -- the work: the one primitive ----------------------------------------------------
    def encode_timed(self, rgb: np.ndarray, quality: Any) -> EncodeResult:
        """Encode ``(H, W, 3) uint8`` RGB at ``quality``; the bitstream and wall times."""
        raise NotImplementedError

    def decode_timed(self, data: bytes) -> DecodeResult:
        """Decode a bitstream from :meth:`encode_timed`; ``(H, W, 3) uint8`` RGB and wall times."""
        raise NotImplementedError

    # -- derived -----------------------------------------------------------------------
    def encode(self, rgb: np.ndarray, quality: Any) -> bytes:
        """The bitstream bytes of :meth:`encode_timed`."""
        return self.encode_timed(rgb, quality).data

    def decode(self, data: bytes) -> np.ndarray:
        """The ``(H, W, 3) uint8`` reconstruction of :meth:`decode_timed`."""
        return self.decode_timed(data).rgb
