"""The ``.c3d`` container: a small, versioned, strictly parsed binary format (never pickle).

Layout (all integers little-endian)::

    offset  size  field
    0       4     magic b"C3DL"
    4       1     format version: 1, or 2 for a stream that records a quality index
    5       1     latent coder: 0 = rANS with the learned entropy model, 1 = LZMA of the symbols
    6       1     n_levels: number of latents per tile (2 = y, z; 3 = y, z, w)
    7       1     length A of the architecture name (1..64)
    8       A     architecture name, ASCII (e.g. "c2f-small-pruned")
    8+A     32    SHA-256 of the model weights (see models.prepared.weights_hash)
    (+32    1     version 2 only: quality index of a variable-rate model, 0..254; the
                  offsets below then move by one byte)
    +32     4     image width  (pixels, 1..65535)
    +36     4     image height (pixels, 1..65535)
    +40     4     tile size in pixels (0 = whole frame)
    +44     4     number of tiles T (must equal the count implied by size and tile)
    +48     4*T*L byte length of each string, tile-major (tile 0: level 0..L-1, tile 1: ...)
    ...           the strings, in the same order
    end-4   4     CRC-32 of every byte before it

Versions: a stream of a fixed-rate model is written as version 1, byte for byte as before
the quality field existed, so older cloud3d releases still read it; a stream of a
variable-rate model is version 2 and carries the quality index it was coded at, which the
decoder uses (a version-1 stream of a variable-rate model, written before the field
existed, is decoded with a quality given by the caller). Both versions are read.

Tiles cover the image row-major from the top-left corner; each tile is padded on the
right/bottom (edge replication) to a multiple of the model's stride, so padding follows from
width, height, tile size and stride and is checked, not stored. With the LZMA coder each tile
has a single string (level count still recorded). :func:`parse` checks every length against
the data actually present before anything is allocated, and raises :class:`~cloud3d.errors.CodecError`.

Decoder budget
--------------
The format allows images up to :data:`MAX_PIXELS` (8192 x 8192) in pieces of up to
:data:`MAX_TILE_PIXELS`. A decoder, though, works in proportion to the pixels a stream
claims, not to its bytes: a frame of flat colour is a few hundred bytes at any size, so a
short forged stream can ask for gigabytes and minutes. Like Pillow's ``MAX_IMAGE_PIXELS``,
the decoder therefore refuses images above a pixel budget unless told to trust them:
:data:`MAX_DECODE_PIXELS` (4096 x 2160, DCI 4K, which holds UHD 3840 x 2160) by default,
the environment variable :data:`DECODE_PIXELS_ENV` to change it for a process, and the
``max_pixels`` argument of :func:`check_decode_budget` (``cloud3d decompress --max-pixels``)
for one call. See :func:`models.entropy.check_strings` for the bounds that follow from the
stream's own bytes.
"""

from __future__ import annotations

import os
import struct
import zlib
from dataclasses import dataclass, field

from cloud3d.errors import Cloud3dError, CodecError

MAGIC = b"C3DL"
#: newest format version written (version 1 is still written for fixed-rate models)
VERSION = 2
#: versions :func:`parse` reads
READ_VERSIONS = (1, 2)
#: largest quality index a version-2 stream can record
MAX_QUALITY = 254
CODERS = {"ans": 0, "lzma": 1}
MAX_SIDE = 65535
MAX_ARCH = 64
#: largest image (pixels) a stream may describe: 8192 x 8192
MAX_PIXELS = 8192 * 8192
#: largest tile (pixels, after padding) coded or decoded in one piece: 4096 x 4096 (4K UHD fits)
MAX_TILE_PIXELS = 4096 * 4096
#: default decoder budget: most pixels (width x height) a stream may claim, DCI 4K
MAX_DECODE_PIXELS = 4096 * 2160
#: environment variable that sets the decoder budget (pixels) for a process
DECODE_PIXELS_ENV = "CLOUD3D_MAX_DECODE_PIXELS"
_FIXED = struct.Struct("<4sBBBB")
_DIMS = struct.Struct("<IIII")


