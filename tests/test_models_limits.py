"""Hostile inputs to the learned codec: forged streams, crafted checkpoints, LZMA headers,
and the odd command lines of compress/decompress/train.

A stream that is valid apart from its claims (right magic, CRC, weights hash and layout)
must not make the decoder work far beyond what its bytes justify, nor a checkpoint's few
bytes of JSON make us build a model of any size. These tests run the real ``cloud3d``
command in a subprocess and bound its wall time and peak RSS (``os.wait4``); before the
limits, an 85-byte stream claiming 4096x4096 ran for minutes and reached 3.7 GB, and a
checkpoint declaring mbt2018-mean with N=M=40000 grew to 18.6 GB until the kernel killed it.
"""

from __future__ import annotations

import json
import lzma
import os
import resource
import struct
import subprocess
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from helpers import cli_argv, loud_latents, make_game_like_frame, tiny_model

from cloud3d.errors import Cloud3dError, CodecError
from models import bitstream
from models.codec import compress_image, decompress_image, prepare, weights_hash
from models.entropy import check_strings

pytestmark = pytest.mark.filterwarnings("ignore:.*torch.jit.script.*:FutureWarning")

#: what a refused stream may cost above a legitimate 70x50 decode (time, memory). The memory
#: allowance covers fixed costs, not the claims: refusing a forged model config imports torch's
#: FakeTensorMode (torch._dynamo, sympy) to count the parameters without memory, measured at
#: +90 MiB on the development VM and +223 MiB on a loaded CI run (1207 vs 984 MiB); what this
#: guards against is allocation in proportion to the claim (N = M = 40000 would be ~25 GB).
REFUSAL_WALL_S = 60.0
REFUSAL_EXTRA_RSS = 320 * 2**20


@pytest.fixture(scope="module")
def model():
    return prepare(tiny_model("c2f-xsmall-pruned", prepare=loud_latents), "cpu")


@pytest.fixture(scope="module")
def checkpoint(model, tmp_path_factory) -> Path:
    from models.checkpoint import save_checkpoint

    return save_checkpoint(tmp_path_factory.mktemp("ck") / "m.pt", model.model, {"app": "toy"})


@pytest.fixture(scope="module")
def legit(model, checkpoint, tmp_path_factory) -> tuple[Path, int]:
    """A real 70x50 stream and the peak RSS (bytes) of `cloud3d decompress` on it."""
    path = tmp_path_factory.mktemp("s") / "legit.c3d"
    path.write_bytes(compress_image(model, make_game_like_frame(50, 70, 1, 0)))
    rc, err, _, rss = _measured("decompress", path, "-m", checkpoint, "-o", path.with_suffix(".png"))
    assert rc == 0, err
    return path, rss


def _measured(*args, env: dict[str, str] | None = None, timeout: float = 180,
              address_space: int | None = None):
    """Run ``cloud3d ARGS``; ``(exit status, stderr, wall seconds, peak RSS bytes)``. A run
    past ``timeout`` is killed (and then fails the caller's bounds); ``address_space`` caps
    its virtual memory (RLIMIT_AS, bytes)."""

    def limit() -> None:
        if address_space is not None:
            resource.setrlimit(resource.RLIMIT_AS, (address_space, address_space))

    err = Path(os.environ.get("TMPDIR", "/tmp")) / f"c3d-limits-{os.getpid()}.err"
    with open(err, "wb") as ef:
        t0 = time.perf_counter()
        p = subprocess.Popen(cli_argv(*args), stdout=subprocess.DEVNULL, stderr=ef,
                             env={**os.environ, **(env or {})}, preexec_fn=limit)
        killer = threading.Timer(timeout, p.kill)
        killer.start()
        _, status, usage = os.wait4(p.pid, 0)
        killer.cancel()
        wall = time.perf_counter() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    text = err.read_bytes().decode(errors="replace")
    err.unlink()
    return p.returncode, text, wall, usage.ru_maxrss * 1024


def _forge(model, width: int, height: int, tile: int, strings: list[bytes],
           coder: str = "ans") -> bytes:
    """A container with the model's arch and weights hash claiming ``width x height``."""
    n_tiles = len(bitstream.tile_grid(width, height, tile))
    s = bitstream.Stream(model.arch, weights_hash(model), width, height, tile, coder,
                         len(model.latent_strides), [list(strings)] * n_tiles)
    return bitstream.pack(s)


