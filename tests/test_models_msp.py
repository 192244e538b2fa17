"""The multi-scale progressive (MSP) probability model: masks, exact round trips, a constant
number of entropy-decoding passes, determinism, forged streams, training and the CLI.

Real tiny models (c2f-xsmall[-pruned]-msp, seeded, latents made loud so that every pass
codes many non-zero symbols over many CDF tables) and the real compressai rANS coder; the
passes are counted on the real decoder (a subclass that counts its ``decode_stream`` calls).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import loud_latents, make_game_like_frame, tiny_model

from cloud3d.errors import Cloud3dError, CodecError
from models import bitstream
from models.architectures import create_model
from models.codec import (
    _encode_tile,
    _latent_shapes,
    _pad,
    _rgb_to_tensor,
    compress_image,
    decompress_image,
    decompress_image_timed,
    prepare,
    quantized_reconstruction,
)
from models.entropy import decode_levels
from models.latent_model import ProgressiveNet, level_passes
from models.msp import msp_masks

pytestmark = pytest.mark.filterwarnings("ignore:.*torch.jit.script.*:FutureWarning")

MSP_ARCHS = ["c2f-xsmall-msp", "c2f-xsmall-pruned-msp"]


def _model(arch: str, seed: int = 0):
    return tiny_model(arch, seed, prepare=loud_latents)


@pytest.fixture(scope="module")
def msp():
    return _model("c2f-xsmall-msp")


@pytest.fixture(scope="module")
def rgb():
    return make_game_like_frame(90, 150, 4, 1)  # not a multiple of the stride


@pytest.mark.parametrize("shape", [(1, 48, 8, 12), (2, 5, 3, 7), (1, 4, 1, 1)])
@pytest.mark.parametrize("scales,groups", [(2, 2), (3, 2), (1, 4), (2, 1)])
def test_masks_partition_the_latent_coarse_scales_first(shape, scales, groups):
    masks = msp_masks(shape, scales, groups)
    assert len(masks) == scales * groups  # also for latents too small to fill every pass
    count = torch.stack(masks).sum(0)
    assert torch.equal(count, torch.ones(shape, dtype=count.dtype))  # disjoint and covering
    if shape[2] >= 4 and shape[3] >= 4 and scales == 2:
        anchor = masks[0][0, 0]  # the coarse scale: the stride-2 sub-grid, first channel slice
        assert anchor[0::2, 0::2].all() and anchor.sum() == anchor[0::2, 0::2].numel()
    if groups > 1:  # channel slices within a pass
        assert not masks[0][:, -1].any() and masks[groups - 1][:, -1].any()


def test_msp_models_register_and_declare_their_passes(msp):
    assert msp.arch == "c2f-xsmall-msp" and isinstance(msp.param_nets[0], ProgressiveNet)
    assert level_passes(msp) == [4, 1, 1]
    assert level_passes(create_model("c2f-xsmall-pruned-msp")) == [4, 1]
    assert level_passes(create_model("c2f-xsmall")) == [1, 1, 1]
    plain = create_model("c2f-xsmall")
    extra = set(msp.state_dict()) - set(plain.state_dict())
    assert extra and all(k.startswith("msp_context.") for k in extra)  # same backbone, + context


@pytest.mark.parametrize("coder", ["ans", "lzma"])
@pytest.mark.parametrize("arch", MSP_ARCHS)
def test_round_trip_is_the_encoders_reconstruction_exactly(arch, coder, rgb):
    m = _model(arch)
    for tile in ("whole", 128):
        data = compress_image(m, rgb, coder=coder, tile=tile)
        rec = decompress_image(m, data)
        np.testing.assert_array_equal(rec, quantized_reconstruction(m, rgb, tile=tile))


def test_encoder_and_decoder_see_the_same_passes(msp, rgb):
    """Level by level the decoder rebuilds the encoder's symbols, CDF indexes, pass masks and
    dequantized y exactly; every pass codes real (non-zero) symbols."""
    pm = prepare(msp, "cpu")
    times = {"network": 0.0, "entropy": 0.0}
    x = _pad(_rgb_to_tensor(rgb), pm.stride)
    enc = _encode_tile(pm, x, False, None, times)
    strings = bitstream.parse(compress_image(pm, rgb)).strings[0]
    dec = decode_levels(pm.entropy, _latent_shapes(pm, x.shape[2], x.shape[3]), strings, "ans",
                        times, "stream")
    assert enc.passes == dec.passes == 6
    for k in range(3):
        assert torch.equal(enc.symbols[k], dec.symbols[k]) and torch.equal(enc.indexes[k],
                                                                           dec.indexes[k])
    assert torch.equal(enc.y_hat, dec.y_hat)
    assert len(dec.masks[0]) == 4 and dec.masks[1] is None
    for mask in dec.masks[0]:
        assert (dec.symbols[0][mask] != 0).float().mean() > 0.3
        assert dec.indexes[0][mask].unique().numel() > 5


def test_the_context_changes_the_prediction(msp, rgb):
    """Passes after the first use what was decoded before them: the same stream's y read with
    the context zeroed out gets other parameters (so the decode would go wrong)."""
    pm = prepare(msp, "cpu")
    x = _pad(_rgb_to_tensor(rgb), pm.stride)
    lev = _encode_tile(pm, x, False, None, {"network": 0.0, "entropy": 0.0})
    net = pm.entropy.nets64[0]
    with torch.inference_mode():
        feats = net.features(torch.zeros(1, 256, *[s // 4 for s in lev.y_hat.shape[2:]],
                                         dtype=torch.float64))
        done = lev.masks[0][0] | lev.masks[0][1]
        with_ctx = net.group_params(2, feats, torch.where(done, lev.y_hat, 0.0), done)
        without = net.group_params(2, feats, torch.zeros_like(lev.y_hat), done)
    assert not torch.allclose(with_ctx, without)


class _CountingDecoder:
    """Counts the passes the real substream decoder reads (``LevelDecoder.decode_pass``: one
    sequential decoder step, its substreams read at once)."""

    def __init__(self, monkeypatch):
        from models.substreams import LevelDecoder

        self.calls = 0
        real = LevelDecoder.decode_pass

        def counting(decoder, *args):
            self.calls += 1
            return real(decoder, *args)

        monkeypatch.setattr(LevelDecoder, "decode_pass", counting)


@pytest.mark.parametrize("arch,passes", [("c2f-xsmall-msp", 6), ("c2f-xsmall-pruned-msp", 5),
                                         ("c2f-xsmall", 3)])
def test_entropy_decoding_passes_do_not_grow_with_the_image(arch, passes, monkeypatch):
    counter = _CountingDecoder(monkeypatch)
    m = _model(arch)
    seen = []
    for h, w in ((40, 40), (130, 200), (300, 520)):
        img = make_game_like_frame(h, w, 2, 0)
        before = counter.calls
        r = decompress_image_timed(m, compress_image(m, img))
        seen.append((counter.calls - before, r.passes))
        np.testing.assert_array_equal(r.rgb, quantized_reconstruction(m, img))
    assert seen == [(passes, passes)] * 3
    # per tile: a tiled stream takes the same passes in each of its tiles
    img = make_game_like_frame(300, 520, 2, 0)
    before = counter.calls
    r = decompress_image_timed(m, compress_image(m, img, tile=256))
    assert counter.calls - before == r.passes == passes * 6


def test_encoding_is_deterministic(rgb):
    """The same weights give the same bytes: twice with one prepared model, and with a
    second model built from the first one's state dict."""
    m = _model("c2f-xsmall-msp", seed=3)
    a, b = compress_image(m, rgb), compress_image(m, rgb)
    twin = create_model("c2f-xsmall-msp")
    twin.load_state_dict(m.state_dict())
    assert a == b == compress_image(twin.eval(), rgb)


