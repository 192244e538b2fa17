"""A 64-bit rANS coder compiled with numba that runs without the GIL (container v3 substreams).

The numba kernels live in :mod:`models.rans_kernels`, imported on first use: strings of up to
:data:`SMALL` symbols are decoded by :func:`_decode_into_py`, the same arithmetic on Python
integers, so that decoding a small stream never imports numba.

The arithmetic is compressai's (``compressai.ans``, ryg_rans' ``rans64.h`` with 16-bit
precision and its 4-bit bypass escape for values outside a table): for the same symbols,
indexes and tables :func:`encode` returns the bytes ``RansEncoder.encode_with_indexes``
returns (tested), and :func:`decode` reads them back. What differs is how it is called:

* numpy arrays in and out (no Python lists of ints), tables as one padded ``int32`` array;
* compiled with ``nogil=True``: two threads coding two substreams really run on two cores
  (compressai's coder holds the GIL: two threads take longer than one, measured);
* the decoder is strict: it never reads past the end of its words (an error instead of
  compressai's zero padding), refuses escapes longer than 32 bits, and a substream is only
  accepted when, after its last symbol, every word was read and the coder is back in its
  initial state (:func:`finished`), which every string our encoder writes satisfies.

Layout of a string: little-endian 32-bit words, the flushed 64-bit state first (low word,
then high word), then the renormalisation words in decoding order; at least 2 words.

Tables (:func:`tables_array`): ``cdf[t, 0 : lengths[t]]`` is table ``t``'s quantized CDF
(``cdf[t, 0] == 0``, ``cdf[t, lengths[t] - 1] == 65536``, each step >= 1; the last symbol
``lengths[t] - 2`` is the escape), ``offsets[t]`` the value of symbol 0.
"""

from __future__ import annotations

from bisect import bisect_right

import numpy as np

from models.rans_format import (  # noqa: F401 - part of this module's interface
    BAD_INDEX,
    BYPASS_BITS,
    ESCAPE_TOO_LONG,
    MAX_BYPASS,
    MAX_MAGNITUDE,
    OK,
    PRECISION,
    RANS_L,
    READ_PAST_END,
)

#: most symbols a decode call handles in pure Python (beyond: the numba kernel)
SMALL = 4096
_MASK64 = (1 << 64) - 1