def _assert_refused(result, legit_rss: int, match: str) -> None:
    rc, err, wall, rss = result
    lines = [ln for ln in err.splitlines() if "Warning" not in ln and "warnings.warn" not in ln]
    assert rc == 1, err[-2000:]
    assert len(lines) == 1 and lines[0].startswith("error: ") and match in lines[0], err
    assert wall < REFUSAL_WALL_S, f"refusal took {wall:.1f} s"
    assert rss < legit_rss + REFUSAL_EXTRA_RSS, f"peak RSS {rss / 2**20:.0f} MiB"


@pytest.mark.parametrize("width,height,tile", [(4096, 4096, 0), (8192, 8192, 4096)])
def test_forged_stream_claiming_a_huge_frame_is_refused_quickly(model, checkpoint, legit,
                                                                tmp_path, width, height, tile):
    path = tmp_path / "forged.c3d"
    path.write_bytes(_forge(model, width, height, tile, [bytes(8), bytes(8)]))
    assert path.stat().st_size < 200
    res = _measured("decompress", path, "-m", checkpoint, "-o", tmp_path / "x.png")
    _assert_refused(res, legit[1], "above the decoder budget of 8847360 pixels")
    assert f"--max-pixels {width * height}" in res[1]
    assert not (tmp_path / "x.png").exists()


def test_with_the_budget_raised_a_stream_still_needs_bytes_for_its_latents(model, checkpoint,
                                                                          legit, tmp_path):
    env = {bitstream.DECODE_PIXELS_ENV: str(bitstream.MAX_PIXELS)}
    path = tmp_path / "forged.c3d"
    path.write_bytes(_forge(model, 4096, 4096, 0, [bytes(8), bytes(8)]))
    res = _measured("decompress", path, "-m", checkpoint, "-o", tmp_path / "x.png", env=env)
    _assert_refused(res, legit[1], "too few for the")
    for strings, coder, match in (([b"", b""], "ans", "whole 32-bit words"),
                                  ([lzma.compress(bytes(64))], "lzma", "LZMA latent string of")):
        with pytest.raises(CodecError, match=match):
            decompress_image(model, _forge(model, 4096, 4096, 0, strings, coder),
                             max_pixels=bitstream.MAX_PIXELS)


def test_strings_that_the_rans_coder_cannot_have_written_are_refused(model):
    data = compress_image(model, make_game_like_frame(50, 70, 2, 0))
    s = bitstream.parse(data)
    for k in range(len(s.strings[0])):
        for bad in (b"", bytes(4), s.strings[0][k][:-1], s.strings[0][k] + b"\0"):
            strings = list(s.strings[0])
            strings[k] = bad
            forged = bitstream.pack(bitstream.Stream(s.arch, s.weights_hash, s.width, s.height,
                                                     s.tile, s.coder, s.n_levels, [strings]))
            with pytest.raises(CodecError, match="whole 32-bit words"):
                decompress_image(model, forged)


def test_a_4k_frame_stays_decodable():
    m = prepare(tiny_model("c2f-xsmall-pruned"), "cpu")
    rgb = make_game_like_frame(2160, 3840, 4, 0)
    rec = decompress_image(m, compress_image(m, rgb))
    assert rec.shape == rgb.shape and rec.dtype == np.uint8


def test_byte_bounds_accept_the_most_compressible_strings(model):
    """The bounds of check_strings hold at their extreme: the largest piece the format allows,
    every symbol the most probable one of the most peaked table, coded by the real coders."""
    from compressai import ans

    ep = model.entropy
    shapes = [(1, c, 4096 // s, 4096 // s) for s, c in zip(model.latent_strides,
                                                           model.latent_channels, strict=True)]
    strings = []
    for k, shape in enumerate(shapes):
        tb = ep.tables(k)
        # symbol frequencies of each table (the last bin, the escape to bypass coding, left out)
        freq = [[b - a for a, b in zip(row[: n - 2], row[1 : n - 1], strict=True)]
                for row, n in zip(tb.cdf, tb.lengths, strict=True)]
        row = max(range(len(freq)), key=lambda r: max(freq[r]))
        value = freq[row].index(max(freq[row])) + tb.offsets[row]
        n = int(np.prod(shape))
        strings.append(ans.RansEncoder().encode_with_indexes([value] * n, [row] * n, tb.cdf,
                                                             tb.lengths, tb.offsets))
        assert tb.min_bits <= -np.log2(max(freq[row]) / 2**16)
    assert len(strings[0]) < 100  # y: millions of symbols in a few bytes
    check_strings(ep, shapes, strings, "ans", "s")
    n = sum(int(np.prod(s)) for s in shapes)
    check_strings(ep, shapes, [lzma.compress(bytes(4 * n), preset=6)], "lzma", "s")


