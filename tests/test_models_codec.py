"""Learned-codec bitstreams: exact round trips, container checks, determinism, tiles, LZMA.

Small untrained (but ``update()``-d) models on tiny images; everything runs on CPU. The
GPU-encode / CPU-decode test runs only where CUDA is present.
"""

from __future__ import annotations

import struct

import numpy as np
import pytest
import torch
from helpers import loud_latents, make_game_like_frame, tiny_gain_model, tiny_model

from cloud3d.errors import Cloud3dError, CodecError
from models import bitstream
from models.codec import (
    _encode_tile,
    _latent_shapes,
    _pad,
    _rgb_to_tensor,
    compress_image,
    compress_image_timed,
    decompress_image,
    decompress_image_timed,
    prepare,
    quantized_reconstruction,
    weights_hash,
)
from models.entropy import decode_levels

# compressai calls torch.jit.script at import time (FutureWarning under recent torch)
pytestmark = pytest.mark.filterwarnings("ignore:.*torch.jit.script.*:FutureWarning")


def _model(arch: str, seed: int = 0):
    """A tiny seeded model whose latents quantize to many non-zero symbols."""
    return tiny_model(arch, seed, prepare=loud_latents)


@pytest.fixture(scope="module")
def pruned():
    return _model("c2f-xsmall-pruned")


@pytest.fixture(scope="module")
def odd_rgb():
    return make_game_like_frame(50, 70, 11, 2)  # H=50, W=70: not a multiple of any stride


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)


@pytest.mark.parametrize("arch", ["c2f-xsmall-pruned", "c2f-xsmall", "mbt2018-mean",
                                  "bmshj2018-hyperprior"])
def test_decode_reproduces_quantized_reconstruction_exactly(arch, odd_rgb):
    m = _model(arch)
    data = compress_image(m, odd_rgb)
    rec = decompress_image(m, data)
    assert rec.shape == odd_rgb.shape and rec.dtype == np.uint8
    np.testing.assert_array_equal(rec, quantized_reconstruction(m, odd_rgb))
    # and it is the model's own eval-mode forward pass up to the 1/64 snapping of the means
    x = _pad(_rgb_to_tensor(odd_rgb), m.stride)
    with torch.no_grad():
        fwd = m(x)["x_hat"][0, :, :50, :70].clamp(0, 1).mul(255).round().byte().permute(1, 2, 0)
    assert _psnr(fwd.numpy(), rec) > 35


def test_two_level_stream_has_three_latents(odd_rgb):
    m = _model("c2f-xsmall")
    s = bitstream.parse(compress_image(m, odd_rgb))
    assert (s.arch, s.n_levels, s.width, s.height, s.tile) == ("c2f-xsmall", 3, 70, 50, 0)
    assert len(s.strings) == 1 and len(s.strings[0]) == 3 and all(s.strings[0])


def test_stream_length_matches_file_and_header(pruned, odd_rgb, tmp_path):
    data = compress_image(pruned, odd_rgb)
    p = tmp_path / "a.c3d"
    p.write_bytes(data)
    assert p.stat().st_size == len(data)
    s = bitstream.parse(p.read_bytes())
    name_len = data[7]
    n_sub = sum(len(lens) for lens in s.parts[0])  # version 3: K, a count per level, lengths
    header = 8 + name_len + 32 + 1 + 16 + 1 + len(s.parts[0]) + 4 * n_sub
    assert data[4] == 3 and header + sum(len(b) for b in s.strings[0]) + 4 == len(data)
    assert s.weights_hash == weights_hash(pruned)


