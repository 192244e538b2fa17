"""Build the reference codecs from their official sources: ``cloud3d codecs build bpg|vtm``.

Neither libbpg (``bpgenc``/``bpgdec``) nor VTM (``EncoderApp``/``DecoderApp``) is
packaged by Debian or PyPI. :func:`build_codec` turns a source archive into
binaries in a folder of the user's choice:

1. check a local source archive (``source=FILE``) before anything else: one top
   folder, no absolute or ``..`` paths, no links out of the tree, at most
   :data:`MAX_UNPACKED_BYTES`, and the project's own marker files (so a wrong
   archive is refused in a second, not after a build);
2. check that the build tools are installed (one message naming the apt packages);
3. without ``source``, download the archive from the official address (``url``,
   default :attr:`Recipe.url`) and check it the same way;
4. unpack into a private folder ``PREFIX/.cloud3d-build-NAME-*`` and run the
   recipe's commands (argument lists, ``nice``, their own process group, output
   to ``PREFIX/build-NAME.log``);
5. copy the products into ``PREFIX`` (each file renamed into place), run a tiny
   real round trip through the codec wrapper, write ``PREFIX/build-NAME.json``
   (source sha256, commands, tool versions, seconds) and remove the build folder.

A failed or interrupted (Ctrl-C) build kills the whole process group, removes the
build folder and installs nothing; the log stays for the failure case.

The recipes follow ``../shared/refcodecs/README.md``: libbpg 0.9.8 with its SDL viewer
turned off (``make bpgenc bpgdec``; x265 is built inside, ~14 min on 2 cores), VTM
with OpenSSL off (``cmake`` + ``cmake --build --target EncoderApp DecoderApp``,
~20 min on 2 cores).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from baselines.codecs.sources import check_archive, download, unpack
from cloud3d.errors import Cloud3dError
from cloud3d.provenance import sha256_file, tool_version, utc_stamp

#: what every recipe may need, as one apt-get line
APT_PACKAGES = "build-essential cmake yasm libpng-dev libjpeg-dev"
#: the Debian package that provides each program or header
APT_PACKAGE_OF = {"make": "build-essential", "cc": "build-essential", "c++": "build-essential",
                  "cmake": "cmake", "yasm": "yasm", "png.h": "libpng-dev", "jpeglib.h": "libjpeg-dev"}


@dataclass(frozen=True)
class Recipe:
    """How one codec is built.

    ``markers`` are paths (relative to the archive's top folder) that identify the
    project; ``products`` maps an installed file name to a glob (relative to the top
    folder) that finds it after the build.
    """

    name: str
    what: str
    url: str
    markers: tuple[str, ...]
    programs: tuple[str, ...]
    headers: tuple[str, ...]
    products: dict[str, str]
    env_var: str
    duration: str

    def commands(self, jobs: int) -> list[list[str]]:
        """The build commands, run in the source folder."""
        if self.name == "bpg":
            return [["make", f"-j{jobs}", "bpgenc", "bpgdec"]]
        return [["cmake", "-S", ".", "-B", "build", "-DCMAKE_BUILD_TYPE=Release", "-DENABLE_SEARCH_OPENSSL=OFF"],
                ["cmake", "--build", "build", f"-j{jobs}", "--target", "EncoderApp", "DecoderApp"]]

    def prepare(self, top: Path) -> None:
        """Edit the unpacked source before building (libbpg: no SDL viewer)."""
        if self.name == "bpg":
            mk = top / "Makefile"
            text = mk.read_text()
            mk.write_text(re.sub(r"(?m)^USE_BPGVIEW=y", "#USE_BPGVIEW=y", text))


RECIPES: dict[str, Recipe] = {
    "bpg": Recipe(
        name="bpg", what="libbpg 0.9.8 (bpgenc, bpgdec with bundled x265)",
        url="https://bellard.org/bpg/libbpg-0.9.8.tar.gz",
        markers=("Makefile", "bpgenc.c", "bpgdec.c", "x265/source/CMakeLists.txt"),
        programs=("make", "cc", "c++", "cmake", "yasm"), headers=("png.h", "jpeglib.h"),
        products={"bpgenc": "bpgenc", "bpgdec": "bpgdec"},
        env_var="CLOUD3D_BPG_DIR", duration="about 14 min on 2 cores",
    ),
    "vtm": Recipe(
        name="vtm", what="VTM 23.13 (EncoderApp, DecoderApp, all-intra config)",
        url="https://vcgit.hhi.fraunhofer.de/jvet/VVCSoftware_VTM/-/archive/VTM-23.13/VVCSoftware_VTM-VTM-23.13.tar.gz",
        markers=("CMakeLists.txt", "source/App/EncoderApp/CMakeLists.txt", "cfg/encoder_intra_vtm.cfg"),
        programs=("make", "cc", "c++", "cmake"), headers=(),
        products={"EncoderApp": "bin/**/release/EncoderApp", "DecoderApp": "bin/**/release/DecoderApp",
                  "encoder_intra_vtm.cfg": "cfg/encoder_intra_vtm.cfg"},
        env_var="CLOUD3D_VTM_DIR", duration="about 20 min on 2 cores",
    ),
}

Log = Callable[[str], None]


def missing_build_tools(recipe: Recipe) -> list[str]:
    """Programs (on PATH) and C headers (through ``cc -E``) the recipe needs but cannot find."""
    missing = [p for p in recipe.programs if shutil.which(p) is None]
    if "cc" in missing:
        return missing + list(recipe.headers)  # headers cannot be checked without a compiler
    for header in recipe.headers:
        proc = subprocess.run(["cc", "-E", "-x", "c", "-"], input=f"#include <{header}>\n".encode(),
                              capture_output=True, timeout=60, check=False)
        if proc.returncode != 0:
            missing.append(header)
    return missing


def check_build_tools(recipe: Recipe) -> None:
    """Raise :class:`Cloud3dError` naming what is missing and the apt packages that provide it."""
    missing = missing_build_tools(recipe)
    if missing:
        pkgs = " ".join(dict.fromkeys(APT_PACKAGE_OF[m] for m in missing))
        raise Cloud3dError(
            f"cannot build {recipe.name}: missing {', '.join(missing)} (Debian package(s): {pkgs}); "
            f"install the build tools with: sudo apt-get install {APT_PACKAGES}"
        )


def _run_logged(argv: list[str], cwd: Path, logf, nice: int, log: Log) -> None:
    """Run one build command in its own process group, output to ``logf`` and a progress bar.

    Ctrl-C (KeyboardInterrupt) or any error kills the whole group before propagating.
    """
    from tqdm import tqdm

    full = (["nice", "-n", str(nice)] if nice else []) + argv
    logf.write(f"$ {' '.join(full)}\n")
    logf.flush()
    proc = subprocess.Popen(full, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    pct = re.compile(rb"^\[\s*(\d+)%\]")
    try:
        with tqdm(desc=" ".join(argv[:2]), unit="line", leave=False) as bar:
            for line in proc.stdout:  # type: ignore[union-attr]
                logf.write(line.decode("utf-8", "replace"))
                bar.update(1)
                if m := pct.match(line):
                    bar.set_postfix_str(f"{int(m.group(1))}% of a cmake target", refresh=False)
        rc = proc.wait()
    except BaseException:
        _kill_group(proc)
        raise
    logf.flush()
    if rc != 0:
        raise subprocess.CalledProcessError(rc, full)


def _kill_group(proc: subprocess.Popen) -> None:
    """Stop a build command and every process it started (SIGTERM, then SIGKILL after 10 s)."""
    for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 10.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=wait)
            break
        except subprocess.TimeoutExpired:
            continue
    # wait until the group is gone (children of make may outlive make by a moment)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)


def _find_product(top: Path, pattern: str) -> Path:
    found = sorted(p for p in top.glob(pattern) if p.is_file())
    if not found:
        raise Cloud3dError(f"the build finished but {pattern} was not produced (see the log)")
    return found[0]


def _install(products: dict[str, Path], prefix: Path) -> dict[str, str]:
    """Copy each product to ``prefix/NAME``: all to temporary names first, then renamed into
    place one after the other (an older install stays whole until the copies are done).
    Returns the SHA-256 of each installed file."""
    staged = {}
    try:
        for name, src in products.items():
            staged[name] = prefix / f".{name}.installing"
            shutil.copy2(src, staged[name])
    except BaseException:
        for tmp in staged.values():
            tmp.unlink(missing_ok=True)
        raise
    for name, tmp in staged.items():
        os.replace(tmp, prefix / name)
    return {name: sha256_file(prefix / name) for name in products}


def smoke_test(name: str, prefix: Path) -> dict[str, Any]:
    """One tiny real round trip through the codec wrapper with the binaries in ``prefix``.

    Returns ``bytes``, ``psnr`` (dB, RGB) and the codec's ``version``; raises
    :class:`Cloud3dError` when the binaries do not work.
    """
    import numpy as np

    from baselines.codecs.bpg import BpgCodec
    from baselines.codecs.vtm import VtmCodec
    from baselines.metrics import psnr_rgb

    codec = BpgCodec(bpg_dir=str(prefix)) if name == "bpg" else VtmCodec(vtm_dir=str(prefix))
    outside = [str(p) for p in codec.locate().values() if p.parent != prefix.resolve()]
    if outside:
        raise Cloud3dError(f"{name}: the round trip would use {', '.join(outside)}, not the binaries in {prefix}")
    yy, xx = np.mgrid[0:32, 0:48]
    rgb = np.stack([xx * 5, yy * 7, 255 - xx * 3], axis=-1).clip(0, 255).astype(np.uint8)
    data = codec.encode_timed(rgb, 27).data
    rec = codec.decode_timed(data).rgb
    if rec.shape != rgb.shape:
        raise Cloud3dError(f"{name}: the built binaries decoded {rec.shape}, expected {rgb.shape}")
    return {"bytes": len(data), "psnr": round(psnr_rgb(rgb, rec), 2), "version": codec.version()}


def build_codec(name: str, prefix: str | os.PathLike, source: str | os.PathLike | None = None,
                url: str | None = None, jobs: int | None = None, nice: int = 10,
                keep_build: bool = False, log: Log = print) -> dict[str, Any]:
    """Build codec ``name`` (``bpg`` or ``vtm``) into ``prefix``; returns the build record.

    Args:
        name: a key of :data:`RECIPES`.
        prefix: folder that receives the binaries (created if needed).
        source: local source archive; when None it is downloaded from ``url``
            (default: the recipe's official address).
        jobs: parallel compile jobs (default: all cores).
        nice: niceness of the build commands (0 = normal priority).
        keep_build: keep the unpacked source and objects (for debugging).
        log: receives one line per step.

    Raises:
        Cloud3dError: unknown codec, missing tools, bad archive, failed build or smoke test.
        KeyboardInterrupt: on Ctrl-C or SIGTERM, after the build's processes are stopped
            and its folder removed (nothing is installed).
    """
    with _sigterm_as_interrupt():
        return _build(name, prefix, source, url, jobs, nice, keep_build, log)


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """Treat SIGTERM like Ctrl-C while building, so ``kill PID`` also stops the compilers
    (they run in their own process group and would otherwise outlive us)."""
    def handler(signum, frame):
        raise KeyboardInterrupt

    try:
        old = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def _build(name: str, prefix: str | os.PathLike, source, url, jobs, nice, keep_build, log) -> dict[str, Any]:
    if name not in RECIPES:
        raise Cloud3dError(f"unknown codec {name!r} to build; choose one of: {', '.join(RECIPES)}")
    recipe = RECIPES[name]
    jobs = jobs or os.cpu_count() or 1
    if source is not None and not Path(source).is_file():
        raise Cloud3dError(f"--source {source}: no such file")
    prefix = Path(prefix).resolve()
    if prefix.exists() and not prefix.is_dir():
        raise Cloud3dError(f"--prefix {prefix}: exists and is not a folder")
    top = check_archive(Path(source), recipe.markers, recipe.what) if source else None
    check_build_tools(recipe)
    prefix.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".cloud3d-build-{name}-", dir=prefix))
    logpath = prefix / f"build-{name}.log"
    t_start, started = time.perf_counter(), utc_stamp()
    installed: dict[str, str] = {}
    try:
        archive = Path(source).resolve() if source else download(url or recipe.url, work / "source.tar.gz", log)
        top = top or check_archive(archive, recipe.markers, recipe.what)
        digest = sha256_file(archive)
        log(f"[1/4] unpacking {archive.name} (sha256 {digest[:16]}...)")
        unpack(archive, work / "src")
        srcdir = work / "src" / top
        recipe.prepare(srcdir)
        commands = recipe.commands(jobs)
        log(f"[2/4] building {recipe.what} with {jobs} job(s), nice {nice}: {recipe.duration}; "
            f"log: {logpath}")
        t_build = time.perf_counter()
        with open(logpath, "w") as logf:
            for argv in commands:
                try:
                    _run_logged(argv, srcdir, logf, nice, log)
                except subprocess.CalledProcessError as exc:
                    lines = [ln.strip() for ln in logpath.read_text(errors="replace").splitlines() if ln.strip()]
                    last = " | ".join(lines[-6:])
                    raise Cloud3dError(
                        f"{name} build failed at `{' '.join(argv)}` (exit status {exc.returncode}): "
                        f"{last[-600:]} -- full log: {logpath}"
                    ) from None
        build_s = time.perf_counter() - t_build
        log(f"[3/4] installing into {prefix}")
        installed = _install({n: _find_product(srcdir, pat) for n, pat in recipe.products.items()}, prefix)
        log("[4/4] checking the binaries with a real round trip")
        check = smoke_test(name, prefix)
    except BaseException as exc:
        interrupted = isinstance(exc, KeyboardInterrupt)
        if keep_build and not interrupted:
            log(f"build folder kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
        if interrupted:
            done = (f"{', '.join(installed)} were installed but not checked" if installed
                    else "nothing was installed")
            log(f"build interrupted: removed {work}; {done} in {prefix}")
        raise
    if keep_build:
        log(f"build folder kept: {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    record = {
        "codec": name, "what": recipe.what, "prefix": str(prefix), "source": str(archive) if source else (url or recipe.url),
        "source_sha256": digest, "commands": [" ".join(c) for c in commands], "jobs": jobs, "nice": nice,
        "started": started, "finished": utc_stamp(), "build_s": round(build_s, 1),
        "total_s": round(time.perf_counter() - t_start, 1), "installed_sha256": installed,
        "compiler": tool_version(["cc", "--version"]), "cmake": tool_version(["cmake", "--version"]),
        "smoke_test": check,
    }
    from cloud3d.atomic import atomic_write_text

    atomic_write_text(prefix / f"build-{name}.json", json.dumps(record, indent=2) + "\n")
    return record
