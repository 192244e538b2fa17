"""The project's metadata, read by the installed setuptools as ``pip install`` reads it."""

from __future__ import annotations

import warnings

from helpers import ROOT


def test_pyproject_applies_without_deprecation_warnings():
    """``license`` is an SPDX string: the table form made every install warn."""
    from setuptools.config.pyprojecttoml import apply_configuration
    from setuptools.dist import Distribution

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dist = apply_configuration(Distribution(), ROOT / "pyproject.toml")
    assert not [str(w.message) for w in caught if "deprecat" in str(w.message).lower()]
    assert dist.metadata.license_expression == "MIT"
