"""What a game recipe is: data (binary, command line, scenes, readiness, timings) plus a small class.

A :class:`GameRecipe` knows how to start one game with no human input, showing one
:class:`Scene` (a track, map or scenario) at a given window size, and how to tell that
gameplay is on screen. Most recipes are pure data; a game that needs more (a private
mod, a changed user) subclasses :class:`GameRecipe` and overrides :meth:`prepare_home`
or :meth:`command`.

Command templates are lists of strings formatted with these fields:

==================  ==========================================================
``{binary}``        the game's executable (found on ``PATH`` or in ``/usr/games``)
``{width}``         window width in pixels; ``{height}`` likewise
``{home}``          the game's private home folder (its config, caches and logs)
``{scene}``         the scene's name; ``{seed}`` the visit's seed (0..2**31-1)
``{NAME}``          for every entry of :attr:`GameRecipe.variants`, one of its
                    values, drawn per visit from the seed (e.g. a kart)
==================  ==========================================================

The single element ``"{scene_args}"`` expands to the scene's own arguments (each
formatted with the same fields). Scene names not listed in the recipe are accepted
when the recipe has a :attr:`GameRecipe.scene_template` (arguments that open any
scene by name, e.g. ``--track={scene}``) and, if it has :attr:`GameRecipe.scene_path`,
when that file or folder exists.
"""

from __future__ import annotations

import os
import random
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from cloud3d.errors import Cloud3dError

#: folders searched after ``PATH`` for game binaries (Debian installs games there)
GAME_BIN_DIRS: tuple[str, ...] = ("/usr/games", "/usr/local/games")

_SCENE_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}$")


class GameNotInstalled(Cloud3dError):
    """The game's binary is not installed here; the message says which package provides it."""


@dataclass(frozen=True)
class Scene:
    """One place in a game (track, map, scenario) and the arguments that open it.

    Attributes:
        name: short name, written to ``frames.csv``'s ``scene`` column (letters, digits,
            ``_ . + -``, at most 64 characters).
        args: arguments inserted where the command template says ``{scene_args}``.
        note: why this scene is in the list, or what to expect from it.
    """

    name: str
    args: tuple[str, ...] = ()
    note: str = ""

    def __post_init__(self) -> None:
        if not _SCENE_NAME_RE.match(self.name):
            raise Cloud3dError(
                f"bad scene name {self.name!r}: use letters, digits and _ . + - (at most 64)"
            )


