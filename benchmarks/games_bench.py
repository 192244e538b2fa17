"""Frames kept per minute per game and resolution, with the built-in game recipes.

Runs ``capture_game`` for every installed game (SuperTuxKart, Red Eclipse, 0 A.D.) at each
resolution, a few frames per scene, then prints one row per game and resolution (see
:mod:`capture.games.report` for the columns): frames kept per minute of wall-clock time
with start-up included, per minute of capturing, time from launch to gameplay, grab and
kept rates, failures and drops, and the capture's own cost per frame (grab and PNG
encode milliseconds), which must stay far below the interval between grabs.

Usage:
    python benchmarks/games_bench.py [--games supertuxkart,redeclipse,0ad] [--res 720p,1080p]
                                     [--count 20] [--scenes 2] [--out DIR] [--csv FILE]
    python benchmarks/games_bench.py --from captures [--sheets docs/games]  # earlier captures

Run it with ``nice`` on a machine others use; software rendering takes both cores.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import pandas as pd

from capture.games.registry import all_games
from capture.games.report import contact_sheet, game_figures
from capture.games.runner import GameOptions, capture_game


def _app_dirs(paths: list[str]) -> list[Path]:
    out = []
    for p in map(Path, paths):
        if (p / "scenes.jsonl").is_file():
            out.append(p)
        else:
            out += sorted(d for d in p.iterdir() if (d / "scenes.jsonl").is_file())
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--games", default="supertuxkart,redeclipse,0ad")
    ap.add_argument("--res", default="720p,1080p")
    ap.add_argument("--count", type=int, default=20, help="kept frames per game and resolution")
    ap.add_argument("--scenes", type=int, default=2, help="scenes per game (the recipe's first)")
    ap.add_argument("--out", default=None, help="capture root (default: a temporary folder)")
    ap.add_argument("--from", dest="from_dirs", nargs="+", default=None,
                    help="only report on earlier captures (capture roots or app folders)")
    ap.add_argument("--csv", default=None, help="also write the table here")
    ap.add_argument("--sheets", default=None,
                    help="write a contact sheet per game here (GAME.jpg, 8 frames at 720p)")
    args = ap.parse_args(argv)
    if args.from_dirs:
        dirs = _app_dirs(args.from_dirs)
        table = game_figures(dirs)
    else:
        out = Path(args.out or tempfile.mkdtemp(prefix="cloud3d-games-bench-"))
        games = all_games()
        dirs = []
        for name in args.games.split(","):
            recipe = games[name]
            if not recipe.installed():
                print(f"{name}: not installed (apt-get install {recipe.needs}); skipped")
                continue
            opts = GameOptions(count=args.count, resolutions=tuple(args.res.split(",")),
                               scenes=[s.name for s in recipe.scenes[: args.scenes]],
                               progress=False, say=lambda line: print(line, file=sys.stderr))
            summary = capture_game(recipe, out, opts)
            print(summary.to_text(), file=sys.stderr)
            dirs.append(out / name)
        table = game_figures(dirs)
    with pd.option_context("display.width", 200, "display.max_columns", None):
        print(table.to_string(index=False))
    if args.csv:
        table.to_csv(args.csv, index=False)
    if args.sheets:
        Path(args.sheets).mkdir(parents=True, exist_ok=True)
        for d in dirs:
            print(contact_sheet(d, Path(args.sheets) / f"{d.name}.jpg"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
