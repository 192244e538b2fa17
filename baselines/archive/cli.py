"""``cloud3d archive``, ``cloud3d unarchive``, ``cloud3d bench-folder`` (docs/archive.md) and
``cloud3d pack`` (an archive of a dataset's windows for a GPU machine, docs/models.md).

Thin layer over :mod:`baselines.archive.pack`, :mod:`baselines.archive.unpack`,
:mod:`baselines.archive.folder_bench` and :mod:`baselines.archive.window_pack`; heavy imports
happen inside the commands.
"""

from __future__ import annotations

import click

from cloud3d.errors import Cloud3dError

SELECT_HELP = "only this {} (repeatable; datasets with manifest.csv only)"


def _selection(f):
    for name, what in (("--resolution", "resolution, e.g. 720p"), ("--app", "app"),
                       ("--split", "split (train, validation, test)")):
        f = click.option(name, f"{name[2:]}s", multiple=True, help=SELECT_HELP.format(what))(f)
    return f


def _workers(f):
    return click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
                        help="worker processes coding files in parallel")(f)


@click.command("archive")
@click.argument("dataset_dir", type=click.Path(file_okay=False))
@click.option("-o", "--out", required=True, type=click.Path(dir_okay=False),
              help="archive file to write (a plain tar, e.g. test.tar)")
@click.option("--codec", "spec", default="webp-lossless", show_default=True,
              help="'raw', a lossless codec (webp-lossless, jpegxl-lossless, png-opt, png) or any "
                   "codec of `cloud3d codecs` with one quality, e.g. 'jpeg:q=90'")
@_selection
@_workers
@click.option("--no-verify", is_flag=True, help="do not decode each bitstream again before accepting it")
@click.option("--force", is_flag=True, help="replace OUT if it exists")
@click.option("--quiet", is_flag=True, help="no progress bar")
def archive_cmd(dataset_dir, out, spec, splits, apps, resolutions, workers, no_verify, force, quiet):
    """Code every PNG of a dataset (or of any folder) into one tar archive with a manifest.

    \b
    Examples:
      cloud3d archive data/ --split test -o test.tar --codec webp-lossless
      cloud3d archive data/ --split test --app supertuxkart -o stk.tar --codec 'jpegxl-lossless:effort=9'
      cloud3d archive photos/ -o photos.tar --codec 'jpeg:q=90'
    Lossless codecs are checked to restore every pixel before a file is accepted. An
    interrupted run resumes where it stopped when the same command is run again.
    """
    from baselines.archive.pack import archive_folder

    s = archive_folder(dataset_dir, out, spec, split=list(splits) or None, app=list(apps) or None,
                       resolution=list(resolutions) or None, workers=workers,
                       verify=not no_verify, force=force, progress=not quiet)
    click.echo(f"archive: {s.line()} -> {s.out}")


@click.command("unarchive")
@click.argument("archive", type=click.Path(dir_okay=False))
@click.option("-o", "--out", required=True, type=click.Path(file_okay=False),
              help="folder to restore into (created; re-running resumes)")
@click.option("--checkpoint", type=click.Path(dir_okay=False),
              help="learned codecs: the checkpoint, when it is no longer where the archive says")
@click.option("--png-level", type=click.IntRange(0, 9), default=1, show_default=True,
              help="zlib level of PNGs written from decoded pixels")
@_workers
@click.option("--force", is_flag=True, help="restore into a non-empty folder that is not an earlier restore")
@click.option("--quiet", is_flag=True, help="no progress bar")
def unarchive_cmd(archive, out, checkpoint, png_level, workers, force, quiet):
    """Restore an archive made by `cloud3d archive` into a folder of PNG files.

    \b
    Example:
      cloud3d unarchive test.tar -o restored/
    Lossless archives are checked pixel by pixel against the manifest; a dataset archive also
    gets a manifest.csv, so `cloud3d verify restored/` works. Re-running skips files already
    restored and verified.
    """
    from baselines.archive.unpack import unarchive

    s = unarchive(archive, out, workers=workers, force=force, checkpoint=checkpoint,
                  png_level=png_level, progress=not quiet)
    for note in s.notes:
        click.echo(f"note: {note}", err=True)
    click.echo(f"unarchive: {s.line()} -> {s.out}")


@click.command("bench-folder")
@click.argument("folder", type=click.Path(file_okay=False))
@_selection
@click.option("--method", "methods", multiple=True,
              help="run only these rows (repeatable): tar, 7z, zstd-3, zstd-19, a codec spec, "
                   "learned-lzma, learned-ans [default: all available]")
