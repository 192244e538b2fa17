"""Independent rANS substreams of one latent level, coded on a thread pool (container v3).

How a level's symbols are dealt out
-----------------------------------
A level is coded in passes: one for a plain level, ``P`` for a progressive one
(:func:`models.latent_model.level_passes`); a pass's ``n`` symbols are in coding order (NCHW
order over the pass's elements). With ``c`` substreams, pass ``g`` is cut into ``c``
contiguous chunks, chunk ``j`` = symbols ``[j n / c, (j + 1) n / c)`` (integer division:
:func:`cuts`), and substream ``j`` holds chunk ``j`` of every pass, pass after pass. The
decoder of substream ``j`` keeps its own coder state from one pass to the next, so the
passes stay sequential and the chunks of one pass decode at once, one per thread.

Contiguous chunks of NCHW order are channel groups (the cut may fall inside a channel, then
that channel is split into bands of rows). The context stays exact: every symbol's table
index and mean come from the float64 parameter nets before its pass is coded (from the
levels and passes decoded earlier), never from the rANS coder's state, so cutting a pass
changes no probability. What a cut costs is the coder's own overhead: each substream ends
with the 64-bit coder state, rounds up to whole 32-bit words and has a 4-byte length in the
container, about 14 bytes each (measured overhead: docs/models.md).

Every substream count and every thread count decodes to the same symbols; the count is the
encoder's choice (:func:`substream_count`: up to K, and no more than one substream per
:data:`MIN_SYMBOLS` symbols, so that small levels stay whole) and the stream records it.

Threads: :func:`pool` keeps one thread pool per thread count for the process; the numba
coder (:mod:`models.rans`) runs without the GIL, so ``t`` threads decode ``t`` substreams
on ``t`` cores.

Devices: the parameter nets, the mean snapping and the table indexing stay on the
parameter device (a GPU when coding there); what crosses to the host is one int32 array of
table indexes per pass (and, encoding, one of symbols), cast on the device before a single
copy (:func:`host_int32`), and decoded symbols go back as one array per pass: no
per-element transfers or synchronisations.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from cloud3d.errors import CodecError
from models import rans

#: default K: the most substreams one level is cut into
DEFAULT_SUBSTREAMS = 4
#: the encoder makes no substream of fewer symbols than this (one per level at least)
MIN_SYMBOLS = 16384

#: a pass (or, encoding, a level) of fewer symbols is coded on the calling thread alone: handing
#: half of it to a pool thread costs ~0.15-0.2 ms on a 2-vCPU VM, more than the coding it
#: saves (46,080 symbols: 0.30 ms on one thread, 0.34 ms on two; 61,440: 0.52 vs 0.42-0.46 ms;
#: docs/studies/2026-12-06-substream-handoff.md). Where the work runs changes no byte.
POOL_MIN_SYMBOLS = 49152

_POOLS: dict[int, Workers] = {}


class Workers:
    """``threads`` threads for one call's items: the calling thread and ``threads - 1`` pool
    threads (the caller works too, so one item group starts at once, without waking a
    thread, and a 2-thread call wakes only one).

    Items are dealt round-robin: thread ``g`` runs items ``g, g + threads, ...`` in order, the
    caller ``g = 0``; equal-sized items (substreams, bands) keep the threads level.
    """

    def __init__(self, threads: int) -> None:
        self.threads = threads
        self._pool = ThreadPoolExecutor(threads - 1, thread_name_prefix="c3d-coder")

    def map(self, fn: Callable[[int], Any], n: int) -> list[Any]:
        """``[fn(0), ..., fn(n - 1)]``; an error is raised only after every thread is done
        with its items (none is left writing into the caller's arrays)."""
        out: list[Any] = [None] * n

        def group(g: int) -> None:
            for j in range(g, n, self.threads):
                out[j] = fn(j)

        futures = [self._pool.submit(group, g) for g in range(1, min(self.threads, n))]
        try:
            group(0)
        finally:
            for f in futures:
                f.exception()  # waits
        for f in futures:
            f.result()  # re-raises a worker's error
        return out


# a forked child has none of its parent's pool threads: it makes its own pools (work queued
# on an inherited pool would wait forever)
os.register_at_fork(after_in_child=_POOLS.clear)


def available_cores() -> int:
    """CPU cores this process may run on (``os.sched_getaffinity``; ``os.cpu_count`` where
    that is missing)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def check_threads(threads: int | None) -> int:
    """``threads`` as a positive int; None -> :func:`available_cores`."""
    if threads is None:
        return available_cores()
    if isinstance(threads, bool) or not isinstance(threads, int | np.integer) or threads < 1:
        raise ValueError(f"threads must be a positive whole number, got {threads!r}")
    return int(threads)


def pool(threads: int) -> Workers | None:
    """The process's :class:`Workers` for ``threads`` threads (None for one: run inline)."""
    if threads <= 1:
        return None
    if threads not in _POOLS:
        _POOLS[threads] = Workers(threads)
    return _POOLS[threads]


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Torch's intra-op thread count set to ``threads`` for the block, then restored
    (``None``: left as it is)."""
    import torch

    before = torch.get_num_threads()
    if threads is not None and before != threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


def run(workers: Workers | None, fn: Callable[[int], Any], n: int) -> list[Any]:
    """``[fn(0), ..., fn(n - 1)]``, on ``workers`` when there are several items."""
    if workers is None or n <= 1:
        return [fn(j) for j in range(n)]
    return workers.map(fn, n)


def substream_count(n_symbols: int, k: int) -> int:
    """How many substreams the encoder cuts a level of ``n_symbols`` into (1..k): ``k``, or,
    where the level is too small for ``k`` of :data:`MIN_SYMBOLS` symbols, the largest even
    count that fits (so that 2 and 4 threads share the work evenly), or 1."""
    fits = n_symbols // MIN_SYMBOLS
    if fits >= k:
        return k
    return max(1, fits - fits % 2)


def cuts(n: int, c: int) -> list[int]:
    """Chunk boundaries of a pass of ``n`` symbols cut ``c`` ways: ``c + 1`` offsets."""
    return [j * n // c for j in range(c + 1)]


def substream_symbols(pass_sizes: Sequence[int], c: int) -> list[int]:
    """Symbols in each of ``c`` substreams of a level whose passes hold ``pass_sizes``."""
    total = [0] * c
    for n in pass_sizes:
        b = cuts(n, c)
        for j in range(c):
            total[j] += b[j + 1] - b[j]
    return total


def encode_level(tables: Any, passes: list[tuple[np.ndarray, np.ndarray]], c: int,
                 workers: Workers | None) -> tuple[bytes, tuple[int, ...]]:
    """One level's ``c`` substreams: ``(their bytes one after the other, their lengths)``.

    ``passes``: ``(symbols, indexes)`` int32 arrays of each pass in coding order;
    ``tables``: a :class:`models.entropy.CoderTables` (its numpy tables).
    """
    bounds = [cuts(len(s), c) for s, _ in passes]

    def one(j: int) -> bytes:
        sym = np.concatenate([s[b[j] : b[j + 1]] for (s, _), b in zip(passes, bounds, strict=True)])
        idx = np.concatenate([i[b[j] : b[j + 1]] for (_, i), b in zip(passes, bounds, strict=True)])
        return rans.encode(sym, idx, tables.np_cdf, tables.np_lengths, tables.np_offsets)

    small = sum(len(sym) for sym, _ in passes) < POOL_MIN_SYMBOLS
    blobs = run(None if small else workers, one, c)
    return b"".join(blobs), tuple(len(b) for b in blobs)


class LevelDecoder:
    """Reads one level's substreams pass by pass (see the module docstring).

    ``blob``: the level's substreams one after the other; ``lengths``: their byte lengths
    (checked by the container: whole words, at least 8 bytes). ``name`` prefixes errors.
    """

    def __init__(self, blob: bytes, lengths: tuple[int, ...], tables: Any, name: str) -> None:
        self.tables, self.name = tables, name
        self.all_words = rans.words_of(blob)
        #: substream j's words are all_words[starts[j] : starts[j + 1]]
        self.starts = np.cumsum([0, *lengths], dtype=np.int64) // 4
        self.words = [self.all_words[self.starts[j] : self.starts[j + 1]]
                      for j in range(len(lengths))]
        self.states = np.empty((len(lengths), 2), dtype=np.int64)
        for j, w in enumerate(self.words):
            try:
                self.states[j] = rans.start_state(w)
            except ValueError as exc:
                raise CodecError(f"{name}: substream {j}: {exc} (corrupt or forged)") from None

    def decode_pass(self, idx: np.ndarray, workers: Workers | None,
                    means: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """``(symbols, values)`` of one pass from its int32 table indexes (coding order): the
        symbols as float64 (whole numbers, exact: the dtype the coding loop computes with),
        and, where ``means`` (float64, one per symbol) is given, the dequantized latent
        ``symbols + means`` (else None). The threads write both themselves, so nothing is
        converted or added afterwards on one core.

        Each thread decodes its share of the substreams (``j, j + threads, ...``) in one
        call of the numba kernel (one thread below :data:`POOL_MIN_SYMBOLS`); a pass of at
        most :data:`models.rans.SMALL` symbols is decoded in pure Python on the calling
        thread (no numba import for small streams)."""
        c = len(self.words)
        b = np.asarray(cuts(len(idx), c), dtype=np.int64)
        out = np.empty(len(idx), dtype=np.float64)
        values = None if means is None else np.empty(len(idx), dtype=np.float64)
        tb = self.tables
        if len(idx) <= rans.SMALL:
            results = [(rans.decode_into(self.words[j], self.states[j], idx[b[j] : b[j + 1]],
                                         tb.np_cdf, tb.np_lengths, tb.np_offsets,
                                         out[b[j] : b[j + 1]],
                                         None if means is None else means[b[j] : b[j + 1]],
                                         None if values is None else values[b[j] : b[j + 1]]),
                        j) for j in range(c)]
        else:
            small = workers is None or len(idx) < POOL_MIN_SYMBOLS
            threads = 1 if small else min(workers.threads, c)
            shares = [np.arange(g, c, threads, dtype=np.int64) for g in range(threads)]

            def share(g: int) -> tuple[int, int]:
                return rans.decode_share(self.all_words, self.starts, self.states, shares[g],
                                         idx, b, tb.np_cdf, tb.np_lengths, tb.np_offsets, out,
                                         means, values)

            results = run(workers, share, threads)
        for status, j in results:
            if status != rans.OK:
                why = {rans.READ_PAST_END: "ends before its symbols do",
                       rans.ESCAPE_TOO_LONG: "holds an escaped value longer than 32 bits",
                       rans.BAD_INDEX: "asks for a table the model lacks"}[status]
                raise CodecError(f"{self.name}: substream {j} {why} (corrupt or forged)")
        return out, values

    def finish(self) -> None:
        """Refuse substreams with bytes left over or a coder not back at its start state."""
        for j, (w, st) in enumerate(zip(self.words, self.states, strict=True)):
            if not rans.finished(w, st):
                raise CodecError(f"{self.name}: substream {j} does not end where its symbols "
                                 "do (corrupt or forged)")


def host_int32(t: Any) -> np.ndarray:
    """``t`` flattened to a host ``int32`` array: cast on its own device, then one copy (a
    CUDA tensor crosses to the host as compact integers, one transfer per call)."""
    import torch

    return t.reshape(-1).to(torch.int32).cpu().numpy()


def level_passes_host(levels: Any, k: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Level ``k``'s ``(symbols, indexes)`` per pass as host int32 arrays, coding order
    (``levels``: a :class:`models.entropy.Levels`)."""
    s, i, masks = levels.symbols[k], levels.indexes[k], levels.masks[k]
    if masks is None:
        return [(host_int32(s), host_int32(i))]
    return [(host_int32(s[m]), host_int32(i[m])) for m in masks]


def tile_reader(ep: Any, shapes: list[tuple[int, ...]], strings: list[bytes],
                parts: list[tuple[int, ...]], source: str, workers: Workers | None
                ) -> tuple[Callable[..., Any], Callable[[], None]]:
    """The reading side of a version-3 tile (``ep``: its ``EntropyParams``): ``(read,
    finish)``, where ``read`` is the ``level_symbols`` step of
    :func:`models.entropy.code_levels` (each pass's table indexes go to the host once as
    int32, its symbols come back once, as float64 on the parameter device; on a CPU with the
    dequantized values, which the decoding threads write) and ``finish`` checks, after the
    loop, that every substream was read to its end."""
    import torch

    readers = [LevelDecoder(b, p, ep.tables(k), f"{source}: latent level {k}")
               for k, (b, p) in enumerate(zip(strings, parts, strict=True))]

    # on a CPU the threads also dequantize (symbols + means); on a GPU only the compact int32
    # indexes cross to the host, and the means stay on the device for the addition there
    on_host = ep.pdev.type == "cpu"
    top = len(shapes) - 1

    def read(k: int, mask: torch.Tensor | None, offset: torch.Tensor,
             idx: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        if on_host and k == top and mask is None:
            idx_h, means_h = ep.top_host(shapes[k])
        else:
            idx_h = host_int32(idx)
            means_h = offset.reshape(-1).numpy() if on_host else None
        syms, values = readers[k].decode_pass(idx_h, workers, means_h)
        shape = shapes[k] if mask is None else (-1,)
        out = torch.from_numpy(syms).to(ep.pdev).reshape(shape)
        if values is None:
            return out
        return out, torch.from_numpy(values).reshape(shape)

    def finish() -> None:
        for r in readers:
            r.finish()

    return read, finish
