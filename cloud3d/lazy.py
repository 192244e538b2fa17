"""Lazy public faces: a package names its API once and imports each part on first use.

Every stage package (``capture``, ``cloud3d_dataset``, ``analysis``, ``models``,
``baselines``) has the same face::

    from cloud3d.lazy import lazy_exports

    __getattr__, __dir__, __all__ = lazy_exports(__name__, {
        "record": "capture.recorder",
        ...
    })

``from capture import record`` then imports ``capture.recorder`` when ``record`` is first
asked for, so ``import capture`` (and ``cloud3d --help``, which imports every stage's
commands) loads no heavy library (torch, numba, dask, pandas...). Once resolved, a name is
stored in the package's namespace and later look-ups cost nothing.

Submodules are not exports: ``from models import bitstream`` still imports the submodule
``models.bitstream`` (the face raises :class:`AttributeError` for names it does not list,
and Python's import system then looks for a submodule of that name).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping


def lazy_exports(package: str, exports: Mapping[str, str]
                 ) -> tuple[Callable[[str], object], Callable[[], list[str]], list[str]]:
    """The module-level ``__getattr__``, ``__dir__`` and ``__all__`` of a lazy package face.

    Args:
        package: the package's ``__name__``.
        exports: public name -> module that defines it (``"capture.recorder"``), or
            ``"module:attr"`` when the name differs from the attribute there.

    Returns:
        ``(__getattr__, __dir__, __all__)``; ``__all__`` is the sorted list of ``exports``.
        ``__getattr__`` raises ``AttributeError("module 'PKG' has no attribute 'NAME'")`` for
        any other name.
    """
    table = dict(exports)

    def __getattr__(name: str) -> object:
        target = table.get(name)
        if target is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module, _, attr = target.partition(":")
        value = getattr(importlib.import_module(module), attr or name)
        setattr(sys.modules[package], name, value)  # resolved once; next look-up is direct
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(table))

    return __getattr__, __dir__, sorted(table)
