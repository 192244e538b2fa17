"""BPG wrapper: discovery, availability messages, command lines, tool errors; real round trip if installed."""

from __future__ import annotations

import shutil
import stat
import sys

import numpy as np
import pytest
from conftest import make_game_like_frame

from baselines.codecs.base import CodecError, CodecUnavailable
from baselines.codecs.bpg import ENV_VAR, BpgCodec
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
    with pytest.raises(CodecError):
        real_bpg.decode(enc.data[: len(enc.data) // 3])
