"""Untrusted archives: forged members and manifests, truncation, flipped bytes, foreign files.

Every case gets a one-line Cloud3dError, writes nothing outside the output folder, and keeps
whatever was restored before the problem.
"""

from __future__ import annotations

import io
import json
import tarfile

import numpy as np
import pytest
from helpers import make_dataset

from baselines.archive.container import MANIFEST_MEMBER, manifest_bytes
from baselines.archive.pack import archive_folder
from baselines.archive.unpack import unarchive
from cloud3d.errors import Cloud3dError
from cloud3d.imageio import read_png_rgb
from cloud3d_dataset.manifest import load_manifest


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """A real dataset and two real archives of it (raw and webp-lossless)."""
    root = tmp_path_factory.mktemp("sec")
    ds = make_dataset(root / "ds", n=2, res="168p")
    archives = {}
    for spec in ("raw", "webp-lossless"):
        archives[spec] = root / f"{spec}.tar"
        archive_folder(ds, archives[spec], spec, progress=False)
    return ds, archives


def _members(arc):
    """``[(TarInfo, bytes)]`` of a real archive, to forge variants from."""
    with tarfile.open(arc) as tf:
        return [(m, tf.extractfile(m).read()) for m in tf.getmembers()]


def _write(path, members):
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tf:
        for info, data in members:
            info = tarfile.TarInfo(info) if isinstance(info, str) else info
            if data is not None:
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
            else:
                tf.addfile(info)
    return path


def _forge_body(arc, out, change):
    """Copy ``arc`` with its manifest body changed by ``change(body)`` and a valid hash."""
    members = _members(arc)
    doc = json.loads(members[0][1])
    change(doc["body"])
    members[0] = (MANIFEST_MEMBER, manifest_bytes(doc["body"]))
    return _write(out, members)


def _outside(tmp_path):
    return sorted(p.name for p in tmp_path.iterdir())


@pytest.mark.parametrize("name", ["../escaped.png", "/tmp/abs-escaped.png", "data/../../x.png"])
def test_member_names_leaving_the_folder_are_refused(made, tmp_path, name):
    _, arcs = made
    members = _members(arcs["raw"])
    forged = _write(tmp_path / "f.tar", [*members, (name, b"payload")])
    with pytest.raises(Cloud3dError, match="refused"):
        unarchive(forged, tmp_path / "out", progress=False)
    assert not (tmp_path / "escaped.png").exists() and not (tmp_path.parent / "x.png").exists()
    assert not list((tmp_path / "out").rglob("*.png"))  # refused before anything was written


@pytest.mark.parametrize("kind", [tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.CHRTYPE, tarfile.FIFOTYPE,
                                  tarfile.DIRTYPE])
def test_links_devices_and_folders_are_refused(made, tmp_path, kind):
    _, arcs = made
    members = _members(arcs["raw"])
    info = tarfile.TarInfo("data/test/alpha-168p/evil.png")
    info.type = kind
    info.linkname = "/etc/passwd" if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE) else ""
    forged = _write(tmp_path / "f.tar", [*members, (info, None)])
    with pytest.raises(Cloud3dError, match="refus|not written by cloud3d"):
        unarchive(forged, tmp_path / "out", progress=False)


@pytest.mark.parametrize("path", ["../evil.png", "/tmp/evil.png", "a/./b.png", "test//x.png",
                                  "manifest.csv", "a\\..\\b.png"])
def test_forged_manifest_paths_are_refused(made, tmp_path, path):
    _, arcs = made
    forged = _forge_body(arcs["raw"], tmp_path / "f.tar",
                         lambda b: b["entries"][0].update(path=path))
    with pytest.raises(Cloud3dError, match="refus"):
        unarchive(forged, tmp_path / "out", progress=False)
    assert not (tmp_path / "evil.png").exists()


def test_symlinked_folder_in_the_output_cannot_lead_outside(made, tmp_path):
    _, arcs = made
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    (out / "test").symlink_to(elsewhere)
    with pytest.raises(Cloud3dError, match="leads outside"):
        unarchive(arcs["raw"], out, force=True, progress=False)
    assert not list(elsewhere.iterdir())
    assert (out / "train" / "alpha-168p" / "99.png").is_file()  # the rest was restored


