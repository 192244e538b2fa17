"""The paper's baselines through the whole user path: real BPG and VTM in `cloud3d codecs`,
`cloud3d bench` (provenance, kept streams, resume, both timeout layers) and `cloud3d report`
(curves, BD-rate).

Needs the real binaries (``CLOUD3D_BPG_DIR`` / ``CLOUD3D_VTM_DIR`` or PATH): skipped without
them, a failure with ``CLOUD3D_REQUIRE_REFCODECS=1`` (CI). Images are tiny (64x48) because
VTM takes seconds even there.
"""

from __future__ import annotations

import itertools
import json
import math
import subprocess

import numpy as np
import pandas as pd
import pytest
from helpers import make_game_like_frame, rows

from baselines.metrics import psnr_rgb
from cloud3d.imageio import read_image_rgb, write_png
from cloud3d.provenance import sha256_file
from cloud3d_dataset.manifest import index_dataset

H, W = 48, 64


def _dataset(root):
    """Three 64x48 frames of app ``alpha`` and one 384x256 frame of app ``slow`` (for timeouts)."""
    for i in range(3):
        write_png(root / "test" / "alpha-720p" / f"{i}.png", make_game_like_frame(H, W, seed=i, t=i / 3))
    write_png(root / "test" / "slow-720p" / "0.png", make_game_like_frame(256, 384, seed=9))
    index_dataset(root, progress=False)
    return root


def _block(listing: str, name: str) -> str:
    """The status and indented lines `cloud3d codecs` prints for codec ``name``."""
    lines = listing.split(f"\n{name}  [", 1)[1].splitlines()
    return "\n".join([lines[0], *itertools.takewhile(lambda ln: ln.startswith("    "), lines[1:])])


@pytest.mark.slow
def test_bench_and_report_with_the_real_bpg_and_vtm(real_bpg, real_vtm, run_cli, tmp_path):
    data = _dataset(tmp_path / "data")

    # `cloud3d codecs`: both available, with the binaries' versions
    listing = run_cli("codecs").stdout
    bpg_block, vtm_block = _block(listing, "bpg"), _block(listing, "vtm")
    assert bpg_block.startswith("available]") and "version  bpgenc 0.9.8 sha256:" in bpg_block
    assert vtm_block.startswith("available]") and "version  VTM 23.13 sha256:" in vtm_block and " cfg:" in vtm_block

    res, keep = tmp_path / "results.sqlite", tmp_path / "keep"
    bench = ("bench", data, "--split", "test", "--app", "alpha", "--codec", "bpg:qp=27,37,47",
             "--codec", "vtm:qp=22,32,42", "--results", res, "--workers", "2", "--keep", keep, "--quiet")
    proc = run_cli(*bench, timeout=900)
    assert proc.returncode == 0, proc.stderr
    assert "18 ok, 0 failed, 0 already done, 18 tasks" in proc.stdout
    got = rows(res)
    assert len(got) == 18 and {r["status"] for r in got} == {"ok"}
    files = {"bpg": real_bpg.locate(), "vtm": real_vtm.locate()}
    for r in got:
        prov, details = json.loads(r["provenance"]), json.loads(r["details"])
        assert prov["version"] == r["codec_version"]
        if r["codec"] == "bpg":
            assert r["codec_version"].startswith("bpgenc 0.9.8 sha256:")
            assert prov["bpgenc_sha256"] == sha256_file(files["bpg"]["bpgenc"])
            assert prov["encode_cmd"].endswith("-f 444 -b 8 -e x265 -m 8 -q {qp} -o out.bpg in.png")
        else:
            assert r["codec_version"].startswith("VTM 23.13 sha256:")
            assert prov["encoder_sha256"] == sha256_file(files["vtm"]["encoder"])
            assert prov["cfg_sha256"] == sha256_file(files["vtm"]["cfg"])
            assert "--QP={qp}" in prov["encode_cmd"] and prov["colour"].startswith("bt709 full range, 420, 10-bit")
            assert details["encode"]["vtm_qp"] == r["quality"] and details["encode"]["vtm_bits"] <= 8 * r["bytes"]
        # bpp from the bytes on disk
        stream = details["kept"]["bitstream"]
        assert r["bytes"] == len(open(stream, "rb").read()) and r["bpp"] == pytest.approx(8 * r["bytes"] / (W * H))
        assert r["encode_s"] > 0 and r["decode_s"] > 0 and r["convert_enc_s"] > 0
        assert 25 < r["psnr_rgb"] < 45

    # a kept BPG stream decoded by hand gives the stored reconstruction and PSNR
    r = next(r for r in got if r["codec"] == "bpg" and r["quality"] == 37)
    kept = json.loads(r["details"])["kept"]
    subprocess.run([files["bpg"]["bpgdec"], "-o", tmp_path / "hand.png", kept["bitstream"]], check=True)
    hand, stored = read_image_rgb(tmp_path / "hand.png")[0], read_image_rgb(kept["reconstruction"])[0]
    np.testing.assert_array_equal(hand, stored)
    assert psnr_rgb(read_image_rgb(data / r["relpath"])[0], hand) == pytest.approx(r["psnr_rgb"], abs=1e-9)

    # resume: the same command does nothing again
    again = run_cli(*bench, timeout=300)
    assert again.returncode == 0 and "0 ok, 0 failed, 18 already done, 18 tasks" in again.stdout
    assert [x["id"] for x in rows(res)] == [x["id"] for x in got]

    # timeouts: the codec's own (kills VTM) and the runner's --timeout; the run goes on, exit 1
    slow = ("bench", data, "--app", "slow", "--results", res, "--workers", "1", "--quiet")
    own = run_cli(*slow, "--codec", "vtm:qp=22;timeout=0.5", timeout=300)
    runner = run_cli(*slow, "--codec", "vtm:qp=27", "--timeout", "1", timeout=300)
    assert own.returncode == 1 and runner.returncode == 1, (own.stderr, runner.stderr)
    failed = {r["quality"]: r for r in rows(res) if r["status"] == "failed"}
    assert set(failed) == {22, 27}
    assert "vtm encode: EncoderApp timed out after 0.5 s" in failed[22]["error"]
    assert failed[27]["error"].startswith("timeout")

    # the report: curves for both, BD-rate of VTM against the BPG anchor
    out = tmp_path / "report"
    rep = run_cli("report", res, "--out", out, "--anchor", "bpg", timeout=300)
    assert rep.returncode == 0, rep.stderr
    pq = pd.read_csv(out / "per_quality.csv")
    alpha = pq[pq["app"] == "alpha"]
    assert sorted(alpha.groupby("codec_label").size().items()) == [("bpg", 3), ("vtm", 3)]
    bd = pd.read_csv(out / "bd_rate.csv")
    vtm_bd = bd[(bd["codec"] == "vtm") & (bd["app"] == "alpha")].iloc[0]
    assert vtm_bd["anchor"] == "bpg" and math.isfinite(vtm_bd["bd_rate_pct"]), vtm_bd.to_dict()
    assert (out / "rd_alpha-720p_psnr.png").stat().st_size > 10_000
    page = (out / "index.html").read_text()
    assert 'src="rd_alpha-720p_psnr.png"' in page and "timed out after 0.5 s" in page
