"""Each stage's public face (``cloud3d.lazy``): every name of ``__all__`` resolves, and
importing a stage loads no heavy library."""

from __future__ import annotations

import importlib
import subprocess
import sys
import types

import pytest
from helpers import ROOT

STAGES = ("capture", "cloud3d_dataset", "analysis", "models", "baselines")

#: libraries a bare ``import STAGE`` must not load (``cloud3d --help`` imports every stage)
HEAVY = ("torch", "numba", "dask", "distributed", "pandas", "matplotlib", "numpy", "PIL")


@pytest.mark.parametrize("stage", STAGES)
def test_every_exported_name_resolves(stage):
    pkg = importlib.import_module(stage)
    assert pkg.__all__ == sorted(set(pkg.__all__)) and pkg.__all__
    folder = ROOT / stage
    for name in pkg.__all__:
        # a name shared with a submodule would be replaced by that module once it is imported
        assert not (folder / f"{name}.py").exists() and not (folder / name).is_dir(), name
        value = getattr(pkg, name)
        assert not isinstance(value, types.ModuleType), name
        if isinstance(value, (type, types.FunctionType)):  # defined in this stage, not re-exported
            assert value.__module__.startswith(f"{stage}."), (name, value.__module__)
    assert set(pkg.__all__) <= set(dir(pkg))
    with pytest.raises(AttributeError, match=f"module '{stage}' has no attribute 'no_such_name'"):
        pkg.no_such_name  # noqa: B018


def test_importing_a_stage_loads_no_heavy_library():
    probe = ("import sys\n"
             f"for stage in {STAGES!r}:\n"
             "    __import__(stage)\n"
             "print('\\n'.join(sys.modules))")
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120,
                       cwd=ROOT, check=True)
    loaded = set(r.stdout.split())
    assert set(STAGES) <= loaded
    assert sorted(m for m in loaded if m.split(".")[0] in HEAVY) == []
