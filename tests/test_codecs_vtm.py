"""VTM wrapper: command lines, config discovery, colour path, bitstream header and log parsing.

The VTM binaries are not packaged anywhere pip/apt can reach; the real round
trips (``real_vtm`` fixture) run when they are found (PATH, ``CLOUD3D_VTM_DIR``),
skip with the reason otherwise, and fail instead when ``CLOUD3D_REQUIRE_REFCODECS=1`` (CI).
"""

from __future__ import annotations

import shutil
import stat
from pathlib import Path

import numpy as np
import pytest
from helpers import make_game_like_frame

from baselines.codecs import yuvio
from baselines.codecs.base import CodecError, CodecUnavailable
from baselines.codecs.vtm import (
    CFG_NAME,
    ENV_VAR,
    VtmCodec,
    find_cfg,
    parse_encoder_log,
    planes_from_decoder_output,
    vvc_picture_info,
)
from baselines.metrics import psnr_rgb

# -- a tiny VVC Annex-B writer, following H.266 7.3.1.2 / 7.3.2.3 / 7.3.2.4 -----------------------


class BitWriter:
    def __init__(self) -> None:
        self.bits: list[int] = []

    def u(self, n: int, v: int) -> None:
        self.bits += [(v >> (n - 1 - i)) & 1 for i in range(n)]

    def ue(self, v: int) -> None:
        code = v + 1
        n = code.bit_length()
        self.u(n - 1, 0)
        self.u(n, code)

    def rbsp(self) -> bytes:
        bits = self.bits + [1]  # rbsp_stop_one_bit
        bits += [0] * (-len(bits) % 8)
        return bytes(int("".join(map(str, bits[i : i + 8])), 2) for i in range(0, len(bits), 8))


def add_emulation_prevention(rbsp: bytes) -> bytes:
    out, zeros = bytearray(), 0
    for b in rbsp:
        if zeros >= 2 and b <= 3:
            out.append(3)
            zeros = 0
        out.append(b)
        zeros = zeros + 1 if b == 0 else 0
    return bytes(out)


def nal(nal_type: int, rbsp: bytes) -> bytes:
    header = bytes([0x00, (nal_type << 3) | 1])  # layer 0, temporal id plus1 = 1
    return b"\x00\x00\x00\x01" + header + add_emulation_prevention(rbsp)


def profile_tier_level(w: BitWriter, sublayers_minus1: int, gci_extra_bits: int | None) -> None:
    """profile_tier_level(1, sublayers_minus1) with or without general_constraints_info flags."""
    w.u(7, 1)  # general_profile_idc (Main 10)
    w.u(1, 0)
    w.u(8, 35)  # general_level_idc
    w.u(1, 1)  # ptl_frame_only_constraint_flag
    w.u(1, 0)  # ptl_multilayer_enabled_flag
    w.u(1, int(gci_extra_bits is not None))  # gci_present_flag
    if gci_extra_bits is not None:
        w.u(71, (1 << 70) | 1)  # the 71 constraint flags (first and last set)
        w.u(8, gci_extra_bits)
        w.u(gci_extra_bits, 0b101)
    w.u(-len(w.bits) % 8, 0)  # gci alignment
    for _ in range(sublayers_minus1):
        w.u(1, 1)  # ptl_sublayer_level_present_flag
    w.u(-len(w.bits) % 8, 0)
    for _ in range(sublayers_minus1):
        w.u(8, 32)
    w.u(8, 1)  # ptl_num_sub_profiles
    w.u(32, 0xDEADBEEF)


