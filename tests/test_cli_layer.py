"""The CLI layer gathers every stage's commands; a command module that cannot be imported is
one error line naming it and a non-zero exit, never a command silently missing from --help."""

from __future__ import annotations

import subprocess
import sys

from helpers import ROOT


def _help(cwd, code: str | None = None) -> subprocess.CompletedProcess:
    """``cloud3d --help`` run from ``cwd`` (first on the import path, so a package there
    shadows the stage of that name), this checkout next; ``code`` runs before ``main``."""
    argv = ([sys.executable, "-c", f"{code}\nfrom cloud3d.cli import main; main(['--help'])"]
            if code else [sys.executable, "-m", "cloud3d.cli", "--help"])
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=cwd,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "HOME": str(cwd)})


def _one_error_line(r: subprocess.CompletedProcess, *words: str) -> None:
    assert r.returncode != 0, r.stdout
    assert "Traceback" not in r.stderr, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    for w in words:
        assert w in lines[0], r.stderr


def test_every_stage_contributes_its_commands(tmp_path):
    r = _help(tmp_path)
    assert r.returncode == 0, r.stderr
    for cmd in ("capture", "split", "entropy", "bench", "bench-video", "archive", "pack", "train",
                "models", "demo"):
        assert f"\n  {cmd} " in r.stdout, cmd


def test_a_command_module_that_fails_to_import_is_one_error_line(tmp_path):
    # an analysis stage whose command module needs a dependency that is not installed
    (tmp_path / "analysis").mkdir()
    (tmp_path / "analysis" / "__init__.py").write_text("")
    (tmp_path / "analysis" / "cli.py").write_text("import cloud3d_no_such_dependency\n")
    _one_error_line(_help(tmp_path), "analysis.cli", "cloud3d_no_such_dependency")


def test_a_missing_command_module_is_an_error_not_a_vanished_command(tmp_path):
    code = ("import cloud3d.cli.commands as c\n"
            "c.COMMAND_MODULES = (*c.COMMAND_MODULES, 'cloud3d_missing_commands')")
    _one_error_line(_help(tmp_path, code), "cloud3d_missing_commands")


def test_a_command_module_without_register_is_an_error(tmp_path):
    (tmp_path / "extra_cmds.py").write_text("import click\n")
    code = ("import cloud3d.cli.commands as c\n"
            "c.COMMAND_MODULES = (*c.COMMAND_MODULES, 'extra_cmds')")
    _one_error_line(_help(tmp_path, code), "extra_cmds", "register")
