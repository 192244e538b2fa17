"""Image files in and out: decode to RGB arrays, encode PNGs, check PNG headers and chunks.

Images in memory are ``numpy.ndarray`` of shape ``(H, W, 3)``, dtype ``uint8``, RGB
order, values 0..255: the one pixel format every stage works in. Files of other
modes (16-bit, gray, palette, alpha) are converted on reading and the conversion is
reported as a note (see :func:`to_rgb8`).

PNG structure is checked without inflating pixels (:func:`check_png_bytes`,
:func:`read_png_header`), so packaging and verifying stay at filesystem speed.
"""

from __future__ import annotations

import hashlib
import io
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from cloud3d.atomic import atomic_write_bytes
from cloud3d.errors import Cloud3dError, describe_os_error

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

#: PNG colour types (IHDR byte 9) by name, for notes.
PNG_COLOR_TYPES = {0: "gray", 2: "RGB", 3: "palette", 4: "gray+alpha", 6: "RGBA"}


@dataclass(frozen=True)
class PngHeader:
    """A PNG's ``IHDR``: size in pixels, bits per sample (1..16), colour type (2 = RGB)."""

    width: int
    height: int
    bit_depth: int
    color_type: int

    @property
    def is_rgb8(self) -> bool:
        """True for plain 8-bit RGB, the dataset's pixel format."""
        return self.bit_depth == 8 and self.color_type == 2

    def describe_format(self) -> str:
        """E.g. ``"16-bit RGB"`` or ``"8-bit palette"``."""
        return f"{self.bit_depth}-bit {PNG_COLOR_TYPES.get(self.color_type, f'type {self.color_type}')}"


def parse_png_header(head: bytes) -> PngHeader:
    """:class:`PngHeader` from the first 24+ bytes of a PNG. Raises ``ValueError`` if not a PNG."""
    if len(head) < 26 or head[:8] != PNG_SIGNATURE or head[12:16] != b"IHDR":
        raise ValueError("not a PNG (bad signature or no IHDR chunk first)")
    w, h, depth, color = struct.unpack_from(">IIBB", head, 16)
    if w == 0 or h == 0:
        raise ValueError("zero width or height")
    return PngHeader(int(w), int(h), int(depth), int(color))


def read_png_header(path: str | os.PathLike) -> PngHeader:
    """:class:`PngHeader` of a PNG file, reading only its first 33 bytes.

    Raises :class:`Cloud3dError` naming the file if it is missing or not a PNG.
    """
    try:
        with open(path, "rb") as f:
            head = f.read(33)
    except FileNotFoundError:
        raise Cloud3dError(f"no such image: {path}") from None
    try:
        return parse_png_header(head)
    except ValueError as exc:
        raise Cloud3dError(f"{path}: {exc}") from None


def check_png_bytes(data: bytes) -> PngHeader:
    """Validate a whole PNG's chunk structure without inflating pixels; return its header.

    Raises ``ValueError`` with a short reason if the signature, a chunk CRC,
    the ``IHDR`` header or the ``IEND`` end marker is wrong or missing.
    """
    if data[:8] != PNG_SIGNATURE:
        raise ValueError("not a PNG (bad signature)")
    mv = memoryview(data)
    pos = 8
    header = None
    n = len(data)
    while True:
        if pos + 12 > n:
            raise ValueError("truncated (no IEND chunk)")
        (length,) = struct.unpack_from(">I", data, pos)
        ctype = bytes(mv[pos + 4 : pos + 8])
        end = pos + 12 + length
        if end > n:
            raise ValueError(f"truncated inside chunk {ctype.decode('latin-1')!r}")
        crc = zlib.crc32(mv[pos + 4 : pos + 8 + length])
        (stored,) = struct.unpack_from(">I", data, pos + 8 + length)
        if crc != stored:
            raise ValueError(f"CRC mismatch in chunk {ctype.decode('latin-1')!r} (corrupt bytes)")
        if header is None:
            if ctype != b"IHDR" or length != 13:
                raise ValueError("first chunk is not IHDR")
            header = parse_png_header(data[: pos + 8 + length])
        if ctype == b"IEND":
            return header
        pos = end


@dataclass(frozen=True)
class PngInfo(PngHeader):
    """:class:`PngHeader` plus the file's ``sha256`` (hex) and ``size`` in bytes."""

    sha256: str = ""
    size: int = 0


