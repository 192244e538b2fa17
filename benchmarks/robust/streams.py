"""Adversarial ``.c3d`` streams, decoded in-process by :func:`models.codec.decompress_image`.

Base streams are real: small seeded models of three architectures (two latent levels:
``bmshj2018-hyperprior``, ``mbt2018-mean``; three: ``c2f-xsmall-pruned``) compress a
72x80 frame with each latent coder (rANS, LZMA), whole and in tiles. Case ``i`` takes base
``i % len(bases)`` and one mutation drawn from :data:`MUTATIONS` (seeded by ``(seed, i)``,
so a case is reproducible from its number). The rANS bases are written in the container
layout of versions 1/2 (one substream per level, repacked without its substream table);
forged version-3 substream tables are the subject of ``tests/test_models_substreams.py``.
Unless the mutation is about the container
itself, the CRC-32 is recomputed so that the bytes reach the parser's later checks and the
entropy decoder:

* bit flips and byte overwrites anywhere in the body, or only inside the latent strings;
* strings replaced by random bytes, lengthened, shortened, swapped, spliced from another
  stream, their boundaries moved (lengths table rewritten, total kept);
* forged headers: image and tile sizes from edge values (0, 1, strides, the pixel budget
  and just above it, 65535), a consistent tile count, or a single field (version, coder,
  level count, name length, name, tile count) set to an edge value;
* LZMA strings: symbols of any value, an xz header asking for a 4 GiB dictionary, a
  payload that expands past the size the header implies, truncated xz data;
* container damage without CRC fix-up: truncation, trailing bytes, random bytes;
* a valid stream read with the wrong model (other architecture or other weights).

The expected outcome of each case is either an image of the claimed size or a clean
:class:`~cloud3d.errors.CodecError`; see :mod:`benchmarks.robust.guard`.
"""

from __future__ import annotations

import dataclasses
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models import bitstream

#: the frame every base stream codes (height, width): two 64-px tiles across, two down
FRAME = (72, 80)
ARCHS = (("bmshj2018-hyperprior", {"N": 16, "M": 24}), ("mbt2018-mean", {"N": 16, "M": 24}),
         ("c2f-xsmall-pruned", {}))


@dataclass
class Base:
    """A real stream: ``data`` (bytes), its parsed ``stream``, the prepared model ``pm``
    that made it and ``name`` (``arch/coder/tiling``)."""

    name: str
    data: bytes
    stream: bitstream.Stream
    pm: object


@dataclass
class Context:
    bases: list[Base]
    models: dict[str, object]  # arch -> prepared model
    other: dict[str, object]  # arch -> same arch, other weights


def frame(seed: int = 0) -> np.ndarray:
    """A 72x80 RGB test frame: gradient, noise and a hard-edged box (``(72, 80, 3) uint8``)."""
    rng = np.random.default_rng(seed)
    h, w = FRAME
    y, x = np.mgrid[0:h, 0:w]
    img = np.stack([x * 3, y * 3, (x + y) * 2], axis=-1).astype(np.int16)
    img += rng.integers(-40, 40, size=img.shape, dtype=np.int16)
    img[20:50, 30:60] = (230, 30, 30)
    return np.clip(img, 0, 255).astype(np.uint8)


def _model(arch: str, kw: dict, seed: int):
    import torch

    from models.architectures import create_model
    from models.codec import prepare

    torch.manual_seed(seed)
    m = create_model(arch, **kw)
    m.update(force=True)
    return prepare(m.eval(), "cpu")


def setup(_workdir: Path, seed: int) -> Context:
    """Models and base streams (about 10 s of CPU)."""
    from models.codec import compress_image

    models, other, bases = {}, {}, []
    img = frame(seed)
    for arch, kw in ARCHS:
        pm = _model(arch, kw, seed)
        models[arch], other[arch] = pm, _model(arch, kw, seed + 1)
        for coder in ("ans", "lzma"):
            for tile in ("whole", pm.stride):
                data = compress_image(pm, img, tile=tile, coder=coder, substreams_k=1)
                if coder == "ans":  # the v1 layout the mutations below know
                    data = bitstream.pack(dataclasses.replace(bitstream.parse(data), parts=None,
                                                              substreams=0))
                bases.append(Base(f"{arch}/{coder}/{'tiled' if tile != 'whole' else 'whole'}",
                                  data, bitstream.parse(data), pm))
    return Context(bases, models, other)


# ----------------------------------------------------------------------------- layout helpers