@pytest.mark.parametrize("change, message", [
    (lambda b: b["entries"][0].update(width=100000), "not an integer in 1..16384"),
    (lambda b: b["entries"][0].update(width=16384, height=16384), "exceeds the 40.0 Mpx limit"),
    (lambda b: b["entries"][0].update(member_bytes=1 << 40), "member_bytes"),
    (lambda b: b["entries"][0].update(sha256="x" * 64), "not a SHA-256"),
    (lambda b: b.update(entries=b["entries"] * 40), "more than the archive can hold|listed twice"),
    (lambda b: b.update(entries={"a": 1}), "not a list"),
    (lambda b: b["entries"].append(dict(b["entries"][0], path="test/alpha-168p/7.png")), "listed twice"),
])
def test_forged_sizes_are_bounded(made, tmp_path, change, message):
    _, arcs = made
    forged = _forge_body(arcs["raw"], tmp_path / "f.tar", change)
    with pytest.raises(Cloud3dError, match=message):
        unarchive(forged, tmp_path / "out", progress=False)


def test_declared_size_is_checked_before_decoding(made, tmp_path):
    """A bitstream whose header disagrees with the manifest is refused before its pixels
    are allocated; the other files are restored."""
    _, arcs = made
    forged = _forge_body(arcs["webp-lossless"], tmp_path / "f.tar",
                         lambda b: b["entries"][1].update(width=8, height=8))
    with pytest.raises(Cloud3dError, match=r"1 of 5 files .*declares 176x168 but the manifest 8x8"):
        unarchive(forged, tmp_path / "out", progress=False)
    assert len(list((tmp_path / "out").rglob("*.png"))) == 4


def test_lossless_entry_without_its_pixel_hash(made, tmp_path):
    """Found by the robustness harness (files case 1353): a lossless archive's manifest entry
    without ``pixel_sha256`` gave a KeyError traceback. It is a one-line refusal of that file;
    the other files are restored."""
    _, arcs = made
    forged = _forge_body(arcs["webp-lossless"], tmp_path / "f.tar",
                         lambda b: b["entries"][2].pop("pixel_sha256"))
    with pytest.raises(Cloud3dError, match="1 of 5 files .*no pixel_sha256"):
        unarchive(forged, tmp_path / "out", progress=False)
    assert len(list((tmp_path / "out").rglob("*.png"))) == 4


