"""cloud3d bench-folder: real tar, 7-Zip and zstd programs and real codecs on a small folder.

``CLOUD3D_REQUIRE_ARCHIVERS=1`` (CI) turns a missing ``7z`` or ``zstd`` from a skip into a
failure.
"""

from __future__ import annotations

import os
import shutil

import pandas as pd
import pytest
from helpers import make_dataset

from baselines.archive.folder_bench import run_folder_bench
from cloud3d.errors import Cloud3dError
from cloud3d_dataset.manifest import load_manifest


@pytest.fixture(scope="module")
def archivers():
    missing = [t for t in ("tar", "7z", "zstd") if shutil.which(t) is None]
    if missing:
        msg = f"{', '.join(missing)} not installed (apt-get install p7zip-full zstd)"
        if os.environ.get("CLOUD3D_REQUIRE_ARCHIVERS") == "1":
            pytest.fail(msg + "; CLOUD3D_REQUIRE_ARCHIVERS=1 requires them")
        pytest.skip(msg)


@pytest.fixture()
def dataset(tmp_path):
    return make_dataset(tmp_path / "ds", n=2, res="168p")


def test_archivers_and_codecs_on_one_folder(archivers, dataset, tmp_path):
    csv = tmp_path / "out" / "folder.csv"
    csv.parent.mkdir()
    lines = []
    df = run_folder_bench(dataset, split="test", methods=["tar", "7z", "zstd-3", "zstd-19", "webp-lossless",
                                                          "png-opt:level=0", "jpeg:q=60"],
                          csv_path=csv, repeat=2, progress=False, echo=lines.append)
    assert list(df["method"]) == ["tar", "7z", "zstd-3", "zstd-19", "webp-lossless:q=75",
                                  "png-opt:level=0", "jpeg:q=60"]
    files = load_manifest(dataset).query("split == 'test'")
    original = int(files["bytes"].sum())
    assert (df["files"] == 4).all() and (df["original_bytes"] == original).all()
    assert (df["pixels"] == (files["width"] * files["height"]).sum()).all()
    by = df.set_index("method")
    assert by.loc["tar", "compressed_bytes"] >= original  # tar only adds headers
    for m in ["tar", "7z", "zstd-3", "zstd-19", "webp-lossless:q=75", "png-opt:level=0"]:
        assert by.loc[m, "bit_exact"] == "yes" and by.loc[m, "lossless"]
    assert by.loc["jpeg:q=60", "bit_exact"] == "no"
    assert 20 < by.loc["jpeg:q=60", "mean_psnr"] < 60 and 0 < by.loc["jpeg:q=60", "mean_ms_ssim"] < 1
    assert by.loc["webp-lossless:q=75", "compressed_bytes"] < by.loc["tar", "compressed_bytes"]
    assert (df["compression_rate"] - df["original_bytes"] / df["compressed_bytes"]).abs().max() < 1e-9
    assert (df["total_s"] - df["compress_s"] - df["decompress_s"]).abs().max() < 1e-9
    assert (df["compress_s"] > 0).all() and (df["repeat"] == 2).all()
    assert df["runs_s"].str.count(";").eq(1).all()
    assert "7-Zip" in by.loc["7z", "version"] and "zstandard" in by.loc["zstd-19", "version"].lower()
    # the CSV loads with pandas and holds the same rows; the scratch folder is gone
    back = pd.read_csv(csv)
    assert list(back["method"]) == list(df["method"])
    assert [p.name for p in csv.parent.iterdir()] == ["folder.csv"]
    # a re-run keeps the rows and skips them; --force runs one again
    lines.clear()
    run_folder_bench(dataset, split="test", methods=["tar", "7z"], csv_path=csv, progress=False,
                     echo=lines.append)
    assert lines == [f"tar: already in {csv}, skipped", f"7z: already in {csv}, skipped"]
    df2 = run_folder_bench(dataset, split="test", methods=["tar"], csv_path=csv, force=True,
                           progress=False, echo=lines.append)
    assert len(df2) == 7 and len(pd.read_csv(csv)) == 7