def test_corrupt_truncated_and_foreign_streams_are_rejected(pruned, odd_rgb):
    data = compress_image(pruned, odd_rgb)
    for pos in (0, 4, 5, 6, 8, 20, 60, 75, len(data) // 2, len(data) - 5, len(data) - 1):
        bad = bytearray(data)
        bad[pos] ^= 0x41
        with pytest.raises(Cloud3dError, match="not a valid cloud3d learned-codec stream"):
            decompress_image(pruned, bytes(bad))
    for n in (0, 3, 10, 60, len(data) - 1):
        with pytest.raises(Cloud3dError, match="truncated|magic|checksum"):
            decompress_image(pruned, data[:n])
    with pytest.raises(Cloud3dError, match="magic"):
        decompress_image(pruned, b"\x89PNG\r\n\x1a\n" + bytes(200))
    with pytest.raises(Cloud3dError, match="checksum|trailing"):
        decompress_image(pruned, data + b"\0")


def test_forged_header_with_valid_crc_cannot_force_huge_allocation(pruned, odd_rgb):
    import zlib

    data = bytearray(compress_image(pruned, odd_rgb))
    off = 8 + data[7] + 32 + 1  # version 3: the quality byte comes first
    struct.pack_into("<II", data, off, 65535, 65535)  # claims a huge image, 1 tile
    body = bytes(data[:-4])
    forged = body + struct.pack("<I", zlib.crc32(body))
    with pytest.raises(Cloud3dError, match="limit"):
        decompress_image(pruned, forged)  # refused before any tensor is allocated
    data = bytearray(compress_image(pruned, odd_rgb))
    struct.pack_into("<I", data, off + 12, 10**9)  # absurd tile count
    body = bytes(data[:-4])
    with pytest.raises(Cloud3dError, match="tiles"):
        decompress_image(pruned, body + struct.pack("<I", zlib.crc32(body)))


def test_stream_from_other_weights_or_architecture_is_refused(pruned, odd_rgb):
    data = compress_image(pruned, odd_rgb)
    with pytest.raises(Cloud3dError, match="other weights"):
        decompress_image(_model("c2f-xsmall-pruned", seed=1), data)
    with pytest.raises(Cloud3dError, match="architecture c2f-xsmall-pruned"):
        decompress_image(_model("c2f-xsmall"), data)


def test_cpu_coding_is_deterministic_run_to_run(pruned, odd_rgb):
    a = compress_image(pruned, odd_rgb)
    b = compress_image(pruned, odd_rgb)
    fresh = _model("c2f-xsmall-pruned")  # same seed: same weights, rebuilt from scratch
    assert a == b == compress_image(fresh, odd_rgb)
    np.testing.assert_array_equal(decompress_image(pruned, a), decompress_image(fresh, a))


def test_tiled_and_whole_frame_agree_within_documented_limits(pruned):
    rgb = make_game_like_frame(150, 200, 4, 1)
    whole = compress_image_timed(pruned, rgb)
    tiled = compress_image_timed(pruned, rgb, tile=128)
    assert whole.tile == 0 and tiled.tile == 128
    rec_w, rec_t = decompress_image(pruned, whole.data), decompress_image(pruned, tiled.data)
    assert bitstream.parse(tiled.data).strings.__len__() == 4
    # exact: every tile is the whole-frame codec applied to that crop alone
    for x0, y0, w, h in bitstream.tile_grid(200, 150, 128):
        crop = np.ascontiguousarray(rgb[y0 : y0 + h, x0 : x0 + w])
        np.testing.assert_array_equal(rec_t[y0 : y0 + h, x0 : x0 + w],
                                      quantized_reconstruction(pruned, crop))
    # a tile at least as large as the frame is the whole-frame path
    np.testing.assert_array_equal(decompress_image(pruned, compress_image(pruned, rgb, tile=256)),
                                  rec_w)
    # documented limit (docs/models.md): tiled rate within 1.5x of whole-frame
    assert len(tiled.data) < 1.5 * len(whole.data) + 256


def test_bad_tile_sizes_are_clear_errors(pruned, odd_rgb):
    for t in (100, -64, "big"):
        with pytest.raises(Cloud3dError, match="tile"):
            compress_image(pruned, odd_rgb, tile=t)


@pytest.mark.parametrize("arch", ["c2f-xsmall-pruned", "c2f-xsmall"])
def test_lzma_coder_round_trip(arch, odd_rgb):
    m = _model(arch)
    data = compress_image(m, odd_rgb, coder="lzma")
    s = bitstream.parse(data)
    assert s.coder == "lzma" and len(s.strings[0]) == 1
    rec = decompress_image(m, data)
    np.testing.assert_array_equal(rec, quantized_reconstruction(m, odd_rgb))
    np.testing.assert_array_equal(rec, decompress_image(m, compress_image(m, odd_rgb)))


def test_timings_are_split_and_positive(pruned, odd_rgb):
    r = compress_image_timed(pruned, odd_rgb)
    d = decompress_image_timed(pruned, r.data)
    assert r.network_s > 0 and r.entropy_s > 0 and d.network_s > 0 and d.entropy_s > 0


def test_gpu_encode_cpu_decode(cuda_device, monkeypatch):
    from models import substreams

    monkeypatch.setattr(substreams, "MIN_SYMBOLS", 1)  # cut even this small frame's levels
    m = _model("c2f-xsmall")
    rgb = make_game_like_frame(200, 330, 7, 0)
    data = compress_image(m, rgb, device="cuda", substreams_k=3)
    rec_gpu = decompress_image(m, data, device="cuda")
    rec_cpu = decompress_image(m, data, device="cpu")
    # the latents decoded on CPU are exactly the ones the GPU encoder quantized
    times = {"network": 0.0, "entropy": 0.0}
    x = _pad(_rgb_to_tensor(rgb), m.stride)
    y_gpu = _encode_tile(prepare(m, "cuda"), x, False, None, times).y_hat
    cpu = prepare(m, "cpu")
    s = bitstream.parse(data)
    assert [len(p) for p in s.parts[0]] == [3, 3, 3]
    y_cpu = decode_levels(cpu.entropy, _latent_shapes(cpu, x.shape[2], x.shape[3]), s.strings[0],
                          "ans", times, "stream", s.parts[0], substreams.pool(2)).y_hat
    assert torch.equal(y_gpu.cpu(), y_cpu)
    assert np.abs(rec_gpu.astype(int) - rec_cpu.astype(int)).max() <= 2


def test_gpu_fp16_and_tiles_decode_on_cpu(cuda_device):
    """fp16 transforms on the GPU (tiled and whole) give streams a CPU decodes to the GPU's
    own reconstruction up to synthesis rounding; the latents themselves are exact."""
    m = _model("c2f-xsmall-pruned")
    rgb = make_game_like_frame(180, 300, 5, 1)
    for tile in ("whole", 128):
        data = compress_image(m, rgb, tile=tile, device="cuda", fp16=True)
        rec_cpu = decompress_image(m, data, device="cpu")
        rec_gpu = decompress_image(m, data, device="cuda", fp16=True)
        assert rec_cpu.shape == rgb.shape
        assert np.abs(rec_gpu.astype(int) - rec_cpu.astype(int)).mean() < 1.0, tile
        # the float32 synthesis on the GPU decodes the same stream like the CPU does
        rec_gpu32 = decompress_image(m, data, device="cuda")
        assert np.abs(rec_gpu32.astype(int) - rec_cpu.astype(int)).max() <= 2, tile


@pytest.mark.parametrize("arch", ["mbt2018-mean", "bmshj2018-hyperprior"])
def test_compressai_models_convert_to_registry_models(arch, odd_rgb):
    """Zoo weights load into the registry classes (checked with an untrained compressai net)."""
    import compressai.zoo

    from models.zoo import ZOO, from_compressai

    torch.manual_seed(3)
    net = getattr(compressai.zoo, ZOO[arch])(1, pretrained=False).eval()
    m = from_compressai(net, arch)
    assert m.config() == {"N": 128, "M": 192}
    for k, v in net.state_dict().items():
        assert torch.equal(v, m.state_dict()[k]), k
    np.testing.assert_array_equal(decompress_image(m, compress_image(m, odd_rgb)),
                                  quantized_reconstruction(m, odd_rgb))


@pytest.mark.parametrize("coder", ["ans", "lzma"])
@pytest.mark.parametrize("arch", ["c2f-xsmall", "mbt2018-mean", "bmshj2018-hyperprior"])
def test_encoder_and_decoder_walk_the_same_levels(arch, coder, odd_rgb):
    """The shared level loop: what the decoder rebuilds from the strings is, level by level,
    the encoder's symbols, CDF indexes and dequantized latent, exactly."""
    pm = prepare(_model(arch), "cpu")
    times = {"network": 0.0, "entropy": 0.0}
    x = _pad(_rgb_to_tensor(odd_rgb), pm.stride)
    enc = _encode_tile(pm, x, False, None, times)
    strings = bitstream.parse(compress_image(pm, odd_rgb, coder=coder)).strings[0]
    dec = decode_levels(pm.entropy, _latent_shapes(pm, x.shape[2], x.shape[3]), strings, coder,
                        times, "stream")
    assert len(enc.symbols) == len(dec.symbols) == len(pm.latent_strides)
    for k in range(len(enc.symbols)):
        assert torch.equal(enc.symbols[k], dec.symbols[k]), k
        assert torch.equal(enc.indexes[k].cpu(), dec.indexes[k].cpu()), k
    assert torch.equal(enc.y_hat, dec.y_hat)
    assert all((s != 0).any() for s in enc.symbols)  # a real signal at every level
    assert (enc.symbols[0] != 0).sum() > enc.symbols[0].numel() // 2
    assert enc.indexes[0].unique().numel() > 10  # over many CDF tables


@pytest.mark.parametrize("fast", [True, False])
def test_variable_rate_models_get_the_quality_in_both_transforms(fast, odd_rgb):
    """A real variable-rate model (c2f-xsmall-pruned-vr, two-lambda ladder: its initial gains
    on y are 1/sqrt(2) and sqrt(2)) coded at each quality."""
    pm = prepare(tiny_gain_model(0), "cpu", fast=fast)
    streams = [compress_image(pm, odd_rgb, quality=q, fast=fast) for q in (0, 1)]
    assert streams[0] != streams[1] and len(streams[0]) < len(streams[1])  # finer at q=1
    for q, data in enumerate(streams):
        rec = decompress_image(pm, data, quality=q, fast=fast)
        np.testing.assert_array_equal(rec, quantized_reconstruction(pm, odd_rgb, quality=q,
                                                                    fast=fast))
    for bad in (None, 2, -1, 1.0, True):
        with pytest.raises(Cloud3dError, match="variable-rate model: give a quality 0..1"):
            compress_image(pm, odd_rgb, quality=bad, fast=fast)
    # the stream records its quality: decoding needs none, and refuses another
    np.testing.assert_array_equal(decompress_image(pm, streams[1], fast=fast),
                                  decompress_image(pm, streams[1], quality=1, fast=fast))
    with pytest.raises(CodecError, match="coded at quality 0, not 1"):
        decompress_image(pm, streams[0], quality=1, fast=fast)
    with pytest.raises(Cloud3dError, match="fixed-rate model: it takes no quality"):
        compress_image(_model("c2f-xsmall-pruned"), odd_rgb, quality=0)