def vvc_stream(width: int, height: int, chroma_idc: int = 1, conf=(0, 0, 0, 0), *, sps_window: bool = False,
               max_size: tuple[int, int] | None = None, sublayers_minus1: int = 0,
               gci_extra_bits: int | None = None) -> bytes:
    """SPS + PPS + one slice. The conformance window goes in the PPS, or in the SPS with
    ``sps_window=True`` (what VTM does when the picture has the SPS's maximum size)."""
    max_w, max_h = max_size or (width, height)
    sps = BitWriter()
    sps.u(4, 0)  # sps_seq_parameter_set_id
    sps.u(4, 0)  # sps_video_parameter_set_id
    sps.u(3, sublayers_minus1)
    sps.u(2, chroma_idc)
    sps.u(2, 2)  # sps_log2_ctu_size_minus5
    sps.u(1, 1)  # sps_ptl_dpb_hrd_params_present_flag
    profile_tier_level(sps, sublayers_minus1, gci_extra_bits)
    sps.u(1, 0)  # sps_gdr_enabled_flag
    sps.u(1, 1)  # sps_ref_pic_resampling_enabled_flag
    sps.u(1, 0)  # sps_res_change_in_clvs_allowed_flag
    sps.ue(max_w)
    sps.ue(max_h)
    sps.u(1, int(sps_window and any(conf)))
    if sps_window and any(conf):
        for v in conf:
            sps.ue(v)
    sps.u(1, 0)  # sps_subpic_info_present_flag (the rest of the SPS is not needed by the parser)
    pps = BitWriter()
    pps.u(6, 0)
    pps.u(4, 0)
    pps.u(1, 0)  # pps_mixed_nalu_types_in_pic_flag
    pps.ue(width)
    pps.ue(height)
    pps_window = not sps_window and any(conf)
    pps.u(1, int(pps_window))
    if pps_window:
        for v in conf:
            pps.ue(v)
    pps.u(1, 0)
    slice_payload = bytes([0x12, 0x34, 0x56, 0x78])
    return nal(15, sps.rbsp()) + nal(16, pps.rbsp()) + nal(8, slice_payload)


def test_picture_info_from_sps_and_pps():
    info = vvc_picture_info(vvc_stream(1920, 1080))
    assert info == {"width": 1920, "height": 1080, "coded_width": 1920, "coded_height": 1080,
                    "crop_left": 0, "crop_top": 0, "chroma_format_idc": 1}
    # a 1918x1078 4:2:0 picture padded to 1920x1080: offsets are in chroma units (2 luma samples)
    info = vvc_picture_info(vvc_stream(1920, 1080, 1, (0, 1, 0, 1), max_size=(3840, 2160)))
    assert (info["width"], info["height"]) == (1918, 1078)
    info = vvc_picture_info(vvc_stream(72, 48, 3, (0, 5, 0, 3), max_size=(128, 128)))  # 4:4:4: units of one sample
    assert (info["width"], info["height"], info["chroma_format_idc"]) == (67, 45, 3)


@pytest.mark.parametrize("sublayers, gci", [(0, None), (0, 0), (2, 8), (6, 255)])
def test_picture_info_reads_the_sps_window_of_a_full_size_picture(sublayers, gci):
    """VTM's own layout: the window is in the SPS, and the PPS of a max-size picture inherits it."""
    data = vvc_stream(72, 48, 1, (0, 3, 0, 1), sps_window=True, sublayers_minus1=sublayers, gci_extra_bits=gci)
    info = vvc_picture_info(data)
    assert (info["width"], info["height"], info["coded_width"], info["coded_height"]) == (66, 46, 72, 48)
    # a smaller picture than the SPS maximum does not inherit the SPS window
    data = vvc_stream(72, 48, 1, (0, 3, 0, 1), sps_window=True, max_size=(80, 48))
    assert (vvc_picture_info(data)["width"], vvc_picture_info(data)["height"]) == (72, 48)


def test_picture_info_removes_emulation_prevention_bytes():
    data = vvc_stream(16384, 8)  # ue(16384) starts with 14 zero bits -> 25 zeros in a row in the PPS
    assert b"\x00\x00\x03" in data
    assert vvc_picture_info(data)["coded_width"] == 16384


@pytest.mark.parametrize("bad", [b"", b"\x00\x00\x01garbage", b"\x89PNG\r\n\x1a\n" + bytes(100)])
def test_picture_info_rejects_non_vvc(bad):
    with pytest.raises(ValueError):
        vvc_picture_info(bad)


def test_decode_of_garbage_is_a_codec_error_before_running_anything():
    with pytest.raises(CodecError, match="vtm: cannot decode 40-byte bitstream"):
        VtmCodec().decode(b"this is not a VVC bitstream, not at all!")


