"""``cloud3d codecs build bpg|vtm``: argument checks, archive checks, missing tools, download,
Ctrl-C, and (opt-in, ``CLOUD3D_TEST_CODEC_BUILD=1``) the real builds.

The real builds take ~14 min (BPG) and ~20 min (VTM) on 2 cores, so they only run when
asked for; every other test here runs always, most of them through the CLI.
"""

from __future__ import annotations

import dataclasses
import functools
import http.server
import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tarfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import cli_argv, make_game_like_frame

from baselines.codecs.build import RECIPES, missing_build_tools
from baselines.codecs.sources import check_archive, download
from cloud3d.errors import Cloud3dError
from cloud3d.provenance import sha256_file


def _tar(path: Path, members: dict[str, bytes | None], links: dict[str, str] | None = None) -> Path:
    """A .tar.gz with files (bytes) and folders (None), plus symlinks ``name -> target``."""
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            if data is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
    return path


def _source_tree(name: str, top: str = "proj") -> dict[str, bytes | None]:
    """The marker files of a recipe (enough to pass the archive check, not to build)."""
    return {f"{top}/": None, **{f"{top}/{m}": b"# marker\n" for m in RECIPES[name].markers}}


def test_argument_checks(run_cli, tmp_path):
    proc = run_cli("codecs", "build", "jpeg", "--prefix", tmp_path / "p")
    assert proc.returncode == 2 and "'jpeg' is not one of 'bpg', 'vtm'" in proc.stderr
    proc = run_cli("codecs", "build", "bpg")
    assert proc.returncode == 2 and "--prefix" in proc.stderr
    proc = run_cli("codecs", "build", "bpg", "--prefix", tmp_path / "p", "--jobs", "0")
    assert proc.returncode == 2 and "--jobs" in proc.stderr
    proc = run_cli("codecs", "build", "bpg", "--prefix", tmp_path / "p", "--source", tmp_path / "none.tar.gz")
    assert proc.returncode == 1 and proc.stderr == f"error: --source {tmp_path / 'none.tar.gz'}: no such file\n"
    (tmp_path / "file").write_text("x")
    good = _tar(tmp_path / "good.tar.gz", _source_tree("bpg"))
    proc = run_cli("codecs", "build", "bpg", "--prefix", tmp_path / "file", "--source", good)
    assert proc.returncode == 2 and "is a file" in proc.stderr
    assert not (tmp_path / "p").exists()
    help_text = run_cli("codecs", "build", "--help").stdout
    assert "apt-get install build-essential cmake yasm libpng-dev libjpeg-dev" in help_text
    assert "Example:" in help_text and "export CLOUD3D_BPG_DIR" in help_text


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


BAD_ARCHIVES = {
    "not-a-tar": (lambda p: _write(p, b"this is not an archive" * 100), "not a readable tar archive"),
    "truncated": (lambda p: _write(p, _tar(p, _source_tree("bpg")).read_bytes()[:60]), "not a readable tar archive"),
    "other-project": (lambda p: _tar(p, _source_tree("vtm", "VTM-23.13")),
                      "not a libbpg 0.9.8 .* source archive \\(no Makefile, bpgenc.c, bpgdec.c"),
    "two-tops": (lambda p: _tar(p, {**_source_tree("bpg"), "other/x": b"x"}), "expected one top folder"),
    "dot-dot": (lambda p: _tar(p, {**_source_tree("bpg"), "proj/../../evil": b"x"}), "unsafe path"),
    "absolute": (lambda p: _tar(p, {"/proj/x": b"x"}), "unsafe path"),
    "link-out": (lambda p: _tar(p, _source_tree("bpg"), {"proj/passwd": "../../etc/passwd"}),
                 "link 'proj/passwd' points outside the source tree"),
}


@pytest.mark.parametrize("kind", BAD_ARCHIVES)
def test_bad_archives_are_refused_before_anything_is_written(kind, run_cli, tmp_path):
    make, why = BAD_ARCHIVES[kind]
    archive = make(tmp_path / f"{kind}.tar.gz")
    proc = run_cli("codecs", "build", "bpg", "--prefix", tmp_path / "prefix", "--source", archive)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.startswith(f"error: {archive}: ") and proc.stderr.count("\n") == 1, proc.stderr
    assert re.search(why, proc.stderr), proc.stderr
    assert not (tmp_path / "prefix").exists()


def test_links_inside_the_tree_are_accepted(tmp_path):
    """VTM's own archive holds a certificate symlink within its tree."""
    archive = _tar(tmp_path / "a.tar.gz", {**_source_tree("vtm"), "proj/cfg/a.0": b"cert"}, {"proj/cfg/b.0": "a.0"})
    assert check_archive(archive, RECIPES["vtm"].markers, "VTM") == "proj"


