"""A stand-in game for the recipe machinery, pluggable like a user's own game module.

The "game" is ``python -m capture.showwindow``: a real X window on the recipe's private
Xvfb, showing numbered test patterns. Its scenes misbehave on purpose: ``frozen`` stops
changing its picture, ``crashy`` exits with status 3, ``sleepy`` never leaves its
loading screen, ``tiny`` opens a window of the wrong size. Any other scene name works
too (``scene_template``), so a test can put a unique marker into the command line.

A subprocess adds it with ``CLOUD3D_GAME_MODULES=plugin_games`` (``tests/`` on ``PYTHONPATH``).
"""

from __future__ import annotations

import sys

from capture.games.recipe import GameRecipe, Scene

_READY = ("--ready-after", "1")

STANDIN = GameRecipe(
    name="standin",
    title="showwindow stand-in game",
    package="(part of cloud3d)",
    binary=sys.executable,
    command=("{binary}", "-m", "capture.showwindow", "--size", "{width}x{height}", "--pattern",
             "--fps", "8", "--title", "standin-{scene}", "{scene_args}"),
    scenes=(
        Scene("meadow", _READY),
        Scene("canyon", _READY),
        Scene("harbour", _READY),
        Scene("frozen", (*_READY, "--freeze-after", "5"), "stops drawing"),
        Scene("crashy", (*_READY, "--crash-after", "4.5"), "exits with status 3"),
        Scene("sleepy", ("--ready-after", "600"), "never ready"),
        Scene("tiny", (*_READY, "--size", "640x360"), "wrong window size"),
    ),
    scene_template=_READY,
    fps=2.0,
    ready_pattern=r"showwindow: ready",
    ready_changes=2,
    ready_window=5.0,
    ready_timeout=30.0,  # generous: a loaded machine starts Python slowly
    window_timeout=30.0,
    stall_timeout=3.0,
    notes="for tests",
)

GAMES = [STANDIN]