@dataclass
class GameRecipe:
    """How to run one game unattended and capture its gameplay.

    Attributes:
        name: recipe name and app folder name (e.g. ``supertuxkart``).
        title: human name with the version the recipe was measured on.
        package: Debian package that installs the game.
        binary: executable name (searched on ``PATH``, then in :data:`GAME_BIN_DIRS`).
        command: command template (see the module docstring).
        scenes: the scenes cycled through by default, in the recipe's preferred order.
        scene_template: arguments that open any scene by name (``None``: listed scenes only).
        scene_path: a path template (``{scene}``) that exists for every installed scene;
            used to check names given with ``--scenes``.
        variants: per-visit choices drawn from the seed, e.g. ``{"kart": ("tux", "gnu")}``.
        fps: grabs per second during capture (duplicates of the last kept frame are dropped).
        ready_pattern: regular expression that the game writes once gameplay starts
            (``None``: only the picture decides).
        ready_log: file, relative to the home folder, holding that line (``None``: the
            game's stdout/stderr).
        ready_changes, ready_window, ready_mad: gameplay counts as on screen once the
            picture has changed this many times within this many seconds, a change being a
            mean absolute difference above ``ready_mad`` (0..255) between grabs 0.5 s apart;
            checked after ``ready_pattern`` if there is one (see :mod:`capture.games.ready`).
        ready_timeout: seconds from launch until gameplay must be on screen.
        settle: seconds waited once gameplay is on screen, before capturing.
        window_timeout: seconds to wait for the game's window.
        stall_timeout: seconds without a kept frame after which the game counts as frozen
            (generous: a software renderer on a loaded machine is slow, not frozen).
        run_as_nobody: the game refuses to run as root: when started by root it runs as
            the ``nobody`` user (via ``setpriv``) with its own home folder.
        needs: what to install (shown by ``--list`` and in errors).
        notes: what a user should know (speed, quirks).
    """

    name: str
    title: str
    package: str
    binary: str
    command: tuple[str, ...]
    scenes: tuple[Scene, ...]
    scene_template: tuple[str, ...] | None = None
    scene_path: str | None = None
    variants: dict[str, tuple[str, ...]] = field(default_factory=dict)
    fps: float = 2.0
    ready_pattern: str | None = None
    ready_log: str | None = None
    ready_changes: int = 3
    ready_window: float = 8.0
    ready_mad: float = 1.0
    ready_timeout: float = 240.0
    settle: float = 0.0
    window_timeout: float = 120.0
    stall_timeout: float = 180.0
    run_as_nobody: bool = False
    needs: str = ""
    notes: str = ""

    # -- finding things -----------------------------------------------------------------
    def find_binary(self) -> str:
        """Full path of the game's executable; :class:`GameNotInstalled` if it is missing."""
        found = shutil.which(self.binary)
        if found is None:
            for folder in GAME_BIN_DIRS:
                candidate = Path(folder) / self.binary
                if candidate.is_file() and os.access(candidate, os.X_OK):
                    found = str(candidate)
                    break
        if found is None:
            raise GameNotInstalled(
                f"{self.title} is not installed ({self.binary} not found on PATH or in "
                f"{', '.join(GAME_BIN_DIRS)}): apt-get install {self.needs or self.package}"
            )
        return found

    def installed(self) -> bool:
        """True when :meth:`find_binary` succeeds."""
        try:
            self.find_binary()
        except GameNotInstalled:
            return False
        return True

    def scene(self, name: str) -> Scene:
        """The scene called ``name``: a listed one, or one made from :attr:`scene_template`."""
        for s in self.scenes:
            if s.name == name:
                return s
        if self.scene_template is None:
            raise Cloud3dError(
                f"{self.name} has no scene {name!r}; its scenes: "
                f"{', '.join(s.name for s in self.scenes)}"
            )
        if self.scene_path is not None and not Path(self.scene_path.format(scene=name)).exists():
            raise Cloud3dError(
                f"{self.name}: no scene {name!r} is installed (no {self.scene_path.format(scene=name)})"
            )
        return Scene(name, tuple(self.scene_template))

    def pick_scenes(self, names: list[str] | None) -> list[Scene]:
        """The scenes to cycle through: ``names`` (checked, duplicates refused) or the defaults."""
        if not names:
            return list(self.scenes)
        if len(set(names)) != len(names):
            raise Cloud3dError(f"--scenes lists a scene twice: {', '.join(names)}")
        return [self.scene(n) for n in names]

    # -- starting the game ----------------------------------------------------------------
    def choose_variants(self, seed: int) -> dict[str, str]:
        """One value of each :attr:`variants` entry, drawn with ``seed`` (same seed, same choice)."""
        rng = random.Random(seed)
        return {k: rng.choice(list(v)) for k, v in sorted(self.variants.items())}

    def command_for(self, scene: Scene, size: tuple[int, int], home: Path, seed: int) -> list[str]:
        """The argument list that starts the game on ``scene`` at ``size`` = (width, height)."""
        fields = {"binary": self.find_binary(), "width": size[0], "height": size[1],
                  "home": str(home), "scene": scene.name, "seed": seed,
                  **self.choose_variants(seed)}
        out: list[str] = []
        try:
            for part in self.command:
                if part == "{scene_args}":
                    out += [a.format(**fields) for a in scene.args]
                else:
                    out.append(part.format(**fields))
        except (KeyError, IndexError, ValueError) as exc:
            raise Cloud3dError(f"recipe {self.name}: bad command template ({exc!r})") from None
        return out

    def env_for(self, home: Path) -> dict[str, str | None]:
        """Environment changes for the game: its own ``HOME``, no inherited XDG folders."""
        env: dict[str, str | None] = {"HOME": str(home)}
        for var in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME", "XDG_STATE_HOME",
                    "XDG_RUNTIME_DIR"):
            env[var] = None
        return env

    def prepare_home(self, home: Path) -> None:
        """Put files the game needs into its home folder before each start (default: nothing)."""

    def describe(self) -> dict:
        """Recipe settings for the capture log (JSON-friendly)."""
        return {"name": self.name, "title": self.title, "package": self.package,
                "binary": self.binary, "command": list(self.command), "fps": self.fps,
                "ready_pattern": self.ready_pattern, "ready_log": self.ready_log,
                "ready_changes": self.ready_changes, "ready_window": self.ready_window,
                "ready_mad": self.ready_mad,
                "settle": self.settle, "stall_timeout": self.stall_timeout,
                "variants": {k: list(v) for k, v in self.variants.items()}}
