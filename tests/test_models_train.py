"""Training, checkpoints, the compress/decompress/train CLI and the ``learned`` baselines codec.

One tiny real dataset (PNG files + manifest) and one short real training run of
c2f-xsmall-pruned (CPU, 64x64 crops) are shared by the tests of this module.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from helpers import CLI, make_game_like_frame
from PIL import Image

from cloud3d.cli import main as cli_main
from cloud3d.errors import Cloud3dError
from cloud3d.imageio import read_png_rgb, write_png
from cloud3d_dataset.manifest import index_dataset

# compressai calls torch.jit.script at import time (FutureWarning under recent torch)
pytestmark = pytest.mark.filterwarnings("ignore:.*torch.jit.script.*:FutureWarning")

STEPS = 16


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ds")
    for split, ns in (("train", range(0, 6)), ("validation", range(6, 8))):
        for n in ns:
            write_png(root / split / "toy-720p" / f"{n}.png", make_game_like_frame(64, 96, 3, n))
    index_dataset(root, progress=False)
    return root


@pytest.fixture(scope="module")
def run_dir(dataset, tmp_path_factory) -> Path:
    """A real `cloud3d train` run through the console script (subprocess)."""
    out = tmp_path_factory.mktemp("run") / "r"
    cmd = [*CLI, "train", str(dataset), "--app", "toy",
           "--arch", "c2f-xsmall-pruned", "--lambda", "0.01", "--out", str(out),
           "--steps", str(STEPS), "--batch", "2", "--crop", "64", "--lr", "1e-3",
           "--val-every", "8", "--workers", "0", "--device", "cpu"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=400)
    assert p.returncode == 0, p.stderr[-2000:]
    return out


def test_training_lowers_the_loss_and_writes_checkpoints_and_log(run_dir):
    log = pd.read_csv(run_dir / "log.csv")
    train = log[log.phase == "train"]
    val = log[log.phase == "validation"]
    assert list(train.step) == list(range(1, STEPS + 1))
    assert list(val.step) == [0, 8, 16]  # step 0: untrained baseline
    assert train.loss.iloc[-4:].mean() < 0.5 * train.loss.iloc[:4].mean()
    assert val.loss.iloc[-1] < 0.7 * val.loss.iloc[0]
    assert (run_dir / "best.pt").is_file() and (run_dir / "last.pt").is_file()


def test_resume_continues_from_last_step(run_dir, dataset):
    from models.train import TrainConfig, train

    cfg = TrainConfig(dataset=str(dataset), out=str(run_dir), app="toy", arch="c2f-xsmall-pruned",
                      lmbda=0.01, steps=STEPS + 2, batch=2, crop=64, lr=1e-3, val_every=100,
                      workers=0, device="cpu", progress=False)
    with pytest.raises(Cloud3dError, match="--resume"):
        train(cfg)
    cfg.resume = True
    res = train(cfg)
    assert res["step"] == STEPS + 2
    log = pd.read_csv(run_dir / "log.csv")
    assert list(log[log.phase == "train"].step)[-3:] == [STEPS, STEPS + 1, STEPS + 2]
    cfg.lmbda = 0.02
    with pytest.raises(Cloud3dError, match="lambda"):
        train(cfg)


def test_checkpoint_round_trip_and_wrong_architecture(run_dir, tmp_path):
    from models.checkpoint import load_checkpoint, save_checkpoint
    from models.codec import compress_image, weights_hash

    m, meta = load_checkpoint(run_dir / "best.pt")
    assert meta["arch"] == "c2f-xsmall-pruned" and meta["lambda"] == 0.01 and meta["app"] == "toy"
    assert "psnr" in meta["metrics"]
    save_checkpoint(tmp_path / "copy.pt", m, meta)
    m2, meta2 = load_checkpoint(tmp_path / "copy.pt", arch="c2f-xsmall-pruned")
    assert weights_hash(m) == weights_hash(m2)
    for k, v in m.state_dict().items():
        assert torch.equal(v, m2.state_dict()[k]), k
    rgb = make_game_like_frame(50, 70, 1, 0)
    assert compress_image(m, rgb) == compress_image(m2, rgb)
    with pytest.raises(Cloud3dError, match="architecture c2f-xsmall-pruned, not c2f-small"):
        load_checkpoint(run_dir / "best.pt", arch="c2f-small")
    (tmp_path / "junk.pt").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(Cloud3dError, match="cannot read checkpoint"):
        load_checkpoint(tmp_path / "junk.pt")
    with pytest.raises(Cloud3dError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "missing.pt")


def _cli(args: list[str]) -> int:
    try:
        cli_main([str(a) for a in args])
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def test_cli_compress_decompress_odd_gray_and_rgba_images(run_dir, tmp_path, capsys):
    ck = run_dir / "best.pt"
    rgb = make_game_like_frame(50, 70, 2, 0)
    inputs = {
        "odd.png": Image.fromarray(rgb),
        "gray.png": Image.fromarray(rgb[:, :, 1]),
        "rgba.png": Image.fromarray(np.dstack([rgb, np.full(rgb.shape[:2], 128, np.uint8)])),
    }
    for name, im in inputs.items():
        src = tmp_path / name
        im.save(src)
        out, rec = tmp_path / f"{name}.c3d", tmp_path / f"{name}.rec.png"
        assert _cli(["compress", src, "-m", ck, "-o", out, "--tile", "64"]) == 0
        cap = capsys.readouterr()
        assert f"{out.stat().st_size} bytes" in cap.out
        if name != "odd.png":  # the conversion is reported, not silent
            assert "note:" in cap.err and ("gray replicated" in cap.err or "alpha dropped" in cap.err)
        assert _cli(["decompress", out, "-m", ck, "-o", rec]) == 0
        assert read_png_rgb(rec).shape == (50, 70, 3)


def test_cli_errors_are_one_line(run_dir, tmp_path, capsys):
    ck = run_dir / "best.pt"
    src = tmp_path / "a.png"
    write_png(src, make_game_like_frame(40, 40, 1, 0))
    out = tmp_path / "a.c3d"
    assert _cli(["compress", src, "-m", ck, "-o", out]) == 0
    data = bytearray(out.read_bytes())
    data[len(data) // 2] ^= 0xFF
    bad = tmp_path / "bad.c3d"
    bad.write_bytes(bytes(data))
    capsys.readouterr()
    assert _cli(["decompress", bad, "-m", ck, "-o", tmp_path / "x.png"]) == 1
    err = capsys.readouterr().err
    assert "error:" in err and "checksum" in err and "Traceback" not in err
    assert not (tmp_path / "x.png").exists()
    assert _cli(["compress", src, "-m", src, "-o", tmp_path / "b.c3d"]) == 1
    assert "not a cloud3d model checkpoint" in capsys.readouterr().err
    assert _cli(["compress", src, "-m", ck, "-o", tmp_path / "b.c3d", "--tile", "100"]) == 1
    assert "multiple" in capsys.readouterr().err


def test_learned_codec_through_the_baselines_registry(run_dir):
    from baselines.codecs.registry import parse_codec_spec

    ck = str(run_dir / "best.pt")
    spec = parse_codec_spec(f"learned:checkpoint={ck};device=cpu;tile=64")
    assert spec.qualities == [ck]
    codec = spec.make()
    rgb = make_game_like_frame(50, 70, 9, 0)
    enc = codec.encode_timed(rgb, spec.qualities[0])
    assert enc.data[:4] == b"C3DL"
    assert enc.details["network_s"] > 0 and enc.details["entropy_s"] > 0
    dec = codec.decode_timed(enc.data)
    assert dec.rgb.shape == rgb.shape and set(dec.details) == {"network_s", "entropy_s"}
    from models.checkpoint import load_checkpoint
    from models.codec import decompress_image

    np.testing.assert_array_equal(dec.rgb, decompress_image(load_checkpoint(ck)[0], enc.data))
    with pytest.raises(ValueError, match="no such checkpoint"):
        parse_codec_spec("learned:checkpoint=/nonexistent/x.pt")
    with pytest.raises(ValueError, match="coder"):
        parse_codec_spec(f"learned:checkpoint={ck};coder=zip")


def test_ctrl_c_saves_the_current_step_and_resume_continues_cleanly(dataset, tmp_path):
    """SIGINT mid-run (no periodic save yet) keeps the steps done in last.pt; --resume goes on
    from there with one log row per step."""
    import os
    import signal
    import time

    from models.checkpoint import read_checkpoint

    out = tmp_path / "r"
    cmd = [*CLI, "train", str(dataset), "--app", "toy",
           "--arch", "c2f-xsmall-pruned", "--out", str(out), "--batch", "2", "--crop", "64",
           "--workers", "0", "--device", "cpu", "--val-every", "100000", "--steps", "100000"]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    log = out / "log.csv"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and p.poll() is None:
        if log.exists() and len(log.read_text().splitlines()) >= 1 + 1 + 3:  # header, val, 3 steps
            break
        time.sleep(0.2)
    assert p.poll() is None, p.stderr.read()[-2000:]
    os.kill(p.pid, signal.SIGINT)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 130, err[-2000:]
    assert "continue with --resume" in err and "Traceback" not in err
    step = read_checkpoint(out / "last.pt")["meta"]["step"]
    assert step >= 3
    assert not (out / "best.pt").exists()  # nothing was validated, so nothing is "best"

    from models.train import TrainConfig, train

    res = train(TrainConfig(dataset=str(dataset), out=str(out), app="toy",
                            arch="c2f-xsmall-pruned", steps=step + 2, batch=2, crop=64,
                            val_every=100000, workers=0, device="cpu", resume=True,
                            progress=False))
    assert res["step"] == step + 2
    steps = list(pd.read_csv(log).query("phase == 'train'").step)
    assert steps == list(range(1, step + 3))


def test_cuda_training_with_amp_and_cpu_use_of_its_checkpoint(dataset, tmp_path, cuda_device):
    """bf16-autocast training steps on the GPU lower the loss; the checkpoint then codes on CPU."""
    from models.checkpoint import load_checkpoint
    from models.codec import compress_image, decompress_image
    from models.train import TrainConfig, train

    out = tmp_path / "gpu"
    train(TrainConfig(dataset=str(dataset), out=str(out), app="toy", arch="c2f-xsmall-pruned",
                      steps=24, batch=2, crop=64, lr=1e-3, val_every=12, workers=0,
                      device="cuda", progress=False))
    log = pd.read_csv(out / "log.csv")
    train_rows = log[log.phase == "train"]
    assert np.isfinite(train_rows.loss).all()
    assert train_rows.loss.iloc[-4:].mean() < 0.7 * train_rows.loss.iloc[:4].mean()
    m, _ = load_checkpoint(out / "best.pt")
    rgb = make_game_like_frame(50, 70, 3, 0)
    assert decompress_image(m, compress_image(m, rgb, device="cpu"), device="cpu").shape == rgb.shape
