"""Latent overfitting (``models.overfit``, ``cloud3d compress --overfit``, ``learned:...;overfit=N``).

Real tiny models (seeded, loud latents so that frames code to many symbols) on small real
frames, the real coding path and the unchanged decoder; everything on CPU.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time

import numpy as np
import pytest
from helpers import CLI, loud_latents, make_game_like_frame, tiny_gain_model, tiny_model

from cloud3d.errors import Cloud3dError
from cloud3d.imageio import read_png_rgb, write_png
from models.codec import compress_image, compress_image_timed, decompress_image, prepare
from models.overfit import MAX_STEPS, compress_overfit

pytestmark = pytest.mark.filterwarnings("ignore:.*torch.jit.script.*:FutureWarning")

LAMBDA = 0.01


def _model(arch: str, seed: int = 0):
    return tiny_model(arch, seed, prepare=loud_latents)


@pytest.fixture(scope="module")
def rgb():
    return make_game_like_frame(50, 70, 11, 2)  # not a multiple of any stride: padding counts


def _cost(model, data: bytes, rgb: np.ndarray, lmbda: float, quality=None) -> float:
    """bpp of the real bytes + lambda * MSE (code values) of what the plain decoder makes."""
    rec = decompress_image(model, data, device="cpu", quality=quality)
    mse = np.mean((rec.astype(np.float64) - rgb.astype(np.float64)) ** 2)
    return 8 * len(data) / (rgb.shape[0] * rgb.shape[1]) + lmbda * mse


@pytest.mark.parametrize("arch", ["c2f-xsmall-pruned", "c2f-xsmall", "mbt2018-mean",
                                  "bmshj2018-hyperprior"])
def test_overfitted_streams_decode_with_the_plain_decoder_and_cost_less(arch, rgb):
    """Every level (y, z and w where present) is refined; a fresh copy of the same weights
    with the ordinary decoder reads the stream, and its real cost is below the plain one."""
    m = _model(arch)
    plain = compress_image(m, rgb, device="cpu")
    r = compress_overfit(m, rgb, 25, lmbda=LAMBDA, device="cpu")
    assert r.kept == "overfit" and r.data != plain
    fresh = _model(arch)  # the decoder side: same seed, same weights, nothing shared
    rec = decompress_image(fresh, r.data, device="cpu")
    assert rec.shape == rgb.shape
    c_plain, c_over = _cost(fresh, plain, rgb, LAMBDA), _cost(fresh, r.data, rgb, LAMBDA)
    assert c_over < c_plain
    assert r.plain.cost == pytest.approx(c_plain) and r.overfit.cost == pytest.approx(c_over)
    assert r.plain.bytes == len(plain) and r.overfit.bytes == len(r.data)
    assert r.refine_s > 0 and r.encode_s >= r.refine_s


def test_tiled_streams_are_overfitted_per_tile(rgb):
    m = _model("c2f-xsmall-pruned")
    plain = compress_image(m, rgb, tile=64, device="cpu")
    r = compress_overfit(m, rgb, 10, lmbda=LAMBDA, tile=64, device="cpu")
    assert r.kept == "overfit" and r.data != plain
    assert _cost(m, r.data, rgb, LAMBDA) < _cost(m, plain, rgb, LAMBDA)


def test_lzma_streams_keep_the_plain_one_when_overfitting_does_not_pay(rgb):
    """The refinement optimises the learned entropy model's rate, not LZMA's: on this frame
    its LZMA stream is larger, and the real-cost check keeps the plain one."""
    m = _model("c2f-xsmall-pruned")
    plain = compress_image(m, rgb, coder="lzma", device="cpu")
    r = compress_overfit(m, rgb, 10, lmbda=LAMBDA, coder="lzma", device="cpu")
    assert r.overfit.cost > r.plain.cost
    assert r.kept == "plain" and r.data == plain
    assert r.plain.cost == pytest.approx(_cost(m, plain, rgb, LAMBDA))


def test_a_refinement_that_changes_nothing_keeps_the_plain_stream(rgb):
    """A tie is no gain: the plain stream stays (the rule that makes the result never worse)."""
    m = _model("c2f-xsmall-pruned")
    r = compress_overfit(m, rgb, 1, lmbda=LAMBDA, device="cpu", lr=1e-12, greedy_rounds=0)
    assert r.overfit.cost == r.plain.cost and r.kept == "plain"
    assert r.data == compress_image(m, rgb, device="cpu")


def test_the_greedy_search_only_accepts_real_gains(rgb):
    """Greedy moves are counted and never raise the cost above what Adam alone reached."""
    m = _model("mbt2018-mean")
    alone = compress_overfit(m, rgb, 5, lmbda=LAMBDA, device="cpu", greedy_rounds=0)
    both = compress_overfit(m, rgb, 5, lmbda=LAMBDA, device="cpu", greedy_rounds=8)
    assert alone.greedy_moves == 0
    assert both.overfit.cost <= alone.overfit.cost + 1e-9 or both.greedy_moves == 0


def test_overfit_zero_is_the_plain_encoder_byte_for_byte(rgb):
    m = _model("c2f-xsmall")
    r = compress_overfit(m, rgb, 0, lmbda=LAMBDA, device="cpu")
    assert r.data == compress_image(m, rgb, device="cpu")
    assert (r.kept, r.plain, r.overfit, r.refine_s) == ("plain", None, None, 0.0)


def test_variable_rate_models_use_the_lambda_of_their_quality(rgb):
    m = tiny_gain_model(0)
    for q in (0, 1):
        r = compress_overfit(m, rgb, 10, quality=q, device="cpu")
        assert r.lmbda == m.lambdas[q]
        plain = compress_image(m, rgb, quality=q, device="cpu")
        assert _cost(m, r.data, rgb, r.lmbda, q) <= _cost(m, plain, rgb, r.lmbda, q)
        assert decompress_image(m, r.data, quality=q, device="cpu").shape == rgb.shape
    assert compress_overfit(m, rgb, 1, quality=1, lmbda=0.04, device="cpu").lmbda == 0.04
    with pytest.raises(Cloud3dError, match="quality 1 has lambda 0.04"):
        compress_overfit(m, rgb, 1, quality=1, lmbda=0.5, device="cpu")
    with pytest.raises(Cloud3dError, match="give a quality 0..1"):
        compress_overfit(m, rgb, 1, device="cpu")


@pytest.mark.parametrize("bad", [-1, 1.5, True, "10", None, MAX_STEPS + 1])
def test_bad_step_counts_are_clean_errors(bad, rgb):
    with pytest.raises(Cloud3dError, match=f"integer 0..{MAX_STEPS}"):
        compress_overfit(_model("c2f-xsmall-pruned"), rgb, bad, lmbda=LAMBDA, device="cpu")


def test_bad_lambdas_and_settings_are_clean_errors(rgb):
    m = _model("c2f-xsmall-pruned")
    with pytest.raises(Cloud3dError, match="needs the lambda it was trained for"):
        compress_overfit(m, rgb, 5, device="cpu")
    for bad in (0, -0.01, float("nan"), float("inf"), "0.01", True):
        with pytest.raises(Cloud3dError, match="lambda must be a positive number"):
            compress_overfit(m, rgb, 5, lmbda=bad, device="cpu")
    with pytest.raises(Cloud3dError, match="learning rate"):
        compress_overfit(m, rgb, 5, lmbda=LAMBDA, lr=0, device="cpu")
    with pytest.raises(Cloud3dError, match="greedy rounds"):
        compress_overfit(m, rgb, 5, lmbda=LAMBDA, greedy_rounds=-1, device="cpu")
    with pytest.raises(Cloud3dError, match="fixed-rate model"):
        compress_overfit(m, rgb, 5, lmbda=LAMBDA, quality=0, device="cpu")


def test_a_refine_hook_may_not_change_the_latent_shapes(rgb):
    m = prepare(_model("c2f-xsmall-pruned"), "cpu")
    with pytest.raises(Cloud3dError, match="changed the latents' shapes"):
        compress_image_timed(m, rgb, refine=lambda pm, x, hw, q, lat: [lat[0][:, :1], lat[1]])


# -- the CLI and the bench codec ---------------------------------------------------------------
@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    from models.checkpoint import save_checkpoint

    d = tmp_path_factory.mktemp("ck")
    m = _model("c2f-xsmall-pruned")
    return {"with": save_checkpoint(d / "own.pt", m, {"lambda": LAMBDA, "app": "toy"}),
            "without": save_checkpoint(d / "bare.pt", m, {"app": "toy"})}


def _cli(*args, timeout=900):
    return subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


def test_cli_overfit_streams_decode_with_cloud3d_decompress(ckpt, rgb, tmp_path):
    src = tmp_path / "f.png"
    write_png(src, rgb)
    out, plain = tmp_path / "o.c3d", tmp_path / "p.c3d"
    r = _cli("compress", src, "-m", ckpt["with"], "-o", out, "--overfit", 20, "--device", "cpu")
    assert r.returncode == 0, r.stderr
    assert "overfit 20 steps (lambda 0.01)" in r.stdout and "kept overfit" in r.stdout
    assert _cli("compress", src, "-m", ckpt["with"], "-o", plain, "--device", "cpu").returncode == 0
    r0 = _cli("compress", src, "-m", ckpt["with"], "-o", tmp_path / "z.c3d", "--overfit", 0,
              "--device", "cpu")
    assert r0.returncode == 0 and (tmp_path / "z.c3d").read_bytes() == plain.read_bytes()
    assert out.read_bytes() != plain.read_bytes()
    r = _cli("decompress", out, "-m", ckpt["with"], "-o", tmp_path / "o.png", "--device", "cpu")
    assert r.returncode == 0, r.stderr
    from models.checkpoint import load_checkpoint

    model = load_checkpoint(ckpt["with"])[0]
    np.testing.assert_array_equal(read_png_rgb(tmp_path / "o.png"),
                                  decompress_image(model, out.read_bytes(), device="cpu"))
    assert _cost(model, out.read_bytes(), rgb, LAMBDA) < _cost(model, plain.read_bytes(), rgb,
                                                               LAMBDA)


def test_cli_bad_overfit_requests_are_one_line_errors(ckpt, rgb, tmp_path):
    src = tmp_path / "f.png"
    write_png(src, rgb)
    out = tmp_path / "o.c3d"
    r = _cli("compress", src, "-m", ckpt["without"], "-o", out, "--overfit", 5, "--device", "cpu")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.startswith("error: ") and "needs the lambda it was trained for" in r.stderr
    r = _cli("compress", src, "-m", ckpt["with"], "-o", out, "--overfit", -3)
    assert r.returncode == 2 and "--overfit" in r.stderr and "Traceback" not in r.stderr
    r = _cli("compress", src, "-m", ckpt["with"], "-o", out, "--overfit", 5, "--fp16")
    assert r.returncode == 1 and "drop --fp16" in r.stderr
    assert not out.exists()


def test_ctrl_c_during_overfitting_leaves_the_old_output_alone(ckpt, tmp_path):
    src = tmp_path / "f.png"
    write_png(src, make_game_like_frame(128, 192, 3))
    out = tmp_path / "o.c3d"
    out.write_bytes(b"an earlier stream")
    p = subprocess.Popen([*CLI, "compress", str(src), "-m", str(ckpt["with"]), "-o", str(out),
                          "--overfit", str(MAX_STEPS), "--device", "cpu"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    err = ""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and p.poll() is None and "overfit:" not in err:
        err += os.read(p.stderr.fileno(), 4096).decode(errors="replace")
    assert p.poll() is None, err
    time.sleep(0.5)
    os.kill(p.pid, signal.SIGINT)
    _, rest = p.communicate(timeout=60)
    assert p.returncode == 130, rest
    assert "interrupted" in rest and "Traceback" not in rest
    assert out.read_bytes() == b"an earlier stream"
    assert [f.name for f in tmp_path.iterdir()] == sorted(["f.png", "o.c3d"]) or \
        {f.name for f in tmp_path.iterdir()} == {"f.png", "o.c3d"}


def test_bench_codec_records_the_overfitting(ckpt, rgb):
    from baselines.codecs.registry import parse_codec_spec

    plain = parse_codec_spec(f"learned:checkpoint={ckpt['with']};device=cpu").make()
    spec = parse_codec_spec(f"learned:checkpoint={ckpt['with']};device=cpu;overfit=15")
    codec = spec.make()
    enc = codec.encode_timed(rgb, spec.qualities[0])
    d = enc.details
    assert d["overfit"] == 15 and d["overfit_kept"] == "overfit" and d["lambda"] == LAMBDA
    assert d["overfit_s"] > 0 and enc.encode_s >= d["overfit_s"]
    base = plain.encode_timed(rgb, spec.qualities[0]).data
    assert d["plain_bytes"] == len(base) and enc.data != base
    assert "overfit=15" in codec.version() and "overfit" not in plain.version()
    prov = codec.provenance()["overfit"]
    assert prov["steps"] == 15 and prov["lambdas"] == {str(ckpt["with"]): LAMBDA}
    dec = codec.decode_timed(enc.data)  # the plain decoder of the same checkpoint
    np.testing.assert_array_equal(dec.rgb, plain.decode_timed(enc.data).rgb)
    zero = parse_codec_spec(f"learned:checkpoint={ckpt['with']};device=cpu;overfit=0").make()
    assert zero.encode_timed(rgb, spec.qualities[0]).data == base
    assert zero.version() == plain.version()


@pytest.mark.parametrize("bad", ["-1", "2.5", "x", "true", str(MAX_STEPS + 1)])
def test_bench_codec_refuses_bad_overfit_values(ckpt, bad):
    from baselines.codecs.registry import parse_codec_spec

    with pytest.raises(ValueError, match="option overfit"):
        parse_codec_spec(f"learned:checkpoint={ckpt['with']};overfit={bad}")


def test_bench_codec_names_the_checkpoint_without_a_lambda(ckpt, rgb):
    from baselines.codecs.base import CodecError
    from baselines.codecs.registry import parse_codec_spec

    spec = parse_codec_spec(f"learned:checkpoint={ckpt['without']};device=cpu;overfit=5")
    with pytest.raises(CodecError, match="bare.pt: overfitting .* needs the lambda"):
        spec.make().encode_timed(rgb, spec.qualities[0])
