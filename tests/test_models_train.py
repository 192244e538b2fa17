"""Training (fixed and variable rate), checkpoints, the compress/decompress/train CLI, the
``learned`` baselines codec and the training benchmark scripts.

One tiny real dataset (PNG files + manifest) and two short real training runs of
c2f-xsmall-pruned (CPU, 64x64 crops: fixed-rate, and variable-rate with a 3-point ladder) are
shared by the tests of this module; it is one module (a little over 400 lines) so that those
runs are made once.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from helpers import CLI, ROOT, make_game_like_frame
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
           "--val-every", "8", "--device", "cpu", "--threads", "1"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=400)
    assert p.returncode == 0, p.stderr[-2000:]
    return out


def test_training_lowers_the_loss_and_writes_checkpoints_and_log(run_dir):
    from models.train_step import lr_at

    log = pd.read_csv(run_dir / "log.csv")
    train = log[log.phase == "train"]
    val = log[log.phase == "validation"]
    assert list(train.step) == list(range(1, STEPS + 1))
    assert list(val.step) == [0, 8, 16]  # step 0: untrained baseline
    assert train.loss.iloc[-4:].mean() < 0.5 * train.loss.iloc[:4].mean()
    assert val.loss.iloc[-1] < 0.7 * val.loss.iloc[0]
    assert (run_dir / "best.pt").is_file() and (run_dir / "last.pt").is_file()
    # the default schedule: plateau at --lr (no warm-up for so few steps), then a decay over
    # the last 10% of the steps (here 1) to lr/100
    expected = [lr_at(s - 1, STEPS, 1e-3, "plateau", 0, decay=1) for s in train.step]
    np.testing.assert_allclose(train.lr, expected, rtol=1e-9)
    assert (train.lr.iloc[:-1] == 1e-3).all() and train.lr.iloc[-1] == pytest.approx(1e-5)
    assert train.gpx.iloc[-1] == pytest.approx(STEPS * 2 * 64 * 64 / 1e9)
    assert (run_dir / "plateau.pt").is_file()
    assert (train["lambda"] == 0.01).all() and val["quality"].isna().all()


def test_resume_continues_from_last_step(run_dir, dataset):
    from models.train import TrainConfig, train

    cfg = TrainConfig(dataset=str(dataset), out=str(run_dir), app="toy", arch="c2f-xsmall-pruned",
                      lmbda=0.01, steps=STEPS + 2, batch=2, crop=64, lr=1e-3, val_every=100,
                      schedule="constant", threads=1, device="cpu", progress=False)
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


def test_init_starts_from_other_weights_with_fresh_optimizers(run_dir, dataset, tmp_path):
    from models.checkpoint import load_checkpoint, read_checkpoint
    from models.train import TrainConfig, train
    from models.train_step import evaluate

    src, _ = load_checkpoint(run_dir / "best.pt")
    cfg = TrainConfig(dataset=str(dataset), out=str(tmp_path / "ft"), app="toy",
                      arch="c2f-xsmall-pruned", lmbda=0.01, steps=1, batch=2, crop=64, lr=1e-9,
                      val_every=100, threads=1, device="cpu", progress=False,
                      init=str(run_dir / "best.pt"))
    train(cfg)
    # step 0 validates the model as it starts: the trained one, not a fresh initialisation
    log = pd.read_csv(tmp_path / "ft" / "log.csv")
    start = log[(log.phase == "validation") & (log.step == 0)].loss.iloc[0]
    from cloud3d_dataset.torch_dataset import FrameBank
    bank = FrameBank(dataset, "validation", app="toy", crop=None, limit=cfg.val_images)
    assert start == pytest.approx(evaluate(src, bank, torch.device("cpu"), cfg.val_images,
                                           lmbda=0.01)[0]["loss"], rel=1e-5)
    fresh = pd.read_csv(run_dir / "log.csv")
    assert start < 0.7 * fresh[(fresh.phase == "validation") & (fresh.step == 0)].loss.iloc[0]
    ck = read_checkpoint(tmp_path / "ft" / "last.pt")
    # best.pt's step: STEPS, or later when the resume test's last validation beat it
    src_step = read_checkpoint(run_dir / "best.pt")["meta"]["step"]
    assert ck["meta"]["init"] == {"ref": str(run_dir / "best.pt"), "kind": "checkpoint",
                                  "step": src_step, "app": "toy",
                                  "gpx_seen": pytest.approx(src_step * 2 * 64 * 64 / 1e9)}
    # the pixels seen add up along the chain: the source's and this run's one step
    assert ck["meta"]["gpx_seen"] == pytest.approx((src_step + 1) * 2 * 64 * 64 / 1e9)
    assert ck["optimizer"]["state"][0]["step"] == 1  # Adam starts over: one step taken
    bad = TrainConfig(**{**cfg.__dict__, "out": str(tmp_path / "bad"), "arch": "c2f-small-pruned"})
    with pytest.raises(Cloud3dError, match="must be the same"):
        train(bad)
    with pytest.raises(Cloud3dError, match="no such checkpoint file, and not a model name"):
        train(TrainConfig(**{**cfg.__dict__, "out": str(tmp_path / "b2"), "init": "nope.pt"}))


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
    assert dec.rgb.shape == rgb.shape
    assert set(dec.details) == {"network_s", "entropy_s", "container_s"}
    from models.checkpoint import load_checkpoint
    from models.codec import decompress_image

    np.testing.assert_array_equal(dec.rgb, decompress_image(load_checkpoint(ck)[0], enc.data))
    with pytest.raises(ValueError, match="no such checkpoint"):
        parse_codec_spec("learned:checkpoint=/nonexistent/x.pt")
    with pytest.raises(ValueError, match="coder"):
        parse_codec_spec(f"learned:checkpoint={ck};coder=zip")


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_ctrl_c_saves_the_current_step_and_resume_continues_cleanly(dataset, tmp_path, sig):
    """SIGINT or SIGTERM mid-run (no periodic save yet) keeps the steps done in last.pt;
    --resume goes on from there with one log row per step. The run starts with SIGINT
    ignored, as a background job of a script (``cmd &``) does."""
    import os
    import signal
    import time

    from models.checkpoint import read_checkpoint

    out = tmp_path / "r"
    cmd = [*CLI, "train", str(dataset), "--app", "toy",
           "--arch", "c2f-xsmall-pruned", "--out", str(out), "--batch", "2", "--crop", "64",
           "--threads", "1", "--device", "cpu", "--val-every", "100000", "--steps", "100000"]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    log = out / "log.csv"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and p.poll() is None:
        if log.exists() and len(log.read_text().splitlines()) >= 1 + 1 + 3:  # header, val, 3 steps
            break
        time.sleep(0.2)
    try:
        assert p.poll() is None, p.stderr.read()[-2000:]
        os.kill(p.pid, getattr(signal, sig))
        _, err = p.communicate(timeout=120)
    finally:  # a failed wait must not leave a 100000-step training behind
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 130, err[-2000:]
    assert "continue with --resume" in err and "Traceback" not in err
    step = read_checkpoint(out / "last.pt")["meta"]["step"]
    assert step >= 3
    assert not (out / "best.pt").exists()  # nothing was validated, so nothing is "best"

    from models.train import TrainConfig, train

    res = train(TrainConfig(dataset=str(dataset), out=str(out), app="toy",
                            arch="c2f-xsmall-pruned", steps=step + 2, batch=2, crop=64,
                            val_every=100000, threads=1, device="cpu", resume=True,
                            progress=False))
    assert res["step"] == step + 2
    steps = list(pd.read_csv(log).query("phase == 'train'").step)
    assert steps == list(range(1, step + 3))


def _weights(path: Path) -> dict[str, torch.Tensor]:
    from models.checkpoint import read_checkpoint

    return read_checkpoint(path)["state_dict"]


def _assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k


def test_a_signal_inside_an_optimizer_step_waits_for_the_step_to_end(dataset, tmp_path,
                                                                    monkeypatch):
    """SIGTERM delivered right after the optimizer has updated the weights, before the step is
    counted and logged (the window a loaded machine can hit): the run stops after that step,
    and --resume still ends with the unbroken run's weights and losses."""
    import os
    import signal

    import models.train as mt
    from models.checkpoint import read_checkpoint
    from models.train import TrainConfig, train

    common = dict(dataset=str(dataset), app="toy", arch="c2f-xsmall-pruned", steps=6, batch=2,
                  crop=64, lr=1e-3, val_every=100000, threads=1, device="cpu", progress=False,
                  seed=3)
    train(TrainConfig(out=str(tmp_path / "whole"), **common))
    real, calls = mt.train_step, []

    def then_sigterm(*args, **kwargs):
        vals = real(*args, **kwargs)  # the weights have moved; the step is not counted yet
        calls.append(1)
        if len(calls) == 3:
            os.kill(os.getpid(), signal.SIGTERM)
        return vals

    monkeypatch.setattr(mt, "train_step", then_sigterm)
    out = tmp_path / "broken"
    with pytest.raises(KeyboardInterrupt, match="SIGTERM"):
        train(TrainConfig(out=str(out), **common))
    assert read_checkpoint(out / "last.pt")["meta"]["step"] == 3  # the step it was in counts
    monkeypatch.setattr(mt, "train_step", real)
    train(TrainConfig(out=str(out), resume=True, **common))
    _assert_same_weights(tmp_path / "whole" / "last.pt", out / "last.pt")
    t1, t2 = (pd.read_csv(d / "log.csv").query("phase == 'train'").reset_index(drop=True)
              for d in (tmp_path / "whole", out))
    pd.testing.assert_series_equal(t1.loss, t2.loss)


