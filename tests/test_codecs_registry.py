"""The codec registry and the codec contract: plug-in modules, one primitive, shared option checks."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import ROOT

from baselines.codecs.base import (
    Codec,
    CodecError,
    check_choice,
    check_int,
    check_number,
    check_rgb,
)
from baselines.codecs.registry import all_codecs, parse_codec_spec
from cloud3d.errors import Cloud3dError

TESTS = str(ROOT / "tests")


def test_a_misspelled_plugin_module_is_an_error_naming_it(monkeypatch):
    """Regression: a module in CLOUD3D_CODEC_MODULES that cannot be imported used to be
    skipped in silence, so the user's codec just was not there."""
    monkeypatch.syspath_prepend(TESTS)
    monkeypatch.setenv("CLOUD3D_CODEC_MODULES", "plugin_codecs, plugin_codecz")
    with pytest.raises(Cloud3dError, match=r"^codec module 'plugin_codecz' \(from CLOUD3D_CODEC_MODULES\) "
                                           r"cannot be found: check its spelling"):
        all_codecs()
    with pytest.raises(Cloud3dError, match="plugin_codecz"):
        parse_codec_spec("jpeg:q=50")
    monkeypatch.setenv("CLOUD3D_CODEC_MODULES", "plugin_codecs")
    assert "test-quant" in all_codecs()


def test_a_plugin_module_without_codecs_is_an_error(monkeypatch):
    monkeypatch.syspath_prepend(TESTS)
    monkeypatch.setenv("CLOUD3D_CODEC_MODULES", "helpers")
    with pytest.raises(Cloud3dError, match=r"codec module 'helpers' \(from CLOUD3D_CODEC_MODULES\) must define CODECS, a list "
                                           "of Codec classes"):
        all_codecs()


def test_cli_reports_a_misspelled_plugin_module_on_one_line(run_cli):
    for cmd in (("codecs",), ("bench", ROOT, "--codec", "jpeg", "--results", "/nonexistent/r.sqlite")):
        proc = run_cli(*cmd, env={"CLOUD3D_CODEC_MODULES": "plugin_codecz", "PYTHONPATH": TESTS})
        assert proc.returncode == 1, proc.stderr
        assert proc.stderr.startswith("error: codec module 'plugin_codecz' (from CLOUD3D_CODEC_MODULES)")
        assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr


def test_every_codec_implements_the_timed_pair_only(monkeypatch):
    """One primitive: each codec implements encode_timed/decode_timed; encode/decode are derived."""
    monkeypatch.syspath_prepend(TESTS)
    monkeypatch.setenv("CLOUD3D_CODEC_MODULES", "plugin_codecs")
    for name, cls in all_codecs().items():
        assert cls.encode_timed is not Codec.encode_timed, name
        assert cls.decode_timed is not Codec.decode_timed, name
        assert cls.encode is Codec.encode and cls.decode is Codec.decode, name


def test_option_checks_are_public_and_say_what_is_valid():
    assert check_choice("c", "k", "a", ("a", "b")) == "a"
    with pytest.raises(ValueError, match=r"^c: option k='z' invalid; valid: a, b$"):
        check_choice("c", "k", "z", ("a", "b"))
    assert check_int("c", "n", 8.0, 1, 9) == 8
    for bad in (8.5, "x", 10, None):
        with pytest.raises(ValueError, match=r"^c: option n must be an integer 1\.\.9"):
            check_int("c", "n", bad, 1, 9)
    assert check_number("c", "t", "2.5", 0, 10) == 2.5
    for bad in (0, -1, "soon", True, float("nan"), 11):
        with pytest.raises(ValueError, match=r"^c: option t must be a number in \(0, 10\]"):
            check_number("c", "t", bad, 0, 10)
    check_rgb(np.zeros((2, 3, 3), np.uint8), "c")
    for bad in (np.zeros((2, 3), np.uint8), np.zeros((2, 3, 3), np.float32), np.zeros((0, 3, 3), np.uint8), [1]):
        with pytest.raises(CodecError, match=r"^c: expected an \(H, W, 3\) uint8 RGB array"):
            check_rgb(bad, "c")
