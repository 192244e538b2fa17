"""``cloud3d capture ...``: record frames from a window, a screen, a launched app, a video or
the built-in synthetic scene. A thin layer over :func:`capture.recorder.record`."""

from __future__ import annotations

import functools
import json
import sys

import click

from cloud3d.errors import Cloud3dError

from .options import POLICIES, FilterConfig, RecordOptions


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise Cloud3dError(f"bad size {text!r}: use WIDTHxHEIGHT, e.g. 1280x720") from None
    if w < 1 or h < 1:
        raise Cloud3dError(f"bad size {text!r}: width and height must be positive")
    return w, h


_REQUIRED = object()  # marks an option with no default that must be given


def _recorder_table(default_app: str | None, live: bool) -> list[tuple]:
    """The recording options of every capture command: ``(flag, field, type, default, help)``.

    ``field`` is the keyword click passes (for most, a :class:`RecordOptions` field, whose
    default is used); ``type`` ``bool`` makes an on/off flag. ``live`` sources (a window, a
    screen, a launched app) default to 10 grabs per second and may stall; files do neither.
    """
    d, f = RecordOptions(), FilterConfig()
    app = _REQUIRED if default_app is None else default_app
    return [
        ("--out", "out", click.Path(file_okay=False), _REQUIRED,
         "output root; frames go to OUT/APP/{res}/{index:06d}.png"),
        ("--app", "app", None, app, "application name used as the output folder (e.g. supertuxkart)"),
        ("--res", "resolutions", None, d.resolutions,
         "output resolution: 1080p, 720p or native; repeat or comma-separate for several"),
        ("--fit", "fit", click.Choice(["error", "scale", "crop", "pad"]), d.fit,
         "how a non-16:9 source becomes 1080p/720p"),
        ("--fps", "fps", float, 10.0 if live else d.fps,
         "target grabs per second" + ("" if live else " (default: every frame)")),
        ("--interval", "interval", float, None, "seconds between grabs (instead of --fps)"),
        ("--count", "count", int, d.count, "stop after this many kept frames"),
        ("--duration", "duration", float, d.duration, "stop after this many seconds"),
        ("--stall-timeout", "stall_timeout", float, d.stall_timeout,
         "stop when no new frame was kept for this many seconds (a frozen app); frames so far "
         "are kept, exit status 1" if live else "live sources only"),
        ("--warmup", "warmup", float, d.warmup, "seconds to skip before capturing (loading screens, intro)"),
        ("--scene", "scene", None, d.scene,
         "what is shown (a track, map...), written to frames.csv's scene column for "
         "`cloud3d split --group scene`"),
        ("--keep-uniform", "keep_uniform", bool, False, "keep black / near-uniform frames"),
        ("--uniform-std", "uniform_std", float, f.uniform_std,
         "a frame whose pixel std-dev is at most this is 'uniform' (0..255 scale)"),
        ("--keep-duplicates", "keep_duplicates", bool, False, "keep frames repeating the previous kept one"),
        ("--dup-mad", "dup_mad", float, f.dup_mad,
         "mean absolute difference (0..255) at or below which a frame is a duplicate"),
        ("--writers", "writers", int, d.writers, "PNG writer processes"),
        ("--queue", "queue_size", int, d.queue_size, "frames that may wait for the writers"),
        ("--policy", "policy", click.Choice(list(POLICIES)), d.policy,
         "when writers fall behind: make the grabber wait, or drop (counted)"),
        ("--encoder", "encoder", click.Choice(["fpng", "zlib"]), d.encoder,
         "PNG encoder (both lossless 8-bit RGB; fpng ~10x faster, ~20% larger)"),
        ("--level", "level", click.IntRange(0, 9), d.level, "zlib compression level (with --encoder zlib)"),
        ("--no-progress", "no_progress", bool, False, "hide the progress bar"),
        ("--json", "as_json", bool, False, "print the summary as JSON on stdout"),
    ]


_FIELDS = [row[1] for row in _recorder_table(None, True)]