@dataclass
class Stream:
    """Decoded container fields; ``strings[t][k]`` is tile ``t``'s string for level ``k``."""

    arch: str
    weights_hash: bytes
    width: int
    height: int
    tile: int  # 0 = whole frame
    coder: str
    n_levels: int
    strings: list[list[bytes]] = field(default_factory=list)
    #: quality index of a variable-rate model (version 2), None for a fixed-rate model
    quality: int | None = None


def tile_grid(width: int, height: int, tile: int) -> list[tuple[int, int, int, int]]:
    """Tiles as ``(x0, y0, w, h)``, row-major; ``tile == 0`` means one whole-frame tile."""
    if tile <= 0:
        return [(0, 0, width, height)]
    return [
        (x0, y0, min(tile, width - x0), min(tile, height - y0))
        for y0 in range(0, height, tile)
        for x0 in range(0, width, tile)
    ]


def strings_per_tile(coder: str, n_levels: int) -> int:
    return 1 if coder == "lzma" else n_levels


def pack(s: Stream) -> bytes:
    """Serialise ``s`` into the container bytes described in the module docstring."""
    arch = s.arch.encode("ascii")
    if not 1 <= len(arch) <= MAX_ARCH:
        raise ValueError(f"architecture name must be 1..{MAX_ARCH} ASCII characters")
    if len(s.weights_hash) != 32:
        raise ValueError("weights_hash must be 32 bytes (SHA-256)")
    if not (1 <= s.width <= MAX_SIDE and 1 <= s.height <= MAX_SIDE):
        raise ValueError(f"image size {s.width}x{s.height} outside 1..{MAX_SIDE}")
    per = strings_per_tile(s.coder, s.n_levels)
    n_tiles = len(tile_grid(s.width, s.height, s.tile))
    if len(s.strings) != n_tiles or any(len(t) != per for t in s.strings):
        raise ValueError("strings do not match the tile layout")
    if s.quality is not None and (isinstance(s.quality, bool) or not isinstance(s.quality, int)
                                  or not 0 <= s.quality <= MAX_QUALITY):
        raise ValueError(f"quality must be an int 0..{MAX_QUALITY} or None, got {s.quality!r}")
    version = 1 if s.quality is None else 2
    parts = [
        _FIXED.pack(MAGIC, version, CODERS[s.coder], s.n_levels, len(arch)),
        arch,
        s.weights_hash,
        b"" if s.quality is None else bytes([s.quality]),
        _DIMS.pack(s.width, s.height, s.tile, n_tiles),
    ]
    flat = [b for t in s.strings for b in t]
    parts.append(struct.pack(f"<{len(flat)}I", *(len(b) for b in flat)))
    parts.extend(flat)
    body = b"".join(parts)
    return body + struct.pack("<I", zlib.crc32(body))


