"""BPG through the real ``bpgenc`` / ``bpgdec`` programs (Fabrice Bellard's libbpg).

Defaults follow the paper's anchor: 4:4:4 chroma, 8-bit, x265 encoder,
i.e. ``bpgenc -f 444 -b 8 -e x265 -m 8 -q QP -o out.bpg in.png``; QP 0..51 (lower
is better). bpgenc converts the PNG to Y'CbCr itself (its default ``-c ycc``:
BT.601, full range). Decoding runs ``bpgdec -o out.png in.bpg`` (8-bit PNG).

Binaries are found in the ``bpg_dir`` option, then ``$CLOUD3D_BPG_DIR``, then
PATH. libbpg is not packaged by Debian or PyPI: ``cloud3d codecs build bpg
--prefix DIR`` builds it (:mod:`baselines.codecs.build`).

Everything but the command lines and the header check (temp files, timing,
provenance) is :class:`~baselines.codecs.external.ExternalCodec`'s: ``encode_s``/
``decode_s`` cover the external process only; writing the input PNG and reading
the output is ``convert_s``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from baselines.codecs.base import CodecError, QualityParam, check_choice, check_int
from baselines.codecs.external import ExternalCodec, binary_sha256, program_output
from cloud3d.imageio import encode_png, read_image_rgb

ENV_VAR = "CLOUD3D_BPG_DIR"
INSTALL_HINT = (
    "build libbpg with `cloud3d codecs build bpg --prefix DIR` (or from https://bellard.org/bpg/) "
    f"and put bpgenc/bpgdec on PATH, set {ENV_VAR}=DIR, or pass the codec option bpg_dir=DIR"
)


class BpgCodec(ExternalCodec):
    name = "bpg"
    description = "BPG (HEVC intra) via the real bpgenc/bpgdec; 4:4:4 8-bit x265 as in the paper"
    quality = QualityParam("qp", "HEVC quantiser (0 = best, 51 = worst)", 0, 51, higher_is_better=False,
                           default_sweep=(22, 27, 32, 37, 42))
    options_defaults = {"subsampling": "444", "bit_depth": 8, "encoder": "x265", "level": 8,
                        "bpg_dir": "", "timeout": 600}
    extension = ".bpg"
    programs = {"bpgenc": ("bpgenc",), "bpgdec": ("bpgdec",)}
    dir_option, env_var, install_hint = "bpg_dir", ENV_VAR, INSTALL_HINT

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        o = self.options
        o["subsampling"] = check_choice(self.name, "subsampling", str(o["subsampling"]), ("444", "422", "420"))
        check_int(self.name, "bit_depth", o["bit_depth"], 8, 12)
        check_choice(self.name, "encoder", o["encoder"], ("x265", "jctvc"))
        check_int(self.name, "level", o["level"], 1, 9)

    def version_text(self, files: dict[str, Path]) -> str:
        return bpg_version_text(files["bpgenc"])

    # -- command lines ---------------------------------------------------------------------
    def encode_args(self, files: dict[str, Path], src: str | Path, bitstream: str | Path,
                    qp: int | str, width: int | str, height: int | str) -> list[str]:
        """``bpgenc -f S -b B -e E -m L -q QP -o OUT IN`` (the picture size comes from the PNG)."""
        o = self.options
        return [str(files["bpgenc"]), "-f", str(o["subsampling"]), "-b", str(o["bit_depth"]),
                "-e", str(o["encoder"]), "-m", str(o["level"]), "-q", str(qp), "-o", str(bitstream), str(src)]

    def decode_args(self, files: dict[str, Path], bitstream: str | Path, out: str | Path) -> list[str]:
        """``bpgdec -o OUT.png IN.bpg`` (8-bit PNG output)."""
        return [str(files["bpgdec"]), "-o", str(out), str(bitstream)]

    # -- conversions -----------------------------------------------------------------------
    def write_input(self, rgb: np.ndarray, path: Path) -> None:
        path.write_bytes(encode_png(rgb, level=1))

    def check_bitstream(self, data: bytes) -> dict[str, Any]:
        return bpg_header_info(data)

    def read_output(self, path: Path, info: dict[str, Any]) -> np.ndarray:
        try:
            rgb, _ = read_image_rgb(path)
        except Exception as exc:  # noqa: BLE001 - any unreadable output is the decoder's failure
            raise CodecError(f"{self.name} decode: cannot read bpgdec output: {exc}") from exc
        if rgb.shape[:2] != (info["height"], info["width"]):
            raise CodecError(f"{self.name} decode: bpgdec wrote {rgb.shape[1]}x{rgb.shape[0]}, the header says "
                             f"{info['width']}x{info['height']}")
        return rgb


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
    """``"bpgenc X sha256:<12 hex>"``, X from ``bpgenc -h`` (which exits non-zero)."""
    m = re.search(r"BPG Image Encoder version\s+(\S+)", program_output(bpgenc, "-h"))
    ver = f"bpgenc {m.group(1)}" if m else "bpgenc (version unknown)"
    return f"{ver} sha256:{binary_sha256(bpgenc)[:12]}"


CODECS = [BpgCodec]
