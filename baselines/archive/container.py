"""The archive file: a plain, uncompressed POSIX tar that any ``tar`` can list and extract.

Members, in this order::

    cloud3d-archive.json           the manifest (first member; it identifies the format)
    data/{relative path}{ext}      one bitstream per original file, e.g.
                                   data/test/supertuxkart-720p/5.webp

The manifest is JSON ``{"format": "cloud3d-archive", "version": 1, "body_sha256": H,
"body": {...}}`` where ``H`` is the SHA-256 of the body's canonical JSON (sorted keys, no
spaces), so a flipped byte anywhere in it is caught. ``body`` holds ``created``, ``tool``,
``codec`` (spec, name, quality, options, version, lossless, extension), ``source`` (kind,
selection, counts), ``dataset_rows`` (the dataset manifest rows of the files, or null) and
``entries``, one per original file:

==================== ===========================================================
path                 relative name of the original file (POSIX, restored there)
bytes, sha256        the original file's size and SHA-256
width, height        pixels
pixel_sha256         SHA-256 of the decoded ``(H, W, 3) uint8`` RGB bytes (C order);
                     null for ``raw``
member               tar member holding the bitstream
member_bytes,        its size and SHA-256
member_sha256
encode_s             wall seconds the codec took to encode
rec_sha256, mse,     only when the archive was verified at creation: pixel hash of
psnr, ms_ssim        the reconstruction and its quality (lossy codecs; ``psnr`` null = inf)
note                 how the original was converted to 8-bit RGB, if it was
==================== ===========================================================

Everything read from an archive is untrusted: :class:`ArchiveReader` refuses members that are
not regular files or whose names are absolute or contain ``..``, bounds the manifest's size and
every declared image size, checks each member's size and SHA-256 before it is used, and turns
every failure into a one-line :class:`~cloud3d.errors.Cloud3dError`.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import tarfile
from pathlib import Path, PurePosixPath
from typing import Any

from cloud3d.errors import Cloud3dError
from cloud3d.imageio import check_image_size
from cloud3d.safepaths import relpath_problem, resolve_inside
from cloud3d.untrusted import loads_json, open_regular, quote

FORMAT = "cloud3d-archive"
FORMAT_VERSION = 1
MANIFEST_MEMBER = "cloud3d-archive.json"
DATA_PREFIX = "data/"
#: largest manifest accepted (about 100,000 entries)
MAX_MANIFEST_BYTES = 64 << 20
#: largest image side an entry may declare; its area is bounded by the toolkit's pixel
#: budget (:func:`cloud3d.imageio.max_image_pixels`, 40 Mpx unless CLOUD3D_MAX_IMAGE_PIXELS)
MAX_SIDE = 16384
#: longest relative path accepted
MAX_PATH_CHARS = 1024
#: longest name of one path component, in bytes (Linux file systems' NAME_MAX)
MAX_NAME_BYTES = 255
_HEX64 = re.compile(r"[0-9a-f]{64}")


def canonical_json(obj: Any) -> bytes:
    """The bytes hashed for ``body_sha256``: sorted keys, no spaces, UTF-8."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


def manifest_bytes(body: dict[str, Any]) -> bytes:
    """The manifest member's content for ``body`` (see the module docstring)."""
    doc = {"format": FORMAT, "version": FORMAT_VERSION,
           "body_sha256": hashlib.sha256(canonical_json(body)).hexdigest(), "body": body}
    return json.dumps(doc, indent=1, sort_keys=True, ensure_ascii=False, allow_nan=False).encode("utf-8")


def check_relpath(path: Any, what: str = "path") -> str:
    """``path`` if it is a plain relative POSIX name (:func:`cloud3d.safepaths.relpath_problem`)
    of at most :data:`MAX_PATH_CHARS` characters; :class:`Cloud3dError` otherwise."""
    why = relpath_problem(path)
    if why is None and len(path) > MAX_PATH_CHARS:
        why = f"is longer than {MAX_PATH_CHARS} characters"
    if why is not None:
        raise Cloud3dError(f"{what} {quote(path)} {why}: refused")
    return path


def member_name(relpath: str, extension: str) -> str:
    """Tar member of the bitstream of ``relpath``: ``data/`` + the path with ``extension``."""
    return DATA_PREFIX + str(PurePosixPath(relpath).with_suffix(extension))


def safe_join(root: Path, relpath: str) -> Path:
    """``root / relpath``, refused unless it stays inside ``root`` with symbolic links already
    in the output folder resolved (:func:`cloud3d.safepaths.resolve_inside`)."""
    check_relpath(relpath)
    return resolve_inside(root, relpath, "archive manifest")


# -- writing ---------------------------------------------------------------------------------
def _tarinfo(name: str, size: int, mtime: int) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.size, ti.mtime, ti.mode, ti.type = size, mtime, 0o644, tarfile.REGTYPE
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = ""
    return ti


