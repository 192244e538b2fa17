"""Metrics checked against independent computations (plain Python, scikit-image, pytorch_msssim)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from helpers import make_game_like_frame
from pytorch_msssim import ms_ssim as lib_ms_ssim
from skimage.metrics import peak_signal_noise_ratio

from baselines import metrics as M


def _noisy(img: np.ndarray, sigma: float, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(img.astype(np.float64) + rng.normal(0, sigma, img.shape), 0, 255).round().astype(np.uint8)


def test_psnr_matches_hand_computation_on_tiny_arrays():
    ref = np.array([[[0, 10, 20], [30, 40, 50]]], dtype=np.uint8)  # 1x2x3
    rec = np.array([[[1, 10, 18], [30, 45, 50]]], dtype=np.uint8)
    diffs = [1, 0, 2, 0, 5, 0]
    hand_mse = sum(d * d for d in diffs) / len(diffs)
    assert M.mse(ref, rec) == pytest.approx(hand_mse)
    assert M.psnr_rgb(ref, rec) == pytest.approx(10 * math.log10(255**2 / hand_mse))


def test_psnr_matches_skimage_and_is_symmetric():
    ref = make_game_like_frame(45, 67, seed=3)
    rec = _noisy(ref, 6.0)
    want = peak_signal_noise_ratio(ref, rec, data_range=255)
    assert M.psnr_rgb(ref, rec) == pytest.approx(want, abs=1e-9)
    assert M.psnr_rgb(rec, ref) == pytest.approx(want, abs=1e-9)


def test_identical_images_give_inf_and_cap():
    ref = make_game_like_frame(16, 16, seed=0)
    assert math.isinf(M.psnr_rgb(ref, ref.copy()))
    assert M.cap_psnr(M.psnr_rgb(ref, ref)) == M.PSNR_CAP_DB
    assert M.cap_psnr(31.5) == 31.5


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="differ in shape"):
        M.mse(np.zeros((4, 4, 3), np.uint8), np.zeros((4, 5, 3), np.uint8))
    with pytest.raises(ValueError, match="RGB"):
        M.mse(np.zeros((4, 4), np.uint8), np.zeros((4, 4), np.uint8))


def test_bpp_definition():
    assert M.bpp(1000, 100, 80) == pytest.approx(8 * 1000 / 8000)
    assert M.bpp(259200, 1920, 1080) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        M.bpp(10, 0, 5)


def test_aggregate_two_ways_by_hand():
    mses = [1.0, 100.0, 0.0]
    agg = M.aggregate_psnr(mses)
    p = [10 * math.log10(255**2 / 1.0), 10 * math.log10(255**2 / 100.0), M.PSNR_CAP_DB]
    assert agg["mean_psnr"] == pytest.approx(sum(p) / 3)
    assert agg["psnr_of_mean_mse"] == pytest.approx(10 * math.log10(255**2 / (101.0 / 3)))
    assert agg["n_capped"] == 1 and agg["n"] == 3
    # Jensen: the mean of per-image PSNR is never below the PSNR of the mean MSE
    agg2 = M.aggregate_psnr([4.0, 9.0, 50.0])
    assert agg2["mean_psnr"] >= agg2["psnr_of_mean_mse"]
    assert M.mean_psnr([30.0, math.inf]) == pytest.approx((30.0 + M.PSNR_CAP_DB) / 2)


def test_ms_ssim_full_scales_equals_pytorch_msssim():
    import torch

    ref = make_game_like_frame(170, 200, seed=2)
    rec = _noisy(ref, 8.0)
    assert M.ms_ssim_scales(170, 200) == 5
    x = torch.from_numpy(ref.astype(np.float32).transpose(2, 0, 1)[None])
    y = torch.from_numpy(rec.astype(np.float32).transpose(2, 0, 1)[None])
    want = float(lib_ms_ssim(x, y, data_range=255))
    assert M.ms_ssim_rgb(ref, rec) == pytest.approx(want, abs=1e-6)
    # the reduced-scale code path reproduces the library when given all five scales
    assert M._ms_ssim_levels(x, y, 5) == pytest.approx(want, abs=1e-5)


def test_ms_ssim_small_images_use_fewer_scales():
    assert M.ms_ssim_scales(48, 64) == 3  # 48 > 40 but not > 80
    assert M.ms_ssim_scales(160, 500) == 4
    assert M.ms_ssim_scales(11, 11) == 1
    with pytest.raises(ValueError, match="at least 11x11"):
        M.ms_ssim_scales(10, 64)
    ref = make_game_like_frame(48, 64, seed=4)
    assert M.ms_ssim_rgb(ref, ref) == pytest.approx(1.0, abs=1e-6)
    mild, strong = M.ms_ssim_rgb(ref, _noisy(ref, 3.0)), M.ms_ssim_rgb(ref, _noisy(ref, 20.0))
    assert 0 < strong < mild < 1


def test_ms_ssim_db():
    assert M.ms_ssim_db(0.99) == pytest.approx(20.0)
    assert M.ms_ssim_db(0.9) == pytest.approx(10.0)
    assert math.isinf(M.ms_ssim_db(1.0))


def test_psnr_y_and_yuv_against_hand_bt709():
    ref = make_game_like_frame(40, 52, seed=5)
    rec = _noisy(ref, 5.0)

    def planes(a):
        e = a.astype(np.float64)
        y = 0.2126 * e[..., 0] + 0.7152 * e[..., 1] + 0.0722 * e[..., 2]
        return y, (e[..., 2] - y) / 1.8556 + 128, (e[..., 0] - y) / 1.5748 + 128

    (ya, ba, ra), (yb, bb, rb) = planes(ref), planes(rec)

    def p(a, b):
        return 10 * math.log10(255**2 / np.mean((a - b) ** 2))

    assert M.psnr_y(ref, rec) == pytest.approx(p(ya, yb), abs=1e-9)
    want_yuv = (6 * p(ya, yb) + p(ba, bb) + p(ra, rb)) / 8
    assert M.psnr_yuv(ref, rec) == pytest.approx(want_yuv, abs=1e-9)
