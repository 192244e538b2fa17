"""Training laps (issue 21): a lap continues the plan within a wall budget, validates against
JPEG with the real codec, and keeps improved weights as a preview bundle; a lap on a machine
without the run folder starts from the repository's weights. Real tiny runs on the CPU."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest
from helpers import make_game_like_frame

from cloud3d.imageio import write_png
from cloud3d_dataset.manifest import index_dataset

pytestmark = pytest.mark.filterwarnings("ignore:.*torch.jit.script.*:FutureWarning")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("lapds")
    for split, ns in (("train", range(0, 5)), ("validation", range(5, 7)), ("test", range(7, 9))):
        for n in ns:
            write_png(root / split / "toy-128p" / f"{n}.png", make_game_like_frame(128, 192, 3, n))
    index_dataset(root, progress=False)
    return root


def test_laps_continue_validate_keep_and_restart_from_the_repository(dataset, tmp_path):
    from models.bundle import read_card
    from models.checkpoint import read_checkpoint
    from models.lap import KEEP_GAIN_PCT, LapOptions, Stage, run_lap

    stage = Stage("toy", "toy", "c2f-xsmall-m96-pruned", 0.013)
    bundles, runs = tmp_path / "bundles", tmp_path / "runs"
    # fixed step counts (a loaded machine makes the budget-based count vary); the budget only
    # stops a lap that overruns it
    kw = dict(device="cpu", bundle_dir=bundles, batch=2, crop=64, threads=1, val_frames=2,
              progress=False)

    def opts(steps):
        return LapOptions(steps=steps, **kw)

    first = run_lap(str(dataset), runs, 600, stage=stage, options=opts(40))
    assert first["kept"] and first["gain_pct"] == math.inf  # nothing in the repository yet
    card = read_card(bundles / "toy.json")
    assert card["status"] == "preview" and card["arch"] == "c2f-xsmall-m96-pruned"
    assert card["step"] == first["step"] and card["validation"]["bpp"] == first["bpp"]
    assert card["gpx_seen"] == pytest.approx(first["step"] * 2 * 64 * 64 / 1e9)
    run = runs / "toy"
    assert read_checkpoint(run / "plateau.pt")["meta"]["step"] == 40 - 40 // 5

    second = run_lap(str(dataset), runs, 600, stage=stage, options=opts(30))
    plateau = read_checkpoint(run / "plateau.pt")["meta"]["step"]
    assert first["step"] == 40
    assert second["step"] == 32 + 30 and plateau == 62 - 6  # from the first plateau, 30 more
    lr = pd.read_csv(run / "log.csv").query("phase == 'train'").set_index("step").lr
    assert lr.index.is_unique and list(lr.index) == list(range(1, second["step"] + 1))
    # the decay of the first lap is gone: its steps ran again at the constant rate
    assert lr.loc[first["step"]] == lr.max()
    assert second["kept"] == (second["gain_pct"] is not None and second["gain_pct"] >= KEEP_GAIN_PCT)
    assert (read_card(bundles / "toy.json")["step"] == second["step"]) == second["kept"]
    laps = pd.read_csv(run / "laps.csv")
    assert list(laps.step) == [first["step"], second["step"]]

    # another machine: no run folder, so the lap starts from the bundled weights
    kept = read_card(bundles / "toy.json")
    third = run_lap(str(dataset), tmp_path / "elsewhere", 600, stage=stage, options=opts(10))
    meta = read_checkpoint(tmp_path / "elsewhere" / "toy" / "last.pt")["meta"]
    assert meta["init"]["ref"] == str(bundles / "toy.json")
    assert meta["gpx_seen"] == pytest.approx(kept["gpx_seen"] + third["step"] * 2 * 64 * 64 / 1e9)


def test_jpeg_interpolation_and_gain_rule():
    from models.lap import gain_over, jpeg_psnr_at, jpeg_rate_at

    pts = [(0.5, 30.0), (1.0, 33.0), (2.0, 36.0)]
    assert jpeg_rate_at(pts, 33.0) == pytest.approx(1.0)
    assert jpeg_rate_at(pts, 31.5) == pytest.approx(math.sqrt(0.5))  # half-way in log-rate
    assert jpeg_rate_at(pts, 40.0) is None and jpeg_psnr_at(pts, 5.0) is None
    assert jpeg_psnr_at(pts, 1.0) == pytest.approx(33.0)
    assert gain_over({"jpeg_saving_pct": -20.0}, {"jpeg_saving_pct": -15.0}) == 5.0
    assert gain_over(None, {"jpeg_saving_pct": None, "jpeg_dpsnr_db": -3.0}) == math.inf
    assert gain_over({"jpeg_saving_pct": None, "jpeg_dpsnr_db": -3.0},
                     {"jpeg_saving_pct": None, "jpeg_dpsnr_db": -2.5}) == pytest.approx(6.0)
    assert gain_over(None, {"jpeg_saving_pct": None, "jpeg_dpsnr_db": None}) == math.inf
    assert gain_over({"jpeg_saving_pct": None, "jpeg_dpsnr_db": -3.0},
                     {"jpeg_saving_pct": None, "jpeg_dpsnr_db": None}) is None


def test_study_benches_a_model_against_the_anchors_and_sets_its_status(dataset, tmp_path,
                                                                       monkeypatch):
    """`cloud3d models study` on a real (tiny, untrained) bundle in the user folder: real
    bench rows for it and the anchors, a models.csv row per app, and the card's status."""
    import sqlite3

    from baselines.model_study import status_of
    from models.bundle import read_card
    from models.lap import LapOptions, Stage, run_lap

    models_dir = tmp_path / "mine"
    run_lap(str(dataset), tmp_path / "runs", 600, stage=Stage("toy", "toy", "c2f-xsmall-pruned", 0.013),
            options=LapOptions(bundle_dir=models_dir, batch=2, crop=64, threads=1, val_frames=1,
                               steps=10, progress=False))
    monkeypatch.setenv("CLOUD3D_MODEL_DIR", str(models_dir))
    import subprocess

    from helpers import cli_argv
    r = subprocess.run(cli_argv("models", "study", dataset, "--out", tmp_path / "study",
                                "--model", "toy", "--update-cards", "--workers", "1"),
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    table = pd.read_csv(tmp_path / "study" / "models.csv")
    assert list(table["model"]) == ["toy"] and list(table["app"]) == ["toy"]
    with sqlite3.connect(tmp_path / "study" / "results.sqlite") as db:
        got = dict(db.execute("SELECT codec_label, AVG(bpp) FROM results WHERE status = 'ok' "
                              "GROUP BY codec_label").fetchall())
    assert {"toy", "jpeg", "webp"} <= set(got)
    assert table["bpp"].iloc[0] == pytest.approx(got["toy"])  # bytes on disk, via bench
    assert (tmp_path / "study" / "report" / "index.html").is_file()
    card = read_card(models_dir / "toy.json")
    assert card["status"] == "preview" and card["test"]["rows"][0]["app"] == "toy"
    # the rule itself: >= 10% fewer bytes than JPEG on every app of the model
    rows = pd.DataFrame([{"model": "g", "app": a, "bd_rate_vs_jpeg_pct": float("nan"),
                          "saving_vs_jpeg_pct": s} for a, s in (("x", 12.0), ("y", 10.5))])
    assert status_of({"name": "g", "app": "all"}, rows) == "reference"
    rows.loc[1, "saving_vs_jpeg_pct"] = 9.0
    assert status_of({"name": "g", "app": "all"}, rows) == "preview"
    assert status_of({"name": "g", "app": "x"}, rows) == "reference"


def test_pack_fits_its_budget_and_restores_to_a_dataset_a_lap_reads(dataset, tmp_path, run_cli):
    from cloud3d_dataset.manifest import load_manifest
    from cloud3d_dataset.torch_dataset import FrameBank

    r = run_cli("pack", dataset, "-o", tmp_path / "pack.tar", "--budget-mb", "0.15", "--quiet")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "pack.tar").stat().st_size <= 0.15e6
    assert "128 px windows" in r.stdout and "mean_psnr" in r.stdout
    r = run_cli("unarchive", tmp_path / "pack.tar", "-o", tmp_path / "data", "--quiet")
    assert r.returncode == 0, r.stderr
    m = load_manifest(tmp_path / "data")
    assert set(m["split"]) == {"train", "validation"} and len(m) == 7
    assert set(m["width"]) == {128} and set(m["height"]) == {128}
    assert FrameBank(tmp_path / "data", "train", crop=64).sample(2).shape == (2, 3, 64, 64)
    r = run_cli("pack", dataset, "-o", tmp_path / "p2.tar", "--budget-mb", "0.01", "--quiet")
    assert r.returncode == 1 and "raise --budget-mb" in r.stderr and "Traceback" not in r.stderr


def test_throughput_sweep_picks_the_fastest_setting(capsys):
    """The GPU lap's sweep (run here on the CPU, tiny crops): every setting is tried within
    the budget and the one with the most Mpx/s is returned."""
    from models.lap import sweep_throughput

    settings = ((1, False), (2, False), (2, True))
    batch, channels_last, speed = sweep_throughput("c2f-xsmall-pruned", 64, "cpu", budget_s=120,
                                                   settings=settings)
    lines = [x for x in capsys.readouterr().out.splitlines() if "Mpx/s" in x]
    assert len(lines) == len(settings)
    best = max(float(x.split(":")[-1].split()[0]) for x in lines)
    assert (batch, channels_last) in settings and speed["mpx_per_s"] == pytest.approx(best, abs=0.01)