def test_a_killed_and_resumed_run_ends_where_an_unbroken_one_does(dataset, tmp_path):
    """Issue 21: SIGTERM at whatever step a loaded machine reaches, then --resume, gives the
    weights of the same run done in one go (per-step seeds, optimizer states in last.pt)."""
    import os
    import signal
    import time

    from models.train import TrainConfig, train

    steps = 40
    common = dict(dataset=str(dataset), app="toy", arch="c2f-xsmall-pruned", steps=steps,
                  batch=2, crop=64, lr=1e-3, val_every=15, threads=1, device="cpu",
                  progress=False, seed=7)
    train(TrainConfig(out=str(tmp_path / "whole"), **common))
    out = tmp_path / "broken"
    cmd = [*CLI, "train", str(dataset), "--app", "toy", "--arch", "c2f-xsmall-pruned",
           "--out", str(out), "--batch", "2", "--crop", "64", "--lr", "1e-3", "--threads", "1",
           "--device", "cpu", "--val-every", "15", "--steps", str(steps), "--seed", "7"]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    log = out / "log.csv"
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline and p.poll() is None:
            if log.exists() and len(log.read_text().splitlines()) >= 1 + 1 + 4:
                break
            time.sleep(0.05)
        assert p.poll() is None, "the run ended before it could be killed"
        os.kill(p.pid, signal.SIGTERM)
        p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 130
    train(TrainConfig(out=str(out), resume=True, **common))
    _assert_same_weights(tmp_path / "whole" / "last.pt", out / "last.pt")
    whole, broken = (pd.read_csv(d / "log.csv") for d in (tmp_path / "whole", out))
    t1, t2 = (d[d.phase == "train"].reset_index(drop=True) for d in (whole, broken))
    pd.testing.assert_series_equal(t1.loss, t2.loss)
    pd.testing.assert_series_equal(t1.lr, t2.lr)


