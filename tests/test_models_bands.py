"""g_s in row bands on the CPU (models/bands.py): the halo rule, exactness, and the same
pixels for every thread count.

A tiny seeded model with loud latents; frames of a few hundred pixels. The decoder keeps
bands of at least ``bands.MIN_BAND_ROWS`` latent rows; tests that need several bands on a
small frame lower that policy (it decides only how work is cut, never a pixel).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import loud_latents, make_game_like_frame, tiny_model
from torch import nn

from models import bands, substreams
from models.codec import compress_image, decompress_image, prepare, quantized_reconstruction
from models.fast_inference import to_channels_last

pytestmark = pytest.mark.filterwarnings("ignore:.*torch.jit.script.*:FutureWarning")


@pytest.fixture(scope="module")
def pm():
    return prepare(tiny_model("c2f-xsmall-pruned", 0, prepare=loud_latents), "cpu")


@pytest.fixture()
def small_bands(monkeypatch):
    monkeypatch.setattr(bands, "MIN_BAND_ROWS", 2)


def test_the_halo_follows_the_layers():
    up = dict(kernel_size=5, stride=2, padding=2, output_padding=1)
    four = nn.Sequential(*[m for _ in range(4) for m in (nn.ConvTranspose2d(4, 4, **up), nn.ReLU())])
    # last layer needs 1 input row each side, then ceil((1 + 2) / 2) = 2 for each earlier one
    assert bands.synthesis_halo(four) == (2, 16)
    assert bands.synthesis_halo(nn.Sequential(nn.ConvTranspose2d(4, 4, **up))) == (1, 2)
    same = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.ConvTranspose2d(4, 4, **up))
    assert bands.synthesis_halo(same) == (2, 2)
    # not a plain chain of size-keeping or s-times upsampling layers: never cut
    assert bands.synthesis_halo(nn.Sequential(nn.Upsample(scale_factor=2))) is None
    assert bands.synthesis_halo(nn.Sequential(nn.Conv2d(4, 4, 3, stride=2, padding=1))) is None
    assert bands.synthesis_halo(nn.Sequential(nn.ConvTranspose2d(4, 4, 5, 2, 2))) is None


def test_bands_with_the_halo_give_the_whole_pass_and_a_smaller_halo_does_not(pm):
    assert pm.synthesis_halo == (2, 16)
    g = torch.Generator().manual_seed(3)
    y = torch.randn(1, pm.model.latent_channels[0], 13, 9, generator=g) * 4
    def run(t):
        return pm.transforms.synthesis(to_channels_last(t))

    with torch.inference_mode():
        whole = run(y)
    for n in (2, 3, 5):
        got = bands.synthesize_bands(run, y, n, 2, 16, substreams.pool(2))
        assert got.shape == whole.shape and torch.equal(got, whole), n
        short = bands.synthesize_bands(run, y, n, 1, 16, None)
        assert not torch.allclose(short, whole, atol=1e-4), n


def test_every_thread_count_decodes_the_same_pixels(pm, small_bands):
    """192 px rows -> 12 latent rows: 1, 2, 3 and 5 bands; the same pixels as the encoder's
    reconstruction on one thread, whatever torch's own thread setting."""
    rgb = make_game_like_frame(192, 96, 5, 1)
    data = compress_image(pm, rgb)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        ref = quantized_reconstruction(pm, rgb, threads=1)
        torch.set_num_threads(2)
        assert np.array_equal(quantized_reconstruction(pm, rgb, threads=4), ref)
        for t in (1, 2, 3, 5):
            assert bands.band_count(12, t, 2) == t
            assert np.array_equal(decompress_image(pm, data, threads=t), ref), t
        assert torch.get_num_threads() == 2  # the caller's setting is left as it was
    finally:
        torch.set_num_threads(before)


def test_band_count_keeps_bands_tall_enough():
    assert bands.band_count(48, 1, 2) == 1
    assert bands.band_count(48, 2, 2) == 2
    assert bands.band_count(48, 16, 2) == 48 // bands.MIN_BAND_ROWS
    assert bands.band_count(10, 4, 2) == 1  # too short to cut
    assert bands.band_count(48, 4, None) == 1  # a g_s that cannot be cut
    assert bands.band_rows(10, 3) == [(0, 3), (3, 6), (6, 10)]
