"""cloud3d verify / index / stats on a small real dataset."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from helpers import write_capture

from cloud3d.errors import Cloud3dError
from cloud3d_dataset.manifest import load_manifest
from cloud3d_dataset.split import build_splits
from cloud3d_dataset.stats import stats
from cloud3d_dataset.verify import verify


@pytest.fixture()
def dataset(tmp_path) -> Path:
    raw = tmp_path / "RAW"
    write_capture(raw, "kart", 60, size=(64, 48), fps=2.0, seed=1)
    write_capture(raw, "quake", 60, size=(128, 72), fps=2.0, seed=2)
    ds = tmp_path / "DS"
    # quake's 36p is made by the split (resized); copies: damaging a file must not touch the capture
    for app, res in (("kart", "48p"), ("quake", "72p,36p")):
        build_splits(raw, ds, app=app, train=30, val=6, test=6, block=8, guard=1,
                     resolutions=res, copy=True, progress=False)
    return ds



def test_verify_clean_dataset(run_cli, dataset):
    rep = verify(dataset, workers=2, progress=False)
    assert rep.ok and rep.checked == 42 * 3
    p = run_cli("verify", str(dataset), "--quiet")
    assert p.returncode == 0 and "ok: 126 files" in p.stdout


def test_verify_catches_flip_truncation_missing_extra(run_cli, dataset):
    df = load_manifest(dataset)
    flipped, truncated, missing = (dataset / p for p in df["path"].iloc[[0, 50, 100]])
    data = bytearray(flipped.read_bytes())
    data[len(data) // 2] ^= 0x01
    flipped.write_bytes(bytes(data))
    truncated.write_bytes(truncated.read_bytes()[:-100])
    missing.unlink()
    extra = dataset / "train" / "kart-48p" / "9999.png"
    extra.write_bytes(flipped.read_bytes())
    stray = dataset / "test" / "kart-48p" / "notes.txt"
    stray.write_text("hi")

    rep = verify(dataset, workers=2, progress=False)
    assert not rep.ok
    kinds: dict[str, set[str]] = {}
    for p in rep.problems:
        kinds.setdefault(p.path, set()).add(p.kind)
    rel = lambda p: p.relative_to(dataset).as_posix()  # noqa: E731
    assert "sha256" in kinds[rel(flipped)] and "size" not in kinds[rel(flipped)]
    assert {"size", "sha256", "decode"} <= kinds[rel(truncated)]
    assert kinds[rel(missing)] == {"missing"}
    assert kinds[rel(extra)] == {"extra"} and kinds[rel(stray)] == {"extra"}
    assert len(kinds) == 5  # nothing else flagged

    p = run_cli("verify", str(dataset), "--quiet", "--workers", "2")
    assert p.returncode == 1
    for f in (flipped, truncated, missing, extra, stray):
        assert rel(f) in p.stdout
    assert "FAILED" in p.stderr and "missing 1" in p.stderr


def test_index_rebuilds_manifest_for_existing_layout(run_cli, dataset):
    original = load_manifest(dataset)
    (dataset / "manifest.csv").unlink()
    with pytest.raises(Cloud3dError, match="cloud3d index"):
        verify(dataset, progress=False)
    p = run_cli("index", str(dataset), "--quiet")
    assert p.returncode == 0, p.stderr
    p = run_cli("index", str(dataset), "--quiet")
    assert p.returncode == 1 and "--force" in p.stderr
    rebuilt = load_manifest(dataset)
    cols = [
        "split",
        "app",
        "resolution",
        "path",
        "width",
        "height",
        "bytes",
        "sha256",
        "source_index",
    ]
    assert rebuilt[cols].equals(original[cols])
    assert verify(dataset, progress=False).ok


def test_stats_table_and_json(run_cli, dataset):
    t = stats(dataset)
    body = t[t["split"] != "total"]
    assert len(body) == 3 * 3  # splits x (kart-48p, quake-36p, quake-72p)
    got = {(r.split, r.app, r.resolution): r.images for r in body.itertuples()}
    assert got[("train", "quake", "72p")] == 30 and got[("test", "kart", "48p")] == 6
    df = load_manifest(dataset)
    total = t[t["split"] == "total"].iloc[0]
    assert total["images"] == len(df) and total["bytes"] == df["bytes"].sum()
    p = run_cli("stats", str(dataset), "--json")
    assert p.returncode == 0
    recs = json.loads(p.stdout)
    assert recs[-1]["split"] == "total" and recs[-1]["images"] == 126
    p = run_cli("stats", str(dataset))
    assert "validation" in p.stdout and "quake" in p.stdout
    p = run_cli("stats", str(dataset.parent / "nope"))
    assert p.returncode == 1 and "not found" in p.stderr


def test_verify_does_not_follow_paths_outside_the_layout(dataset):
    text = (dataset / "manifest.csv").read_text().splitlines()
    first = text[1].split(",")
    first[3] = "../../etc/passwd"
    (dataset / "manifest.csv").write_text("\n".join([text[0], ",".join(first), *text[2:]]) + "\n")
    rep = verify(dataset, workers=1, progress=False)
    kinds = {(p.path, p.kind) for p in rep.problems}
    assert ("../../etc/passwd", "layout") in kinds
    assert not any(p.path == "../../etc/passwd" and p.kind != "layout" for p in rep.problems)


def test_a_zero_padded_dataset_indexes_and_every_reader_takes_it(tmp_path, run_cli):
    """Regression (issue 23): frames named ``0001.png`` by a user's own tool. ``index`` wrote a
    manifest that ``bench``, ``entropy`` and ``verify`` then refused as "not the layout's"."""
    import sqlite3

    import numpy as np

    from cloud3d.imageio import write_png

    ds = tmp_path / "mine"
    rng = np.random.default_rng(3)
    for i in range(3):
        img = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
        write_png(ds / "test" / "app-48p" / f"{i + 1:04d}.png", img)
    write_png(ds / "train" / "app-48p" / "0007.png", rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
    r = run_cli("index", ds, "--quiet")
    assert r.returncode == 0, r.stderr
    df = load_manifest(ds)
    assert sorted(df["source_index"]) == [1, 2, 3, 7]
    assert "test/app-48p/0002.png" in set(df["path"])
    r = run_cli("verify", ds, "--quiet")
    assert r.returncode == 0 and "ok: 4 files" in r.stdout, r.stdout + r.stderr
    res = tmp_path / "r.sqlite"
    r = run_cli("bench", ds, "--codec", "jpeg:q=50", "--results", res)
    assert r.returncode == 0, r.stderr
    with sqlite3.connect(res) as db:
        assert db.execute("SELECT COUNT(*) FROM results").fetchone()[0] == 3  # the test split
    r = run_cli("entropy", ds, "--out", tmp_path / "ent", "--workers", "1")
    assert r.returncode == 0, r.stderr
    per_image = pd.read_csv(tmp_path / "ent" / "per_image.csv")
    assert "test/app-48p/0003.png" in set(per_image["path"])


def test_index_refuses_two_names_for_one_frame(tmp_path, run_cli):
    import numpy as np

    from cloud3d.imageio import write_png

    ds = tmp_path / "mine"
    img = np.zeros((48, 64, 3), np.uint8)
    write_png(ds / "test" / "app-48p" / "1.png", img)
    write_png(ds / "test" / "app-48p" / "001.png", img)
    r = run_cli("index", ds, "--quiet")
    assert r.returncode == 1 and "both frame 1 of test/app-48p" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and not (ds / "manifest.csv").exists()
    # a forged row whose number does not match its (padded) name is still refused
    (ds / "test" / "app-48p" / "001.png").unlink()
    assert run_cli("index", ds, "--quiet").returncode == 0
    m = pd.read_csv(ds / "manifest.csv")
    m.loc[0, "path"] = "test/app-48p/0002.png"
    m.to_csv(ds / "manifest.csv", index=False)
    with pytest.raises(Cloud3dError, match="not the layout's"):
        load_manifest(ds)
