"""Hostile or broken inputs: manifests, images and caches made by someone else.

Each test reproduces a hole found by probing the toolkit as an attacker would, and fails
on the code before its fix.
"""

from __future__ import annotations

import os
import stat

import numpy as np
import pandas as pd
import pytest
from helpers import make_dataset, make_game_like_frame

from baselines.bench.runner import BenchOptions, run_bench
from benchmarks.robust.pngs import forged_png, png_bytes
from cloud3d.errors import Cloud3dError, describe_os_error
from cloud3d.imageio import (
    MAX_PIXELS_ENV,
    check_png_bytes,
    read_image_rgb,
    write_png,
)
from cloud3d.safepaths import resolve_inside
from cloud3d_dataset.manifest import MANIFEST_NAME, index_dataset, load_manifest
from cloud3d_dataset.torch_dataset import Cloud3dImages
from cloud3d_dataset.verify import verify


def _rewrite_manifest(root, edit) -> None:
    df = pd.read_csv(root / MANIFEST_NAME, dtype=str)
    edit(df)
    df.to_csv(root / MANIFEST_NAME, index=False)


# -- 1. paths in a manifest ----------------------------------------------------------------------
@pytest.mark.parametrize("evil", ["/elsewhere/pwn.png", "../../pwn.png", "test/alpha-48p/../../../pwn.png"])
def test_manifest_paths_cannot_leave_the_dataset(tmp_path, evil, run_cli):
    ds = make_dataset(tmp_path / "ds", apps=("alpha",), n=2, h=48, w=64, res="48p")
    outside = tmp_path / "pwn.png"
    write_png(outside, make_game_like_frame(48, 64, 5))

    def edit(df):
        df.loc[0, "path"] = evil
    _rewrite_manifest(ds, edit)
    with pytest.raises(Cloud3dError, match="not the layout's"):
        load_manifest(ds)
    with pytest.raises(Cloud3dError, match="not the layout's"):
        Cloud3dImages(ds, "test", crop=None)
    keep = tmp_path / "keep"
    r = run_cli("bench", ds, "--codec", "jpeg:q=50", "--results", tmp_path / "r.sqlite", "--keep", keep)
    assert r.returncode == 1 and "not the layout's" in r.stderr and "Traceback" not in r.stderr
    r = run_cli("entropy", ds, "--out", tmp_path / "ent")
    assert r.returncode == 1 and "not the layout's" in r.stderr and "Traceback" not in r.stderr
    assert not list(tmp_path.glob("pwn.*.png")) and not keep.exists()
    report = verify(ds, workers=1, progress=False)
    assert [p.kind for p in report.problems if p.path == evil] == ["layout"]


def test_a_symlink_out_of_the_dataset_is_refused(tmp_path):
    ds = make_dataset(tmp_path / "ds", apps=("alpha",), n=2, h=48, w=64, res="48p")
    target = tmp_path / "secret.png"
    write_png(target, make_game_like_frame(48, 64, 9))
    link = ds / "test/alpha-48p/1.png"
    link.unlink()
    link.symlink_to(target)
    with pytest.raises(Cloud3dError, match="leads outside"):
        load_manifest(ds)
    with pytest.raises(Cloud3dError, match="leads outside"):
        resolve_inside(ds, "test/alpha-48p/1.png", "test")
    for bad in ("", "a//b", "./a", "a\\b", "a\x00b"):
        with pytest.raises(Cloud3dError, match="refusing"):
            resolve_inside(ds, bad, "test")


