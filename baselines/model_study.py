"""The bundled models' study: every model against JPEG, WebP and BPG 4:4:4 on a dataset's test
split, from one command (``cloud3d models study``), and the status each card earns.

Steps: ``cloud3d bench`` of the models (``learned:model=NAME``, their real ``.c3d`` bytes) and
the anchors on the split, ``cloud3d report`` of the results (tables, RD plots, index.html), then
``OUT/models.csv``: one row per (model, app) with, against each anchor,

* ``bd_rate_vs_{anchor}_pct``: Bjontegaard delta rate (RGB PSNR, PCHIP over the overlap,
  :mod:`baselines.bdrate`), for a model with 2 or more rate points;
* ``saving_vs_{anchor}_pct``: for a fixed-rate model (one point), how many percent fewer bytes
  it needs than the anchor at its PSNR (the anchor's rate interpolated in log-rate between the
  two qualities around it; empty outside the anchor's sweep). Negative: more bytes.
* ``dpsnr_vs_{anchor}_db``: for a fixed-rate model, its PSNR minus the anchor's at its rate
  (interpolated the same way; empty outside the sweep).

Status (:func:`status_of`): a model is a ``reference`` when, on every app of the study it is
for (every app for ``app: all``), it needs at least :data:`TARGET_PCT` percent fewer bytes than
JPEG; otherwise a ``preview``. With ``update_cards`` the figures go into each card's ``test``
field and its ``status`` is set.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import pandas as pd

from baselines.bench.runner import run_bench
from baselines.codecs.registry import get_codec_class
from baselines.report import bd_table, write_report
from cloud3d.errors import Cloud3dError

__all__ = ["ANCHORS", "TARGET_PCT", "run_study", "status_of"]

#: anchor codecs and the specs they are run with (BPG: 4:4:4, as in the paper)
ANCHORS: dict[str, str] = {
    "jpeg": "jpeg:q=2,5,10,20,30,40,50,60,70,80,90,95;label=jpeg",
    "webp": "webp:q=0,5,10,20,30,40,50,60,70,80,90,95;label=webp",
    "bpg": "bpg:qp=22,27,32,37,42,47,51;subsampling=444;label=bpg",
}
#: rate saving vs JPEG (percent) a reference model reaches on every app
TARGET_PCT = 10.0


def _available(name: str) -> bool:
    try:
        return get_codec_class(name)().availability() is None
    except Exception:  # a codec that cannot even be built is not available  # noqa: BLE001
        return False


def _point_saving(anchor: pd.DataFrame, bpp: float, psnr: float
                  ) -> tuple[float | None, float | None]:
    """(percent fewer bytes than ``anchor`` at ``psnr``, dB over it at ``bpp``)."""
    from models.lap import jpeg_psnr_at, jpeg_rate_at

    pts = list(zip(anchor["mean_bpp"], anchor["mean_psnr"], strict=True))
    ref, at = jpeg_rate_at(pts, psnr), jpeg_psnr_at(pts, bpp)
    return (None if ref is None else 100 * (1 - bpp / ref),
            None if at is None else psnr - at)


def status_of(card: dict[str, Any], rows: pd.DataFrame) -> str:
    """``reference`` or ``preview`` for the model of ``card`` from its ``models.csv`` rows."""
    mine = rows[rows["model"] == card["name"]]
    if card.get("app") not in (None, "all"):
        mine = mine[mine["app"] == card["app"]]
    if mine.empty:
        return "preview"
    bd = pd.to_numeric(mine["bd_rate_vs_jpeg_pct"], errors="coerce")
    saving = pd.to_numeric(mine["saving_vs_jpeg_pct"], errors="coerce")
    best = bd.where(bd.notna(), -saving)  # NaN (not measurable) never meets the target
    return "reference" if bool((best <= -TARGET_PCT).all()) else "preview"


def run_study(dataset: str | os.PathLike, out: str | os.PathLike,
              models: list[str] | None = None, split: str = "test", limit: int | None = None,
              workers: int | None = None, update_cards: bool = False,
              progress: bool = True) -> pd.DataFrame:
    """Run the study (module docstring) into ``out``; returns the ``models.csv`` table."""
    from baselines.bench.runner import BenchOptions
    from models.library import scan_models

    entries = {e.name: e for e in scan_models()[0]}
    names = models if models else sorted(n for n, e in entries.items() if e.origin == "bundled")
    missing = [n for n in names if n not in entries]
    if missing or not names:
        raise Cloud3dError(f"no model named {', '.join(missing) or '(none bundled)'}: "
                           "`cloud3d models` lists them")
    anchors = [a for a in ANCHORS if _available(a)]
    specs = [f"learned:model={n};label={n}" for n in names] + [ANCHORS[a] for a in anchors]
    outp = Path(out)
    outp.mkdir(parents=True, exist_ok=True)
    run_bench(dataset, specs, outp / "results.sqlite",
              BenchOptions(split=split, limit=limit, workers=workers, progress=progress))
    write_report(outp / "results.sqlite", outp / "report", anchor="jpeg", dataset=dataset,
                 title="cloud3d bundled models")
    pq = pd.read_csv(outp / "report" / "per_quality.csv")
    rows = []
    for (name, app), g in pq[pq["codec_label"].isin(names)].groupby(["codec_label", "app"]):
        rec: dict[str, Any] = {"model": name, "app": app, "points": len(g),
                               "bpp": g["mean_bpp"].mean(), "psnr": g["mean_psnr"].mean()}
        for a in anchors:
            bd = bd_table(pq[pq["app"] == app], a)
            hit = bd[bd["codec"] == name]
            rec[f"bd_rate_vs_{a}_pct"] = float(hit["bd_rate_pct"].iloc[0]) if len(hit) else math.nan
            anchor = pq[(pq["app"] == app) & (pq["codec_label"] == a)]
            saving, dpsnr = (_point_saving(anchor, rec["bpp"], rec["psnr"]) if len(g) == 1
                             else (None, None))
            rec[f"saving_vs_{a}_pct"] = math.nan if saving is None else saving
            rec[f"dpsnr_vs_{a}_db"] = math.nan if dpsnr is None else dpsnr
        rows.append(rec)
    table = pd.DataFrame(rows)
    table.to_csv(outp / "models.csv", index=False)
    if update_cards:
        _update_cards(entries, names, table, split)
    return table


def _update_cards(entries: dict, names: list[str], table: pd.DataFrame, split: str) -> None:
    from cloud3d.atomic import atomic_write_text
    from models.bundle import read_card

    for n in names:
        path = Path(entries[n].path)
        card = read_card(path)
        mine = table[table["model"] == n]
        card["test"] = {"split": split, "rows": json.loads(mine.to_json(orient="records"))}
        card["status"] = status_of(card, table)
        atomic_write_text(path, json.dumps(card, indent=1, sort_keys=True) + "\n")
