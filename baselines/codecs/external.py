"""Codecs that run external programs (bpgenc/bpgdec, VTM): :class:`ExternalCodec` and its helpers.

:class:`ExternalCodec` owns everything such a codec shares: finding the programs
(the folder given as a codec option such as ``bpg_dir=...``, then the folder named
by an environment variable such as ``CLOUD3D_BPG_DIR``, then ``PATH``), saying
why the codec is unavailable, a private temporary folder per call, the timing
(the external process alone vs the conversions and file I/O around it), the
version text, and provenance (paths and SHA-256 of every program and data file,
and the command line templates built from the subclass's own argument-list
methods). A subclass supplies only:

* ``programs`` (role -> file names), ``dir_option``, ``env_var``, ``install_hint``;
* :meth:`ExternalCodec.encode_args` / :meth:`ExternalCodec.decode_args`: argument lists;
* :meth:`ExternalCodec.write_input` / :meth:`ExternalCodec.read_output`: the
  conversions between RGB arrays and the programs' files;
* optionally :meth:`ExternalCodec.check_image`, :meth:`ExternalCodec.check_bitstream`,
  :meth:`ExternalCodec.parse_encoder_output`, :meth:`ExternalCodec.extra_files`,
  :meth:`ExternalCodec.extra_provenance`, and :meth:`ExternalCodec.version_text`.

Programs are always run with an argument list (no shell), a timeout (the
``timeout`` option, seconds), and captured output; a failure becomes a
:class:`~baselines.codecs.base.CodecError` carrying the tail of its output.
"""

from __future__ import annotations

import functools
import os
import resource
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from baselines.codecs.base import (
    Codec,
    CodecError,
    CodecUnavailable,
    DecodeResult,
    EncodeResult,
    check_number,
    check_rgb,
)
from cloud3d.imageio import MAX_PIXELS_ENV, max_image_pixels
from cloud3d.provenance import sha256_file

#: how many characters of a tool's output go into an error message
TAIL_CHARS = 800


def find_binary(names: Sequence[str], folder: str | os.PathLike | None = None, env_var: str | None = None) -> Path | None:
    """First executable among ``names`` in ``folder``, then ``$env_var``, then PATH; None if absent."""
    folders: list[str] = []
    if folder:
        folders.append(str(folder))
    if env_var and os.environ.get(env_var):
        folders.append(os.environ[env_var])
    for d in folders:
        for name in names:
            p = Path(d) / name
            if p.is_file() and os.access(p, os.X_OK):
                return p.resolve()
    for name in names:
        found = shutil.which(name)
        if found:
            return Path(found).resolve()
    return None


@functools.lru_cache(maxsize=64)
def _sha256_cached(path: str, mtime_ns: int, size: int) -> str:
    return sha256_file(path)


def binary_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a binary (cached per path, mtime and size)."""
    st = os.stat(path)
    return _sha256_cached(str(path), st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=64)
def _output_cached(argv: tuple[str, ...], mtime_ns: int, size: int) -> str:
    try:
        proc = subprocess.run(list(argv), capture_output=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"({Path(argv[0]).name} {' '.join(argv[1:])} failed: {exc})"
    return (proc.stdout + proc.stderr).decode("utf-8", "replace")


def program_output(program: str | os.PathLike, *args: str) -> str:
    """stdout + stderr of ``program args...`` whatever its exit status (e.g. a help or version
    text); cached per program path, mtime and size, so a rebuilt binary is asked again."""
    st = os.stat(program)
    return _output_cached((str(program), *args), st.st_mtime_ns, st.st_size)


def tail(text: str | bytes, n: int = TAIL_CHARS) -> str:
    """Last ``n`` characters of a tool's output, decoded leniently and stripped."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    text = text.strip()
    return text if len(text) <= n else "..." + text[-n:]


def children_cpu_s() -> float:
    """User + system CPU seconds of this process's finished (waited-for) child processes.

    The difference around one :func:`run_tool` call is that program's CPU time, as long as no
    other thread of this process waits for a child meanwhile (true in pool workers, which run
    one task at a time; Dask workers with several threads can mix their tasks' figures).
    """
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run_tool(args: Sequence[str], timeout: float, what: str, cwd: str | os.PathLike | None = None) -> subprocess.CompletedProcess:
    """Run ``args`` (list, no shell) with a timeout; CodecError with the stderr tail on failure."""
    argv = [str(a) for a in args]
    try:
        proc = subprocess.run(argv, capture_output=True, timeout=timeout, cwd=cwd, check=False)
    except subprocess.TimeoutExpired as exc:
        raise CodecError(f"{what}: {Path(argv[0]).name} timed out after {timeout:g} s") from exc
    except OSError as exc:
        raise CodecError(f"{what}: cannot run {argv[0]}: {exc}") from exc
    if proc.returncode != 0:
        out = tail(proc.stderr) or tail(proc.stdout) or "(no output)"
        raise CodecError(f"{what}: {Path(argv[0]).name} exited with status {proc.returncode}: {out}")
    return proc


