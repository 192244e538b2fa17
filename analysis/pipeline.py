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


def run_entropy(
    dataset_dir: str | os.PathLike,
    reference_dir: str | os.PathLike | None,
    out_dir: str | os.PathLike,
    reference_name: str | None = None,
    split: str | Iterable[str] | None = None,
    app: str | Iterable[str] | None = None,
    resolution: str | Iterable[str] | None = None,
    workers: int | None = None,
    luma: str = "bt601",
    progress: bool = True,
    plots: bool = True,
    command: list[str] | None = None,
) -> EntropyRun:
    """Measure every selected dataset image and every reference image; write all outputs.

    ``reference_dir=None`` uses the scikit-image stand-in photos (labelled
    :data:`analysis.reference.STANDIN_NAME`). ``split``/``app``/``resolution``
    select manifest rows (default: all). Re-running reuses the cache in
    ``out_dir/cache`` and only measures new content. Corrupt images are left
    out and listed in ``run.json`` and the returned :class:`EntropyRun`.
    Raises :class:`Cloud3dError` for a missing/empty dataset or reference.
    """
    t0 = time.perf_counter()
    if luma not in LUMA_WEIGHTS:
        raise Cloud3dError(f"unknown luma weights {luma!r}: use one of {', '.join(LUMA_WEIGHTS)}")
    out = Path(out_dir)
    split = list(split) if split is not None and not isinstance(split, str) else split
    rows = image_paths(
        dataset_dir, split=split or None, app=app or None, resolution=resolution or None
    )

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

    with MeasureCache(out / "cache") as cache:
        ref_shas = []
        for p in ref_images:
            try:
                ref_shas.append(cache.file_sha(p))
            except OSError as exc:
                raise Cloud3dError(
                    f"cannot read reference image {p}: {exc.strerror or exc}"
                ) from None
        # Dataset files are hashed too (cheaply, through the fingerprint table): a frame
        # changed since the manifest was written is reported, never measured as if it were
        # the manifest's content, and never cached under the manifest's hash.
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
        cache.commit()
        all_df, stats = measure_paths(
            ds_paths + [str(p) for p in ref_images],
            ds_shas + ref_shas,
            cache,
            luma=luma,
            workers=workers,
            progress=progress,
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
            f"none of the {len(ref_images)} reference images could be decoded (first: {corrupt[n_ds_bad][1]})"
        )

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
    ref = pd.DataFrame(
        {
            "path": [Path(p).relative_to(ref_root).as_posix() for p in ref_df["path"]],
            "group": name,
            "app": "",
            "resolution": "",
            "split": "",
        }
    )
    for c in ("sha256", "width", "height", *MEASURES, "note"):
        ref[c] = ref_df[c].to_numpy()
    ref["role"] = "reference"
    per_image = pd.concat([ds, ref], ignore_index=True).loc[:, list(PER_IMAGE_COLUMNS)]
    per_image["width"] = per_image["width"].astype("int64")
    per_image["height"] = per_image["height"].astype("int64")

    out.mkdir(parents=True, exist_ok=True)
    _csv(out / "per_image.csv", per_image)
    summary = compare(ds, ref, reference_name=name)
    _csv(out / "summary.csv", summary)

    figures: list[Path] = []
    if plots:
        from tqdm import tqdm

        from analysis.plots import plot_box, plot_density, plot_density_panels

        fig_dir = out / "figures"
        kinds = (("density", plot_density), ("density_panels", plot_density_panels), ("box", plot_box))
        # drawing (kernel densities, PNG + SVG) can take longer than measuring: its own bar
        with tqdm(total=len(MEASURES) * len(kinds), desc="figures", unit="fig",
                  disable=not progress) as bar:
            for m in MEASURES:
                for kind, plot in kinds:
                    bar.set_postfix_str(f"{kind}_{m}")
                    figures += plot(per_image, m, fig_dir / f"{kind}_{m}", name)
                    bar.update(1)

    skipped = [Path(p).relative_to(ref_root).as_posix() for p in ref_skipped]
    info = {
        "command": command if command is not None else sys.argv,
        "created_utc": utc_stamp(),
        "dataset_dir": str(Path(dataset_dir).resolve()),
        "selection": {"split": split, "app": app, "resolution": resolution},
        "reference_name": name,
        "reference_dir": str(ref_root.resolve()),
        "reference_is_standin": standin,
        "reference_note": (
            f"{len(STANDIN_FILES)} camera photos bundled with scikit-image stand in for DIV2K train HR "
            "(800 photos); they are few and small, so reference statistics are rough"
            if standin
            else None
        ),
        "measures": list(MEASURES),
        "measures_version": MEASURES_VERSION,
        "luma": luma,
        "backend": backend(),
        "luma_weights_fixed_point_q16": list(LUMA_WEIGHTS[luma]),
        "counts": {
            "dataset_images": int(len(ds)),
            "reference_images": int(len(ref)),
            "computed": stats.computed,
            "cached": stats.cached,
            "skipped_non_image": len(skipped),
            "corrupt": len(corrupt),
        },
        "skipped_non_image": skipped,
        "corrupt": [{"path": p, "error": m} for p, m in corrupt],
        "versions": _versions(standin),
        "elapsed_s": round(time.perf_counter() - t0, 3),
    }
    atomic_write_text(out / "run.json", json.dumps(info, indent=2) + "\n")
    return EntropyRun(
        out_dir=out,
        per_image=per_image,
        summary=summary,
        reference_name=name,
        reference_is_standin=standin,
        figures=figures,
        skipped=skipped,
        corrupt=corrupt,
        computed=stats.computed,
        cached=stats.cached,
    )