SAMPLE_LOG = """
VVCSoftware: VTM Encoder Version 23.4 [Linux][GCC 12.2.0][64 bit] [SIMD=AVX2]

Input          File                    : in.yuv
Bitstream      File                    : out.266
Real     Format                        : 1280x720 1Hz
Internal Format                        : 1280x720 1Hz
Sequence PSNR output                   : Linear average only
Frame index                            : 1 frames
Profile                                : main_10
CU size / total-depth                  : 128 / 6

POC    0 LId:  0 TId: 0 ( IDR_N_LP, I-SLICE, QP 37 )     183456 bits [Y 38.1234 dB    U 42.0001 dB    V 43.5000 dB] [ET    41 ] [L0 ] [L1 ]


SUMMARY --------------------------------------------------------
\tTotal Frames |   Bitrate     Y-PSNR    U-PSNR    V-PSNR    YUV-PSNR
\t        1    a     183.4560   38.1234   42.0001   43.5000   38.9876


I Slices--------------------------------------------------------
\tTotal Frames |   Bitrate     Y-PSNR    U-PSNR    V-PSNR    YUV-PSNR
\t        1    i     183.4560   38.1234   42.0001   43.5000   38.9876

RVM: 0.000
Bytes written to file: 22932 (183.456 kbps)

 Total Time:       41.234 sec. [user]       41.301 sec. [elapsed]
"""


def test_parse_encoder_log():
    d = parse_encoder_log(SAMPLE_LOG)
    assert d["vtm_bits"] == 183456 and d["vtm_bits"] == 8 * d["vtm_bytes_written"]
    assert d["vtm_pictures"] == 1 and d["vtm_qp"] == 37
    assert (d["vtm_psnr_y"], d["vtm_psnr_u"], d["vtm_psnr_v"]) == (38.1234, 42.0001, 43.5)
    assert d["vtm_summary_kbps"] == 183.456 and d["vtm_psnr_yuv"] == 38.9876 and d["vtm_summary_frames"] == 1
    assert (d["vtm_user_s"], d["vtm_elapsed_s"]) == (41.234, 41.301)
    assert d["vtm_version"] == "23.4"
    newer = "POC    0 LId:  0 TId: 0 ( IDR_N_LP, I-SLICE, nQP 22 QP 22 )   999 bits [Y 45.5 dB    U 47.0 dB    V 48.25 dB]"
    d2 = parse_encoder_log(newer)
    assert (d2["vtm_qp"], d2["vtm_bits"], d2["vtm_psnr_v"]) == (22, 999, 48.25)
    assert parse_encoder_log("garbage\nno numbers here") == {}


def test_default_command_lines():
    c = VtmCodec()
    files = {"encoder": Path("/v/EncoderAppStatic"), "decoder": Path("/v/DecoderApp"),
             "cfg": Path("/v/cfg/encoder_intra_vtm.cfg")}
    args = c.encode_args(files, "in.yuv", "out.266", 32, 1280, 720)
    assert args[:3] == ["/v/EncoderAppStatic", "-c", "/v/cfg/encoder_intra_vtm.cfg"]
    for a in ("--InputFile=in.yuv", "--BitstreamFile=out.266", "--SourceWidth=1280", "--SourceHeight=720",
              "--InputBitDepth=10", "--InternalBitDepth=10", "--OutputBitDepth=10", "--InputChromaFormat=420",
              "--ChromaFormatIDC=420", "--FramesToBeEncoded=1", "--ConformanceWindowMode=1", "--QP=32"):
        assert a in args
    c8 = VtmCodec(chroma="444", bit_depth=8)
    args8 = c8.encode_args(files, "i", "o", 22, 67, 45)
    assert "--InputChromaFormat=444" in args8 and "--InputBitDepth=8" in args8
    assert c.decode_args(files, "b.266", "r.yuv") == [
        "/v/DecoderApp", "--BitstreamFile=b.266", "--ReconFile=r.yuv", "--OutputBitDepth=10"]
    assert VtmCodec.quality.high == 63


