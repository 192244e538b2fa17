"""The ``cloud3d`` command: the layer above every stage (nothing imports it).

Three parts, one module each::

    cloud3d.cli            the root: the click group, :func:`main` (the console script) and
                           the turning of user errors into one line with exit status 1
    cloud3d.cli.commands   command registration: every stage's click commands on the group
    cloud3d.cli.demo       ``cloud3d demo``: the whole study on built-in synthetic frames

``python -m cloud3d.cli ARGS`` runs the same :func:`main`. The group with every command
registered is :data:`cli` (``from cloud3d.cli import cli``); it is built on first use, so that
a command module that fails to import is reported by :func:`main` as one line naming the
module rather than as a traceback, or as a command silently missing from ``--help``.
"""

from __future__ import annotations

import sys

import click

from cloud3d.errors import Cloud3dError

__all__ = ["MAX_ERROR_CHARS", "cli", "main"]


@click.group("cli", context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="cloud3d")
def _root() -> None:
    """cloud3d: record, package, analyse and compress frames from 3D applications.

    \b
    Data path:  capture -> split -> entropy -> bench/report -> train/compress
    Quick start:  cloud3d demo --out demo-out
    """


_registered = False


def _group() -> click.Group:
    """The root group with every command registered (registration runs once)."""
    global _registered
    if not _registered:
        from cloud3d.cli.commands import register_all

        register_all(_root)
        _registered = True
    return _root


def __getattr__(name: str):
    if name == "cli":
        return _group()
    raise AttributeError(f"module 'cloud3d.cli' has no attribute {name!r}")


#: longest error line printed; a message quoting untrusted input is cut there
MAX_ERROR_CHARS = 1000


def _one_line(msg: str) -> str:
    """``msg`` on one line of at most :data:`MAX_ERROR_CHARS` characters (the messages say
    what they need in far less; this only keeps a quoted file from flooding the terminal)."""
    msg = " ".join(msg.split())
    return msg if len(msg) <= MAX_ERROR_CHARS else msg[: MAX_ERROR_CHARS - 3] + "..."


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: user errors become one line and exit status 1."""
    try:
        rv = _group().main(args=argv, standalone_mode=False)
        if isinstance(rv, int) and not isinstance(rv, bool):
            sys.exit(rv)  # click returns Exit codes (e.g. from --help) in non-standalone mode
    except click.exceptions.Abort:
        click.echo("interrupted: work finished so far is kept; re-run the same command to resume", err=True)
        sys.exit(130)
    except KeyboardInterrupt:
        click.echo("interrupted: work finished so far is kept; re-run the same command to resume", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except Cloud3dError as exc:
        click.echo(f"error: {_one_line(str(exc))}", err=True)
        sys.exit(1)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except BrokenPipeError:
        sys.exit(0)
    except SystemExit:
        raise
    except OSError as exc:
        from cloud3d.errors import describe_os_error

        click.echo(f"error: {describe_os_error(exc)}", err=True)
        sys.exit(1)