def inspect_png(path: str | os.PathLike) -> PngInfo:
    """Read a file once: SHA-256 plus :func:`check_png_bytes`. Raises ``ValueError``/``OSError``."""
    with open(path, "rb") as f:
        data = f.read()
    h = check_png_bytes(data)
    return PngInfo(h.width, h.height, h.bit_depth, h.color_type, hashlib.sha256(data).hexdigest(), len(data))


def to_rgb8(img: Image.Image) -> tuple[np.ndarray, str | None]:
    """Convert any Pillow image to an ``(H, W, 3) uint8`` RGB array.

    Returns the array and a note describing the conversion, or ``None`` when
    the image was already 8-bit RGB. Conversions:

    * 16-bit (``I;16``/``I``) gray and 16-bit RGB: ``round(v / 257)`` (maps
      0..65535 onto 0..255 exactly at both ends), then gray is replicated to RGB.
    * palette (``P``), gray (``L``), ``LA``, ``RGBA``, ``CMYK``...: Pillow's
      ``convert("RGB")``; alpha is dropped (not composited).
    """
    mode = img.mode
    if mode == "RGB":
        return np.asarray(img, dtype=np.uint8).copy(), None
    if mode in ("I;16", "I;16B", "I;16L", "I", "I;16N"):
        a = np.asarray(img).astype(np.float64)
        a8 = np.clip(np.rint(a / 257.0), 0, 255).astype(np.uint8)
        return np.repeat(a8[:, :, None], 3, axis=2), f"16-bit gray ({mode}) reduced to 8-bit RGB"
    if mode == "F":
        a = np.asarray(img, dtype=np.float64)
        a8 = np.clip(np.rint(a), 0, 255).astype(np.uint8)
        return np.repeat(a8[:, :, None], 3, axis=2), "float gray converted to 8-bit RGB"
    note = {
        "RGBA": "RGBA: alpha dropped",
        "LA": "gray+alpha: alpha dropped, gray replicated to RGB",
        "L": "gray replicated to RGB",
        "1": "1-bit converted to RGB",
        "P": "palette expanded to RGB",
        "PA": "palette+alpha expanded to RGB, alpha dropped",
    }.get(mode, f"{mode} converted to RGB")
    if mode in ("P", "PA") and "transparency" in img.info:
        note += " (transparency dropped)"
    return np.asarray(img.convert("RGB"), dtype=np.uint8).copy(), note


#: Largest image (width x height) any reader here decodes; see :func:`max_image_pixels`.
MAX_IMAGE_PIXELS = 40_000_000
#: Environment variable that overrides :data:`MAX_IMAGE_PIXELS` (a positive integer).
MAX_PIXELS_ENV = "CLOUD3D_MAX_IMAGE_PIXELS"


def max_image_pixels() -> int:
    """The pixel budget: ``$CLOUD3D_MAX_IMAGE_PIXELS`` if set, else :data:`MAX_IMAGE_PIXELS`.

    40 Mpx admits 8K UHD (7680x4320 = 33.2 Mpx) and refuses a forged header before any
    pixel memory is allocated (an RGB image costs 3 bytes per pixel as uint8, and
    several times that in float working copies).
    """
    raw = os.environ.get(MAX_PIXELS_ENV, "").strip()
    if not raw:
        return MAX_IMAGE_PIXELS
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise Cloud3dError(f"{MAX_PIXELS_ENV}={raw!r} must be a positive integer (pixels)")
    return value


def check_image_size(width: int, height: int, name: object) -> None:
    """Raise :class:`Cloud3dError` if a ``width`` x ``height`` image exceeds the pixel budget."""
    budget = max_image_pixels()
    if width * height > budget:
        raise Cloud3dError(
            f"{name}: {width}x{height} image ({width * height / 1e6:.1f} Mpx) exceeds the "
            f"{budget / 1e6:.1f} Mpx limit; set {MAX_PIXELS_ENV} to a larger pixel count if "
            "the file is trusted"
        )


def _reduce_16bit(a: np.ndarray) -> np.ndarray:
    """uint16 samples -> uint8 by ``round(v / 257)`` (exact at 0 and 65535)."""
    return np.clip(np.rint(a.astype(np.float64) / 257.0), 0, 255).astype(np.uint8)


