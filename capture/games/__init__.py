"""Game recipes: capture open-source games unattended, one scene after another.

``cloud3d capture game NAME --out DIR`` runs a recipe (see :mod:`capture.games.builtin`:
``supertuxkart``, ``redeclipse``, ``0ad``); users add their own through
``$CLOUD3D_GAME_MODULES`` (:mod:`capture.games.registry`). Python API (imported lazily,
so ``cloud3d --help`` stays fast)::

    from capture.games import GameOptions, capture_game, get_game
    summary = capture_game(get_game("supertuxkart"), "captures",
                           GameOptions(count=8, resolutions=("720p",)))

See docs/capture.md.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "GameRecipe": "capture.games.recipe",
    "Scene": "capture.games.recipe",
    "GameNotInstalled": "capture.games.recipe",
    "all_games": "capture.games.registry",
    "get_game": "capture.games.registry",
    "GameOptions": "capture.games.runner",
    "GameSummary": "capture.games.runner",
    "Visit": "capture.games.runner",
    "capture_game": "capture.games.runner",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'capture.games' has no attribute {name!r}")