def write_archive(tmp_path: Path, body: dict[str, Any], files: list[tuple[str, Path]],
                  mtime: int) -> None:
    """Write the tar to ``tmp_path`` (the caller renames it into place): the manifest of
    ``body``, then each ``(member name, file on disk)``, flushed and fsynced."""
    doc = manifest_bytes(body)
    with open(tmp_path, "wb") as f:
        with tarfile.open(fileobj=f, mode="w", format=tarfile.PAX_FORMAT) as tf:
            tf.addfile(_tarinfo(MANIFEST_MEMBER, len(doc), mtime), io.BytesIO(doc))
            for name, path in files:
                with open(path, "rb") as src:
                    tf.addfile(_tarinfo(name, os.fstat(src.fileno()).st_size, mtime), src)
        f.flush()
        os.fsync(f.fileno())


# -- reading ---------------------------------------------------------------------------------
def _int(entry: dict, key: str, low: int, high: int, where: str) -> int:
    v = entry.get(key)
    if not isinstance(v, int) or isinstance(v, bool) or not low <= v <= high:
        raise Cloud3dError(f"{where}: field {key!r} = {quote(v)} is not an integer in {low}..{high}")
    return v


def _hex(entry: dict, key: str, where: str, optional: bool = False) -> str | None:
    v = entry.get(key)
    if v is None and optional:
        return None
    if not isinstance(v, str) or not _HEX64.fullmatch(v):
        raise Cloud3dError(f"{where}: field {key!r} is not a SHA-256")
    return v


def check_entries(entries: Any, archive_bytes: int) -> list[dict[str, Any]]:
    """Validate the manifest's entries: types, safe unique names, bounded sizes.

    A member can never be larger than the archive, and an image never larger than
    :data:`MAX_SIDE` a side and the pixel budget, so no declared number can make the reader
    allocate far more than the file justifies.
    """
    if not isinstance(entries, list):
        raise Cloud3dError("manifest entries are not a list")
    if len(entries) * 512 > archive_bytes:  # each member needs at least a 512-byte header
        raise Cloud3dError(f"manifest lists {len(entries)} files, more than the archive can hold")
    seen_paths: set[str] = set()
    seen_members: set[str] = set()
    folders: dict[str, int] = {}  # every folder a path needs -> the entry that needs it
    for i, e in enumerate(entries):
        where = f"manifest entry {i}"
        if not isinstance(e, dict):
            raise Cloud3dError(f"{where} is not an object")
        path = check_relpath(e.get("path"), f"{where}: path")
        member = check_relpath(e.get("member"), f"{where}: member")
        if not path.lower().endswith(".png"):
            raise Cloud3dError(f"{where}: path {path!r} is refused: archives restore .png files only")
        if not member.startswith(DATA_PREFIX):
            raise Cloud3dError(f"{where}: member {member!r} is outside {DATA_PREFIX}")
        if path in seen_paths or member in seen_members:
            raise Cloud3dError(f"{where}: {path!r} is listed twice")
        long = next((c for c in path.split("/") if len(c.encode("utf-8")) > MAX_NAME_BYTES), None)
        if long is not None:
            raise Cloud3dError(f"{where}: path {quote(path)} has a name of "
                               f"{len(long.encode('utf-8'))} bytes, more than a file system "
                               f"allows ({MAX_NAME_BYTES}): refused")
        parts = path.split("/")
        for k in range(1, len(parts)):
            folders.setdefault("/".join(parts[:k]), i)
        clash = path if path in folders else next(
            ("/".join(parts[:k]) for k in range(1, len(parts)) if "/".join(parts[:k]) in seen_paths),
            None)
        if clash is not None:
            raise Cloud3dError(f"{where}: {quote(clash)} is both a file and a folder of the "
                               "archive's paths: refused")
        seen_paths.add(path)
        seen_members.add(member)
        _int(e, "bytes", 0, 1 << 40, where)
        _int(e, "member_bytes", 0, archive_bytes, where)
        w, h = _int(e, "width", 1, MAX_SIDE, where), _int(e, "height", 1, MAX_SIDE, where)
        check_image_size(w, h, f"{where} ({path})")
        _hex(e, "sha256", where)
        _hex(e, "member_sha256", where)
        _hex(e, "pixel_sha256", where, optional=True)
        _hex(e, "rec_sha256", where, optional=True)
    return entries