def test_flipped_byte_in_a_bitstream(made, tmp_path):
    ds, arcs = made
    data = bytearray(arcs["webp-lossless"].read_bytes())
    members = _members(arcs["webp-lossless"])
    # the data of the third member: find it and flip one byte in its middle
    pos = bytes(data).index(members[3][1])
    data[pos + len(members[3][1]) // 2] ^= 0x40
    bad = tmp_path / "flip.tar"
    bad.write_bytes(bytes(data))
    out = tmp_path / "out"
    with pytest.raises(Cloud3dError, match=r"1 of 5 files could not be restored .*SHA-256 mismatch"):
        unarchive(bad, out, progress=False)
    restored = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png"))
    assert len(restored) == 4
    for rel in restored:
        assert np.array_equal(read_png_rgb(out / rel), read_png_rgb(ds / rel))
    # the good copy completes the folder; the four restored files are not redone
    u = unarchive(arcs["webp-lossless"], out, progress=False)
    assert (u.restored, u.skipped) == (1, 4)


def test_flipped_byte_in_the_manifest(made, tmp_path):
    _, arcs = made
    data = bytearray(arcs["raw"].read_bytes())
    pos = bytes(data).index(b'"sha256"')
    data[pos + 12] = ord("0") if data[pos + 12] != ord("0") else ord("1")  # a hash digit
    bad = tmp_path / "flip.tar"
    bad.write_bytes(bytes(data))
    with pytest.raises(Cloud3dError, match="manifest is corrupt"):
        unarchive(bad, tmp_path / "out", progress=False)


def test_truncated_archive_keeps_what_it_restored_and_resumes(made, tmp_path):
    ds, arcs = made
    full = arcs["webp-lossless"].read_bytes()
    members = _members(arcs["webp-lossless"])
    cut = full.index(members[4][1]) + 10  # inside the fourth bitstream
    bad = tmp_path / "cut.tar"
    bad.write_bytes(full[:cut])
    out = tmp_path / "out"
    with pytest.raises(Cloud3dError, match=r"2 of 5 files could not be restored .*(cut short|missing)"):
        unarchive(bad, out, progress=False)
    assert len(list(out.rglob("*.png"))) == 3
    u = unarchive(arcs["webp-lossless"], out, progress=False)
    assert (u.restored, u.skipped) == (2, 3)
    for row in load_manifest(ds).itertuples():
        assert np.array_equal(read_png_rgb(out / row.path), read_png_rgb(ds / row.path))


@pytest.mark.parametrize("keep", [100, 600, 2000])
def test_archive_cut_before_its_data(made, tmp_path, keep):
    _, arcs = made
    bad = tmp_path / "cut.tar"
    bad.write_bytes(arcs["raw"].read_bytes()[:keep])
    with pytest.raises(Cloud3dError, match="too short|truncated|cut short|not a cloud3d archive|corrupt"):
        unarchive(bad, tmp_path / "out", progress=False)


def test_files_that_are_not_ours(made, tmp_path):
    ds, _ = made
    png = ds / "test" / "alpha-168p" / "0.png"
    with pytest.raises(Cloud3dError, match="not a cloud3d archive"):
        unarchive(png, tmp_path / "o1", progress=False)
    noise = tmp_path / "noise.bin"
    noise.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    with pytest.raises(Cloud3dError, match="not a cloud3d archive"):
        unarchive(noise, tmp_path / "o2", progress=False)
    other = _write(tmp_path / "other.tar", [("readme.txt", b"hello" * 300)])
    with pytest.raises(Cloud3dError, match="tar file but not a cloud3d archive"):
        unarchive(other, tmp_path / "o3", progress=False)
    empty = tmp_path / "empty.tar"
    empty.write_bytes(b"")
    with pytest.raises(Cloud3dError, match="too short"):
        unarchive(empty, tmp_path / "o4", progress=False)
    wrong_version = _forge_version(tmp_path, made[1]["raw"])
    with pytest.raises(Cloud3dError, match="version 99"):
        unarchive(wrong_version, tmp_path / "o5", progress=False)
    with pytest.raises(Cloud3dError, match="no such archive"):
        unarchive(tmp_path / "nope.tar", tmp_path / "o6", progress=False)


def _forge_version(tmp_path, arc):
    members = _members(arc)
    doc = json.loads(members[0][1])
    doc["version"] = 99
    members[0] = (MANIFEST_MEMBER, json.dumps(doc).encode())
    return _write(tmp_path / "v99.tar", members)


def test_cli_prints_one_line(made, tmp_path, run_cli):
    _, arcs = made
    forged = _forge_body(arcs["raw"], tmp_path / "f.tar", lambda b: b["entries"][0].update(path="../evil.png"))
    p = run_cli("unarchive", forged, "-o", tmp_path / "out")
    assert p.returncode == 1 and p.stderr.startswith("error: ") and p.stderr.strip().count("\n") == 0
    assert "refused" in p.stderr and not (tmp_path / "evil.png").exists()


@pytest.mark.parametrize("change", [{"path": "x/../../y.png"}, {"width": "wide"}])
def test_forged_dataset_rows(made, tmp_path, change):
    _, arcs = made
    forged = _forge_body(arcs["raw"], tmp_path / "f.tar", lambda b: b["dataset_rows"][0].update(change))
    with pytest.raises(Cloud3dError, match="dataset rows do not match"):
        unarchive(forged, tmp_path / "out", progress=False)
    assert len(list((tmp_path / "out").rglob("*.png"))) == 5  # the files themselves are fine
    assert not (tmp_path / "out" / "manifest.csv").exists()