def _png_16bit_rgb(data: bytes, header: PngHeader, name: object) -> tuple[np.ndarray, str]:
    """Decode a 16-bit RGB, RGBA or gray+alpha PNG exactly (FFmpeg's PNG decoder through PyAV),
    then round to 8 bits. Pillow alone opens such files as 8-bit RGB(A) by dropping the low
    byte (truncation). Gray+alpha is read as gray (alpha dropped) and replicated to RGB."""
    import av

    fmt = {2: "rgb48le", 6: "rgba64le", 4: "gray16le"}[header.color_type]
    try:
        with av.open(io.BytesIO(data), format="png_pipe") as container:
            frame = next(container.decode(video=0))
            a = frame.to_ndarray(format=fmt)
    except (av.error.FFmpegError, StopIteration, ValueError) as exc:
        raise Cloud3dError(f"cannot decode image {name}: {exc} (corrupt or truncated?)") from None
    if a.shape[:2] != (header.height, header.width):
        raise Cloud3dError(f"cannot decode image {name}: decoded size differs from its header")
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    what = {2: "16-bit RGB", 6: "16-bit RGBA: alpha dropped,", 4: "16-bit gray+alpha: alpha dropped, gray"}
    return _reduce_16bit(a[:, :, :3]), f"{what[header.color_type]} reduced to 8-bit (rounded, v/257)"


def read_image_rgb(
    path: str | os.PathLike | bytes, name: str | None = None
) -> tuple[np.ndarray, str | None]:
    """Decode an image file (or its bytes) fully into ``(H, W, 3) uint8`` RGB.

    Returns ``(array, note)`` where ``note`` says how the file was converted
    (``None`` for 8-bit RGB). The image size is checked against the pixel budget
    (:func:`max_image_pixels`) from the header, before any pixel is decoded.
    Raises :class:`Cloud3dError` naming the file (or ``name`` for bytes) if it is
    missing, unreadable, too large, not an image, truncated or corrupt.
    """
    if isinstance(path, bytes | bytearray | memoryview):
        data, label = bytes(path), name or "<image bytes>"
    else:
        label = Path(path)
        try:
            with open(label, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            raise Cloud3dError(f"no such image: {label}") from None
        except IsADirectoryError:
            raise Cloud3dError(f"{label} is a folder, not an image") from None
        except OSError as exc:
            raise Cloud3dError(describe_os_error(exc, label, "read")) from None
    return decode_image_bytes(data, label)


def decode_image_bytes(data: bytes, name: object) -> tuple[np.ndarray, str | None]:
    """:func:`read_image_rgb` for bytes already in memory; ``name`` labels error messages."""
    png = None
    if data[:8] == PNG_SIGNATURE:
        try:
            png = parse_png_header(data[:33])
        except ValueError as exc:
            raise Cloud3dError(f"cannot decode image {name}: {exc}") from None
        check_image_size(png.width, png.height, name)
        if png.bit_depth == 16 and png.color_type in (2, 4, 6):
            return _png_16bit_rgb(data, png, name)
    try:
        with Image.open(io.BytesIO(data)) as im:
            check_image_size(im.width, im.height, name)
            im.load()
            return to_rgb8(im)
    except UnidentifiedImageError:
        raise Cloud3dError(f"cannot decode image {name}: not an image file (unknown format)") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise Cloud3dError(f"cannot decode image {name}: {exc} (corrupt or truncated?)") from None


def read_png_rgb(path: str | os.PathLike) -> np.ndarray:
    """Decode an image into ``(H, W, 3) uint8`` RGB, converting other modes (see :func:`to_rgb8`)."""
    return read_image_rgb(path)[0]


def encode_png(rgb: np.ndarray, encoder: str = "zlib", level: int = 6) -> bytes:
    """Encode an ``(H, W, 3) uint8`` array as a standard, lossless 8-bit RGB PNG.

    ``encoder="fpng"`` uses the fast fpng encoder (about 10x faster; files
    15-35% larger, depending on content); ``"zlib"`` uses Pillow with ``compress_level=level``
    (0..9). Both decode bit-exactly with any PNG decoder.
    """
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected (H, W, 3) uint8 array, got {rgb.shape} {rgb.dtype}")
    rgb = np.ascontiguousarray(rgb)
    if encoder == "fpng":
        import fpng

        return bytes(fpng.from_ndarray(rgb))
    if encoder != "zlib":
        raise ValueError(f"unknown PNG encoder {encoder!r} (use 'fpng' or 'zlib')")
    buf = io.BytesIO()
    Image.fromarray(rgb, "RGB").save(buf, format="PNG", compress_level=level)
    return buf.getvalue()


def write_png(path: str | os.PathLike, rgb: np.ndarray, encoder: str = "zlib", level: int = 6) -> int:
    """Encode ``rgb`` (see :func:`encode_png`) and write it atomically; returns bytes written."""
    data = encode_png(rgb, encoder=encoder, level=level)
    atomic_write_bytes(path, data)
    return len(data)
