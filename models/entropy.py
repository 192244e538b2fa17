"""Entropy coding of the quantized latents: tables, the float64 parameter path, rANS and LZMA.

One loop, :func:`code_levels`, walks the latent levels for the encoder and for the decoder
alike (they must mirror each other exactly); only the step that yields a level's integer
symbols differs: the encoder rounds the latent around its offset, the decoder reads the
symbols from the stream.

Cross-device determinism
------------------------
The decoder must rebuild exactly the CDF index and mean the encoder used for every latent
element, even when encoder (GPU) and decoder (CPU) differ. Three rules make this robust:

1. The entropy-parameter path (hyper-synthesis h_s + Pro-Est head) runs on a float64 copy
   of those layers, fed with quantized latents that are exact in floating point. float64
   results on different devices differ by ~1e-15 relative, not ~1e-6 as float32/TF32 do.
2. Predicted means are snapped to a grid of 1/64 (:data:`MEAN_GRID`) and scales are turned
   into table indexes by float64 comparisons. A device difference only matters if a value
   lies within ~1e-13 of a grid step or table boundary: about 1e-11 per element, i.e. about
   one frame in 10^5 at 1080p for the small model.
3. Decoded latents are ``symbol + snapped mean`` (exact), so each level's input to the next
   level's parameter network is identical on every device.

Progressive levels (:class:`~models.latent_model.ProgressiveNet`, e.g. the MSP model of
:mod:`models.msp`) keep all three: the whole progressive net is a parameter net, copied to
float64 like the others (rule 1); each pass's means are snapped and its scales indexed like
any level's (rule 2); its context is the dequantized level above plus the elements of the
earlier passes, ``symbol + snapped mean`` (rule 3); the pass masks depend on the latent's
shape alone. Encoder and decoder run the passes through the same loop
(:func:`~models.latent_model.walk_groups` in :func:`code_levels`), so each pass sees the same
context on both sides. A progressive level's substreams (:mod:`models.substreams`) each
hold their chunk of every pass, one pass after the other, and the decoder reads on pass by
pass (in a version-1/2 stream: one string per level, compressai's ``decode_stream``).

The synthesis g_s itself stays float32 (or fp16); it does not feed the entropy decoder, so
device differences there only move reconstructed pixels by rounding noise (typically 0-1
code values), never desynchronise the stream.

What a stream may claim
-----------------------
A rANS string is whole 32-bit words and ends with the coder's 64-bit state, so it has at
least 8 bytes and a multiple of 4. No symbol costs less than ``min_bits`` (the cheapest
symbol of any CDF table: ``-log2(max frequency / 2^16)``; the escape to bypass coding counts
with its frequency alone, although an escaped value costs more), so a string of ``B`` bytes holds
at most ``4 * (8 B + 64) / min_bits`` symbols (a factor 4 of slack for rANS rounding and
the coder state). An LZMA string is a whole xz container that expands at most
:data:`LZMA_MAX_RATIO` times (xz reaches ~6,700:1 on long runs of zeros); it is decoded
with at most :data:`LZMA_MEMLIMIT` bytes of decoder memory, whatever its header asks for. :func:`check_strings`
applies these bounds before anything is decoded, so a short forged stream cannot claim a
large latent.
"""

from __future__ import annotations

import copy
import lzma
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from cloud3d.errors import CodecError
from models import rans, substreams
from models.latent_model import LatentModel, ProgressiveNet, walk_groups

#: predicted means are rounded to multiples of this (a power of two: exact in binary)
MEAN_GRID = 1.0 / 64
#: decoder memory liblzma may use for one LZMA latent string (our encoder's preset 6 needs ~9 MiB)
LZMA_MEMLIMIT = 64 * 2**20
#: most decompressed bytes accepted per byte of an LZMA latent string
LZMA_MAX_RATIO = 16384
#: the smallest xz container (empty payload)
LZMA_MIN_BYTES = 32
#: the smallest rANS string (the coder's flushed 64-bit state)
RANS_MIN_BYTES = 8

#: ``times`` dicts accumulate seconds under these keys
Times = dict[str, float]