def test_decode_budget_from_option_environment_and_default(model, checkpoint, legit, tmp_path,
                                                           monkeypatch):
    path, _ = legit
    data = path.read_bytes()  # 70 x 50 = 3500 pixels
    assert bitstream.decode_pixel_budget() == bitstream.MAX_DECODE_PIXELS == 4096 * 2160
    with pytest.raises(CodecError, match="3500 pixels"):
        decompress_image(model, data, max_pixels=3499)
    assert decompress_image(model, data, max_pixels=3500).shape == (50, 70, 3)
    monkeypatch.setenv(bitstream.DECODE_PIXELS_ENV, "3499")
    with pytest.raises(CodecError, match="--max-pixels 3500"):
        decompress_image(model, data)
    for bad in ("lots", "0", "-5"):
        monkeypatch.setenv(bitstream.DECODE_PIXELS_ENV, bad)
        with pytest.raises(Cloud3dError, match=bitstream.DECODE_PIXELS_ENV):
            decompress_image(model, data)
    monkeypatch.delenv(bitstream.DECODE_PIXELS_ENV)
    out = tmp_path / "o.png"
    rc, err, _, _ = _measured("decompress", path, "-m", checkpoint, "-o", out, "--max-pixels", 3000)
    assert rc == 1 and "--max-pixels 3500" in err and not out.exists()
    rc, err, _, _ = _measured("decompress", path, "-m", checkpoint, "-o", out, "--max-pixels", 3500)
    assert rc == 0 and out.exists(), err


def _checkpoint(path: Path, meta, state_dict=None) -> Path:
    """A checkpoint file with this metadata (any JSON) and state dict (default: none)."""
    import torch

    from models.checkpoint import FORMAT, FORMAT_VERSION

    torch.save({"format": FORMAT, "format_version": FORMAT_VERSION,
                "meta_json": json.dumps(meta), "state_dict": state_dict or {}}, path)
    return path


@pytest.mark.parametrize("meta,match", [
    ({"arch": "c2f-small-pruned", "config": {"N": 100000}}, "takes no options"),
    ({"arch": "mbt2018-mean", "config": {"bogus": 1}}, r"no config option 'bogus' \(options: N, M\)"),
    ({"arch": "mbt2018-mean", "config": "N=40000"}, "config is str JSON"),
    ({"arch": "mbt2018-mean", "config": [40000, 40000]}, "config is list JSON"),
    ({"arch": "mbt2018-mean", "config": {"N": 1.5}}, "N=1.5 is not a positive integer"),
    ({"arch": "mbt2018-mean", "config": {"N": 0}}, "N=0 is not a positive integer"),
    ({"arch": "mbt2018-mean", "config": {"N": 1700}}, "above the limit of"),
    ({"arch": "mbt2018-mean", "config": {"N": 64, "M": 64}}, "its state dict lacks"),
    ({"arch": ["c2f-small"]}, "unknown architecture"),
    ([1, 2], "metadata is list JSON"),
])
def test_crafted_checkpoint_metadata_is_a_one_line_error(tmp_path, meta, match):
    from models.checkpoint import load_checkpoint

    ck = _checkpoint(tmp_path / "c.pt", meta)
    assert ck.stat().st_size < 2000
    with pytest.raises(Cloud3dError, match=match) as info:
        load_checkpoint(ck)
    assert "\n" not in str(info.value)


def test_checkpoint_tensors_must_be_exactly_the_models(tmp_path):
    """Names and shapes are checked against the config before the model is built."""
    import torch

    from models.checkpoint import load_checkpoint

    sd = tiny_model("mbt2018-mean").state_dict()  # N=32, M=48
    meta = {"arch": "mbt2018-mean", "config": {"N": 64, "M": 64}}
    with pytest.raises(Cloud3dError, match=r"has shape \[32, 1, 3\], the model \[64, 1, 3\]"):
        load_checkpoint(_checkpoint(tmp_path / "a.pt", meta, sd))
    meta["config"] = {"N": 32, "M": 48}
    with pytest.raises(Cloud3dError, match="unexpected 'extra'"):
        load_checkpoint(_checkpoint(tmp_path / "b.pt", meta, {**sd, "extra": torch.zeros(1)}))
    with pytest.raises(Cloud3dError, match="no state dict of named tensors"):
        load_checkpoint(_checkpoint(tmp_path / "c.pt", meta, {"x": "not a tensor"}))
    model, _ = load_checkpoint(_checkpoint(tmp_path / "d.pt", meta, sd))
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in sd.items())


