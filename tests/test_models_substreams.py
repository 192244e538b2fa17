"""Container v3: rANS substreams decoded in parallel, exactly; old streams; forged tables.

Tiny seeded models (``tiny_model`` with loud latents) on tiny frames, CPU only. The encoder
normally keeps levels under 16,384 symbols whole (``substreams.MIN_SYMBOLS``); tests that
need cuts on tiny frames lower that policy, which the decoder never reads.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import loud_latents, make_game_like_frame, tiny_gain_model, tiny_model

from cloud3d.errors import CodecError
from cloud3d.imageio import read_png_rgb, write_png
from models import bitstream, rans, substreams
from models.codec import (
    _encode_tile,
    _latent_shapes,
    _pad,
    _rgb_to_tensor,
    _tiles,
    compress_image,
    decompress_image,
    prepare,
    quantized_reconstruction,
)
from models.entropy import decode_levels

pytestmark = pytest.mark.filterwarnings("ignore:.*torch.jit.script.*:FutureWarning")

FIXTURES = Path(__file__).parent / "data" / "c3d-v1v2"


@pytest.fixture(scope="module")
def rgb():
    return make_game_like_frame(50, 70, 11, 2)


@pytest.fixture(scope="module")
def models():
    return {a: prepare(tiny_model(a, 0, prepare=loud_latents), "cpu")
            for a in ("c2f-xsmall-pruned", "c2f-xsmall-pruned-msp")}


@pytest.fixture()
def cut_small(monkeypatch):
    """Cut this small frame's levels into substreams, and hand them to pool threads."""
    monkeypatch.setattr(substreams, "MIN_SYMBOLS", 1)
    monkeypatch.setattr(substreams, "POOL_MIN_SYMBOLS", 1)


def _levels(pm, rgb):
    x = _pad(_rgb_to_tensor(rgb), pm.stride)
    return x, _encode_tile(pm, x, False, None, {"network": 0.0, "entropy": 0.0})


def test_numba_coder_writes_compressai_bytes_and_reads_them_back(models, rgb):
    """Same symbols, indexes and tables: the same bytes as compressai's RansEncoder (escapes
    included), decoded back by the strict decoder, which ends exactly at the last word."""
    from compressai import ans

    pm = models["c2f-xsmall-pruned"]
    tb = pm.entropy.tables(0)
    rng = np.random.default_rng(0)
    n = 5000
    idx = rng.integers(0, len(tb.lengths), n).astype(np.int32)
    sym = (rng.standard_cauchy(n) * 5).clip(-10**6, 10**6).astype(np.int32)  # many escapes
    ours = rans.encode(sym, idx, tb.np_cdf, tb.np_lengths, tb.np_offsets)
    theirs = ans.RansEncoder().encode_with_indexes(sym.tolist(), idx.tolist(), tb.cdf,
                                                   tb.lengths, tb.offsets)
    assert ours == theirs
    words = rans.words_of(ours)
    state = rans.start_state(words)
    out = np.empty(n, np.int32)
    assert rans.decode_into(words, state, idx, tb.np_cdf, tb.np_lengths, tb.np_offsets,
                            out) == rans.OK
    assert np.array_equal(out, sym) and rans.finished(words, state)
    # the dequantizing form: the same symbols, and values = symbols + means as torch adds them
    means = np.round(rng.normal(0, 3, n) * 64) / 64
    state, out, values = rans.start_state(words), np.empty(n), np.empty(n)
    assert rans.decode_into(words, state, idx, tb.np_cdf, tb.np_lengths, tb.np_offsets,
                            out, means, values) == rans.OK
    assert np.array_equal(out, sym)
    expect = torch.from_numpy(sym).double() + torch.from_numpy(means)
    assert torch.equal(torch.from_numpy(values), expect)


