"""Bundled models: export from a checkpoint, the model card, listing, compress by name,
decompress without -m by the stream's weights hash, the bench round trip, and forged files.

Real files throughout: tiny real models (``helpers.tiny_model``) saved as real checkpoints,
exported to real ``.npz``/``.json`` bundles, coded to real ``.c3d`` streams by the real
``cloud3d`` command. The last test checks every model actually shipped in ``models/bundled``.
"""

from __future__ import annotations

import dataclasses
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from helpers import loud_latents, make_dataset, make_game_like_frame, rows, tiny_model

from cloud3d.errors import Cloud3dError, CodecError
from cloud3d.imageio import read_png_rgb, write_png
from cloud3d.provenance import sha256_file
from models import bitstream
from models.bundle import export_bundle, load_bundle, read_card
from models.checkpoint import load_checkpoint, save_checkpoint
from models.codec import compress_image, decompress_image, quantized_reconstruction, weights_hash
from models.library import BUNDLED_DIR, find_by_hash, open_model, scan_models

pytestmark = pytest.mark.filterwarnings("ignore:.*torch.jit.script.*:FutureWarning")

ARCH = "bmshj2018-hyperprior"  # N=32, M=48 in tiny_model: fast


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("ck")
    return save_checkpoint(folder / "best.pt", tiny_model(ARCH, seed=3),
                           {"app": "alpha", "step": 7, "lambda": 0.01})


@pytest.fixture()
def user_dir(tmp_path, monkeypatch) -> Path:
    d = tmp_path / "user-models"
    monkeypatch.setenv("CLOUD3D_MODEL_DIR", str(d))
    return d


@pytest.fixture()
def frame(tmp_path) -> tuple[Path, np.ndarray]:
    rgb = make_game_like_frame(70, 90, 4, 0.3)
    path = tmp_path / "frame.png"
    write_png(path, rgb)
    return path, rgb


def _card_json(path: Path) -> dict:
    return json.loads(path.read_text())


def _rewrite_card(card_path: Path, **fields) -> None:
    card = {**_card_json(card_path), **fields}
    card_path.write_text(json.dumps(card))


def test_cli_export_list_compress_and_decompress_without_m(checkpoint, user_dir, frame, run_cli,
                                                           tmp_path):
    src, rgb = frame
    extra = tmp_path / "extra.json"
    extra.write_text(json.dumps({"data": "toy frames", "command": "cloud3d train ...",
                                 "cpu_hours": 0.25, "test": {"alpha": {"bd_rate_vs_jpeg": -12.5}}}))
    r = run_cli("models", "export", checkpoint, "--name", "toy", "--card-json", extra)
    assert r.returncode == 0, r.stderr
    card = read_card(user_dir / "toy.json")
    assert card["cpu_hours"] == 0.25 and card["test"]["alpha"]["bd_rate_vs_jpeg"] == -12.5
    assert card["app"] == "alpha" and card["step"] == 7 and card["arch"] == ARCH
    assert card["weights_file_sha256"] == sha256_file(user_dir / "toy.npz")
    assert card["source"]["checkpoint_sha256"] == sha256_file(checkpoint)
    # nothing already written is lost: a second export of that name is refused
    again = run_cli("models", "export", checkpoint, "--name", "toy")
    assert again.returncode == 1 and again.stderr.startswith("error: ") and "--force" in again.stderr

    listed = run_cli("models")
    assert listed.returncode == 0, listed.stderr
    line = next(x for x in listed.stdout.splitlines() if x.startswith("toy "))
    assert "user" in line and ARCH in line and card["weights_sha256"][:12] in line
    assert open_model("toy")[1]["meta"] == card  # what `cloud3d models show toy` prints

    out = tmp_path / "f.c3d"
    r = run_cli("compress", src, "-m", "toy", "-o", out, "--device", "cpu")
    assert r.returncode == 0, r.stderr
    assert bitstream.parse(out.read_bytes()).weights_hash.hex() == card["weights_sha256"]
    r = run_cli("decompress", out, "-o", tmp_path / "f.png", "--device", "cpu")
    assert r.returncode == 0, r.stderr
    assert "user model toy" in r.stdout
    model, _ = load_bundle(user_dir / "toy.json")
    np.testing.assert_array_equal(read_png_rgb(tmp_path / "f.png"),
                                  quantized_reconstruction(model, rgb, device="cpu"))
    # -m also takes a card path (and a checkpoint path, as before)
    by_card, info = open_model(str(user_dir / "toy.json"))
    assert info["kind"] == "card" and weights_hash(by_card).hex() == card["weights_sha256"]


