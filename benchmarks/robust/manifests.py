"""Hostile archive manifests and entry layouts, restored by
:func:`baselines.archive.unpack.unarchive` (``cloud3d unarchive``).

Base archives are real: a small dataset archived ``raw`` and ``png``. Case ``i`` rewrites
one base's manifest (re-hashed, as an attacker would, so it reaches the checks after the
manifest's own hash) with a variant of :data:`VARIANTS` drawn from ``(seed, i)``:

* ``nan``: ``NaN`` or ``Infinity`` in a numeric field; ``deep``: a body field nested 65 to
  100,000 levels;
* ``long-name``: a path component of 256 to 1,000 bytes (in ASCII or in two-byte
  characters, so fewer characters than bytes);
* ``file-folder``: one entry's path is a folder of another's; ``marker``: an entry under
  the restore's own state file; ``dot``: hidden names and names with spaces or accents
  (accepted);
* ``raw-hash``: a raw entry whose ``sha256`` or ``bytes`` is not its data's; ``member``:
  a member's data replaced and its ``member_sha256`` recomputed;
* ``count``: more entries than the archive can hold; ``rows``: forged ``dataset_rows``;
* ``existing``: the output folder already holds a file or a folder where an entry goes.

After each case nothing may exist outside the case's folder's output; the restore must
end restored or with a one-line :class:`~cloud3d.errors.Cloud3dError`.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

VARIANTS = ("nan", "deep", "long-name", "file-folder", "marker", "dot", "raw-hash", "member",
            "count", "rows", "existing")


@dataclass
class Context:
    work: Path
    archives: dict[str, bytes]  # codec -> archive bytes


def setup(work: Path, seed: int) -> Context:
    """A small real dataset archived raw and png under ``work/manifests-setup``."""
    from baselines.archive.pack import archive_folder
    from benchmarks.robust.streams import frame
    from cloud3d.imageio import write_png
    from cloud3d_dataset.manifest import index_dataset

    base = work / "manifests-setup"
    shutil.rmtree(base, ignore_errors=True)
    img = frame(seed)
    for i in range(3):
        write_png(base / "ds" / "test" / "kart-72p" / f"{i}.png", np.roll(img, 5 * i, axis=0))
    write_png(base / "ds" / "train" / "kart-72p" / "7.png", img[:, ::-1].copy())
    index_dataset(base / "ds", progress=False)
    out = {}
    for codec in ("raw", "png"):
        archive_folder(base / "ds", base / f"{codec}.tar", codec, workers=1, progress=False)
        out[codec] = (base / f"{codec}.tar").read_bytes()
    return Context(work, out)


def _members(blob: bytes) -> list[tuple[tarfile.TarInfo, bytes]]:
    with tarfile.open(fileobj=io.BytesIO(blob)) as tf:
        return [(m, tf.extractfile(m).read()) for m in tf.getmembers()]


def _tar(members: list[tuple[tarfile.TarInfo, bytes]]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for info, data in members:
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return out.getvalue()


def _manifest(doc: dict, raw_body: str | None = None) -> bytes:
    """The manifest text of ``doc`` re-hashed (NaN allowed, as a forger's encoder would);
    ``raw_body``: body text to splice in verbatim (too deep for ``json`` to write)."""
    body = raw_body or json.dumps(doc["body"], sort_keys=True, separators=(",", ":"),
                                  ensure_ascii=False, allow_nan=True)
    doc = {**doc, "body_sha256": hashlib.sha256(body.encode()).hexdigest(), "body": None}
    text = json.dumps(doc, sort_keys=True, allow_nan=True)
    return text.replace('"body": null', f'"body": {body}').encode()


def _variant(rng, v: str, members: list, doc: dict, out: Path) -> tuple[str, bytes]:
    """Apply variant ``v``; returns (detail, manifest bytes)."""
    entries = doc["body"]["entries"]
    e = entries[int(rng.integers(0, len(entries)))]
    other = entries[(entries.index(e) + 1) % len(entries)]
    detail = ""
    if v == "nan":
        detail = str(rng.choice(["bytes", "width", "mse", "member_bytes"]))
        e[detail] = float(rng.choice([np.nan, np.inf, -np.inf]))
    elif v == "deep":
        depth = int(rng.choice([65, 1000, 100_000]))
        detail = str(depth)
        body = json.dumps(doc["body"], sort_keys=True, separators=(",", ":"))
        return detail, _manifest(doc, body[:-1] + ',"x":' + "[" * depth + "]" * depth + "}")
    elif v == "long-name":
        n = int(rng.integers(128, 501))
        name = ("é" * n) if rng.integers(0, 2) else ("a" * (2 * n))
        detail = f"{len(name.encode())} bytes"
        e["path"] = f"test/{name}.png"
    elif v == "file-folder":
        if rng.integers(0, 2):
            other["path"] = e["path"] + "/x.png"
        else:
            e["path"] = other["path"][:-4] + ".d.png"
            other["path"] = e["path"] + "/" + other["path"].rsplit("/", 1)[-1]
    elif v == "marker":
        from baselines.archive.unpack import MARKER

        e["path"] = f"{MARKER}/{rng.integers(0, 9)}.png"
    elif v == "dot":
        new = str(rng.choice([".hidden.png", "test/ a b .png", "test/ü/ß.png", "..a.png"]))
        for row in doc["body"].get("dataset_rows") or []:  # the dataset rows follow the file
            if row.get("path") == e["path"]:
                row["path"] = new
        e["path"] = new
    elif v == "raw-hash":
        key = str(rng.choice(["sha256", "bytes"]))
        detail = key
        e[key] = "0" * 64 if key == "sha256" else e["bytes"] + int(rng.choice([-1, 1]))
    elif v == "member":
        k = next(k for k, (m, _) in enumerate(members) if m.name == e["member"])
        data = bytearray(members[k][1])
        data[int(rng.integers(0, len(data)))] ^= 0xFF
        members[k] = (members[k][0], bytes(data))
        e["member_bytes"] = len(data)
        e["member_sha256"] = hashlib.sha256(data).hexdigest()
    elif v == "count":
        entries.extend([dict(e, path=f"test/x{k}.png", member=f"data/x{k}.png")
                        for k in range(int(rng.choice([10, 1000, 20_000])))])
    elif v == "rows":
        doc["body"]["dataset_rows"] = [None, [1], [{"path": float("nan")}], "x",
                                       [{"path": e["path"], "bytes": "many"}]][int(rng.integers(0, 5))]
    elif v == "existing":
        target = out / e["path"]
        if rng.integers(0, 2):
            (target / "inside").mkdir(parents=True)  # a folder where the file goes
        else:
            target.parent.mkdir(parents=True)
            target.write_bytes(b"not a png")  # replaced (the case passes --force)
    return detail, _manifest(doc)


def case(ctx: Context, seed: int, i: int) -> tuple[str, Callable[[], object]]:
    """Case ``i``: ``(name, call)`` (see the module docstring)."""
    name, call, _ = case_with_argv(ctx, seed, i)
    return name, call


def case_with_argv(ctx: Context, seed: int, i: int) -> tuple[str, Callable[[], object], list]:
    """Case ``i``: ``(name, library call, cloud3d arguments restoring the same archive)``."""
    from baselines.archive.unpack import unarchive

    rng = np.random.default_rng([seed, i, 4])
    d = ctx.work / "manifests-cases" / str(i % 64)
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    out = d / "out"
    v = VARIANTS[i % len(VARIANTS)]
    codec = "raw" if v == "raw-hash" else str(rng.choice(sorted(ctx.archives)))
    members = _members(ctx.archives[codec])
    doc = json.loads(members[0][1])
    detail, manifest = _variant(rng, v, members, doc, out)
    members[0] = (members[0][0], manifest)
    path = d / "a.tar"
    path.write_bytes(_tar(members))
    force = v == "existing"

    def call():
        try:
            unarchive(path, out, workers=1, force=force, progress=False)
        finally:
            outside = [p for p in d.rglob("*") if p != path and p != out and out not in p.parents]
            outside += [p for p in d.parent.iterdir() if p.is_file()]
            if outside:
                raise AssertionError(f"written outside the output folder: {outside[:3]}")

    argv = ["unarchive", path, "-o", out, "--quiet", *(["--force"] if force else [])]
    name = f"manifests/{v}/{codec}{'/' + detail if detail else ''}"
    return name, call, argv
