"""ExternalCodec, the base of BPG and VTM: discovery, temp files, timing, errors, provenance.

The base is exercised through a small external codec defined here whose encoder and
decoder are real programs (Python scripts written to a temporary folder, run as
executables): a zlib "codec" that stores the PNG it is given. The same checks of
provenance then run on every registered ExternalCodec (BPG, VTM) with stand-in
executables, because provenance never runs the programs.
"""

from __future__ import annotations

import os
import shutil
import stat
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import make_game_like_frame

from baselines.codecs.base import CodecError, CodecUnavailable, QualityParam
from baselines.codecs.external import ExternalCodec, find_binary, program_output, run_tool
from baselines.codecs.registry import all_codecs
from cloud3d.imageio import encode_png, read_image_rgb
from cloud3d.provenance import sha256_file

ZENC = """\
import sys, time, zlib
mode, src, out = sys.argv[2], sys.argv[4], sys.argv[6]
if mode == "fail":
    sys.stderr.write("zenc: lots of noise\\n" + "x" * 3000 + "\\nzenc: the real reason")
    sys.exit(3)
if mode == "sleep":
    time.sleep(30)
if mode == "spin":  # 0.3 s of CPU
    t = time.process_time()
    while time.process_time() - t < 0.3:
        pass
if mode != "silent":
    open(out, "wb").write(zlib.compress(open(src, "rb").read()))
print("zenc wrote", out)
"""
ZDEC = """\
import sys, zlib
open(sys.argv[2], "wb").write(zlib.decompress(open(sys.argv[1], "rb").read()))
"""


class ZlibToolCodec(ExternalCodec):
    """A lossless external codec: ``zenc --mode M --in IN --out OUT``, ``zdec IN OUT``."""

    name = "ztool"
    quality = QualityParam("level", "ignored", 0, 9, default_sweep=(6,))
    options_defaults = {"mode": "ok", "ztool_dir": "", "timeout": 30}
    programs = {"zenc": ("zenc-static", "zenc"), "zdec": ("zdec",)}
    dir_option, env_var, install_hint = "ztool_dir", "ZTOOL_DIR", "write the scripts"
    extension = ".z"

    def encode_args(self, files, src, bitstream, qp, width, height):
        return [str(files["zenc"]), "--mode", self.options["mode"], "--in", str(src), "--out", str(bitstream),
                f"--level={qp}", f"--size={width}x{height}"]

    def decode_args(self, files, bitstream, out):
        return [str(files["zdec"]), str(bitstream), str(out)]

    def write_input(self, rgb, path):
        path.write_bytes(encode_png(rgb, level=1))

    def check_bitstream(self, data):
        if data[:1] != b"x":
            raise ValueError("no zlib header")
        return {"n": len(data)}

    def read_output(self, path, info):
        return read_image_rgb(path)[0]

    def parse_encoder_output(self, text):
        return {"said": text.strip()}