def parse(data: bytes, source: str = "stream") -> Stream:
    """Parse and validate container bytes; :class:`~cloud3d.errors.CodecError` (a :class:`Cloud3dError`) naming ``source`` on any defect."""

    def bad(why: str) -> CodecError:
        return CodecError(f"{source} is not a valid cloud3d learned-codec stream: {why}")

    mv = memoryview(data)
    n = len(mv)
    if n < _FIXED.size + 1 + 32 + _DIMS.size + 4:
        if n >= 4 and bytes(mv[:4]) != MAGIC:
            raise bad("wrong magic bytes (not a .c3d file)")
        raise bad(f"only {n} bytes (truncated)")
    magic, version, coder_id, n_levels, alen = _FIXED.unpack_from(mv, 0)
    if magic != MAGIC:
        raise bad("wrong magic bytes (not a .c3d file)")
    if version not in READ_VERSIONS:
        raise bad(f"format version {version}; this cloud3d reads versions "
                  f"{', '.join(map(str, READ_VERSIONS))} (upgrade cloud3d)")
    coders = {v: k for k, v in CODERS.items()}
    if coder_id not in coders:
        raise bad(f"unknown latent coder id {coder_id}")
    if not 2 <= n_levels <= 3:
        raise bad(f"{n_levels} latent levels (expected 2 or 3)")
    if not 1 <= alen <= MAX_ARCH:
        raise bad("bad architecture-name length")
    pos = _FIXED.size
    qlen = 1 if version == 2 else 0
    head_end = pos + alen + 32 + qlen + _DIMS.size
    if head_end + 4 > n:
        raise bad("header truncated")
    # The CRC covers everything; check it first so that flipped bytes anywhere are caught.
    (crc,) = struct.unpack_from("<I", mv, n - 4)
    if zlib.crc32(mv[: n - 4]) != crc:
        raise bad("checksum mismatch (file corrupted or truncated)")
    try:
        arch = bytes(mv[pos : pos + alen]).decode("ascii")
    except UnicodeDecodeError:
        raise bad("architecture name is not ASCII") from None
    pos += alen
    whash = bytes(mv[pos : pos + 32])
    pos += 32
    quality = None
    if qlen:
        quality = mv[pos]
        pos += 1
        if quality > MAX_QUALITY:
            raise bad(f"quality index {quality} outside 0..{MAX_QUALITY}")
    width, height, tile, n_tiles = _DIMS.unpack_from(mv, pos)
    pos += _DIMS.size
    if not (1 <= width <= MAX_SIDE and 1 <= height <= MAX_SIDE):
        raise bad(f"image size {width}x{height} outside 1..{MAX_SIDE}")
    if tile > MAX_SIDE:
        raise bad(f"tile size {tile} too large")
    if width * height > MAX_PIXELS:
        raise bad(f"image size {width}x{height} above the decoder limit of {MAX_PIXELS} pixels")
    tw, th = (width, height) if tile == 0 else (min(tile, width), min(tile, height))
    if tw * th > MAX_TILE_PIXELS:
        raise bad(f"tile of {tw}x{th} pixels above the decoder limit of {MAX_TILE_PIXELS} pixels")
    expect_tiles = (
        1 if tile == 0 else -(-width // tile) * -(-height // tile)
    )
    if n_tiles != expect_tiles:
        raise bad(f"{n_tiles} tiles recorded, layout implies {expect_tiles}")
    coder = coders[coder_id]
    per = strings_per_tile(coder, n_levels)
    n_str = n_tiles * per
    if pos + 4 * n_str + 4 > n:
        raise bad("string-length table truncated")
    lengths = struct.unpack_from(f"<{n_str}I", mv, pos)
    pos += 4 * n_str
    if pos + sum(lengths) + 4 != n:
        raise bad(
            f"string lengths add up to {sum(lengths)} bytes but {n - 4 - pos} are present "
            "(truncated or trailing data)"
        )
    strings: list[list[bytes]] = []
    for t in range(n_tiles):
        row = []
        for k in range(per):
            ln = lengths[t * per + k]
            row.append(bytes(mv[pos : pos + ln]))
            pos += ln
        strings.append(row)
    return Stream(arch, whash, width, height, tile, coder, n_levels, strings, quality)


def decode_pixel_budget(max_pixels: int | None = None) -> int:
    """The decoder budget in pixels: ``max_pixels`` if given, else the value of the
    environment variable :data:`DECODE_PIXELS_ENV`, else :data:`MAX_DECODE_PIXELS`.

    Raises :class:`~cloud3d.errors.Cloud3dError` for a budget that is not a positive integer.
    """
    if max_pixels is None:
        raw = os.environ.get(DECODE_PIXELS_ENV, "").strip()
        if not raw:
            return MAX_DECODE_PIXELS
        try:
            max_pixels = int(raw)
        except ValueError:
            raise Cloud3dError(f"{DECODE_PIXELS_ENV}={raw!r} is not a whole number of pixels") from None
        where = DECODE_PIXELS_ENV
    else:
        where = "the pixel budget (--max-pixels)"
    if isinstance(max_pixels, bool) or int(max_pixels) != max_pixels or max_pixels < 1:
        raise Cloud3dError(f"{where} must be a positive whole number of pixels, got {max_pixels!r}")
    return int(max_pixels)


def check_decode_budget(s: Stream, max_pixels: int | None = None, source: str = "stream") -> None:
    """Refuse (:class:`~cloud3d.errors.CodecError`) a stream whose image is above the
    decoder budget (:func:`decode_pixel_budget` of ``max_pixels``)."""
    budget = decode_pixel_budget(max_pixels)
    n = s.width * s.height
    if n > budget:
        raise CodecError(
            f"{source} claims a {s.width}x{s.height} image ({n} pixels), above the decoder budget "
            f"of {budget} pixels; if you trust the file, raise the budget: --max-pixels {n} "
            f"(or {DECODE_PIXELS_ENV}={n})")

