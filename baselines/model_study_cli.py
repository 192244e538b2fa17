"""``cloud3d models study``: the bundled models benched against JPEG, WebP and BPG.

The study runs the benchmark, so it lives in ``baselines/`` (:mod:`baselines.model_study`);
its command joins the ``cloud3d models`` group of :mod:`models.library_cli`.
"""

from __future__ import annotations

import click


@click.command("study")
@click.argument("dataset_dir", type=click.Path(file_okay=False))
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Study folder: results.sqlite, report/, models.csv.")
@click.option("--model", "names", multiple=True, help="Only this model (repeatable) "
              "[default: every bundled model].")
@click.option("--split", default="test", show_default=True)
@click.option("--limit", default=None, type=click.IntRange(min=1),
              help="Only the first N frames per app and resolution.")
@click.option("--workers", default=None, type=click.IntRange(min=1),
              help="Parallel bench workers (default: CPU count).")
@click.option("--update-cards", is_flag=True,
              help="Write the figures and the status they earn into each model's card.")
def study(dataset_dir, out, names, split, limit, workers, update_cards) -> None:
    """The models against JPEG, WebP and BPG 4:4:4 on DATASET_DIR's test split: one bench, one
    report, and OUT/models.csv (BD-rate, or a fixed-rate model's saving at equal PSNR).

    \b
    Examples:
      cloud3d models study dataset --out study
      cloud3d models study dataset --out study --model general --update-cards
    """
    from baselines.model_study import run_study

    table = run_study(dataset_dir, out, list(names) or None, split=split, limit=limit,
                      workers=workers, update_cards=update_cards)
    with __import__("pandas").option_context("display.width", 200, "display.max_columns", 20):
        click.echo(table.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    click.echo(f"tables and plots: {out}/models.csv, {out}/report/index.html")


def register(group: click.Group) -> None:
    """Add ``study`` to the ``cloud3d models`` group (``group``, the root, is not changed)."""
    from models.library_cli import models

    models.add_command(study)
