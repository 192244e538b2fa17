"""``cloud3d entropy``: entropy/complexity densities of a dataset vs natural photos."""

from __future__ import annotations

import sys

import click


@click.command("entropy")
@click.argument("dataset_dir", type=click.Path(file_okay=False, path_type=str))
@click.option(
    "--reference",
    "reference_dir",
    type=click.Path(file_okay=False, path_type=str),
    default=None,
    help="Folder of natural photos (the paper uses DIV2K_train_HR). "
    "Default: the camera photos bundled with scikit-image, labelled as a stand-in.",
)
@click.option(
    "--reference-name",
    default=None,
    help="Name of the reference in tables and plots (default: folder name).",
)
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=str),
    help="Output folder.",
)
@click.option(
    "--split",
    multiple=True,
    type=click.Choice(["train", "validation", "test"]),
    help="Only these splits (repeatable; default all).",
)
@click.option("--app", multiple=True, help="Only these apps (repeatable; default all).")
@click.option(
    "--resolution",
    multiple=True,
    help="Only these resolutions, e.g. 1080p (repeatable; default all).",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    help="Worker processes (default: one per CPU core).",
)
@click.option(
    "--luma",
    type=click.Choice(["bt601", "bt709"]),
    default="bt601",
    show_default=True,
    help="RGB-to-luma weights.",
)
@click.option("--no-plots", is_flag=True, help="Write the tables only.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
def entropy_cmd(
    dataset_dir,
    reference_dir,
    reference_name,
    out_dir,
    split,
    app,
    resolution,
    workers,
    luma,
    no_plots,
    quiet,
):
    """Per-image entropy and spatial information of DATASET_DIR vs a reference.

    Writes per_image.csv, summary.csv, figures/ (density overlay like the
    paper's Fig. 3, per-app panels, box plots; PNG + SVG) and run.json to
    --out. Results are cached by image hash in OUT/cache: re-running is fast
    and an interrupted run resumes.

    \b
    Example:
      cloud3d entropy data/cloud3d --reference DIV2K_train_HR --reference-name DIV2K --out entropy-out
    """
    from analysis.pipeline import EntropyOptions, run_entropy

    res = run_entropy(dataset_dir, reference_dir, out_dir,
                      EntropyOptions(reference_name=reference_name, split=list(split) or None,
                                     app=list(app) or None, resolution=list(resolution) or None,
                                     workers=workers, luma=luma, progress=not quiet,
                                     plots=not no_plots, command=["cloud3d", *sys.argv[1:]]))
    for path, msg in res.corrupt:
        click.echo(f"warning: skipped corrupt image {path}: {msg}", err=True)
    if res.skipped:
        click.echo(
            f"note: {len(res.skipped)} non-image file(s) in the reference folder skipped (listed in run.json)",
            err=True,
        )
    if res.reference_is_standin:
        click.echo(
            f"note: no --reference given; using {res.per_image['role'].eq('reference').sum()} scikit-image "
            "photos as a stand-in for DIV2K (few and small: rough reference)",
            err=True,
        )
    s = res.summary[res.summary["measure"] == "entropy_luma"]
    click.echo(f"luma entropy (bits), reference = {res.reference_name}:")
    for _, r in s.iterrows():
        extra = (
            ""
            if r["group"] == res.reference_name
            else f"  KS={r['ks_stat']:.3f} p={r['ks_pvalue']:.2g} below-ref-median={r['share_below_ref_median']:.0%}"
        )
        click.echo(f"  {r['group']:<40} n={r['n']:<5} median={r['median']:.3f}{extra}")
    click.echo(
        f"{len(res.per_image)} images ({res.computed} measured, {res.cached} from cache) -> {res.out_dir}"
    )


def register(group: click.Group) -> None:
    """Add ``entropy`` to the ``cloud3d`` command group."""
    group.add_command(entropy_cmd)
