"""Figures of game captures, per game and resolution, from ``scenes.jsonl`` and ``frames.csv``.

:func:`game_figures` reads one or more capture app folders written by ``cloud3d capture
game`` and returns a pandas table with one row per (game, resolution). Columns (times in
seconds, rates per minute of wall-clock time unless named ``_fps``):

==========================  ============================================================
game, resolution            the recipe and the window size it rendered at
visits, ok, failures        game starts; those that ended as planned; the others by outcome
scenes                      scenes that supplied frames
kept, dropped               frames kept and frames grabbed but dropped, by reason
wall_min                    minutes of visits, start-up included
kept_per_min                kept / wall_min: what a user waits per frame, all in
kept_per_capture_min        kept per minute of capturing (after gameplay is on screen)
ready_s_median              launch to gameplay on screen (median over visits)
window_s_median             launch to the game's window (median)
grab_fps, kept_fps          grabs and kept frames per second while capturing
grab_ms, encode_ms          mean grab time and PNG encode time per kept frame (the
                            capture's own cost: far below 1 / fps means it is not the bottleneck)
==========================  ============================================================
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import pandas as pd


def _visits(app_dir: Path) -> list[dict]:
    path = app_dir / "scenes.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _row(game: str, res: str, visits: list[dict], frames: pd.DataFrame) -> dict:
    kept = sum(v["kept"] for v in visits)
    grabbed = sum(v["grabbed"] for v in visits)
    wall = sum(v["wall_s"] for v in visits)
    capture = sum(v["capture_s"] for v in visits)
    drops: Counter[str] = Counter()
    for v in visits:
        drops.update(v["dropped"])
    fails = Counter(v["outcome"] for v in visits if v["outcome"] not in ("ok", "interrupted"))
    ready = pd.Series([v["ready_s"] for v in visits if v.get("ready_s") is not None], dtype=float)
    window = pd.Series([v["window_s"] for v in visits if v.get("window_s") is not None],
                       dtype=float)
    mine = frames[frames[f"file_{res}"].notna()] if f"file_{res}" in frames else frames.iloc[:0]
    return {
        "game": game, "resolution": res, "visits": len(visits),
        "ok": sum(v["outcome"] == "ok" for v in visits),
        "failures": ", ".join(f"{k} {n}" for k, n in sorted(fails.items())) or "-",
        "scenes": len({v["scene"] for v in visits if v["kept"]}),
        "kept": kept,
        "dropped": ", ".join(f"{k} {n}" for k, n in sorted(drops.items())) or "-",
        "wall_min": round(wall / 60, 1),
        "kept_per_min": round(kept / (wall / 60), 1) if wall else 0.0,
        "kept_per_capture_min": round(kept / (capture / 60), 1) if capture else 0.0,
        "ready_s_median": round(float(ready.median()), 1) if len(ready) else None,
        "window_s_median": round(float(window.median()), 1) if len(window) else None,
        "grab_fps": round(grabbed / capture, 2) if capture else 0.0,
        "kept_fps": round(kept / capture, 2) if capture else 0.0,
        "grab_ms": round(float(pd.to_numeric(mine["grab_ms"]).mean()), 1) if len(mine) else None,
        "encode_ms": round(float(pd.to_numeric(mine["encode_ms"]).mean()), 1) if len(mine) else None,
    }


def game_figures(app_dirs: list[str | os.PathLike]) -> pd.DataFrame:
    """One row per (game, resolution) of the capture app folders ``app_dirs`` (see module doc)."""
    rows = []
    for d in map(Path, app_dirs):
        visits = _visits(d)
        frames = pd.read_csv(d / "frames.csv", dtype=str) if (d / "frames.csv").is_file() else \
            pd.DataFrame()
        if len(frames):
            frames = frames[frames["status"] == "kept"]
        for res in sorted({v["resolution"] for v in visits}, key=lambda r: -int(r[:-1])):
            rows.append(_row(d.name, res, [v for v in visits if v["resolution"] == res], frames))
    return pd.DataFrame(rows)


def contact_sheet(app_dir: str | os.PathLike, path: str | os.PathLike, resolution: str = "720p",
                  frames: int = 8, columns: int = 4, width: int = 320) -> Path:
    """A grid of ``frames`` downscaled kept frames (``width`` px wide), spread over the scenes,
    each labelled with its scene; written to ``path`` (PNG or JPEG by its suffix)."""
    from PIL import Image, ImageDraw

    app_dir = Path(app_dir)
    df = pd.read_csv(app_dir / "frames.csv", dtype=str)
    df = df[(df["status"] == "kept") & df[f"file_{resolution}"].notna()]
    scenes = sorted(df["scene"].fillna("").unique())
    picks = []
    for k in range(frames):  # round robin over the scenes, evenly spaced within each
        rows = df[df["scene"].fillna("") == scenes[k % len(scenes)]]
        j = (k // len(scenes) + 1) * len(rows) // (frames // len(scenes) + 2)
        picks.append(rows.iloc[min(j, len(rows) - 1)])
    height = width * 9 // 16
    rows_n = -(-len(picks) // columns)
    sheet = Image.new("RGB", (columns * width, rows_n * height))
    draw = ImageDraw.Draw(sheet)
    for k, row in enumerate(picks):
        with Image.open(app_dir / row[f"file_{resolution}"]) as im:
            thumb = im.convert("RGB").resize((width, height), Image.Resampling.LANCZOS)
        x, y = (k % columns) * width, (k // columns) * height
        sheet.paste(thumb, (x, y))
        label = row["scene"] if isinstance(row["scene"], str) else ""
        draw.rectangle((x, y + height - 14, x + 7 * len(label) + 6, y + height), fill=(0, 0, 0))
        draw.text((x + 3, y + height - 13), label, fill=(255, 255, 255))
    path = Path(path)
    if path.suffix.lower() in (".jpg", ".jpeg"):
        sheet.save(path, quality=85, optimize=True)
    else:
        sheet.save(path, optimize=True)
    return path
