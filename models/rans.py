"""A 64-bit rANS coder compiled with numba that runs without the GIL (container v3 substreams).

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

import numba
import numpy as np

#: probability precision (bits)
PRECISION = 16
#: bits per bypass chunk of an escaped value
BYPASS_BITS = 4
#: lower bound of the coder state's normalisation interval
RANS_L = 1 << 31
#: most bypass chunks of one escaped value (32 bits)
MAX_BYPASS = 32 // BYPASS_BITS
#: largest |symbol - offset| the encoder takes (its escape value must fit 32 bits)
MAX_MAGNITUDE = 2**30

#: decoder status codes
OK, READ_PAST_END, ESCAPE_TOO_LONG, BAD_INDEX = 0, 1, 2, 3


def tables_array(cdf: list[list[int]], lengths: list[int],
                 offsets: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """compressai's list-of-lists tables as ``(cdf (T, max_len) int32, lengths (T,) int32,
    offsets (T,) int32)``; rows are padded with 65536 past their length."""
    width = max((len(r) for r in cdf), default=1)
    arr = np.full((len(cdf), width), 1 << PRECISION, dtype=np.int32)
    for t, row in enumerate(cdf):
        arr[t, : len(row)] = row
    return arr, np.asarray(lengths, dtype=np.int32), np.asarray(offsets, dtype=np.int32)


@numba.njit(cache=True, nogil=True)
def _escape(v: int, max_value: int) -> tuple[int, int]:
    """``(table symbol, raw escape value or -1)`` of value ``v`` (= symbol - offset)."""
    if v < 0:
        return max_value, -2 * v - 1
    if v >= max_value:
        return max_value, 2 * (v - max_value)
    return v, -1


@numba.njit(cache=True, nogil=True)
def _n_chunks(raw: int) -> int:
    n = 0
    while (raw >> (n * BYPASS_BITS)) != 0:
        n += 1
    return n


@numba.njit(cache=True, nogil=True)
def _words_bound(sym, idx, lengths, offsets) -> int:
    """Upper bound on the words the encoder writes: one per coded item, plus the flush."""
    n = 2
    for i in range(sym.shape[0]):
        t = idx[i]
        s, raw = _escape(np.int64(sym[i]) - np.int64(offsets[t]), lengths[t] - 2)
        n += 1
        if raw >= 0:
            nb = _n_chunks(raw)
            n += 1 + nb // 15 + nb
    return n


@numba.njit(cache=True, nogil=True)
def _put(x: np.uint64, out, p: int, start: int, freq: int) -> tuple[np.uint64, int]:
    x_max = np.uint64(freq) << np.uint64(47)  # ((RANS_L >> 16) << 32) * freq
    if x >= x_max:
        p -= 1
        out[p] = np.uint32(x & np.uint64(0xFFFFFFFF))
        x >>= np.uint64(32)
    f = np.uint64(freq)
    x = ((x // f) << np.uint64(PRECISION)) + (x % f) + np.uint64(start)
    return x, p


@numba.njit(cache=True, nogil=True)
def _put_bits(x: np.uint64, out, p: int, val: int) -> tuple[np.uint64, int]:
    x_max = np.uint64(1) << np.uint64(59)  # ((RANS_L >> 16) << 32) << (16 - BYPASS_BITS)
    if x >= x_max:
        p -= 1
        out[p] = np.uint32(x & np.uint64(0xFFFFFFFF))
        x >>= np.uint64(32)
    return (x << np.uint64(BYPASS_BITS)) | np.uint64(val), p


@numba.njit(cache=True, nogil=True)
def _encode(sym, idx, cdf, lengths, offsets):
    out = np.empty(_words_bound(sym, idx, lengths, offsets), dtype=np.uint32)
    p = out.shape[0]
    x = np.uint64(RANS_L)
    mask = (1 << BYPASS_BITS) - 1
    for i in range(sym.shape[0] - 1, -1, -1):  # rANS is last in, first out
        t = idx[i]
        max_value = lengths[t] - 2
        s, raw = _escape(np.int64(sym[i]) - np.int64(offsets[t]), max_value)
        if raw >= 0:  # the escape's items in reverse: raw chunks, then the chunk count
            nb = _n_chunks(raw)
            for j in range(nb - 1, -1, -1):
                x, p = _put_bits(x, out, p, (raw >> (j * BYPASS_BITS)) & mask)
            x, p = _put_bits(x, out, p, nb % mask)
            for _ in range(nb // mask):
                x, p = _put_bits(x, out, p, mask)
        x, p = _put(x, out, p, cdf[t, s], cdf[t, s + 1] - cdf[t, s])
    p -= 2
    out[p] = np.uint32(x & np.uint64(0xFFFFFFFF))
    out[p + 1] = np.uint32(x >> np.uint64(32))
    return out[p:]


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
    return _encode(sym, idx, cdf, lengths, offsets).astype("<u4", copy=False).tobytes()


@numba.njit(cache=True, nogil=True)
def _get_bits(x: np.uint64, words, p: int) -> tuple[int, np.uint64, int, bool]:
    val = int(x & np.uint64((1 << BYPASS_BITS) - 1))
    x >>= np.uint64(BYPASS_BITS)
    if x < np.uint64(RANS_L):
        if p >= words.shape[0]:
            return val, x, p, False
        x = (x << np.uint64(32)) | np.uint64(words[p])
        p += 1
    return val, x, p, True


@numba.njit(cache=True, nogil=True)
def decode_into(words, state: np.ndarray, idx, cdf, lengths, offsets, out) -> int:
    """Decode ``len(idx)`` symbols into ``out`` (int32 or float64), continuing the coder ``state``
    (``int64[2]``: the coder state, below 2^63, and the next word's position in ``words``,
    updated in place). Returns a status code (:data:`OK` or an error). Runs without the GIL."""
    x = np.uint64(state[0])
    p = np.int64(state[1])
    mask16 = np.uint64((1 << PRECISION) - 1)
    n_tables = lengths.shape[0]
    for i in range(idx.shape[0]):
        t = idx[i]
        if t < 0 or t >= n_tables:
            return BAD_INDEX
        n = lengths[t]
        cum = int(x & mask16)
        lo, hi = 0, n - 1  # largest s with cdf[t, s] <= cum; cdf[t, n - 1] = 65536 > cum
        while hi - lo > 1:
            mid = (lo + hi) >> 1
            if cdf[t, mid] <= cum:
                lo = mid
            else:
                hi = mid
        s = lo
        start = cdf[t, s]
        freq = cdf[t, s + 1] - start
        x = np.uint64(freq) * (x >> np.uint64(PRECISION)) + (x & mask16) - np.uint64(start)
        if x < np.uint64(RANS_L):
            if p >= words.shape[0]:
                return READ_PAST_END
            x = (x << np.uint64(32)) | np.uint64(words[p])
            p += 1
        value = s
        max_value = n - 2
        if s == max_value:  # escape: chunk count, then the raw value in 4-bit chunks
            val, x, p, ok = _get_bits(x, words, p)
            if not ok:
                return READ_PAST_END
            nb = val
            while val == (1 << BYPASS_BITS) - 1:
                val, x, p, ok = _get_bits(x, words, p)
                if not ok:
                    return READ_PAST_END
                nb += val
                if nb > MAX_BYPASS:
                    return ESCAPE_TOO_LONG
            if nb > MAX_BYPASS:
                return ESCAPE_TOO_LONG
            raw = 0
            for j in range(nb):
                val, x, p, ok = _get_bits(x, words, p)
                if not ok:
                    return READ_PAST_END
                raw |= val << (j * BYPASS_BITS)
            value = raw >> 1
            value = -value - 1 if raw & 1 else value + max_value
        out[i] = value + offsets[t]
    state[0] = np.int64(x)
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