@click.option("--codec", "codecs", multiple=True, help="add a row for this archive codec spec (repeatable)")
@click.option("--checkpoint", type=click.Path(dir_okay=False),
              help="learned checkpoint: adds the LZMA-on-latents and rANS rows")
@click.option("--out", "csv_path", default="bench-folder.csv", show_default=True,
              type=click.Path(dir_okay=False), help="CSV of results (rows already there are kept and skipped)")
@click.option("--work", type=click.Path(file_okay=False),
              help="scratch folder for archives and restored copies [default: next to --out]")
@click.option("--repeat", type=click.IntRange(min=1), default=1, show_default=True,
              help="timed runs per row (the median is reported)")
@_workers
@click.option("--force", is_flag=True, help="run rows again even if the CSV has them")
@click.option("--quiet", is_flag=True, help="no progress bars")
def bench_folder_cmd(folder, splits, apps, resolutions, methods, codecs, checkpoint, csv_path, work,
                     repeat, workers, force, quiet):
    """Compare tar, 7-Zip, zstd and archives made with image codecs on one folder (seed 002's
    Tables 3-4): compressed size, compression rate, compress+decompress time and quality.

    \b
    Example:
      cloud3d bench-folder data/ --split test --app supertuxkart --resolution 720p \\
          --checkpoint runs/stk/best.pt --out folder.csv
    """
    from baselines.archive.folder_bench import format_table, run_folder_bench

    df = run_folder_bench(folder, split=list(splits) or None, app=list(apps) or None,
                          resolution=list(resolutions) or None, methods=list(methods) or None,
                          extra_codecs=list(codecs), checkpoint=checkpoint, csv_path=csv_path,
                          work=work, repeat=repeat, workers=workers, force=force,
                          progress=not quiet, echo=click.echo)
    click.echo(format_table(df))
    _draw(df, csv_path)
    failed = df[df["error"].notna()]
    click.echo(f"bench-folder: {len(df)} rows" + (f" ({len(failed)} failed)" if len(failed) else "")
               + f" -> {csv_path}")
    if len(failed):
        raise Cloud3dError(f"bench-folder: {', '.join(failed['method'])} failed: {failed['error'].iloc[0]} "
                           "(the other rows are in the CSV; re-run to retry the failed ones)")


def _draw(df, csv_path: str) -> None:
    """The size-vs-time figure beside the CSV (``folder.csv`` -> ``folder.png`` + ``.svg``)."""
    from pathlib import Path

    from baselines.bench_figures import folder_figure

    if df["error"].isna().any():
        png = folder_figure(df, Path(csv_path).with_suffix(""))[0]
        click.echo(f"figure: {png}")


@click.command("pack")
@click.argument("dataset_dir", type=click.Path(file_okay=False))
@click.option("-o", "--out", required=True, type=click.Path(dir_okay=False),
              help="Pack file to write (a cloud3d archive, e.g. pack.tar).")
@click.option("--budget-mb", default=60.0, show_default=True,
              type=click.FloatRange(min=0, min_open=True),
              help="Most megabytes the pack may take.")
@click.option("--seed", default=0, show_default=True, type=int,
              help="Seed of the window positions (another per lap: other pixels).")
@click.option("--quiet", is_flag=True, help="No progress bars.")
def pack(dataset_dir, out, budget_mb, seed, quiet) -> None:
    """Pack DATASET_DIR's train and validation frames into --budget-mb for a GPU machine.

    One window of every frame, as large as fits, as JPEG q95 4:4:4; restore it there with
    `cloud3d unarchive PACK -o data` and train with `cloud3d lap data --device cuda`.

    \b
    Example:
      cloud3d pack dataset -o pack.tar --budget-mb 60 --seed 3
    """
    from baselines.archive.window_pack import pack_dataset

    res = pack_dataset(dataset_dir, out, budget_mb, seed=seed, progress=not quiet)
    click.echo(f"pack: {res['frames']} frames, {res['window']} px windows, "
               f"{res['bytes'] / 1e6:.1f} MB (JPEG q95 4:4:4 at about {res['estimated_bpp']:.2f} "
               f"bpp): {res['summary']} -> {out}")


def register(group: click.Group) -> None:
    """Add the archive commands to the ``cloud3d`` group."""
    group.add_command(archive_cmd)
    group.add_command(unarchive_cmd)
    group.add_command(bench_folder_cmd)
    group.add_command(pack)
