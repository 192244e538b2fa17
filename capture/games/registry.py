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

from cloud3d.registry import Registry

from .recipe import GameRecipe

#: modules that define the built-in ``GAMES``
BUILTIN_MODULES: tuple[str, ...] = ("capture.games.builtin",)

ENV_VAR = "CLOUD3D_GAME_MODULES"

#: every recipe by name: :data:`BUILTIN_MODULES`, then the modules in ``$CLOUD3D_GAME_MODULES``
#: (see :class:`cloud3d.registry.Registry`)
REGISTRY: Registry[GameRecipe] = Registry(
    "game", BUILTIN_MODULES, "GAMES", env_var=ENV_VAR, what="GameRecipe objects",
    accepts=lambda g: isinstance(g, GameRecipe),
    unknown_hint=f"add your own with {ENV_VAR}, see docs/capture.md",
)


def all_games() -> dict[str, GameRecipe]:
    """Every recipe by name, built-in ones first."""
    return REGISTRY.entries()


def get_game(name: str) -> GameRecipe:
    """The recipe called ``name``; :class:`Cloud3dError` listing the known names otherwise."""
    return REGISTRY.lookup(name)
