"""Frame filters: drop loading screens (black / near-uniform) and repeated frames.

Both filters look at a subsampled copy of the frame (every ``step``-th pixel
in each direction, all three channels), which is enough to tell a loading
screen or a frozen game from gameplay and costs well under a millisecond.

Definitions (values on the 0..255 scale):

* *uniform*: the standard deviation of the sampled pixel values is at most
  ``uniform_std``. It is reported as ``black`` if their mean is at most
  ``black_mean``, else as ``uniform``.
* *duplicate*: the mean absolute difference between the sampled pixels and
  those of the previous **kept** frame is at most ``dup_mad`` (same size
  required). ``dup_mad = 0`` drops only frames identical at the sampled pixels.
"""

from __future__ import annotations

import numpy as np

from .options import FilterConfig

__all__ = ["FilterConfig", "FrameFilter"]


class FrameFilter:
    """Stateful filter: :meth:`check` returns ``None`` (keep) or a drop reason."""

    def __init__(self, config: FilterConfig | None = None) -> None:
        self.config = config or FilterConfig()
        self._prev: np.ndarray | None = None

    def _sample(self, rgb: np.ndarray) -> np.ndarray:
        s = self.config.step
        return rgb[s // 2 :: s, s // 2 :: s]

    def check(self, rgb: np.ndarray) -> str | None:
        """Classify ``rgb`` (``(H, W, 3) uint8``): ``None`` to keep, else ``black``,
        ``uniform`` or ``duplicate``. A kept frame becomes the reference for duplicates."""
        cfg = self.config
        small = self._sample(rgb)
        if cfg.drop_uniform:
            f = small.astype(np.float32)
            if float(f.std()) <= cfg.uniform_std:
                return "black" if float(f.mean()) <= cfg.black_mean else "uniform"
        if cfg.drop_duplicates and self._prev is not None and self._prev.shape == small.shape:
            mad = float(np.abs(small.astype(np.int16) - self._prev).mean())
            if mad <= cfg.dup_mad:
                return "duplicate"
        self._prev = small.astype(np.int16)
        return None