@pytest.mark.slow
def test_learned_rows(archivers, dataset, tmp_path):
    from models.architectures import create_model
    from models.checkpoint import save_checkpoint

    ckpt = save_checkpoint(tmp_path / "tiny.pt", create_model("bmshj2018-hyperprior", N=16, M=24))
    df = run_folder_bench(dataset, split="test", app="alpha", methods=["learned-lzma", "learned-ans"],
                          checkpoint=str(ckpt), csv_path=tmp_path / "l.csv", progress=False,
                          echo=lambda s: None)
    assert list(df["method"]) == ["learned-lzma", "learned-ans"]
    assert (df["bit_exact"] == "no").all() and (df["mean_psnr"] > 0).all()
    assert (df["mean_ms_ssim"] > 0).all() and (df["compressed_bytes"] > 0).all()
    assert df["command"].str.contains("coder=lzma").iloc[0]
    # the same codec spelled as two specs that differ only in their options: two rows (they
    # used to share a label, and the second was skipped as "already in the CSV")
    specs = [f"learned:checkpoint={ckpt};coder={c}" for c in ("lzma", "ans")]
    df = run_folder_bench(dataset, split="test", app="alpha", methods=specs,
                          csv_path=tmp_path / "s.csv", progress=False, echo=lambda s: None)
    assert len(df) == 2 and df["method"].str.endswith(";coder=lzma").iloc[0]
    assert df["method"].str.endswith(";coder=ans").iloc[1]
    assert df["command"].str.contains("coder=ans").iloc[1]


def test_missing_program(dataset, tmp_path, run_cli):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "tar").symlink_to(shutil.which("tar"))
    env = {"PATH": str(bindir)}
    p = run_cli("bench-folder", dataset, "--method", "7z", "--out", tmp_path / "a.csv", env=env)
    assert p.returncode == 1 and "7z: `7z` is not installed (apt-get install p7zip-full" in p.stderr
    assert p.stderr.strip().count("\n") == 0
    p = run_cli("bench-folder", dataset, "--method", "tar", "--codec", "png:level=1", "--out",
                tmp_path / "b.csv", "--quiet", env=env)
    assert p.returncode == 0, p.stderr
    assert "tar:" in p.stdout and "png:level=1" in p.stdout and "size_MB" in p.stdout


def test_unknown_rows(dataset, tmp_path):
    with pytest.raises(Cloud3dError, match="needs --checkpoint"):
        run_folder_bench(dataset, methods=["learned-ans"], csv_path=tmp_path / "x.csv", progress=False)
    with pytest.raises(Cloud3dError, match="unknown codec"):
        run_folder_bench(dataset, methods=["rar"], csv_path=tmp_path / "x.csv", progress=False)


def test_relative_out_with_7z(archivers, dataset, tmp_path, run_cli):
    """A relative --out: 7-Zip runs inside the dataset folder, so the paths must be absolute
    first (it failed with exit 7 on '.folder.csv.work/7z/archive.7z.files')."""
    p = run_cli("bench-folder", dataset, "--method", "7z", "--out", "folder.csv", "--quiet",
                cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    df = pd.read_csv(tmp_path / "folder.csv")
    assert list(df["method"]) == ["7z"] and df["bit_exact"].all() and df["error"].isna().all()


def test_failing_archiver_is_a_failed_row(dataset, tmp_path, run_cli):
    """An archiver that exits non-zero (here a `7z` on PATH that always exits 2) is recorded as
    a failed row with its message; the other rows still run and are kept."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "tar").symlink_to(shutil.which("tar"))
    broken = bindir / "7z"
    broken.write_text("#!/bin/sh\necho 'ERROR: cannot open the archive' >&2\nexit 2\n")
    broken.chmod(0o755)
    env = {"PATH": str(bindir)}
    p = run_cli("bench-folder", dataset, "--method", "7z", "--method", "tar", "--out",
                tmp_path / "f.csv", "--quiet", env=env)
    assert p.returncode == 1
    assert p.stderr.strip().count("\n") == 0 and "7z failed" in p.stderr and "Traceback" not in p.stderr
    df = pd.read_csv(tmp_path / "f.csv")
    assert list(df["method"]) == ["7z", "tar"]
    assert "exit 2" in df["error"].iloc[0] and pd.isna(df["compressed_bytes"].iloc[0])
    assert df["bit_exact"].iloc[1] and pd.isna(df["error"].iloc[1])
