"""Still-image codecs through Pillow and its plugins: png, jpeg, webp, jpeg2000, avif, jpegxl.

Every codec encodes an ``(H, W, 3) uint8`` RGB array to the complete file
bytes of its format (what would be written to disk, headers included) and
decodes them back. Chroma subsampling defaults follow each library's own
default (JPEG and AVIF 4:2:0; lossy WebP is always 4:2:0), and can be changed
with the ``subsampling`` option where the format allows it. Encoders that can
use threads are pinned to one thread by default (``threads`` option) so that
per-image timings are comparable and parallel runs do not oversubscribe.
"""

from __future__ import annotations

import importlib
import io
import math
import time
from typing import Any, ClassVar

import numpy as np
from PIL import Image, features

from baselines.codecs.base import (
    Codec,
    CodecError,
    DecodeResult,
    EncodeResult,
    QualityParam,
    check_choice,
    check_int,
    check_rgb,
)
from cloud3d.imageio import to_rgb8

_SUBSAMPLING_PIL = {"444": "4:4:4", "422": "4:2:2", "420": "4:2:0"}


class PillowCodec(Codec):
    """Shared encode/decode through ``Image.save`` / ``Image.open``, in memory (``convert_s`` is 0)."""

    #: Pillow format name for save/open
    pil_format: ClassVar[str] = ""
    #: Pillow feature that must be present (``features.check``)
    pil_feature: ClassVar[str | None] = None
    #: module that registers the format with Pillow when imported (a plugin), if any
    plugin_module: ClassVar[str | None] = None
    install_hint: ClassVar[str] = "install Pillow with this format built in (pip install -U pillow)"

    def availability(self) -> str | None:
        if self.pil_feature and not features.check(self.pil_feature):
            return f"Pillow was built without {self.pil_feature}: {self.install_hint}"
        return None

    def _library_version(self) -> str:
        import PIL

        lib = features.version(self.pil_feature) if self.pil_feature else None
        return f"Pillow {PIL.__version__}" + (f", {self.pil_feature} {lib}" if lib else "")

    def version(self) -> str:
        return " ".join(filter(None, (self._library_version(), self.options_text())))

    def provenance(self) -> dict[str, Any]:
        return {"library": self._library_version(), "save_call": f"Image.save(format={self.pil_format!r}, **{self._save_kwargs_doc()})"}

    def _save_kwargs_doc(self) -> str:
        return "{" + ", ".join(f"{k!r}: ..." for k in self.save_kwargs(self.quality.default_sweep[0], 64, 64)) + "}"

    def save_kwargs(self, quality: float | int, width: int, height: int) -> dict[str, Any]:
        """Keyword arguments for ``Image.save`` at ``quality``."""
        raise NotImplementedError

    def encode_timed(self, rgb: np.ndarray, quality: float) -> EncodeResult:
        check_rgb(rgb, self.name)
        q = self.quality.check(quality)
        if self.plugin_module:
            importlib.import_module(self.plugin_module)
        buf = io.BytesIO()
        t0 = time.perf_counter()
        img = Image.fromarray(rgb, "RGB")
        try:
            img.save(buf, format=self.pil_format, **self.save_kwargs(q, rgb.shape[1], rgb.shape[0]))
        except (OSError, ValueError, RuntimeError) as exc:
            raise CodecError(f"{self.name}: encoding a {rgb.shape[1]}x{rgb.shape[0]} image failed: {exc}") from exc
        return EncodeResult(data=buf.getvalue(), encode_s=time.perf_counter() - t0)

    def decode_timed(self, data: bytes) -> DecodeResult:
        if not data:
            raise CodecError(f"{self.name}: empty bitstream")
        if self.plugin_module:
            importlib.import_module(self.plugin_module)
        t0 = time.perf_counter()
        try:
            with Image.open(io.BytesIO(data), formats=[self.pil_format]) as img:
                img.load()
                rgb, _ = to_rgb8(img)
        except Exception as exc:  # Pillow raises OSError, SyntaxError, ValueError... on bad data
            raise CodecError(
                f"{self.name}: cannot decode {len(data)}-byte bitstream (corrupt or truncated): "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        return DecodeResult(rgb=rgb, decode_s=time.perf_counter() - t0)


class PngCodec(PillowCodec):
    name = "png"
    description = "PNG via Pillow/zlib (lossless sanity check)"
    quality = QualityParam(
        "level", "zlib compression level (0 = store, 9 = smallest file; image is always lossless)", 0, 9,
        default_sweep=(6,),
    )
    lossless = True
    pil_format = "PNG"
    pil_feature = "zlib"
    extension = ".png"

    def save_kwargs(self, quality, width, height):
        return {"compress_level": int(quality)}


class JpegCodec(PillowCodec):
    name = "jpeg"
    description = "baseline JPEG via Pillow/libjpeg (optimised Huffman tables)"
    quality = QualityParam("q", "libjpeg quality (1 = worst, 100 = best)", 1, 100, default_sweep=(20, 40, 60, 80, 90))
    options_defaults = {"subsampling": "420", "optimize": True}
    pil_format = "JPEG"
    pil_feature = "jpg"
    extension = ".jpg"

    def __init__(self, **options):
        super().__init__(**options)
        check_choice(self.name, "subsampling", str(self.options["subsampling"]), ("444", "422", "420"))
        self.options["subsampling"] = str(self.options["subsampling"])

    def save_kwargs(self, quality, width, height):
        return {
            "quality": int(quality),
            "subsampling": _SUBSAMPLING_PIL[self.options["subsampling"]],
            "optimize": bool(self.options["optimize"]),
        }


class WebpCodec(PillowCodec):
    name = "webp"
    description = "lossy WebP (VP8, always 4:2:0) via Pillow/libwebp"
    quality = QualityParam("q", "libwebp quality (0 = worst, 100 = best)", 0, 100, default_sweep=(20, 40, 60, 80, 90))
    options_defaults = {"method": 4}
    pil_format = "WEBP"
    pil_feature = "webp"
    extension = ".webp"

    def __init__(self, **options):
        super().__init__(**options)
        check_int(self.name, "method", self.options["method"], 0, 6)

    def save_kwargs(self, quality, width, height):
        return {"quality": int(quality), "method": int(self.options["method"]), "lossless": False}


class Jpeg2000Codec(PillowCodec):
    name = "jpeg2000"
    description = "JPEG 2000 (JP2, irreversible 9/7 wavelet + RGB->YCC) via Pillow/OpenJPEG"
    quality = QualityParam(
        "ratio", "compression ratio vs. the raw 24-bit image (OpenJPEG 'rates'; 1 = lossless-like)", 1, 2000,
        integer=False, higher_is_better=False, default_sweep=(10, 20, 40, 80, 160),
    )
    pil_format = "JPEG2000"
    pil_feature = "jpg_2000"
    extension = ".jp2"

    def save_kwargs(self, quality, width, height):
        # OpenJPEG needs every resolution level to be at least 1 px: cap the decomposition count.
        levels = max(1, min(6, int(math.log2(min(width, height))) + 1))
        return {
            "quality_mode": "rates",
            "quality_layers": [float(quality)],
            "irreversible": True,
            "mct": 1,
            "num_resolutions": levels,
        }


class AvifCodec(PillowCodec):
    name = "avif"
    description = "AVIF (AV1 intra) via Pillow/libavif"
    quality = QualityParam("q", "libavif quality (0 = worst, 100 = lossless-like)", 0, 100, default_sweep=(20, 40, 60, 80))
    options_defaults = {"subsampling": "420", "speed": 6, "threads": 1}
    pil_format = "AVIF"
    pil_feature = "avif"
    extension = ".avif"

    def __init__(self, **options):
        super().__init__(**options)
        self.options["subsampling"] = check_choice(self.name, "subsampling", str(self.options["subsampling"]), ("444", "422", "420"))
        check_int(self.name, "speed", self.options["speed"], 0, 10)
        check_int(self.name, "threads", self.options["threads"], 1, 256)

    def save_kwargs(self, quality, width, height):
        return {
            "quality": int(quality),
            "subsampling": _SUBSAMPLING_PIL[self.options["subsampling"]],
            "speed": int(self.options["speed"]),
            "max_threads": int(self.options["threads"]),
            "range": "full",
        }


class JpegXlCodec(PillowCodec):
    name = "jpegxl"
    description = "JPEG XL (VarDCT, XYB) via pillow-jxl-plugin/libjxl"
    quality = QualityParam("q", "libjxl quality (1 = worst, 99 = visually lossless-ish)", 1, 99, default_sweep=(30, 50, 70, 85, 95))
    options_defaults = {"effort": 7, "threads": 1}
    pil_format = "JXL"
    extension = ".jxl"

    def __init__(self, **options):
        super().__init__(**options)
        check_int(self.name, "effort", self.options["effort"], 1, 9)
        check_int(self.name, "threads", self.options["threads"], 1, 256)

    plugin_module = "pillow_jxl"  # registers the JXL format with Pillow

    def availability(self) -> str | None:
        try:
            importlib.import_module(self.plugin_module)
        except ImportError:
            return "pillow-jxl-plugin is not installed: pip install pillow-jxl-plugin"
        return None

    def _library_version(self) -> str:
        import importlib.metadata

        import PIL

        return f"Pillow {PIL.__version__}, pillow-jxl-plugin {importlib.metadata.version('pillow-jxl-plugin')}"

    def save_kwargs(self, quality, width, height):
        return {
            "quality": int(quality),
            "lossless": False,
            "effort": int(self.options["effort"]),
            "num_threads": int(self.options["threads"]),
        }


CODECS: list[type[Codec]] = [PngCodec, JpegCodec, WebpCodec, Jpeg2000Codec, AvifCodec, JpegXlCodec]
