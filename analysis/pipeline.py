"""``run_entropy``: measure a dataset and a reference folder, compare, plot, write the outputs.

Outputs in ``out_dir`` (names fixed: the report reads them):

``per_image.csv``
    ``path, group, app, resolution, split, sha256, width, height,
    entropy_luma, entropy_rgb_mean, entropy_gradient, si, role, note``.
    Dataset rows: ``path`` relative to the dataset root (as in the manifest),
    ``group = {app}-{res}``. Reference rows: ``path`` relative to the
    reference folder, ``group`` = the reference name, empty app/resolution/
    split, ``role = reference``.
``summary.csv``
    see :mod:`analysis.comparison`.
``figures/density_<measure>.{png,svg}``, ``figures/density_panels_<measure>.{png,svg}``,
``figures/box_<measure>.{png,svg}``
    see :mod:`analysis.plots`; ``density_entropy_luma`` is the paper's Fig. 3.
``run.json``
    command, versions, reference name/folder and whether it is a stand-in,
    counts (images, computed, cached, skipped non-image files, corrupt files
    with their messages), measure definitions version, luma weights.
``cache/measures.sqlite``
    the per-image cache (see :mod:`analysis.folder`).
``reference-standin/``
    only without ``--reference``: the stand-in photos copied from scikit-image.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from analysis.comparison import compare
from analysis.folder import IMAGE_EXTENSIONS, MeasureCache, list_images, measure_paths
from analysis.measures import LUMA_WEIGHTS, MEASURES, MEASURES_VERSION, backend
from analysis.reference import STANDIN_FILES, STANDIN_NAME, prepare_standin
from cloud3d.atomic import atomic_write_text
from cloud3d.errors import Cloud3dError
from cloud3d.provenance import package_versions, utc_stamp
from cloud3d_dataset.manifest import image_paths

PER_IMAGE_COLUMNS: tuple[str, ...] = (
    "path",
    "group",
    "app",
    "resolution",
    "split",
    "sha256",
    "width",
    "height",
    *MEASURES,
    "role",
    "note",
)


@dataclass
class EntropyRun:
    """What :func:`run_entropy` produced."""

    out_dir: Path
    per_image: pd.DataFrame
    summary: pd.DataFrame
    reference_name: str
    reference_is_standin: bool
    figures: list[Path] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  #: non-image files in the reference folder
    corrupt: list[tuple[str, str]] = field(default_factory=list)  #: (path, message)
    computed: int = 0
    cached: int = 0


def _versions(standin: bool) -> dict[str, str]:
    out = package_versions("cloud3d", "numpy", "pillow", "scipy", "pandas", "matplotlib")
    if standin:
        out.update(package_versions("scikit-image"))
    if backend() == "numba":
        from analysis.fused import NUMBA_VERSION

        out["numba"] = NUMBA_VERSION
    return out


def _csv(path: Path, df: pd.DataFrame) -> None:
    atomic_write_text(path, df.to_csv(index=False, lineterminator="\n"))


@dataclass(frozen=True)
class EntropyOptions:
    """How :func:`run_entropy` selects, measures and reports.

    Attributes:
        reference_name: label of the reference in tables and plots (default: the folder's
            name, or :data:`analysis.reference.STANDIN_NAME` for the stand-in photos).
        split, app, resolution: select manifest rows (``None``: all).
        workers: measuring processes (``None``: one per core).
        luma: luma weights, a key of :data:`analysis.measures.LUMA_WEIGHTS`.
        progress: show tqdm bars on stderr.
        plots: draw the figures.
        command: the command line stored in ``run.json`` (default: ``sys.argv``).
    """

    reference_name: str | None = None
    split: str | Iterable[str] | None = None
    app: str | Iterable[str] | None = None
    resolution: str | Iterable[str] | None = None
    workers: int | None = None
    luma: str = "bt601"
    progress: bool = True
    plots: bool = True
    command: list[str] | None = None


@dataclass
class _Reference:
    """The reference folder, its label and what :func:`list_images` found there."""

    root: Path
    name: str
    standin: bool
    images: list[Path]
    skipped: list[Path]


def run_entropy(
    dataset_dir: str | os.PathLike,
    reference_dir: str | os.PathLike | None,
    out_dir: str | os.PathLike,
    options: EntropyOptions | None = None,
) -> EntropyRun:
    """Measure every selected dataset image and every reference image; write all outputs.

    ``reference_dir=None`` uses the scikit-image stand-in photos (labelled
    :data:`analysis.reference.STANDIN_NAME`). ``options`` selects manifest rows and says
    how to measure (:class:`EntropyOptions`; its defaults when ``None``). Re-running reuses
    the cache in ``out_dir/cache`` and only measures new content. Corrupt images are left
    out and listed in ``run.json`` and the returned :class:`EntropyRun`.
    Raises :class:`Cloud3dError` for a missing/empty dataset or reference.
    """
    t0 = time.perf_counter()
    opts = options if options is not None else EntropyOptions()
    if opts.luma not in LUMA_WEIGHTS:
        raise Cloud3dError(f"unknown luma weights {opts.luma!r}: use one of {', '.join(LUMA_WEIGHTS)}")
    out = Path(out_dir)
    split = opts.split
    split = list(split) if split is not None and not isinstance(split, str) else split
    rows = image_paths(
        dataset_dir, split=split or None, app=opts.app or None, resolution=opts.resolution or None
    )
    ref = _reference(reference_dir, opts.reference_name, out, rows)
    ds_df, ref_df, corrupt, stats = _measure(rows, ref, out, opts)
    per_image, ds, refs = _per_image_table(rows, ds_df, ref_df, ref)

    out.mkdir(parents=True, exist_ok=True)
    _csv(out / "per_image.csv", per_image)
    summary = compare(ds, refs, reference_name=ref.name)
    _csv(out / "summary.csv", summary)
    figures = _draw_figures(per_image, out / "figures", ref.name, opts.progress) if opts.plots else []

    skipped = [Path(p).relative_to(ref.root).as_posix() for p in ref.skipped]
    info = _run_info(dataset_dir, ref, opts, split, stats, skipped, corrupt)
    info["counts"].update(dataset_images=int(len(ds)), reference_images=int(len(refs)))
    info["elapsed_s"] = round(time.perf_counter() - t0, 3)
    atomic_write_text(out / "run.json", json.dumps(info, indent=2) + "\n")
    return EntropyRun(
        out_dir=out,
        per_image=per_image,
        summary=summary,
        reference_name=ref.name,
        reference_is_standin=ref.standin,
        figures=figures,
        skipped=skipped,
        corrupt=corrupt,
        computed=stats.computed,
        cached=stats.cached,
    )


def _reference(reference_dir: str | os.PathLike | None, reference_name: str | None, out: Path,
               rows: pd.DataFrame) -> _Reference:
    """Find the reference photos (the stand-in when no folder is given) and name them."""
    standin = reference_dir is None
    if standin:
        ref_root = prepare_standin(out / "reference-standin")
        name = reference_name or STANDIN_NAME
        if "stand-in" not in name:
            name = f"{name} (stand-in for DIV2K)"
    else:
        ref_root = Path(reference_dir)
        name = reference_name or ref_root.resolve().name
    groups = {f"{a}-{r}" for a, r in zip(rows["app"], rows["resolution"], strict=True)}
    if name in groups:
        raise Cloud3dError(
            f"reference name {name!r} equals a dataset group: choose another --reference-name"
        )

    ref_images, ref_skipped = list_images(ref_root)
    if not ref_images:
        raise Cloud3dError(
            f"no images in reference folder {ref_root} (looked for {', '.join(sorted(IMAGE_EXTENSIONS))}; "
            f"{len(ref_skipped)} other file(s) skipped): point --reference at a folder of photos "
            "such as DIV2K_train_HR"
        )
    return _Reference(ref_root, name, standin, ref_images, ref_skipped)


def _measure(rows: pd.DataFrame, ref: _Reference, out: Path, opts: EntropyOptions):
    """Hash and measure the dataset and reference images through the cache.

    Returns ``(dataset rows, reference rows, corrupt, stats)``: the measured rows of each side
    (``analysis.folder.measure_paths`` columns), ``(path, message)`` for every image left out
    (changed since the manifest, unreadable or undecodable), and the cache statistics.
    """
    with MeasureCache(out / "cache") as cache:
        ref_shas = []
        for p in ref.images:
            try:
                ref_shas.append(cache.file_sha(p))
            except OSError as exc:
                raise Cloud3dError(
                    f"cannot read reference image {p}: {exc.strerror or exc}"
                ) from None
        ds_paths, ds_shas, changed = _hash_dataset(rows, cache)
        cache.commit()
        all_df, stats = measure_paths(
            ds_paths + [str(p) for p in ref.images],
            ds_shas + ref_shas,
            cache,
            luma=opts.luma,
            workers=opts.workers,
            progress=opts.progress,
            desc="entropy",
        )
    is_ds = all_df["path"].isin(set(ds_paths))
    ds_df = all_df[is_ds].reset_index(drop=True)
    ref_df = all_df[~is_ds].reset_index(drop=True)
    corrupt = changed + stats.corrupt
    n_ds_bad = len(changed) + sum(1 for p, _ in stats.corrupt if p in set(ds_paths))
    if ds_df.empty:
        raise Cloud3dError(
            f"none of the {len(rows)} selected dataset images could be decoded (first: {corrupt[0][1]})"
        )
    if ref_df.empty:
        raise Cloud3dError(
            f"none of the {len(ref.images)} reference images could be decoded (first: {corrupt[n_ds_bad][1]})"
        )
    return ds_df, ref_df, corrupt, stats


def _hash_dataset(rows: pd.DataFrame, cache: MeasureCache):
    """``(paths, sha256s, changed)`` of the dataset images that still match the manifest.

    Dataset files are hashed too (cheaply, through the fingerprint table): a frame
    changed since the manifest was written is reported, never measured as if it were
    the manifest's content, and never cached under the manifest's hash.
    """
    ds_paths, ds_shas, changed = [], [], []
    for p, want in zip(rows["abspath"], rows["sha256"], strict=True):
        try:
            got = cache.file_sha(Path(p))
        except OSError as exc:
            changed.append((p, f"cannot read {p}: {exc.strerror or exc}"))
            continue
        if got != want:
            changed.append((p, f"{p} does not match manifest.csv (sha256 {got[:12]}..., manifest "
                               f"says {want[:12]}...): changed since the dataset was built; "
                               "run `cloud3d verify`"))
            continue
        ds_paths.append(p)
        ds_shas.append(got)
    return ds_paths, ds_shas, changed


def _per_image_table(rows: pd.DataFrame, ds_df: pd.DataFrame, ref_df: pd.DataFrame,
                     ref: _Reference) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """``(per_image, dataset rows, reference rows)``: the ``per_image.csv`` table (dataset
    rows first, :data:`PER_IMAGE_COLUMNS`) and its two halves as :func:`compare` reads them."""
    meta = rows.set_index("abspath")
    ds = pd.DataFrame(
        {
            "path": meta.loc[ds_df["path"], "path"].to_numpy(),
            "group": [
                f"{a}-{r}"
                for a, r in zip(
                    meta.loc[ds_df["path"], "app"],
                    meta.loc[ds_df["path"], "resolution"],
                    strict=True,
                )
            ],
            "app": meta.loc[ds_df["path"], "app"].to_numpy(),
            "resolution": meta.loc[ds_df["path"], "resolution"].to_numpy(),
            "split": meta.loc[ds_df["path"], "split"].to_numpy(),
        }
    )
    for c in ("sha256", "width", "height", *MEASURES, "note"):
        ds[c] = ds_df[c].to_numpy()
    ds["role"] = "dataset"
    refs = pd.DataFrame(
        {
            "path": [Path(p).relative_to(ref.root).as_posix() for p in ref_df["path"]],
            "group": ref.name,
            "app": "",
            "resolution": "",
            "split": "",
        }
    )
    for c in ("sha256", "width", "height", *MEASURES, "note"):
        refs[c] = ref_df[c].to_numpy()
    refs["role"] = "reference"
    per_image = pd.concat([ds, refs], ignore_index=True).loc[:, list(PER_IMAGE_COLUMNS)]
    per_image["width"] = per_image["width"].astype("int64")
    per_image["height"] = per_image["height"].astype("int64")
    return per_image, ds, refs


def _draw_figures(per_image: pd.DataFrame, fig_dir: Path, name: str, progress: bool) -> list[Path]:
    """Density, density-panel and box plots of every measure; returns the files written."""
    from tqdm import tqdm

    from analysis.plots import plot_box, plot_density, plot_density_panels

    figures: list[Path] = []
    kinds = (("density", plot_density), ("density_panels", plot_density_panels), ("box", plot_box))
    # drawing (kernel densities, PNG + SVG) can take longer than measuring: its own bar
    with tqdm(total=len(MEASURES) * len(kinds), desc="figures", unit="fig",
              disable=not progress) as bar:
        for m in MEASURES:
            for kind, plot in kinds:
                bar.set_postfix_str(f"{kind}_{m}")
                figures += plot(per_image, m, fig_dir / f"{kind}_{m}", name)
                bar.update(1)
    return figures


def _run_info(dataset_dir, ref: _Reference, opts: EntropyOptions, split, stats, skipped: list[str],
              corrupt: list[tuple[str, str]]) -> dict:
    """The ``run.json`` record; the caller fills in the image counts and the elapsed time."""
    return {
        "command": opts.command if opts.command is not None else sys.argv,
        "created_utc": utc_stamp(),
        "dataset_dir": str(Path(dataset_dir).resolve()),
        "selection": {"split": split, "app": opts.app, "resolution": opts.resolution},
        "reference_name": ref.name,
        "reference_dir": str(ref.root.resolve()),
        "reference_is_standin": ref.standin,
        "reference_note": (
            f"{len(STANDIN_FILES)} camera photos bundled with scikit-image stand in for DIV2K train HR "
            "(800 photos); they are few and small, so reference statistics are rough"
            if ref.standin
            else None
        ),
        "measures": list(MEASURES),
        "measures_version": MEASURES_VERSION,
        "luma": opts.luma,
        "backend": backend(),
        "luma_weights_fixed_point_q16": list(LUMA_WEIGHTS[opts.luma]),
        "counts": {
            "dataset_images": 0,
            "reference_images": 0,
            "computed": stats.computed,
            "cached": stats.cached,
            "skipped_non_image": len(skipped),
            "corrupt": len(corrupt),
        },
        "skipped_non_image": skipped,
        "corrupt": [{"path": p, "error": m} for p, m in corrupt],
        "versions": _versions(ref.standin),
    }