def test_option_validation():
    for bad in ({"chroma": "422"}, {"bit_depth": 12}, {"matrix": "bt2020"}, {"range": "tv"}, {"upsampling": "cubic"}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            VtmCodec(**bad)


def _exe(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(shutil.which("true") or "/bin/true", path)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_availability_and_cfg_discovery(tmp_path, monkeypatch):
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.delenv(ENV_VAR, raising=False)
    msg = VtmCodec().availability()
    assert "EncoderAppStatic/EncoderApp and DecoderAppStatic/DecoderApp not found" in msg
    assert ENV_VAR in msg and "vtm_dir" in msg and "cloud3d codecs build vtm" in msg
    with pytest.raises(CodecUnavailable):
        VtmCodec().encode(make_game_like_frame(16, 16, 0), 32)
    # VTM source tree layout: bin/EncoderAppStatic, bin/DecoderAppStatic, cfg/encoder_intra_vtm.cfg
    enc = _exe(tmp_path / "vtm" / "bin" / "EncoderAppStatic")
    _exe(tmp_path / "vtm" / "bin" / "DecoderAppStatic")
    codec = VtmCodec(vtm_dir=str(tmp_path / "vtm" / "bin"))
    assert "encoder_intra_vtm.cfg not found" in codec.availability()
    cfg = tmp_path / "vtm" / "cfg" / CFG_NAME
    cfg.parent.mkdir()
    cfg.write_text("InternalBitDepth : 10\n")
    assert codec.availability() is None
    assert find_cfg(enc.resolve()) == cfg.resolve()
    assert find_cfg(enc, tmp_path / "missing.cfg") is None
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "vtm" / "bin"))
    assert VtmCodec().availability() is None
    assert VtmCodec().locate()["cfg"] == cfg.resolve()
    assert "cfg.cfg not found" in VtmCodec(cfg=str(tmp_path / "cfg.cfg")).availability()


def test_odd_size_420_is_refused_with_a_hint():
    with pytest.raises(CodecError, match="4:2:0 needs even width and height, got 67x45 \\(use chroma=444\\)"):
        VtmCodec().encode(make_game_like_frame(45, 67, 0), 32)


def _smooth(h, w):
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    return np.stack([40 + xx * 2, 60 + yy * 2.5, 200 - xx], axis=-1).clip(0, 255).round().astype(np.uint8)


@pytest.mark.parametrize("chroma", ["420", "444"])
def test_decoder_output_parsing_cropped_or_padded(chroma):
    """The decoded YUV is accepted at the window size or at the padded size (then cropped)."""
    codec = VtmCodec(chroma=chroma)
    rgb = _smooth(46, 66)
    planes = codec.to_planes(rgb)
    info = {"width": 66, "height": 46, "coded_width": 72, "coded_height": 48, "crop_left": 0, "crop_top": 0,
            "chroma_format_idc": 1 if chroma == "420" else 3}
    cropped = yuvio.planes_to_bytes(planes, 10)
    padded_planes = tuple(
        np.pad(p, ((0, s - p.shape[0]), (0, t - p.shape[1])), mode="edge")
        for p, (s, t) in zip(planes, [(48, 72)] + [yuvio.chroma_shape(48, 72, chroma)] * 2, strict=True)
    )
    padded = yuvio.planes_to_bytes(padded_planes, 10)
    for raw in (cropped, padded):
        got = planes_from_decoder_output(raw, info, chroma, 10)
        for a, b in zip(planes, got, strict=True):
            np.testing.assert_array_equal(a, b)
    back = codec.from_planes(planes)
    assert psnr_rgb(rgb, back) > (48 if chroma == "420" else 60)
    with pytest.raises(CodecError, match="expected one 66x46 or 72x48"):
        planes_from_decoder_output(cropped[:-2], info, chroma, 10)


@pytest.mark.slow
@pytest.mark.parametrize("chroma", ["420", "444"])
def test_real_vtm_round_trip(real_vtm, chroma):
    codec = VtmCodec(chroma=chroma)
    rgb = make_game_like_frame(46, 66, seed=3)  # not a multiple of 8: exercises the conformance window
    enc = codec.encode_timed(rgb, 37)
    info = vvc_picture_info(enc.data)
    assert (info["width"], info["height"], info["coded_width"], info["coded_height"]) == (66, 46, 72, 48)
    assert enc.details.get("vtm_bits", 8 * len(enc.data)) <= 8 * len(enc.data)
    dec = codec.decode_timed(enc.data)
    assert dec.rgb.shape == rgb.shape
    assert psnr_rgb(rgb, dec.rgb) > 25
    assert enc.encode_s > 0 and enc.convert_s > 0 and dec.decode_s > 0
    prov = codec.provenance()
    assert len(prov["cfg_sha256"]) == 64 and "--SourceWidth={W} --SourceHeight={H}" in prov["encode_cmd"]
    assert "--QP={qp}" in prov["encode_cmd"] and f"ChromaFormatIDC={chroma}" in prov["encode_cmd"]
    assert codec.version().startswith("VTM 23.13 sha256:")
    with pytest.raises(CodecError, match="vtm: cannot decode"):
        codec.decode(enc.data[:10])
