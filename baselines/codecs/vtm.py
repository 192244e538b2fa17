"""VVC intra coding through the real VTM reference software (``EncoderApp`` / ``DecoderApp``).

Pipeline for one image (all choices are codec options, defaults as in the paper):

1. RGB -> Y'CbCr with :mod:`baselines.codecs.colour`: ``matrix=bt709`` (or
   ``bt601``), ``range=full`` (or ``limited``), in float64, 2x2-mean chroma
   downsampling for ``chroma=420`` (default; ``444`` keeps full chroma), then
   rounded half-up to ``bit_depth`` (10 by default, or 8) and written as raw
   planar YUV (16-bit little-endian samples above 8 bits).
2. ``EncoderApp -c encoder_intra_vtm.cfg --InputFile=in.yuv --BitstreamFile=out.266
   --SourceWidth=W --SourceHeight=H --InputBitDepth=B --InternalBitDepth=B
   --OutputBitDepth=B --InputChromaFormat=C --ChromaFormatIDC=C --FrameRate=1
   --FramesToBeEncoded=1 --ConformanceWindowMode=1 --QP=QP``. With
   ``ConformanceWindowMode=1`` VTM pads the picture to its minimum CU size (8)
   and signals the crop in the PPS conformance window, so any even size works
   (1920x1080, 1280x720...). 4:2:0 needs even width and height (the
   conformance window cannot crop single chroma-subsampled pixels).
3. ``DecoderApp --BitstreamFile=out.266 --ReconFile=rec.yuv --OutputBitDepth=B``;
   the picture size is read from the bitstream's PPS (and the conformance
   window applied if the decoder wrote the padded picture), then Y'CbCr ->
   RGB with the inverse matrix (chroma upsampling ``bilinear`` or
   ``nearest``), rounded to 8 bits.

The encoder's per-picture line (bits, QP, PSNR of Y/U/V) and summary are
parsed into ``EncodeResult.details`` (:func:`parse_encoder_log`); bpp always
comes from the bitstream's byte length. QP 0..63 (lower is better).

Binaries are looked up as ``EncoderAppStatic``/``EncoderApp`` and
``DecoderAppStatic``/``DecoderApp`` in the ``vtm_dir`` option, ``$CLOUD3D_VTM_DIR``,
then PATH; the config is the ``cfg`` option or ``encoder_intra_vtm.cfg`` found
next to the encoder, in ``cfg/`` beside it, or in ``../cfg`` (the VTM source
tree layout ``bin/`` + ``cfg/``).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from baselines.codecs.base import CodecError, CodecUnavailable, QualityParam, check_choice
from baselines.codecs.colour import MATRICES, UPSAMPLING, planes_to_rgb, rgb_to_planes
from baselines.codecs.external import ExternalCodec, binary_sha256, program_output
from baselines.codecs.yuvio import bytes_to_planes, frame_bytes, write_yuv
from cloud3d.provenance import sha256_file

ENV_VAR = "CLOUD3D_VTM_DIR"
ENCODER_NAMES = ("EncoderAppStatic", "EncoderApp")
DECODER_NAMES = ("DecoderAppStatic", "DecoderApp")
CFG_NAME = "encoder_intra_vtm.cfg"
INSTALL_HINT = (
    "build VTM with `cloud3d codecs build vtm --prefix DIR` (or from "
    "https://vcgit.hhi.fraunhofer.de/jvet/VVCSoftware_VTM with cmake) and put its binaries on PATH, "
    f"set {ENV_VAR}=DIR, or pass the codec option vtm_dir=DIR"
)


def find_cfg(encoder: Path | None, given: str | os.PathLike | None = None) -> Path | None:
    """The all-intra config: ``given`` if set (must exist), else next to / near the encoder."""
    if given:
        p = Path(given)
        return p.resolve() if p.is_file() else None
    if encoder is None:
        return None
    d = encoder.parent
    for cand in (d / CFG_NAME, d / "cfg" / CFG_NAME, d.parent / "cfg" / CFG_NAME,
                 d.parent.parent / "cfg" / CFG_NAME):
        if cand.is_file():
            return cand.resolve()
    return None


class VtmCodec(ExternalCodec):
    name = "vtm"
    description = "VVC intra via the real VTM EncoderApp/DecoderApp; 4:2:0 10-bit BT.709 full range by default"
    quality = QualityParam("qp", "VVC quantiser (0 = best, 63 = worst)", 0, 63, higher_is_better=False,
                           default_sweep=(22, 27, 32, 37, 42, 47))
    options_defaults = {"chroma": "420", "bit_depth": 10, "matrix": "bt709", "range": "full",
                        "upsampling": "bilinear", "cfg": "", "vtm_dir": "", "timeout": 3600}
    extension = ".266"
    programs = {"encoder": ENCODER_NAMES, "decoder": DECODER_NAMES}
    dir_option, env_var, install_hint = "vtm_dir", ENV_VAR, INSTALL_HINT
    input_suffix = output_suffix = ".yuv"
    version_excludes = ("cfg",)  # the config's hash is in the version text instead

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        o = self.options
        o["chroma"] = check_choice(self.name, "chroma", str(o["chroma"]), ("420", "444"))
        check_choice(self.name, "bit_depth", o["bit_depth"], (8, 10))
        check_choice(self.name, "matrix", o["matrix"], tuple(MATRICES))
        check_choice(self.name, "range", o["range"], ("full", "limited"))
        check_choice(self.name, "upsampling", o["upsampling"], UPSAMPLING)

    # -- discovery and provenance ------------------------------------------------------------
    def extra_files(self, programs: dict[str, Path]) -> dict[str, Path]:
        """``cfg``: the all-intra configuration (the ``cfg`` option, or found near the encoder)."""
        cfg = find_cfg(programs["encoder"], self.options["cfg"] or None)
        if cfg is None:
            raise CodecUnavailable(
                f"VTM config {self.options['cfg'] or CFG_NAME} not found: pass cfg=PATH to VTM's cfg/{CFG_NAME}"
            )
        return {"cfg": cfg}

    def version_text(self, files: dict[str, Path]) -> str:
        return f"{vtm_version_text(files['encoder'])} cfg:{sha256_file(files['cfg'])[:12]}"

    def extra_provenance(self) -> dict[str, Any]:
        o = self.options
        return {"colour": (f"{o['matrix']} {o['range']} range, {o['chroma']}, {o['bit_depth']}-bit, "
                           f"float64 rounded; chroma up: {o['upsampling']}")}

    # -- command lines ---------------------------------------------------------------------
    def encode_args(self, files: dict[str, Path], src: str | Path, bitstream: str | Path,
                    qp: int | str, width: int | str, height: int | str) -> list[str]:
        """Argument list for one all-intra encode of a ``width`` x ``height`` frame."""
        b, c = self.options["bit_depth"], self.options["chroma"]
        return [
            str(files["encoder"]), "-c", str(files["cfg"]),
            f"--InputFile={src}", f"--BitstreamFile={bitstream}",
            f"--SourceWidth={width}", f"--SourceHeight={height}",
            f"--InputBitDepth={b}", f"--InternalBitDepth={b}", f"--OutputBitDepth={b}",
            f"--InputChromaFormat={c}", f"--ChromaFormatIDC={c}",
            "--FrameRate=1", "--FramesToBeEncoded=1", "--ConformanceWindowMode=1",
            f"--QP={qp}",
        ]

    def decode_args(self, files: dict[str, Path], bitstream: str | Path, out: str | Path) -> list[str]:
        """Argument list for one decode to raw YUV at the codec's bit depth."""
        return [str(files["decoder"]), f"--BitstreamFile={bitstream}", f"--ReconFile={out}",
                f"--OutputBitDepth={self.options['bit_depth']}"]

    def parse_encoder_output(self, text: str) -> dict[str, Any]:
        return parse_encoder_log(text)

    # -- conversions -------------------------------------------------------------------------
    def to_planes(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """RGB -> Y'CbCr planes at the codec's bit depth, matrix, range and chroma format."""
        o = self.options
        return rgb_to_planes(rgb, o["bit_depth"], o["chroma"], o["matrix"], o["range"] == "full")

    def from_planes(self, planes: tuple[np.ndarray, np.ndarray, np.ndarray]) -> np.ndarray:
        """Y'CbCr planes -> ``(H, W, 3) uint8`` RGB (inverse of :meth:`to_planes`)."""
        o = self.options
        return planes_to_rgb(*planes, bit_depth=o["bit_depth"], matrix=o["matrix"],
                             full_range=o["range"] == "full", upsampling=o["upsampling"])

    def check_image(self, rgb: np.ndarray) -> None:
        h, w = rgb.shape[:2]
        if self.options["chroma"] == "420" and (h % 2 or w % 2):
            raise CodecError(f"{self.name}: 4:2:0 needs even width and height, got {w}x{h} (use chroma=444)")

    def write_input(self, rgb: np.ndarray, path: Path) -> None:
        write_yuv(path, self.to_planes(rgb), self.options["bit_depth"])

    def check_bitstream(self, data: bytes) -> dict[str, Any]:
        info = vvc_picture_info(data)
        info["chroma"] = {1: "420", 3: "444"}.get(info["chroma_format_idc"])
        if info["chroma"] is None:
            raise ValueError(f"unsupported chroma_format_idc {info['chroma_format_idc']}")
        return info

    def read_output(self, path: Path, info: dict[str, Any]) -> np.ndarray:
        raw = path.read_bytes()
        return self.from_planes(planes_from_decoder_output(raw, info, info["chroma"], self.options["bit_depth"]))


def planes_from_decoder_output(raw: bytes, info: dict[str, int], chroma: str, bit_depth: int):
    """Parse DecoderApp's YUV output: cropped to the conformance window, or padded (then crop here)."""
    cw, ch = info["width"], info["height"]
    pw, ph = info["coded_width"], info["coded_height"]
    if len(raw) == frame_bytes(ch, cw, chroma, bit_depth):
        return bytes_to_planes(raw, ch, cw, chroma, bit_depth)
    if len(raw) == frame_bytes(ph, pw, chroma, bit_depth):
        y, cb, cr = bytes_to_planes(raw, ph, pw, chroma, bit_depth)
        x0, y0 = info["crop_left"], info["crop_top"]
        sx, sy = (2, 2) if chroma == "420" else (1, 1)
        rows, cols = slice(y0 // sy, (y0 + ch) // sy), slice(x0 // sx, (x0 + cw) // sx)
        return y[y0 : y0 + ch, x0 : x0 + cw], cb[rows, cols], cr[rows, cols]
    raise CodecError(
        f"vtm decode: DecoderApp wrote {len(raw)} bytes, expected one {cw}x{ch} or {pw}x{ph} "
        f"{chroma} {bit_depth}-bit frame (corrupt bitstream?)"
    )


# -- bitstream header parsing -----------------------------------------------------------------
VVC_SPS_NUT, VVC_PPS_NUT = 15, 16


def _nal_units(data: bytes) -> list[bytes]:
    """Split an Annex-B byte stream at start codes; returns NAL units (header included, EPB removed)."""
    starts = [m.end() for m in re.finditer(b"\x00\x00\x01", data)]
    units = []
    for i, s in enumerate(starts):
        e = starts[i + 1] - 3 if i + 1 < len(starts) else len(data)
        nal = data[s:e].rstrip(b"\x00") if i + 1 < len(starts) else data[s:e]
        units.append(nal.replace(b"\x00\x00\x03", b"\x00\x00"))
    return units


class _Bits:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def u(self, n: int) -> int:
        v = 0
        for _ in range(n):
            byte = self.pos >> 3
            if byte >= len(self.data):
                raise ValueError("parameter set ends early")
            v = (v << 1) | ((self.data[byte] >> (7 - (self.pos & 7))) & 1)
            self.pos += 1
        return v

    def ue(self) -> int:
        zeros = 0
        while self.u(1) == 0:
            zeros += 1
            if zeros > 31:
                raise ValueError("invalid Exp-Golomb code")
        return (1 << zeros) - 1 + self.u(zeros)

    def align(self) -> None:
        """Skip to the next byte boundary."""
        self.pos = (self.pos + 7) & ~7


def _read_window(b: _Bits) -> tuple[int, int, int, int]:
    """Conformance window offsets (left, right, top, bottom), in chroma sample units."""
    return b.ue(), b.ue(), b.ue(), b.ue()


#: fixed-length flags of general_constraints_info() before gci_num_additional_bits (H.266 7.3.3.2)
_GCI_FIXED_BITS = 71


def _skip_profile_tier_level(b: _Bits, max_sublayers_minus1: int) -> None:
    """Skip profile_tier_level(1, max_sublayers_minus1) (H.266 7.3.3.1)."""
    b.u(7)  # general_profile_idc
    b.u(1)  # general_tier_flag
    b.u(8)  # general_level_idc
    b.u(1)  # ptl_frame_only_constraint_flag
    b.u(1)  # ptl_multilayer_enabled_flag
    if b.u(1):  # gci_present_flag
        b.u(_GCI_FIXED_BITS)
        b.u(b.u(8))  # gci_num_additional_bits, then those bits
    b.align()
    present = [b.u(1) for _ in range(max_sublayers_minus1)]
    b.align()
    for flag in present:
        if flag:
            b.u(8)  # sublayer_level_idc
    for _ in range(b.u(8)):  # ptl_num_sub_profiles
        b.u(32)


def _parse_sps(b: _Bits) -> tuple[int, int, int, tuple[int, int, int, int]]:
    """``(chroma_format_idc, max_width, max_height, conformance window)`` from an SPS RBSP (H.266 7.3.2.4)."""
    b.u(4)  # sps_seq_parameter_set_id
    b.u(4)  # sps_video_parameter_set_id
    max_sublayers_minus1 = b.u(3)
    if max_sublayers_minus1 > 6:
        raise ValueError(f"invalid sps_max_sublayers_minus1 {max_sublayers_minus1}")
    chroma_idc = b.u(2)
    b.u(2)  # sps_log2_ctu_size_minus5
    if b.u(1):  # sps_ptl_dpb_hrd_params_present_flag
        _skip_profile_tier_level(b, max_sublayers_minus1)
    b.u(1)  # sps_gdr_enabled_flag
    if b.u(1):  # sps_ref_pic_resampling_enabled_flag
        b.u(1)  # sps_res_change_in_clvs_allowed_flag
    max_w, max_h = b.ue(), b.ue()
    window = _read_window(b) if b.u(1) else (0, 0, 0, 0)
    return chroma_idc, max_w, max_h, window


def vvc_picture_info(data: bytes) -> dict[str, int]:
    """Picture size of a VVC Annex-B bitstream from its first SPS and PPS.

    Returns ``width``/``height`` (after the conformance window), ``coded_width``/
    ``coded_height``, ``crop_left``/``crop_top`` (luma samples) and
    ``chroma_format_idc`` (0 = 4:0:0, 1 = 4:2:0, 2 = 4:2:2, 3 = 4:4:4).
    Raises ValueError for data that is not a VVC stream.
    """
    if not data:
        raise ValueError("empty bitstream")
    sps = pps = None
    for nal in _nal_units(data):
        if len(nal) < 3:
            continue
        nut = (nal[1] >> 3) & 0x1F
        if nut == VVC_SPS_NUT and sps is None:
            sps = nal[2:]
        elif nut == VVC_PPS_NUT and pps is None:
            pps = nal[2:]
    if sps is None or pps is None:
        raise ValueError("no VVC SPS/PPS found (not a VTM bitstream?)")
    chroma_idc, max_w, max_h, sps_window = _parse_sps(_Bits(sps))
    p = _Bits(pps)
    p.u(6)  # pps_pic_parameter_set_id
    p.u(4)  # pps_seq_parameter_set_id
    p.u(1)  # pps_mixed_nalu_types_in_pic_flag
    pw, ph = p.ue(), p.ue()
    window = _read_window(p) if p.u(1) else (0, 0, 0, 0)
    if (pw, ph) == (max_w, max_h):
        # H.266 7.4.3.5: a picture of the SPS's maximum size signals no PPS window and
        # inherits the SPS conformance window (VTM writes it there).
        window = sps_window
    left, right, top, bottom = window
    sx = 2 if chroma_idc in (1, 2) else 1
    sy = 2 if chroma_idc == 1 else 1
    w, h = pw - sx * (left + right), ph - sy * (top + bottom)
    if pw <= 0 or ph <= 0 or w <= 0 or h <= 0 or pw > 16888 or ph > 16888:
        raise ValueError(f"implausible picture size {pw}x{ph} (window {w}x{h})")
    return {"width": w, "height": h, "coded_width": pw, "coded_height": ph,
            "crop_left": sx * left, "crop_top": sy * top, "chroma_format_idc": chroma_idc}


# -- encoder log -------------------------------------------------------------------------------
_POC_RE = re.compile(
    r"POC\s+(?P<poc>\d+).*?QP\s+(?P<qp>-?\d+)\s*\)\s+(?P<bits>\d+)\s+bits\s*"
    r"\[Y\s+(?P<y>[\d.]+)\s+dB\s+U\s+(?P<u>[\d.]+)\s+dB\s+V\s+(?P<v>[\d.]+)\s+dB\]"
)
_SUMMARY_RE = re.compile(
    r"Total Frames\s*\|\s*Bitrate\s+Y-PSNR\s+U-PSNR\s+V-PSNR\s+YUV-PSNR[^\n]*\n\s*(?P<frames>\d+)\s+[a-zA-Z]\s+"
    r"(?P<kbps>[\d.]+)\s+(?P<y>[\d.]+)\s+(?P<u>[\d.]+)\s+(?P<v>[\d.]+)\s+(?P<yuv>[\d.]+)"
)
_BYTES_RE = re.compile(r"Bytes written to file:\s*(\d+)")
_TIME_RE = re.compile(r"Total Time:\s*([\d.]+)\s*sec\.\s*\[user\]\s*([\d.]+)\s*sec\.\s*\[elapsed\]")
_VERSION_RE = re.compile(r"VVCSoftware:\s*VTM Encoder Version\s*(\S+)")


def parse_encoder_log(text: str) -> dict[str, Any]:
    """Extract figures from EncoderApp's console output.

    Keys (present when found): ``vtm_bits`` (sum of the per-picture bit
    counts), ``vtm_qp``, ``vtm_psnr_y``/``_u``/``_v`` (first picture, dB, of
    the *padded YCbCr* picture, so not comparable to RGB PSNR),
    ``vtm_pictures``, ``vtm_summary_kbps``, ``vtm_psnr_yuv`` (summary),
    ``vtm_bytes_written``, ``vtm_user_s``/``vtm_elapsed_s`` and ``vtm_version``.
    """
    out: dict[str, Any] = {}
    pocs = list(_POC_RE.finditer(text))
    if pocs:
        out["vtm_pictures"] = len(pocs)
        out["vtm_bits"] = sum(int(m["bits"]) for m in pocs)
        first = pocs[0]
        out["vtm_qp"] = int(first["qp"])
        out["vtm_psnr_y"], out["vtm_psnr_u"], out["vtm_psnr_v"] = (float(first[k]) for k in ("y", "u", "v"))
    if m := _SUMMARY_RE.search(text):
        out["vtm_summary_frames"] = int(m["frames"])
        out["vtm_summary_kbps"] = float(m["kbps"])
        out["vtm_psnr_yuv"] = float(m["yuv"])
    if m := _BYTES_RE.search(text):
        out["vtm_bytes_written"] = int(m.group(1))
    if m := _TIME_RE.search(text):
        out["vtm_user_s"], out["vtm_elapsed_s"] = float(m.group(1)), float(m.group(2))
    if m := _VERSION_RE.search(text):
        out["vtm_version"] = m.group(1)
    return out


def vtm_version_text(encoder: str | Path) -> str:
    """``"VTM <version> sha256:<prefix>"`` from ``EncoderApp --version`` (or the hash alone)."""
    m = _VERSION_RE.search(program_output(encoder, "--version"))
    return f"VTM {m.group(1) if m else '(version unknown)'} sha256:{binary_sha256(encoder)[:12]}"


CODECS = [VtmCodec]
