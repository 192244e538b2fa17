"""BPG wrapper: discovery, availability messages, command lines, header checks; real round trips.

The real tests use the ``real_bpg`` fixture: they skip without bpgenc/bpgdec, and fail
instead when ``CLOUD3D_REQUIRE_REFCODECS=1`` (CI).
"""

from __future__ import annotations

import shutil
import stat
import subprocess
from pathlib import Path

import numpy as np
import pytest
from helpers import make_game_like_frame

from baselines.codecs.base import CodecError, CodecUnavailable
from baselines.codecs.bpg import BPG_MAGIC, ENV_VAR, BpgCodec, bpg_header_info
from baselines.codecs.external import find_binary
from baselines.metrics import psnr_rgb
from cloud3d.imageio import read_image_rgb, write_png


@pytest.fixture()
def no_tools_path(tmp_path, monkeypatch):
    """PATH and CLOUD3D_BPG_DIR pointing at an empty folder: no bpgenc/bpgdec anywhere."""
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.delenv(ENV_VAR, raising=False)
    return empty


def _executable(folder, name):
    """A real executable file with the tool's name (for discovery only; never run as a codec)."""
    folder.mkdir(parents=True, exist_ok=True)
    p = folder / name
    shutil.copy(shutil.which("true") or "/bin/true", p)
    p.chmod(p.stat().st_mode | stat.S_IXUSR)
    return p


def test_unavailable_message_says_how_to_install(no_tools_path, tmp_path):
    msg = BpgCodec().availability()
    assert msg.startswith("bpgenc and bpgdec not found")
    assert "cloud3d codecs build bpg" in msg and "https://bellard.org/bpg/" in msg
    assert ENV_VAR in msg and "bpg_dir" in msg
    codec = BpgCodec(bpg_dir=str(tmp_path / "nowhere"))
    assert str(tmp_path / "nowhere") in codec.availability()
    with pytest.raises(CodecUnavailable, match="bpgenc and bpgdec not found"):
        codec.encode(make_game_like_frame(16, 16, 0), 30)


def test_discovery_order_option_then_env_then_path(no_tools_path, tmp_path, monkeypatch):
    opt = _executable(tmp_path / "opt", "bpgenc")
    env = _executable(tmp_path / "env", "bpgenc")
    _executable(tmp_path / "env", "bpgdec")
    onpath = _executable(no_tools_path, "bpgenc")
    assert find_binary(["bpgenc"]) == onpath.resolve()
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "env"))
    assert find_binary(["bpgenc"], None, ENV_VAR) == env.resolve()
    assert find_binary(["bpgenc"], tmp_path / "opt", ENV_VAR) == opt.resolve()
    # bpgdec only in the env folder: an instance with bpg_dir=opt finds the pair
    codec = BpgCodec(bpg_dir=str(tmp_path / "opt"))
    assert codec.availability() is None
    assert codec.locate() == {"bpgenc": opt.resolve(), "bpgdec": (tmp_path / "env" / "bpgdec").resolve()}
    assert BpgCodec().availability() is None
    # provenance names the binaries found and never runs them
    prov = codec.provenance()
    assert prov["bpgenc"] == str(opt.resolve()) and len(prov["bpgenc_sha256"]) == 64


FILES = {"bpgenc": Path("/x/bpgenc"), "bpgdec": Path("/x/bpgdec")}


def test_default_command_line_is_the_papers():
    c = BpgCodec()
    args = c.encode_args(FILES, "/t/in.png", "/t/out.bpg", 32, 67, 45)
    assert args == ["/x/bpgenc", "-f", "444", "-b", "8", "-e", "x265", "-m", "8", "-q", "32",
                    "-o", "/t/out.bpg", "/t/in.png"]
    c420 = BpgCodec(subsampling=420, bit_depth=10)
    assert c420.encode_args(FILES, "i", "o", 22, 8, 8)[1:5] == ["-f", "420", "-b", "10"]
    assert c.decode_args(FILES, "a.bpg", "b.png") == ["/x/bpgdec", "-o", "b.png", "a.bpg"]
    assert BpgCodec.quality.low == 0 and BpgCodec.quality.high == 51 and not BpgCodec.quality.higher_is_better


def test_option_validation():
    with pytest.raises(ValueError, match="subsampling"):
        BpgCodec(subsampling="411")
    with pytest.raises(ValueError, match="bit_depth"):
        BpgCodec(bit_depth=16)
    with pytest.raises(ValueError, match="encoder"):
        BpgCodec(encoder="ffmpeg")
    with pytest.raises(ValueError, match="qp=52 out of range 0..51"):
        BpgCodec.quality.check(52)
    with pytest.raises(ValueError, match="timeout must be a number"):
        BpgCodec(timeout=0)


