"""Raw planar YUV files as read and written by reference encoders (VTM, HM).

A frame is the Y plane followed by Cb and Cr, each row-major with no padding.
Samples are one byte for 8-bit and two bytes little-endian for 9..16-bit
(the "16-bit file" convention VTM uses when ``--InputBitDepth`` /
``--OutputBitDepth`` is above 8). Chroma planes are ``(H, W)`` for 4:4:4 and
``(ceil(H/2), ceil(W/2))`` for 4:2:0.
"""

from __future__ import annotations

import os

import numpy as np


def chroma_shape(height: int, width: int, chroma: str) -> tuple[int, int]:
    """Shape of one chroma plane for ``chroma`` in ``{"444", "420"}``."""
    if chroma == "444":
        return height, width
    if chroma == "420":
        return (height + 1) // 2, (width + 1) // 2
    raise ValueError(f"unknown chroma format {chroma!r}; valid: 444, 420")


def sample_dtype(bit_depth: int) -> np.dtype:
    """``uint8`` for 8-bit files, little-endian ``uint16`` above."""
    if not 8 <= bit_depth <= 16:
        raise ValueError(f"bit depth must be 8..16, got {bit_depth}")
    return np.dtype(np.uint8) if bit_depth == 8 else np.dtype("<u2")


def frame_bytes(height: int, width: int, chroma: str, bit_depth: int) -> int:
    """Size in bytes of one frame."""
    ch, cw = chroma_shape(height, width, chroma)
    return (height * width + 2 * ch * cw) * sample_dtype(bit_depth).itemsize


def planes_to_bytes(planes: tuple[np.ndarray, np.ndarray, np.ndarray], bit_depth: int) -> bytes:
    """Serialise ``(Y, Cb, Cr)`` integer planes; raises if a sample exceeds the bit depth."""
    dt = sample_dtype(bit_depth)
    top = (1 << bit_depth) - 1
    out = []
    for p in planes:
        if p.size and (int(p.max()) > top or int(p.min()) < 0):
            raise ValueError(f"sample values outside 0..{top} for {bit_depth}-bit YUV")
        out.append(np.ascontiguousarray(p, dtype=dt).tobytes())
    return b"".join(out)


def write_yuv(path: str | os.PathLike, planes: tuple[np.ndarray, np.ndarray, np.ndarray], bit_depth: int) -> None:
    """Write one frame of planar YUV to ``path`` (a scratch file for an encoder)."""
    with open(path, "wb") as f:
        f.write(planes_to_bytes(planes, bit_depth))


def bytes_to_planes(
    data: bytes, height: int, width: int, chroma: str, bit_depth: int, frame: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Parse frame ``frame`` of planar YUV bytes into uint16 ``(Y, Cb, Cr)``.

    Raises ValueError when ``data`` is too short for that frame.
    """
    dt = sample_dtype(bit_depth)
    fb = frame_bytes(height, width, chroma, bit_depth)
    start = frame * fb
    if len(data) < start + fb:
        raise ValueError(
            f"YUV data has {len(data)} bytes, frame {frame} of {width}x{height} {chroma} "
            f"{bit_depth}-bit needs {start + fb}"
        )
    ch, cw = chroma_shape(height, width, chroma)
    flat = np.frombuffer(data, dtype=dt, count=fb // dt.itemsize, offset=start)
    ny, nc = height * width, ch * cw
    y = flat[:ny].reshape(height, width).astype(np.uint16)
    cb = flat[ny : ny + nc].reshape(ch, cw).astype(np.uint16)
    cr = flat[ny + nc : ny + 2 * nc].reshape(ch, cw).astype(np.uint16)
    return y, cb, cr


def read_yuv(
    path: str | os.PathLike, height: int, width: int, chroma: str, bit_depth: int, frame: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Read frame ``frame`` of a planar YUV file (see :func:`bytes_to_planes`)."""
    with open(path, "rb") as f:
        return bytes_to_planes(f.read(), height, width, chroma, bit_depth, frame)
