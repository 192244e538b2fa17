"""``launch`` source: run a command on a private Xvfb display and capture its window.

Life cycle: start Xvfb with ``-displayfd`` (the server picks a free display
number), start the app with ``DISPLAY`` set in its own process group, wait for
its window, optionally send key presses (xdotool), then hand out frames.
``close()`` always stops the whole app process group and then Xvfb, whether
the capture ended normally, failed, or was interrupted (Ctrl-C / SIGTERM).
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from cloud3d.errors import Cloud3dError
from cloud3d.lifetime import exec_dies_with_parent
from cloud3d.provenance import tool_version

from . import xdisplay
from .source import FrameSource


class AppExited(Cloud3dError):
    """The launched app exited (crashed or quit) before or during the capture."""


class VirtualDisplay:
    """A private Xvfb server (``width x height x 24``) on a free display number.

    Use as a context manager or call :meth:`stop`. ``name`` is ``":N"``.
    """

    def __init__(self, width: int = 1280, height: int = 720, timeout: float = 15.0) -> None:
        exe = shutil.which("Xvfb")
        if exe is None:
            raise Cloud3dError("Xvfb is not installed: apt-get install xvfb")
        self.width, self.height = width, height
        r, w = os.pipe()
        try:
            self.proc = subprocess.Popen(
                [exe, "-displayfd", str(w), "-screen", "0", f"{width}x{height}x24",
                 "-nolisten", "tcp", "-noreset"],
                pass_fds=(w,), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE, start_new_session=True,
                preexec_fn=exec_dies_with_parent,  # no Xvfb left by a SIGKILLed capture
            )
        finally:
            os.close(w)
        try:
            self.name = self._read_display(r, timeout)
        except BaseException:
            self.stop()
            raise
        finally:
            os.close(r)

    def _read_display(self, fd: int, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        buf = b""
        while not buf.endswith(b"\n"):
            left = deadline - time.monotonic()
            ready, _, _ = select.select([fd], [], [], max(left, 0))
            if not ready:
                raise Cloud3dError(f"Xvfb did not start within {timeout:.0f} s")
            chunk = os.read(fd, 64)
            if not chunk:
                err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
                raise Cloud3dError(f"Xvfb exited at start-up: {err.strip()[-300:]}")
            buf += chunk
        num = buf.decode().strip()
        sock = Path(f"/tmp/.X11-unix/X{num}")
        while not sock.exists():
            if time.monotonic() > deadline:
                raise Cloud3dError(f"Xvfb socket {sock} did not appear")
            time.sleep(0.02)
        return f":{num}"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def version(self) -> str:
        return tool_version(["Xvfb", "-version"])

    def stop(self) -> None:
        """Terminate Xvfb (SIGTERM, then SIGKILL after 5 s); safe to call twice."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stderr:
            self.proc.stderr.close()

    def __enter__(self) -> VirtualDisplay:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def kill_process_group(proc: subprocess.Popen, grace: float = 3.0) -> None:
    """Stop ``proc`` and everything in its process group: SIGTERM, wait ``grace`` s, SIGKILL."""
    pgid = proc.pid  # started with start_new_session=True, so pgid == pid
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        proc.poll()
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)


