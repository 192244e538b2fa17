"""Entropy / SI measures on constructed images with known answers, and the comparison statistics."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage, stats

from analysis.comparison import SUMMARY_COLUMNS, compare, describe, distance_to_reference
from analysis.measures import (
    MEASURES,
    entropy_bits,
    gradient_histogram,
    image_measures,
    luma8,
    spatial_information,
)
from cloud3d.errors import Cloud3dError
from cloud3d.imageio import write_png


def gray(a: np.ndarray) -> np.ndarray:
    """(H, W) uint8 -> (H, W, 3) with R = G = B."""
    return np.repeat(a.astype(np.uint8)[:, :, None], 3, axis=2)


def checkerboard(n: int, cell: int) -> np.ndarray:
    yy, xx = np.mgrid[0:n, 0:n]
    return (((yy // cell + xx // cell) % 2) * 255).astype(np.uint8)


def test_constant_image_has_zero_bits_and_zero_si():
    m = image_measures(np.full((40, 50, 3), 117, np.uint8))
    assert m["entropy_luma"] == 0.0
    assert m["entropy_rgb_mean"] == 0.0
    assert m["entropy_gradient"] == 0.0
    assert m["si"] == 0.0
    assert (m["width"], m["height"], m["note"]) == (50, 40, None)


@pytest.mark.parametrize("k", [1, 2, 3, 5, 8])
def test_2_pow_k_equally_frequent_levels_give_k_bits(k):
    levels = np.linspace(0, 255, 2**k).round().astype(np.uint8)
    rng = np.random.default_rng(k)
    a = rng.permutation(np.repeat(levels, 64 * 256 // 2**k)).reshape(64, 256)
    m = image_measures(gray(a))
    assert m["entropy_luma"] == pytest.approx(k, abs=1e-12)
    assert m["entropy_rgb_mean"] == pytest.approx(k, abs=1e-12)


def test_rgb_mean_is_mean_of_channel_entropies():
    rng = np.random.default_rng(0)
    n = 128 * 96
    rgb = np.stack(
        [
            rng.permutation(np.repeat(np.array([0, 255], np.uint8), n // 2)),  # 1 bit
            rng.permutation(np.repeat(np.array([10, 20, 30, 40], np.uint8), n // 4)),  # 2 bits
            rng.permutation(np.repeat(np.arange(8, dtype=np.uint8) * 30, n // 8)),  # 3 bits
        ],
        axis=1,
    ).reshape(96, 128, 3)
    assert image_measures(rgb)["entropy_rgb_mean"] == pytest.approx(2.0, abs=1e-12)


def test_one_pixel_checkerboard_gradient_entropy_is_one_bit():
    m = image_measures(gray(checkerboard(64, 1)))
    assert m["entropy_gradient"] == pytest.approx(1.0, abs=1e-12)  # +255 and -255 equally often
    assert m["entropy_luma"] == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("cell", [2, 4, 8])
def test_block_checkerboard_gradient_entropy_matches_counting(cell):
    n = 64
    # Per row of n pixels: n-1 differences, of which n/cell - 1 are edges (+-255, alternating
    # in sign, balanced over the image) and the rest are 0. Vertical: the same by symmetry.
    edges = n // cell - 1
    p0 = (n - 1 - edges) / (n - 1)
    pe = edges / (2 * (n - 1))
    expected = -(p0 * math.log2(p0) + 2 * pe * math.log2(pe))
    m = image_measures(gray(checkerboard(n, cell)))
    assert m["entropy_gradient"] == pytest.approx(expected, abs=1e-12)


def test_gradient_histogram_matches_direct_count():
    y = np.random.default_rng(1).integers(0, 256, size=(37, 53), dtype=np.uint8)
    yi = y.astype(np.int64)
    diffs = np.concatenate([np.diff(yi, axis=1).ravel(), np.diff(yi, axis=0).ravel()])
    expected = np.bincount(diffs + 255, minlength=511)
    got = gradient_histogram(y)
    assert got.shape == (511,)
    np.testing.assert_array_equal(got, expected)
    assert got.sum() == 37 * 52 + 36 * 53


def test_si_matches_scipy_sobel_definition():
    rng = np.random.default_rng(2)
    y = ndimage.gaussian_filter(rng.integers(0, 256, size=(300, 211)).astype(float), 2)
    y = np.clip(y * 3 - 200, 0, 255).astype(np.uint8)
    f = y.astype(np.float64)
    mag = np.hypot(ndimage.sobel(f, axis=1), ndimage.sobel(f, axis=0))[1:-1, 1:-1]
    assert spatial_information(y) == pytest.approx(float(mag.std()), rel=1e-6)


def test_si_of_a_ramp_is_zero_and_tiny_images_are_nan():
    ramp = np.tile(np.arange(0, 200, 2, dtype=np.uint8), (30, 1))  # constant Sobel magnitude
    assert spatial_information(ramp) == pytest.approx(0.0, abs=1e-9)
    assert math.isnan(spatial_information(np.zeros((2, 9), np.uint8)))


def test_bt601_luma_is_the_documented_fixed_point_formula():
    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 256, size=(512, 512, 3), dtype=np.uint8)
    r, g, b = (rgb[:, :, i].astype(np.int64) for i in range(3))
    expected = (19595 * r + 38470 * g + 7471 * b + 32768) >> 16
    np.testing.assert_array_equal(luma8(rgb), expected)
    exact = np.floor(0.299 * r + 0.587 * g + 0.114 * b + 0.5)
    assert np.abs(luma8(rgb) - exact).max() <= 1
    bt709 = (13933 * r + 46871 * g + 4732 * b + 32768) >> 16
    np.testing.assert_array_equal(luma8(rgb, "bt709"), bt709)
    # Gray stays gray under both weightings.
    g8 = np.arange(256, dtype=np.uint8).reshape(16, 16)
    np.testing.assert_array_equal(luma8(gray(g8)), g8)
    np.testing.assert_array_equal(luma8(gray(g8), "bt709"), g8)


def test_path_and_array_give_the_same_measures(tmp_path):
    rgb = np.random.default_rng(4).integers(0, 256, size=(33, 47, 3), dtype=np.uint8)
    write_png(tmp_path / "a.png", rgb)
    assert image_measures(tmp_path / "a.png") == image_measures(rgb)


def test_16bit_png_is_reduced_by_round_v_over_257(tmp_path):
    a8 = np.random.default_rng(5).integers(0, 256, size=(40, 60), dtype=np.uint8)
    offset = np.where(a8 < 255, 100, -100)  # +-100/257 = +-0.39 rounds back to a8
    a16 = (a8.astype(np.int64) * 257 + offset).astype(np.uint16)
    Image.fromarray(a16).save(tmp_path / "g16.png")
    m = image_measures(tmp_path / "g16.png")
    ref = image_measures(gray(a8))
    assert m["note"] and "16-bit" in m["note"]
    for k in MEASURES:
        assert m[k] == ref[k]


def test_bad_inputs(tmp_path):
    with pytest.raises(ValueError, match="uint8"):
        image_measures(np.zeros((4, 4, 3), np.float32))
    with pytest.raises(ValueError, match="RGB"):
        image_measures(np.zeros((4, 4), np.uint8))
    with pytest.raises(ValueError, match="luma"):
        image_measures(np.zeros((4, 4, 3), np.uint8), luma="bt2020")
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    with pytest.raises(Cloud3dError, match="bad.png"):
        image_measures(bad)


def test_entropy_bits_basics():
    assert entropy_bits([5, 5]) == 1.0
    assert entropy_bits([0, 7, 0]) == 0.0
    assert math.isnan(entropy_bits([0, 0]))
    assert entropy_bits([1, 1, 2]) == pytest.approx(1.5)


# --- comparison statistics -------------------------------------------------------------


def test_describe_matches_numpy():
    v = np.random.default_rng(6).normal(3, 2, 101)
    d = describe(np.append(v, np.nan))  # NaN ignored
    assert d["n"] == 101
    assert d["mean"] == pytest.approx(v.mean())
    assert d["std"] == pytest.approx(v.std(ddof=1))
    assert d["median"] == pytest.approx(np.median(v))
    assert [d["p5"], d["p25"], d["p75"], d["p95"]] == pytest.approx(
        list(np.percentile(v, [5, 25, 75, 95]))
    )


def test_ks_detects_a_known_shift_and_not_a_null_difference():
    rng = np.random.default_rng(7)
    ref = rng.normal(0.0, 1.0, 400)
    shifted = rng.normal(1.0, 1.0, 400)
    same = rng.normal(0.0, 1.0, 400)
    d_shift = distance_to_reference(shifted, ref)
    d_same = distance_to_reference(same, ref)
    # Population KS distance between N(1,1) and N(0,1) is 2*Phi(0.5)-1 = 0.383.
    assert abs(d_shift["ks_stat"] - (2 * stats.norm.cdf(0.5) - 1)) < 0.08
    assert d_shift["ks_pvalue"] < 1e-10
    assert d_same["ks_stat"] < 0.12 and d_same["ks_pvalue"] > 0.01
    assert d_shift["wasserstein"] == pytest.approx(1.0, abs=0.15)
    # An exact copy shifted by 1.5 has Wasserstein distance exactly 1.5 and lies all above.
    d_exact = distance_to_reference(ref + 1.5, ref)
    assert d_exact["wasserstein"] == pytest.approx(1.5, abs=1e-9)
    assert distance_to_reference(ref - 10, ref)["share_below_ref_median"] == 1.0
    assert distance_to_reference(ref + 10, ref)["share_below_ref_median"] == 0.0
    assert distance_to_reference(ref, ref)["share_below_ref_median"] == pytest.approx(0.5)


def test_compare_table_layout():
    rng = np.random.default_rng(8)
    import pandas as pd

    ref = pd.DataFrame({m: rng.normal(7, 0.5, 30) for m in MEASURES})
    ref["group"] = "DIV2K"
    df = pd.concat(
        [
            pd.DataFrame({**{m: rng.normal(6, 0.5, 20) for m in MEASURES}, "group": "b-720p"}),
            pd.DataFrame({**{m: rng.normal(7, 0.5, 25) for m in MEASURES}, "group": "a-1080p"}),
        ]
    )
    s = compare(df, ref)
    assert tuple(s.columns) == SUMMARY_COLUMNS
    assert list(s["group"]) == ["DIV2K"] * 4 + ["a-1080p"] * 4 + ["b-720p"] * 4
    assert list(s["n"]) == [30] * 4 + [25] * 4 + [20] * 4
    refrows = s[s["group"] == "DIV2K"]
    assert (
        refrows[["ks_stat", "ks_pvalue", "wasserstein", "share_below_ref_median"]]
        .isna()
        .all()
        .all()
    )
    b = s[(s["group"] == "b-720p") & (s["measure"] == "entropy_luma")].iloc[0]
    assert b["ks_pvalue"] < 1e-4 and b["share_below_ref_median"] > 0.8


def test_numba_kernel_matches_numpy_path(monkeypatch):
    pytest.importorskip(
        "numba", reason="numba not installed: the numpy/Pillow path is the one in use"
    )
    import analysis.measures as am

    rng = np.random.default_rng(9)
    smooth = ndimage.gaussian_filter(rng.normal(size=(90, 130, 3)), (3, 3, 0))
    images = [
        rng.integers(0, 256, size=(61, 83, 3), dtype=np.uint8),
        np.clip(smooth * 400 + 128, 0, 255).astype(np.uint8),
        gray(checkerboard(32, 3)),
        np.zeros((2, 7, 3), np.uint8),
        np.full((1, 1, 3), 9, np.uint8),
        # widths around the kernel's 4-column unrolling, one-row and one-column images
        *(
            rng.integers(0, 256, size=(hh, ww, 3), dtype=np.uint8)
            for hh, ww in [(5, 4), (6, 5), (4, 6), (3, 9), (1, 6), (7, 1), (9, 2)]
        ),
        # a strided view: measured through a C-contiguous copy, same numbers
        rng.integers(0, 256, size=(40, 90, 3), dtype=np.uint8)[:, ::2],
    ]
    for rgb in images:
        for luma in ("bt601", "bt709"):
            monkeypatch.setenv("CLOUD3D_ANALYSIS_BACKEND", "numba")
            fast = am.measures_of_rgb(rgb, luma)
            monkeypatch.setenv("CLOUD3D_ANALYSIS_BACKEND", "numpy")
            slow = am.measures_of_rgb(rgb, luma)
            for k in ("entropy_luma", "entropy_rgb_mean", "entropy_gradient"):
                assert fast[k] == slow[k] or (math.isnan(fast[k]) and math.isnan(slow[k]))
            assert fast["si"] == pytest.approx(slow["si"], rel=1e-9, abs=1e-9, nan_ok=True)


def test_numba_si_matches_scipy_sobel_definition(monkeypatch):
    pytest.importorskip("numba", reason="numba not installed")
    import analysis.measures as am

    monkeypatch.setenv("CLOUD3D_ANALYSIS_BACKEND", "numba")
    rng = np.random.default_rng(12)
    smooth = ndimage.gaussian_filter(rng.normal(size=(240, 317, 3)), (2, 2, 0))
    rgb = np.clip(smooth * 500 + 128, 0, 255).astype(np.uint8)
    f = luma8(rgb).astype(np.float64)
    mag = np.hypot(ndimage.sobel(f, axis=1), ndimage.sobel(f, axis=0))[1:-1, 1:-1]
    assert am.measures_of_rgb(rgb)["si"] == pytest.approx(float(mag.std()), rel=1e-6)


def test_numba_counters_flush_without_changing_counts():
    """The kernel's int32 counters are flushed into int64 totals every few rows (so huge
    images cannot overflow them); flushing after every row or every 3 rows gives the same."""
    pytest.importorskip("numba", reason="numba not installed")
    from analysis.fused import _fused_kernel, flush_rows, fused_stats

    rgb = np.random.default_rng(13).integers(0, 256, size=(23, 37, 3), dtype=np.uint8)
    weights = (19595, 38470, 7471)
    hist, grad, s1, s2 = fused_stats(rgb, weights)
    assert hist.sum() == 4 * 23 * 37 and grad.sum() == 23 * 36 + 22 * 37
    for rows in (1, 3):
        h2, g2, t1, t2 = _fused_kernel(rgb, *(np.int32(x) for x in weights), rows)
        np.testing.assert_array_equal(h2, hist)
        np.testing.assert_array_equal(g2, grad)
        assert (t1, t2) == (s1, s2)
    assert flush_rows(1920) * 2 * 1920 < 2**31
    with pytest.raises(ValueError, match="C-contiguous"):
        fused_stats(np.zeros((4, 8, 3), np.uint8)[:, ::2], weights)


def test_backend_env_is_checked(monkeypatch):
    import analysis.measures as am

    monkeypatch.setenv("CLOUD3D_ANALYSIS_BACKEND", "cuda")
    with pytest.raises(Cloud3dError, match="CLOUD3D_ANALYSIS_BACKEND"):
        am.backend()
    monkeypatch.setenv("CLOUD3D_ANALYSIS_BACKEND", "numpy")
    assert am.backend() == "numpy"
