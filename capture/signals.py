"""SIGTERM handled like Ctrl-C, so `kill PID` stops a capture cleanly (app and Xvfb torn down)."""

from __future__ import annotations

import contextlib
import signal


@contextlib.contextmanager
def sigterm_as_interrupt():
    """Within the block, SIGTERM raises :class:`KeyboardInterrupt` (main thread only)."""

    def _term(_sig, _frame):
        raise KeyboardInterrupt

    old = signal.getsignal(signal.SIGTERM)
    installed = False
    with contextlib.suppress(ValueError):  # not in the main thread: leave SIGTERM alone
        signal.signal(signal.SIGTERM, _term)
        installed = True
    try:
        yield
    finally:
        if installed:
            signal.signal(signal.SIGTERM, old)
