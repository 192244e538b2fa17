"""The inference fast path (fused GDN, channels-last copies) against compressai's plain layers.

Speed is measured by ``benchmarks/codec_speed.py --plain``; here only equivalence: the fused
GDN matches compressai's GDN to float32 rounding, a fast inference copy matches the model,
streams are bit-identical with and without the fast path for a fixed-seed model, and the
cached copy follows weight changes.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from compressai.layers import GDN
from helpers import make_game_like_frame
from helpers import tiny_model as _tiny_model

from models.codec import (
    _pad,
    _rgb_to_tensor,
    compress_image,
    decompress_image,
    prepare,
    quantized_reconstruction,
    weights_hash,
)
from models.fast_inference import CPU_BLOCK_PIXELS, FusedGDN, inference_copy, to_channels_last

pytestmark = pytest.mark.filterwarnings("ignore:.*torch.jit.script.*:FutureWarning")


def _model(arch: str, seed: int = 0):
    return _tiny_model(arch, seed, prepare=_perturb_gdns)


def _perturb_gdns(m: torch.nn.Module, seed: int) -> None:
    """Give every GDN a non-trivial beta and a dense gamma (the init is 0.1 * identity)."""
    g = torch.Generator().manual_seed(seed + 100)
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, GDN):
                c = mod.beta.numel()
                mod.beta.copy_(mod.beta_reparam.init(0.5 + torch.rand(c, generator=g)))
                gamma = 0.2 * torch.rand(c, c, generator=g) / c + 0.1 * torch.eye(c)
                mod.gamma.copy_(mod.gamma_reparam.init(gamma))


@pytest.mark.parametrize("inverse", [False, True])
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("inplace", [False, True])
def test_fused_gdn_matches_compressai_gdn(inverse, channels_last, inplace):
    torch.manual_seed(3)
    gdn = GDN(24, inverse=inverse)
    _perturb_gdns(gdn, 1)
    fused = FusedGDN(gdn, inplace=inplace)
    # more pixels than one CPU block, and not a multiple of it: the last block is partial
    h, w = 37, (CPU_BLOCK_PIXELS // 37) + 5
    x = torch.randn(2, 24, h, w) * 3
    if channels_last:
        x = to_channels_last(x)
    with torch.inference_mode():
        ref = gdn(x)
        got = fused(x.clone())
    assert got.shape == ref.shape
    torch.testing.assert_close(got, ref, rtol=2e-6, atol=2e-6)
    # the non-blocked path (taken under autograd, autocast or on GPU) agrees too
    with torch.no_grad():
        unblocked = fused(x.clone().requires_grad_(True))
    torch.testing.assert_close(unblocked, ref, rtol=2e-6, atol=2e-6)


@pytest.mark.parametrize("arch", ["c2f-xsmall-pruned", "c2f-xsmall", "mbt2018-mean",
                                  "bmshj2018-hyperprior"])
def test_inference_copy_matches_model_and_leaves_it_untouched(arch):
    m = _model(arch)
    before = {k: v.clone() for k, v in m.state_dict().items()}
    fast = inference_copy(m)
    assert not any(isinstance(x, FusedGDN) for x in m.modules())
    fused = [x for x in fast.modules() if isinstance(x, FusedGDN)]
    assert fused and all(g.inplace for g in fused)  # every GDN here follows a convolution
    x = _pad(_rgb_to_tensor(make_game_like_frame(70, 90, 5, 0)), m.stride)
    with torch.inference_mode():
        ref, got = m.latents(x), fast.latents(to_channels_last(x))
        for a, b in zip(ref, got, strict=True):
            torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-4)
        y = torch.round(ref[0])
        torch.testing.assert_close(fast.synthesis(to_channels_last(y)), m.synthesis(y),
                                   rtol=1e-4, atol=1e-4)
    for k, v in m.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_fast_copy_shares_the_parameter_nets_and_leaves_the_model_as_it_was():
    m = _model("c2f-xsmall")
    m.train()
    shared = [x for net in m.param_nets for x in net.modules()]
    fast = inference_copy(m, share=shared)
    assert fast.h_s1 is m.h_s1 and fast.pe2 is m.pe2  # evaluated as float64 copies elsewhere
    assert fast.g_a is not m.g_a and fast.h_a1 is not m.h_a1 and not fast.g_s.training
    assert m.training and m.h_s1.training  # mode of the original untouched
    pm = prepare(m, "cpu")  # the prepared model builds its copy the same way
    assert pm.transforms.h_s1 is m.h_s1 and pm.transforms.g_a is not m.g_a
    for name, p in m.named_parameters():
        assert p.is_contiguous() and p.requires_grad, name


@pytest.mark.parametrize("arch", ["c2f-xsmall-pruned", "c2f-xsmall", "mbt2018-mean"])
def test_fast_and_plain_paths_give_identical_streams(arch):
    m = _model(arch)
    rgb = make_game_like_frame(60, 90, 7, 3)
    fast, plain = compress_image(m, rgb, fast=True), compress_image(m, rgb, fast=False)
    assert fast == plain
    # the float64 entropy path is shared, so each path decodes the other's stream exactly;
    # pixels may differ by float32 rounding in g_s only (never seen more than 1 code value)
    rec_fast = decompress_image(m, fast)
    np.testing.assert_array_equal(rec_fast, quantized_reconstruction(m, rgb, fast=True))
    rec_plain = decompress_image(m, fast, fast=False)
    diff = np.abs(rec_fast.astype(int) - rec_plain.astype(int))
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-3


def test_cached_fast_copy_and_hash_follow_weight_changes():
    m = _model("c2f-xsmall-pruned", seed=0)
    other = _model("c2f-xsmall-pruned", seed=1)
    rgb = make_game_like_frame(50, 70, 2, 1)
    a = compress_image(m, rgb)
    h0 = weights_hash(m)
    m.load_state_dict(other.state_dict())  # in-place copies: version counters move
    assert weights_hash(m) == weights_hash(other) != h0
    b = compress_image(m, rgb)
    assert b == compress_image(other, rgb) != a
    np.testing.assert_array_equal(decompress_image(m, b), decompress_image(other, b))


def test_prepared_model_is_reused_until_the_weights_change_and_nothing_is_stored_on_the_model():
    m = _model("c2f-xsmall-pruned", seed=0)
    other = _model("c2f-xsmall-pruned", seed=1)
    rgb = make_game_like_frame(50, 70, 2, 1)
    attrs = set(m.__dict__)
    pm = prepare(m, "cpu")
    fast, nets, h0 = pm.transforms, pm.entropy.nets64, pm.weights_hash
    a = compress_image(pm, rgb)
    assert prepare(pm, "cpu") is pm and pm.transforms is fast and pm.entropy.nets64 is nets
    assert a == compress_image(m, rgb)  # a bare model is prepared for the call: same stream
    assert set(m.__dict__) == attrs  # no caches stored as attributes on the module
    m.load_state_dict(other.state_dict())
    b = compress_image(pm, rgb)  # refreshed: new copies, new hash
    assert pm.transforms is not fast and pm.entropy.nets64 is not nets
    assert weights_hash(pm) == weights_hash(other) != h0
    assert b == compress_image(other, rgb) != a
    plain = prepare(pm, fast=False)  # other options: a new preparation of the same model
    assert plain is not pm and plain.model is m and plain.transforms is m
    assert compress_image(plain, rgb, fast=False) == b