class LaunchSource(FrameSource):
    """Start ``command`` on a private Xvfb and capture its window.

    Args:
        command: argument list of the app (no shell).
        size: Xvfb screen size ``(width, height)``.
        title: optional regex to pick the window; default: the app's window
            (``_NET_WM_PID`` of the app or a child), else the largest visible window.
        timeout: seconds to wait for the window.
        keys: xdotool key names sent in order once the window is up (e.g. ``Return``).
        key_interval: seconds between key presses.
        log_path: where the app's stdout/stderr go (default: a temp file, removed on close).
        on_start: called as ``on_start(display, xvfb_pid, app_pid)`` once both run
            (the CLI prints it so a user can inspect the display).
        env: extra environment variables for the app; a ``None`` value removes one.
    """

    kind = "launch"
    realtime = True

    def __init__(
        self,
        command: list[str],
        size: tuple[int, int] = (1280, 720),
        title: str | None = None,
        timeout: float = 60.0,
        keys: tuple[str, ...] = (),
        key_interval: float = 0.5,
        log_path: str | os.PathLike | None = None,
        on_start=None,
        env: dict[str, str | None] | None = None,
    ) -> None:
        if not command:
            raise Cloud3dError("nothing to launch: give the app's command after '--'")
        exe = shutil.which(command[0])
        if exe is None:
            raise Cloud3dError(f"command not found: {command[0]!r} (install it or give a full path)")
        if keys and shutil.which("xdotool") is None:
            raise Cloud3dError("--key needs xdotool: apt-get install xdotool")
        self.command = list(command)
        self.app: subprocess.Popen | None = None
        self.xvfb: VirtualDisplay | None = None
        self._window = None  # a WindowSource once the app's window is up
        self._own_log = log_path is None
        if log_path is None:
            fd, log_path = tempfile.mkstemp(prefix="cloud3d-launch-", suffix=".log")
            os.close(fd)
        self.log_path = Path(log_path)
        try:
            self.xvfb = VirtualDisplay(*size)
            app_env = dict(os.environ, DISPLAY=self.xvfb.name)
            for key, value in (env or {}).items():
                if value is None:
                    app_env.pop(key, None)
                else:
                    app_env[key] = value
            with open(self.log_path, "ab") as log:
                self.app = subprocess.Popen(
                    [exe, *command[1:]], env=app_env, stdin=subprocess.DEVNULL, stdout=log,
                    stderr=log, start_new_session=True,
                    preexec_fn=exec_dies_with_parent,  # nor the app (its own children: see close)
                )
            if on_start is not None:
                on_start(self.xvfb.name, self.xvfb.pid, self.app.pid)
            self._window = self._wait_for_window(title, timeout)
            self.geometry = self._window.geometry
            if keys:
                self._send_keys(keys, key_interval)
        except BaseException:
            self.close()
            raise

    def log_tail(self, n: int = 12) -> str:
        """The last ``n`` lines of the app's output, joined with `` | `` (for messages)."""
        try:
            lines = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return " | ".join(lines[-n:]) if lines else "(no output)"

    def _wait_for_window(self, title: str | None, timeout: float):
        from .window import WindowSource

        deadline = time.monotonic() + timeout
        dpy = xdisplay.open_display(self.xvfb.name)
        try:
            while True:
                if self.app.poll() is not None:
                    raise AppExited(
                        f"{self.command[0]} exited with status {self.app.returncode} before "
                        f"opening a window; its last output: {self.log_tail()}"
                    )
                info = xdisplay.find_window(dpy, title=title, pid=self.app.pid)
                if info is None and title is None:
                    info = xdisplay.find_window(dpy, title="")  # app without _NET_WM_PID
                if info is not None:
                    break
                if time.monotonic() >= deadline:
                    what = f" matching {title!r}" if title else ""
                    raise Cloud3dError(
                        f"{self.command[0]} opened no window{what} within {timeout:.0f} s on "
                        f"{self.xvfb.name} ({xdisplay.describe_windows(dpy)}); "
                        f"its last output: {self.log_tail()}"
                    )
                time.sleep(0.1)
        finally:
            dpy.close()
        return WindowSource(wid=info.wid, display=self.xvfb.name)

    def _send_keys(self, keys: tuple[str, ...], interval: float) -> None:
        env = dict(os.environ, DISPLAY=self.xvfb.name)
        wid = str(self._window.wid)
        # No window manager: give the window the keyboard focus, then type through XTEST
        # (real key events; many games ignore the XSendEvent ones of `key --window`).
        with contextlib.suppress(subprocess.TimeoutExpired):
            subprocess.run(["xdotool", "windowfocus", "--sync", wid], env=env, capture_output=True,
                           timeout=5)
        for key in keys:
            try:
                r = subprocess.run(["xdotool", "key", "--clearmodifiers", key],
                                   env=env, capture_output=True, text=True, timeout=10)
            except subprocess.TimeoutExpired:
                raise Cloud3dError(f"xdotool hung while pressing {key!r}") from None
            if r.returncode != 0:
                raise Cloud3dError(f"xdotool could not press {key!r}: {r.stderr.strip()}")
            time.sleep(interval)

    def exit_status(self) -> int | None:
        """The app's exit status once it has exited, else ``None``."""
        return self.app.poll() if self.app is not None else None

    @property
    def display(self) -> str:
        return self.xvfb.name if self.xvfb else ""

    def _check_alive(self) -> None:
        if self.app is not None and self.app.poll() is not None:
            raise AppExited(
                f"{self.command[0]} exited with status {self.app.returncode} during capture; "
                f"its last output: {self.log_tail()}"
            )

    def grab(self) -> np.ndarray:
        self._check_alive()
        try:
            frame = self._window.grab()
        except xdisplay.WindowGone:
            # an exiting app destroys its window before the exit shows: say it exited
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.app.wait(timeout=2)
            self._check_alive()
            raise
        self.geometry = self._window.geometry
        return frame

    def describe(self) -> dict:
        d = {"kind": self.kind, "synthetic": False, "command": self.command,
             "display": self.display, "xvfb": self.xvfb.version() if self.xvfb else ""}
        if self._window is not None:
            d.update(window=f"0x{self._window.wid:x}", title=self._window.title)
        return d

    def close(self) -> None:
        """Stop the app's whole process group, then Xvfb. Idempotent."""
        if self._window is not None:
            with contextlib.suppress(Exception):
                self._window.close()
            self._window = None
        if self.app is not None:
            kill_process_group(self.app)
            self.app = None
        if self.xvfb is not None:
            self.xvfb.stop()
            self.xvfb = None
        if self._own_log:
            with contextlib.suppress(OSError):
                self.log_path.unlink()