def _crc(body: bytes) -> bytes:
    return body + struct.pack("<I", zlib.crc32(body))


def _regions(data: bytes) -> tuple[int, int, int]:
    """``(dims offset, lengths-table offset, strings offset)`` of a valid stream."""
    alen = data[7]
    dims = 8 + alen + 32
    n_tiles = struct.unpack_from("<I", data, dims + 12)[0]
    coder, levels = data[5], data[6]
    per = 1 if coder == 1 else levels
    table = dims + 16
    return dims, table, table + 4 * n_tiles * per


def _repack(b: Base, strings: list[list[bytes]], **fields) -> bytes:
    """``b``'s header (fields overridden) over ``strings``, written raw (no validation), with
    a correct CRC."""
    s = b.stream
    f = {"width": s.width, "height": s.height, "tile": s.tile, "coder": s.coder,
         "n_levels": s.n_levels, "arch": s.arch.encode(), "hash": s.weights_hash,
         "n_tiles": len(strings), "version": 1, **fields}
    coder_id = bitstream.CODERS.get(f["coder"], f["coder"]) if isinstance(f["coder"], str) else f["coder"]
    flat = [x for t in strings for x in t]
    body = (struct.pack("<4sBBBB", bitstream.MAGIC, f["version"], coder_id, f["n_levels"],
                        len(f["arch"]) & 0xFF)
            + f["arch"] + f["hash"]
            + struct.pack("<IIII", f["width"], f["height"], f["tile"], f["n_tiles"])
            + struct.pack(f"<{len(flat)}I", *(len(x) for x in flat)) + b"".join(flat))
    return _crc(body)


def _flip(rng, data: bytearray, lo: int, hi: int, k: int) -> None:
    for _ in range(k):
        p = int(rng.integers(lo, hi))
        data[p] ^= 1 << int(rng.integers(0, 8))


INTERESTING = (0x00, 0xFF, 0x7F, 0x80, 0x01, 0xFE)


# ----------------------------------------------------------------------------- mutations


def flip_body(rng, b: Base, ctx: Context) -> bytes:
    d = bytearray(b.data[:-4])
    _flip(rng, d, 0, len(d), int(rng.integers(1, 9)))
    return _crc(bytes(d))


def flip_strings(rng, b: Base, ctx: Context) -> bytes:
    d = bytearray(b.data[:-4])
    _, _, s0 = _regions(b.data)
    _flip(rng, d, s0, len(d), int(rng.integers(1, 17)))
    return _crc(bytes(d))


def overwrite_strings(rng, b: Base, ctx: Context) -> bytes:
    d = bytearray(b.data[:-4])
    _, _, s0 = _regions(b.data)
    for _ in range(int(rng.integers(1, 9))):
        start = int(rng.integers(s0, len(d)))
        run = int(rng.integers(1, 9))
        val = INTERESTING[int(rng.integers(0, len(INTERESTING)))] if rng.random() < 0.7 else int(rng.integers(0, 256))
        d[start:start + run] = bytes([val]) * len(d[start:start + run])
    return _crc(bytes(d))


def _pick(rng, strings: list[list[bytes]]) -> tuple[int, int]:
    t = int(rng.integers(0, len(strings)))
    return t, int(rng.integers(0, len(strings[t])))


def random_string(rng, b: Base, ctx: Context) -> bytes:
    strings = [list(t) for t in b.stream.strings]
    t, k = _pick(rng, strings)
    n = len(strings[t][k]) if rng.random() < 0.6 else int(rng.integers(0, 4 * len(strings[t][k]) + 64))
    strings[t][k] = rng.integers(0, 256, size=n, dtype=np.uint8).tobytes()
    return _repack(b, strings)


def resize_string(rng, b: Base, ctx: Context) -> bytes:
    strings = [list(t) for t in b.stream.strings]
    t, k = _pick(rng, strings)
    s = strings[t][k]
    how = int(rng.integers(0, 4))
    if how == 0:
        s = s[: int(rng.integers(0, len(s) + 1))]
    elif how == 1:
        s = s + bytes(int(rng.integers(1, 4096)))
    elif how == 2:
        s = s + rng.integers(0, 256, size=int(rng.integers(1, 256)), dtype=np.uint8).tobytes()
    else:
        cut = int(rng.integers(0, len(s) + 1))
        s = s[:cut] + s[cut + int(rng.integers(1, 9)):]
    strings[t][k] = s
    return _repack(b, strings)