def test_real_bpg_round_trip(real_bpg, tmp_path):
    rgb = make_game_like_frame(45, 67, seed=2)
    psnrs = []
    for qp in (40, 30, 20):
        enc = real_bpg.encode_timed(rgb, qp)
        assert enc.data[:4] == b"BPG\xfb"
        dec = real_bpg.decode_timed(enc.data)
        assert dec.rgb.shape == rgb.shape and dec.rgb.dtype == np.uint8
        psnrs.append(psnr_rgb(rgb, dec.rgb))
    assert psnrs[0] < psnrs[1] < psnrs[2]
    assert real_bpg.provenance()["bpgenc_sha256"]
    info = bpg_header_info(enc.data)
    assert (info["width"], info["height"], info["pixel_format"], info["bit_depth"]) == (67, 45, 3, 8)
    for cut in (4, 8, 9):  # magic, format bytes, width/height: refused before bpgdec runs
        with pytest.raises(CodecError, match="bpg: cannot decode .*-byte bitstream"):
            real_bpg.decode(enc.data[:cut])
    # bpgenc writes picture_data_length = 0 ("to the end of the file"), so a stream cut inside
    # its picture data is not detectable from the format: bpgdec decodes what is there.
    partial = real_bpg.decode(enc.data[: len(enc.data) // 3])
    assert partial.shape == rgb.shape and psnr_rgb(rgb, partial) < psnrs[-1]


def test_real_bpg_provenance_and_version_name_the_binaries(real_bpg):
    prov = real_bpg.provenance()
    assert prov["encode_cmd"].endswith("-f 444 -b 8 -e x265 -m 8 -q {qp} -o out.bpg in.png")
    assert prov["decode_cmd"].endswith("bpgdec -o out.png in.bpg")
    assert prov["bpgenc_sha256"] != prov["bpgdec_sha256"] and len(prov["bpgdec_sha256"]) == 64
    assert real_bpg.version().startswith("bpgenc 0.9.8 sha256:")
    assert real_bpg.version().endswith("[bit_depth=8,encoder=x265,level=8,subsampling=444]")


def test_real_bpg_matches_bpgenc_and_bpgdec_run_by_hand(real_bpg, tmp_path):
    """The wrapper's bytes are bpgenc's bytes, and its pixels bpgdec's pixels (the paper's
    ``bpgenc -q QP -f 444`` with the defaults -b 8 -e x265 -m 8)."""
    rgb = make_game_like_frame(48, 64, seed=5, t=0.4)
    src = tmp_path / "in.png"
    write_png(src, rgb)
    files = real_bpg.locate()
    subprocess.run([files["bpgenc"], "-q", "32", "-f", "444", "-o", tmp_path / "hand.bpg", src], check=True)
    subprocess.run([files["bpgdec"], "-o", tmp_path / "hand.png", tmp_path / "hand.bpg"], check=True)
    enc = real_bpg.encode_timed(rgb, 32)
    assert enc.data == (tmp_path / "hand.bpg").read_bytes()
    hand, _ = read_image_rgb(tmp_path / "hand.png")
    np.testing.assert_array_equal(real_bpg.decode(enc.data), hand)
    assert enc.encode_s > 0 and enc.convert_s > 0


def test_a_forged_huge_header_is_refused_before_looking_for_bpgdec(no_tools_path, monkeypatch):
    forged = BPG_MAGIC + bytes([0x60, 0x00]) + b"\x83\xff\x7f" * 2 + b"\x00" + bytes(64)  # 65535 x 65535
    assert bpg_header_info(forged)["width"] == 65535
    # no bpgdec anywhere: a CodecError (not CodecUnavailable) shows the check ran first
    with pytest.raises(CodecError, match="claims 65535x65535 pixels, more than the 40 Mpx budget"):
        BpgCodec().decode(forged)
    monkeypatch.setenv("CLOUD3D_MAX_IMAGE_PIXELS", "1000")  # the core's budget is the one used
    small = BPG_MAGIC + bytes([0x60, 0x00, 0x40, 0x40, 0x00]) + bytes(16)  # 64 x 64
    with pytest.raises(CodecError, match="claims 64x64 pixels, more than the 0.001 Mpx budget"):
        BpgCodec().decode(small)


def test_bpg_header_parser_refuses_forgeries():
    good = BPG_MAGIC + bytes([0x60, 0x00, 0x43, 0x2D, 0x00, 0x03, 0x92])
    assert bpg_header_info(good)["width"] == 67
    for bad, why in ((b"BPX\xfb" + good[4:], "bad magic"), (good[:7], "ends early"),
                     (BPG_MAGIC + bytes([0x60, 0x00, 0x00, 0x2D, 0x00, 0x01]), "invalid header"),
                     (BPG_MAGIC + bytes([0x60, 0x00, 0x43, 0x2D, 0x7F, 0x01]), "cut short"),
                     (BPG_MAGIC + bytes([0x60, 0x00]) + b"\xff" * 6, "invalid ue7")):
        with pytest.raises(ValueError, match=why):
            bpg_header_info(bad)
