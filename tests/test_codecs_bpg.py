"""BPG wrapper: discovery, availability messages, command lines, tool errors; real round trip if installed."""

from __future__ import annotations

import shutil
import stat
import sys

import numpy as np
import pytest
from helpers import make_game_like_frame

from baselines.codecs.base import CodecError, CodecUnavailable
from baselines.codecs.bpg import BPG_MAGIC, ENV_VAR, BpgCodec, bpg_header_info
from baselines.codecs.external import find_binary, run_tool
from baselines.metrics import psnr_rgb


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
    msg = BpgCodec.availability()
    assert msg.startswith("bpgenc and bpgdec not found")
    assert "https://bellard.org/bpg/" in msg and ENV_VAR in msg and "bpg_dir" in msg
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
    assert BpgCodec(bpg_dir=str(tmp_path / "opt")).availability() is None
    assert BpgCodec.availability() is None


def test_default_command_line_is_the_papers():
    c = BpgCodec()
    args = c.encode_args("/x/bpgenc", 32, "/t/in.png", "/t/out.bpg")
    assert args == ["/x/bpgenc", "-f", "444", "-b", "8", "-e", "x265", "-m", "8", "-q", "32",
                    "-o", "/t/out.bpg", "/t/in.png"]
    c420 = BpgCodec(subsampling=420, bit_depth=10)
    assert c420.encode_args("bpgenc", 22, "i", "o")[1:5] == ["-f", "420", "-b", "10"]
    assert BpgCodec.decode_args("/x/bpgdec", "a.bpg", "b.png") == ["/x/bpgdec", "-o", "b.png", "a.bpg"]
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


def test_run_tool_reports_exit_status_stderr_tail_and_timeout():
    prog = "import sys; sys.stderr.write('line1\\n' + 'x' * 2000 + '\\nreal reason: bad header'); sys.exit(3)"
    with pytest.raises(CodecError) as exc:
        run_tool([sys.executable, "-c", prog], 30, "bpg decode")
    msg = str(exc.value)
    assert msg.startswith("bpg decode: ") and "status 3" in msg and msg.endswith("real reason: bad header")
    assert len(msg) < 1000
    with pytest.raises(CodecError, match="timed out after 0.5 s"):
        run_tool([sys.executable, "-c", "import time; time.sleep(5)"], 0.5, "bpg encode")
    with pytest.raises(CodecError, match="cannot run"):
        run_tool(["/nonexistent/bpgenc"], 5, "bpg encode")


@pytest.fixture()
def real_bpg():
    reason = BpgCodec.availability()
    if reason:
        pytest.skip(f"real BPG round trip skipped: {reason}")
    return BpgCodec()


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
        with pytest.raises(CodecError, match="cannot decode"):
            real_bpg.decode(enc.data[:cut])
    # bpgenc writes picture_data_length = 0 ("to the end of the file"), so a stream cut inside
    # its picture data is not detectable from the format: bpgdec decodes what is there.
    partial = real_bpg.decode(enc.data[: len(enc.data) // 3])
    assert partial.shape == rgb.shape and psnr_rgb(rgb, partial) < psnrs[-1]


def test_real_bpg_provenance_and_version_name_the_binaries(real_bpg):
    prov = real_bpg.provenance()
    assert prov["encode_cmd"].endswith("-f 444 -b 8 -e x265 -m 8 -q {qp} -o out.bpg in.png")
    assert prov["bpgenc_sha256"] != prov["bpgdec_sha256"] and len(prov["bpgdec_sha256"]) == 64
    assert real_bpg.version().startswith("bpgenc 0.9.8 sha256:")


def test_bpg_header_parser_refuses_forgeries():
    good = BPG_MAGIC + bytes([0x60, 0x00, 0x43, 0x2D, 0x00, 0x03, 0x92])
    assert bpg_header_info(good)["width"] == 67
    for bad, why in ((b"BPX\xfb" + good[4:], "bad magic"), (good[:7], "ends early"),
                     (BPG_MAGIC + bytes([0x60, 0x00, 0x00, 0x2D, 0x00, 0x01]), "invalid header"),
                     (BPG_MAGIC + bytes([0x60, 0x00, 0x43, 0x2D, 0x7F, 0x01]), "cut short"),
                     (BPG_MAGIC + bytes([0x60, 0x00]) + b"\xff" * 6, "invalid ue7")):
        with pytest.raises(ValueError, match=why):
            bpg_header_info(bad)