def move_boundary(rng, b: Base, ctx: Context) -> bytes:
    """Rewrite the lengths table, keeping the total: the bytes are cut at other places."""
    d = bytearray(b.data[:-4])
    _, table, s0 = _regions(b.data)
    n = (s0 - table) // 4
    lengths = list(struct.unpack_from(f"<{n}I", d, table))
    if n == 1:
        lengths[0] += int(rng.choice([-1, 1, 4, -4, 2**31]))
        lengths[0] %= 2**32
    else:
        i, j = rng.choice(n, size=2, replace=False)
        shift = int(rng.integers(1, max(2, lengths[i] + 1)))
        lengths[i] -= shift
        lengths[j] += shift
    struct.pack_into(f"<{n}I", d, table, *[x % 2**32 for x in lengths])
    return _crc(bytes(d))


def swap_strings(rng, b: Base, ctx: Context) -> bytes:
    strings = [list(t) for t in b.stream.strings]
    flat = [x for t in strings for x in t]
    rng.shuffle(flat)
    per = len(strings[0])
    return _repack(b, [flat[i:i + per] for i in range(0, len(flat), per)])


def splice(rng, b: Base, ctx: Context) -> bytes:
    """Strings of another base stream (other architecture, tiling or coder) under this header."""
    other = ctx.bases[int(rng.integers(0, len(ctx.bases)))]
    flat = [x for t in other.stream.strings for x in t]
    per, n = len(b.stream.strings[0]), len(b.stream.strings)
    flat = (flat * (per * n))[: per * n]
    return _repack(b, [flat[i:i + per] for i in range(0, len(flat), per)])


SIDES = (0, 1, 2, 15, 16, 17, 63, 64, 65, 72, 80, 128, 1080, 1920, 2160, 4096, 4097, 8192, 8193,
         65535, 65536, 2**31, 2**32 - 1)


