"""Helpers for codecs that run external programs (bpgenc/bpgdec, VTM): discovery, hashing, running.

Binaries are looked up, in order, in the folder given as a codec option
(``bpg_dir=...``), in the folder named by an environment variable
(``CLOUD3D_BPG_DIR``), then on ``PATH``. Programs are always run with an
argument list (no shell), a timeout, and captured output; a failure becomes a
:class:`~baselines.codecs.base.CodecError` carrying the tail of stderr.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from baselines.codecs.base import CodecError
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


def tail(text: str | bytes, n: int = TAIL_CHARS) -> str:
    """Last ``n`` characters of a tool's output, decoded leniently and stripped."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    text = text.strip()
    return text if len(text) <= n else "..." + text[-n:]


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


class dir_aware_availability:  # noqa: N801 - used like @classmethod
    """Decorator for ``availability(cls, folder=None)`` so that it honours a codec's folder option.

    ``SomeCodec.availability()`` looks in ``$ENV``/PATH only; on an instance
    (``SomeCodec(bpg_dir="/opt/bpg").availability()``) the instance's
    ``options[option]`` folder is searched first. The runner should therefore
    call ``availability()`` on the configured instance.
    """

    def __init__(self, func, option: str) -> None:
        self.func = func
        self.option = option

    def __get__(self, obj, objtype=None):
        cls = objtype if objtype is not None else type(obj)
        folder = obj.options.get(self.option) if obj is not None else None

        def bound(folder_override: str | None = None):
            return self.func(cls, folder_override or folder or None)

        bound.__doc__ = self.func.__doc__
        return bound
