"""BPG through the real ``bpgenc`` / ``bpgdec`` programs (Fabrice Bellard's libbpg).

Defaults follow the paper's anchor: 4:4:4 chroma, 8-bit, x265 encoder,
i.e. ``bpgenc -f 444 -b 8 -e x265 -m 8 -q QP -o out.bpg in.png``; QP 0..51 (lower
is better). bpgenc converts the PNG to Y'CbCr itself (its default ``-c ycc``:
BT.601, full range). Decoding runs ``bpgdec -o out.png in.bpg`` (8-bit PNG).

Binaries are found in the ``bpg_dir`` option, then ``$CLOUD3D_BPG_DIR``, then
PATH. libbpg is not packaged by Debian or PyPI: build it from
https://bellard.org/bpg/ (``make`` needs libpng, libjpeg, cmake and yasm for
x265) and put ``bpgenc``/``bpgdec`` on PATH or point ``CLOUD3D_BPG_DIR`` at them.

Timing: ``encode_s``/``decode_s`` cover the external process only; writing the
input PNG and reading the output (temp files) is ``convert_s``.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from baselines.codecs.base import (
    Codec,
    CodecError,
    CodecUnavailable,
    DecodeResult,
    EncodeResult,
    QualityParam,
)
from baselines.codecs.external import binary_sha256, dir_aware_availability, find_binary, run_tool
from baselines.codecs.pillow_codecs import _check_choice, _check_int, _check_rgb
from cloud3d.imageio import encode_png, read_image_rgb

ENV_VAR = "CLOUD3D_BPG_DIR"
INSTALL_HINT = (
    "build libbpg from https://bellard.org/bpg/ and put bpgenc/bpgdec on PATH, "
    f"set {ENV_VAR}=FOLDER, or pass the codec option bpg_dir=FOLDER"
)


class BpgCodec(Codec):
    name = "bpg"
    description = "BPG (HEVC intra) via the real bpgenc/bpgdec; 4:4:4 8-bit x265 as in the paper"
    quality = QualityParam("qp", "HEVC quantiser (0 = best, 51 = worst)", 0, 51, higher_is_better=False,
                           default_sweep=(22, 27, 32, 37, 42))
    options_defaults = {"subsampling": "444", "bit_depth": 8, "encoder": "x265", "level": 8,
                        "bpg_dir": "", "timeout": 600}
    extension = ".bpg"

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.options["subsampling"] = _check_choice(self.name, "subsampling", str(self.options["subsampling"]), ("444", "422", "420"))
        _check_int(self.name, "bit_depth", self.options["bit_depth"], 8, 12)
        _check_choice(self.name, "encoder", self.options["encoder"], ("x265", "jctvc"))
        _check_int(self.name, "level", self.options["level"], 1, 9)

    # -- discovery -------------------------------------------------------------------------
    @staticmethod
    def find(name: str, folder: str | None = None) -> Path | None:
        return find_binary([name], folder or None, ENV_VAR)

    def _availability(cls, bpg_dir: str | None = None) -> str | None:
        """None when bpgenc and bpgdec are found, else why and how to install them."""
        missing = [n for n in ("bpgenc", "bpgdec") if cls.find(n, bpg_dir) is None]
        if missing:
            where = f"{bpg_dir}, " if bpg_dir else ""
            return f"{' and '.join(missing)} not found (looked in {where}${ENV_VAR}, PATH): {INSTALL_HINT}"
        return None

    availability = dir_aware_availability(_availability, "bpg_dir")  # type: ignore[assignment]

    def _binaries(self) -> tuple[Path, Path]:
        enc, dec = self.find("bpgenc", self.options["bpg_dir"]), self.find("bpgdec", self.options["bpg_dir"])
        if enc is None or dec is None:
            raise CodecUnavailable(self.availability() or "bpg binaries missing")
        return enc, dec

    # -- command lines ---------------------------------------------------------------------
    def encode_args(self, bpgenc: str | Path, qp: int | str, src: str | Path, out: str | Path) -> list[str]:
        """Argument list for one encode (``qp`` may be a placeholder such as ``"{qp}"`` for provenance)."""
        o = self.options
        return [str(bpgenc), "-f", str(o["subsampling"]), "-b", str(o["bit_depth"]), "-e", str(o["encoder"]),
                "-m", str(o["level"]), "-q", str(qp), "-o", str(out), str(src)]

    @staticmethod
    def decode_args(bpgdec: str | Path, src: str | Path, out: str | Path) -> list[str]:
        """Argument list for one decode (8-bit PNG output)."""
        return [str(bpgdec), "-o", str(out), str(src)]

    def version(self) -> str:
        enc, _ = self._binaries()
        opts = ",".join(f"{k}={v}" for k, v in sorted(self.options.items()) if k not in ("bpg_dir", "timeout"))
        return f"{bpg_version_text(enc)} [{opts}]"

    def provenance(self) -> dict[str, Any]:
        enc, dec = self._binaries()
        return {
            "bpgenc": str(enc), "bpgenc_sha256": binary_sha256(enc),
            "bpgdec": str(dec), "bpgdec_sha256": binary_sha256(dec),
            "encode_cmd": " ".join(self.encode_args(enc, "{qp}", "in.png", "out.bpg")),
            "decode_cmd": " ".join(self.decode_args(dec, "in.bpg", "out.png")),
        }

    # -- the work --------------------------------------------------------------------------
    def encode_timed(self, rgb: np.ndarray, quality: float) -> EncodeResult:
        _check_rgb(rgb, self.name)
        qp = self.quality.check(quality)
        enc, _ = self._binaries()
        with tempfile.TemporaryDirectory(prefix="cloud3d-bpg-") as tmp:
            t0 = time.perf_counter()
            src, out = Path(tmp) / "in.png", Path(tmp) / "out.bpg"
            src.write_bytes(encode_png(rgb, level=1))
            t1 = time.perf_counter()
            run_tool(self.encode_args(enc, int(qp), src, out), self.options["timeout"], f"{self.name} encode")
            t2 = time.perf_counter()
            if not out.is_file() or out.stat().st_size == 0:
                raise CodecError(f"{self.name} encode: bpgenc wrote no output")
            data = out.read_bytes()
            t3 = time.perf_counter()
        return EncodeResult(data=data, encode_s=t2 - t1, convert_s=(t1 - t0) + (t3 - t2))

    def decode_timed(self, data: bytes) -> DecodeResult:
        try:
            bpg_header_info(data)
        except ValueError as exc:
            raise CodecError(f"{self.name}: cannot decode {len(data)}-byte bitstream: {exc}") from exc
        _, dec = self._binaries()
        with tempfile.TemporaryDirectory(prefix="cloud3d-bpg-") as tmp:
            t0 = time.perf_counter()
            src, out = Path(tmp) / "in.bpg", Path(tmp) / "out.png"
            src.write_bytes(data)
            t1 = time.perf_counter()
            run_tool(self.decode_args(dec, src, out), self.options["timeout"], f"{self.name} decode")
            t2 = time.perf_counter()
            if not out.is_file():
                raise CodecError(f"{self.name} decode: bpgdec wrote no image (corrupt or truncated bitstream?)")
            try:
                rgb, _ = read_image_rgb(out)
            except Exception as exc:
                raise CodecError(f"{self.name} decode: cannot read bpgdec output: {exc}") from exc
            t3 = time.perf_counter()
        return DecodeResult(rgb=rgb, decode_s=t2 - t1, convert_s=(t1 - t0) + (t3 - t2))

    def encode(self, rgb: np.ndarray, quality: float) -> bytes:
        return self.encode_timed(rgb, quality).data

    def decode(self, data: bytes) -> np.ndarray:
        return self.decode_timed(data).rgb


BPG_MAGIC = b"BPG\xfb"


def _ue7(data: bytes, pos: int) -> tuple[int, int]:
    """BPG's ``ue7(32)``: big-endian base-128 digits, high bit set on all but the last byte."""
    value = 0
    for i in range(5):
        if pos + i >= len(data):
            raise ValueError("header ends early (truncated?)")
        byte = data[pos + i]
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            return value, pos + i + 1
    raise ValueError("invalid ue7 number in header")