def forge_dims(rng, b: Base, ctx: Context) -> bytes:
    """Other image and tile sizes, a consistent tile count, the base strings cycled to fill it."""
    w = int(rng.choice(SIDES)) if rng.random() < 0.5 else int(rng.integers(1, 300))
    h = int(rng.choice(SIDES)) if rng.random() < 0.5 else int(rng.integers(1, 300))
    tile = int(rng.choice([0, 0, 16, 64, 128, 63, 65, 4096, 65535, 65536]))
    n_tiles = 1 if tile == 0 or w == 0 or h == 0 else -(-w // tile) * -(-h // tile)
    n_tiles = min(n_tiles, 4096)  # a larger table is refused by its size; keep cases small
    src = b.stream.strings
    strings = [list(src[t % len(src)]) for t in range(n_tiles)]
    return _repack(b, strings, width=w % 2**32, height=h % 2**32, tile=tile % 2**32)


def forge_field(rng, b: Base, ctx: Context) -> bytes:
    """One header field set to an edge value, nothing else changed."""
    strings = [list(t) for t in b.stream.strings]
    field = int(rng.integers(0, 7))
    if field == 0:
        return _repack(b, strings, version=int(rng.choice([0, 2, 255])))
    if field == 1:
        return _repack(b, strings, coder=int(rng.choice([1 - bitstream.CODERS[b.stream.coder], 2, 255])))
    if field == 2:
        return _repack(b, strings, n_levels=int(rng.choice([0, 1, 2, 3, 4, 255])))
    if field == 3:
        return _repack(b, strings, arch=bytes(rng.choice([b"", b"x" * 65, b"x" * 255,
                                                          b"c2f-large", b"mbt2018-mean",
                                                          "ü".encode(), b"\x00\xff"])))
    if field == 4:
        return _repack(b, strings, n_tiles=int(rng.choice([0, 2, 3, 5, 2**20, 2**32 - 1])))
    if field == 5:
        return _repack(b, strings, hash=bytes(32))
    d = bytearray(b.data[:-4])
    _, table, s0 = _regions(b.data)
    p = table + 4 * int(rng.integers(0, (s0 - table) // 4))
    struct.pack_into("<I", d, p, int(rng.choice([0, 1, 2**31, 2**32 - 1])))
    return _crc(bytes(d))


def _xz_dict_4gib(blob: bytes) -> bytes:
    """``blob`` (an xz container) with its LZMA2 dictionary size set to 4 GiB - 1 (the
    largest code, 40) and the block header's CRC fixed up."""
    d = bytearray(blob)
    hs = (d[12] + 1) * 4
    head = d[12:12 + hs]
    i = head.find(b"\x21\x01")
    if i < 0:
        return blob
    head[i + 2] = 40
    head[-4:] = struct.pack("<I", zlib.crc32(bytes(head[:-4])))
    d[12:12 + hs] = head
    return bytes(d)


def forge_lzma(rng, b: Base, ctx: Context) -> bytes:
    """An LZMA latent string of another content (the base's coder is set to LZMA)."""
    import lzma

    from models.codec import _latent_shapes, _tiles

    pm = b.pm
    s = b.stream
    pieces = list(_tiles(s.width, s.height, s.tile, pm.stride))
    strings = []
    how = int(rng.integers(0, 6))
    for (*_, ph, pw) in pieces:
        n = sum(int(np.prod(x)) for x in _latent_shapes(pm, ph, pw))
        if how == 0:  # symbols of any value
            vals = rng.choice([0, 1, -1, 2**31 - 1, -(2**31), 70000], size=n).astype("<i4")
            blob = lzma.compress(vals.tobytes(), preset=0)
        elif how == 1:  # the xz header asks for a 4 GiB dictionary
            blob = _xz_dict_4gib(lzma.compress(bytes(4 * n), preset=0))
        elif how == 2:  # expands past the size the header implies
            blob = lzma.compress(bytes(4 * n * int(rng.integers(2, 2000))), preset=6)
        elif how == 3:  # one symbol short
            blob = lzma.compress(bytes(4 * n - 4), preset=0)
        elif how == 4:  # truncated xz
            full = lzma.compress(rng.integers(-5, 5, size=n).astype("<i4").tobytes())
            blob = full[: int(rng.integers(1, len(full)))]
        else:  # a raw LZMA1 (.lzma) container instead of xz
            blob = lzma.compress(bytes(4 * n), format=lzma.FORMAT_ALONE)
        strings.append([blob])
    return _repack(b, strings, coder="lzma")


def damage(rng, b: Base, ctx: Context) -> bytes:
    """Container damage, CRC not fixed: truncation, trailing bytes, random bytes, empty."""
    how = int(rng.integers(0, 5))
    if how == 0:
        return b.data[: int(rng.integers(0, len(b.data)))]
    if how == 1:
        return b.data + rng.integers(0, 256, size=int(rng.integers(1, 64)), dtype=np.uint8).tobytes()
    if how == 2:
        return rng.integers(0, 256, size=int(rng.integers(0, 2048)), dtype=np.uint8).tobytes()
    if how == 3:
        return bitstream.MAGIC + rng.integers(0, 256, size=int(rng.integers(0, 200)), dtype=np.uint8).tobytes()
    d = bytearray(b.data)
    _flip(rng, d, 0, len(d), 1)
    return bytes(d)


MUTATIONS: tuple[tuple[Callable, float], ...] = (
    (flip_body, 1.0), (flip_strings, 3.0), (overwrite_strings, 2.0), (random_string, 1.5),
    (resize_string, 1.5), (move_boundary, 1.0), (swap_strings, 0.5), (splice, 0.5),
    (forge_dims, 1.0), (forge_field, 1.0), (forge_lzma, 1.0), (damage, 0.5),
)


def mutant(ctx: Context, seed: int, i: int) -> tuple[str, bytes, object]:
    """Case ``i``'s ``(name, stream bytes, prepared model that decodes it)``. Every 50th case
    is a valid stream with the wrong model (other weights, or another architecture)."""
    rng = np.random.default_rng([seed, i])
    b = ctx.bases[i % len(ctx.bases)]
    if i % 50 == 49:
        archs = sorted(ctx.models)
        wrong = ctx.other[b.stream.arch] if rng.random() < 0.5 else \
            ctx.models[archs[(archs.index(b.stream.arch) + 1) % len(archs)]]
        return f"{b.name}/wrong-model", b.data, wrong
    weights = np.array([w for _, w in MUTATIONS])
    fn = MUTATIONS[int(rng.choice(len(MUTATIONS), p=weights / weights.sum()))][0]
    return f"{b.name}/{fn.__name__}", fn(rng, b, ctx), b.pm


def case(ctx: Context, seed: int, i: int) -> tuple[str, Callable[[], object]]:
    """Case ``i``: ``(name, call)`` decoding :func:`mutant` ``i`` in this process."""
    from models.codec import decompress_image_timed

    name, data, pm = mutant(ctx, seed, i)
    return name, lambda: decompress_image_timed(pm, data, source="case")