def test_forged_and_foreign_streams_are_clean_errors(msp, rgb):
    data = compress_image(msp, rgb)
    for cut in (len(data) - 1, len(data) // 2, 20):
        with pytest.raises(CodecError):
            decompress_image(msp, data[:cut])
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0x40
    with pytest.raises(CodecError, match="checksum"):
        decompress_image(msp, bytes(flipped))
    # a stream of the plain model (same backbone) is refused by the MSP model and back
    plain = _model("c2f-xsmall")
    with pytest.raises(CodecError, match="architecture c2f-xsmall but the checkpoint is"):
        decompress_image(msp, compress_image(plain, rgb))
    with pytest.raises(CodecError, match="architecture c2f-xsmall-msp"):
        decompress_image(plain, data)
    # a re-sealed header claiming a large image with the original strings: refused by the
    # string-length bounds before anything is decoded
    s = bitstream.parse(data)
    big = bitstream.Stream(s.arch, s.weights_hash, 2000, 1500, 0, s.coder, s.n_levels,
                           s.strings)
    with pytest.raises(CodecError, match="too few|cannot hold"):
        decompress_image(msp, bitstream.pack(big))
    # rANS strings of the right lengths but other content decode to something (no error
    # hidden in the coder) and never outside the image
    junk = [[bytes(np.random.default_rng(k).integers(0, 256, len(x), dtype=np.uint8))
             for k, x in enumerate(s.strings[0])]]
    forged = bitstream.Stream(s.arch, s.weights_hash, s.width, s.height, 0, s.coder,
                              s.n_levels, junk)
    try:
        out = decompress_image(msp, bitstream.pack(forged))
        assert out.shape == rgb.shape
    except Cloud3dError:
        pass


def test_training_reaches_the_context_and_lowers_the_rate():
    """A few optimiser steps on one image: the context nets get gradients and the estimated
    rate of y falls."""
    from models.train import rd_loss

    torch.manual_seed(0)
    m = create_model("c2f-xsmall-pruned-msp").train()
    x = _rgb_to_tensor(make_game_like_frame(64, 64, 1, 0))
    opt = torch.optim.Adam(m.parameters(), 1e-3)
    first = None
    for _ in range(12):
        out = m(x)
        r = rd_loss(out, x, 0.01)
        opt.zero_grad()
        r["loss"].backward()
        grads = [p.grad for p in m.msp_context.parameters()]
        assert all(g is not None for g in grads) and any(float(g.abs().sum()) > 0 for g in grads)
        opt.step()
        first = float(r["loss"]) if first is None else first
    assert float(r["loss"]) < first


def test_cli_trains_compresses_and_benches_an_msp_model(tmp_path, run_cli):
    from cloud3d.imageio import read_png_rgb, write_png
    from cloud3d_dataset.manifest import index_dataset

    root = tmp_path / "ds"
    for split, ns in (("train", range(0, 4)), ("validation", range(4, 5))):
        for n in ns:
            write_png(root / split / "toy-720p" / f"{n}.png", make_game_like_frame(128, 192, 3, n))
    index_dataset(root, progress=False)
    out = tmp_path / "run"
    p = run_cli("train", root, "--app", "toy", "--arch", "c2f-xsmall-msp", "--out", out,
                "--steps", "4", "--batch", "2", "--crop", "128", "--val-every", "4",
                "--threads", "1", "--device", "cpu", timeout=900)
    assert p.returncode == 0, p.stderr[-2000:]
    ck = out / "best.pt"
    src, c3d, rec = root / "validation" / "toy-720p" / "4.png", tmp_path / "a.c3d", tmp_path / "a.png"
    assert run_cli("compress", src, "-m", ck, "-o", c3d).returncode == 0
    p = run_cli("decompress", c3d, "-m", ck, "-o", rec)
    assert p.returncode == 0 and "in 6 passes" in p.stdout, p.stdout + p.stderr
    assert read_png_rgb(rec).shape == (128, 192, 3)
    assert bitstream.parse(c3d.read_bytes()).arch == "c2f-xsmall-msp"

    from baselines.codecs.registry import parse_codec_spec

    spec = parse_codec_spec(f"learned:checkpoint={ck};device=cpu")
    codec = spec.make()
    img = read_png_rgb(src)
    enc = codec.encode_timed(img, spec.qualities[0])
    assert enc.data == c3d.read_bytes()
    np.testing.assert_array_equal(codec.decode_timed(enc.data).rgb, read_png_rgb(rec))