def test_resume_with_more_steps_continues_from_the_undecayed_plateau(dataset, tmp_path):
    """A plateau run that has decayed, extended with --resume to more steps, goes back to
    plateau.pt and ends with the weights of a run planned that long from the start."""
    from models.checkpoint import read_checkpoint
    from models.train import TrainConfig, train

    common = dict(dataset=str(dataset), app="toy", arch="c2f-xsmall-pruned", batch=2, crop=64,
                  lr=1e-3, val_every=10, threads=1, device="cpu", progress=False, warmup=0,
                  decay=5)
    short = tmp_path / "short"
    train(TrainConfig(out=str(short), steps=20, **common))
    assert read_checkpoint(short / "plateau.pt")["meta"]["step"] == 15
    train(TrainConfig(out=str(short), steps=30, resume=True, **common))
    train(TrainConfig(out=str(tmp_path / "long"), steps=30, **common))
    _assert_same_weights(tmp_path / "long" / "last.pt", short / "last.pt")
    lr = pd.read_csv(short / "log.csv").query("phase == 'train'").set_index("step").lr
    assert list(lr.index) == list(range(1, 31))  # the decayed steps 16..20 were dropped
    assert (lr.loc[1:25] == 1e-3).all() and lr.loc[30] == pytest.approx(1e-5)
    assert read_checkpoint(short / "last.pt")["meta"]["gpx_seen"] == \
        pytest.approx(30 * 2 * 64 * 64 / 1e9)


