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
existed, is decoded with a quality given by the caller). Versions 1 and 2 are still written
for the LZMA coder and by callers that give no substream split (``Stream.parts`` None).

Version 3 (rANS only, written by :func:`models.codec.compress_image`): each latent level of
a tile is cut into independent substreams that decode in parallel (see
:mod:`models.substreams` for how the symbols are dealt out)::

    offset  size  field
    0       4     magic b"C3DL"
    4       1     format version 3
    5       1     latent coder: 0 (rANS; the only coder version 3 takes)
    6       1     n_levels L (2 or 3)
    7       1     length A of the architecture name (1..64)
    8       A     architecture name, ASCII
    8+A     32    SHA-256 of the model weights
    +32     1     quality index 0..254, or 255 for a fixed-rate model
    +33     16    width, height, tile size, tile count T (uint32 each, as above)
    +49     1     K: the most substreams any level may have (1..MAX_SUBSTREAMS)
    +50     T*L   substream count of each (tile, level), tile-major, each 1..K
    ...     4*S   byte length of each substream (S = sum of the counts), in the order tile,
                  level, substream; each at least 8 and a multiple of 4
    ...           the substreams, in the same order
    end-4   4     CRC-32 of every byte before it

:func:`parse` checks all of it (magic, version, sizes, tile count, K, every count, that the
length table fits and adds up to the bytes present, each length, the CRC) before anything is
allocated in proportion to what the header claims; the symbol bounds that need the model
come after (:func:`models.entropy.check_strings`).

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
#: newest format version written (versions 1 and 2 are still written; see the module docstring)
VERSION = 3
#: versions :func:`parse` reads
READ_VERSIONS = (1, 2, 3)
#: most substreams one latent level of a version-3 stream may have
MAX_SUBSTREAMS = 64
#: quality byte of a version-3 stream of a fixed-rate model
NO_QUALITY = 255
#: shortest substream: the rANS coder's flushed 64-bit state
MIN_SUBSTREAM_BYTES = 8
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
    """Decoded container fields; ``strings[t][k]`` is tile ``t``'s string for level ``k``.

    Version 3: ``strings[t][k]`` is the level's substreams one after the other and
    ``parts[t][k]`` their byte lengths; ``substreams`` is K. ``parts`` None: versions 1/2.
    """

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
    #: version 3: byte lengths of each (tile, level)'s substreams; None for versions 1/2
    parts: list[list[tuple[int, ...]]] | None = None
    #: version 3: K, the most substreams a level may have (recorded in the stream)
    substreams: int = 0

    @property
    def version(self) -> int:
        """The container version :func:`pack` writes for these fields."""
        return 3 if self.parts is not None else (1 if self.quality is None else 2)


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
    version = s.version
    if version == 3:
        quality = bytes([NO_QUALITY if s.quality is None else s.quality])
        sizes = _check_parts(s, n_tiles)
        table = bytes([s.substreams]) + bytes(len(p) for t in s.parts for p in t)
    else:
        quality = b"" if s.quality is None else bytes([s.quality])
        sizes, table = [len(b) for t in s.strings for b in t], b""
    parts = [
        _FIXED.pack(MAGIC, version, CODERS[s.coder], s.n_levels, len(arch)),
        arch,
        s.weights_hash,
        quality,
        _DIMS.pack(s.width, s.height, s.tile, n_tiles),
        table,
        struct.pack(f"<{len(sizes)}I", *sizes),
    ]
    parts.extend(b for t in s.strings for b in t)
    body = b"".join(parts)
    return body + struct.pack("<I", zlib.crc32(body))


def _check_parts(s: Stream, n_tiles: int) -> list[int]:
    """The substream lengths of a version-3 ``s`` in stream order, checked against its fields."""
    if s.coder != "ans":
        raise ValueError("version-3 streams (substreams) are rANS only")
    if not 1 <= s.substreams <= MAX_SUBSTREAMS:
        raise ValueError(f"substreams must be 1..{MAX_SUBSTREAMS}, got {s.substreams!r}")
    if len(s.parts) != n_tiles or any(len(t) != s.n_levels for t in s.parts):
        raise ValueError("parts do not match the tile layout")
    sizes = []
    for strings, parts in zip(s.strings, s.parts, strict=True):
        for blob, lens in zip(strings, parts, strict=True):
            if not 1 <= len(lens) <= s.substreams or sum(lens) != len(blob):
                raise ValueError("a level's substream lengths do not match its string")
            if any(n < MIN_SUBSTREAM_BYTES or n % 4 for n in lens):
                raise ValueError("substreams are whole 32-bit words, at least 8 bytes")
            sizes.extend(lens)
    return sizes


def parse(data: bytes, source: str = "stream") -> Stream:
    # long: one linear parse of the container; each check must stay next to the bytes it
    # reads, in file order, so that a reader can match it against the format table
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
    if version == 3 and coder_id != CODERS["ans"]:
        raise bad("version 3 streams are rANS only (latent coder 0)")
    pos = _FIXED.size
    qlen = 0 if version == 1 else 1
    head_end = pos + alen + 32 + qlen + _DIMS.size + (1 if version == 3 else 0)
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
        if version == 3 and quality == NO_QUALITY:
            quality = None
        elif quality > MAX_QUALITY:
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
    counts, k_max = [1] * (n_tiles * per), 0
    if version == 3:
        k_max = mv[pos]
        pos += 1
        if not 1 <= k_max <= MAX_SUBSTREAMS:
            raise bad(f"{k_max} substreams per level (K must be 1..{MAX_SUBSTREAMS})")
        if pos + n_tiles * per + 4 > n:
            raise bad("substream-count table truncated")
        counts = list(mv[pos : pos + n_tiles * per])
        pos += n_tiles * per
        if any(not 1 <= c <= k_max for c in counts):
            raise bad(f"a level records {max(counts) or 0} substreams; K is {k_max}, each "
                      f"level has 1..{k_max}")
    n_str = sum(counts)
    if pos + 4 * n_str + 4 > n:
        raise bad("string-length table truncated")
    lengths = struct.unpack_from(f"<{n_str}I", mv, pos)
    pos += 4 * n_str
    if pos + sum(lengths) + 4 != n:
        raise bad(
            f"string lengths add up to {sum(lengths)} bytes but {n - 4 - pos} are present "
            "(truncated or trailing data)"
        )
    odd = [ln for ln in lengths if ln < MIN_SUBSTREAM_BYTES or ln % 4] if version == 3 else []
    if odd:
        raise bad(f"a substream of {odd[0]} bytes (substreams are whole 32-bit words, at least "
                  f"{MIN_SUBSTREAM_BYTES} bytes)")
    strings: list[list[bytes]] = []
    parts: list[list[tuple[int, ...]]] = []
    i = 0
    for t in range(n_tiles):
        row, row_parts = [], []
        for k in range(per):
            lens = lengths[i : i + counts[t * per + k]]
            i += len(lens)
            row.append(bytes(mv[pos : pos + sum(lens)]))
            row_parts.append(tuple(lens))
            pos += sum(lens)
        strings.append(row)
        parts.append(row_parts)
    return Stream(arch, whash, width, height, tile, coder, n_levels, strings, quality,
                  parts if version == 3 else None, k_max)


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