def test_unknown_hash_is_one_clear_error(checkpoint, user_dir, frame, run_cli, tmp_path):
    """A stream of a model that is neither bundled nor in the user folder: exit 1, one line
    naming the hash and the folder, no output file."""
    model, _ = load_checkpoint(checkpoint)
    out = tmp_path / "f.c3d"
    out.write_bytes(compress_image(model, frame[1], device="cpu"))
    r = run_cli("decompress", out, "-o", tmp_path / "f.png")
    assert r.returncode == 1
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("error: ")
    assert weights_hash(model).hex()[:12] in r.stderr and str(user_dir) in r.stderr
    assert "matches no bundled model" in r.stderr
    assert not (tmp_path / "f.png").exists()
    r = run_cli("compress", frame[0], "-m", "nosuch", "-o", out)
    assert r.returncode == 1 and "no model named 'nosuch'" in r.stderr


def test_float32_bundle_keeps_the_checkpoint_hash(checkpoint, user_dir, frame):
    """A float32 export holds the checkpoint's weights bit for bit: a stream made with the
    checkpoint decodes without the checkpoint, found by its hash."""
    card = read_card(export_bundle(checkpoint, "exact", user_dir, dtype="float32"))
    model, _ = load_checkpoint(checkpoint)
    assert card["weights_sha256"] == card["source"]["weights_sha256"] == weights_hash(model).hex()
    data = compress_image(model, frame[1], device="cpu")
    entry = find_by_hash(bitstream.parse(data).weights_hash)
    assert entry is not None and entry.name == "exact"
    np.testing.assert_array_equal(decompress_image(entry.load(), data, device="cpu"),
                                  decompress_image(model, data, device="cpu"))


def test_float16_export_round_trip(checkpoint, tmp_path, frame):
    """float16 halves the file; the bundle's parameters are the checkpoint's rounded to
    float16 (other weights, so another hash, recorded next to the checkpoint's), its streams
    round-trip, and its reconstructions stay close to the float32 model's."""
    c16 = export_bundle(checkpoint, "half", tmp_path, dtype="float16")
    c32 = export_bundle(checkpoint, "full", tmp_path, dtype="float32")
    assert (tmp_path / "half.npz").stat().st_size < 0.75 * (tmp_path / "full.npz").stat().st_size
    with np.load(tmp_path / "half.npz", allow_pickle=False) as z:
        assert z["g_a.0.weight"].dtype == np.float16
        assert z["entropy_bottleneck._quantized_cdf"].dtype == np.int32
    ref, _ = load_checkpoint(checkpoint)
    half, card = load_bundle(c16)
    params = dict(ref.named_parameters())
    for name, p in half.named_parameters():
        np.testing.assert_array_equal(p.detach().numpy(),
                                      params[name].detach().half().float().numpy())
    assert card["source"]["weights_sha256"] == read_card(c32)["weights_sha256"]
    assert card["weights_sha256"] != card["source"]["weights_sha256"]
    rgb = frame[1]
    data = compress_image(half, rgb, device="cpu")
    out = decompress_image(half, data, device="cpu")
    np.testing.assert_array_equal(out, quantized_reconstruction(half, rgb, device="cpu"))
    diff = np.abs(out.astype(int) - quantized_reconstruction(ref, rgb, device="cpu"))
    assert diff.mean() < 0.5, diff.mean()
    with pytest.raises(CodecError, match="other weights"):
        decompress_image(ref, data, device="cpu")


def _forge_npz(path: Path, arrays: dict, compressed: bool = False) -> None:
    (np.savez_compressed if compressed else np.savez)(path, **arrays)