def test_a_deadline_brings_the_end_and_the_decay_forward(dataset, tmp_path):
    """A plateau run that cannot reach --steps by its deadline ends sooner, decayed, with
    plateau.pt saved before the decay (what a lap on a busier machine than planned needs)."""
    import time

    from models.checkpoint import read_checkpoint
    from models.train import TrainConfig, train

    out = tmp_path / "d"
    res = train(TrainConfig(dataset=str(dataset), out=str(out), app="toy",
                            arch="c2f-xsmall-pruned", steps=100_000, batch=2, crop=64,
                            lr=1e-3, warmup=0, decay=4, val_every=10**9, threads=1,
                            device="cpu", progress=False, deadline=time.time() + 8))
    meta = read_checkpoint(out / "last.pt")["meta"]
    assert 4 < res["step"] < 100_000 and meta["steps_total"] == res["step"]
    assert read_checkpoint(out / "plateau.pt")["meta"]["step"] == meta["decay_start"]
    lr = pd.read_csv(out / "log.csv").query("phase == 'train'").lr
    assert lr.iloc[-1] == pytest.approx(1e-5) and (lr.iloc[: meta["decay_start"]] == 1e-3).all()


def test_cuda_training_with_amp_and_cpu_use_of_its_checkpoint(dataset, tmp_path, cuda_device):
    """bf16-autocast training steps on the GPU lower the loss; the checkpoint then codes on CPU."""
    from models.checkpoint import load_checkpoint
    from models.codec import compress_image, decompress_image
    from models.train import TrainConfig, train

    out = tmp_path / "gpu"
    train(TrainConfig(dataset=str(dataset), out=str(out), app="toy", arch="c2f-xsmall-pruned",
                      steps=24, batch=2, crop=64, lr=1e-3, val_every=12,
                      device="cuda", progress=False))
    log = pd.read_csv(out / "log.csv")
    train_rows = log[log.phase == "train"]
    assert np.isfinite(train_rows.loss).all()
    assert train_rows.loss.iloc[-4:].mean() < 0.7 * train_rows.loss.iloc[:4].mean()
    m, _ = load_checkpoint(out / "best.pt")
    rgb = make_game_like_frame(50, 70, 3, 0)
    assert decompress_image(m, compress_image(m, rgb, device="cpu"), device="cpu").shape == rgb.shape


# ---- learning-rate schedule, loss, variable rate ---------------------------------------------


def test_lr_schedule_warms_up_then_decays_by_cosine():
    from models.train_step import lr_at

    lrs = [lr_at(s, 100, 1e-3, "cosine", warmup=10) for s in range(100)]
    assert lrs[:3] == pytest.approx([1e-4, 2e-4, 3e-4]) and lrs[9] == pytest.approx(1e-3)
    assert all(b <= a for a, b in zip(lrs[9:], lrs[10:], strict=False))  # non-increasing
    assert lrs[-1] == pytest.approx(1e-5, rel=0.05)  # reaches min_lr_ratio * lr at the end
    mid = lr_at(55, 100, 1e-3, "cosine", warmup=10)  # half-way through the decay
    assert mid == pytest.approx(1e-3 * (0.01 + 0.99 * 0.5))
    assert lr_at(500, 100, 1e-3, "cosine", 10) == pytest.approx(1e-5)  # held past the end
    assert {lr_at(s, 100, 1e-3, "constant", 5) for s in range(5, 100)} == {1e-3}
    with pytest.raises(ValueError, match="schedule"):
        lr_at(0, 10, 1e-3, "linear")


