"""The ``cloud3d`` command: one click group gathering every stage's commands.

Each stage keeps its commands next to its code (``capture/cli.py``,
``analysis/cli.py``...) and exposes ``register(group)``. Those modules import
heavy libraries (torch, dask) only inside command functions, so
``cloud3d --help`` stays fast.
"""

from __future__ import annotations

import importlib
import sys

import click

from cloud3d.errors import Cloud3dError

#: Modules that contribute commands, in the order of the data path.
COMMAND_MODULES = (
    "capture.cli",
    "cloud3d_dataset.dataset_cli",
    "analysis.cli",
    "baselines.cli",
    "baselines.video_cli",
    "baselines.archive.cli",
    "models.cli",
    "cloud3d.demo",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="cloud3d")
def cli() -> None:
    """cloud3d: record, package, analyse and compress frames from 3D applications.

    \b
    Data path:  capture -> split -> entropy -> bench/report -> train/compress
    Quick start:  cloud3d demo --out demo-out
    """


def _register_all() -> None:
    for name in COMMAND_MODULES:
        try:
            mod = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # that stage has no commands yet
                continue
            raise
        mod.register(cli)


_register_all()


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
        rv = cli.main(args=argv, standalone_mode=False)
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


if __name__ == "__main__":
    main()
