"""Leakage-safe assignment of captured frames to train/validation/test.

Consecutive game frames are near-twins, so frames are never split one by one.
Instead:

1. **Blocks.** The app's usable frames, in capture order, are cut into
   contiguous blocks: a new block starts when ``length`` seconds of capture
   time have passed since the block's first frame (time blocks), or every
   ``length`` frames (frame blocks, used when capture times are unknown).
2. **Seeded order.** The blocks are shuffled with ``numpy.random.default_rng(seed)``.
3. **Filling.** Splits are filled smallest-first (test, validation, train):
   each takes the next unassigned blocks of the shuffled order until it has
   its count; the last block it takes is trimmed (its later frames stay
   unused), so counts are exact.
4. **Guard.** When a block is taken, its frames closer than ``guard`` (seconds
   or frames, the block's unit) to a frame already given to another split
   are left unused. With the guard, no frame of one split lies within
   ``guard`` of a frame of another split; without it (``guard=0``) blocks
   still never cross splits, but two frames at a block boundary can be
   neighbours.

The result depends only on the frames' order/times, the counts, the block
spec and the seed.

With ``--group scene`` the units are scenes instead of time blocks
(:func:`assign_groups`): every frame of a scene goes to one split, at every resolution.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from cloud3d.errors import Cloud3dError
from cloud3d_dataset.layout import SPLITS

#: Default block length when capture times are known: 10 s of capture time.
DEFAULT_BLOCK_SECONDS = 10.0
#: Default block length without capture times: 20 frames (10 s at 2 frames/s).
DEFAULT_BLOCK_FRAMES = 20
#: Default guard: a tenth of the block (1 s, or 2 frames).
DEFAULT_GUARD_FRACTION = 0.1

_SPEC_RE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(s|sec|seconds|f|frames)?\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class Span:
    """A length in seconds (``unit="s"``) or frames (``unit="frames"``)."""

    value: float
    unit: str

    def __str__(self) -> str:
        if self.unit == "s":
            return f"{self.value:g}s"
        return f"{int(self.value)}"


def parse_span(text: str | int | float | Span) -> Span:
    """Parse ``"10s"`` (seconds), ``"50"`` or ``"50f"`` (frames)."""
    if isinstance(text, Span):
        return text
    if isinstance(text, int | float):
        return Span(float(text), "frames")
    m = _SPEC_RE.match(str(text))
    if not m:
        raise Cloud3dError(
            f"bad length {text!r}: use seconds like '10s' or a frame count like '50'"
        )
    value = float(m.group(1))
    unit = "s" if (m.group(2) or "f").lower().startswith("s") else "frames"
    if unit == "frames" and value != int(value):
        raise Cloud3dError(f"bad frame count {text!r}: use a whole number")
    return Span(value, unit)


def make_blocks(times: np.ndarray, block: Span) -> list[tuple[int, int]]:
    """Cut positions ``0..N-1`` into contiguous blocks ``[(start, stop), ...]``.

    ``times`` are capture times in seconds (only read for time blocks; a time
    that goes backwards also starts a new block).
    """
    n = len(times)
    if block.value <= 0:
        raise Cloud3dError("block length must be positive")
    if block.unit == "frames":
        k = int(block.value)
        return [(s, min(s + k, n)) for s in range(0, n, k)]
    out = []
    start = 0
    for i in range(1, n):
        if times[i] - times[start] >= block.value or times[i] < times[i - 1]:
            out.append((start, i))
            start = i
    if n:
        out.append((start, n))
    return out


@dataclass
class Assignment:
    """Which split each frame went to (``-1`` = unused), per position in capture order."""

    split_of: np.ndarray  # int8 (N,), index into SPLITS or -1
    blocks: list[tuple[int, int]]
    block_split: np.ndarray  # int8 (B,), index into SPLITS or -1

    def positions(self, split: str) -> np.ndarray:
        return np.flatnonzero(self.split_of == SPLITS.index(split))


def assign(
    times: np.ndarray,
    counts: dict[str, int],
    block: Span,
    guard: Span,
    seed: int,
) -> Assignment | None:
    """Assign frames to splits (algorithm in the module docstring); ``None`` if counts cannot be met.

    ``times`` (N,) float seconds in capture order (ignored for frame spans);
    ``counts`` maps each split name to its exact frame count.
    """
    n = len(times)
    coord = (
        np.asarray(times, dtype=np.float64) if block.unit == "s" else np.arange(n, dtype=np.float64)
    )
    blocks = make_blocks(coord, block)
    g = float(guard.value)
    split_of = np.full(n, -1, dtype=np.int8)
    block_split = np.full(len(blocks), -1, dtype=np.int8)
    order = np.random.default_rng(seed).permutation(len(blocks))
    for split in sorted(SPLITS, key=lambda s: (counts.get(s, 0), -SPLITS.index(s))):
        need = int(counts.get(split, 0))
        s_idx = SPLITS.index(split)
        got = 0
        for b in order:
            if got >= need:
                break
            if block_split[b] != -1:
                continue
            start, stop = blocks[b]
            lo, hi = start, stop
            # Nearest frame of another split on the left/right, within the guard.
            j = start - 1
            while j >= 0 and coord[start] - coord[j] <= g:
                if split_of[j] not in (-1, s_idx):
                    while lo < stop and coord[lo] - coord[j] <= g:
                        lo += 1
                    break
                j -= 1
            j = stop
            while j < n and coord[j] - coord[stop - 1] <= g:
                if split_of[j] not in (-1, s_idx):
                    while hi > lo and coord[j] - coord[hi - 1] <= g:
                        hi -= 1
                    break
                j += 1
            if hi <= lo:
                continue
            take = min(hi - lo, need - got)
            split_of[lo : lo + take] = s_idx
            block_split[b] = s_idx
            got += take
        if got < need:
            return None
    return Assignment(split_of, blocks, block_split)


def scaled_counts(counts: dict[str, int], total: int) -> dict[str, int]:
    """Counts with the same ratio as ``counts`` summing to ``total`` (train takes the rounding)."""
    want = sum(counts.values())
    out = {s: math.floor(counts.get(s, 0) * total / want) for s in SPLITS if s != "train"}
    out["train"] = total - sum(out.values())
    return {s: out[s] for s in SPLITS}


def largest_scaled(counts: dict[str, int], limit: int, attempt):
    """Largest total <= ``limit`` in the ratio of ``counts`` for which ``attempt(scaled counts)``
    returns a result; ``(result, counts)`` or ``None``. No split that asked for frames gets 0."""
    lo, hi = 0, min(sum(counts.values()), limit)
    best = None
    while lo < hi:  # largest total that works (monotone in practice)
        mid = (lo + hi + 1) // 2
        c = scaled_counts(counts, mid)
        r = None if any(counts[s] > 0 and c[s] == 0 for s in SPLITS) else attempt(c)
        if r is not None:
            best, lo = (r, c), mid
        else:
            hi = mid - 1
    return best


def assign_scaled(
    times: np.ndarray, counts: dict[str, int], block: Span, guard: Span, seed: int
) -> tuple[Assignment, dict[str, int]] | None:
    """Largest counts in the ratio of ``counts`` (none bigger than asked) that :func:`assign` meets."""
    return largest_scaled(counts, len(times), lambda c: assign(times, c, block, guard, seed))


@dataclass
class GroupAssignment:
    """Whole groups (scenes) per split: ``split_of[k]`` is stream ``k``'s (N_k,) int8 array of
    split indices (``-1`` = unused); ``owner`` maps each group to its split (``None``: unused)."""

    split_of: list[np.ndarray]
    owner: dict[str, str | None]

    def groups(self, split: str) -> list[str]:
        return sorted(g for g, s in self.owner.items() if s == split)


def assign_groups(
    labels: list[list[str]], counts: dict[str, int], seed: int
) -> GroupAssignment | None:
    """Give whole groups to splits; ``None`` if the counts cannot be met.

    ``labels[k]`` holds the group (scene) of every frame of stream ``k`` (one stream per
    resolution rendered on its own, or one for all), in capture order. The groups are
    shuffled with ``numpy.random.default_rng(seed)``; splits are filled smallest first
    (test, validation, train), each taking the next free groups until every stream has
    its count, a group's frames in capture order, the last group trimmed. A group belongs
    to one split in every stream, so no scene of one split is seen in another.
    """
    names = sorted({g for lab in labels for g in lab})
    order = np.random.default_rng(seed).permutation(len(names))
    arrays = [np.asarray(lab, dtype=object) for lab in labels]
    split_of = [np.full(len(lab), -1, dtype=np.int8) for lab in labels]
    owner: dict[str, str | None] = dict.fromkeys(names)
    for split in sorted(SPLITS, key=lambda s: (counts.get(s, 0), -SPLITS.index(s))):
        need, s_idx = int(counts.get(split, 0)), SPLITS.index(split)
        got = [0] * len(labels)
        for gi in order:
            if all(g >= need for g in got):
                break
            name = names[gi]
            if owner[name] is not None:
                continue
            owner[name] = split
            for k, arr in enumerate(arrays):
                pos = np.flatnonzero(arr == name)[: max(need - got[k], 0)]
                split_of[k][pos] = s_idx
                got[k] += len(pos)
        if any(g < need for g in got):
            return None
    return GroupAssignment(split_of, owner)