def test_plateau_schedule_is_constant_then_decays_over_the_last_steps_only():
    from models.train_step import lr_at

    lrs = [lr_at(s, 100, 1e-3, "plateau", warmup=10, decay=20) for s in range(100)]
    assert lrs[:2] == pytest.approx([1e-4, 2e-4])
    assert set(lrs[9:80]) == {1e-3}  # constant until the decay
    assert all(b < a for a, b in zip(lrs[80:], lrs[81:], strict=False))
    assert lrs[-1] == pytest.approx(1e-5)  # the last step runs at min_lr_ratio * lr
    # extending the run moves the decay: the constant part is the same function of the step
    assert [lr_at(s, 200, 1e-3, "plateau", 10, decay=20) for s in range(180)] == \
        [lr_at(s, 180, 1e-3, "constant", 10) for s in range(180)]


def test_per_sample_lambdas_weigh_each_crops_loss():
    """With one lambda for all the loss is the compressai formula; with per-sample lambdas
    each crop's distortion gets its own weight."""
    from models.train_step import rd_loss

    torch.manual_seed(0)
    x = torch.rand(3, 3, 8, 8)
    x_hat = x + 0.1 * torch.randn_like(x)
    lik = {"y": torch.rand(3, 4, 2, 2).clamp_min(0.05), "z": torch.rand(3, 2, 1, 1).clamp_min(0.05)}
    out = {"x_hat": x_hat, "likelihoods": lik}
    r = rd_loss(out, x, 0.01)
    bpp = sum(torch.log2(v).sum() for v in lik.values()) / (-3 * 64)
    torch.testing.assert_close(r["bpp"], bpp)
    torch.testing.assert_close(r["loss"], 0.01 * 255**2 * torch.mean((x_hat - x) ** 2) + bpp)
    lam = torch.tensor([0.001, 0.01, 0.1])
    per = rd_loss(out, x, lam)
    mse_i = ((x_hat - x) ** 2).mean(dim=(1, 2, 3))
    torch.testing.assert_close(per["loss"], (lam * 255**2 * mse_i).mean() + bpp)


def test_variable_rate_model_contract():
    from models.architectures import create_model
    from models.variable_rate import DEFAULT_LAMBDAS, sample_qualities

    m = create_model("c2f-xsmall-pruned-vr")
    assert m.num_qualities == len(DEFAULT_LAMBDAS) and m.lambdas == DEFAULT_LAMBDAS
    assert m.config() == {"lambdas": list(DEFAULT_LAMBDAS)}
    fixed = create_model("c2f-xsmall-pruned")
    assert fixed.num_qualities == 0 and fixed.lambdas == () and fixed.gain_unit is None
    # fixed-rate weights are unchanged: the variable-rate model only adds the gain tables
    assert set(m.state_dict()) - set(fixed.state_dict()) == {"gain.log_gain", "gain.log_inv_gain"}
    assert set(fixed.state_dict()) <= set(m.state_dict())
    x = torch.rand(2, 3, 64, 64)
    m.eval()
    with torch.no_grad():
        y2 = m.latents(x, 2)[0]
        y5 = m.latents(x, 5)[0]
        g = m.gain_unit.log_gain.exp()
        torch.testing.assert_close(y5 / y2, (g[5] / g[2])[None, :, None, None].expand_as(y2),
                                   rtol=1e-4, atol=1e-4)
        per_sample = m(x, torch.tensor([2, 5]))
        assert per_sample["x_hat"].shape == x.shape
        torch.testing.assert_close(per_sample["x_hat"][1:], m(x[1:], 5)["x_hat"])
        # inverse gain before the synthesis
        torch.testing.assert_close(m.synthesis(y2, 2), m.g_s(y2 / g[2][None, :, None, None]),
                                   rtol=1e-4, atol=1e-5)
    for bad, match in ((None, "pass a quality"), (7, "out of range"), (-1, "out of range"),
                       (1.5, "must be an int"), (torch.tensor([0.5]), "integer tensor")):
        with pytest.raises(ValueError, match=match):
            m(x, bad)
    with pytest.raises(ValueError, match="fixed-rate"):
        fixed.latents(x, 0)
    with pytest.raises(ValueError, match="ascending"):
        create_model("c2f-xsmall-pruned-vr", lambdas=[0.02, 0.01])
    q = sample_qualities(14, 7, torch.Generator().manual_seed(1))
    assert sorted(q.tolist()) == sorted(list(range(7)) * 2)  # stratified: each twice


