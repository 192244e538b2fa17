"""RGB <-> Y'CbCr conversion (rounding, ranges, 4:2:0 resampling) and raw YUV file I/O."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import make_game_like_frame

from baselines.codecs import yuvio
from baselines.codecs.colour import downsample_420, planes_to_rgb, rgb_to_planes, upsample_420
from baselines.metrics import psnr_rgb


def _all_colours_sample() -> np.ndarray:
    """Random colours plus the eight corners of the RGB cube, 66x45 (odd width/height mix)."""
    rng = np.random.default_rng(11)
    img = rng.integers(0, 256, (45, 66, 3), dtype=np.uint8)
    corners = np.array([[r, g, b] for r in (0, 255) for g in (0, 255) for b in (0, 255)], np.uint8)
    img[0, :8] = corners
    return img


# worst-case bounds: quantisation error 0.5 code value per plane, amplified by the inverse matrix
# (|d R,G,B| <= 0.5 * (1 + 2(1-Kb)) steps, ~1.43 at 8-bit full range -> <= 1 after rounding; limited
# range has coarser steps (219/224 levels) -> <= 2; at 10 bits the error stays below half an 8-bit step)
@pytest.mark.parametrize("matrix", ["bt709", "bt601"])
@pytest.mark.parametrize(("bit_depth", "full", "bound"), [(8, True, 1), (8, False, 2), (10, True, 0), (10, False, 0)])
def test_444_round_trip_error_bounds(matrix, bit_depth, full, bound):
    rgb = _all_colours_sample()
    planes = rgb_to_planes(rgb, bit_depth, "444", matrix, full)
    assert all(p.dtype == np.uint16 and p.shape == rgb.shape[:2] for p in planes)
    back = planes_to_rgb(*planes, bit_depth=bit_depth, matrix=matrix, full_range=full)
    err = np.abs(back.astype(int) - rgb.astype(int)).max()
    assert err <= bound
    if bound:
        assert err == bound  # the bound is tight on this sample, so it really measures rounding


def test_known_code_values_and_rounding_not_truncation():
    px = np.array([[[255, 255, 255], [0, 0, 0], [255, 0, 0], [128, 128, 128]]], np.uint8)
    y, cb, cr = rgb_to_planes(px, 10, "444", "bt709", True)
    assert (y[0, 0], cb[0, 0], cr[0, 0]) == (1023, 512, 512)
    assert (y[0, 1], cb[0, 1], cr[0, 1]) == (0, 512, 512)
    assert y[0, 3] == 514  # 128/255*1023 = 513.51 -> rounded, truncation would give 513
    y, cb, cr = rgb_to_planes(px, 8, "444", "bt709", False)
    assert (y[0, 0], y[0, 1]) == (235, 16)
    assert (y[0, 2], cb[0, 2], cr[0, 2]) == (63, 102, 240)  # BT.709 limited-range red
    y, cb, cr = rgb_to_planes(px, 8, "444", "bt601", False)
    assert (y[0, 2], cb[0, 2], cr[0, 2]) == (81, 90, 240)  # BT.601 limited-range red


def test_420_shapes_and_2x2_mean():
    plane = np.arange(5 * 7, dtype=np.float64).reshape(5, 7)
    d = downsample_420(plane)
    assert d.shape == (3, 4)
    assert d[0, 0] == pytest.approx((0 + 1 + 7 + 8) / 4)
    assert d[2, 3] == pytest.approx(plane[4, 6])  # edge-replicated corner
    rgb = make_game_like_frame(45, 67, seed=1)
    y, cb, cr = rgb_to_planes(rgb, 10, "420")
    assert y.shape == (45, 67) and cb.shape == cr.shape == (23, 34)
    assert upsample_420(cb, 45, 67).shape == (45, 67)
    assert upsample_420(cb, 45, 67, "nearest").shape == (45, 67)


@pytest.mark.parametrize(("bit_depth", "bound"), [(8, 1), (10, 0)])
def test_420_exact_on_2x2_constant_chroma(bit_depth, bound):
    """Blocks of 2x2 identical pixels lose nothing to 4:2:0 with nearest upsampling."""
    rng = np.random.default_rng(3)
    small = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    rgb = np.repeat(np.repeat(small, 2, axis=0), 2, axis=1)
    planes = rgb_to_planes(rgb, bit_depth, "420")
    back = planes_to_rgb(*planes, bit_depth=bit_depth, upsampling="nearest")
    assert np.abs(back.astype(int) - rgb.astype(int)).max() <= bound


def test_420_bilinear_beats_nearest_on_smooth_content():
    yy, xx = np.mgrid[0:64, 0:96].astype(np.float64)
    rgb = np.stack([xx * 2.5, yy * 3.5, 255 - xx * 2.0], axis=-1).clip(0, 255).round().astype(np.uint8)
    planes = rgb_to_planes(rgb, 10, "420")
    bil = planes_to_rgb(*planes, bit_depth=10, upsampling="bilinear")
    near = planes_to_rgb(*planes, bit_depth=10, upsampling="nearest")
    assert psnr_rgb(rgb, bil) > psnr_rgb(rgb, near)
    assert np.abs(bil.astype(int) - rgb.astype(int))[1:-1, 1:-1].max() <= 1


def test_invalid_arguments():
    rgb = np.zeros((4, 4, 3), np.uint8)
    with pytest.raises(ValueError, match="bt709, bt601"):
        rgb_to_planes(rgb, 10, "444", "bt2020")
    with pytest.raises(ValueError, match="chroma format"):
        rgb_to_planes(rgb, 10, "422")
    with pytest.raises(ValueError, match="upsampling"):
        upsample_420(np.zeros((2, 2)), 4, 4, "lanczos")


@pytest.mark.parametrize("chroma", ["444", "420"])
@pytest.mark.parametrize("bit_depth", [8, 10])
def test_yuv_file_round_trip(tmp_path, chroma, bit_depth):
    rgb = make_game_like_frame(45, 67, seed=2)
    planes = rgb_to_planes(rgb, bit_depth, chroma)
    path = tmp_path / "f.yuv"
    yuvio.write_yuv(path, planes, bit_depth)
    ch, cw = yuvio.chroma_shape(45, 67, chroma)
    per = 1 if bit_depth == 8 else 2
    assert path.stat().st_size == (45 * 67 + 2 * ch * cw) * per == yuvio.frame_bytes(45, 67, chroma, bit_depth)
    back = yuvio.read_yuv(path, 45, 67, chroma, bit_depth)
    for a, b in zip(planes, back, strict=True):
        np.testing.assert_array_equal(a, b)


def test_yuv_10bit_is_little_endian_and_checks_range():
    y = np.array([[0x0201, 3]], np.uint16)
    c = np.array([[512]], np.uint16)
    data = yuvio.planes_to_bytes((y, c, c), 10)
    assert data[:4] == bytes([0x01, 0x02, 0x03, 0x00])
    with pytest.raises(ValueError, match="outside 0..1023"):
        yuvio.planes_to_bytes((np.array([[1024]], np.uint16), c, c), 10)
    with pytest.raises(ValueError, match="needs"):
        yuvio.bytes_to_planes(data[:-1], 1, 2, "420", 10)
    two = data + data
    assert yuvio.bytes_to_planes(two, 1, 2, "420", 10, frame=1)[0][0, 0] == 0x0201