def _recorder_options(default_app: str | None, live: bool):
    """A decorator adding :func:`_recorder_table`'s options to a click command."""

    def click_option(flag, name, type_, default, help_text):
        if type_ is bool:
            return click.option(flag, name, is_flag=True, help=help_text)
        required = default is _REQUIRED
        default = None if required else default
        return click.option(flag, name, type=type_, default=default, required=required,
                            multiple=isinstance(default, tuple), show_default=default is not None,
                            help=help_text)

    def deco(f):
        for row in reversed(_recorder_table(default_app, live)):
            f = click_option(*row)(f)
        return f

    return deco


def _record_options(kw: dict) -> RecordOptions:
    """The parsed recording options (``kw`` as click passes them) as :class:`RecordOptions`."""
    fps = kw["fps"]
    if kw["interval"] is not None:
        if kw["interval"] <= 0:
            raise Cloud3dError("--interval must be positive")
        fps = 1.0 / kw["interval"]
    if kw["writers"] < 1 or kw["queue_size"] < 1:
        raise Cloud3dError("--writers and --queue must be at least 1")
    filters = FilterConfig(drop_uniform=not kw["keep_uniform"], uniform_std=kw["uniform_std"],
                           drop_duplicates=not kw["keep_duplicates"], dup_mad=kw["dup_mad"])
    same = ("resolutions", "count", "duration", "warmup", "fit", "writers", "queue_size", "policy",
            "encoder", "level", "stall_timeout", "scene")
    return RecordOptions(fps=fps, filters=filters, progress=not kw["no_progress"],
                         **{name: kw[name] for name in same})


def _run(source_factory, kw: dict) -> None:
    from .recorder import record
    from .signals import sigterm_as_interrupt

    options = _record_options(kw)
    with sigterm_as_interrupt(), source_factory() as source:
        summary = record(source, kw["out"], kw["app"], options)
    if kw["as_json"]:
        click.echo(json.dumps(summary.to_dict(), indent=2))
        click.echo(summary.to_text(), err=True)
    else:
        click.echo(summary.to_text())
    if summary.interrupted:
        click.echo("interrupted: frames captured so far are kept; re-run to add more", err=True)
        sys.exit(130)
    if summary.stalled:
        click.echo(f"error: {summary.stopped_because}; the frames written are kept, re-run to add "
                   "more", err=True)
        sys.exit(1)


def _command(group, name, default_app, live, help_text):
    def wrap(f):
        @group.command(name, help=help_text, context_settings={"max_content_width": 100})
        @_recorder_options(default_app, live)
        @functools.wraps(f)
        def cmd(**kw):
            common = {k: kw.pop(k) for k in _FIELDS}
            _run(lambda: f(**kw), common)

        return cmd

    return wrap


@click.group("capture")
def capture_group() -> None:
    """Record frames from 3D applications into PNG files plus a frames.csv log.

    \b
    Output: OUT/APP/{1080p,720p,native}/{index:06d}.png, OUT/APP/frames.csv, OUT/APP/runs.jsonl
    Re-running into the same folder continues the numbering. See docs/capture.md.

    \b
    Examples:
      cloud3d capture synthetic --count 16 --out captures
      cloud3d capture game --list
    """


@_command(capture_group, "window", None, True, """Capture an X11 window found by title, PID or id.

\b
Example (a window on the current desktop, 30 s at 10 fps, 720p and 1080p):
  cloud3d capture window --title 'SuperTuxKart' --app supertuxkart \\
      --res 720p,1080p --duration 30 --out captures
""")
@click.option("--title", default=None, help="regular expression matched against window titles")
@click.option("--pid", type=int, default=None, help="process id owning the window (or a parent)")
@click.option("--id", "wid", default=None, help="X window id, e.g. 0x3a00007")
@click.option("--display", default=None, help="X display (default: $DISPLAY)")
@click.option("--wait", type=float, default=0.0, show_default=True,
              help="seconds to wait for the window to appear")
def window_cmd(title, pid, wid, display, wait):
    from .window import WindowSource

    if wid is not None:
        try:
            wid = int(wid, 0)
        except ValueError:
            raise Cloud3dError(f"bad --id {wid!r}: use a number such as 0x3a00007") from None
    return WindowSource(title=title, pid=pid, wid=wid, display=display, timeout=wait)


