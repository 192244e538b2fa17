"""The bench runner on real PNG datasets, real codecs, a real process pool and SQLite.

Besides the registry codecs (jpeg, webp) the tests use the small real codec of
``plugin_codecs.py``, which a subprocess plugs into the registry, so the CLI's
resume and Ctrl-C behaviour is exercised with tasks slow enough to be interrupted
mid-run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import CLI, H, W, make_dataset, plugin_cli_argv, rows, wait_rows
from plugin_codecs import QuantZlibCodec

from baselines.bench.runner import BenchOptions, run_bench
from baselines.bench.store import ResultsStore
from baselines.bench.tasks import quality_slug
from baselines.codecs.registry import CodecSpec
from cloud3d.errors import Cloud3dError
from cloud3d.imageio import read_png_rgb, write_png
from cloud3d_dataset.manifest import index_dataset


# -- helpers -----------------------------------------------------------------------------------
def spec(**opts) -> CodecSpec:
    return CodecSpec(cls=QuantZlibCodec, options=opts, qualities=[1, 3])


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    d = (a.astype(float) - b.astype(float)) ** 2
    return 10 * np.log10(255**2 / d.mean())


@pytest.fixture()
def dataset(tmp_path):
    return make_dataset(tmp_path / "ds")


# -- tests -------------------------------------------------------------------------------------
def test_local_run_metrics_and_resume(dataset, tmp_path):
    res = tmp_path / "r.sqlite"
    s = run_bench(dataset, [spec()], res,
                  BenchOptions(workers=2, progress=False, keep=tmp_path / "keep"))
    assert (s.total, s.ok, s.failed, s.skipped) == (12, 12, 0, 0)
    got = rows(res)
    assert len(got) == 12 and {r["split"] for r in got} == {"test"}
    for r in got:
        ref = read_png_rgb(dataset / r["relpath"])
        kept_stream = next((tmp_path / "keep").rglob(Path(r["relpath"]).stem + ".bin"), None)
        assert kept_stream is not None
        # independent recomputation: bpp from the bitstream, PSNR from the kept reconstruction
        b = int(r["quality"])
        rec = QuantZlibCodec().decode(QuantZlibCodec().encode(ref, b))
        assert r["bytes"] == len(QuantZlibCodec().encode(ref, b))
        assert r["bpp"] == pytest.approx(8 * r["bytes"] / (W * H))
        assert r["psnr_rgb"] == pytest.approx(psnr(ref, rec), abs=1e-9)
        assert 0 < r["ms_ssim"] < 1 and r["status"] == "ok" and r["error"] is None
        assert r["width"] == W and r["height"] == H and r["host"]
    kept = sorted((tmp_path / "keep").rglob("*.rec.png"))
    assert len(kept) == 12 and read_png_rgb(kept[0]).shape == (H, W, 3)
    # resume: nothing recomputed, nothing duplicated
    s2 = run_bench(dataset, [spec()], res, BenchOptions(workers=2, progress=False))
    assert (s2.ok, s2.skipped) == (0, 12)
    assert rows(res) == got
    with ResultsStore(res, readonly=True) as st:
        runs = st.runs()
    assert len(runs) == 2 and runs["machine"].iloc[0]["cores"] == os.cpu_count()
    assert runs["summary"].iloc[1]["skipped"] == 12


def test_failing_image_and_corrupt_png_recorded(dataset, tmp_path):
    # one image trips the codec; another is a truncated PNG (indexed from its header only)
    img = read_png_rgb(dataset / "test/beta-720p/1.png")
    img[0, 0, 0] = 7
    write_png(dataset / "test/beta-720p/1.png", img)
    full = (dataset / "test/alpha-720p/2.png").read_bytes()
    (dataset / "test/alpha-720p/2.png").write_bytes(full[: len(full) // 2])
    index_dataset(dataset, progress=False)
    res = tmp_path / "r.sqlite"
    s = run_bench(dataset, [spec(fail_marker=7)], res, BenchOptions(workers=2, progress=False))
    assert (s.ok, s.failed) == (8, 4)
    failed = [r for r in rows(res) if r["status"] == "failed"]
    assert {r["relpath"] for r in failed} == {"test/beta-720p/1.png", "test/alpha-720p/2.png"}
    errs = {r["relpath"]: r["error"] for r in failed}
    assert "refusing image" in errs["test/beta-720p/1.png"]
    assert "corrupt or truncated" in errs["test/alpha-720p/2.png"]
    assert all(r["bytes"] is None for r in failed)
    # failed tasks are retried (and fail again), unless told not to
    ids = {r["id"] for r in failed}
    s2 = run_bench(dataset, [spec(fail_marker=7)], res,
                   BenchOptions(workers=1, progress=False, retry_failed=False))
    assert (s2.ok, s2.failed, s2.skipped) == (0, 0, 12)
    s3 = run_bench(dataset, [spec(fail_marker=7)], res, BenchOptions(workers=1, progress=False))
    assert (s3.ok, s3.failed, s3.skipped) == (0, 4, 8)
    assert len(rows(res)) == 12 and {r["id"] for r in rows(res) if r["status"] == "failed"} == ids


def test_timeout_recorded_and_run_continues(dataset, tmp_path):
    res = tmp_path / "r.sqlite"
    sp = CodecSpec(cls=QuantZlibCodec, options={"sleep": 20.0}, qualities=[2])
    t0 = time.monotonic()
    s = run_bench(dataset, [sp], res,
                  BenchOptions(workers=2, progress=False, timeout=0.5, apps=["alpha"], limit=2))
    assert time.monotonic() - t0 < 15
    assert (s.failed, s.timeouts) == (2, 2)
    assert all(r["error"].startswith("timeout") for r in rows(res))


def test_watchdog_gives_up_on_a_hung_worker(dataset, tmp_path, monkeypatch):
    import baselines.bench.executor as executor

    monkeypatch.setattr(executor, "WATCHDOG_GRACE_S", 1.0)
    res = tmp_path / "r.sqlite"
    hung = CodecSpec(cls=QuantZlibCodec, options={"hang": 30.0}, qualities=[2])
    t0 = time.monotonic()
    s = run_bench(dataset, [hung, spec()], res,
                  BenchOptions(workers=2, progress=False, timeout=0.5, apps=["alpha"], limit=1))
    assert time.monotonic() - t0 < 20
    assert (s.ok, s.failed, s.timeouts) == (2, 1, 1)
    (bad,) = [r for r in rows(res) if r["status"] == "failed"]
    assert "timeout: no result after" in bad["error"] and '"hang":30.0' in bad["params"]


def test_spec_validation_before_any_work(dataset, tmp_path):
    res = tmp_path / "r.sqlite"
    with pytest.raises(Cloud3dError, match="unknown codec 'nope'; known codecs: .*jpeg"):
        run_bench(dataset, ["nope:q=1"], res)
    with pytest.raises(Cloud3dError, match=r"q=500 out of range 1\.\.100"):
        run_bench(dataset, ["jpeg:q=20,500"], res)
    with pytest.raises(Cloud3dError, match="no --codec"):
        run_bench(dataset, [], res)
    assert not res.exists()
    env = {**os.environ, "PATH": "/usr/bin:/bin", "CLOUD3D_BPG_DIR": str(tmp_path / "none")}
    p = subprocess.run(
        [*CLI, "bench", str(dataset), "--codec", "jpeg:q=50",
         "--codec", "bpg:qp=30", "--results", str(res)],
        capture_output=True, text=True, timeout=120, env=env,
    )
    assert p.returncode == 1
    assert "error: codec bpg is not available here" in p.stderr and "bpgenc" in p.stderr
    assert not res.exists()


def test_cli_real_codecs_corrupt_png_exit_code(dataset, tmp_path):
    full = (dataset / "test/beta-720p/0.png").read_bytes()
    (dataset / "test/beta-720p/0.png").write_bytes(full[: len(full) - 200])
    index_dataset(dataset, progress=False)
    res = tmp_path / "r.sqlite"
    cmd = [*CLI, "bench", str(dataset), "--codec", "jpeg:q=30,70",
           "--codec", "webp:q=50", "--results", str(res), "--workers", "2", "--quiet"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert p.returncode == 1, p.stderr
    assert "15 ok, 3 failed" in p.stdout and "test/beta-720p/0.png" in p.stderr
    got = rows(res)
    assert len(got) == 18
    for r in got:
        if r["status"] != "ok":
            continue
        ref = read_png_rgb(dataset / r["relpath"])
        assert r["codec_version"].startswith("Pillow")
        assert r["bpp"] == pytest.approx(8 * r["bytes"] / (W * H))
        assert 20 < r["psnr_rgb"] < 60 and r["mse"] == pytest.approx(255**2 / 10 ** (r["psnr_rgb"] / 10))
        assert ref.shape == (H, W, 3)


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
def test_killed_run_resumes_without_duplicates(dataset, tmp_path, sig):
    res = tmp_path / "r.sqlite"
    args = ["bench", str(dataset), "--codec", "test-quant:bits=1,2,3,4;sleep=0.25", "--results", str(res),
            "--workers", "2", "--quiet"]
    proc = subprocess.Popen(plugin_cli_argv(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        wait_rows(res, 4, proc)
        os.killpg(proc.pid, sig)  # like Ctrl-C in a terminal: the whole process group
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    if sig == signal.SIGINT:
        assert proc.returncode == 130, err
        assert "interrupted" in err
    else:
        assert proc.returncode == -signal.SIGKILL
    before = {r["id"]: r for r in rows(res)}
    assert 4 <= len(before) < 24
    p = subprocess.run(plugin_cli_argv(args), capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert f"{24 - len(before)} ok, 0 failed, {len(before)} already done, 24 tasks" in p.stdout
    after = rows(res)
    assert len(after) == 24
    keys = {(r["image_sha256"], r["codec"], r["codec_version"], r["params"]) for r in after}
    assert len(keys) == 24
    for r in after:  # finished rows were not recomputed
        if r["id"] in before:
            assert r == before[r["id"]]


@pytest.mark.slow
def test_dask_local_cluster_matches_local_pool(dataset, tmp_path):
    distributed = pytest.importorskip("distributed")
    specs = ["jpeg:q=40,80", "webp:q=60"]
    local = tmp_path / "local.sqlite"
    s1 = run_bench(dataset, specs, local, BenchOptions(workers=2, progress=False))
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None, silence_logs=40) as cluster:
        dask_res = tmp_path / "dask.sqlite"
        s2 = run_bench(dataset, specs, dask_res,
                       BenchOptions(scheduler=cluster.scheduler_address, progress=False))
        sent = tmp_path / "sent.sqlite"
        s3 = run_bench(dataset, ["jpeg:q=40"], sent,
                       BenchOptions(scheduler=cluster.scheduler_address, progress=False,
                                    send_images=True))
    assert s1.ok == s2.ok == 18 and s3.ok == 6 and s1.failed == s2.failed == 0
    cols = ("image_sha256", "codec", "codec_version", "params", "bytes", "bpp", "psnr_rgb", "ms_ssim", "relpath")

    def table(p):
        return sorted(tuple(r[c] for c in cols) for r in rows(p))

    assert table(local) == table(dask_res)
    assert set(table(sent)) <= set(table(local))
    assert {json.loads(r["details"])["image_source"] for r in rows(sent)} == {"sent bytes"}
    assert {json.loads(r["details"])["image_source"] for r in rows(dask_res)} == {"path"}


def test_codecs_command_lists_available_and_unavailable(tmp_path, monkeypatch, capsys):
    from cloud3d.cli import main

    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    monkeypatch.setenv("CLOUD3D_BPG_DIR", str(tmp_path / "none"))
    main(["codecs"])
    out = capsys.readouterr().out
    assert "jpeg  [available]" in out and "q: libjpeg quality" in out and "1..100" in out
    assert "default  20,40,60,80,90" in out and "version  Pillow" in out
    assert "bpg  [UNAVAILABLE: bpgenc and bpgdec not found" in out
    assert "options  subsampling=444" in out


@pytest.mark.slow
def test_learned_codec_checkpoint_as_quality(dataset, tmp_path):
    """A (tiny, untrained) learned codec from models/ runs through the same runner and report."""
    pytest.importorskip("compressai")
    from baselines.report import write_report
    from models.architectures import create_model
    from models.checkpoint import save_checkpoint

    ckpt = save_checkpoint(tmp_path / "tiny.pt", create_model("bmshj2018-hyperprior", N=16, M=24))
    res = tmp_path / "r.sqlite"
    s = run_bench(dataset, [f"learned:checkpoint={ckpt};device=cpu", "jpeg:q=50,90"], res,
                  BenchOptions(workers=1, apps=["alpha"], limit=1, progress=False,
                               keep=tmp_path / "keep"))
    assert (s.ok, s.failed) == (3, 0), s.failures
    (r,) = [r for r in rows(res) if r["codec"] == "learned"]
    assert r["quality"] == str(ckpt.resolve()) and '"checkpoint_sha256":"' in r["params"]
    assert r["bpp"] == pytest.approx(8 * r["bytes"] / (W * H))
    kept = tmp_path / "keep" / "learned_device-cpu" / f"checkpoint{quality_slug(r['quality'])}"
    assert (kept / "test" / "alpha-720p" / "0.c3d").stat().st_size == r["bytes"]
    files = write_report(res, tmp_path / "rep", anchor="jpeg")
    d = json.loads((tmp_path / "rep" / "compressai" / "learned_device-cpu.json").read_text())
    assert d["results"]["quality"] == [str(ckpt.resolve())]
    assert files["index"].is_file()


@pytest.mark.slow
def test_app_specific_and_general_models_make_separate_curves(dataset, tmp_path):
    """Checkpoints name their curve by architecture and training app (or by label=), so an
    app-specific and a general model are never merged into one curve."""
    pytest.importorskip("compressai")
    import pandas as pd
    import torch

    from baselines.codecs.registry import parse_codec_spec
    from baselines.report import write_report
    from models.architectures import create_model
    from models.checkpoint import save_checkpoint

    def ck(name, app, seed):
        torch.manual_seed(seed)
        return save_checkpoint(tmp_path / f"{name}.pt", create_model("bmshj2018-hyperprior", N=16, M=24),
                               {"app": app, "lambda": 0.01})

    own, general, other = ck("own", "alpha", 0), ck("general", "all", 1), ck("other", "beta", 2)
    specs = [f"learned:checkpoint={own};device=cpu", f"learned:checkpoint={general};device=cpu",
             f"learned:checkpoint={own},{other};device=cpu;label=per-app"]
    res = tmp_path / "r.sqlite"
    s = run_bench(dataset, specs, res,
                  BenchOptions(workers=1, apps=["alpha"], limit=1, progress=False))
    assert (s.ok, s.failed) == (4, 0), s.failures
    own_label, general_label = ("learned-bmshj2018-hyperprior-alpha;device=cpu",
                                "learned-bmshj2018-hyperprior-all;device=cpu")
    labels = sorted({r["codec_label"] for r in rows(res)})
    assert labels == sorted([own_label, general_label, "per-app"])
    write_report(res, tmp_path / "rep", anchor=general_label)
    pq = pd.read_csv(tmp_path / "rep" / "per_quality.csv")
    assert sorted(pq.codec_label.unique()) == labels
    assert (pq.groupby("codec_label").size().to_dict()
            == {own_label: 1, general_label: 1, "per-app": 2})
    for bad in ("a b", "x" * 65, ""):
        with pytest.raises(ValueError, match="label"):
            parse_codec_spec(f"jpeg:q=50;label={bad}")
    assert parse_codec_spec("jpeg:q=50;label=jpeg-ref").label == "jpeg-ref"


def test_kept_files_of_same_named_checkpoints_do_not_collide(tmp_path):
    """Regression: ``--keep`` folders were named by a checkpoint's stem alone, so runs/a/best.pt
    and runs/b/best.pt wrote their bitstreams into the same folder."""
    a, b = str(tmp_path / "a" / "best.pt"), str(tmp_path / "b" / "best.pt")
    assert quality_slug(a) != quality_slug(b)
    assert quality_slug(a).startswith("best-") and quality_slug(a) == quality_slug(a)
    assert quality_slug(40) == "40" and quality_slug(0.5) == "0.5"
