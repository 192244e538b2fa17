"""A game's private home folder, and running a game that refuses root as ``nobody``.

Each recipe gets a home folder that persists between visits and runs, so the game's
caches (converted textures, compiled shaders) survive and the user's own game settings
are never touched: ``$CLOUD3D_GAME_HOME/{recipe}`` if that variable is set, else
``{tmp}/cloud3d-games-{uid}/{recipe}``.

When root starts a game that refuses root (0 A.D.), the game runs as ``nobody``
through ``setpriv``, and its home folder belongs to ``nobody``. The parent folder
then belongs to root with mode 0711, so no other user can plant files in it.
"""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import tempfile
from pathlib import Path

from cloud3d.errors import Cloud3dError

from .recipe import GameRecipe


def _nobody() -> tuple[int, int]:
    try:
        pw = pwd.getpwnam("nobody")
    except KeyError:
        raise Cloud3dError("there is no 'nobody' user to run the game as (it refuses root)") from None
    return pw.pw_uid, pw.pw_gid


def drops_privileges(recipe: GameRecipe) -> bool:
    """True when this game must run as ``nobody`` here (it refuses root and we are root)."""
    return recipe.run_as_nobody and os.geteuid() == 0


def _safe_base(base: Path) -> Path:
    """Create ``base`` (mode 0711) or check that an existing one is ours and not writable by others."""
    base.mkdir(mode=0o711, parents=True, exist_ok=True)
    st = base.stat()
    if st.st_uid != os.geteuid() or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise Cloud3dError(
            f"{base} belongs to another user or is writable by others: remove it or set "
            "CLOUD3D_GAME_HOME to a folder of your own"
        )
    return base


def game_home(recipe: GameRecipe) -> Path:
    """The recipe's home folder, created if needed and owned by whoever runs the game."""
    base = os.environ.get("CLOUD3D_GAME_HOME")
    root = Path(base) if base else Path(tempfile.gettempdir()) / f"cloud3d-games-{os.geteuid()}"
    home = _safe_base(root) / recipe.name
    try:
        home.mkdir(mode=0o700, exist_ok=True)
    except OSError as exc:
        raise Cloud3dError(f"cannot create the game's home folder {home}: {exc}") from None
    return home


def hand_over(home: Path, recipe: GameRecipe) -> None:
    """Give ``home`` and everything in it to ``nobody`` when the game runs as ``nobody``."""
    if not drops_privileges(recipe):
        return
    uid, gid = _nobody()
    for folder, dirs, files in os.walk(home):
        for name in (folder, *(os.path.join(folder, d) for d in dirs),
                     *(os.path.join(folder, f) for f in files)):
            os.lchown(name, uid, gid)


def wrap_command(command: list[str], recipe: GameRecipe) -> list[str]:
    """``command``, prefixed with ``setpriv`` to run as ``nobody`` when :func:`drops_privileges`."""
    if not drops_privileges(recipe):
        return command
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        raise Cloud3dError(
            f"{recipe.title} refuses to run as root and setpriv is missing: apt-get install "
            "util-linux, or run cloud3d as an ordinary user"
        )
    uid, gid = _nobody()
    return [setpriv, f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "--", *command]
