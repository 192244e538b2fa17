"""cloud3d split / build_splits on real PNG captures written to a temporary folder."""

from __future__ import annotations

import json
import os
import shutil
import struct
import tempfile
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import make_game_like_frame, write_capture
from PIL import Image

from cloud3d.errors import Cloud3dError
from cloud3d.imageio import read_png_rgb
from cloud3d.provenance import sha256_file
from cloud3d_dataset.blocks import Span, assign, make_blocks
from cloud3d_dataset.layout import SPLITS
from cloud3d_dataset.manifest import load_manifest
from cloud3d_dataset.split import build_splits

COUNTS = {"train": 40, "val": 8, "test": 8}


@pytest.fixture()
def raw(tmp_path) -> Path:
    """A capture root with app 'kart': 100 grabs of 128x72 at 2 fps (``native/``, the 72p
    group), every 10th dropped."""
    write_capture(tmp_path / "RAW", "kart", 100, fps=2.0, seed=1, drop_every=10)
    return tmp_path / "RAW"


def _record(ds: Path, app: str) -> dict:
    return json.loads((ds / ".cloud3d" / f"split-{app}.json").read_text())


def _frames_csv(raw: Path, app: str) -> pd.DataFrame:
    """The kept rows of an app's frames.csv by frame index, ``capture_time`` in epoch seconds."""
    df = pd.read_csv(raw / app / "frames.csv", dtype={"reason": str}).query("status == 'kept'")
    df["capture_time"] = pd.to_datetime(df["capture_time"]).map(pd.Timestamp.timestamp)
    return df.astype({"index": int}).set_index("index")


def test_split_counts_layout_and_hard_links(tmp_path):
    """Every grab written at two resolutions (128x72 native and 720p): the resolutions are
    split together, hard-linked, and the same n is the same grab at both."""
    raw = write_capture(tmp_path / "RAW", "kart", 60, resolutions=("native", "720p"), seed=1,
                        drop_every=10)
    folders = {"72p": ("native", (128, 72)), "720p": ("720p", (1280, 720))}
    ds = tmp_path / "DS"
    r = build_splits(raw, ds, train=24, val=6, test=6, block="4s", seed=3, progress=False)
    assert r.counts == {"train": 24, "validation": 6, "test": 6}
    assert r.resolutions == ["720p", "72p"] and r.linked == 2 * 36 and r.encoded == 0
    df = load_manifest(ds)
    assert len(df) == 72
    rec = _record(ds, "kart")
    n_to_cap = {n: cap for n, _s, cap, _t in rec["n_to_capture"]}
    # n runs 0..35 over the app (all splits), in capture order.
    assert sorted(n_to_cap) == list(range(36))
    assert [n_to_cap[n] for n in range(36)] == sorted(n_to_cap.values())
    for res, (folder, (w, h)) in folders.items():
        sub = df[df["resolution"] == res]
        assert sub.groupby("split").size().to_dict() == {"train": 24, "validation": 6, "test": 6}
        assert set(sub["width"]) == {w} and set(sub["height"]) == {h}
        for row in sub.itertuples():
            f = ds / row.path
            src = raw / folder / f"{n_to_cap[row.source_index]:06d}.png"
            assert os.stat(f).st_ino == os.stat(src).st_ino  # hard link to the raw frame
            assert row.sha256 == sha256_file(f) and row.bytes == f.stat().st_size
    # The same n is the same source frame, in the same split, at every resolution.
    a = df[df["resolution"] == "720p"].set_index("source_index")["split"]
    b = df[df["resolution"] == "72p"].set_index("source_index")["split"]
    assert a.equals(b)
    # Capture time comes from frames.csv.
    times = _frames_csv(tmp_path / "RAW", "kart")["capture_time"]
    for row in df.head(5).itertuples():
        assert row.capture_time == pytest.approx(times[n_to_cap[row.source_index]], abs=1e-6)


