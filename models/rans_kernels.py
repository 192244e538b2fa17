"""The numba kernels of :mod:`models.rans` (compiled, cached, without the GIL); the string
format's numbers come from :mod:`models.rans_format`.

Kept apart so that importing :mod:`models.rans` does not import numba: a small stream is
decoded by the pure-Python decoder there, and a command that only decodes small streams
starts without numba's import and cache loading (about 0.5-1 s).
"""

from __future__ import annotations

import numba
import numpy as np

from models.rans_format import (  # noqa: F401
    BAD_INDEX,
    BYPASS_BITS,
    ESCAPE_TOO_LONG,
    MAX_BYPASS,
    OK,
    PRECISION,
    RANS_L,
    READ_PAST_END,
)


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
def decode_into(words, state: np.ndarray, idx, cdf, lengths, offsets, out, means,
                values) -> int:
    """Decode ``len(idx)`` symbols into ``out`` (int32 or float64), continuing the coder ``state``
    (``int64[2]``: the coder state, below 2^63, and the next word's position in ``words``,
    updated in place); where ``values`` is not empty, also ``values[i] = out[i] + means[i]``
    (float64: the dequantized latent, in the same pass over memory). Returns a status code
    (:data:`OK` or an error). Runs without the GIL."""
    dequantize = values.shape[0] > 0
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
        v = value + offsets[t]
        out[i] = v
        if dequantize:
            values[i] = v + means[i]
    state[0] = np.int64(x)
    state[1] = p
    return OK


@numba.njit(cache=True, nogil=True)
def decode_share(words, starts, states, items, idx, cuts, cdf, lengths, offsets, out, means,
                 values) -> tuple[int, int]:
    """One thread's share of a pass: substreams ``items`` (in order), each by
    :func:`decode_into`, in one call without the GIL. Substream ``j``'s words are
    ``words[starts[j] : starts[j + 1]]``, its state is row ``j`` of ``states`` (``int64[c, 2]``,
    updated in place), its symbols ``cuts[j] : cuts[j + 1]`` of ``idx``, ``out`` and (where
    ``values`` is not empty) ``means`` and ``values``. Returns ``(OK, -1)`` or the first
    failure as ``(status, j)``."""
    dequantize = values.shape[0] > 0
    for j in items:
        lo, hi = cuts[j], cuts[j + 1]
        if dequantize:
            m, v = means[lo:hi], values[lo:hi]
        else:
            m, v = means, values
        status = decode_into(words[starts[j] : starts[j + 1]], states[j], idx[lo:hi], cdf,
                             lengths, offsets, out[lo:hi], m, v)
        if status != OK:
            return status, j
    return OK, -1
