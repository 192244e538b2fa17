"""Command registration: every stage's click commands on the ``cloud3d`` group.

Each stage keeps its commands next to its code (``capture/cli.py``, ``analysis/cli.py``...)
and exposes ``register(group)``. Those modules import heavy libraries (torch, dask) only
inside command functions, so ``cloud3d --help`` stays fast.

Every module of :data:`COMMAND_MODULES` must import: one that does not (a missing file, a
dependency that fails to load, a syntax error) is a :class:`~cloud3d.errors.Cloud3dError`
naming the module, which the CLI prints as one line with a non-zero exit, never a command
that silently vanishes from ``cloud3d --help``.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable

import click

from cloud3d.errors import Cloud3dError

__all__ = ["COMMAND_MODULES", "register_all"]

#: Modules that contribute commands, in the order of the data path.
COMMAND_MODULES: tuple[str, ...] = (
    "capture.cli",
    "cloud3d_dataset.dataset_cli",
    "analysis.cli",
    "baselines.cli",
    "baselines.video_cli",
    "baselines.archive.cli",
    "baselines.model_study_cli",
    "models.cli",
    "cloud3d.cli.demo",
)


def _load(name: str):
    try:
        return importlib.import_module(name)
    except Exception as exc:  # any failure: name the module, keep the cause on one line  # noqa: BLE001
        why = " ".join(f"{type(exc).__name__}: {exc}".split())
        raise Cloud3dError(f"the command module {name} cannot be imported ({why}); its commands "
                           "are unavailable: reinstall cloud3d (pip install -e .) or fix that "
                           "module") from exc


def register_all(group: click.Group, modules: Iterable[str] | None = None) -> None:
    """Call ``register(group)`` of every module in ``modules`` (default: :data:`COMMAND_MODULES`
    as it is at the call).

    Raises:
        Cloud3dError: a module cannot be imported or has no ``register`` function.
    """
    for name in COMMAND_MODULES if modules is None else modules:
        mod = _load(name)
        register = getattr(mod, "register", None)
        if not callable(register):
            raise Cloud3dError(f"the command module {name} ({mod.__file__}) has no "
                               "register(group) function: its commands cannot be added")
        register(group)