def test_capture_tool_log_format_status_and_iso_times(tmp_path):
    """frames.csv as the capture tool writes it: status column, ISO-8601 UTC times, dropped rows."""
    raw = tmp_path / "RAW"
    app = write_capture(raw, "synth", 30, fps=2.0, seed=9)
    lines = ["index,status,reason,run,grab,capture_time,file_native,extra"]
    for i in range(30):
        t = pd.Timestamp("2026-01-02T03:04:05Z") + pd.Timedelta(seconds=i / 2)
        lines.append(f"{i},kept,,r1,{2 * i},{t.isoformat()},native/{i:06d}.png,x")
        lines.append(f",dropped,black,r1,{2 * i + 1},{t.isoformat()},,x")
    (app / "frames.csv").write_text("\n".join(lines) + "\n")
    ds = tmp_path / "DS"
    r = build_splits(app, ds, train=16, val=3, test=3, block="3s", progress=False)
    assert r.block == "3s" and r.guard == "0.3s"
    df = load_manifest(ds)
    t0 = pd.Timestamp("2026-01-02T03:04:05Z").timestamp()
    cap_of = {n: cap for n, _s, cap, _t in _record(ds, "synth")["n_to_capture"]}
    for row in df.itertuples():
        assert row.capture_time == pytest.approx(t0 + cap_of[row.source_index] / 2, abs=1e-5)


def test_no_block_crosses_splits_and_guard_holds(tmp_path):
    raw = tmp_path / "RAW"
    write_capture(raw, "dota", 240, size=(64, 48), fps=3.0, seed=5)  # 80 s at 3 fps
    ds = tmp_path / "DS"
    build_splits(
        raw,
        ds,
        app="dota",
        train=40,
        val=10,
        test=10,
        block="5s",
        guard="1s",
        seed=11,
        progress=False,
    )
    rec = _record(ds, "dota")
    cap_split = {cap: split for _n, split, cap, _t in rec["n_to_capture"]}
    times = _frames_csv(raw, "dota")["capture_time"]
    # Independently recomputed 5 s blocks: every block's used frames are in one split.
    ts = times.to_numpy()
    blocks = make_blocks(ts, Span(5.0, "s"))
    seen_multi_block_split = set()
    for start, stop in blocks:
        splits = {cap_split[i] for i in range(start, stop) if i in cap_split}
        assert len(splits) <= 1, f"block {start}..{stop} crosses splits {splits}"
        seen_multi_block_split |= splits
    assert seen_multi_block_split == set(SPLITS)
    # Guard: no two frames of different splits are within 1 s of each other.
    used = sorted(cap_split)
    for i, j in zip(used, used[1:], strict=False):
        if cap_split[i] != cap_split[j]:
            assert times[j] - times[i] > 1.0
    # Test frames are never nearest neighbours (in time) of training frames.
    test_caps = [c for c, s in cap_split.items() if s == "test"]
    train_caps = np.array([c for c, s in cap_split.items() if s == "train"])
    for c in test_caps:
        assert np.min(np.abs(times[train_caps].to_numpy() - times[c])) > 1.0


def test_assign_is_exact_and_seeded():
    times = np.arange(500) / 2.0
    counts = {"train": 300, "validation": 50, "test": 50}
    a = assign(times, counts, Span(10, "s"), Span(1, "s"), seed=1)
    b = assign(times, counts, Span(10, "s"), Span(1, "s"), seed=1)
    c = assign(times, counts, Span(10, "s"), Span(1, "s"), seed=2)
    assert all(len(a.positions(s)) == counts[s] for s in SPLITS)
    assert np.array_equal(a.split_of, b.split_of) and not np.array_equal(a.split_of, c.split_of)


def test_manifest_reproducible_and_seed_matters(raw, tmp_path):
    build_splits(raw / "kart", tmp_path / "A", **COUNTS, seed=7, progress=False)
    build_splits(raw / "kart", tmp_path / "B", **COUNTS, seed=7, progress=False)
    build_splits(raw / "kart", tmp_path / "C", **COUNTS, seed=8, progress=False)
    a, b, c = ((tmp_path / d / "manifest.csv").read_bytes() for d in "ABC")
    assert a == b
    assert a != c


def test_copy_mode_makes_independent_files(raw, tmp_path):
    ds = tmp_path / "DS"
    r = build_splits(raw / "kart", ds, **COUNTS, copy=True, progress=False)
    assert r.copied == 56 and r.linked == 0
    rec = _record(ds, "kart")
    n, _split, cap, _t = rec["n_to_capture"][0]
    row = load_manifest(ds).query("source_index == @n and resolution == '72p'").iloc[0]
    dst, src = ds / row["path"], raw / "kart" / "native" / f"{cap:06d}.png"
    assert os.stat(dst).st_ino != os.stat(src).st_ino
    assert dst.read_bytes() == src.read_bytes()