VR_LADDER = "0.002,0.02,0.2"
VR_STEPS = 150


@pytest.fixture(scope="module")
def vr_run(dataset, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("vr") / "r"
    cmd = [*CLI, "train", str(dataset), "--app", "toy", "--arch", "c2f-xsmall-pruned",
           "--variable-rate", "--lambdas", VR_LADDER, "--out", str(out),
           "--steps", str(VR_STEPS), "--batch", "3", "--crop", "64", "--lr", "2e-3",
           "--val-every", str(VR_STEPS), "--device", "cpu", "--threads", "1"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    return out


def test_variable_rate_training_orders_rate_and_quality(vr_run):
    """One real training run of a variable-rate model: at the end, a higher quality index
    spends more bits and gives a higher PSNR on the validation frames (eval mode), and the
    trained gains keep the ladder's order."""
    from models.checkpoint import load_checkpoint

    log = pd.read_csv(vr_run / "log.csv")
    val = log[log.phase == "validation"]
    assert list(val.step) == [0, 0, 0, VR_STEPS, VR_STEPS, VR_STEPS]
    end = val[val.step == VR_STEPS].sort_values("quality")
    assert list(end.quality) == [0, 1, 2]
    assert list(end["lambda"]) == [0.002, 0.02, 0.2]
    assert end.bpp.is_monotonic_increasing and end.bpp.iloc[-1] > 1.5 * end.bpp.iloc[0]
    assert end.psnr.is_monotonic_increasing and end.psnr.iloc[-1] > end.psnr.iloc[0] + 1.0
    start = val[val.step == 0]
    assert end.loss.mean() < 0.7 * start.loss.mean()
    m, meta = load_checkpoint(vr_run / "best.pt")
    assert m.arch == "c2f-xsmall-pruned-vr" and m.lambdas == (0.002, 0.02, 0.2)
    assert meta["lambda"] is None and meta["lambdas"] == [0.002, 0.02, 0.2]
    assert [p["quality"] for p in meta["metrics"]["per_quality"]] == [0, 1, 2]
    mean_gain = m.gain_unit.log_gain.mean(1)
    assert mean_gain[0] < mean_gain[1] < mean_gain[2]
    with pytest.raises(Cloud3dError, match="architecture c2f-xsmall-pruned-vr, not c2f-xsmall-pruned"):
        load_checkpoint(vr_run / "best.pt", arch="c2f-xsmall-pruned")


def test_fixed_rate_checkpoints_still_load_and_code(run_dir):
    from models.checkpoint import load_checkpoint
    from models.codec import compress_image, decompress_image

    m, meta = load_checkpoint(run_dir / "best.pt")
    assert m.num_qualities == 0 and meta["lambda"] == 0.01 and meta["config"] == {}
    rgb = make_game_like_frame(64, 64, 4, 0)
    assert decompress_image(m, compress_image(m, rgb)).shape == rgb.shape


def test_variable_rate_resume_and_cli_errors(vr_run, dataset, tmp_path, run_cli):
    from models.train import TrainConfig, train

    cfg = TrainConfig(dataset=str(dataset), out=str(vr_run), app="toy",
                      arch="c2f-xsmall-pruned-vr", lambdas=(0.002, 0.02, 0.4), steps=VR_STEPS + 1,
                      batch=3, crop=64, resume=True, threads=1, device="cpu", progress=False)
    with pytest.raises(Cloud3dError, match="lambdas"):
        train(cfg)
    cfg.lambdas = (0.002, 0.02, 0.2)
    assert train(cfg)["step"] == VR_STEPS + 1
    base = ["train", dataset, "--app", "toy", "--out", tmp_path / "x", "--steps", "1"]
    for extra, match in ((["--variable-rate", "--lambda", "0.01"], "--lambda is for fixed-rate"),
                         (["--lambdas", "0.1,0.2"], "add --variable-rate"),
                         (["--variable-rate", "--lambdas", "0.2,0.1"], "ascending"),
                         (["--variable-rate", "--lambdas", "a,b"], "comma-separated numbers"),
                         (["--crop", "96"], "not a multiple of c2f-small-pruned's stride")):
        p = run_cli(*base, *extra)
        assert p.returncode == 1, p.stderr
        lines = p.stderr.strip().splitlines()
        assert lines[-1].startswith("error:") and match in lines[-1] and "Traceback" not in p.stderr


def test_benchmark_scripts_run_on_a_real_dataset(dataset, run_dir, vr_run):
    """benchmarks/train_speed.py and benchmarks/vr_cost.py end to end on the tiny dataset
    (one step per row: whether they run and print their tables, not how fast)."""
    speed = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "train_speed.py"), str(dataset), "--app", "toy",
         "--arch", "c2f-xsmall-pruned", "--crops", "64", "--batches", "2", "--steps", "1",
         "--warmup", "0", "--rounds", "1", "--settings", "data=png,workers=0,threads=1",
         "data=bank,threads=1", "data=bank,threads=1,vr=1,layout=cl,adam=loop"],
        capture_output=True, text=True, timeout=600)
    assert speed.returncode == 0, speed.stderr[-2000:]
    out = speed.stdout
    assert "a PNG decoded per crop" in out and "frame bank" in out
    assert out.count("threads=1") == 3 and "forward cpu" in out and "steps/s" in out
    cost = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "vr_cost.py"), str(dataset), "--app", "toy",
         "--split", "validation", "--fixed", str(run_dir / "best.pt"), "--vr",
         str(vr_run / "best.pt"), "--real"],
        capture_output=True, text=True, timeout=600)
    assert cost.returncode == 0, cost.stderr[-2000:]
    assert "fixed λ=0.01" in cost.stdout and "VR q=2" in cost.stdout
    assert "real bpp" in cost.stdout and "BD-rate of VR" in cost.stdout


