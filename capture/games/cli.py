"""``cloud3d capture game NAME``: one command per game, a thin layer over :func:`capture_game`."""

from __future__ import annotations

import json
import sys

import click

from cloud3d.errors import Cloud3dError


def _names(values: tuple[str, ...]) -> list[str]:
    return [v.strip() for text in values for v in text.split(",") if v.strip()]


def _list_games() -> None:
    from .registry import all_games

    for game in all_games().values():
        try:
            where = f"installed: {game.find_binary()}"
        except Cloud3dError:
            where = "NOT installed"
        click.echo(f"{game.name}  ({game.title}; {where})")
        click.echo(f"  needs:  apt-get install {game.needs or game.package}")
        click.echo(f"  scenes: {', '.join(s.name for s in game.scenes)}"
                   + ("  (others by name)" if game.scene_template is not None else ""))
        if game.notes:
            click.echo(f"  notes:  {game.notes}")


@click.command("game", context_settings={"max_content_width": 100})
@click.argument("name", required=False)
@click.option("--list", "list_games", is_flag=True, help="list the game recipes and exit")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="capture root; frames go to OUT/NAME/{res}/{index:06d}.png")
@click.option("--count", type=click.IntRange(min=1), default=1000, show_default=True,
              help="kept frames wanted per resolution (a re-run continues to this number)")
@click.option("--res", "resolutions", multiple=True, default=("1080p,720p",), show_default=True,
              help="resolutions, each rendered natively (the game runs at that window size)")
@click.option("--scenes", multiple=True,
              help="scenes to cycle through (comma-separated; default: the recipe's list)")
@click.option("--seed", type=int, default=0, show_default=True,
              help="seed of the scene order and of per-visit choices (karts, civilisations)")
@click.option("--fps", type=float, default=None, help="grabs per second (default: the recipe's)")
@click.option("--stall-timeout", type=float, default=None,
              help="seconds without a kept frame before a scene counts as frozen (default: "
                   "the recipe's)")
@click.option("--max-failures", type=click.IntRange(min=1), default=2, show_default=True,
              help="failed visits after which a scene is given up for this run")
@click.option("--no-progress", is_flag=True, help="hide the progress bars")
@click.option("--json", "as_json", is_flag=True, help="print the summary as JSON on stdout")
def game_cmd(name, list_games, out, count, resolutions, scenes, seed, fps, stall_timeout,
             max_failures, no_progress, as_json):
    """Capture an open-source game unattended: built-in recipes for supertuxkart, redeclipse, 0ad.

    The game runs on a private Xvfb at each resolution's exact size, one scene (track,
    map, scenario) at a time, with frames spread fairly over the scenes. A scene that
    never starts, crashes or freezes is logged (OUT/NAME/scenes.jsonl) and the next one
    follows. Re-running continues to --count. Add your own games with
    CLOUD3D_GAME_MODULES (see docs/capture.md).

    \b
    Examples:
      cloud3d capture game --list
      cloud3d capture game supertuxkart --count 8 --res 720p --out captures
      cloud3d capture game 0ad --out captures        # 1000 frames at 1080p and at 720p
    """
    from ..signals import sigterm_as_interrupt
    from .registry import get_game
    from .runner import GameOptions, capture_game

    if list_games:
        _list_games()
        return
    if not name:
        raise Cloud3dError("name a game (cloud3d capture game --list shows them)")
    if out is None:
        raise Cloud3dError("give --out DIR, the capture root")
    recipe = get_game(name)
    opts = GameOptions(count=count, resolutions=tuple(_names(resolutions)),
                       scenes=_names(scenes) or None, seed=seed, fps=fps,
                       stall_timeout=stall_timeout, max_failures=max_failures,
                       progress=not no_progress, say=lambda line: click.echo(line, err=True))
    with sigterm_as_interrupt():
        summary = capture_game(recipe, out, opts)
    click.echo(json.dumps(summary.to_dict(), indent=2) if as_json else summary.to_text())
    if summary.interrupted:
        click.echo("interrupted: frames captured so far are kept; re-run the same command to "
                   "continue", err=True)
        sys.exit(130)
    if not summary.complete:
        click.echo("error: the target was not reached because scenes kept failing (see "
                   f"{summary.app_dir}/scenes.jsonl and logs/); the frames kept are kept, "
                   "re-run to continue", err=True)
        sys.exit(1)