def test_other_filesystem_falls_back_to_copies(tmp_path):
    shm = Path("/dev/shm")
    if (
        not shm.is_dir()
        or not os.access(shm, os.W_OK)
        or shm.stat().st_dev == tmp_path.stat().st_dev
    ):
        pytest.skip("no second writable filesystem (/dev/shm) to link across")
    raw = Path(tempfile.mkdtemp(prefix="cloud3d-raw-", dir=shm))
    try:
        write_capture(raw, "kart", 40, size=(64, 48), fps=2.0, seed=1)
        r = build_splits(
            raw / "kart", tmp_path / "DS", train=20, val=4, test=4, block=5, progress=False
        )
        assert r.linked == 0 and r.copied == 28
        assert any("hard links impossible" in n for n in r.notes)
        rows = load_manifest(tmp_path / "DS")
        assert all(
            sha256_file(tmp_path / "DS" / p) == h
            for p, h in zip(rows["path"], rows["sha256"], strict=True)
        )
    finally:
        shutil.rmtree(raw, ignore_errors=True)


def test_not_enough_frames_error_and_scale_counts(raw, tmp_path):
    with pytest.raises(Cloud3dError) as ei:
        build_splits(raw / "kart", tmp_path / "DS", train=800, val=100, test=100, progress=False)
    msg = str(ei.value)
    assert "1000 needed" in msg and "90 usable frames" in msg and "--scale-counts" in msg
    assert not (tmp_path / "DS" / "manifest.csv").exists()
    r = build_splits(
        raw / "kart",
        tmp_path / "DS",
        train=800,
        val=100,
        test=100,
        scale_counts=True,
        progress=False,
    )
    c = r.counts
    assert c["validation"] == c["test"] >= 1 and c["train"] >= 6 * c["test"]
    assert c["train"] + c["validation"] + c["test"] <= 90
    df = load_manifest(tmp_path / "DS")
    assert (
        df.groupby(["resolution", "split"]).size().unstack()["train"].tolist() == [c["train"]]
    )


def test_second_app_noop_and_force(raw, tmp_path):
    write_capture(raw, "quake", 60, size=(64, 48), fps=1.0, seed=2)
    ds = tmp_path / "DS"
    build_splits(raw, ds, app="kart", **COUNTS, progress=False)
    before = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in ds.rglob("kart-*/*.png")}
    kart_rows = load_manifest(ds)
    r2 = build_splits(raw, ds, app="quake", train=30, val=5, test=5, progress=False)
    assert not r2.noop
    after = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in ds.rglob("kart-*/*.png")}
    assert before == after
    df = load_manifest(ds)
    assert set(df["app"]) == {"kart", "quake"}
    pd.testing.assert_frame_equal(df[df["app"] == "kart"].reset_index(drop=True), kart_rows)
    # Same arguments again: nothing happens.
    again = build_splits(raw, ds, app="kart", **COUNTS, progress=False)
    assert again.noop
    # Other arguments: refused without --force, then replaced (quake untouched).
    with pytest.raises(Cloud3dError, match="--force"):
        build_splits(raw, ds, app="kart", **COUNTS, seed=99, progress=False)
    quake_before = load_manifest(ds).query("app == 'quake'").reset_index(drop=True)
    build_splits(raw, ds, app="kart", **COUNTS, seed=99, force=True, progress=False)
    df = load_manifest(ds)
    pd.testing.assert_frame_equal(df.query("app == 'quake'").reset_index(drop=True), quake_before)
    assert len(df.query("app == 'kart'")) == 56
    assert not list((ds / ".cloud3d").glob("staging-*")) and not list(
        (ds / ".cloud3d").glob("trash-*")
    )


def _corrupt_idat_keep_crc(path: Path) -> None:
    """Garble the zlib stream of a PNG but fix the chunk CRC: passes structure checks, fails decode."""
    data = bytearray(path.read_bytes())
    pos = 8
    while True:
        (length,) = struct.unpack_from(">I", data, pos)
        ctype = bytes(data[pos + 4 : pos + 8])
        if ctype == b"IDAT":
            for k in range(pos + 8 + 2, pos + 8 + length - 4):
                data[k] ^= 0x5A
            crc = zlib.crc32(bytes(data[pos + 4 : pos + 8 + length]))
            struct.pack_into(">I", data, pos + 8 + length, crc)
            break
        pos += 12 + length
    path.write_bytes(bytes(data))


