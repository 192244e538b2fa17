"""Source archives for ``cloud3d codecs build``: download and check before unpacking.

An archive is checked from its member list alone (nothing is written) before it is
unpacked: one top folder, no absolute or ``..`` paths, no links leaving the tree, no
devices, a bounded unpacked size, and the project's own marker files, so that a wrong or
hostile archive is refused in a second with one message.
"""

from __future__ import annotations

import os
import tarfile
import urllib.error
import urllib.request
import zlib
from collections.abc import Callable
from pathlib import Path

from cloud3d.errors import Cloud3dError

#: refuse archives that unpack to more than this (libbpg ~13 MB, VTM ~17 MB)
MAX_UNPACKED_BYTES = 2 << 30


def download(url: str, dest: Path, log: Callable[[str], None], timeout: float = 60.0) -> Path:
    """Download ``url`` to ``dest`` (with a progress bar); :class:`Cloud3dError` if unreachable."""
    from tqdm import tqdm

    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp, open(dest, "wb") as f:
            total = int(resp.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc="download", leave=False) as bar:
                while block := resp.read(1 << 16):
                    f.write(block)
                    bar.update(len(block))
    except (OSError, ValueError) as exc:  # URLError, HTTPError, timeouts are OSErrors
        why = f"HTTP {exc.code} {exc.reason}" if isinstance(exc, urllib.error.HTTPError) else getattr(exc, "reason", exc)
        raise Cloud3dError(
            f"cannot download {url}: {why}; without network access pass "
            "--source FILE with a local copy of the archive"
        ) from exc
    log(f"downloaded {url} ({dest.stat().st_size} bytes)")
    return dest


def check_archive(path: Path, markers: tuple[str, ...], what: str) -> str:
    """The archive's top folder name after checking it is a safe source archive of ``what``.

    Args:
        path: a tar archive, plain or gzip/bzip2/xz compressed.
        markers: paths relative to the top folder that the project must contain.
        what: the project, for messages (e.g. ``"libbpg 0.9.8 (...)"``).

    Raises:
        Cloud3dError: not a readable tar archive, more than one top folder, absolute or
            ``..`` paths, links out of the tree, devices, more than
            :data:`MAX_UNPACKED_BYTES`, or a marker file missing.
    """
    try:
        with tarfile.open(path) as tar:
            members = tar.getmembers()
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        detail = " ".join(str(exc).split())  # one line
        if "could not be opened successfully" in detail:
            detail = "neither a gzip, bzip2 or xz compressed nor a plain tar file"
        raise Cloud3dError(f"{path}: not a readable tar archive ({detail or type(exc).__name__})") from exc
    tops = {m.name.split("/", 1)[0] for m in members}
    if len(tops) != 1:
        raise Cloud3dError(f"{path}: expected one top folder in the archive, found {len(tops)}")
    total = 0
    for m in members:
        parts = Path(m.name).parts
        if m.name.startswith("/") or ".." in parts:
            raise Cloud3dError(f"{path}: unsafe path {m.name!r} in the archive")
        if m.isdev() or m.isfifo():
            raise Cloud3dError(f"{path}: the archive holds a device or pipe ({m.name!r}); refusing to unpack it")
        if m.issym() or m.islnk():
            target = os.path.normpath(os.path.join(os.path.dirname(m.name) if m.issym() else "", m.linkname))
            if os.path.isabs(m.linkname) or target.split(os.sep, 1)[0] != m.name.split("/", 1)[0]:
                raise Cloud3dError(f"{path}: link {m.name!r} points outside the source tree; refusing to unpack it")
        total += m.size
    if total > MAX_UNPACKED_BYTES:
        raise Cloud3dError(f"{path}: unpacks to {total / 2**30:.1f} GiB, more than a {what} source tree")
    top = tops.pop()
    names = {m.name.rstrip("/") for m in members}
    absent = [mk for mk in markers if f"{top}/{mk}" not in names]
    if absent:
        raise Cloud3dError(f"{path}: not a {what} source archive (no {', '.join(absent)})")
    return top


def unpack(path: Path, dest: Path) -> None:
    """Unpack an archive checked by :func:`check_archive` into ``dest`` (tarfile's ``data``
    filter as a second guard); Cloud3dError if its data turns out damaged."""
    try:
        with tarfile.open(path) as tar:
            tar.extractall(dest, filter="data")
    except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        raise Cloud3dError(f"{path}: cannot unpack ({' '.join(str(exc).split())}); the archive is damaged") from exc
