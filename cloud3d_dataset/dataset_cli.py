"""Dataset commands: ``cloud3d split``, ``index``, ``verify``, ``stats``.

Thin wrappers over :mod:`cloud3d_dataset.split`, :mod:`~cloud3d_dataset.manifest`,
:mod:`~cloud3d_dataset.verify` and :mod:`~cloud3d_dataset.stats`.
"""

from __future__ import annotations

import json

import click

from cloud3d.wording import count

_MAX_LISTED = 30


def _echo_list(title: str, items: list[tuple[str, str]]) -> None:
    if not items:
        return
    click.echo(f"{title} ({len(items)}):", err=True)
    for path, why in items[:_MAX_LISTED]:
        click.echo(f"  {path}: {why}", err=True)
    if len(items) > _MAX_LISTED:
        click.echo(f"  ... and {len(items) - _MAX_LISTED} more", err=True)



def _files(n: int) -> str:
    """``1 file``, ``3 files``."""
    return count(n, "file")

@click.command("split")
@click.argument("raw_dir", type=click.Path(file_okay=False, path_type=str))
@click.option(
    "--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Dataset folder."
)
@click.option(
    "--app",
    default=None,
    help="App name (default: capture folder name; needed for plain PNG folders or a capture root with several apps).",
)
@click.option(
    "--train",
    default=800,
    show_default=True,
    type=click.IntRange(min=0),
    help="Training frames per resolution.",
)
@click.option(
    "--val",
    default=100,
    show_default=True,
    type=click.IntRange(min=0),
    help="Validation frames per resolution.",
)
@click.option(
    "--test",
    default=100,
    show_default=True,
    type=click.IntRange(min=0),
    help="Test frames per resolution.",
)
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the block shuffle.")
@click.option(
    "--block",
    default=None,
    help="Block length: '10s' (seconds) or '20' (frames). Default 10s with capture times, else 20 frames.",
)
@click.option(
    "--guard",
    default=None,
    help="Unused gap between splits, same unit as --block. Default: a tenth of the block.",
)
@click.option(
    "--resolutions",
    default=None,
    help="Output resolutions, e.g. '1080p,720p' (default: every capture folder). Missing ones are resized (Lanczos) from a larger capture.",
)
@click.option(
    "--group",
    type=click.Choice(["time", "scene"]),
    default="time",
    show_default=True,
    help="What goes whole into one split: time blocks (--block), or scenes (frames.csv's scene "
    "column, written by `cloud3d capture game`): no test track or map is then seen in training.",
)
@click.option(
    "--scale-counts",
    is_flag=True,
    help="With too few frames, keep the train:val:test ratio on fewer frames instead of failing.",
)
@click.option("--copy", is_flag=True, help="Copy files instead of hard-linking them.")
@click.option(
    "--recompress",
    is_flag=True,
    help="Re-encode PNGs at maximum lossless compression (pixels checked).",
)
@click.option(
    "--strict",
    is_flag=True,
    help="Refuse non-8-bit-RGB frames and mixed sizes instead of converting/skipping.",
)
@click.option("--force", is_flag=True, help="Replace this app's splits made with other arguments.")
@click.option(
    "--workers",
    default=None,
    type=click.IntRange(min=1),
    help="Parallel workers (default: CPU count).",
)
@click.option("--quiet", is_flag=True, help="No progress bars.")
def split_cmd(
    raw_dir,
    out_dir,
    app,
    train,
    val,
    test,
    seed,
    block,
    guard,
    resolutions,
    group,
    scale_counts,
    copy,
    recompress,
    strict,
    force,
    workers,
    quiet,
) -> None:
    """Package a capture (RAW_DIR) into train/validation/test splits under --out.

    \b
    RAW_DIR is a capture app folder (RAW/{app}/ with 1080p/720p/native folders
    and frames.csv), a capture root holding several apps (pick one with --app),
    or a plain folder of PNGs (name it with --app).

    \b
    Examples:
      cloud3d split captures/supertuxkart --out my-dataset --seed 1
      cloud3d split captures/supertuxkart --out by-track --group scene   # whole tracks per split
    """
    from cloud3d_dataset.split import build_splits

    r = build_splits(
        raw_dir,
        out_dir,
        app=app,
        train=train,
        val=val,
        test=test,
        seed=seed,
        block=block,
        guard=guard,
        resolutions=resolutions,
        group=group,
        scale_counts=scale_counts,
        copy=copy,
        recompress=recompress,
        strict=strict,
        force=force,
        workers=workers,
        progress=not quiet,
    )
    if r.noop:
        click.echo(
            f"{r.app}: already built in {r.dataset} with these arguments and inputs; nothing to do"
        )
        return
    _echo_list("skipped raw files", r.problems)
    for note in r.notes:
        click.echo(f"note: {note}", err=True)
    counts = ", ".join(f"{k} {v}" for k, v in r.counts.items())
    click.echo(
        f"{r.app}: {counts} frames x {len(r.resolutions)} resolution(s) ({', '.join(r.resolutions)}) "
        f"-> {_files(r.files)} in {r.dataset} (linked {r.linked}, copied {r.copied}, encoded {r.encoded}); "
        + (f"blocks {r.block}, guard {r.guard}" if r.block != "scene" else "whole scenes per split")
    )
    for split, names in r.scenes.items():
        click.echo(f"  {split} scenes: {', '.join(names) or '-'}")


