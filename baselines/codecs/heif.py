"""HEVC intra coding in a HEIF container via pillow-heif (libheif + x265 encoder, libde265 decoder).

This is the same coding tool BPG uses (one x265 intra frame), installable
with pip alone. Defaults: 4:4:4 chroma (as the paper's BPG anchor), 8-bit,
x265 preset ``medium``, one encoder thread (``threads=1``: no x265 thread
pool, which also disables wavefront parallel processing and changes the
bitstream by about 0.1%; ``threads=0`` is x265's default of all cores, ``N``
a pool of N threads). The quality knob is libheif's 0..100 quality, which
the x265 plugin maps to a constant rate factor (higher = better). The
bitstream is the complete ``.heic`` file (container overhead included).
"""

from __future__ import annotations

import io
import time
from typing import Any

import numpy as np

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

X265_PRESETS = (
    "ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow", "placebo",
)


def _pillow_heif():
    import pillow_heif

    return pillow_heif


class HevcIntraCodec(Codec):
    name = "hevc-intra"
    description = "HEVC intra (x265) in HEIF via pillow-heif; 4:4:4 by default like BPG in the paper"
    quality = QualityParam("q", "libheif quality (0 = worst, 100 = best)", 0, 100, default_sweep=(20, 40, 60, 80, 90))
    options_defaults = {"subsampling": "444", "preset": "medium", "tune": "", "threads": 1}
    extension = ".heic"

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.options["subsampling"] = check_choice(self.name, "subsampling", str(self.options["subsampling"]), ("444", "422", "420"))
        check_choice(self.name, "preset", self.options["preset"], X265_PRESETS)
        check_choice(self.name, "tune", self.options["tune"], ("", "psnr", "ssim", "grain", "fastdecode"))
        check_int(self.name, "threads", self.options["threads"], 0, 256)

    def availability(self) -> str | None:
        try:
            ph = _pillow_heif()
        except ImportError:
            return "pillow-heif is not installed: pip install pillow-heif"
        info = ph.libheif_info()
        if "x265" not in info.get("encoders", {}):
            return "pillow-heif was built without the x265 HEVC encoder: pip install --force-reinstall pillow-heif"
        return None

    def _libs(self) -> str:
        ph = _pillow_heif()
        info = ph.libheif_info()
        dec = ", ".join(info.get("decoders", {}).values())
        return f"pillow-heif {ph.__version__}, libheif {info.get('libheif')}, {info['encoders'].get('x265')}, {dec}"

    def version(self) -> str:
        return f"{self._libs()} {self.options_text()}"

    def _enc_params(self) -> dict[str, str]:
        p = {"preset": str(self.options["preset"])}
        if self.options["tune"]:
            p["tune"] = str(self.options["tune"])
        threads = int(self.options["threads"])
        if threads == 1:  # no x265 thread pool: one thread (this also turns wavefront coding off)
            p.update({"x265:pools": "none", "x265:frame-threads": "1"})
        elif threads > 1:
            p["x265:pools"] = str(threads)
        return p

    def provenance(self) -> dict[str, Any]:
        return {
            "library": self._libs(),
            "save_call": (
                f"pillow_heif.from_bytes('RGB', size, data).save(buf, quality=Q, "
                f"chroma={self.options['subsampling']}, enc_params={self._enc_params()})"
            ),
        }

    def encode_timed(self, rgb: np.ndarray, quality: float) -> EncodeResult:
        check_rgb(rgb, self.name)
        q = self.quality.check(quality)
        ph = _pillow_heif()
        h, w = rgb.shape[:2]
        buf = io.BytesIO()
        t0 = time.perf_counter()
        try:
            heif = ph.from_bytes(mode="RGB", size=(w, h), data=np.ascontiguousarray(rgb).tobytes())
            heif.save(buf, quality=int(q), chroma=int(self.options["subsampling"]), enc_params=self._enc_params())
        except (OSError, ValueError, RuntimeError) as exc:
            raise CodecError(f"{self.name}: encoding a {w}x{h} image failed: {exc}") from exc
        return EncodeResult(data=buf.getvalue(), encode_s=time.perf_counter() - t0)

    def decode_timed(self, data: bytes) -> DecodeResult:
        if not data:
            raise CodecError(f"{self.name}: empty bitstream")
        ph = _pillow_heif()
        t0 = time.perf_counter()
        try:
            heif = ph.open_heif(io.BytesIO(data), convert_hdr_to_8bit=True)
            img = heif[0] if len(heif) else heif
            arr = np.asarray(img)
            if arr.ndim != 3 or arr.shape[2] < 3:
                raise ValueError(f"unexpected decoded shape {arr.shape} (mode {img.mode})")
            rgb = np.ascontiguousarray(arr[:, :, :3], dtype=np.uint8)
        except Exception as exc:  # libheif raises ValueError/RuntimeError/OSError on bad data
            raise CodecError(
                f"{self.name}: cannot decode {len(data)}-byte bitstream (corrupt or truncated): "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        return DecodeResult(rgb=rgb, decode_s=time.perf_counter() - t0)


CODECS: list[type[Codec]] = [HevcIntraCodec]
