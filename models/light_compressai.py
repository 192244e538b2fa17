"""Load compressai's coding pieces without running ``compressai/__init__.py``.

compressai 1.2.8's package ``__init__`` imports every subpackage, ``compressai.datasets``
included, whose point-cloud datasets import ``torch_geometric`` (and through it
``torch._dynamo``); its ``compressai.registry`` imports ``torch_geometric.transforms`` and
``torchvision``. On a 2-core machine that is 3-5 s before a 16 ms decode. The learned codecs
use none of it: they need ``compressai.entropy_models``, ``compressai.layers``,
``compressai.models`` (base classes), ``compressai.ans`` and ``compressai.ops``. And
``compressai.entropy_models`` imports ``scipy.stats`` (about 0.5 s) for one call,
``norm.ppf``, made only when a Gaussian conditional's tables are rebuilt.

:func:`install` puts a bare ``compressai`` package object in :data:`sys.modules` whose
``__path__`` is the installed package's folder, so ``import compressai.entropy_models`` finds
the real submodule files unchanged; the package's three entropy-coder functions are defined
here (the coder is always rANS: ``range_coder`` is not a dependency). ``compressai.registry``
gets the same treatment: its model/module registries come from ``registry/torch.py`` (torch
only), its transform registry (torch_geometric, torchvision) only if someone asks for it.
Nothing is imported by :func:`install` itself (``cloud3d --help`` imports ``models``).
Any other ``compressai.NAME`` attribute imports that subpackage on first use, so code that
does want ``compressai.datasets`` still gets it. ``scipy.stats`` gets a stand-in that runs
the real module on first use. Nothing is installed if compressai was
imported already. ``benchmarks/startup.py`` measures the effect.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import sys
import types

#: the only entropy coder compressai ships compiled (``compressai.ans``)
_CODER = "ans"

#: names of ``compressai.registry`` that need torch_geometric/torchvision (``registry/transforms.py``)
_TRANSFORM_NAMES = ("TRANSFORMS", "register_transform")


def _bare_package(name: str) -> types.ModuleType | None:
    """A package module for ``name`` whose submodules load from the installed folder, or None
    if the package is not installed."""
    spec = importlib.util.find_spec(name)
    if spec is None or spec.submodule_search_locations is None:
        return None
    mod = types.ModuleType(name)
    mod.__spec__ = spec
    mod.__file__ = spec.origin
    mod.__package__ = name
    mod.__path__ = list(spec.submodule_search_locations)
    return mod


def _submodule_getattr(package: str):
    """A module ``__getattr__`` that imports ``package.NAME`` on first use."""

    def getattr_(name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        try:
            return importlib.import_module(f"{package}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"{package}.{name}":
                raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
            raise

    return getattr_


class _LoadOnUse(types.ModuleType):
    """Stands in :data:`sys.modules` for a module not run yet. Its file attributes
    (``__spec__``, ``__file__``, ``__path__``, ``__loader__``) are looked up without running it,
    on first use, so ``import`` statements and :mod:`inspect` (which walks ``sys.modules``) leave
    it be; any other attribute runs the real module, whose namespace this object then shares."""

    def __getattr__(self, name: str):
        if name in ("__file__", "__path__"):
            parent, _, _ = self.__name__.rpartition(".")
            path = importlib.import_module(parent).__path__ if parent else None
            spec = importlib.machinery.PathFinder.find_spec(self.__name__, path)  # runs nothing
            self.__spec__, self.__loader__, self.__file__ = spec, spec.loader, spec.origin
            if spec.submodule_search_locations is not None:
                self.__path__ = list(spec.submodule_search_locations)
            return self.__dict__[name]  # KeyError: not a package
        if sys.modules.get(self.__name__) is self:
            del sys.modules[self.__name__]
        real = importlib.import_module(self.__name__)
        self.__dict__.update(real.__dict__)
        return getattr(real, name)


def _load_on_use(name: str) -> None:
    """Put a :class:`_LoadOnUse` stand-in for ``name`` in :data:`sys.modules`, unless the
    module is imported already. Costs no import. (The standard library's ``LazyLoader`` does
    not do here: ``import`` itself reads ``__spec__``, which runs a lazy module.)"""
    if name not in sys.modules:
        sys.modules[name] = _LoadOnUse(name)


def get_entropy_coder() -> str:
    """The entropy coder compressai's entropy models use: always ``"ans"``."""
    return _CODER


def available_entropy_coders() -> list[str]:
    """Entropy coders available: ``["ans"]``."""
    return [_CODER]


def set_entropy_coder(entropy_coder: str) -> None:
    """Accept ``"ans"``; any other coder is not available without the full package."""
    if entropy_coder != _CODER:
        raise ValueError(f"entropy coder {entropy_coder!r} is not available; only {_CODER!r}")


def install() -> None:
    """Make ``import compressai.X`` skip compressai's package ``__init__`` (see the module doc).

    A no-op if ``compressai`` is already imported (the real package then serves everyone)
    or not installed.
    """
    if "compressai" in sys.modules:
        return
    _load_on_use("scipy.stats")
    pkg = _bare_package("compressai")
    if pkg is None:
        return
    pkg.get_entropy_coder = get_entropy_coder
    pkg.available_entropy_coders = available_entropy_coders
    pkg.set_entropy_coder = set_entropy_coder
    pkg.__getattr__ = _submodule_getattr("compressai")
    sys.modules["compressai"] = pkg
    try:
        registry = _bare_package("compressai.registry")
        sys.modules["compressai.registry"] = registry  # before its submodule: no __init__ run
        lazy = _submodule_getattr("compressai.registry")

        def registry_getattr(name: str):
            if name in _TRANSFORM_NAMES:
                return getattr(lazy("transforms"), name)
            if name.isupper() or name.startswith("register_"):
                return getattr(lazy("torch"), name)
            return lazy(name)

        registry.__getattr__ = registry_getattr
        pkg.registry = registry
        from compressai.version import __version__

        pkg.__version__ = __version__
    except BaseException:
        # leave no half-made package behind: the next import runs the real __init__
        for name in [m for m in sys.modules if m == "compressai" or m.startswith("compressai.")]:
            del sys.modules[name]
        raise
