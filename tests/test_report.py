"""Reports from a real bench run: CSV content, figures, CompressAI JSON, index.html links and rendering."""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest
from helpers import CLI, make_dataset
from pagecheck import CHROMIUM, page_links, render_page
from PIL import Image

from baselines.bench.runner import BenchOptions, run_bench
from baselines.bench.store import ResultsStore
from cloud3d.imageio import write_png


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """A dataset with one truncated PNG, a bench run (jpeg, webp) and a real entropy analysis."""
    tmp = tmp_path_factory.mktemp("study")
    ds = make_dataset(tmp / "ds")
    full = (ds / "test/beta-720p/2.png").read_bytes()
    (ds / "test/beta-720p/2.png").write_bytes(full[:300])
    from cloud3d_dataset.manifest import index_dataset

    index_dataset(ds, progress=False)
    res = tmp / "r.sqlite"
    s = run_bench(ds, ["jpeg:q=30,60,90", "webp:q=30,60,90"], res,
                  BenchOptions(workers=2, progress=False,
                               command="cloud3d bench ds --codec jpeg:q=30,60,90 --codec webp:q=30,60,90"))
    assert (s.ok, s.failed) == (30, 6)
    from analysis.pipeline import EntropyOptions, run_entropy

    ent = tmp / "entropy"
    ref = tmp / "reference"  # a few small textured "photos" keep the analysis quick
    rng = np.random.default_rng(5)
    for i in range(4):
        base = rng.integers(0, 256, size=(24, 32, 3), dtype=np.uint8)
        write_png(ref / f"{i}.png", np.kron(base, np.ones((4, 4, 1), np.uint8)) // (i + 1))
    run_entropy(ds, ref, ent, EntropyOptions(reference_name="textures", progress=False, workers=1))
    out = tmp / "report"
    p = subprocess.run(
        [*CLI, "report", str(res), "--out", str(out), "--anchor", "jpeg",
         "--dataset", str(ds), "--entropy", str(ent), "--title", "Test study"],
        capture_output=True, text=True, timeout=120,
    )
    assert p.returncode == 0, p.stderr
    assert str(out / "index.html") in p.stdout
    return {"ds": ds, "res": res, "out": out, "ent": ent, "tmp": tmp}


def test_tables(study):
    out, res = study["out"], study["res"]
    per_image = pd.read_csv(out / "per_image.csv")
    with ResultsStore(res, readonly=True) as st:
        stored = st.results()
    assert len(per_image) == len(stored) == 36
    assert (per_image["status"] == "failed").sum() == 6
    assert per_image.loc[per_image["status"] == "failed", "relpath"].eq("test/beta-720p/2.png").all()
    pq = pd.read_csv(out / "per_quality.csv")
    assert len(pq) == 2 * 3 * 2  # codecs x qualities x apps
    ok = per_image[per_image["status"] == "ok"]
    for _, r in pq.iterrows():
        g = ok[(ok["codec_label"] == r["codec_label"]) & (ok["quality"] == r["quality"]) & (ok["app"] == r["app"])]
        assert r["n"] == len(g) == (3 if r["app"] == "alpha" else 2)
        assert r["mean_bpp"] == pytest.approx(g["bpp"].mean())
        assert r["mean_psnr"] == pytest.approx(g["psnr_rgb"].mean())
        assert r["psnr_of_mean_mse"] == pytest.approx(10 * np.log10(255**2 / g["mse"].mean()))
        assert r["psnr_of_mean_mse"] <= r["mean_psnr"] + 1e-9
        assert r["ms_ssim_db"] == pytest.approx(-10 * np.log10(1 - g["ms_ssim"].mean()))
        assert r["encode_median_s"] == pytest.approx(g["encode_s"].median())
    bd = pd.read_csv(out / "bd_rate.csv")
    assert sorted(bd["app"]) == ["alpha", "beta"] and set(bd["codec"]) == {"webp"}
    assert set(bd["anchor"]) == {"jpeg"}
    for _, r in bd.iterrows():
        if pd.isna(r["bd_rate_pct"]):
            assert isinstance(r["reason"], str) and r["reason"]
        else:
            assert -100 < r["bd_rate_pct"] < 500
    timing = pd.read_csv(out / "timing.csv")
    assert sorted(timing["codec"]) == ["jpeg", "webp"] and set(timing["n"]) == {15}
    assert (timing["encode_mean_s"] > 0).all() and timing["cpu_model"].notna().all()


def test_figures_and_compressai_json(study):
    out = study["out"]
    for app in ("alpha", "beta"):
        for m in ("psnr", "msssim"):
            png = out / f"rd_{app}-720p_{m}.png"
            with Image.open(png) as im:
                im.verify()
            with Image.open(png) as im:
                assert im.format == "PNG" and im.size[0] > 300
            assert (out / f"rd_{app}-720p_{m}.svg").read_text().lstrip().startswith("<?xml")
    for label in ("jpeg", "webp"):
        d = json.loads((out / "compressai" / f"{label}.json").read_text())
        assert d["name"] == label and d["description"]
        r = d["results"]
        assert len(r["bpp"]) == len(r["psnr-rgb"]) == len(r["ms-ssim-rgb"]) == len(r["encoding_time"]) == 3
        assert r["bpp"] == sorted(r["bpp"]) and all(20 < p < 80 for p in r["psnr-rgb"])
        assert len(r["ms-ssim-rgb-db"]) == 3 and len(r["decoding_time"]) == 3
        per_app = json.loads((out / "compressai" / "beta-720p" / f"{label}.json").read_text())
        assert per_app["results"]["bpp"] != r["bpp"]


def test_index_html_links_and_sections(study):
    out = study["out"]
    index = out / "index.html"
    text = index.read_text(encoding="utf-8")
    links = page_links(index)
    assert links.links, "no links"
    for link in links.links:
        if link.startswith("#"):
            assert link[1:] in links.ids
            continue
        assert "://" not in link and not link.startswith("/"), link  # relative, no network
        assert (out / link).is_file(), link
    srcs = [lk for lk in links.links if lk.endswith(".png")]
    assert any(s.startswith("entropy/density_") for s in srcs)
    assert "rd_alpha-720p_psnr.png" in srcs and "rd_beta-720p_msssim.png" in srcs
    assert "Test study" in text and "@media print" in text
    assert "cloud3d bench ds --codec jpeg:q=30,60,90" in text  # the exact command from the runs table
    assert "Pillow" in text and "logical cores" in text  # versions and machine
    assert "BD-rate against jpeg" in text and "PCHIP" in text
    # dataset summary from the manifest: 2 apps x 3 test images + 1 train image
    assert '<td class="t">alpha</td>' in text and "7 images" in text
    assert "Failed tasks (6)" in text


def test_missing_entropy_and_bad_anchor(study, tmp_path):
    from baselines.report import write_report
    from cloud3d.errors import Cloud3dError

    files = write_report(study["res"], tmp_path / "r2", entropy=tmp_path / "nope")
    text = files["index"].read_text()
    assert "Entropy folder not found" in text
    assert "BD-rate against jpeg" in text  # default anchor: jpeg is the first preferred one present
    assert "manifest.csv" in text  # dataset found from the results' dataset path
    with pytest.raises(Cloud3dError, match="anchor codec 'bpg' has no results; codecs in this store: jpeg, webp"):
        write_report(study["res"], tmp_path / "r3", anchor="bpg")
    p = subprocess.run([*CLI, "report", str(tmp_path / "x.sqlite"),
                        "--out", str(tmp_path / "r4")], capture_output=True, text=True, timeout=60)
    assert p.returncode == 1 and "error: results file not found" in p.stderr


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
def test_chromium_renders_with_no_missing_resources(study, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(study["out"], out)
    dom = render_page(out / "index.html", tmp_path)
    assert 'data-broken-images="0"' in dom and "Rate-distortion curves" in dom
    # the check can fail: remove one figure and the page reports it
    (out / "rd_alpha-720p_psnr.png").unlink()
    dom = render_page(out / "index.html", tmp_path)
    assert 'data-broken-images="1"' in dom and "rd_alpha-720p_psnr.png" in dom


@pytest.fixture(scope="module")
def dotted(tmp_path_factory):
    """Apps whose names have a dot, and three curves of real codecs: the anchor (jpeg), one
    that covers the same quality range (jpeg without optimised Huffman tables) and one that covers little
    of it (webp)."""
    tmp = tmp_path_factory.mktemp("dotted")
    ds = make_dataset(tmp / "ds", apps=("0ad.a26", "0ad.b27"), n=2)
    res = tmp / "r.sqlite"
    s = run_bench(ds, ["jpeg:q=10,30,50,70", "jpeg:q=10,30,50,70;optimize=false", "webp:q=50,70,90,95"], res,
                  BenchOptions(workers=2, progress=False))
    assert (s.ok, s.failed) == (48, 0)
    from baselines.report import write_report

    files = write_report(res, tmp / "report", anchor="jpeg")
    return tmp / "report", files


def test_dotted_app_names_get_their_own_figures(dotted):
    """Regression: ``with_suffix`` took ``.a26-720p_psnr`` for a suffix, so both apps wrote rd_0ad.png."""
    out, files = dotted
    assert not list(out.glob("rd_0ad.png")) and not list(out.glob("rd_0ad.svg"))
    pngs = {}
    for app in ("0ad.a26", "0ad.b27"):
        for m in ("psnr", "msssim"):
            for ext in ("png", "svg"):
                assert (out / f"rd_{app}-720p_{m}.{ext}").is_file(), f"rd_{app}-720p_{m}.{ext}"
            pngs[app, m] = (out / f"rd_{app}-720p_{m}.png").read_bytes()
            assert files["rd"][f"{app}-720p"][m] == [out / f"rd_{app}-720p_{m}.png", out / f"rd_{app}-720p_{m}.svg"]
    assert len(set(pngs.values())) == 4  # four different figures, none overwritten by another
    links = page_links(files["index"]).links
    assert "rd_0ad.a26-720p_psnr.png" in links and "rd_0ad.b27-720p_msssim.png" in links


def _overlap(x_anchor, x_test) -> float:
    """The bjontegaard package's overlap: common interval over joint interval."""
    lo, hi = max(min(x_anchor), min(x_test)), min(max(x_anchor), max(x_test))
    return max(hi - lo, 0) / (max(max(x_anchor), max(x_test)) - min(min(x_anchor), min(x_test)))


def test_low_overlap_bd_values_flagged_like_the_bjontegaard_package(dotted):
    import warnings

    import bjontegaard

    out, _ = dotted
    pq = pd.read_csv(out / "per_quality.csv")
    bd = pd.read_csv(out / "bd_rate.csv")
    assert len(bd) == 4 and set(bd["codec"]) == {"jpeg;optimize=False", "webp"}
    flags = []
    for _, r in bd.iterrows():
        g = pq[(pq["app"] == r["app"]) & (pq["resolution"] == r["resolution"])]
        a = g[g["codec_label"] == "jpeg"].sort_values("mean_bpp")
        t = g[g["codec_label"] == r["codec"]].sort_values("mean_bpp")
        for name, col, fn, axis in (("bd_rate", "mean_psnr", bjontegaard.bd_rate, "quality"),
                                    ("bd_psnr", "mean_psnr", bjontegaard.bd_psnr, "rate"),
                                    ("bd_rate_msssim", "ms_ssim_db", bjontegaard.bd_rate, "quality")):
            if axis == "quality":
                expected = _overlap(a[col], t[col])
            else:
                expected = _overlap(np.log10(a["mean_bpp"]), np.log10(t["mean_bpp"]))
            assert r[f"{name}_overlap"] == pytest.approx(expected, abs=1e-12)
            low = bool(r[f"{name}_low_overlap"])
            assert low == (expected < 0.75)
            flags.append(low)
            value = r[{"bd_rate": "bd_rate_pct", "bd_psnr": "bd_psnr_db",
                       "bd_rate_msssim": "bd_rate_msssim_pct"}[name]]
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                ref = fn(a["mean_bpp"], a[col], t["mean_bpp"], t[col], method="pchip",
                         require_matching_points=False)
            # the package warns exactly when we flag, and computes the same delta
            assert any("Insufficient curve overlap" in str(w.message) for w in caught) == (low and expected > 0)
            assert value == pytest.approx(ref, rel=1e-6, abs=1e-9, nan_ok=True)
            if low and expected > 0:  # (no overlap at all: the value is NaN, and the reason says so)
                assert f"overlap on {expected:.0%}" in r["reason"]
    assert any(flags) and not all(flags), "the study should give flagged and unflagged values"

    # the page shows each flagged value in a marked cell with its overlap, the others plainly
    text = (out / "index.html").read_text()
    marked = text.count('flagged" title="low overlap: ')
    n_low = sum(int((bd[f"{n}_low_overlap"] & bd[c].notna()).sum())
                for n, c in (("bd_rate", "bd_rate_pct"), ("bd_psnr", "bd_psnr_db"),
                             ("bd_rate_msssim", "bd_rate_msssim_pct")))
    assert marked == n_low > 0
    assert f"{n_low} value(s) in grey brackets come from curves that share less than 75%" in text
    for _, r in bd.iterrows():
        if not r["bd_rate_low_overlap"]:
            shown = f'<td class="">{r["bd_rate_pct"]:.3f}</td>'
            assert shown in text, shown
