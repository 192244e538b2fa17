"""The documented Python API of the analysis stage, used as a newcomer would: from a plain
script without an ``if __name__ == "__main__"`` guard, in a fresh interpreter."""

from __future__ import annotations

import subprocess
import sys

from helpers import ROOT, make_game_like_frame

from cloud3d.imageio import write_png

SCRIPT = """
from analysis import compare, measure_folder, run_entropy

ref = measure_folder({folder!r}, cache_dir={cache!r}, workers=2, progress=False)
print("measured", len(ref))
table = compare(ref.assign(group="frames"), ref.assign(group="ref"))
print("compared", type(table).__name__, len(table))
"""


def test_measure_folder_with_workers_from_an_unguarded_script(tmp_path):
    folder = tmp_path / "photos"
    for i in range(4):
        write_png(folder / f"{i}.png", make_game_like_frame(40, 48, i))
    script = tmp_path / "plain.py"
    script.write_text(SCRIPT.format(folder=str(folder), cache=str(tmp_path / "cache")))
    # spawned workers re-ran this script, failed and were restarted for ever: a timeout here
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120,
                       cwd=tmp_path, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    assert "measured 4" in r.stdout
    assert "compared DataFrame" in r.stdout  # the function, not the module analysis.compare


def test_entropy_shows_its_plotting_on_a_bar(tmp_path, run_cli):
    """The figures were drawn for seconds after the measuring bar had ended, without a word."""
    from helpers import make_dataset

    ds = make_dataset(tmp_path / "ds", n=2, h=48, w=64)
    ref = tmp_path / "photos"
    for i in range(2):
        write_png(ref / f"{i}.png", make_game_like_frame(48, 64, 50 + i))
    r = run_cli("entropy", ds, "--reference", ref, "--out", tmp_path / "e", "--workers", "1",
                env={"XDG_CACHE_HOME": str(tmp_path / "cache")})
    assert r.returncode == 0, r.stderr
    n = len(list((tmp_path / "e" / "figures").glob("*.png")))
    assert n > 0 and "figures: 100%" in r.stderr and f"{n}/{n}" in r.stderr