def _arrays(npz: Path) -> dict:
    with np.load(npz, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


@pytest.fixture(scope="module")
def exported(checkpoint, tmp_path_factory) -> Path:
    """A float16 bundle ``m`` of the tiny checkpoint (the forgery tests copy it)."""
    return export_bundle(checkpoint, "m", tmp_path_factory.mktemp("bundle"), dtype="float16")


@pytest.mark.parametrize("defect", ["card-hash", "file-bytes", "compressed", "shape", "dtype",
                                    "extra-member", "huge-config", "not-json", "name",
                                    "truncated"])
def test_forged_bundles_are_refused(exported, tmp_path, defect):
    """Every defect is one Cloud3dError naming the file; none loads a model."""
    import shutil

    card_path = Path(shutil.copy(exported, tmp_path))
    npz = Path(shutil.copy(exported.with_suffix(".npz"), tmp_path))
    arrays = _arrays(npz)

    def reseal() -> None:  # a forger also fixes the file hash in the card
        _rewrite_card(card_path, weights_file_sha256=sha256_file(npz))

    match = {"card-hash": "forged or mismatched card", "file-bytes": "not the weights file",
             "compressed": "compressed", "shape": "shape", "dtype": "stored as",
             "extra-member": "unexpected", "huge-config": "above the limit",
             "not-json": "not a model card", "name": "card names the model",
             "truncated": "not a readable weights file"}[defect]
    if defect == "card-hash":
        _rewrite_card(card_path, weights_sha256="0" * 64)
    elif defect == "file-bytes":
        data = bytearray(npz.read_bytes())
        data[len(data) // 2] ^= 0xFF
        npz.write_bytes(bytes(data))
    elif defect == "compressed":
        _forge_npz(npz, arrays, compressed=True)
        reseal()
    elif defect == "shape":
        arrays["g_a.0.weight"] = arrays["g_a.0.weight"][:-1]
        _forge_npz(npz, arrays)
        reseal()
    elif defect == "dtype":
        arrays["entropy_bottleneck._quantized_cdf"] = arrays[
            "entropy_bottleneck._quantized_cdf"].astype(np.int64)
        _forge_npz(npz, arrays)
        reseal()
    elif defect == "extra-member":
        with zipfile.ZipFile(npz, "a") as zf:
            zf.writestr("notes.txt", "hello")
        reseal()
    elif defect == "huge-config":
        _rewrite_card(card_path, config={"N": 40000, "M": 40000})
    elif defect == "not-json":
        card_path.write_bytes(b"\x80not json")
    elif defect == "name":
        _rewrite_card(card_path, name="other")
    elif defect == "truncated":
        npz.write_bytes(npz.read_bytes()[:2000])
        reseal()
    with pytest.raises(Cloud3dError, match=match):
        load_bundle(card_path)


def test_listing_survives_a_broken_card_and_flags_a_hidden_name(checkpoint, user_dir):
    export_bundle(checkpoint, "good", user_dir)
    (user_dir / "broken.json").write_text("{")
    entries, problems = scan_models()
    assert "good" in [e.name for e in entries if e.origin == "user"]
    assert len(problems) == 1 and "broken.json" in problems[0]
    with pytest.raises(Cloud3dError, match="no such checkpoint file, and not a model name"):
        open_model(str(user_dir / "missing.pt"))
    for entry in [e for e in entries if e.origin == "bundled"][:1]:
        # a user model with a shipped model's name is listed as hidden, never used by name
        export_bundle(checkpoint, entry.name, user_dir)
        hidden = [e for e in scan_models()[0] if e.name == entry.name]
        assert [e.hidden for e in hidden] == [False, True] and hidden[0].origin == "bundled"


def test_stream_quality_field_and_old_streams(checkpoint, frame):
    """A fixed-rate stream without substreams is version 1; version 2 carries a quality index;
    a quality a model does not have is a clean CodecError, an impossible one a parse error."""
    model, _ = load_checkpoint(checkpoint)
    s = bitstream.parse(compress_image(model, frame[1], device="cpu"))
    assert s.parts is not None and s.quality is None
    s = dataclasses.replace(s, parts=None, substreams=0)  # one substream per level: as v1
    data = bitstream.pack(s)
    assert data[4] == 1 and np.array_equal(decompress_image(model, data, device="cpu"),
                                           quantized_reconstruction(model, frame[1], device="cpu"))
    s.quality = 3
    forged = bitstream.pack(s)
    assert forged[4] == 2 and len(forged) == len(data) + 1
    assert bitstream.parse(forged).quality == 3
    with pytest.raises(CodecError, match="records quality 3 but"):
        decompress_image(model, forged, device="cpu")
    body = bytearray(forged[:-4])
    body[4 + 4 + len(s.arch) + 32] = 255
    import struct
    import zlib
    bad = bytes(body) + struct.pack("<I", zlib.crc32(bytes(body)))
    with pytest.raises(CodecError, match="quality index 255"):
        bitstream.parse(bad)


@pytest.mark.slow
def test_bench_round_trip_with_a_named_model(checkpoint, user_dir, tmp_path):
    """`--codec learned:model=NAME` through the real runner: rows keyed by the weights,
    a curve named after the model, streams decoded by hash."""
    from baselines.bench.runner import BenchOptions, run_bench
    from baselines.codecs.registry import parse_codec_spec

    card = read_card(export_bundle(checkpoint, "toy", user_dir))
    spec = parse_codec_spec("learned:model=toy;device=cpu")
    assert spec.qualities == ["toy"] and spec.quality_param == "model"
    with pytest.raises(ValueError, match="no model named"):
        parse_codec_spec("learned:model=nosuch")
    with pytest.raises(ValueError, match="no qualities"):
        parse_codec_spec("learned:model=toy@2")
    dataset = make_dataset(tmp_path / "ds", apps=("alpha",), n=2)
    res = tmp_path / "r.sqlite"
    s = run_bench(dataset, ["learned:model=toy;device=cpu"], res,
                  BenchOptions(workers=1, progress=False, keep=tmp_path / "keep"))
    assert (s.ok, s.failed) == (2, 0), s.failures
    got = rows(res)
    assert {r["codec_label"] for r in got} == {"learned-toy;device=cpu"}
    assert all(r["quality_param"] == "model" and r["quality"] == "toy" for r in got)
    assert all(json.loads(r["params"])["weights_sha256"] == card["weights_sha256"] for r in got)
    kept = sorted((tmp_path / "keep").rglob("*.c3d"))
    assert len(kept) == 2
    # a kept stream decodes with the plain command, no -m: found by its hash
    model, _ = load_bundle(user_dir / "toy.json")
    img = read_png_rgb(dataset / "test" / "alpha-720p" / f"{kept[0].stem}.png")
    np.testing.assert_array_equal(decompress_image(model, kept[0].read_bytes(), device="cpu"),
                                  quantized_reconstruction(model, img, device="cpu"))


SHIPPED = sorted(BUNDLED_DIR.glob("*.json"))


@pytest.mark.parametrize("card_path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_every_shipped_model_loads_and_round_trips(card_path):
    """Each model in models/bundled: its card is valid, its weights hash to the card's
    sha256, and a small frame round-trips at its lowest and highest quality."""
    model, card = load_bundle(card_path)
    assert weights_hash(model).hex() == card["weights_sha256"]
    for key in ("app", "step", "data", "command", "cpu_hours", "test"):
        assert key in card, f"{card_path.name} lacks {key!r}"
    rgb = make_game_like_frame(64, 96, 5, 0.5)
    n = card["qualities"]
    for q in ([0, n - 1] if n else [None]):
        data = compress_image(model, rgb, device="cpu", quality=q)
        assert bitstream.parse(data).quality == q
        np.testing.assert_array_equal(decompress_image(model, data, device="cpu"),
                                      quantized_reconstruction(model, rgb, device="cpu",
                                                               quality=q))


VR_ARCH = "c2f-xsmall-pruned-vr"


@pytest.fixture(scope="module")
def vr_checkpoint(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("vr")
    return save_checkpoint(folder / "best.pt", tiny_model(VR_ARCH, seed=5, prepare=loud_latents),
                           {"app": "alpha", "step": 3})


@pytest.mark.slow
def test_variable_rate_bundle_records_its_quality(vr_checkpoint, user_dir, frame, run_cli,
                                                  tmp_path):
    """compress -m NAME --quality Q writes a version-2 stream holding Q; decompress without
    -m decodes it at Q; a forged quality byte is a one-line error."""
    card = read_card(export_bundle(vr_checkpoint, "vr", user_dir))
    n = card["qualities"]
    assert n > 2 and card["lambdas"] == sorted(card["lambdas"]) and len(card["lambdas"]) == n
    src, rgb = frame
    out = tmp_path / "q.c3d"
    r = run_cli("compress", src, "-m", "vr", "--quality", 1, "-o", out, "--device", "cpu")
    assert r.returncode == 0, r.stderr
    s = bitstream.parse(out.read_bytes())
    assert s.quality == 1 and out.read_bytes()[4] == 3
    r = run_cli("decompress", out, "-o", tmp_path / "q.png", "--device", "cpu")
    assert r.returncode == 0, r.stderr
    assert "quality 1" in r.stdout
    model, _ = load_bundle(user_dir / "vr.json")
    np.testing.assert_array_equal(read_png_rgb(tmp_path / "q.png"),
                                  quantized_reconstruction(model, rgb, device="cpu", quality=1))
    # another quality gives another stream and another picture
    assert compress_image(model, rgb, device="cpu", quality=n - 1) != out.read_bytes()
    # no quality, or one the model lacks, for a variable-rate model: one line each
    r = run_cli("compress", src, "-m", "vr", "-o", tmp_path / "x.c3d")
    assert r.returncode == 1 and f"quality 0..{n - 1}" in r.stderr
    r = run_cli("compress", src, "-m", "vr", "--quality", n, "-o", tmp_path / "x.c3d")
    assert r.returncode == 1 and f"quality 0..{n - 1}" in r.stderr
    s.quality = n
    forged = tmp_path / "forged.c3d"
    forged.write_bytes(bitstream.pack(s))
    r = run_cli("decompress", forged, "-o", tmp_path / "f.png")
    assert r.returncode == 1 and r.stderr.count("\n") == 1
    assert f"records quality {n} but {VR_ARCH} has qualities 0..{n - 1}" in r.stderr
    assert not (tmp_path / "f.png").exists()
    # a stream made before streams recorded the quality (version 1) decodes with a quality
    old = tmp_path / "old.c3d"
    old.write_bytes(bitstream.pack(dataclasses.replace(s, quality=None, parts=None, substreams=0)))
    with pytest.raises(Cloud3dError, match="give a quality"):
        decompress_image(model, old.read_bytes(), device="cpu")
    r = run_cli("decompress", old, "-o", tmp_path / "old.png", "--quality", 1, "--device", "cpu")
    assert r.returncode == 0, r.stderr
    np.testing.assert_array_equal(read_png_rgb(tmp_path / "old.png"),
                                  read_png_rgb(tmp_path / "q.png"))


@pytest.mark.slow
def test_bench_round_trip_over_qualities(vr_checkpoint, user_dir, tmp_path):
    """learned:model=NAME@Q and checkpoint=PATH@Q through the real runner; a variable-rate
    model without @Q means every quality."""
    from baselines.bench.runner import BenchOptions, run_bench
    from baselines.codecs.registry import parse_codec_spec

    card = read_card(export_bundle(vr_checkpoint, "vr", user_dir))
    n = card["qualities"]
    assert parse_codec_spec("learned:model=vr").qualities == [f"vr@{q}" for q in range(n)]
    ck = str(vr_checkpoint.resolve())
    assert parse_codec_spec(f"learned:checkpoint={vr_checkpoint}@2").qualities == [f"{ck}@2"]
    with pytest.raises(ValueError, match=f"qualities 0..{n - 1}"):
        parse_codec_spec(f"learned:model=vr@{n}")
    dataset = make_dataset(tmp_path / "ds", apps=("alpha",), n=1)
    res = tmp_path / "r.sqlite"
    specs = [f"learned:model=vr@0,vr@{n - 1};device=cpu",
             f"learned:checkpoint={vr_checkpoint}@0;device=cpu"]
    s = run_bench(dataset, specs, res, BenchOptions(workers=1, progress=False))
    assert (s.ok, s.failed) == (3, 0), s.failures
    got = {(r["codec_label"], r["quality"]): r for r in rows(res)}
    low, high = got[("learned-vr;device=cpu", "vr@0")], got[("learned-vr;device=cpu", f"vr@{n - 1}")]
    assert low["bytes"] < high["bytes"]
    assert json.loads(low["params"])["weights_sha256"] == card["weights_sha256"]
    (ck_row,) = [r for (label, q), r in got.items() if q == f"{ck}@0"]
    assert json.loads(ck_row["params"])["checkpoint_sha256"] == sha256_file(vr_checkpoint)
