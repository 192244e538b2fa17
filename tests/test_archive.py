"""cloud3d archive / unarchive: real PNG folders, real codecs, real tar files, real processes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tarfile
import time

import numpy as np
import pytest
from helpers import CLI, ROOT, make_dataset, make_game_like_frame
from PIL import Image

from baselines.archive.container import MANIFEST_MEMBER, ArchiveReader
from baselines.archive.pack import archive_folder, pixel_sha256
from baselines.archive.unpack import MARKER, unarchive
from cloud3d.errors import Cloud3dError
from cloud3d.imageio import read_png_rgb, write_png
from cloud3d.provenance import sha256_file
from cloud3d_dataset.manifest import load_manifest
from cloud3d_dataset.verify import verify

LOSSLESS = ["raw", "png", "png-opt", "webp-lossless", "jpegxl-lossless"]


@pytest.fixture()
def dataset(tmp_path):
    return make_dataset(tmp_path / "ds", n=2, res="168p")


def _same_pixels(src, out):
    for row in load_manifest(src).itertuples():
        assert np.array_equal(read_png_rgb(src / row.path), read_png_rgb(out / row.path)), row.path


@pytest.mark.parametrize("spec", LOSSLESS)
def test_lossless_codecs_restore_every_pixel(dataset, tmp_path, spec):
    arc = tmp_path / "a.tar"
    s = archive_folder(dataset, arc, spec, progress=False)
    assert s.files == 5 and s.archive_bytes == arc.stat().st_size
    # a standard tar: GNU tar lists the manifest first, then one bitstream per file
    names = subprocess.run(["tar", "-tf", str(arc)], capture_output=True, text=True, check=True).stdout.split()
    assert names[0] == MANIFEST_MEMBER and len(names) == 6 and all(n.startswith("data/") for n in names[1:])
    out = tmp_path / "restored"
    u = unarchive(arc, out, progress=False)
    assert (u.restored, u.skipped) == (5, 0)
    _same_pixels(dataset, out)
    rep = verify(out, progress=False)  # the restored folder is a dataset again, 8-bit RGB PNGs
    assert rep.ok, rep.problems
    if spec == "raw":  # raw archives give back the very files
        for row in load_manifest(dataset).itertuples():
            assert sha256_file(out / row.path) == row.sha256


def test_manifest_records_names_sizes_and_hashes(dataset, tmp_path):
    arc = tmp_path / "a.tar"
    archive_folder(dataset, arc, "webp-lossless:q=50;method=2", split="test", app="alpha", progress=False)
    with ArchiveReader(arc) as r:
        codec, entries = r.body["codec"], r.entries
        assert codec["name"] == "webp-lossless" and codec["quality"] == 50 and codec["lossless"]
        assert "libwebp" in codec["version"] or "webp" in codec["version"]
        rows = load_manifest(dataset)
        rows = rows[(rows.split == "test") & (rows.app == "alpha")]
        assert [e["path"] for e in entries] == list(rows.path)
        for e, row in zip(entries, rows.itertuples(), strict=True):
            assert (e["bytes"], e["sha256"]) == (row.bytes, row.sha256)
            assert e["pixel_sha256"] == pixel_sha256(read_png_rgb(dataset / row.path))
            assert e["member"] == "data/" + row.path[:-4] + ".webp"
            assert len(r.read_member(e)) == e["member_bytes"]
        assert [d["path"] for d in r.body["dataset_rows"]] == list(rows.path)


def test_lossless_archive_is_smaller_than_tar_of_the_pngs(dataset, tmp_path):
    tar = tmp_path / "plain.tar"
    files = [r.path for r in load_manifest(dataset).itertuples()]
    subprocess.run(["tar", "-cf", str(tar), "-C", str(dataset), *files], check=True)
    s = archive_folder(dataset, tmp_path / "a.tar", "webp-lossless", progress=False)
    assert s.archive_bytes < tar.stat().st_size


def test_lossy_codec_restores_pngs_and_reports_quality(dataset, tmp_path):
    arc = tmp_path / "j.tar"
    s = archive_folder(dataset, arc, "jpeg:q=50", progress=False)
    assert 20 < s.quality["mean_psnr"] < 60 and 0.5 < s.quality["mean_ms_ssim"] < 1
    out = tmp_path / "r"
    u = unarchive(arc, out, progress=False)
    assert u.quality == s.quality and not u.notes  # same decoder: same reconstruction
    with ArchiveReader(arc) as r:
        for e in r.entries:
            rec = read_png_rgb(out / e["path"])
            assert pixel_sha256(rec) == e["rec_sha256"]
            ref = read_png_rgb(dataset / e["path"])
            assert not np.array_equal(ref, rec)
            mse = float(np.mean((ref.astype(float) - rec) ** 2))
            assert mse == pytest.approx(e["mse"]) and e["psnr"] == pytest.approx(10 * np.log10(255**2 / mse))


@pytest.mark.slow
def test_learned_codec_lzma_and_ans(dataset, tmp_path):
    from models.architectures import create_model
    from models.checkpoint import save_checkpoint

    ckpt = save_checkpoint(tmp_path / "tiny.pt", create_model("bmshj2018-hyperprior", N=16, M=24))
    sizes = {}
    for coder in ("lzma", "ans"):
        arc = tmp_path / f"{coder}.tar"
        s = archive_folder(dataset, arc, f"learned:checkpoint={ckpt};coder={coder};device=cpu",
                           split="test", progress=False)
        assert s.quality["mean_psnr"] > 0 and 0 < s.quality["mean_ms_ssim"] <= 1
        sizes[coder] = s.archive_bytes
        moved = tmp_path / f"moved-{coder}.pt"
        shutil.copy(ckpt, moved)
        if coder == "ans":
            ckpt.unlink()  # the archive's path is gone: --checkpoint names the new place
            with pytest.raises(Cloud3dError, match="no such checkpoint"):
                unarchive(arc, tmp_path / "fail", progress=False)
        u = unarchive(arc, tmp_path / f"r-{coder}", checkpoint=str(moved), progress=False)
        assert u.restored == 4 and not u.notes
        with ArchiveReader(arc) as r:
            for e in r.entries:
                assert pixel_sha256(read_png_rgb(tmp_path / f"r-{coder}" / e["path"])) == e["rec_sha256"]
    assert sizes["lzma"] > 0 and sizes["ans"] > 0


def test_plain_folder_and_selection(tmp_path):
    folder = tmp_path / "photos"
    for i, sub in enumerate(["", "a", "a/b"]):
        write_png(folder / sub / f"img {i}.png", make_game_like_frame(40, 56, i))
    (folder / "notes.txt").write_text("not an image")
    write_png(folder / ".hidden.png", make_game_like_frame(40, 56, 9))
    arc = tmp_path / "p.tar"
    s = archive_folder(folder, arc, "png-opt:level=1", progress=False)
    assert s.files == 3
    out = tmp_path / "out"
    unarchive(arc, out, progress=False)
    for p in ["img 0.png", "a/img 1.png", "a/b/img 2.png"]:
        assert np.array_equal(read_png_rgb(folder / p), read_png_rgb(out / p))
    assert not (out / "manifest.csv").exists() and not (out / ".hidden.png").exists()
    with pytest.raises(Cloud3dError, match="no manifest.csv"):
        archive_folder(folder, tmp_path / "q.tar", "raw", split="test", progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(Cloud3dError, match="no PNG files"):
        archive_folder(tmp_path / "empty", tmp_path / "q.tar", "raw", progress=False)


def test_lossless_codec_refuses_a_non_rgb_source_but_raw_keeps_it(tmp_path):
    folder = tmp_path / "rgba"
    folder.mkdir()
    rgba = np.dstack([make_game_like_frame(32, 32, 1), np.full((32, 32), 128, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(folder / "x.png")
    with pytest.raises(Cloud3dError, match="--codec raw"):
        archive_folder(folder, tmp_path / "a.tar", "webp-lossless", progress=False)
    archive_folder(folder, tmp_path / "b.tar", "raw", progress=False)
    unarchive(tmp_path / "b.tar", tmp_path / "out", progress=False)
    assert sha256_file(tmp_path / "out" / "x.png") == sha256_file(folder / "x.png")


def test_codec_spec_errors(dataset, tmp_path):
    with pytest.raises(Cloud3dError, match="one quality"):
        archive_folder(dataset, tmp_path / "a.tar", "jpeg:q=20,40", progress=False)
    with pytest.raises(Cloud3dError, match="one quality"):
        archive_folder(dataset, tmp_path / "a.tar", "jpeg", progress=False)  # default sweep has five
    with pytest.raises(Cloud3dError, match="unknown codec 'nope'"):
        archive_folder(dataset, tmp_path / "a.tar", "nope", progress=False)
    with pytest.raises(Cloud3dError, match="out of range"):
        archive_folder(dataset, tmp_path / "a.tar", "jpegxl-lossless:effort=12", progress=False)
    archive_folder(dataset, tmp_path / "a.tar", "raw", progress=False)
    made = (tmp_path / "a.tar").read_bytes()
    with pytest.raises(Cloud3dError, match="already exists"):  # another codec: not replaced
        archive_folder(dataset, tmp_path / "a.tar", "png", progress=False)
    # the same command again finds its finished archive (issue 23: a re-run after a kill
    # in the clean-up must not be refused) and leaves it as it is
    again = archive_folder(dataset, tmp_path / "a.tar", "raw", progress=False)
    assert again.reused == again.files and (tmp_path / "a.tar").read_bytes() == made
    assert not os.environ.get("CLOUD3D_CODEC_MODULES")  # the registry look-up leaves no trace


def test_archive_resumes_after_a_failed_file(dataset, tmp_path):
    bad = dataset / "test" / "beta-168p" / "1.png"
    good = bad.read_bytes()
    bad.write_bytes(good[:-100])  # no longer what the manifest says
    arc = tmp_path / "a.tar"
    with pytest.raises(Cloud3dError, match=r"1 of 5 files could not be archived .*beta-168p/1.png changed"):
        archive_folder(dataset, arc, "webp-lossless", progress=False)
    assert not arc.exists()
    staged = sorted(p.name for p in (tmp_path / ".a.tar.partial").glob("*.json") if p.name != "state.json")
    assert len(staged) == 4
    bad.write_bytes(good)
    s = archive_folder(dataset, arc, "webp-lossless", progress=False)
    assert (s.files, s.reused) == (5, 4) and not (tmp_path / ".a.tar.partial").exists()
    unarchive(arc, tmp_path / "r", progress=False)
    _same_pixels(dataset, tmp_path / "r")


def test_other_codec_restarts_the_staging(dataset, tmp_path):
    bad = dataset / "test" / "beta-168p" / "1.png"
    good = bad.read_bytes()
    bad.write_bytes(good[:-100])
    with pytest.raises(Cloud3dError):
        archive_folder(dataset, tmp_path / "a.tar", "webp-lossless", progress=False)
    bad.write_bytes(good)
    s = archive_folder(dataset, tmp_path / "a.tar", "png-opt:level=0", progress=False)
    assert s.reused == 0


def test_unarchive_resumes_and_repairs(dataset, tmp_path):
    arc = tmp_path / "a.tar"
    archive_folder(dataset, arc, "jpegxl-lossless:effort=3", progress=False)
    out = tmp_path / "r"
    unarchive(arc, out, progress=False)
    (out / "test" / "alpha-168p" / "0.png").unlink()
    write_png(out / "test" / "beta-168p" / "1.png", make_game_like_frame(168, 176, 77))  # wrong pixels
    before = (out / "train" / "alpha-168p" / "99.png").stat().st_mtime_ns
    u = unarchive(arc, out, progress=False)
    assert (u.restored, u.skipped) == (2, 3)
    assert (out / "train" / "alpha-168p" / "99.png").stat().st_mtime_ns == before  # left alone
    _same_pixels(dataset, out)


def test_unarchive_refuses_a_foreign_non_empty_folder(dataset, tmp_path):
    arc = tmp_path / "a.tar"
    archive_folder(dataset, arc, "raw", progress=False)
    out = tmp_path / "busy"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    with pytest.raises(Cloud3dError, match="not empty"):
        unarchive(arc, out, progress=False)
    unarchive(arc, out, force=True, progress=False)
    assert (out / "mine.txt").read_text() == "keep me"
    assert json.loads((out / MARKER).read_text())["body_sha256"]
    other = tmp_path / "b.tar"
    archive_folder(dataset, other, "png", progress=False)
    with pytest.raises(Cloud3dError, match="not empty"):  # another archive's restore
        unarchive(other, out, progress=False)


def test_process_pool(dataset, tmp_path):
    arc = tmp_path / "a.tar"
    archive_folder(dataset, arc, "webp-lossless:q=20", workers=2, progress=False)
    unarchive(arc, tmp_path / "r", workers=2, progress=False)
    _same_pixels(dataset, tmp_path / "r")


def _plugin_env():
    return {**os.environ, "CLOUD3D_CODEC_MODULES": "plugin_codecs",
            "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")])}


@pytest.mark.slow
def test_ctrl_c_keeps_coded_files_and_the_same_command_resumes(tmp_path):
    ds = make_dataset(tmp_path / "ds", n=6, res="168p")
    arc = tmp_path / "a.tar"
    args = [*CLI, "archive", str(ds), "-o", str(arc), "--codec", "test-quant:bits=2;sleep=0.4", "--quiet"]
    proc = subprocess.Popen(args, env=_plugin_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    stage = tmp_path / ".a.tar.partial"
    try:
        deadline = time.monotonic() + 120
        while len([p for p in stage.glob("0*.json")]) < 3:
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 130 and "interrupted" in err
    assert not arc.exists()
    done = len(list(stage.glob("0*.json")))
    assert 3 <= done < 13
    p = subprocess.run(args, env=_plugin_env(), capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert f"({done} re-used from an interrupted run)" in p.stdout
    p = subprocess.run([*CLI, "unarchive", str(arc), "-o", str(tmp_path / "r"), "--quiet"],
                       env=_plugin_env(), capture_output=True, text=True, timeout=300)
    assert p.returncode == 0 and "13 files restored" in p.stdout, p.stderr


def test_cli_round_trip_and_one_line_errors(dataset, tmp_path, run_cli):
    arc = tmp_path / "a.tar"
    p = run_cli("archive", dataset, "-o", arc, "--codec", "webp-lossless", "--split", "test", "--quiet")
    assert p.returncode == 0 and "4 files" in p.stdout and "rate" in p.stdout, p.stderr
    p = run_cli("unarchive", arc, "-o", tmp_path / "r", "--quiet")
    assert p.returncode == 0 and "4 files restored" in p.stdout, p.stderr
    p = run_cli("verify", tmp_path / "r")
    assert p.returncode == 0, p.stdout
    p = run_cli("archive", dataset, "-o", arc, "--codec", "webp-lossless")
    assert p.returncode == 1 and p.stderr.strip().count("\n") == 0 and "already exists" in p.stderr
    p = run_cli("unarchive", dataset / "manifest.csv", "-o", tmp_path / "x")
    assert p.returncode == 1 and p.stderr.startswith("error: ") and "not a cloud3d archive" in p.stderr
    assert p.stderr.strip().count("\n") == 0
    for cmd in ("archive", "unarchive", "bench-folder"):
        h = run_cli(cmd, "--help")
        assert h.returncode == 0 and "Example" in h.stdout


def test_archive_members_extract_with_plain_tar(dataset, tmp_path):
    """Anyone can read an archive without cloud3d: the manifest is JSON, the bitstreams files."""
    arc = tmp_path / "a.tar"
    archive_folder(dataset, arc, "webp-lossless", progress=False)
    with tarfile.open(arc) as tf:
        doc = json.loads(tf.extractfile(MANIFEST_MEMBER).read())
        e = doc["body"]["entries"][0]
        data = tf.extractfile(e["member"]).read()
    with Image.open(__import__("io").BytesIO(data)) as im:
        assert im.format == "WEBP" and im.size == (e["width"], e["height"])
