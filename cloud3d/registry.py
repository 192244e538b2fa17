"""One way to find things by name: codecs, games and architectures all use :class:`Registry`.

A registry gathers named entries from modules. Each module defines a list attribute (for
example ``CODECS``) holding its entries; the registry reads the built-in modules first, then
the user's modules named, comma-separated, in an environment variable (for example
``CLOUD3D_CODEC_MODULES=my_codecs,other_codecs``). Modules are given as strings and imported
only when entries are asked for, so the core imports no stage, and listing never needs a
library a module imports only when one of its entries is used.

Rules, the same for every registry:

* every entry is checked (a predicate given by the owner, e.g. "a Codec subclass");
* a name given twice, across all modules, is refused;
* a module that cannot be imported, fails while importing, or defines no list of valid
  entries is a one-line :class:`~cloud3d.errors.Cloud3dError` naming the module and where it
  was named; a module listed twice is read once.

Nothing is cached: the environment variable is read on every look-up, so a process (or a
test) that changes it sees the change.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Generic, TypeVar

from cloud3d.errors import Cloud3dError

T = TypeVar("T")


class Registry(Mapping[str, T], Generic[T]):
    """Entries of type ``T`` by name, from ``builtin`` modules plus those in ``$env_var``.

    Args:
        kind: what an entry is, in messages (``"codec"``, ``"game"``, ``"architecture"``).
        builtin: module names read first, in order.
        attribute: the list attribute each module defines (``"CODECS"``).
        accepts: True for a valid entry.
        what: the valid entries in words, for messages (``"Codec classes"``).
        name_of: an entry's name (default: its ``name`` attribute).
        env_var: the variable naming the user's modules; None: built-in modules only.
        unknown_hint: added to the "unknown NAME" message (e.g. where to read more).

    As a :class:`~collections.abc.Mapping`, ``name in reg``, ``reg[name]``, ``list(reg)``
    and ``len(reg)`` each read the modules afresh; :meth:`entries` returns one snapshot.
    """

    def __init__(self, kind: str, builtin: tuple[str, ...], attribute: str,
                 accepts: Callable[[Any], bool], what: str,
                 name_of: Callable[[T], str] = lambda e: e.name,  # type: ignore[attr-defined]
                 env_var: str | None = None, unknown_hint: str = "") -> None:
        self.kind = kind
        self.builtin = tuple(builtin)
        self.attribute = attribute
        self.accepts = accepts
        self.what = what
        self.name_of = name_of
        self.env_var = env_var
        self.unknown_hint = unknown_hint

    def modules(self) -> tuple[str, ...]:
        """The built-in modules, then the distinct user modules of ``$env_var``."""
        extra = os.environ.get(self.env_var, "") if self.env_var else ""
        names = [m.strip() for m in extra.split(",") if m.strip()]
        return self.builtin + tuple(dict.fromkeys(m for m in names if m not in self.builtin))

    def _where(self, modname: str) -> str:
        return "built in" if modname in self.builtin else f"from {self.env_var}"

    def load(self, modname: str) -> list[T]:
        """The entries of one module; :class:`Cloud3dError` naming it when it is unusable."""
        label = f"{self.kind} module {modname!r} ({self._where(modname)})"
        try:
            mod = importlib.import_module(modname)
        except ModuleNotFoundError as exc:
            if exc.name and (modname == exc.name or modname.startswith(exc.name + ".")):
                raise Cloud3dError(f"{label} cannot be found: check its spelling and that its "
                                   "folder is on PYTHONPATH") from None
            raise Cloud3dError(f"{label} needs {exc.name!r}, which is not installed") from None
        except Exception as exc:  # a module with a bug: say which one
            first = (str(exc).splitlines() or [""])[0][:300]
            raise Cloud3dError(f"{label} failed to import: {type(exc).__name__}: {first}") from None
        entries = getattr(mod, self.attribute, None)
        if not isinstance(entries, list | tuple) or not all(self.accepts(e) for e in entries):
            raise Cloud3dError(f"{label} must define {self.attribute}, a list of {self.what}")
        return list(entries)

    def entries(self) -> dict[str, T]:
        """Every entry by name, built-in modules first, in each module's order."""
        out: dict[str, T] = {}
        for modname in self.modules():
            for entry in self.load(modname):
                name = self.name_of(entry)
                if name in out:
                    raise Cloud3dError(f"{self.kind} {name!r} is defined twice (again in "
                                       f"{modname!r})")
                out[name] = entry
        return out

    def lookup(self, name: str) -> T:
        """The entry called ``name``; :class:`Cloud3dError` listing the known names otherwise."""
        found = self.entries()
        if name not in found:
            raise Cloud3dError(self.unknown(name, found))
        return found[name]

    def unknown(self, name: Any, found: Mapping[str, T] | None = None) -> str:
        """The message for an unknown ``name``: the known names, and the hint."""
        known = ", ".join(found if found is not None else self.entries())
        hint = f" ({self.unknown_hint})" if self.unknown_hint else ""
        return f"unknown {self.kind} {name!r}; known {self.kind}s: {known}{hint}"

    def __getitem__(self, name: str) -> T:
        return self.entries()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.entries())

    def __len__(self) -> int:
        return len(self.entries())
