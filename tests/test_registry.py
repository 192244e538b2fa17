"""The one registry pattern (cloud3d/registry.py) as codecs, games and architectures use it."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import ROOT, make_game_like_frame

from baselines.codecs.registry import all_codecs
from capture.games.registry import all_games
from cloud3d.errors import Cloud3dError

TESTS = str(ROOT / "tests")


def test_a_name_given_twice_a_broken_module_and_a_repeated_module(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "dup_codecs.py").write_text(
        "from baselines.codecs.pillow_codecs import JpegCodec\nCODECS = [JpegCodec]\n")
    (tmp_path / "buggy_games.py").write_text("raise RuntimeError('no scene list\\nsecond line')\n")
    (tmp_path / "needs_lib.py").write_text("import cloud3d_no_such_library\nGAMES = []\n")
    monkeypatch.setenv("CLOUD3D_CODEC_MODULES", "dup_codecs")
    with pytest.raises(Cloud3dError, match=r"^codec 'jpeg' is defined twice \(again in 'dup_codecs'\)$"):
        all_codecs()
    monkeypatch.setenv("CLOUD3D_GAME_MODULES", "buggy_games")
    with pytest.raises(Cloud3dError, match=r"^game module 'buggy_games' \(from CLOUD3D_GAME_MODULES\) "
                                           r"failed to import: RuntimeError: no scene list$"):
        all_games()
    monkeypatch.setenv("CLOUD3D_GAME_MODULES", "needs_lib")
    with pytest.raises(Cloud3dError, match=r"needs 'cloud3d_no_such_library', which is not installed"):
        all_games()
    monkeypatch.syspath_prepend(TESTS)
    monkeypatch.setenv("CLOUD3D_CODEC_MODULES", "plugin_codecs, plugin_codecs")  # read once
    assert list(all_codecs()).count("test-quant") == 1


def test_a_users_architecture_is_built_saved_loaded_and_codes_a_frame(tmp_path, monkeypatch):
    """An architecture from $CLOUD3D_ARCH_MODULES is built, saved, loaded and codes a frame;
    without the variable its checkpoint is refused by name."""
    pytest.importorskip("compressai")
    from models.architectures import arch_names, create_model
    from models.checkpoint import load_checkpoint, save_checkpoint
    from models.codec import compress_image, decompress_image

    monkeypatch.syspath_prepend(TESTS)
    monkeypatch.setenv("CLOUD3D_ARCH_MODULES", "plugin_archs")
    assert arch_names()[-1] == "test-tiny-hyperprior" and "c2f-small-pruned" in arch_names()
    model = create_model("test-tiny-hyperprior", N=8, M=12)
    model.update(force=True)
    ck = save_checkpoint(tmp_path / "tiny.pt", model.eval())
    loaded, meta = load_checkpoint(ck)
    assert meta["arch"] == "test-tiny-hyperprior" and type(loaded).__name__ == "TinyHyperprior"
    rgb = make_game_like_frame(64, 64, 3)
    rec = decompress_image(loaded, compress_image(loaded, rgb))
    assert rec.shape == rgb.shape and rec.dtype == np.uint8
    monkeypatch.delenv("CLOUD3D_ARCH_MODULES")
    with pytest.raises(Cloud3dError, match="unknown architecture 'test-tiny-hyperprior' in checkpoint"):
        load_checkpoint(ck)
    monkeypatch.setenv("CLOUD3D_ARCH_MODULES", "plugin_archz")
    with pytest.raises(Cloud3dError, match=r"^architecture module 'plugin_archz' \(from "
                                           r"CLOUD3D_ARCH_MODULES\) cannot be found"):
        create_model("c2f-small-pruned")
