"""Lossless image codecs for archives, and how an archive's ``--codec SPEC`` is resolved.

The codecs (``CODECS``, same protocol as the modules in
:data:`baselines.codecs.registry.CODEC_MODULES`) all restore every pixel exactly:

* ``webp-lossless:q=75``: libwebp's lossless mode (VP8L) through Pillow; ``q`` is the
  encoder's effort, 0 (fastest) .. 100 (smallest), as ``cwebp -lossless -q``; option ``method``
  0..6 (default 4, like cwebp).
* ``jpegxl-lossless:effort=7``: libjxl modular lossless (distance 0) through
  pillow-jxl-plugin; ``effort`` 1..9 (libjxl's default 7); option ``threads`` (default 1).
* ``png-opt:level=2``: an optimised PNG written by oxipng (pyoxipng) straight from the pixels;
  ``level`` is oxipng's preset 0..6 (its default 2). oxipng runs its filter trials on all
  cores (a rayon pool; ``RAYON_NUM_THREADS`` limits it).

An archive may also use ``raw`` (the original files stored byte for byte, like tar) or any
codec of ``cloud3d bench`` with one quality value, e.g. ``jpeg:q=90``, ``bpg:qp=27`` or
``learned:checkpoint=runs/a/best.pt;coder=lzma``. :func:`resolve_codec` parses a spec with the
registry's own parser (:func:`baselines.codecs.registry.parse_codec_spec`); this module is
one of the registry's built-in codec modules, so ``cloud3d bench`` and ``cloud3d codecs``
know these codecs too.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from baselines.codecs.base import Codec, CodecError, EncodeResult, QualityParam, check_int
from baselines.codecs.pillow_codecs import JpegXlCodec, PillowCodec, PngCodec, WebpCodec
from cloud3d.errors import Cloud3dError, CodecUnavailable

#: this module, as the registry names codec modules
MODULE = __name__
#: the spec that stores the original files unchanged
RAW = "raw"


class WebpLosslessCodec(WebpCodec):
    name = "webp-lossless"
    description = "lossless WebP (VP8L) via Pillow/libwebp"
    quality = QualityParam(
        "q", "libwebp lossless effort (0 = fastest, 100 = smallest file; pixels always exact)",
        0, 100, default_sweep=(75,),
    )
    lossless = True

    def save_kwargs(self, quality, width, height):
        return {"lossless": True, "quality": int(quality), "method": int(self.options["method"]),
                "exact": True}


class JpegXlLosslessCodec(JpegXlCodec):
    name = "jpegxl-lossless"
    description = "lossless JPEG XL (modular, distance 0) via pillow-jxl-plugin/libjxl"
    quality = QualityParam("effort", "libjxl effort (1 = fastest, 9 = smallest file)", 1, 9,
                           default_sweep=(7,))
    options_defaults = {"threads": 1}
    lossless = True

    def __init__(self, **options: Any) -> None:
        PillowCodec.__init__(self, **options)  # JpegXlCodec's own checks expect its effort option
        check_int(self.name, "threads", self.options["threads"], 1, 256)

    def save_kwargs(self, quality, width, height):
        return {"lossless": True, "effort": int(quality), "num_threads": int(self.options["threads"])}


class PngOptCodec(PngCodec):
    name = "png-opt"
    description = "optimised PNG written by oxipng (pyoxipng) from the pixels"
    quality = QualityParam("level", "oxipng optimisation preset (0 = fastest, 6 = smallest file)",
                           0, 6, default_sweep=(2,))
    lossless = True

    def availability(self) -> str | None:
        try:
            import oxipng  # noqa: F401
        except ImportError:
            return "pyoxipng is not installed: pip install pyoxipng"
        return None

    def _library_version(self) -> str:
        import importlib.metadata

        return f"pyoxipng {importlib.metadata.version('pyoxipng')}"

    def provenance(self) -> dict[str, Any]:
        return {"library": self._library_version(),
                "call": "oxipng.RawImage(rgb, w, h, color_type=rgb).create_optimized_png(level=...)"}

    def encode_timed(self, rgb: np.ndarray, quality: float) -> EncodeResult:
        import oxipng

        if not (isinstance(rgb, np.ndarray) and rgb.dtype == np.uint8 and rgb.ndim == 3
                and rgb.shape[2] == 3):
            raise CodecError(f"{self.name}: expected an (H, W, 3) uint8 RGB array, got {getattr(rgb, 'shape', None)}")
        level = self.quality.check(quality)
        h, w = rgb.shape[:2]
        t0 = time.perf_counter()
        try:
            raw = oxipng.RawImage(np.ascontiguousarray(rgb).tobytes(), w, h,
                                  color_type=oxipng.ColorType.rgb())
            data = raw.create_optimized_png(level=int(level))
        except (oxipng.PngError, ValueError) as exc:
            raise CodecError(f"{self.name}: encoding a {w}x{h} image failed: {exc}") from exc
        return EncodeResult(data=bytes(data), encode_s=time.perf_counter() - t0)


CODECS: list[type[Codec]] = [WebpLosslessCodec, JpegXlLosslessCodec, PngOptCodec]


@dataclass
class ArchiveCodec:
    """The codec of one archive: ``codec`` is ``None`` for ``raw`` (files stored unchanged).

    ``quality`` is the one quality value (a number, or a checkpoint path for learned codecs);
    ``extension`` names the members (``.png`` for ``raw``).
    """

    spec: str
    codec: Codec | None
    quality: Any

    @property
    def name(self) -> str:
        return RAW if self.codec is None else self.codec.name

    @property
    def lossless(self) -> bool:
        return self.codec is None or bool(self.codec.lossless)

    @property
    def extension(self) -> str:
        return ".png" if self.codec is None else self.codec.extension

    def restores_as_is(self, member: bytes) -> bool:
        """True when ``member`` may be written out unchanged as the restored file: ``raw``, or
        a lossless codec's bitstream that is itself an 8-bit RGB PNG (oxipng may write a
        palette PNG, which is re-encoded so that restored datasets stay 8-bit RGB)."""
        if self.codec is None:
            return True
        if not (self.lossless and self.codec.extension == ".png"):
            return False
        from cloud3d.imageio import parse_png_header

        try:
            return parse_png_header(member[:33]).is_rgb8
        except ValueError:
            return False

    def version(self) -> str:
        return "stored unchanged" if self.codec is None else self.codec.version()

    def describe(self) -> dict[str, Any]:
        """What the manifest records about the codec."""
        return {
            "spec": self.spec, "name": self.name, "quality": self.quality,
            "options": {} if self.codec is None else dict(self.codec.options),
            "version": self.version(), "lossless": self.lossless, "extension": self.extension,
        }


def resolve_codec(spec: str, quality_override: Any = None) -> ArchiveCodec:
    """Parse an archive's ``--codec`` spec (see the module docstring) and check availability.

    ``quality_override`` replaces the spec's quality (``unarchive --checkpoint`` uses it for a
    checkpoint that moved). Raises :class:`Cloud3dError` (or :class:`CodecUnavailable`) with
    the reason.
    """
    spec = spec.strip()
    if spec == RAW:
        return ArchiveCodec(spec=RAW, codec=None, quality=None)
    from baselines.codecs.registry import build_codec_spec, get_codec_class
    from baselines.codecs.spec_text import spec_name, split_spec

    try:
        cls = get_codec_class(spec_name(spec))
        parts = split_spec(spec, cls.name)
        if quality_override is not None:  # same codec and options, another quality value
            parts = parts.with_values(cls.quality.name, [str(quality_override)])
            spec = parts.text()
        parsed = build_codec_spec(cls, parts, spec)
    except ValueError as exc:
        raise Cloud3dError(f"--codec {spec!r}: {exc}") from None
    if len(parsed.qualities) != 1:
        q = parsed.cls.quality
        raise Cloud3dError(
            f"--codec {spec!r}: an archive is made at one quality, got {len(parsed.qualities)} "
            f"({q.name}={','.join(map(str, parsed.qualities))}); give one, e.g. "
            f"'{parsed.cls.name}:{q.name}={parsed.qualities[-1]}'"
        )
    codec = parsed.make()
    reason = codec.availability()  # per instance: honours bpg_dir/vtm_dir options
    if reason:
        raise CodecUnavailable(f"codec {parsed.cls.name} is not available here: {reason}")
    return ArchiveCodec(spec=spec, codec=codec, quality=parsed.qualities[0])


@functools.lru_cache(maxsize=8)
def cached_codec(spec: str, quality_override: Any = None) -> ArchiveCodec:
    """:func:`resolve_codec`, once per process: worker processes get the spec, not the codec,
    so a learned codec loads its weights once per worker rather than once per file."""
    return resolve_codec(spec, quality_override)
