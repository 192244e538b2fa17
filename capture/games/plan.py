"""Which scene to capture next, and how many frames each scene may supply.

The capture folder is the only state: ``frames.csv`` says how many frames each scene
has kept at each resolution, so a re-run continues where the last one stopped.

Fair shares: the target ``count`` is split over the scenes as evenly as possible (the
seeded scene order decides which scenes get one frame more). A scene that already holds
more than its share (from an earlier run with other settings) keeps what it has, and the
others share the rest. Frames of scenes not being captured now still count towards
``count``.
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from pathlib import Path

import numpy as np


def scene_order(names: list[str], seed: int) -> list[str]:
    """The scenes in the order visits cycle through them: a permutation drawn from ``seed``."""
    perm = np.random.default_rng(seed).permutation(len(names))
    return [names[i] for i in perm]


def kept_by_scene(app_dir: Path, resolution: str) -> Counter[str]:
    """Kept frames per scene that have a file at ``resolution``, from ``app_dir/frames.csv``.

    Rows without a scene are counted under ``""``. A missing log counts nothing.
    """
    path = Path(app_dir) / "frames.csv"
    counts: Counter[str] = Counter()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return counts
    text = text[: text.rfind("\n") + 1]  # a cut-off last line is not a frame yet
    for row in csv.DictReader(io.StringIO(text)):
        if row.get("status") == "kept" and row.get(f"file_{resolution}"):
            counts[row.get("scene") or ""] += 1
    return counts


def fair_targets(budget: int, have: dict[str, int], order: list[str]) -> dict[str, int]:
    """Frames each scene of ``order`` should end with, summing to ``max(budget, sum(kept))``.

    ``budget`` is what the scenes in ``order`` may supply together; ``have`` their kept
    counts. Scenes holding more than an even share keep what they have; the rest is split
    evenly, earlier scenes in ``order`` taking the remainder one frame each.
    """
    targets: dict[str, int] = {}
    rest = list(order)
    left = max(budget, 0)
    while rest:
        base, extra = divmod(left, len(rest))
        share = {s: base + (1 if i < extra else 0) for i, s in enumerate(rest)}
        over = [s for s in rest if have.get(s, 0) > share[s]]
        if not over:
            targets.update(share)
            break
        for s in over:
            targets[s] = have[s]
            left = max(left - have[s], 0)
            rest.remove(s)
    return targets


class ScenePlan:
    """Scene cycling for one resolution: next scene with frames still due, and how many.

    Args:
        count: kept frames wanted at this resolution (all scenes together).
        order: scene names in visiting order (see :func:`scene_order`).
        have: kept frames so far per scene (see :func:`kept_by_scene`).
    """

    def __init__(self, count: int, order: list[str], have: Counter[str]) -> None:
        self.count = count
        self.order = list(order)
        self.have = Counter(have)
        self.dropped: set[str] = set()
        self._next = 0

    def live(self) -> list[str]:
        """Scenes still in play (not given up), in visiting order."""
        return [s for s in self.order if s not in self.dropped]

    def total(self) -> int:
        """Kept frames at this resolution, every scene (listed or not) included."""
        return sum(self.have.values())

    def targets(self) -> dict[str, int]:
        """Current fair targets of the live scenes (see :func:`fair_targets`)."""
        live = self.live()
        others = sum(n for s, n in self.have.items() if s not in live)
        return fair_targets(self.count - others, {s: self.have[s] for s in live}, live)

    def next_visit(self) -> tuple[str, int] | None:
        """``(scene, frames due)`` for the next visit, cycling in order; ``None`` when done or
        when no live scene is left."""
        due_total = self.count - self.total()
        if due_total <= 0:
            return None
        targets = self.targets()
        n = len(self.order)
        for step in range(n):
            name = self.order[(self._next + step) % n]
            if name in self.dropped:
                continue
            due = min(targets[name] - self.have[name], due_total)
            if due > 0:
                self._next = (self._next + step + 1) % n
                return name, due
        return None

    def record(self, scene: str, kept: int) -> None:
        """Count ``kept`` new frames of ``scene``."""
        self.have[scene] += kept

    def give_up(self, scene: str) -> None:
        """Stop visiting ``scene`` in this run; the other scenes take over its share."""
        self.dropped.add(scene)