def bpg_header_info(data: bytes) -> dict[str, int]:
    """Picture size and format from a BPG file header (bellard.org/bpg/bpg_spec.txt).

    Returns ``width``, ``height``, ``pixel_format`` (0 = gray, 1 = 4:2:0, 2 = 4:2:2,
    3 = 4:4:4, 4/5 = 4:2:0/4:2:2 with MPEG-2 chroma siting), ``bit_depth`` and
    ``picture_data_length`` (0 = up to the end of the file, which is what bpgenc writes;
    then a stream cut inside its picture data cannot be told from a whole one, and bpgdec
    decodes what is there). Raises ValueError for data that is not a BPG file or whose
    header is cut short or claims more picture data than the file holds.
    """
    if len(data) < 6 or data[:4] != BPG_MAGIC:
        raise ValueError("not a BPG file (bad magic)")
    pixel_format, bit_depth = data[4] >> 5, (data[4] & 0x0F) + 8
    width, pos = _ue7(data, 6)
    height, pos = _ue7(data, pos)
    length, pos = _ue7(data, pos)
    if pixel_format > 5 or bit_depth > 14 or width == 0 or height == 0:
        raise ValueError(f"invalid header (format {pixel_format}, {bit_depth}-bit, {width}x{height})")
    if pos >= len(data) or (length and pos + length > len(data)):
        raise ValueError("picture data missing or cut short (truncated file?)")
    return {"width": width, "height": height, "pixel_format": pixel_format, "bit_depth": bit_depth,
            "picture_data_length": length}


def bpg_version_text(bpgenc: str | Path) -> str:
    """``"BPG Image Encoder version X"`` from ``bpgenc -h`` (exits non-zero), plus the sha256 prefix."""
    try:
        proc = subprocess.run([str(bpgenc), "-h"], capture_output=True, timeout=30, check=False)
        text = (proc.stdout + proc.stderr).decode("utf-8", "replace")
    except (OSError, subprocess.TimeoutExpired) as exc:
        text = f"(bpgenc -h failed: {exc})"
    m = re.search(r"BPG Image Encoder version\s+(\S+)", text)
    ver = f"bpgenc {m.group(1)}" if m else "bpgenc (version unknown)"
    return f"{ver} sha256:{binary_sha256(bpgenc)[:12]}"


CODECS: list[type[Codec]] = [BpgCodec]