class ArchiveReader:
    """An open archive: ``body`` (the checked manifest), ``entries``, ``body_sha256``,
    :meth:`read_member`. Use as a context manager.

    Opening reads the manifest and every member header (not the data). ``missing`` lists the
    members that the manifest names but the tar lacks (truncated or damaged archives); the
    members present can still be read.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise Cloud3dError(f"no such archive: {self.path}")
        self._f = open_regular(self.path, "archive")  # no FIFO, device or folder
        self.size = os.fstat(self._f.fileno()).st_size
        try:
            self._open()
        except BaseException:
            self._f.close()
            raise

    def _open(self) -> None:
        name = self.path
        if self.size < 1024:
            raise Cloud3dError(f"{name} is not a cloud3d archive: {self.size} bytes is too short (truncated?)")
        try:
            self._tf = tarfile.open(fileobj=self._f, mode="r:")
            first = self._tf.next()
        except tarfile.TarError as exc:
            raise Cloud3dError(f"{name} is not a cloud3d archive (not a tar file: {exc})") from None
        if first is None or first.name != MANIFEST_MEMBER:
            got = first.name if first is not None else "nothing"
            raise Cloud3dError(f"{name} is a tar file but not a cloud3d archive: its first member "
                               f"is {got!r}, expected {MANIFEST_MEMBER}")
        if not first.isreg() or first.size > MAX_MANIFEST_BYTES:
            raise Cloud3dError(f"{name}: the manifest member is not a file of a plausible size")
        if first.offset_data + first.size > self.size:
            raise Cloud3dError(f"{name} is truncated: it ends inside its manifest")
        self.body, self.body_sha256 = self._read_manifest(first)
        self.entries = check_entries(self.body.get("entries"), self.size)
        self._members = self._scan(first)
        self.missing = [e["member"] for e in self.entries if e["member"] not in self._members]

    def _read_manifest(self, info: tarfile.TarInfo) -> tuple[dict[str, Any], str]:
        raw = self._read(info)
        try:
            doc = loads_json(raw, "manifest")
        except Cloud3dError as exc:
            raise Cloud3dError(f"{self.path}: the manifest is corrupt ({exc})") from None
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise Cloud3dError(f"{self.path}: the manifest is not a {FORMAT} manifest")
        if doc.get("version") != FORMAT_VERSION:
            raise Cloud3dError(f"{self.path}: archive format version {doc.get('version')!r} is not "
                               f"supported (this cloud3d reads version {FORMAT_VERSION})")
        body = doc.get("body")
        if not isinstance(body, dict):
            raise Cloud3dError(f"{self.path}: the manifest has no body")
        digest = hashlib.sha256(canonical_json(body)).hexdigest()
        if digest != doc.get("body_sha256"):
            raise Cloud3dError(f"{self.path}: the manifest is corrupt (its SHA-256 does not match)")
        return body, digest

    def _scan(self, first: tarfile.TarInfo) -> dict[str, tarfile.TarInfo]:
        """Every member header after the manifest; refuses links, devices and unsafe names."""
        members: dict[str, tarfile.TarInfo] = {}
        while True:
            try:
                info = self._tf.next()
            except tarfile.TarError:
                break  # damaged or truncated from here on: the manifest says what is missing
            if info is None:
                break
            kind = ("symbolic link" if info.issym() else "hard link" if info.islnk() else
                    "device" if info.isdev() else "folder" if info.isdir() else
                    None if info.isreg() else "special file")
            check_relpath(info.name, "archive member")
            if kind:
                raise Cloud3dError(f"{self.path}: member {info.name!r} is a {kind}; cloud3d "
                                   "archives hold regular files only: refused")
            if not info.name.startswith(DATA_PREFIX) or info.name in members:
                raise Cloud3dError(f"{self.path}: unexpected member {info.name!r}: not written by cloud3d")
            members[info.name] = info
        return members

    def _read(self, info: tarfile.TarInfo) -> bytes:
        try:
            f = self._tf.extractfile(info)
            data = f.read() if f is not None else b""
        except tarfile.TarError as exc:
            raise Cloud3dError(f"member {info.name} is cut short ({exc}): the archive is truncated") from None
        if len(data) != info.size:
            raise Cloud3dError(f"member {info.name} is cut short: the archive is truncated")
        return data

    def read_member(self, entry: dict[str, Any]) -> bytes:
        """The bitstream of ``entry``, checked against the manifest's size and SHA-256."""
        info = self._members.get(entry["member"])
        if info is None:
            raise Cloud3dError(f"{entry['member']} is missing from the archive (truncated or damaged)")
        if info.size != entry["member_bytes"]:
            raise Cloud3dError(f"{entry['member']} has {info.size} bytes, the manifest says "
                               f"{entry['member_bytes']} (damaged archive)")
        data = self._read(info)
        if hashlib.sha256(data).hexdigest() != entry["member_sha256"]:
            raise Cloud3dError(f"{entry['member']} is corrupt (SHA-256 mismatch)")
        return data

    def close(self) -> None:
        if hasattr(self, "_tf"):
            self._tf.close()
        self._f.close()

    def __enter__(self) -> ArchiveReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
