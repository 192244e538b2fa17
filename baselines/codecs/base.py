"""The codec interface every baseline (and every learned codec) implements.

A codec turns an ``(H, W, 3) uint8`` RGB array into bytes and back. Quality is
one codec-specific parameter (JPEG ``q``, BPG ``qp``, a learned model's
checkpoint...) plus optional keyword options; its meaning and range are part of
the codec's description so the CLI can validate input and list valid values.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from cloud3d.errors import CodecError, CodecUnavailable

__all__ = [
    "Codec", "CodecError", "CodecUnavailable", "DecodeResult", "EncodeResult", "QualityParam",
]


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
    """Base class. Subclasses set the class attributes and implement encode/decode.

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

    def __init__(self, **options: Any) -> None:
        unknown = set(options) - set(self.options_defaults)
        if unknown:
            valid = ", ".join(sorted(self.options_defaults)) or "none"
            raise ValueError(f"{self.name}: unknown option(s) {', '.join(sorted(unknown))}; valid: {valid}")
        self.options: dict[str, Any] = {**self.options_defaults, **options}

    # -- availability and provenance -------------------------------------------------
    @classmethod
    def curve_label(cls, qualities: list[Any]) -> str:
        """Default name of the curve these quality values make (the codec name)."""
        return cls.name

    @classmethod
    def availability(cls) -> str | None:
        """``None`` if usable here, else a one-line reason with how to install it."""
        return None

    def version(self) -> str:
        """Version string recorded with every result (library/binary version, options)."""
        return "unknown"

    def provenance(self) -> dict[str, Any]:
        """Extra provenance (binary path and hash, command line, config hash...)."""
        return {}

    # -- the work ------------------------------------------------------------------------
    def encode(self, rgb: np.ndarray, quality: float) -> bytes:
        """Encode ``(H, W, 3) uint8`` RGB at ``quality``; returns the bitstream bytes."""
        raise NotImplementedError

    def decode(self, data: bytes) -> np.ndarray:
        """Decode a bitstream from :meth:`encode` to ``(H, W, 3) uint8`` RGB."""
        raise NotImplementedError

    def encode_timed(self, rgb: np.ndarray, quality: float) -> EncodeResult:
        """Encode and time it; codecs with separable conversion time override this."""
        import time

        t0 = time.perf_counter()
        data = self.encode(rgb, quality)
        return EncodeResult(data=data, encode_s=time.perf_counter() - t0)

    def decode_timed(self, data: bytes) -> DecodeResult:
        """Decode and time it; codecs with separable conversion time override this."""
        import time

        t0 = time.perf_counter()
        rgb = self.decode(data)
        return DecodeResult(rgb=rgb, decode_s=time.perf_counter() - t0)

    #: file extension for kept bitstreams (``--keep``)
    extension: ClassVar[str] = ".bin"
