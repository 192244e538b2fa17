"""The built-in recipes: SuperTuxKart, Red Eclipse and 0 A.D., three of the reference paper's apps.

Command lines, scenes and timings were measured on Debian 12 under Xvfb with Mesa's
llvmpipe software renderer on a loaded 2-core machine (see docs/capture.md).

Each recipe lists ten scenes: ``--count 1000`` then gives every scene 100 frames, and
``cloud3d split --group scene`` can fill the paper's 800/100/100 with whole scenes and no
frame wasted (one scene for test, one for validation, eight for training). Other scenes
of the game can be named with ``--scenes``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from .recipe import GameRecipe, Scene

_DISPLAY_NEEDS = "xvfb libgl1-mesa-dri"


def _scenes(names: str, arg: str) -> tuple[Scene, ...]:
    return tuple(Scene(n, (arg.format(scene=n),)) for n in names.split())


SUPERTUXKART = GameRecipe(
    name="supertuxkart",
    title="SuperTuxKart 1.4",
    package="supertuxkart",
    binary="supertuxkart",
    command=("{binary}", "--screensize={width}x{height}", "--windowed", "-N", "{scene_args}",
             "--kart={kart}", "--numkarts=5", "--laps=20", "--profile-time=3000",
             "--seed={seed}", "--disable-dynamic-lights", "--disable-texture-compression",
             "--disable-particles"),
    # all seen racing on llvmpipe; cocoa_temple, also listed in shared/GAMES.md, once sat
    # on its loading screen for 4 minutes here, so it is not a default
    scenes=_scenes("hacienda zengarden snowtuxpeak candela_city scotland black_forest "
                   "lighthouse volcano_island sandtrack minigolf", "--track={scene}"),
    scene_template=("--track={scene}",),
    scene_path="/usr/share/games/supertuxkart/data/tracks/{scene}",
    variants={"kart": ("tux", "gnu", "adiumy", "kiki", "nolok", "pidgin", "puffy", "suzanne",
                       "wilber", "xue", "konqi", "sara_the_racer")},
    fps=2.0,
    # the loading screen changes a little (icons, tips: < 1.2 between grabs, once 6.4);
    # a racing view changes by 5-20 between grabs 0.5 s apart
    ready_changes=4,
    ready_window=8.0,
    ready_mad=3.0,
    ready_timeout=300.0,
    stall_timeout=180.0,
    needs=f"{_DISPLAY_NEEDS} supertuxkart",
    notes="AI-driven race (-N skips the menus, --profile-time lets the AI drive the player's "
          "kart); dynamic lights and particles off (they hang or stall llvmpipe). Race on "
          "screen ~10-60 s after launch; 1.5-5 fps at 720p, 2-3 fps at 1080p here.",
)

REDECLIPSE = GameRecipe(
    name="redeclipse",
    title="Red Eclipse 1.6",
    package="redeclipse",
    binary="redeclipse",
    command=("{binary}", "-h{home}", "-df0", "-dw{width}", "-dh{height}",
             "-xname viewer; shownotices 0; specmode 1; deathmatch {scene}; "
             "sleep 20000 [cleargui]"),
    scenes=tuple(Scene(n) for n in (
        "deadsimple castle tribal futuresport bath cargo depot dutility echo institute").split()),
    scene_template=(),
    scene_path="/usr/share/games/redeclipse/data/maps/{scene}.mpz",
    fps=2.0,
    ready_pattern=r"match start, fight!",
    ready_log="log.txt",
    ready_changes=2,
    ready_window=10.0,
    # the match started 100-170 s after launch at 720p on a loaded machine, and a 1080p
    # start was still "updating entities" after 240 s
    ready_timeout=480.0,
    settle=1.0,
    stall_timeout=180.0,
    needs=f"{_DISPLAY_NEEDS} redeclipse",
    notes="bots fight a deathmatch watched by the spectator TV camera (it moves by itself); "
          "naming the player skips the welcome screen, shownotices 0 hides the SpecTV hint. "
          "The match starts 20-35 s after launch (its log says 'match start, fight!').",
)


class ZeroADRecipe(GameRecipe):
    """0 A.D.: installs the ``cloud3d_camera`` mod into the game's home before each start.

    The mod (``capture/games/zeroad_camera/``) makes the observer's camera follow a busy
    unit and switch every ``cloud3d.cameraperiod`` seconds; without it the view never moves.
    """

    MOD = Path(__file__).with_name("zeroad_camera")

    def prepare_home(self, home: Path) -> None:
        dest = home / ".local" / "share" / "0ad" / "mods" / "cloud3d_camera"
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copytree(self.MOD, dest, dirs_exist_ok=True)


_ZEROAD_LOW = (
    "-conf=shadows:false", "-conf=postproc:false", "-conf=silhouettes:false",
    "-conf=smoothlos:false", "-conf=waterfancyeffects:false", "-conf=waterrealdepth:false",
    "-conf=waterrefraction:false", "-conf=waterreflection:false", "-conf=watereffects:false",
    "-conf=fog:false", "-conf=particles:false", "-conf=showsky:false",
    "-conf=materialmgr.quality:0", "-conf=textures.quality:0", "-conf=textures.maxanisotropy:1",
    "-conf=rendererbackend:glarb",
)
_CIVS = ("athen", "brit", "cart", "gaul", "iber", "kush", "mace", "maur", "pers", "ptol",
         "rome", "sele", "spart", "han")

ZEROAD = ZeroADRecipe(
    name="0ad",
    title="0 A.D. alpha 26",
    package="0ad",
    binary="pyrogenesis",
    command=("{binary}", "-quickstart", "-nosound", "-xres={width}", "-yres={height}",
             "-conf=windowed:true", "-conf=pauseonfocusloss:false", "-autostart-disable-replay",
             *_ZEROAD_LOW, "-mod=public", "-mod=cloud3d_camera", "-conf=cloud3d.cameraperiod:15",
             "{scene_args}", "-autostart-ai=1:petra", "-autostart-ai=2:petra",
             "-autostart-civ=1:{civ1}", "-autostart-civ=2:{civ2}", "-autostart-aiseed={seed}",
             "-autostart-player=-1"),
    scenes=_scenes("temperate_roadway_2p magadha_2p alpine_valleys_2p bactria_2p "
                   "belgian_bog_2p cisalpine_winter_2p death_canyon_2p golden_oasis_2p "
                   "greek_acropolis_2p libyan_oasis_2p", "-autostart=skirmishes/{scene}"),
    scene_template=("-autostart=skirmishes/{scene}",),
    variants={"civ1": _CIVS, "civ2": _CIVS},
    fps=1.0,
    ready_pattern=r"GAME STARTED, ALL INIT COMPLETE",
    ready_changes=2,
    ready_window=12.0,
    ready_mad=0.5,
    ready_timeout=480.0,
    settle=1.0,
    stall_timeout=180.0,
    run_as_nobody=True,
    needs=f"{_DISPLAY_NEEDS} 0ad",
    notes="two Petra AIs play a skirmish watched by an observer; a small bundled mod moves the "
          "camera between busy units every 15 s. pyrogenesis refuses root, so under root it "
          "runs as 'nobody'. Low graphics settings: ~0.5-5 fps at 720p here.",
)

#: the built-in recipes, in the order ``--list`` shows them
GAMES: list[GameRecipe] = [SUPERTUXKART, REDECLIPSE, ZEROAD]
