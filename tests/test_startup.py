"""A fast start: commands import only what they need, and decoding did not change.

``tests/data/decode_reference/frame.c3d`` and ``frame.png`` were made before compressai's
coding pieces were loaded without its package ``__init__`` (issue 25), with the seeded
untrained ``c2f-xsmall-pruned`` model of ``tiny_model``. The timings themselves are in
``benchmarks/startup.py``.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
from helpers import ROOT, tiny_model

from cloud3d.imageio import read_image_rgb

REF = ROOT / "tests" / "data" / "decode_reference"

#: modules the learned codec must not import: compressai's datasets and transform registry
#: (torch_geometric, torchvision, torch._dynamo), scipy.stats before it is used
HEAVY = ("torch_geometric", "torchvision", "compressai.datasets", "torch._dynamo",
         "compressai.registry.transforms")


def _imported_after(code: str) -> set[str]:
    probe = code + "\nimport sys\nprint('\\n'.join(sys.modules))"
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120,
                       cwd=ROOT, check=True)
    return set(r.stdout.split())


def test_decoder_imports_skip_compressai_datasets_and_scipy_stats():
    mods = _imported_after("import models.codec, models.library, models.architectures\n"
                           "import sys; assert 'norm' not in vars(sys.modules['scipy.stats'])")
    assert not [m for m in mods if m.startswith(HEAVY)]


def test_help_imports_no_torch():
    mods = _imported_after("from cloud3d.cli import cli")
    assert "torch" not in mods and "compressai.entropy_models" not in mods


def test_decoding_is_byte_identical_to_before(tmp_path, run_cli):
    from models.checkpoint import save_checkpoint

    ckpt = save_checkpoint(tmp_path / "tiny.pt", tiny_model("c2f-xsmall-pruned", seed=0))
    r = run_cli("decompress", REF / "frame.c3d", "-m", ckpt, "-o", tmp_path / "out.png")
    assert r.returncode == 0, r.stderr
    got, _ = read_image_rgb(tmp_path / "out.png")
    want, _ = read_image_rgb(REF / "frame.png")
    assert np.array_equal(got, want)
