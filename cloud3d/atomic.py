"""Atomic writes: a killed process leaves either the old file or the new one, never half.

Every output file of the toolkit (PNGs, manifests, tables, checkpoints, bitstreams) is
written through these helpers: the bytes go to a temporary file in the destination
folder, are flushed to disk, and the temporary file is renamed over the final name.

File modes follow the process umask, as ``open(path, "w")`` would: with the usual umask
022 a written file is ``rw-r--r--``, so others sharing a dataset can read it. (The
temporary file itself is created private, ``rw-------``, and opened up just before the
rename.)
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path


def _umask() -> int:
    """The process umask, read without changing it (Linux ``/proc``); else by setting and restoring."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def default_file_mode() -> int:
    """Mode a new regular file gets from ``open()`` under the current umask (``0o666 & ~umask``)."""
    return 0o666 & ~_umask()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success rename it over ``path``.

    A process killed at any point leaves either the old file or the new one,
    never a half-written file under the final name. On an exception the
    temporary file is removed and the exception propagates.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{final.name}.", suffix=suffix if suffix is not None else ".tmp", dir=final.parent
    )
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if tmp_path.exists():
            os.chmod(tmp_path, default_file_mode())
        os.replace(tmp_path, final)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp_path.unlink()
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temp file in the same folder, fsync, rename)."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


#: the temporary name :func:`atomic_path` gives ``NAME``: ``.NAME.`` + 8 random characters + a suffix
_TEMP_RE = re.compile(r"\.(?P<name>.+)\.[A-Za-z0-9_]{8}(?:\.tmp|\.part)?")


def remove_stale_temps(folder: str | os.PathLike, names: Iterable[str]) -> list[Path]:
    """Remove the temporary files that a killed :func:`atomic_path` write of one of ``names``
    left in ``folder`` (``.NAME.XXXXXXXX.tmp``); returns them. For a command resuming its own
    output: the write that made such a file died with its process, and is redone."""
    wanted = set(names)
    gone: list[Path] = []
    try:
        candidates = [e for e in os.scandir(folder) if e.name.startswith(".")]
    except OSError:
        return gone
    for e in candidates:
        m = _TEMP_RE.fullmatch(e.name)
        if m and m.group("name") in wanted and e.is_file(follow_symlinks=False):
            with contextlib.suppress(OSError):
                os.unlink(e.path)
                gone.append(Path(e.path))
    return gone