def sync(device: torch.device) -> None:
    """Wait for queued CUDA work on ``device`` (no-op on CPU), so that timings are real."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class CoderTables:
    """CDF tables of one compressai entropy model as Python lists (what the rANS coder takes).

    ``min_bits``: the fewest bits any symbol can cost under these tables (see module docstring).
    """

    def __init__(self, em: Any) -> None:
        if em._quantized_cdf.numel() == 0:
            raise CodecError("model has no entropy-coder tables: call model.update() first")
        self.cdf: list[list[int]] = em._quantized_cdf.tolist()
        self.lengths: list[int] = em._cdf_length.reshape(-1).int().tolist()
        self.offsets: list[int] = em._offset.reshape(-1).int().tolist()
        cdf = em._quantized_cdf.to(torch.int64)
        freq = (cdf[:, 1:] - cdf[:, :-1]).clamp_min(0)  # entries past a row's length are 0
        top = int(freq.max()) if freq.numel() else 0
        precision = int(getattr(em, "entropy_coder_precision", 16))
        top = min(max(top, 1), 2**precision - 1)
        self.min_bits = -math.log2(top / 2**precision)
        # the same tables as int32 arrays, for the numba coder of models.rans
        self.np_cdf, self.np_lengths, self.np_offsets = rans.tables_array(
            self.cdf, self.lengths, self.offsets)


class EntropyParams:
    """Everything the entropy coder derives from one model for one parameter device ``pdev``.

    ``nets64[k]``: float64 copy of ``model.param_nets[k]`` on ``pdev`` (rule 1 above);
    ``top``/``gauss[k]``: CDF tables of the factorized prior / Gaussian conditionals;
    ``scale_tables[k]``: float64 scale table of ``gauss[k]``; ``medians``: the factorized
    prior's medians ``(1, C, 1, 1)`` float64 on ``pdev``.
    """

    def __init__(self, model: LatentModel, pdev: torch.device) -> None:
        self.pdev = pdev
        self.split_params = model.split_params
        self.nets64 = [copy.deepcopy(n).to(pdev, torch.float64).eval() for n in model.param_nets]
        self.top = CoderTables(model.bottleneck)
        self.gauss = [CoderTables(g) for g in model.gaussians]
        self.scale_tables = [g.scale_table.to(pdev, torch.float64) for g in model.gaussians]
        self.scale_bounds = [float(g.lower_bound_scale.bound) for g in model.gaussians]
        med = model.bottleneck._get_medians().detach().reshape(1, -1, 1, 1)
        self.medians = med.to(pdev, torch.float64)
        self._top_host: dict[tuple[int, ...], tuple[np.ndarray, np.ndarray]] = {}

    def top_host(self, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
        """The coarsest level's per-element table indexes (int32: the channel) and offsets
        (float64: the channel's median) for a level of ``shape``, flat in NCHW order on the
        host; made once per shape (a decoder of many frames reuses them)."""
        if shape not in self._top_host:
            n, c, h, w = shape
            idx = np.repeat(np.arange(c, dtype=np.int32), h * w)
            med = self.medians.reshape(-1).to("cpu").numpy()
            if len(self._top_host) >= 8:  # tiles come in a few shapes; stay small regardless
                self._top_host.clear()
            self._top_host[shape] = (np.tile(idx, n), np.tile(np.repeat(med, h * w), n))
        return self._top_host[shape]

    def tables(self, k: int) -> CoderTables:
        """Tables of level ``k`` (the coarsest level uses the factorized prior's)."""
        return self.gauss[k] if k < len(self.gauss) else self.top

    def snap(self, k: int, raw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Snapped means (zeros for scale-only models) and int32 CDF indexes of level ``k``
        from the raw float64 output of its parameter net (one pass's, for a progressive
        level)."""
        means, scales = self.split_params(k, raw)
        if means is None:
            means = torch.zeros_like(scales)
        else:
            means = torch.round(means / MEAN_GRID) * MEAN_GRID
        table = self.scale_tables[k]
        scales = scales.clamp_min(self.scale_bounds[k])
        # index = number of table entries (last excluded) strictly below the scale: compressai's
        # build_indexes rule, as exact float64 comparisons
        idx = torch.bucketize(scales.contiguous(), table[:-1].contiguous(), right=False)
        return means, idx.to(torch.int32)


@dataclass
class Levels:
    """The coded latents of one tile, finest level first.

    ``symbols[k]``: integer-valued float64 symbols; ``indexes[k]``: int32 CDF-table index of
    each element (the channel for the coarsest level); ``y_hat``: the dequantized finest
    latent (float64 on the parameter device), the input of the synthesis; ``masks[k]``: the
    boolean masks of level ``k``'s passes in coding order, or None for a level coded in one
    pass (its elements in NCHW order); ``passes``: entropy-coding passes over all levels
    (each one a sequential step of the decoder; see :func:`~models.latent_model.level_passes`).
    """

    symbols: list[torch.Tensor]
    indexes: list[torch.Tensor]
    y_hat: torch.Tensor
    masks: list[list[torch.Tensor] | None]
    passes: int


#: ``level_symbols(k, mask, offset, index) -> symbols``: integer-valued float64 symbols of one
#: pass over level ``k``: the whole level (``mask`` None; shaped like the level) or the
#: elements of ``mask`` (``offset``, ``index`` and the result are then 1-D, NCHW order). It
#: may instead return ``(symbols, symbols + offset)`` when it computed the dequantized values
#: itself (the substream decoder does, inside its threads); the values must be that float64
#: sum exactly.
LevelSymbols = Callable[[int, torch.Tensor | None, torch.Tensor, torch.Tensor],
                        torch.Tensor | tuple[torch.Tensor, torch.Tensor]]


def _with_values(got: torch.Tensor | tuple[torch.Tensor, torch.Tensor],
                 offset: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(symbols, dequantized)`` from what a :data:`LevelSymbols` returned."""
    if isinstance(got, tuple):
        return got
    return got, got + offset


def code_levels(ep: EntropyParams, shapes: list[tuple[int, ...]], level_symbols: LevelSymbols,
                times: Times) -> Levels:
    """The latent-level loop shared by encoder and decoder, coarsest level first.

    ``shapes[k]``: shape of latent ``k``. The coarsest level has offset = the factorized
    prior's medians and index = its channel; every other level ``k`` gets snapped means
    (offset) and CDF indexes from the float64 parameter net applied to the dequantized level
    ``k + 1``, pass by pass for a progressive level (:func:`~models.latent_model.walk_groups`:
    each pass's net also sees the passes decoded before it). ``level_symbols`` yields a
    pass's symbols (encoder: ``round(latent - offset)``; decoder: read from the stream) and
    the dequantized elements are ``symbols + offset``. Parameter nets count as
    ``times["network"]``, the rest as ``times["entropy"]``.
    """
    n = len(shapes)
    syms: list[torch.Tensor] = [torch.empty(0)] * n
    idxs: list[torch.Tensor] = [torch.empty(0)] * n
    masks: list[list[torch.Tensor] | None] = [None] * n
    passes = 0
    t0 = time.perf_counter()
    c = shapes[-1][1]
    idxs[-1] = torch.arange(c, dtype=torch.int32, device=ep.pdev).view(1, c, 1, 1).expand(shapes[-1])
    syms[-1], upper = _with_values(level_symbols(n - 1, None, ep.medians, idxs[-1]), ep.medians)
    passes += 1
    times["entropy"] += time.perf_counter() - t0
    for k in reversed(range(n - 1)):
        upper, syms[k], idxs[k], masks[k] = _code_level(ep, k, shapes[k], upper, level_symbols,
                                                        times)
        passes += 1 if masks[k] is None else len(masks[k])
    return Levels(syms, idxs, upper, masks, passes)


def _code_level(ep: EntropyParams, k: int, shape: tuple[int, ...], upper: torch.Tensor,
                level_symbols: LevelSymbols, times: Times):
    """One level of :func:`code_levels`: ``(dequantized, symbols, indexes, masks or None)``."""
    syms = idxs = torch.empty(0)
    masks: list[torch.Tensor] = []
    whole: list[torch.Tensor] = []
    entropy_s = 0.0

    def step(g: int, mask: torch.Tensor | None, raw: torch.Tensor) -> torch.Tensor:
        nonlocal entropy_s, syms, idxs
        if mask is not None and g == 0:
            syms = torch.zeros(shape, dtype=torch.float64, device=ep.pdev)
            idxs = torch.zeros(shape, dtype=torch.int32, device=ep.pdev)
        means, idx = ep.snap(k, raw)
        sync(ep.pdev)
        t1 = time.perf_counter()
        if mask is None:  # one pass over the whole level
            s, values = _with_values(level_symbols(k, None, means, idx), means)
            whole[:] = [s, idx]
        else:
            m, i = means[mask], idx[mask]
            s, v = _with_values(level_symbols(k, mask, m, i), m)
            syms[mask], idxs[mask] = s, i
            masks.append(mask)
            values = torch.zeros(shape, dtype=torch.float64, device=ep.pdev)
            values[mask] = v
        entropy_s += time.perf_counter() - t1
        return values

    t0 = time.perf_counter()
    with torch.inference_mode():
        upper = walk_groups(ep.nets64[k], upper, shape, step)
    sync(ep.pdev)
    times["network"] += time.perf_counter() - t0 - entropy_s
    times["entropy"] += entropy_s
    if whole:
        return upper, whole[0], whole[1], None
    return upper, syms, idxs, masks


def _to_list(t: torch.Tensor) -> list[int]:
    return t.reshape(-1).to("cpu", torch.int32).numpy().tolist()


def encode_strings(ep: EntropyParams, levels: Levels, coder: str, k_max: int = 1,
                   workers: Any = None) -> tuple[list[bytes], list[tuple[int, ...]] | None]:
    """The strings of one tile and, for rANS, each string's substream lengths.

    rANS: one string per level (finest first), cut into up to ``k_max`` substreams
    (:mod:`models.substreams`; :func:`~models.substreams.substream_count` of the level's
    size) coded on ``workers`` (a thread pool or None). LZMA: one string of all levels'
    symbols (int32 little-endian, finest level first) and None.
    """
    if coder == "lzma":
        payload = b"".join(s.to("cpu", torch.int32).numpy().astype("<i4").tobytes()
                           for s in levels.symbols)
        return [lzma.compress(payload, preset=6)], None
    strings, parts = [], []
    for k in range(len(levels.symbols)):
        passes = substreams.level_passes_host(levels, k)
        c = substreams.substream_count(sum(len(p[0]) for p in passes), k_max)
        try:
            blob, lens = substreams.encode_level(ep.tables(k), passes, c, workers)
        except ValueError as exc:
            raise CodecError(f"cannot code latent level {k}: {exc}") from None
        strings.append(blob)
        parts.append(lens)
    return strings, parts


def pass_sizes(ep: EntropyParams, shapes: list[tuple[int, ...]]) -> list[list[int]]:
    """Symbols in each pass of each level (a progressive level's masks depend on its shape
    alone; every other level is one pass)."""
    out = []
    for k, shape in enumerate(shapes):
        net = ep.nets64[k] if k < len(ep.nets64) else None
        if isinstance(net, ProgressiveNet):
            out.append([int(m.sum()) for m in net.group_masks(shape, torch.device("cpu"))])
        else:
            out.append([math.prod(shape)])
    return out


def check_strings(ep: EntropyParams, shapes: list[tuple[int, ...]], strings: list[bytes],
                  coder: str, source: str, parts: list[tuple[int, ...]] | None = None,
                  passes: list[list[int]] | None = None) -> None:
    """Refuse a tile whose strings are too short for the latents its header implies.

    ``parts``: the substream lengths of each level (container v3), each substream then
    bounded by the symbols it holds (``passes[k]``: the symbols of each of level ``k``'s
    passes, :func:`pass_sizes`; default one pass of the whole level). Raises :class:`CodecError` (see "What a
    stream may claim" in the module docstring).
    """
    sizes = [math.prod(s) for s in shapes]
    if coder == "lzma":
        blob = strings[0]
        if len(blob) < LZMA_MIN_BYTES or 4 * sum(sizes) > LZMA_MAX_RATIO * len(blob):
            raise CodecError(
                f"{source}: an LZMA latent string of {len(blob)} bytes cannot hold the "
                f"{sum(sizes)} symbols the header implies (forged or damaged stream)")
        return
    if parts is not None:
        for k, (lens, n) in enumerate(zip(parts, sizes, strict=True)):
            held = substreams.substream_symbols(passes[k] if passes else [n], len(lens))
            for j, (ln, m) in enumerate(zip(lens, held, strict=True)):
                most = 4 * (8 * ln + 64) / ep.tables(k).min_bits
                if m > most:
                    raise CodecError(
                        f"{source}: latent level {k} substream {j} has {ln} bytes, too few for "
                        f"the {m} symbols the header implies (at most {int(most)}; forged or "
                        "damaged stream)")
        return
    for k, (blob, n) in enumerate(zip(strings, sizes, strict=True)):
        if len(blob) < RANS_MIN_BYTES or len(blob) % 4:
            raise CodecError(f"{source}: latent string {k} has {len(blob)} bytes; rANS strings "
                             f"are whole 32-bit words, at least {RANS_MIN_BYTES} bytes")
        most = 4 * (8 * len(blob) + 64) / ep.tables(k).min_bits
        if n > most:
            raise CodecError(
                f"{source}: latent string {k} has {len(blob)} bytes, too few for the {n} "
                f"symbols the header implies (at most {int(most)}; forged or damaged stream)")


def decode_levels(ep: EntropyParams, shapes: list[tuple[int, ...]], strings: list[bytes],
                  coder: str, times: Times, source: str,
                  parts: list[tuple[int, ...]] | None = None, workers: Any = None) -> Levels:
    """Read one tile's levels from its strings (made by :func:`encode_strings`).

    ``parts``: each level's substream lengths (container v3), decoded on ``workers`` (a
    thread pool or None) with :mod:`models.rans`; None: one compressai rANS string per level
    (versions 1 and 2, read as before). Check the strings with :func:`check_strings` first.
    Raises :class:`CodecError` when the data is corrupt or of the wrong size.
    """
    if coder == "lzma":
        t0 = time.perf_counter()
        flat = lzma_symbols(strings[0], shapes, source)
        times["entropy"] += time.perf_counter() - t0
        def lzma_pass(k: int, mask: torch.Tensor | None, _o: torch.Tensor,
                      _i: torch.Tensor) -> torch.Tensor:
            sym = flat[k].to(ep.pdev, torch.float64)
            return sym if mask is None else sym[mask]

        return code_levels(ep, shapes, lzma_pass, times)
    if parts is not None:
        read, finish = substreams.tile_reader(ep, shapes, strings, parts, source, workers)
        levels = code_levels(ep, shapes, read, times)
        finish()
        return levels
    from compressai import ans

    decoders: dict[int, Any] = {}

    def rans(k: int, mask: torch.Tensor | None, _offset: torch.Tensor,
             idx: torch.Tensor) -> torch.Tensor:
        tb = ep.tables(k)
        if k not in decoders:  # a level's passes continue reading its one string
            n = math.prod(shapes[k])
            # Defensive zero padding: the rANS decoder reads at most one 32-bit word per
            # symbol plus bypass bits whose count the stream itself encodes (<= 15 bits read
            # per bit present), so a corrupt or forged string cannot make it read past the
            # buffer.
            decoders[k] = ans.RansDecoder()
            decoders[k].set_stream(strings[k] + bytes(8 * n + 16 * len(strings[k]) + 64))
        vals = decoders[k].decode_stream(_to_list(idx), tb.cdf, tb.lengths, tb.offsets)
        out = torch.tensor(vals, dtype=torch.float64, device=ep.pdev)
        return out if mask is not None else out.reshape(shapes[k])

    return code_levels(ep, shapes, rans, times)


def lzma_symbols(blob: bytes, shapes: list[tuple[int, ...]], source: str) -> list[torch.Tensor]:
    """The int64 symbol tensors of every level from one LZMA string (xz container).

    liblzma may use at most :data:`LZMA_MEMLIMIT` bytes and write at most the size the
    shapes imply (plus one byte, to notice longer data); :class:`CodecError` otherwise.
    """
    sizes = [math.prod(s) for s in shapes]
    expect = 4 * sum(sizes)
    d = lzma.LZMADecompressor(format=lzma.FORMAT_XZ, memlimit=LZMA_MEMLIMIT)
    try:
        raw = d.decompress(blob, max_length=expect + 1)
    except lzma.LZMAError as exc:
        if "memory" in str(exc).lower():
            raise CodecError(
                f"{source}: LZMA latent data asks for more than {LZMA_MEMLIMIT // 2**20} MiB of "
                "decoder memory (its xz header was not written by cloud3d)") from None
        raise CodecError(f"{source}: corrupt LZMA latent data ({exc})") from None
    if len(raw) != expect or not d.eof:
        raise CodecError(f"{source}: LZMA latent data has the wrong size for this image")
    arr = np.frombuffer(raw, dtype="<i4")
    out, pos = [], 0
    for s, n in zip(shapes, sizes, strict=True):
        out.append(torch.from_numpy(arr[pos : pos + n].astype(np.int64)).reshape(s))
        pos += n
    return out
