"""`run_entropy` / `cloud3d entropy` end to end on small real PNG datasets: tables, cache, figures, errors."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import make_game_like_frame
from PIL import Image
from scipy import ndimage

from analysis.folder import measure_folder
from analysis.measures import MEASURES, image_measures
from analysis.pipeline import PER_IMAGE_COLUMNS, EntropyOptions, run_entropy
from analysis.reference import STANDIN_FILES, STANDIN_NAME, skimage_data_dir
from cloud3d.errors import Cloud3dError
from cloud3d.imageio import write_png
from cloud3d_dataset.layout import image_relpath
from cloud3d_dataset.manifest import index_dataset, load_manifest

H, W = 48, 64


def photo_like(seed: int, h: int = H, w: int = W) -> np.ndarray:
    """Smooth random colour field spanning most of 0..255: high entropy like a natural photo."""
    rng = np.random.default_rng(seed)
    x = ndimage.gaussian_filter(rng.normal(size=(h, w, 3)), (1.5, 1.5, 0))
    x = (x - x.min()) / (x.max() - x.min() + 1e-9)
    return (x * 255).astype(np.uint8)


def build_dataset(root: Path, apps=(("alpha", 0), ("beta", 50)), n: int = 6) -> Path:
    """``train`` (first 4) / ``validation`` (5th) / ``test`` (rest) for each app at "720p"."""
    for app, seed in apps:
        for i in range(n):
            split = "train" if i < 4 else ("validation" if i == 4 else "test")
            write_png(
                root / image_relpath(split, app, "720p", i),
                make_game_like_frame(H, W, seed + i, i / n),
            )
    index_dataset(root, progress=False)
    return root


def build_reference(root: Path, n: int = 5) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        write_png(root / f"{i:04d}.png", photo_like(100 + i))
    return root


@pytest.fixture()
def dataset(tmp_path) -> Path:
    return build_dataset(tmp_path / "ds")


@pytest.fixture()
def reference(tmp_path) -> Path:
    ref = build_reference(tmp_path / "ref")
    (ref / "README.txt").write_text("not an image\n")
    (ref / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(64))
    sub = ref / "more"
    sub.mkdir()
    Image.fromarray(photo_like(7)[:, :, 0].astype(np.uint16) * 257).save(sub / "deep16.png")
    return ref


def test_tables_and_run_json(dataset, reference, tmp_path):
    out = tmp_path / "out"
    res = run_entropy(dataset, reference, out,
                      EntropyOptions(reference_name="DIV2K", workers=1, progress=False,
                                     plots=False))
    per = pd.read_csv(out / "per_image.csv", keep_default_na=False, na_values=[""])
    assert tuple(per.columns) == PER_IMAGE_COLUMNS
    man = load_manifest(dataset)
    ds = per[per["role"] == "dataset"]
    ref = per[per["role"] == "reference"]
    assert len(ds) == len(man) == 12
    assert sorted(ds["group"].unique()) == ["alpha-720p", "beta-720p"]
    assert set(ds["split"]) == {"train", "validation", "test"}
    assert dict(zip(ds["path"], ds["sha256"], strict=True)) == dict(
        zip(man["path"], man["sha256"], strict=True)
    )
    # 5 photos + the 16-bit one; README skipped, broken.png reported.
    assert sorted(ref["path"]) == [
        "0000.png",
        "0001.png",
        "0002.png",
        "0003.png",
        "0004.png",
        "more/deep16.png",
    ]
    assert set(ref["group"]) == {"DIV2K"}
    assert "16-bit" in ref.loc[ref["path"] == "more/deep16.png", "note"].iloc[0]
    # Every number is what image_measures gives for that file.
    row = ds.iloc[3]
    direct = image_measures(dataset / row["path"])
    for m in MEASURES:
        assert row[m] == pytest.approx(direct[m], rel=1e-12)
    assert (row["width"], row["height"]) == (W, H)

    summ = pd.read_csv(out / "summary.csv")
    assert len(summ) == 3 * len(MEASURES)
    assert list(summ["group"].unique()) == ["DIV2K", "alpha-720p", "beta-720p"]
    assert summ.loc[summ["group"] == "DIV2K", "n"].tolist() == [6] * 4
    assert summ.loc[summ["group"] == "DIV2K", "ks_stat"].isna().all()
    a = summ[(summ["group"] == "alpha-720p") & (summ["measure"] == "entropy_luma")].iloc[0]
    vals = ds.loc[ds["group"] == "alpha-720p", "entropy_luma"]
    assert a["n"] == 6 and a["median"] == pytest.approx(vals.median())
    assert a["share_below_ref_median"] == pytest.approx(
        (vals < ref["entropy_luma"].median()).mean()
    )

    info = json.loads((out / "run.json").read_text())
    assert info["reference_name"] == "DIV2K" and info["reference_is_standin"] is False
    assert info["counts"]["skipped_non_image"] == 1 and info["skipped_non_image"] == ["README.txt"]
    assert info["counts"]["corrupt"] == 1 and info["corrupt"][0]["path"].endswith("broken.png")
    assert info["counts"]["computed"] == 18 and info["counts"]["cached"] == 0
    assert {"numpy", "pillow", "scipy"} <= set(info["versions"])
    assert res.corrupt and res.skipped == ["README.txt"]


def test_cache_second_run_reads_no_image_and_resumes(dataset, reference, tmp_path, monkeypatch):
    import analysis.folder as folder

    out = tmp_path / "out"
    # A first run over the train split only, as if interrupted part-way.
    first = run_entropy(dataset, reference, out,
                        EntropyOptions(split=["train"], workers=1, progress=False, plots=False))
    assert first.computed == 8 + 6 and first.cached == 0
    full = run_entropy(dataset, reference, out,
                       EntropyOptions(workers=1, progress=False, plots=False))
    assert full.computed == 4 and full.cached == 8 + 6  # only the new images were measured
    before = (out / "per_image.csv").read_bytes()

    # Unchanged files (same size, mtime, ctime, inode) are neither decoded nor hashed again.
    hashed = []
    real_sha256_file = folder.sha256_file
    monkeypatch.setattr(folder, "sha256_file", lambda p: hashed.append(p) or real_sha256_file(p))
    again = run_entropy(dataset, reference, out,
                        EntropyOptions(workers=1, progress=False, plots=False))
    assert again.computed == 0 and again.cached == 18 and hashed == []
    assert (out / "per_image.csv").read_bytes() == before

    # Files overwritten with other bytes, even with size and mtime put back, are hashed again
    # (their ctime moved): a dataset frame no longer matches its manifest and is reported,
    # never answered from the cache; a reference file that no longer decodes is corrupt.
    victim = dataset / load_manifest(dataset)["path"].iloc[0]
    victim.write_bytes(b"garbage")
    ref0 = reference / "0000.png"
    st = ref0.stat()
    ref0.write_bytes(b"\0" * st.st_size)
    os.utime(ref0, ns=(st.st_atime_ns, st.st_mtime_ns))
    changed = run_entropy(dataset, reference, out,
                          EntropyOptions(workers=1, progress=False, plots=False))
    bad = dict(changed.corrupt)
    assert len(hashed) == 2 and set(bad) == {str(victim), str(ref0), str(reference / "broken.png")}
    assert "does not match manifest.csv" in bad[str(victim)]


def test_measure_folder_api(reference, tmp_path):
    df = measure_folder(reference, cache_dir=tmp_path / "c", workers=1, progress=False)
    assert len(df) == 6 and set(MEASURES) <= set(df.columns)
    assert df.attrs["skipped"] == ["README.txt"]
    assert [p for p, _ in df.attrs["corrupt"]] == ["broken.png"]
    again = measure_folder(reference, cache_dir=tmp_path / "c", workers=1, progress=False)
    assert again.attrs["computed"] == 0 and again.attrs["cached"] == 6
    pd.testing.assert_frame_equal(df.drop(columns=[]), again)


def test_errors_are_clear(dataset, tmp_path):
    empty_ref = tmp_path / "empty"
    empty_ref.mkdir()
    (empty_ref / "notes.txt").write_text("x")
    with pytest.raises(Cloud3dError, match="no images in reference folder.*1 other file"):
        run_entropy(dataset, empty_ref, tmp_path / "o1",
                    EntropyOptions(progress=False, plots=False))
    all_bad = tmp_path / "bad"
    all_bad.mkdir()
    (all_bad / "x.png").write_bytes(b"nope")
    with pytest.raises(Cloud3dError, match="none of the 1 reference images.*x.png"):
        run_entropy(dataset, all_bad, tmp_path / "o2",
                    EntropyOptions(workers=1, progress=False, plots=False))
    with pytest.raises(Cloud3dError, match="no images in"):
        run_entropy(dataset, all_bad, tmp_path / "o3",
                    EntropyOptions(app=["nosuchapp"], progress=False, plots=False))
    with pytest.raises(Cloud3dError, match="cloud3d index"):
        run_entropy(tmp_path, all_bad, tmp_path / "o4",
                    EntropyOptions(progress=False, plots=False))
    with pytest.raises(Cloud3dError, match="equals a dataset group"):
        run_entropy(dataset, all_bad, tmp_path / "o5",
                    EntropyOptions(reference_name="alpha-720p", progress=False, plots=False))


def test_standin_photos_are_in_the_installed_wheel():
    src = skimage_data_dir()
    missing = [name for name, _ in STANDIN_FILES if not (src / name).is_file()]
    assert not missing, f"scikit-image no longer ships {missing}"
    for name, _ in STANDIN_FILES:
        with Image.open(src / name) as im:
            assert min(im.size) >= 256


@pytest.mark.slow
def test_standin_run_writes_labelled_figures(dataset, tmp_path):
    out = tmp_path / "out"
    res = run_entropy(dataset, None, out, EntropyOptions(workers=1, progress=False))
    assert res.reference_is_standin and res.reference_name == STANDIN_NAME
    per = pd.read_csv(out / "per_image.csv")
    assert (per.loc[per["role"] == "reference", "group"] == STANDIN_NAME).all()
    assert (per["role"] == "reference").sum() == len(STANDIN_FILES)
    assert "stand-in" in pd.read_csv(out / "summary.csv")["group"].iloc[0]
    assert json.loads((out / "run.json").read_text())["reference_is_standin"] is True
    for m in MEASURES:
        for kind in ("density", "density_panels", "box"):
            png = out / "figures" / f"{kind}_{m}.png"
            svg = out / "figures" / f"{kind}_{m}.svg"
            with Image.open(png) as im:
                im.verify()
            with Image.open(png) as im:
                assert im.format == "PNG" and im.size[0] > 400 and im.size[1] > 300
                # not a blank canvas: plenty of distinct colours
                assert len(im.convert("RGB").getcolors(1 << 20)) > 20
            text = svg.read_text()
            assert text.lstrip().startswith("<?xml") and "</svg>" in text
            if kind != "box":
                assert "stand-in" in text  # the legend names the stand-in



def test_cli_runs_with_a_process_pool(run_cli, dataset, tmp_path):
    ref = build_reference(tmp_path / "ref", n=3)
    out = tmp_path / "out"
    r = run_cli(
        "entropy",
        str(dataset),
        "--reference",
        str(ref),
        "--reference-name",
        "DIV2K",
        "--out",
        str(out),
        "--workers",
        "2",
        "--no-plots",
        "--quiet",
        "--split",
        "test",
    )
    assert r.returncode == 0, r.stderr
    assert "DIV2K" in r.stdout and "alpha-720p" in r.stdout
    per = pd.read_csv(out / "per_image.csv")
    assert set(per.loc[per["role"] == "dataset", "split"]) == {"test"}
    assert len(per) == 1 + 1 + 3  # one test image per app, three photos
    assert json.loads((out / "run.json").read_text())["command"][:2] == ["cloud3d", "entropy"]


def test_cli_bad_input(run_cli, dataset, tmp_path):
    r = run_cli("entropy", str(tmp_path / "missing"), "--out", str(tmp_path / "o"))
    assert r.returncode == 1 and r.stderr.startswith("error: dataset folder not found")
    assert "Traceback" not in r.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    r = run_cli("entropy", str(dataset), "--reference", str(empty), "--out", str(tmp_path / "o"))
    assert r.returncode == 1 and "no images in reference folder" in r.stderr
    assert "Traceback" not in r.stderr
    r = run_cli("entropy", str(dataset), "--out", str(tmp_path / "o"), "--workers", "0")
    assert r.returncode == 2 and "--workers" in r.stderr
    r = run_cli("--help")
    assert r.returncode == 0 and "entropy" in r.stdout