def test_a_tiny_checkpoint_declaring_a_huge_model_allocates_nothing(legit, tmp_path):
    path, legit_rss = legit
    ck = _checkpoint(tmp_path / "huge.pt", {"arch": "mbt2018-mean", "config": {"N": 40000, "M": 40000}})
    res = _measured("decompress", path, "-m", ck, "-o", tmp_path / "x.png")
    _assert_refused(res, legit_rss, "parameters, above the limit of 400,000,000")


def _big_dictionary(blob: bytes) -> bytes:
    """``blob`` (an xz container) with its block header asking for a 4 GiB LZMA2 dictionary."""
    b = bytearray(blob)
    size = (b[12] + 1) * 4  # block header after the 12-byte stream header
    assert b[14:16] == b"\x21\x01"  # one LZMA2 filter, one property byte: the dictionary size
    b[16] = 40  # 4 GiB - 1
    struct.pack_into("<I", b, 12 + size - 4, zlib.crc32(bytes(b[12 : 12 + size - 4])))
    return bytes(b)


def test_lzma_header_asking_for_a_huge_dictionary_is_refused(model, checkpoint, tmp_path):
    data = compress_image(model, make_game_like_frame(50, 70, 3, 0), coder="lzma")
    s = bitstream.parse(data)
    forged = bitstream.pack(bitstream.Stream(s.arch, s.weights_hash, s.width, s.height, s.tile,
                                             s.coder, s.n_levels, [[_big_dictionary(s.strings[0][0])]]))
    with pytest.raises(CodecError, match="more than 64 MiB of decoder memory"):
        decompress_image(model, forged)
    # where address space is short, liblzma's allocation failed as a bare MemoryError; under
    # a 6 GiB cap (the command itself needs ~4.2 GB of it) the real stream decodes and the
    # forged one is a one-line error
    good, bad = tmp_path / "good.c3d", tmp_path / "bad.c3d"
    good.write_bytes(data)
    bad.write_bytes(forged)
    cap = 6 * 2**30
    rc, err, _, _ = _measured("decompress", good, "-m", checkpoint, "-o", tmp_path / "g.png",
                              address_space=cap)
    assert rc == 0, err[-2000:]
    rc, err, _, _ = _measured("decompress", bad, "-m", checkpoint, "-o", tmp_path / "b.png",
                              address_space=cap)
    assert rc == 1 and "Traceback" not in err and "decoder memory" in err, err[-2000:]


def test_outputs_below_a_file_are_refused_before_any_work(checkpoint, legit, tmp_path, run_cli):
    path, _ = legit
    blocker = tmp_path / "frame.png"
    blocker.write_bytes(b"a file")
    src = tmp_path / "src.png"
    from cloud3d.imageio import write_png

    write_png(src, make_game_like_frame(40, 40, 1, 0))
    for args in (("decompress", path, "-m", checkpoint, "-o", blocker / "x.png"),
                 ("compress", src, "-m", checkpoint, "-o", blocker / "sub" / "x.c3d")):
        r = run_cli(*args)
        assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr[-2000:]
        assert f"{blocker} is a file, not a folder" in r.stderr
    assert blocker.read_bytes() == b"a file"


@pytest.mark.parametrize("option,value", [("--lr", "-1"), ("--val-every", "0"),
                                          ("--lambda", "0"), ("--steps", "0"), ("--batch", "0"),
                                          ("--val-images", "0"), ("--threads", "-1"),
                                          ("--warmup", "-1"), ("--cache-gb", "0")])
def test_train_refuses_out_of_range_options_before_starting(tmp_path, run_cli, option, value):
    r = run_cli("train", tmp_path, "--app", "toy", "--out", tmp_path / "run", option, value)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert f"Invalid value for '{option}'" in r.stderr
    assert not (tmp_path / "run").exists()

