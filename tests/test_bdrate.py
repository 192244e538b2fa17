"""Bjontegaard deltas on curves whose answer is known exactly."""

from __future__ import annotations

import math

import numpy as np
import pytest

from baselines.bdrate import bd_psnr, bd_rate

RATES = np.array([0.1, 0.2, 0.4, 0.8, 1.6])
PSNR = np.array([28.0, 31.5, 34.2, 36.9, 39.0])


@pytest.mark.parametrize("factor", [0.8, 0.5, 1.25])
def test_scaled_rates_give_exact_bd_rate(factor):
    value, why = bd_rate(RATES, PSNR, RATES * factor, PSNR)
    assert why == ""
    assert value == pytest.approx((factor - 1) * 100, abs=1e-9)


def test_scaled_rates_bd_psnr_equals_curve_shift_for_linear_curve():
    # PSNR linear in log10(rate): shifting rates by 0.8 moves PSNR by slope*log10(1/0.8) everywhere
    slope = 10.0
    q = 30 + slope * np.log10(RATES / RATES[0])
    value, why = bd_psnr(RATES, q, RATES * 0.8, q)
    assert why == "" and value == pytest.approx(slope * math.log10(1 / 0.8), abs=1e-9)


def test_psnr_shift_gives_exact_bd_psnr():
    value, why = bd_psnr(RATES, PSNR, RATES, PSNR + 1.0)
    assert why == "" and value == pytest.approx(1.0, abs=1e-12)
    # and a better curve saves bits
    rate, why = bd_rate(RATES, PSNR, RATES, PSNR + 1.0)
    assert why == "" and rate < 0


def test_identical_curves_and_point_order():
    value, _ = bd_rate(RATES[::-1], PSNR[::-1], RATES, PSNR)
    assert value == pytest.approx(0.0, abs=1e-12)


def test_partial_overlap_uses_overlap_only():
    # PCHIP reproduces straight lines, so on a curve linear in log10(rate) a test curve covering
    # only the upper part of the anchor's range must give exactly its rate factor there
    q = 28 + 9 * np.log10(RATES / RATES[0])
    value, why = bd_rate(RATES, q, RATES[2:] * 0.9, q[2:])
    assert why == "" and value == pytest.approx(-10.0, abs=1e-9)
    # and PCHIP (not a straight line between points) is what interpolates curved data
    curved, _ = bd_rate(RATES, PSNR, RATES[2:] * 0.9, PSNR[2:])
    assert curved == pytest.approx(-10.0, abs=2) and abs(curved + 10.0) > 1e-3


def test_non_overlapping_and_degenerate_inputs_give_nan_with_reason():
    v, why = bd_rate(RATES, PSNR, RATES * 10, PSNR + 20)
    assert math.isnan(v) and "do not overlap" in why
    v, why = bd_psnr(RATES, PSNR, RATES * 100, PSNR)
    assert math.isnan(v) and "do not overlap" in why
    v, why = bd_rate(RATES[:1], PSNR[:1], RATES, PSNR)
    assert math.isnan(v) and "anchor: fewer than 2" in why
    v, why = bd_rate(RATES, PSNR, RATES, PSNR[::-1])
    assert math.isnan(v) and "test: quality is not strictly increasing" in why
    v, why = bd_rate(RATES, PSNR, [0.1, float("nan"), 0.3], [30, 31, float("inf")])
    assert math.isnan(v) and "fewer than 2" in why


def test_overlap_is_common_over_joint_interval_on_the_integrated_axis():
    from baselines.bdrate import MIN_OVERLAP, bd_overlap

    assert MIN_OVERLAP == 0.75
    # same range: 1; a test curve on the upper half of the anchor's PSNR range: 0.5 on quality
    assert bd_overlap(RATES, PSNR, RATES * 0.9, PSNR) == pytest.approx(1.0)
    q = np.linspace(30.0, 40.0, 5)
    assert bd_overlap(RATES, q, RATES, q + 5.0) == pytest.approx(5.0 / 15.0)
    # on the rate axis it is log10(rate) that counts: rates x10 on a 16x range
    span = math.log10(1.6 / 0.1)
    expected = (span - 1.0) / (span + 1.0)
    assert bd_overlap(RATES, PSNR, RATES * 10, PSNR, axis="rate") == pytest.approx(expected)
    assert bd_overlap(RATES, PSNR, RATES * 100, PSNR + 20) == 0.0
    assert math.isnan(bd_overlap(RATES[:1], PSNR[:1], RATES, PSNR))
    with pytest.raises(ValueError, match="axis"):
        bd_overlap(RATES, PSNR, RATES, PSNR, axis="psnr")