class ExternalCodec(Codec):
    """Base of codecs that run one external encoder and one decoder program per image.

    Subclasses declare where their programs are found and how to call them (see the
    module docstring). Their ``options_defaults`` must contain ``dir_option`` (a folder
    searched first; ``""`` = none) and ``timeout`` (seconds per program run).
    """

    #: program roles -> file names tried in order, e.g. ``{"bpgenc": ("bpgenc",)}``;
    #: the first role encodes, the second decodes
    programs: ClassVar[dict[str, tuple[str, ...]]] = {}
    #: the option naming a folder searched before ``$env_var`` and PATH, e.g. ``"bpg_dir"``
    dir_option: ClassVar[str] = ""
    #: the environment variable naming a folder searched before PATH
    env_var: ClassVar[str] = ""
    #: how to get the programs (ends the unavailability message)
    install_hint: ClassVar[str] = ""
    #: suffixes of the encoder's input file and the decoder's output file
    input_suffix: ClassVar[str] = ".png"
    output_suffix: ClassVar[str] = ".png"
    #: options that do not change the bitstream, left out of :meth:`version` besides
    #: ``dir_option`` and ``timeout``
    version_excludes: ClassVar[tuple[str, ...]] = ()

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        check_number(self.name, "timeout", self.options["timeout"], 0, 10**7)

    # -- discovery ---------------------------------------------------------------------------
    @property
    def folder(self) -> str | None:
        """The folder option, if set."""
        return str(self.options.get(self.dir_option) or "") or None

    def locate(self) -> dict[str, Path]:
        """Every file this codec needs, by role: the programs, then :meth:`extra_files`.

        Raises:
            CodecUnavailable: with what is missing, where it was looked for, and how to get it.
        """
        found = {role: find_binary(names, self.folder, self.env_var) for role, names in self.programs.items()}
        missing = ["/".join(self.programs[role]) for role, path in found.items() if path is None]
        if missing:
            where = f"{self.folder}, " if self.folder else ""
            raise CodecUnavailable(
                f"{' and '.join(missing)} not found (looked in {where}${self.env_var}, PATH): {self.install_hint}"
            )
        programs = {role: path for role, path in found.items() if path is not None}
        return {**programs, **self.extra_files(programs)}

    def extra_files(self, programs: dict[str, Path]) -> dict[str, Path]:
        """Data files the programs need (e.g. a config), found from ``programs``; raise
        :class:`CodecUnavailable` when one is missing. None by default."""
        return {}

    def availability(self) -> str | None:
        try:
            self.locate()
        except CodecUnavailable as exc:
            return str(exc)
        return None

    # -- provenance --------------------------------------------------------------------------
    def version_text(self, files: dict[str, Path]) -> str:
        """The programs' own version, e.g. ``"bpgenc 0.9.8 sha256:0123456789ab"``."""
        enc = files[next(iter(self.programs))]
        return f"{enc.name} sha256:{binary_sha256(enc)[:12]}"

    def version(self) -> str:
        files = self.locate()
        exclude = (self.dir_option, "timeout", *self.version_excludes)
        return " ".join(filter(None, (self.version_text(files), self.options_text(exclude))))

    def provenance(self) -> dict[str, Any]:
        """Path and SHA-256 of every file, and the command lines with ``{qp}``, ``{W}``, ``{H}``
        in place of the per-image values, built by the same methods that build the real ones."""
        files = self.locate()
        out: dict[str, Any] = {}
        for role, path in files.items():
            out[role], out[f"{role}_sha256"] = str(path), binary_sha256(path)
        src, bitstream = self.encode_files()
        out["encode_cmd"] = " ".join(self.encode_args(files, src, bitstream, "{qp}", "{W}", "{H}"))
        out["decode_cmd"] = " ".join(self.decode_args(files, *self.decode_files()))
        return {**out, **self.extra_provenance()}

    def extra_provenance(self) -> dict[str, Any]:
        """More provenance entries (e.g. the colour conversion); none by default."""
        return {}

    # -- what a subclass supplies -------------------------------------------------------------
    def encode_files(self) -> tuple[str, str]:
        """Names of the encoder's input file and bitstream inside the temporary folder."""
        return f"in{self.input_suffix}", f"out{self.extension}"

    def decode_files(self) -> tuple[str, str]:
        """Names of the decoder's bitstream and output file inside the temporary folder."""
        return f"in{self.extension}", f"out{self.output_suffix}"

    def encode_args(self, files: dict[str, Path], src: str | Path, bitstream: str | Path,
                    qp: int | str, width: int | str, height: int | str) -> list[str]:
        """Argument list of one encode. ``qp``, ``width`` and ``height`` may be placeholder
        strings (provenance), so only format them, never compute with them."""
        raise NotImplementedError

    def decode_args(self, files: dict[str, Path], bitstream: str | Path, out: str | Path) -> list[str]:
        """Argument list of one decode."""
        raise NotImplementedError

    def write_input(self, rgb: np.ndarray, path: Path) -> None:
        """Write the encoder's input file for ``(H, W, 3) uint8`` ``rgb``."""
        raise NotImplementedError

    def read_output(self, path: Path, info: dict[str, Any]) -> np.ndarray:
        """Read the decoder's output file back to ``(H, W, 3) uint8`` RGB (``info`` from
        :meth:`check_bitstream`); CodecError if it is not what was expected."""
        raise NotImplementedError

    def check_image(self, rgb: np.ndarray) -> None:
        """CodecError for images this codec cannot take (beyond the (H, W, 3) uint8 check)."""

    def check_bitstream(self, data: bytes) -> dict[str, Any]:
        """Header facts of ``data`` checked before the decoder runs; ValueError if it is not a
        stream of this codec (so forged or cut headers never reach the program). ``width`` and
        ``height``, when given, are checked against the pixel budget
        (:func:`cloud3d.imageio.max_image_pixels`) before the decoder runs."""
        return {}

    def parse_encoder_output(self, text: str) -> dict[str, Any]:
        """Figures from the encoder's console output, for ``EncodeResult.details``."""
        return {}

    # -- the work ------------------------------------------------------------------------------
    def encode_timed(self, rgb: np.ndarray, quality: Any) -> EncodeResult:
        """Encode through the external program; ``encode_s`` is the process alone (wall), ``convert_s``
        writing its input (with any colour conversion) and reading the bitstream back;
        ``details["encoder_cpu_s"]`` the program's user + system CPU seconds (see
        :func:`children_cpu_s`), which a loaded machine inflates far less than wall time."""
        check_rgb(rgb, self.name)
        qp = self.quality.check(quality)
        self.check_image(rgb)
        files = self.locate()
        h, w = rgb.shape[:2]
        with tempfile.TemporaryDirectory(prefix=f"cloud3d-{self.name}-") as tmp:
            src, bitstream = (Path(tmp) / n for n in self.encode_files())
            t0 = time.perf_counter()
            self.write_input(rgb, src)
            t1, c1 = time.perf_counter(), children_cpu_s()
            proc = run_tool(self.encode_args(files, src, bitstream, qp, w, h), self.options["timeout"],
                            f"{self.name} encode", cwd=tmp)
            t2, c2 = time.perf_counter(), children_cpu_s()
            if not bitstream.is_file() or bitstream.stat().st_size == 0:
                prog = files[list(self.programs)[0]].name
                raise CodecError(f"{self.name} encode: {prog} wrote no bitstream: {tail(proc.stdout) or '(no output)'}")
            data = bitstream.read_bytes()
            t3 = time.perf_counter()
        details = {"encoder_cpu_s": c2 - c1, **self.parse_encoder_output(proc.stdout.decode("utf-8", "replace"))}
        return EncodeResult(data=data, encode_s=t2 - t1, convert_s=(t1 - t0) + (t3 - t2), details=details)

    def decode_timed(self, data: bytes) -> DecodeResult:
        """Decode through the external program; times split as in :meth:`encode_timed`."""
        try:
            info = self.check_bitstream(data)
            if info.get("width", 0) * info.get("height", 0) > max_image_pixels():
                raise ValueError(f"the header claims {info['width']}x{info['height']} pixels, more than the "
                                 f"{max_image_pixels() / 1e6:g} Mpx budget ({MAX_PIXELS_ENV}; forged header?)")
        except ValueError as exc:
            raise CodecError(
                f"{self.name}: cannot decode {len(data)}-byte bitstream (corrupt or truncated?): {exc}"
            ) from exc
        files = self.locate()
        with tempfile.TemporaryDirectory(prefix=f"cloud3d-{self.name}-") as tmp:
            bitstream, out = (Path(tmp) / n for n in self.decode_files())
            t0 = time.perf_counter()
            bitstream.write_bytes(data)
            t1, c1 = time.perf_counter(), children_cpu_s()
            run_tool(self.decode_args(files, bitstream, out), self.options["timeout"], f"{self.name} decode", cwd=tmp)
            t2, c2 = time.perf_counter(), children_cpu_s()
            if not out.is_file():
                prog = files[list(self.programs)[1]].name
                raise CodecError(f"{self.name} decode: {prog} wrote no output (corrupt or truncated bitstream?)")
            rgb = self.read_output(out, info)
            t3 = time.perf_counter()
        return DecodeResult(rgb=rgb, decode_s=t2 - t1, convert_s=(t1 - t0) + (t3 - t2),
                            details={"decoder_cpu_s": c2 - c1})