def test_bad_raw_frames_listed_and_skipped(raw, tmp_path):
    app = raw / "kart"
    flipped = app / "native" / "000003.png"
    data = bytearray(flipped.read_bytes())
    data[len(data) // 2] ^= 0xFF
    flipped.write_bytes(bytes(data))
    trunc = app / "native" / "000004.png"
    trunc.write_bytes(trunc.read_bytes()[:-30])
    (app / "native" / "000005.png").write_text("not an image")
    (app / "native" / "000006.png").unlink()
    ds = tmp_path / "DS"
    r = build_splits(app, ds, **COUNTS, progress=False)
    listed = {Path(p).name: why for p, why in r.problems}
    assert "CRC mismatch" in listed["000003.png"]
    assert "truncated" in listed["000004.png"]
    assert "not a PNG" in listed["000005.png"]
    assert "missing" in listed["000006.png"]
    used = {cap for _n, _s, cap, _t in _record(ds, "kart")["n_to_capture"]}
    assert not used & {3, 4, 5, 6}
    assert _record(ds, "kart")["frames"]["usable"] == 90 - 4


def test_odd_pixel_formats_converted_or_refused(tmp_path):
    folder = tmp_path / "plain"
    folder.mkdir()
    rgb = make_game_like_frame(36, 64, 3, 0.0)
    for i in range(30):
        Image.fromarray(make_game_like_frame(36, 64, 3, i / 30)).save(folder / f"f{i:03d}.png")
    Image.fromarray(rgb).convert("RGBA").save(folder / "f000.png")
    Image.fromarray(rgb).convert("P").save(folder / "f001.png")
    Image.fromarray(rgb).convert("L").save(folder / "f002.png")
    Image.fromarray(rgb[:, :, 0].astype(np.uint16) * 257).save(folder / "f003.png")  # 16-bit gray
    with pytest.raises(Cloud3dError, match="--strict"):
        build_splits(
            folder,
            tmp_path / "S",
            app="plainapp",
            train=10,
            val=2,
            test=2,
            block=5,
            strict=True,
            progress=False,
        )
    ds = tmp_path / "DS"
    r = build_splits(
        folder, ds, app="plainapp", train=20, val=3, test=3, block=5, guard=0, progress=False
    )
    assert r.resolutions == ["36p"] and r.encoded >= 1
    assert any("RGBA" in n for n in r.notes)
    df = load_manifest(ds)
    rec = _record(ds, "plainapp")
    cap_of = {n: cap for n, _s, cap, _t in rec["n_to_capture"]}
    for row in df.itertuples():
        with Image.open(ds / row.path) as im:
            assert im.mode == "RGB"
        if cap_of[row.source_index] == 0:  # RGBA frame: alpha dropped, colour kept
            assert np.array_equal(read_png_rgb(ds / row.path), rgb)


def test_mixed_sizes_reported(raw, tmp_path):
    odd = raw / "kart" / "native" / "000007.png"
    Image.fromarray(make_game_like_frame(40, 64, 0)).save(odd)
    r = build_splits(raw / "kart", tmp_path / "DS", **COUNTS, progress=False)
    assert any("mixed resolutions" in n for n in r.notes)
    assert any(Path(p).name == "000007.png" and "64x40" in why for p, why in r.problems)
    with pytest.raises(Cloud3dError, match="mixed resolutions"):
        build_splits(raw / "kart", tmp_path / "DS2", **COUNTS, strict=True, progress=False)


def test_resize_and_recompress_are_lossless_png(tmp_path):
    raw = tmp_path / "RAW"
    write_capture(raw, "vr", 40, fps=1.0, seed=4)
    ds = tmp_path / "DS"
    r = build_splits(
        raw / "vr",
        ds,
        train=20,
        val=4,
        test=4,
        resolutions="72p,36p",
        recompress=True,
        block="4s",
        progress=False,
    )
    assert r.resolutions == ["36p", "72p"] and r.encoded == 56
    df = load_manifest(ds)
    rec = _record(ds, "vr")
    cap_of = {n: cap for n, _s, cap, _t in rec["n_to_capture"]}
    row = df.query("resolution == '36p'").iloc[0]
    src = read_png_rgb(raw / "vr" / "native" / f"{cap_of[row['source_index']]:06d}.png")
    want = np.asarray(Image.fromarray(src).resize((64, 36), Image.Resampling.LANCZOS))
    assert np.array_equal(read_png_rgb(ds / row["path"]), want)
    row72 = df.query("resolution == '72p'").iloc[0]
    raw72 = raw / "vr" / "native" / f"{cap_of[row72['source_index']]:06d}.png"
    assert np.array_equal(read_png_rgb(ds / row72["path"]), read_png_rgb(raw72))
    assert (ds / row72["path"]).stat().st_size <= raw72.stat().st_size  # fpng input -> smaller


def test_failure_leaves_nothing_visible_then_rerun_completes(raw, tmp_path):
    bad = raw / "kart" / "native" / "000001.png"
    _corrupt_idat_keep_crc(bad)  # passes the chunk check, fails only when decoded
    ds = tmp_path / "DS"
    with pytest.raises(Cloud3dError, match="re-run"):
        build_splits(
            raw / "kart", ds, **COUNTS, recompress=True, block=4, guard=0, workers=1, progress=False
        )
    visible = [p for p in ds.iterdir() if p.name != ".cloud3d"]
    assert visible == []
    bad.unlink()
    r = build_splits(
        raw / "kart", ds, **COUNTS, recompress=True, block=4, guard=0, workers=1, progress=False
    )
    assert r.files == 56 and len(load_manifest(ds)) == 56


def test_interrupted_build_resumes_from_staging(raw, tmp_path):
    args = dict(**COUNTS, recompress=True, block=4, guard=0, workers=1, progress=False)
    build_splits(raw / "kart", tmp_path / "probe", **args)
    last = max(cap for _n, _s, cap, _t in _record(tmp_path / "probe", "kart")["n_to_capture"])
    bad = raw / "kart" / "native" / f"{last:06d}.png"
    good_bytes = bad.read_bytes()
    _corrupt_idat_keep_crc(bad)  # same size; fails only at decode time, late in the run
    st = bad.stat()
    ds = tmp_path / "DS"
    with pytest.raises(Cloud3dError):
        build_splits(raw / "kart", ds, **args)
    staged = {
        p.relative_to(next((ds / ".cloud3d").glob("staging-kart-*"))).as_posix(): p.stat().st_ino
        for p in (ds / ".cloud3d").rglob("*.png")
    }
    assert staged
    # Put the frame back as it was (same size and time: same inputs), re-run the same command.
    bad.write_bytes(good_bytes)
    os.utime(bad, ns=(st.st_atime_ns, st.st_mtime_ns))
    r = build_splits(raw / "kart", ds, **args)
    assert r.files == 56
    reused = [rel for rel, ino in staged.items() if (ds / rel).stat().st_ino == ino]
    assert reused and len(reused) == len(staged)
    assert (tmp_path / "probe" / "manifest.csv").read_bytes() == (ds / "manifest.csv").read_bytes()



def test_cli_split_and_errors(run_cli, raw, tmp_path):
    write_capture(raw, "quake", 30, size=(64, 48), fps=1.0, seed=2)
    p = run_cli("split", str(raw), "--out", str(tmp_path / "DS"), "--quiet")
    assert p.returncode == 1 and "several apps" in p.stderr and "--app" in p.stderr
    assert "Traceback" not in p.stderr
    p = run_cli(
        "split",
        str(raw),
        "--app",
        "kart",
        "--out",
        str(tmp_path / "DS"),
        "--train",
        "40",
        "--val",
        "8",
        "--test",
        "8",
        "--block",
        "10s",
        "--quiet",
    )
    assert p.returncode == 0, p.stderr
    assert "train 40, validation 8, test 8" in p.stdout
    p = run_cli(
        "split",
        str(raw),
        "--app",
        "kart",
        "--out",
        str(tmp_path / "DS"),
        "--train",
        "40",
        "--val",
        "8",
        "--test",
        "8",
        "--block",
        "10s",
        "--quiet",
    )
    assert p.returncode == 0 and "nothing to do" in p.stdout
    p = run_cli("split", str(raw / "kart" / "native"), "--out", str(tmp_path / "E"), "--quiet")
    assert p.returncode == 1 and "error:" in p.stderr and "--app" in p.stderr
    p = run_cli("split", str(raw), "--app", "kart", "--out", str(tmp_path / "F"), "--block", "10x")
    assert p.returncode == 1 and "bad length" in p.stderr