@click.command("index")
@click.argument("dataset_dir", type=click.Path(file_okay=False))
@click.option("--workers", default=None, type=click.IntRange(min=1), help="Parallel readers.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option("--force", is_flag=True, help="Replace an existing manifest.csv.")
def index_cmd(dataset_dir, workers, quiet, force) -> None:
    """Write manifest.csv for an existing dataset in the {split}/{app}-{res}/{n}.png layout.

    \b
    Example:
      cloud3d index ~/data/cloud3d-original
    """
    from pathlib import Path

    from cloud3d.errors import Cloud3dError
    from cloud3d_dataset.manifest import MANIFEST_NAME, index_dataset

    if (Path(dataset_dir) / MANIFEST_NAME).is_file() and not force:
        raise Cloud3dError(
            f"{dataset_dir} already has {MANIFEST_NAME}: use `cloud3d verify {dataset_dir}` to check it, "
            "or `cloud3d index --force` to rebuild it from the files (capture times are lost)"
        )

    df = index_dataset(dataset_dir, workers=workers, progress=not quiet)
    click.echo(
        f"indexed {len(df)} images ({df['app'].nunique()} app(s)) -> {dataset_dir}/manifest.csv"
    )


@click.command("verify")
@click.argument("dataset_dir", type=click.Path(file_okay=False))
@click.option(
    "--workers",
    default=None,
    type=click.IntRange(min=1),
    help="Worker processes (default: CPU count).",
)
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.pass_context
def verify_cmd(ctx, dataset_dir, workers, quiet) -> None:
    """Check every manifest file (exists, size, sha256, decodes) and report extra files.

    Exit status 0 when everything matches, 1 otherwise.

    \b
    Example:
      cloud3d verify dataset && cloud3d stats dataset
    """
    from cloud3d_dataset.verify import verify

    rep = verify(dataset_dir, workers=workers, progress=not quiet)
    for p in rep.problems:
        click.echo(f"{p.kind:10s} {p.path}: {p.detail}")
    if rep.ok:
        click.echo(f"ok: {_files(rep.checked)} {'matches' if rep.checked == 1 else 'match'} the manifest, "
                   "no extra files")
        return
    kinds = ", ".join(f"{k} {v}" for k, v in sorted(rep.by_kind().items()))
    click.echo(
        f"FAILED: {len(rep.problems)} problem(s) in {rep.checked} manifest file(s) ({kinds})",
        err=True,
    )
    ctx.exit(1)


@click.command("stats")
@click.argument("dataset_dir", type=click.Path(file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print JSON records instead of a table.")
def stats_cmd(dataset_dir, as_json) -> None:
    """Images and disk size per split, app and resolution.

    \b
    Examples:
      cloud3d stats dataset
      cloud3d stats dataset --json
    """
    from cloud3d_dataset.stats import format_table, stats

    table = stats(dataset_dir)
    if as_json:
        click.echo(json.dumps(table.to_dict(orient="records"), indent=1))
    else:
        click.echo(format_table(table))


@click.command("crops")
@click.argument("dataset_dir", type=click.Path(file_okay=False))
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False),
              help="New crop dataset folder (must not exist, or be empty).")
@click.option("--size", default=256, show_default=True, type=click.IntRange(min=1),
              help="Window side (px).")
@click.option("--per-frame", default=1, show_default=True, type=click.IntRange(min=1),
              help="Windows cut from each frame.")
@click.option("--splits", default="train,validation", show_default=True,
              help="Comma-separated splits to cut.")
@click.option("--app", default=None, help="Only this app (default: all).")
@click.option("--resolution", default=None, help="Only this resolution, e.g. 720p (default: all).")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the window positions.")
@click.option("--workers", default=2, show_default=True, type=click.IntRange(min=1))
@click.option("--quiet", is_flag=True, help="No progress bar.")
def crops_cmd(dataset_dir, out, size, per_frame, splits, app, resolution, seed, workers, quiet) -> None:
    """Cut square windows from each frame into a small dataset of their own (training data to
    send to a GPU machine: a 256 px window is 7% of a 720p frame).

    Writes OUT/{split}/{app}-{size}p/{n}.png, manifest.csv and crops.csv (where each window
    comes from: source path, sha256, x, y).

    \b
    Example:
      cloud3d crops dataset --resolution 720p --size 256 -o crops256
    """
    from cloud3d.errors import Cloud3dError
    from cloud3d_dataset.crops import make_crops

    wanted = tuple(s.strip() for s in splits.split(",") if s.strip())
    bad = [s for s in wanted if s not in ("train", "validation", "test")]
    if not wanted or bad:
        raise Cloud3dError(f"--splits takes train, validation and/or test, got {splits!r}")
    log = make_crops(dataset_dir, out, size=size, per_frame=per_frame, splits=wanted, app=app,
                     resolution=resolution, seed=seed, workers=workers, progress=not quiet)
    counts = log.groupby(["split", "app"]).size()
    shown = ", ".join(f"{s}/{a} {n}" for (s, a), n in counts.items())
    click.echo(f"{len(log)} crops of {size}x{size} -> {out} ({shown})")


def register(group: click.Group) -> None:
    """Add the dataset commands to the ``cloud3d`` group."""
    for cmd in (split_cmd, index_cmd, verify_cmd, stats_cmd, crops_cmd):
        group.add_command(cmd)
