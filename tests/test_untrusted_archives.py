"""Untrusted inputs, round 2 (issue 23): archive manifests and entry layouts, raw entries
whose data is not the original, and ``bench-folder --out`` pointed at someone else's CSV.

Real archives made by ``archive_folder`` from a tiny real dataset; each forged manifest is
re-hashed, as an attacker would, so it reaches the checks after the manifest's own hash.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest
from helpers import make_dataset

from baselines.archive.pack import archive_folder
from baselines.archive.unpack import MARKER, unarchive
from cloud3d.errors import Cloud3dError


@pytest.fixture(scope="module")
def raw_archive(tmp_path_factory) -> bytes:
    d = tmp_path_factory.mktemp("arch")
    ds = make_dataset(d / "ds", apps=("alpha",), n=3, h=40, w=48)
    archive_folder(ds, d / "a.tar", "raw", workers=1, progress=False)
    return (d / "a.tar").read_bytes()


def _forge(blob: bytes, edit, allow_nan: bool = False) -> bytes:
    """``blob`` with its manifest document passed through ``edit`` and re-hashed."""
    with tarfile.open(fileobj=io.BytesIO(blob)) as tf:
        members = [(m, tf.extractfile(m).read()) for m in tf.getmembers()]
    doc = json.loads(members[0][1])
    edit(doc["body"])
    canon = json.dumps(doc["body"], sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                       allow_nan=allow_nan).encode()
    doc["body_sha256"] = hashlib.sha256(canon).hexdigest()
    data = json.dumps(doc, allow_nan=allow_nan).encode()
    members[0][0].size = len(data)
    members[0] = (members[0][0], data)
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for info, body in members:
            tf.addfile(info, io.BytesIO(body))
    return out.getvalue()


def _unarchive(tmp_path: Path, blob: bytes) -> Path:
    src = tmp_path / "forged.tar"
    src.write_bytes(blob)
    out = tmp_path / "out"
    unarchive(src, out, workers=1, progress=False)
    return out


def _set(i: int, **fields):
    def edit(body):
        body["entries"][i].update(fields)
    return edit


def _under_first(body):
    body["entries"][1]["path"] = body["entries"][0]["path"] + "/x.png"


@pytest.mark.parametrize("edit, needle", [
    (_set(0, bytes=float("nan")), "not valid JSON"),  # ValueError traceback before the fix
    (_set(0, path="test/" + "a" * 300 + ".png"), "more than a file system allows"),
    (_under_first, "both a file and a folder"),
    (_set(1, path=f"{MARKER}/x.png"), "state file"),  # OSErrors before the fix
    (_set(2, sha256="0" * 64), "not the original"),  # restored silently before the fix
], ids=["nan", "long-name", "file-and-folder", "under-marker", "raw-sha256"])
def test_forged_archive_manifests_give_one_line(tmp_path, raw_archive, edit, needle):
    blob = _forge(raw_archive, edit, allow_nan=True)
    with pytest.raises(Cloud3dError, match=needle) as err:
        _unarchive(tmp_path, blob)
    assert "\n" not in str(err.value)
    if needle in ("state file", "not the original"):  # one file refused, the others restored
        assert len(list((tmp_path / "out").rglob("*.png"))) == 3  # of 4


def test_an_archive_that_is_a_pipe_is_refused(tmp_path):
    import os

    os.mkfifo(tmp_path / "a.tar")
    with pytest.raises(Cloud3dError, match="named pipe"):
        unarchive(tmp_path / "a.tar", tmp_path / "out", workers=1, progress=False)


def test_bench_folder_leaves_an_unrelated_csv_alone(tmp_path, run_cli):
    ds = make_dataset(tmp_path / "ds", apps=("alpha",), n=2, h=40, w=48)
    other = tmp_path / "sales.csv"
    other.write_text("region,total\nnorth,12\n")
    r = run_cli("bench-folder", ds, "--method", "tar", "--out", other, "--quiet")
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr  # KeyError before
    assert r.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "not a bench-folder table" in r.stderr
    assert other.read_text() == "region,total\nnorth,12\n"