def tables_array(cdf: list[list[int]], lengths: list[int],
                 offsets: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """compressai's list-of-lists tables as ``(cdf (T, max_len) int32, lengths (T,) int32,
    offsets (T,) int32)``; rows are padded with 65536 past their length."""
    width = max((len(r) for r in cdf), default=1)
    arr = np.full((len(cdf), width), 1 << PRECISION, dtype=np.int32)
    for t, row in enumerate(cdf):
        arr[t, : len(row)] = row
    return arr, np.asarray(lengths, dtype=np.int32), np.asarray(offsets, dtype=np.int32)


def encode(sym: np.ndarray, idx: np.ndarray, cdf: np.ndarray, lengths: np.ndarray,
           offsets: np.ndarray) -> bytes:
    """One rANS string of ``sym`` (int32 values) coded with tables ``idx`` (int32, same
    length, each in ``0 .. T-1``); see the module docstring. Runs without the GIL.

    Raises ``ValueError`` for a value further than :data:`MAX_MAGNITUDE` from its table.
    """
    sym = np.ascontiguousarray(sym, dtype=np.int32)
    idx = np.ascontiguousarray(idx, dtype=np.int32)
    if sym.shape != idx.shape or sym.ndim != 1:
        raise ValueError("symbols and indexes must be 1-D arrays of one length")
    if sym.size and (int(np.abs(sym.astype(np.int64) - offsets[idx]).max()) > MAX_MAGNITUDE):
        raise ValueError(f"a latent symbol is more than {MAX_MAGNITUDE} from its table")
    from models.rans_kernels import _encode

    return _encode(sym, idx, cdf, lengths, offsets).astype("<u4", copy=False).tobytes()


_NONE = np.empty(0, dtype=np.float64)


def _dequantize_arrays(n: int, means: np.ndarray | None,
                       values: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """The kernels' ``(means, values)`` pair: two empty arrays for "symbols only", else both
    given and ``n`` long (a ValueError otherwise: the kernels would silently write fewer)."""
    if values is None and means is None:
        return _NONE, _NONE
    if means is None or values is None or not means.shape == values.shape == (n,):
        raise ValueError(f"means and values must both be 1-D arrays of {n} elements")
    return means, values


def decode_into(words: np.ndarray, state: np.ndarray, idx: np.ndarray, cdf: np.ndarray,
                lengths: np.ndarray, offsets: np.ndarray, out: np.ndarray,
                means: np.ndarray | None = None, values: np.ndarray | None = None) -> int:
    """Decode ``len(idx)`` symbols into ``out`` (int32 or float64), continuing the coder ``state``
    (``int64[2]``: the coder state, below 2^63, and the next word's position in ``words``,
    updated in place). With ``means`` and ``values`` (float64, ``len(idx)`` each), also
    write the dequantized latent ``values = out + means`` (the same float64 sum torch
    computes). Returns a status code (:data:`OK` or an error). Up to :data:`SMALL` symbols
    in pure Python, else the numba kernel (which runs without the GIL)."""
    means, values = _dequantize_arrays(idx.shape[0], means, values)
    if idx.shape[0] <= SMALL:
        return _decode_into_py(words, state, idx, cdf, lengths, offsets, out, means, values)
    from models.rans_kernels import decode_into as kernel

    return kernel(words, state, idx, cdf, lengths, offsets, out, means, values)


def decode_share(words: np.ndarray, starts: np.ndarray, states: np.ndarray, items: np.ndarray,
                 idx: np.ndarray, cuts: np.ndarray, cdf: np.ndarray, lengths: np.ndarray,
                 offsets: np.ndarray, out: np.ndarray, means: np.ndarray | None = None,
                 values: np.ndarray | None = None) -> tuple[int, int]:
    """Decode several substreams of one pass in one call of the numba kernel (one thread's
    share: no Python between them, the GIL released throughout); see
    :func:`models.rans_kernels.decode_share` for the arrays. Returns ``(status, j)``:
    ``(OK, -1)``, or the first substream ``j`` that failed and its status."""
    means, values = _dequantize_arrays(idx.shape[0], means, values)
    from models.rans_kernels import decode_share as kernel

    return kernel(words, starts, states, items, idx, cuts, cdf, lengths, offsets, out, means,
                  values)


def _get_bits_py(x: int, words: np.ndarray, p: int) -> tuple[int, int, int, bool]:
    val = x & ((1 << BYPASS_BITS) - 1)
    x >>= BYPASS_BITS
    if x < RANS_L:
        if p >= words.shape[0]:
            return val, x, p, False
        x = ((x << 32) | int(words[p])) & _MASK64
        p += 1
    return val, x, p, True


def _decode_into_py(words, state, idx, cdf, lengths, offsets, out, means, values) -> int:
    """:func:`models.rans_kernels.decode_into` on Python integers (64-bit wrap-around kept,
    so a forged string gives the same status either way)."""
    x, p = int(state[0]) & _MASK64, int(state[1])
    mask16 = (1 << PRECISION) - 1
    n_tables = lengths.shape[0]
    n_words = words.shape[0]
    idx_l, len_l, off_l = idx.tolist(), lengths.tolist(), offsets.tolist()
    rows: dict[int, list[int]] = {}
    for i, t in enumerate(idx_l):
        if t < 0 or t >= n_tables:
            return BAD_INDEX
        n = len_l[t]
        row = rows.get(t)
        if row is None:
            row = rows[t] = cdf[t, :n].tolist()
        cum = x & mask16
        s = bisect_right(row, cum, 0, n - 1) - 1  # largest s with row[s] <= cum
        start = row[s]
        x = (row[s + 1] - start) * (x >> PRECISION) + (x & mask16) - start
        x &= _MASK64
        if x < RANS_L:
            if p >= n_words:
                return READ_PAST_END
            x = ((x << 32) | int(words[p])) & _MASK64
            p += 1
        value, max_value = s, n - 2
        if s == max_value:  # escape: chunk count, then the raw value in 4-bit chunks
            val, x, p, ok = _get_bits_py(x, words, p)
            if not ok:
                return READ_PAST_END
            nb = val
            while val == (1 << BYPASS_BITS) - 1:
                val, x, p, ok = _get_bits_py(x, words, p)
                if not ok:
                    return READ_PAST_END
                nb += val
                if nb > MAX_BYPASS:
                    return ESCAPE_TOO_LONG
            if nb > MAX_BYPASS:
                return ESCAPE_TOO_LONG
            raw = 0
            for j in range(nb):
                val, x, p, ok = _get_bits_py(x, words, p)
                if not ok:
                    return READ_PAST_END
                raw |= val << (j * BYPASS_BITS)
            value = raw >> 1
            value = -value - 1 if raw & 1 else value + max_value
        out[i] = value + off_l[t]
    if values.shape[0]:
        np.add(out, means, out=values)
    state[0] = np.int64(x) if x < 1 << 63 else np.int64(x - (1 << 64))
    state[1] = p
    return OK


def start_state(words: np.ndarray) -> np.ndarray:
    """The decoder state (``int64[2]``) at the start of a string of at least 2 words.

    Raises ``ValueError`` for a flushed state outside ``[RANS_L, RANS_L << 32)``, where an
    encoder's state always lies."""
    x = int(words[0]) | (int(words[1]) << 32)
    if not RANS_L <= x < RANS_L << 32:
        raise ValueError("the coder state it starts with is out of range")
    return np.array([x, 2], dtype=np.int64)


def finished(words: np.ndarray, state: np.ndarray) -> bool:
    """True when a decoder read every word and is back in the encoder's initial state."""
    return int(state[1]) == words.shape[0] and int(state[0]) == RANS_L


def words_of(blob: bytes | memoryview) -> np.ndarray:
    """A string's bytes (a multiple of 4) as ``uint32`` words, without copying."""
    return np.frombuffer(blob, dtype="<u4")