# -- 2. the entropy cache ---------------------------------------------------------------------------
def test_entropy_cache_cannot_be_poisoned_by_a_swapped_frame(tmp_path, run_cli):
    import json

    ds = make_dataset(tmp_path / "ds", apps=("alpha",), n=3, h=48, w=64, res="48p")
    ref = tmp_path / "ref"
    for i in range(2):
        write_png(ref / f"{i}.png", make_game_like_frame(40, 40, 50 + i))
    frame = ds / "test/alpha-48p/0.png"
    original = frame.read_bytes()
    st = frame.stat()
    args = ("entropy", ds, "--reference", ref, "--out", tmp_path / "ent", "--workers", "1")

    def per_image():
        df = pd.read_csv(tmp_path / "ent" / "per_image.csv")
        return df.set_index("path")

    assert run_cli(*args).returncode == 0
    clean = per_image().loc["test/alpha-48p/0.png", "entropy_luma"]
    # swap in other content (same size on disk is not needed), run, then restore bytes and mtime
    write_png(frame, np.full((48, 64, 3), 7, np.uint8))
    r = run_cli(*args)
    assert r.returncode == 0, r.stderr
    assert "test/alpha-48p/0.png" not in per_image().index  # changed frame: reported, not measured
    run = json.loads((tmp_path / "ent" / "run.json").read_text())
    assert any("does not match manifest.csv" in c["error"] for c in run["corrupt"])
    frame.write_bytes(original)
    os.utime(frame, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert run_cli(*args).returncode == 0
    assert per_image().loc["test/alpha-48p/0.png", "entropy_luma"] == clean


# -- 5. image sizes -----------------------------------------------------------------------------------
def test_verify_checks_sizes_against_the_resolution_group(tmp_path):
    root = tmp_path / "ds"
    write_png(root / "test/stk-720p/0.png", make_game_like_frame(720, 1280, 0))
    write_png(root / "test/stk-720p/1.png", np.zeros((1, 1, 3), np.uint8))
    (root / "test/stk-720p/2.png").write_bytes(forged_png(12000, 12000))
    index_dataset(root, progress=False)
    report = verify(root, workers=1, progress=False)
    kinds = {(p.path, p.kind) for p in report.problems}
    assert ("test/stk-720p/1.png", "dimensions") in kinds
    assert ("test/stk-720p/2.png", "dimensions") in kinds and ("test/stk-720p/2.png", "too-large") in kinds
    assert not any(p.path == "test/stk-720p/0.png" for p in report.problems)
    with pytest.raises(Cloud3dError, match="exceeds the 40.0 Mpx limit"):
        load_manifest(root)  # bench, entropy and training refuse before opening anything


def test_oversized_images_are_refused_from_the_header(tmp_path, monkeypatch, run_cli):
    big = tmp_path / "big.png"
    big.write_bytes(forged_png(12000, 12000))  # 144 Mpx claimed, a few bytes of data
    check_png_bytes(big.read_bytes())  # the chunk structure itself is valid
    with pytest.raises(Cloud3dError, match=r"12000x12000 image \(144.0 Mpx\) exceeds"):
        read_image_rgb(big)
    r = run_cli("compress", big, "-m", tmp_path / "none.pt", "-o", tmp_path / "x.c3d")
    assert r.returncode == 1 and "exceeds" in r.stderr.strip().splitlines()[-1] and "Traceback" not in r.stderr
    monkeypatch.setenv(MAX_PIXELS_ENV, "1000")
    write_png(tmp_path / "ok.png", make_game_like_frame(40, 40, 1))
    with pytest.raises(Cloud3dError, match="1600 .*exceeds|exceeds"):
        read_image_rgb(tmp_path / "ok.png")
    monkeypatch.setenv(MAX_PIXELS_ENV, "lots")
    with pytest.raises(Cloud3dError, match="must be a positive integer"):
        read_image_rgb(tmp_path / "ok.png")


# -- 6. 16-bit PNGs -------------------------------------------------------------------------------------
@pytest.mark.parametrize("color_type, channels", [(2, 3), (6, 4), (4, 2), (0, 1)])
def test_16bit_pngs_are_rounded_not_truncated_and_say_so(tmp_path, color_type, channels, run_cli):
    rng = np.random.default_rng(color_type)
    a = rng.integers(0, 65536, size=(64, 96, channels), dtype=np.uint16)
    a = a[:, :, 0] if channels == 1 else a
    data = png_bytes(a, 16, color_type)
    gray = a if a.ndim == 2 else a[:, :, 0]
    src = a[:, :, :3] if channels >= 3 else np.repeat(gray[:, :, None], 3, axis=2)
    expect = np.clip(np.rint(src / 257.0), 0, 255).astype(np.uint8)
    for source in (data, tmp_path / "x.png"):
        (tmp_path / "x.png").write_bytes(data)
        rgb, note = read_image_rgb(source)
        assert np.array_equal(rgb, expect)  # truncation (v >> 8) differs on ~25% of values
        assert note and "16-bit" in note
    assert (np.right_shift(src, 8).astype(np.uint8) != expect).mean() > 0.1


# -- 7. file modes ----------------------------------------------------------------------------------------
def test_outputs_honour_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        ds = make_dataset(tmp_path / "ds", apps=("alpha",), n=2, h=48, w=64, res="48p")
        run_bench(ds, ["jpeg:q=50"], tmp_path / "r.sqlite",
                  BenchOptions(progress=False, keep=tmp_path / "keep"))
        files = [ds / MANIFEST_NAME, ds / "test/alpha-48p/0.png", *(tmp_path / "keep").rglob("*.*")]
        assert len(files) > 3
        for f in files:
            assert stat.S_IMODE(f.stat().st_mode) == 0o644, f
        os.umask(0o077)
        write_png(tmp_path / "private.png", make_game_like_frame(8, 8, 0))
        assert stat.S_IMODE((tmp_path / "private.png").stat().st_mode) == 0o600
    finally:
        os.umask(old)


def test_permission_errors_say_read_or_write():
    import errno

    exc = PermissionError(errno.EACCES, "Permission denied", "/data/ds/manifest.csv")
    assert describe_os_error(exc, action="read").startswith("cannot read /data/ds/manifest.csv: permission denied")
    assert describe_os_error(exc, action="write").startswith("cannot write /data/ds/manifest.csv")
    assert "cannot write" not in describe_os_error(exc)  # unknown action: no guess


# -- 9. leftovers of an interrupted split ---------------------------------------------------------------------
def test_verify_sees_leftovers_of_interrupted_writes(tmp_path):
    ds = make_dataset(tmp_path / "ds", apps=("alpha",), n=2, h=48, w=64, res="48p")
    assert verify(ds, workers=1, progress=False).ok
    (ds / ".manifest.csv.abc123.tmp").write_bytes(b"x")
    (ds / "test/alpha-48p/.9.png.q1w2e3.tmp").write_bytes(b"x")
    (ds / ".cloud3d").mkdir()
    (ds / ".cloud3d/pending-alpha.json").write_text("{}")
    (ds / ".cloud3d/staging-alpha-0f0f").mkdir()
    found = {(p.path, p.kind) for p in verify(ds, workers=1, progress=False).problems}
    assert found == {(".manifest.csv.abc123.tmp", "leftover"), ("test/alpha-48p/.9.png.q1w2e3.tmp", "leftover"),
                     (".cloud3d/pending-alpha.json", "leftover"), (".cloud3d/staging-alpha-0f0f", "leftover")}


# -- 10. a manifest with a non-numeric width ---------------------------------------------------------------------
def test_non_numeric_manifest_fields_give_one_line(tmp_path, run_cli):
    ds = make_dataset(tmp_path / "ds", apps=("alpha",), n=2, h=48, w=64, res="48p")

    def edit(df):
        df.loc[1, "width"] = "12x80"
    _rewrite_manifest(ds, edit)
    for args in (("verify", ds), ("entropy", ds, "--out", tmp_path / "e"),
                 ("bench", ds, "--codec", "jpeg:q=50", "--results", tmp_path / "r.sqlite")):
        r = run_cli(*args)
        assert r.returncode == 1, args
        assert "manifest line 3: width '12x80' is not a non-negative integer" in r.stderr, r.stderr
        assert "Traceback" not in r.stderr


def test_empty_and_repeated_manifest_fields_are_findings_not_crashes(tmp_path):
    ds = make_dataset(tmp_path / "ds", apps=("alpha",), n=3, h=48, w=64, res="48p")

    def no_sha(df):
        df.loc[1, "sha256"] = ""  # pandas 3 read it back as a float NaN: verify raised TypeError
    _rewrite_manifest(ds, no_sha)
    report = verify(ds, workers=1, progress=False)
    assert [p.kind for p in report.problems] == ["sha256"], report.problems
    df = pd.read_csv(ds / MANIFEST_NAME, dtype=str)
    pd.concat([df, df.iloc[[2, 2]]]).to_csv(ds / MANIFEST_NAME, index=False)
    with pytest.raises(Cloud3dError, match="listed more than once"):
        load_manifest(ds)
    with pytest.raises(Cloud3dError, match="listed more than once"):
        Cloud3dImages(ds, "test", crop=None)
    dup = df.iloc[2]["path"]
    assert ("duplicate", dup) in {(p.kind, p.path) for p in verify(ds, workers=1, progress=False).problems}


def test_train_crop_error_speaks_of_the_option(tmp_path, run_cli):
    ds = make_dataset(tmp_path / "ds", apps=("alpha",), n=2, h=48, w=64, res="48p")
    r = run_cli("train", ds, "--app", "alpha", "--out", tmp_path / "run", "--crop", "320",
                "--steps", "1", "--arch", "c2f-xsmall-pruned")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("error: --crop 320 is larger than 1 image(s)") and "use --crop 48 or less" in last
    assert "crop=None" not in r.stderr
    with pytest.raises(Cloud3dError, match=r"crop 300 .* use crop 48 or less, or crop=None"):
        Cloud3dImages(ds, "train", crop=300)