@_command(capture_group, "screen", None, True, """Capture a whole monitor or a region of an X display.

\b
Example (a 1280x720 region at +320+180 of display :99, 100 frames):
  cloud3d capture screen --display :99 --region 1280x720+320+180 \\
      --app mygame --count 100 --out captures
""")
@click.option("--monitor", type=int, default=1, show_default=True, help="monitor number (0 = all)")
@click.option("--region", default=None, help="rectangle WxH+X+Y instead of a monitor")
@click.option("--display", default=None, help="X display (default: $DISPLAY)")
def screen_cmd(monitor, region, display):
    from .screen import ScreenSource, parse_region

    return ScreenSource(monitor=monitor, region=parse_region(region) if region else None,
                        display=display)


@_command(capture_group, "launch", None, True, """Start an app on a private Xvfb display and capture its window.

The app runs in its own process group on a fresh Xvfb (free display number,
--size, 24-bit); both are stopped when the capture ends, fails or is
interrupted. Put the app's command after '--'.

\b
Example (the built-in synthetic scene shown in a real X window):
  cloud3d capture launch --size 1280x720 --app synthetic-window --count 50 \\
      --out captures -- .venv/bin/python -m capture.showwindow --size 1280x720
\b
Example (SuperTuxKart racing on its own, see docs/capture.md):
  cloud3d capture launch --size 1280x720 --app supertuxkart --timeout 180 \\
      --warmup 60 --fps 5 --count 2000 --res 720p --out captures -- \\
      supertuxkart --screensize=1280x720 --windowed -N --track=hacienda \\
      --numkarts=5 --laps=20 --profile-time=3000 --disable-dynamic-lights \\
      --disable-texture-compression --disable-particles
""")
@click.option("--size", default="1280x720", show_default=True, help="virtual screen size WxH")
@click.option("--title", default=None, help="regex for the window to capture (default: the app's window)")
@click.option("--timeout", type=float, default=60.0, show_default=True,
              help="seconds to wait for the app's window")
@click.option("--key", "keys", multiple=True, help="xdotool key to press once the window is up (repeatable)")
@click.option("--key-interval", type=float, default=0.5, show_default=True, help="seconds between keys")
@click.option("--app-log", default=None, type=click.Path(dir_okay=False),
              help="keep the app's stdout/stderr in this file")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def launch_cmd(size, title, timeout, keys, key_interval, app_log, command):
    from .launch import LaunchSource

    def started(display, xvfb_pid, app_pid):
        click.echo(f"launch: Xvfb pid {xvfb_pid} on {display}; app pid {app_pid}", err=True)

    return LaunchSource(list(command), size=_size(size), title=title, timeout=timeout,
                        keys=tuple(keys), key_interval=key_interval, log_path=app_log,
                        on_start=started)


@_command(capture_group, "video", None, False, """Capture frames of a video file (PyAV/FFmpeg).

\b
Example (2 frames per second of a recording, written at 720p):
  cloud3d capture video gameplay.mp4 --fps 2 --app mygame-video --res 720p --out captures
""")
@click.argument("path", type=click.Path(dir_okay=False))
def video_cmd(path):
    from .video import VideoSource

    # --fps is read here too: the video source samples by presentation time.
    ctx = click.get_current_context()
    return VideoSource(path, fps=ctx.params.get("fps"))


@_command(capture_group, "synthetic", "synthetic", False, """Render the built-in synthetic 3D scene (no display, no GPU).

Frames are labelled SYNTHETIC in the HUD, and frames.csv / runs.jsonl mark them synthetic=1.

\b
Example (60 frames at 720p and 1080p, seed 0):
  cloud3d capture synthetic --count 60 --res 720p,1080p --out captures
""")
@click.option("--size", default="1280x720", show_default=True, help="rendered frame size WxH")
@click.option("--seed", type=int, default=0, show_default=True, help="scene seed")
@click.option("--scene-fps", type=float, default=30.0, show_default=True,
              help="scene time step: frame i shows time i / scene-fps")
def synthetic_cmd(size, seed, scene_fps):
    from .synthetic import SyntheticSource

    w, h = _size(size)
    return SyntheticSource(w, h, seed=seed, fps=scene_fps)


from .games.cli import game_cmd  # noqa: E402  (after the group it joins)

capture_group.add_command(game_cmd)


def register(group: click.Group) -> None:
    """Add the ``capture`` command group to the ``cloud3d`` CLI."""
    group.add_command(capture_group)
