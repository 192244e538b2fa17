"""Find game recipes by name: the built-in ones plus those of the user's own modules.

A module that adds games defines ``GAMES``, a list of :class:`~capture.games.recipe.GameRecipe`.
List such modules, comma-separated, in ``$CLOUD3D_GAME_MODULES`` (they must be importable,
e.g. on ``PYTHONPATH``)::

    # mygames.py
    from capture.games import GameRecipe, Scene
    GAMES = [GameRecipe(name="mygame", title="My Game 2.0", package="mygame", binary="mygame",
                        command=("{binary}", "--size={width}x{height}", "--level={scene}"),
                        scenes=(Scene("forest"), Scene("desert")))]

    CLOUD3D_GAME_MODULES=mygames cloud3d capture game mygame --out captures --count 8 --res 720p

A module that cannot be imported, or that has no ``GAMES`` list of recipes, is an error
(never silently skipped), and so is a name given twice.
"""

from __future__ import annotations

import importlib
import os

from cloud3d.errors import Cloud3dError

from .recipe import GameRecipe

#: modules that define the built-in ``GAMES``
BUILTIN_MODULES: tuple[str, ...] = ("capture.games.builtin",)

ENV_VAR = "CLOUD3D_GAME_MODULES"


def game_modules() -> tuple[str, ...]:
    """:data:`BUILTIN_MODULES` plus the modules named in ``$CLOUD3D_GAME_MODULES``."""
    extra = [m.strip() for m in os.environ.get(ENV_VAR, "").split(",") if m.strip()]
    return BUILTIN_MODULES + tuple(m for m in extra if m not in BUILTIN_MODULES)


def _load(modname: str) -> list[GameRecipe]:
    try:
        mod = importlib.import_module(modname)
    except ModuleNotFoundError as exc:
        if exc.name and (modname == exc.name or modname.startswith(exc.name + ".")):
            raise Cloud3dError(
                f"game module {modname!r} (from {ENV_VAR}) cannot be found: check its spelling "
                "and that its folder is on PYTHONPATH"
            ) from None
        raise Cloud3dError(f"game module {modname!r} needs {exc.name!r}, which is not installed") from None
    except Exception as exc:  # a user's module with a bug: say which one
        raise Cloud3dError(f"game module {modname!r} failed to import: {type(exc).__name__}: {exc}") from None
    games = getattr(mod, "GAMES", None)
    if not isinstance(games, list | tuple) or not all(isinstance(g, GameRecipe) for g in games):
        raise Cloud3dError(f"game module {modname!r} must define GAMES, a list of GameRecipe objects")
    return list(games)


def all_games() -> dict[str, GameRecipe]:
    """Every recipe by name, built-in ones first."""
    out: dict[str, GameRecipe] = {}
    for modname in game_modules():
        for game in _load(modname):
            if game.name in out:
                raise Cloud3dError(f"game {game.name!r} is defined twice (again in {modname!r})")
            out[game.name] = game
    return out


def get_game(name: str) -> GameRecipe:
    """The recipe called ``name``; :class:`Cloud3dError` listing the known names otherwise."""
    games = all_games()
    if name not in games:
        raise Cloud3dError(f"unknown game {name!r}; known games: {', '.join(games)} "
                           f"(add your own with {ENV_VAR}, see docs/capture.md)")
    return games[name]