def test_missing_tools_are_named_with_their_apt_packages(run_cli, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    archive = _tar(tmp_path / "src.tar.gz", _source_tree("bpg"))
    proc = run_cli("codecs", "build", "bpg", "--prefix", tmp_path / "prefix", "--source", archive,
                   env={"PATH": str(empty)})
    assert proc.returncode == 1
    assert proc.stderr == (
        "error: cannot build bpg: missing make, cc, c++, cmake, yasm, png.h, jpeglib.h (Debian package(s): "
        "build-essential cmake yasm libpng-dev libjpeg-dev); install the build tools with: "
        "sudo apt-get install build-essential cmake yasm libpng-dev libjpeg-dev\n"
    )
    assert not (tmp_path / "prefix").exists()


def test_one_missing_tool_names_its_package(run_cli, tmp_path, need_build_tools):
    need_build_tools("bpg")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("make", "cc", "c++", "cmake", "nice", "as", "ld"):  # everything but yasm
        if shutil.which(tool):
            (bin_dir / tool).symlink_to(shutil.which(tool))
    archive = _tar(tmp_path / "src.tar.gz", _source_tree("bpg"))
    proc = run_cli("codecs", "build", "bpg", "--prefix", tmp_path / "p", "--source", archive,
                   env={"PATH": str(bin_dir)})
    assert proc.returncode == 1 and "error: cannot build bpg: missing yasm (Debian package(s): yasm);" in proc.stderr


def test_missing_headers_are_found_with_the_real_compiler(need_build_tools):
    need_build_tools("bpg")
    recipe = dataclasses.replace(RECIPES["bpg"], headers=("png.h", "cloud3d_no_such_header.h"))
    assert missing_build_tools(recipe) == ["cloud3d_no_such_header.h"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_download_from_a_server_and_a_clear_error_without_network(tmp_path, run_cli, need_build_tools):
    served = tmp_path / "www"
    served.mkdir()
    archive = _tar(served / "libbpg-0.9.8.tar.gz", _source_tree("bpg", "libbpg-0.9.8"))
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/libbpg-0.9.8.tar.gz"
        got = download(url, tmp_path / "got.tar.gz", log=lambda line: None)
        assert got.read_bytes() == archive.read_bytes()
        assert check_archive(got, RECIPES["bpg"].markers, "libbpg") == "libbpg-0.9.8"
        with pytest.raises(Cloud3dError, match="cannot download .*missing.tar.gz: HTTP 404 File not found; without network"):
            download(url.replace("libbpg-0.9.8", "missing"), tmp_path / "x", log=lambda line: None)
    finally:
        server.shutdown()
    need_build_tools("bpg")
    dead = f"http://127.0.0.1:{_free_port()}/libbpg-0.9.8.tar.gz"
    proc = run_cli("codecs", "build", "bpg", "--prefix", tmp_path / "prefix", "--url", dead)
    assert proc.returncode == 1 and proc.stderr.startswith(f"error: cannot download {dead}: ")
    assert "pass --source FILE with a local copy of the archive" in proc.stderr
    assert list((tmp_path / "prefix").iterdir()) == []  # the private build folder is gone


def _fake_libbpg(tmp_path: Path, rules: str) -> Path:
    """A libbpg-shaped source archive whose Makefile holds ``rules`` (instead of 14 minutes of C),
    and refuses to run unless the build turned the SDL viewer off, as the recipe must."""
    makefile = ("USE_BPGVIEW=y\nifdef USE_BPGVIEW\n$(error the viewer was not turned off)\nendif\n"
                + rules).encode()
    return _tar(tmp_path / "libbpg-fake.tar.gz", {**_source_tree("bpg", "libbpg-0.9.8"),
                                                  "libbpg-0.9.8/Makefile": makefile})


def test_a_failing_build_names_the_command_and_keeps_the_log(run_cli, tmp_path, need_build_tools):
    need_build_tools("bpg")
    archive = _fake_libbpg(tmp_path, 'bpgenc:\n\t@echo "[ 42%] x265/source/common/dct.cpp"\n'
                                     '\t@echo "dct.cpp:1: error: no space left" >&2; exit 3\nbpgdec:\n\ttrue\n')
    prefix = tmp_path / "prefix"
    proc = run_cli("codecs", "build", "bpg", "--prefix", prefix, "--source", archive, "--jobs", "1")
    assert proc.returncode == 1
    err = proc.stderr.splitlines()[-1]
    assert err.startswith("error: bpg build failed at `make -j1 bpgenc bpgdec` (exit status 2): ")
    assert "dct.cpp:1: error: no space left" in err and err.endswith(f"full log: {prefix / 'build-bpg.log'}")
    assert sorted(p.name for p in prefix.iterdir()) == ["build-bpg.log"]  # build folder removed, nothing installed
    assert "[ 42%] x265/source/common/dct.cpp" in (prefix / "build-bpg.log").read_text()


def test_a_build_installs_checks_and_says_what_to_export(run_cli, tmp_path, need_build_tools, real_bpg):
    """The whole command with a stand-in Makefile that copies the reference binaries: unpack,
    prepare, make, install, the real round trip, the record and the export line."""
    need_build_tools("bpg")
    real = real_bpg.locate()
    archive = _fake_libbpg(tmp_path, f"bpgenc:\n\tcp {real['bpgenc']} bpgenc\n"
                                     f"bpgdec:\n\tcp {real['bpgdec']} bpgdec\n")
    prefix = tmp_path / "prefix"
    proc = run_cli("codecs", "build", "bpg", "--prefix", prefix, "--source", archive, "--jobs", "1")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1] == f"  export CLOUD3D_BPG_DIR={prefix}"
    assert "round trip ok" in proc.stdout and "bpgenc 0.9.8 sha256:" in proc.stdout
    for step in ("[1/4] unpacking", "[2/4] building", "[3/4] installing", "[4/4] checking"):
        assert step in proc.stderr
    assert sorted(p.name for p in prefix.iterdir()) == ["bpgdec", "bpgenc", "build-bpg.json", "build-bpg.log"]
    assert (prefix / "bpgenc").read_bytes() == Path(real["bpgenc"]).read_bytes()
    record = json.loads((prefix / "build-bpg.json").read_text())
    assert record["source_sha256"] == sha256_file(archive) and record["commands"] == ["make -j1 bpgenc bpgdec"]
    assert record["installed_sha256"]["bpgdec"] == sha256_file(real["bpgdec"])
    assert record["smoke_test"]["bytes"] > 0 and record["smoke_test"]["psnr"] > 30
    listing = run_cli("codecs", env={"CLOUD3D_BPG_DIR": str(prefix)}).stdout
    assert f"bpgenc 0.9.8 sha256:{sha256_file(real['bpgenc'])[:12]}" in listing


def _cwds_under(folder: Path) -> list[int]:
    """Process ids whose working directory is inside ``folder``."""
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if Path(os.readlink(d / "cwd")).is_relative_to(folder):
                    pids.append(int(d.name))
            except OSError:
                continue
    return pids


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_interrupting_a_real_build_stops_every_compiler_and_installs_nothing(
        sig, tmp_path, need_build_tools, refcodecs_source):
    need_build_tools("bpg")
    prefix = tmp_path / "prefix"
    # SIGINT at its default even when pytest runs as a background job (which ignores it)
    proc = subprocess.Popen(cli_argv("codecs", "build", "bpg", "--prefix", prefix, "--source",
                                     refcodecs_source("bpg"), "--jobs", "1"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 120
        workers: list[int] = []
        while time.monotonic() < deadline and not workers:  # wait until compilers run in the build folder
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.5)
            workers = [p for p in _cwds_under(prefix) if p != proc.pid]
        assert workers, "the build never started"
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "build interrupted: removed" in err and "interrupted: the build was stopped" in err
    assert sorted(p.name for p in prefix.iterdir()) == ["build-bpg.log"]  # no binaries, no build folder
    assert _cwds_under(prefix) == []
    for pid in workers:
        assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]


@pytest.fixture()
def opt_in_build():
    if os.environ.get("CLOUD3D_TEST_CODEC_BUILD") != "1":
        pytest.skip("real codec builds take 14-20 min on 2 cores: set CLOUD3D_TEST_CODEC_BUILD=1 to run them")


@pytest.mark.slow
@pytest.mark.timeout(3 * 3600)
@pytest.mark.parametrize("name", ["bpg", "vtm"])
def test_real_build_from_the_source_archive(name, opt_in_build, tmp_path, run_cli, need_build_tools,
                                            refcodecs_source):
    """Build for real, then use the binaries through `cloud3d codecs` and a round trip; where the
    reference binaries are configured too, both must code a frame to the same bytes."""
    from baselines.codecs.bpg import BpgCodec
    from baselines.codecs.vtm import VtmCodec

    need_build_tools(name)
    prefix = tmp_path / "built"
    proc = run_cli("codecs", "build", name, "--prefix", prefix, "--source", refcodecs_source(name),
                   timeout=3 * 3600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    env_var = RECIPES[name].env_var
    assert f"export {env_var}={prefix}" in proc.stdout
    record = json.loads((prefix / f"build-{name}.json").read_text())
    assert record["smoke_test"]["psnr"] > 25 and record["build_s"] > 0
    listing = run_cli("codecs", env={env_var: str(prefix)}).stdout
    assert listing.split(f"{name}  [", 1)[1].startswith("available]")
    cls = BpgCodec if name == "bpg" else VtmCodec
    built = cls(**{cls.dir_option: str(prefix)})
    rgb = make_game_like_frame(48, 64, seed=4)
    data = built.encode(rgb, 32)
    assert built.decode(data).shape == rgb.shape
    reference = cls()
    if reference.availability() is None and reference.locate() != built.locate():
        assert data == reference.encode(rgb, 32)
        np.testing.assert_array_equal(built.decode(data), reference.decode(data))
