"""``stats``: what a dataset holds, per split, app and resolution (from its manifest).

Columns of the table: ``split``, ``app``, ``resolution``, ``images`` (files),
``bytes`` (sum of file sizes, as recorded in the manifest), ``mib``
(bytes / 2**20) and ``bpp`` (mean bits per pixel of the PNG files:
``8 * bytes / (width * height)``, averaged over images). A final ``total``
row sums all groups (its ``bpp`` is the mean over every image).
Hard-linked files share disk blocks with the raw capture; ``bytes`` counts
each file once regardless.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from cloud3d_dataset.layout import SPLITS
from cloud3d_dataset.manifest import load_manifest

STATS_COLUMNS = ("split", "app", "resolution", "images", "bytes", "mib", "bpp")


def stats(dataset_dir: str | os.PathLike, total: bool = True) -> pd.DataFrame:
    """Per (split, app, resolution) counts and sizes as a DataFrame (columns :data:`STATS_COLUMNS`)."""
    df = load_manifest(Path(dataset_dir))
    df = df.assign(_bpp=8.0 * df["bytes"] / (df["width"] * df["height"]))
    g = df.groupby(["split", "app", "resolution"], sort=False)
    out = g.agg(images=("path", "size"), bytes=("bytes", "sum"), bpp=("_bpp", "mean")).reset_index()
    order = {s: i for i, s in enumerate(SPLITS)}
    out = (
        out.assign(_k=out["split"].map(order))
        .sort_values(["_k", "app", "resolution"])
        .drop(columns="_k")
    )
    if total:
        tot = pd.DataFrame(
            [
                {
                    "split": "total",
                    "app": "",
                    "resolution": "",
                    "images": len(df),
                    "bytes": int(df["bytes"].sum()),
                    "bpp": float(df["_bpp"].mean()) if len(df) else 0.0,
                }
            ]
        )
        out = pd.concat([out, tot], ignore_index=True)
    out["mib"] = out["bytes"] / 2**20
    out["images"] = out["images"].astype("int64")
    out["bytes"] = out["bytes"].astype("int64")
    return out.loc[:, list(STATS_COLUMNS)].reset_index(drop=True)


def format_table(table: pd.DataFrame) -> str:
    """Plain-text, column-aligned rendering of a :func:`stats` table."""
    shown = table.assign(
        mib=table["mib"].map(lambda v: f"{v:.2f}"), bpp=table["bpp"].map(lambda v: f"{v:.3f}")
    )
    return shown.to_string(index=False)
