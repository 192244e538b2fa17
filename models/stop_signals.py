"""SIGINT and SIGTERM stop a training run between optimizer steps, never inside one.

A signal that arrived in the middle of a step used to raise :class:`KeyboardInterrupt`
wherever the main thread was: after the optimizer had updated some or all weights but before
the step counter moved, ``last.pt`` then recorded weights one (partial) update ahead of its
step, and ``--resume`` repeated that update, so the resumed run no longer matched an unbroken
one. Inside :meth:`StopSignals.step` a signal is only noted; it is raised when the step is
whole (weights, counter and log row).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import TracebackType


class StopSignals:
    """While entered (main thread only; the previous handlers come back on exit): SIGINT and
    SIGTERM raise ``KeyboardInterrupt(signal name)``, at once outside :meth:`step`, at the
    end of the step inside it.

    SIGINT is set up explicitly because a run started in the background by a
    non-interactive shell inherits an ignored SIGINT, which Python leaves ignored.
    """

    def __init__(self) -> None:
        self.pending: str | None = None
        self._deferring = False
        self._old: dict[int, object] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.getsignal(sig)
                signal.signal(sig, self._handle)
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        for sig, handler in self._old.items():
            signal.signal(sig, handler)
        self._old.clear()

    def _handle(self, signum: int, frame: object) -> None:
        name = signal.Signals(signum).name
        if self._deferring:
            self.pending = self.pending or name
            return
        raise KeyboardInterrupt(name)

    @contextlib.contextmanager
    def step(self) -> Iterator[None]:
        """One optimizer step with everything that records it: a stop signal received inside
        is raised as ``KeyboardInterrupt`` once the block has ended normally."""
        self._deferring = True
        try:
            yield
        finally:
            self._deferring = False
        if self.pending is not None:
            name, self.pending = self.pending, None
            raise KeyboardInterrupt(name)
