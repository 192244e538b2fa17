"""PNG bytes built by hand, for inputs Pillow would refuse to write: 16-bit and low-bit
samples, forged sizes, extra chunks (the harness's and the tests' one home for them)."""

from __future__ import annotations

import struct
import zlib

import numpy as np

PNG_SIG = b"\x89PNG\r\n\x1a\n"


def chunk(kind: bytes, data: bytes) -> bytes:
    """One PNG chunk with its CRC."""
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bytes(a: np.ndarray, bit_depth: int = 8, color_type: int = 2, extra: bytes = b"") -> bytes:
    """A PNG of ``a`` (``uint8``/``uint16``, ``(H, W)`` or ``(H, W, C)``), filter 0 on every
    row; ``extra`` chunks go before ``IDAT``."""
    h, w = a.shape[:2]
    rows = a.astype(">u2" if bit_depth == 16 else np.uint8).reshape(h, -1)
    raw = b"".join(b"\x00" + rows[i].tobytes() for i in range(h))
    ihdr = struct.pack(">IIBBBBB", w, h, bit_depth, color_type, 0, 0, 0)
    return PNG_SIG + chunk(b"IHDR", ihdr) + extra + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def forged_png(width: int, height: int, bit_depth: int = 8, color_type: int = 2,
               payload: bytes = b"\x00" * 64) -> bytes:
    """A header claiming ``width`` x ``height`` over a few bytes of pixel data."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return PNG_SIG + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(payload)) + chunk(b"IEND", b"")


def chunks(data: bytes) -> list[tuple[int, int]]:
    """``(offset, length)`` of each chunk of a well-formed PNG."""
    out, pos = [], 8
    while pos + 12 <= len(data):
        n = struct.unpack_from(">I", data, pos)[0]
        out.append((pos, n))
        pos += 12 + n
    return out