def _script(folder: Path, name: str, body: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    p = folder / name
    p.write_text(f"#!{sys.executable}\n{body}")
    p.chmod(p.stat().st_mode | stat.S_IXUSR)
    return p


@pytest.fixture()
def ztools(tmp_path, monkeypatch):
    """The two programs in ``tmp_path/tools`` (not on PATH), and a private temp folder."""
    tools = tmp_path / "tools"
    _script(tools, "zenc", ZENC)
    _script(tools, "zdec", ZDEC)
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.delenv("ZTOOL_DIR", raising=False)
    temp = tmp_path / "temp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    return tools


def test_round_trip_timing_and_temp_folders(ztools, tmp_path):
    codec = ZlibToolCodec(ztool_dir=str(ztools))
    rgb = make_game_like_frame(30, 41, seed=1)
    enc = codec.encode_timed(rgb, 6)
    assert enc.data[:1] == b"x" and enc.details["said"].startswith("zenc wrote ")
    assert enc.encode_s > 0 and enc.convert_s > 0  # the process alone vs writing the PNG + reading back
    dec = codec.decode_timed(enc.data)
    np.testing.assert_array_equal(dec.rgb, rgb)
    assert dec.decode_s > 0 and dec.convert_s > 0
    assert 0 < enc.details["encoder_cpu_s"] < enc.encode_s + 0.5 and dec.details["decoder_cpu_s"] > 0
    spun = ZlibToolCodec(ztool_dir=str(ztools), mode="spin").encode_timed(rgb, 6)
    assert spun.details["encoder_cpu_s"] >= 0.3 and spun.encode_s >= 0.3  # the program's CPU, not ours
    assert codec.encode(rgb, 6) == enc.data  # the derived pair
    np.testing.assert_array_equal(codec.decode(enc.data), rgb)
    assert list((tmp_path / "temp").iterdir()) == []  # every call cleans its temporary folder


def test_provenance_and_version_come_from_the_argument_lists(ztools):
    codec = ZlibToolCodec(ztool_dir=str(ztools), mode="ok")
    prov = codec.provenance()
    assert prov["zenc"] == str((ztools / "zenc").resolve())
    assert prov["zenc_sha256"] == sha256_file(ztools / "zenc") and prov["zdec_sha256"] == sha256_file(ztools / "zdec")
    assert prov["encode_cmd"] == f"{prov['zenc']} --mode ok --in in.png --out out.z --level={{qp}} --size={{W}}x{{H}}"
    assert prov["decode_cmd"] == f"{prov['zdec']} in.z out.png"
    # folder and timeout do not change a bitstream, so they stay out of the version (a resume key)
    assert codec.version() == f"zenc sha256:{prov['zenc_sha256'][:12]} [mode=ok]"
    assert ZlibToolCodec(ztool_dir=str(ztools), timeout=5).version() == codec.version()


def test_discovery_order_option_env_path_and_name_order(ztools, tmp_path, monkeypatch):
    other = tmp_path / "other"
    static = _script(other, "zenc-static", ZENC)
    _script(other, "zdec", ZDEC)
    monkeypatch.setenv("PATH", str(ztools))
    assert ZlibToolCodec().locate()["zenc"] == (ztools / "zenc").resolve()
    monkeypatch.setenv("ZTOOL_DIR", str(other))
    assert ZlibToolCodec().locate()["zenc"] == static.resolve()  # env before PATH; first name first
    assert ZlibToolCodec(ztool_dir=str(ztools)).locate()["zenc"] == (ztools / "zenc").resolve()
    assert find_binary(["nope", "zdec"], ztools) == (ztools / "zdec").resolve()


def test_unavailable_names_what_is_missing_and_where_it_looked(ztools, tmp_path):
    (ztools / "zdec").unlink()
    codec = ZlibToolCodec(ztool_dir=str(ztools))
    msg = codec.availability()
    assert msg == f"zdec not found (looked in {ztools}, $ZTOOL_DIR, PATH): write the scripts"
    with pytest.raises(CodecUnavailable, match="zdec not found"):
        codec.encode(make_game_like_frame(8, 8, 0), 6)
    assert "zenc-static/zenc and zdec not found" in ZlibToolCodec().availability()


def test_program_failures_are_codec_errors_with_the_output_tail(ztools, tmp_path):
    rgb = make_game_like_frame(8, 8, 0)
    with pytest.raises(CodecError) as exc:
        ZlibToolCodec(ztool_dir=str(ztools), mode="fail").encode(rgb, 6)
    msg = str(exc.value)
    assert msg.startswith("ztool encode: zenc exited with status 3: ...") and msg.endswith("zenc: the real reason")
    assert len(msg) < 1000
    with pytest.raises(CodecError, match=r"ztool encode: zenc wrote no bitstream: zenc wrote .*out\.z"):
        ZlibToolCodec(ztool_dir=str(ztools), mode="silent").encode(rgb, 6)
    t0 = time.perf_counter()
    with pytest.raises(CodecError, match="ztool encode: zenc timed out after 0.5 s"):
        ZlibToolCodec(ztool_dir=str(ztools), mode="sleep", timeout=0.5).encode(rgb, 6)
    assert time.perf_counter() - t0 < 10
    assert list((tmp_path / "temp").iterdir()) == []


def test_bad_input_is_refused_before_any_program_runs(ztools, tmp_path):
    codec = ZlibToolCodec(ztool_dir=str(tmp_path / "empty"))  # no programs: a CodecUnavailable if reached
    with pytest.raises(CodecError, match=r"ztool: cannot decode 5-byte bitstream \(corrupt or truncated\?\): no zlib"):
        codec.decode(b"hello")
    with pytest.raises(CodecError, match=r"ztool: expected an \(H, W, 3\) uint8 RGB array"):
        codec.encode(np.zeros((4, 4), np.uint8), 6)
    with pytest.raises(ValueError, match="level=10 out of range"):
        codec.encode(make_game_like_frame(8, 8, 0), 10)
    with pytest.raises(ValueError, match="ztool: option timeout must be a number"):
        ZlibToolCodec(timeout="soon")


def test_program_output_is_cached_until_the_binary_changes(tmp_path):
    prog = _script(tmp_path, "ver", "import sys; print('version 1'); sys.exit(1)")
    assert program_output(prog, "-h").strip() == "version 1"
    prog.write_text(f"#!{sys.executable}\nprint('version 2')\n")
    os.utime(prog, ns=(time.time_ns(), time.time_ns() + 10**9))
    assert program_output(prog, "-h").strip() == "version 2"


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


def _external_codecs() -> list[type[ExternalCodec]]:
    return [c for c in all_codecs().values() if issubclass(c, ExternalCodec)]


def test_bpg_and_vtm_are_external_codecs():
    assert {c.name for c in _external_codecs()} >= {"bpg", "vtm"}


@pytest.mark.parametrize("cls", _external_codecs(), ids=lambda c: c.name)
def test_every_external_codec_gives_provenance_with_placeholders(cls, tmp_path, monkeypatch):
    """Provenance is built from the same argument-list methods as the real calls, with ``{qp}``,
    ``{W}``, ``{H}`` in place of numbers; a wrapper that computes with them (the old BPG
    ``int('{qp}')`` bug, which stopped every bpg bench) fails here."""
    folder = tmp_path / "bin"
    folder.mkdir()
    for names in cls.programs.values():
        shutil.copy(shutil.which("true") or "/bin/true", folder / names[-1])
    (folder / "encoder_intra_vtm.cfg").write_text("# stand-in\n")
    monkeypatch.setenv("PATH", str(tmp_path))
    codec = cls(**{cls.dir_option: str(folder)})
    assert codec.availability() is None
    prov = codec.provenance()
    assert "{qp}" in prov["encode_cmd"] and prov["decode_cmd"]
    for role in cls.programs:
        assert prov[f"{role}_sha256"] == sha256_file(folder / cls.programs[role][-1])
    assert "sha256:" in codec.version()