def test_the_python_and_numba_decoders_agree_on_good_and_forged_strings(models):
    """Small strings decode in pure Python (no numba import for a small stream), large ones
    in the numba kernel: both give the same symbols, states and status codes, forged words
    included."""
    from models import rans_kernels

    pm = models["c2f-xsmall-pruned"]
    tb = pm.entropy.tables(0)
    rng = np.random.default_rng(1)
    n = 3000
    idx = rng.integers(0, len(tb.lengths), n).astype(np.int32)
    sym = (rng.standard_cauchy(n) * 5).clip(-10**6, 10**6).astype(np.int32)
    good = rans.words_of(rans.encode(sym, idx, tb.np_cdf, tb.np_lengths, tb.np_offsets))
    cases = [good, good[: len(good) // 2]]
    for _ in range(20):  # forged: random words after a valid start state
        w = rng.integers(0, 2**32, len(good), dtype=np.uint64).astype(np.uint32)
        w[:2] = good[:2]
        cases.append(w)
    bad_idx = idx.copy()
    bad_idx[7] = len(tb.lengths)
    means = rng.normal(0, 3, n)
    for words in cases:
        for ix in (idx, bad_idx):
            results = []
            for fn in (rans._decode_into_py, rans_kernels.decode_into):
                state, out = rans.start_state(words), np.zeros(n, np.int32)
                values = np.zeros(n)
                status = fn(words, state, ix, tb.np_cdf, tb.np_lengths, tb.np_offsets, out,
                            means, values)
                # values are only promised for a string that decodes
                results.append((status, state.tolist(), out.tolist(),
                                values.tolist() if status == rans.OK else None))
            assert results[0] == results[1]
    assert results[0][0] == rans.BAD_INDEX
    assert n <= rans.SMALL  # this size takes the Python path through decode_into


def test_a_threads_share_decodes_as_its_substreams_one_by_one(models):
    """``rans.decode_share`` (one kernel call for a thread's substreams) gives each substream's
    symbols, values, state and status as ``decode_into`` on that substream alone, and names
    the first substream that fails."""
    pm = models["c2f-xsmall-pruned"]
    tb = pm.entropy.tables(0)
    rng = np.random.default_rng(2)
    n, c = 3 * 5000, 3
    idx = rng.integers(0, len(tb.lengths), n).astype(np.int32)
    sym = (rng.standard_cauchy(n) * 5).clip(-10**6, 10**6).astype(np.int32)
    means = np.round(rng.normal(0, 3, n) * 64) / 64
    b = np.asarray(substreams.cuts(n, c), dtype=np.int64)
    blobs = [rans.encode(sym[b[j] : b[j + 1]], idx[b[j] : b[j + 1]], tb.np_cdf, tb.np_lengths,
                         tb.np_offsets) for j in range(c)]
    forged = bytearray(blobs[1])
    forged[len(forged) // 2 :] = bytes(len(forged) - len(forged) // 2)  # zeroed second half
    for blob_1 in (blobs[1], bytes(forged)):
        parts = [blobs[0], blob_1, blobs[2]]
        words = rans.words_of(b"".join(parts))
        starts = np.cumsum([0, *map(len, parts)], dtype=np.int64) // 4
        states = np.stack([rans.start_state(words[starts[j] : starts[j + 1]]) for j in range(c)])
        out, values = np.zeros(n), np.zeros(n)
        got = [rans.decode_share(words, starts, states, np.array(items, dtype=np.int64), idx, b,
                                 tb.np_cdf, tb.np_lengths, tb.np_offsets, out, means, values)
               for items in ([0, 2], [1])]
        for j in range(c):  # each substream alone
            w = words[starts[j] : starts[j + 1]]
            st, o, v = rans.start_state(w), np.zeros(n), np.zeros(n)
            lo, hi = b[j], b[j + 1]
            status = rans.decode_into(w, st, idx[lo:hi], tb.np_cdf, tb.np_lengths,
                                      tb.np_offsets, o[lo:hi], means[lo:hi], v[lo:hi])
            assert states[j].tolist() == st.tolist()
            if status == rans.OK:
                assert np.array_equal(out[lo:hi], o[lo:hi])
                assert np.array_equal(values[lo:hi], v[lo:hi])
                assert np.array_equal(out[lo:hi], sym[lo:hi])
            else:
                assert got[1] == (status, 1) and j == 1
        assert got[0] == (rans.OK, -1)
    assert got[1][0] != rans.OK  # the forged substream was refused


@pytest.mark.parametrize("path", ["python", "kernel"])
def test_every_k_and_thread_count_decodes_the_same_latents_and_pixels(models, rgb, cut_small,
                                                                      path, monkeypatch):
    """K = 1, 2, 3, 8 substreams (a progressive level too), each decoded on 1, 2 and 3
    threads: the encoder's symbols and dequantized latent every time, and the encoder's own
    reconstruction, the same at every torch thread count. ``kernel``: every pass through the
    numba kernel on the pool threads (this frame's passes are small enough for the
    pure-Python path otherwise)."""
    if path == "kernel":
        monkeypatch.setattr(rans, "SMALL", 0)
    before = torch.get_num_threads()
    try:
        for pm in models.values():
            x, enc = _levels(pm, rgb)
            shapes = _latent_shapes(pm, x.shape[2], x.shape[3])
            refs = {}
            for t in (1, 2, 3):
                torch.set_num_threads(t)
                refs[t] = quantized_reconstruction(pm, rgb)
            # g_s runs one torch thread per band on a CPU: no pixel depends on the setting
            assert all(np.array_equal(r, refs[1]) for r in refs.values())
            sizes = set()
            for k in (1, 2, 3, 8):
                data = compress_image(pm, rgb, substreams_k=k, threads=2)
                s = bitstream.parse(data)
                assert s.substreams == k and [len(p) for p in s.parts[0]] == [k, k]
                sizes.add(len(data))
                for t in (1, 2, 3):
                    dec = decode_levels(pm.entropy, shapes, s.strings[0], "ans",
                                        {"network": 0.0, "entropy": 0.0}, "s", s.parts[0],
                                        substreams.pool(t))
                    for a, b in zip(dec.symbols, enc.symbols, strict=True):
                        assert torch.equal(a, b)
                    assert torch.equal(dec.y_hat, enc.y_hat)
                    assert np.array_equal(decompress_image(pm, data, threads=t), refs[t])
            assert len(sizes) == 4  # each K really made another stream
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("name", ["pruned-v1.c3d", "pruned-tiles-v1.c3d", "msp-v1.c3d",
                                  "twolevel-v1.c3d", "vr-v2.c3d"])
def test_streams_of_container_v1_and_v2_decode_as_before(name):
    """Streams written by the code before version 3 decode to the symbols that code read from
    them (SHA-256 recorded then) and to the encoder's reconstruction."""
    expected = json.loads((FIXTURES / "expected.json").read_text())[name]
    model = tiny_gain_model(0) if expected["quality"] is not None else \
        tiny_model(expected["arch"], 0, prepare=loud_latents)
    pm = prepare(model, "cpu")
    data = (FIXTURES / name).read_bytes()
    s = bitstream.parse(data, name)
    assert s.version == expected["version"] and s.parts is None
    h = hashlib.sha256()
    for (*_, ph, pw), strings in zip(_tiles(s.width, s.height, s.tile, pm.stride), s.strings,
                                     strict=True):
        lv = decode_levels(pm.entropy, _latent_shapes(pm, ph, pw), strings, s.coder,
                           {"network": 0.0, "entropy": 0.0}, name)
        for sym in lv.symbols:
            h.update(sym.to(torch.int32).numpy().astype("<i4").tobytes())
    assert h.hexdigest() == expected["symbols_sha256"]
    src = read_png_rgb(FIXTURES / "source.png")
    assert np.array_equal(decompress_image(pm, data, threads=1),
                          quantized_reconstruction(pm, src, tile=expected["tile"],
                                                   quality=expected["quality"]))


def _v3_layout(data: bytes) -> tuple[int, int]:
    """Offsets of K and of the first substream length in a one-tile version-3 stream."""
    k_at = 8 + data[7] + 32 + 1 + 16
    return k_at, k_at + 1 + data[6]


def _recrc(body: bytes | bytearray) -> bytes:
    body = bytes(body)
    return body + struct.pack("<I", zlib.crc32(body))


def test_forged_substream_tables_are_one_line_errors(models, rgb, cut_small):
    pm = models["c2f-xsmall-pruned"]
    data = compress_image(pm, rgb, substreams_k=3)
    k_at, len_at = _v3_layout(data)
    assert data[4] == 3 and data[k_at] == 3 and list(data[k_at + 1 : len_at]) == [3, 3]

    def forged(edit) -> bytes:
        body = bytearray(data[:-4])
        edit(body)
        return _recrc(body)

    def refused(blob: bytes, match: str) -> None:
        with pytest.raises(CodecError, match=match) as err:
            decompress_image(pm, blob, threads=2)
        assert "\n" not in str(err.value)

    refused(forged(lambda b: b.__setitem__(k_at, 0)), "K must be 1..64")
    refused(forged(lambda b: b.__setitem__(k_at, 65)), "K must be 1..64")
    refused(forged(lambda b: b.__setitem__(k_at + 1, 0)), "each level has 1..3")
    refused(forged(lambda b: b.__setitem__(k_at + 1, 4)), "each level has 1..3")
    refused(forged(lambda b: b.__setitem__(k_at + 1, 2)), "add up to")  # one length too many
    refused(forged(lambda b: struct.pack_into("<I", b, len_at, 10**9)), "add up to")
    first = struct.unpack_from("<I", data, len_at)[0]
    second = struct.unpack_from("<I", data, len_at + 4)[0]
    # bytes moved from one substream to the next: lengths still add up, but not whole words
    refused(forged(lambda b: struct.pack_into("<II", b, len_at, first - 2, second + 2)),
            "whole 32-bit words")
    refused(forged(lambda b: struct.pack_into("<II", b, len_at, 4, first + second - 4)),
            "at least 8 bytes")
    # whole words moved: a substream ends early or has words left over
    refused(forged(lambda b: struct.pack_into("<II", b, len_at, first - 4, second + 4)),
            "substream [01].*(ends before|does not end|out of range)")
    # a flipped payload byte with the CRC made good again
    refused(forged(lambda b: b.__setitem__(len(b) - 9, b[len(b) - 9] ^ 0x5A)),
            "substream|out of range")
    # version 3 is rANS only
    refused(forged(lambda b: b.__setitem__(5, 1)), "rANS only")
    # a short substream cannot claim many symbols: the symbol bound per substream
    s = bitstream.parse(data)
    tiny = [b"\0" * 4 + struct.pack("<I", 1 << 31)] * 3  # 3 substreams of 8 bytes each
    thin = dataclasses.replace(s, strings=[[b"".join(tiny), s.strings[0][1]]],
                               parts=[[(8, 8, 8), s.parts[0][1]]])
    big = dataclasses.replace(thin, width=4096, height=2160)
    refused(bitstream.pack(big), "too few for the")


def test_cli_threads_and_substreams(run_cli, tmp_path):
    """compress --substreams 3 --threads 2 cuts y (36,864 symbols) in two and keeps z whole
    (the default policy: at least 16,384 symbols a substream); decompress --threads 1 reads
    it to the encoder's reconstruction; a thread count of 0 is refused before any work."""
    from models.checkpoint import load_checkpoint, save_checkpoint

    ckpt = save_checkpoint(tmp_path / "m.pt", tiny_model("c2f-xsmall-pruned", 0,
                                                         prepare=loud_latents), {"app": "x"})
    src, c3d, png = tmp_path / "f.png", tmp_path / "f.c3d", tmp_path / "out.png"
    frame = make_game_like_frame(384, 512, 4, 1)  # y: 24 x 32 x 48 symbols
    write_png(src, frame)
    r = run_cli("compress", src, "-m", ckpt, "-o", c3d, "--device", "cpu", "--threads", 2,
                "--substreams", 3)
    assert r.returncode == 0, r.stderr
    s = bitstream.parse(c3d.read_bytes())
    assert s.substreams == 3 and [len(p) for p in s.parts[0]] == [2, 1]
    r = run_cli("decompress", c3d, "-m", ckpt, "-o", png, "--device", "cpu", "--threads", 1)
    assert r.returncode == 0, r.stderr
    model, _ = load_checkpoint(ckpt)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        ref = quantized_reconstruction(model, frame, device="cpu")
    finally:
        torch.set_num_threads(before)
    assert np.array_equal(read_png_rgb(png), ref)
    r = run_cli("decompress", c3d, "-m", ckpt, "-o", tmp_path / "x.png", "--threads", 0)
    assert r.returncode != 0 and "--threads" in r.stderr and not (tmp_path / "x.png").exists()


def test_bench_learned_codec_takes_threads_and_substreams(models, rgb, tmp_path):
    from baselines.codecs.learned import LearnedCodec
    from models.checkpoint import save_checkpoint

    ckpt = save_checkpoint(tmp_path / "m.pt", models["c2f-xsmall-pruned"].model, {"app": "x"})
    codec = LearnedCodec(device="cpu", threads=2, substreams=2)
    enc = codec.encode_timed(rgb, str(ckpt))
    assert bitstream.parse(enc.data).substreams == 2 and "container_s" in enc.details
    assert "threads=2" in codec.version() and "c3d-v3" in codec.version()
    assert np.array_equal(codec.decode_timed(enc.data).rgb,
                          decompress_image(models["c2f-xsmall-pruned"], enc.data, threads=2))
    assert "threads" not in LearnedCodec(device="cpu").version()
    for bad in ({"threads": -1}, {"substreams": 65}, {"threads": 1.5}):
        with pytest.raises(ValueError, match="option"):
            LearnedCodec(**bad)


def _child_runs_pool() -> list[int]:
    return substreams.run(substreams.pool(2), lambda j: j * j, 4)


def test_a_forked_child_gets_working_substream_pools():
    """A process forked after its parent coded with a pool (bench workers) makes its own:
    work queued on the parent's pool, whose threads the child lacks, would never run."""
    import multiprocessing

    assert substreams.run(substreams.pool(2), lambda j: j + 1, 4) == [1, 2, 3, 4]
    with multiprocessing.get_context("fork").Pool(1) as child:
        assert child.apply_async(_child_runs_pool).get(timeout=60) == [0, 1, 4, 9]


def test_the_encoder_cuts_levels_too_small_for_k_into_an_even_count():
    m = substreams.MIN_SYMBOLS
    assert [substreams.substream_count(n, 4) for n in (m - 1, m, 2 * m, 3 * m, 4 * m, 9 * m)] == \
        [1, 1, 2, 2, 4, 4]
    assert substreams.substream_count(3 * m, 3) == 3  # a K the level fits is kept


def test_workers_run_every_item_on_the_caller_and_the_pool_and_wait_before_raising():
    """Three threads: the caller takes items 0, 3, 6, the pool's two threads the rest; an
    error in one item is raised only once every thread has finished its items."""
    import threading
    import time

    w = substreams.pool(3)
    seen: dict[int, str] = {}

    def item(j: int) -> int:
        seen[j] = threading.current_thread().name
        return j * 10

    assert w.map(item, 8) == [j * 10 for j in range(8)]
    main = threading.current_thread().name
    assert [j for j in range(8) if seen[j] == main] == [0, 3, 6]
    assert len({seen[j] for j in (1, 4, 7)}) == 1 and len({seen[j] for j in (2, 5)}) == 1

    done: list[int] = []

    def failing(j: int) -> None:
        if j == 0:
            raise ValueError("item 0")
        time.sleep(0.2)
        done.append(j)

    with pytest.raises(ValueError, match="item 0"):
        w.map(failing, 3)
    assert sorted(done) == [1, 2]


@pytest.mark.parametrize("command", ["compress", "decompress"])
def test_compress_and_decompress_make_idle_openmp_threads_sleep(tmp_path, command):
    """Both commands set OMP_WAIT_POLICY=PASSIVE before torch loads (a spinning OpenMP thread
    takes the core a substream thread needs), and leave a value the user set alone."""
    import os
    import subprocess
    import sys

    code = ("import os, sys\n"
            "from cloud3d.cli import cli\n"
            "try:\n"
            f"    cli([{command!r}, 'in.x', '-m', 'no-such-model', '-o', 'out.x'],"
            " standalone_mode=False)\n"
            "except Exception:\n"
            "    pass\n"
            "print(os.environ.get('OMP_WAIT_POLICY'))\n")
    (tmp_path / "in.x").write_bytes(b"not an image: the commands fail after the setting")
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    for preset, expect in ((None, "PASSIVE"), ("ACTIVE", "ACTIVE")):
        if preset:
            env["OMP_WAIT_POLICY"] = preset
        r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=120)
        assert r.stdout.strip().splitlines()[-1] == expect, r.stdout + r.stderr


def test_the_handoff_benchmark_runs_and_prints_its_passes():
    """benchmarks/substream_handoff.py wraps the coder's internals by name: it must still
    find them and print a pass table and the two speed-up lines."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    r = subprocess.run([sys.executable, str(root / "benchmarks" / "substream_handoff.py"),
                        "--res", "640x368", "--decodes", "2"], capture_output=True, text=True,
                       timeout=300, cwd=root)
    assert r.returncode == 0, r.stderr
    assert "median:" in r.stdout and "entropy phase: 1 thread" in r.stdout, r.stdout
    assert "whole decode: 1 thread" in r.stdout, r.stdout