def test_train_bundled_calibrates_then_resumes_to_a_shared_step_count(dataset, tmp_path):
    """benchmarks/train_bundled.py on the CPU with two tiny runs of one group: a calibration,
    then both resumed to one step count for the group, which both reach."""
    runs = tmp_path / "runs"
    p = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "train_bundled.py"), str(dataset), "--out",
         str(runs), "--budget", "50", "--calibrate", "12", "--batch", "2", "--crop", "64",
         "--warmup", "5", "--val-images", "1", "--threads", "1", "--device", "cpu",
         "--run", "a:toy:c2f-xsmall-pruned-vr:g", "--run", "b:all:c2f-xsmall-pruned-vr:g"],
        capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    assert "calibration:" in p.stdout and "steps/s" in p.stdout
    # one step count for the group (at least the calibration's; how many more depends on the
    # machine's speed), and both runs reached it
    planned = dict(kv.split() for kv in p.stdout.split("steps: ", 1)[1].splitlines()[0].split(", "))
    assert planned["a"] == planned["b"] and int(planned["a"]) >= 12, p.stdout
    for name in ("a", "b"):
        log = pd.read_csv(runs / name / "log.csv")
        assert int(log[log.phase == "train"].step.max()) == int(planned[name])
        assert (runs / name / "best.pt").is_file()
