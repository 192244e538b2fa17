"""Hostile files other than streams, each fed to the library call that reads it.

(Somewhat over 400 lines: the four kinds share one case numbering, one set-up and one
case folder scheme, and each kind's variants read best as one list.)

Case ``i`` is of kind ``KINDS[i % 4]`` and draws its variant from ``(seed, i)``:

* ``checkpoint`` -> :func:`models.checkpoint.load_checkpoint`: a real checkpoint rewritten
  with a forged config (huge sizes, unknown keys, strings, lists, nulls), architecture,
  format fields, metadata, state dict (missing, extra, mis-shaped, non-tensor entries), a
  pickled object that ``weights_only`` must refuse, or damaged bytes (truncated, flipped,
  random, empty);
* ``archive`` -> :func:`baselines.archive.unpack.unarchive`: a real archive whose manifest
  is forged and re-hashed (paths that climb out or are absolute, huge or negative sizes,
  wrong types, missing fields), whose tar holds links, absolute or climbing member names,
  or whose bytes are damaged. After each case nothing may exist outside its output folder;
* ``image`` -> :func:`cloud3d.imageio.read_image_rgb`: PNGs with forged sizes, 16-bit,
  palette, low-bit, interlaced and alpha variants, damaged chunks (with and without the
  chunk CRC fixed), decompression bombs in ``IDAT``, ``zTXt`` and ``iCCP``, other formats
  under a ``.png`` name, empty files;
* ``manifest`` -> :func:`cloud3d_dataset.manifest.load_manifest`,
  :func:`cloud3d_dataset.verify.verify` or the torch Dataset (in turn): a real dataset whose
  ``manifest.csv`` holds climbing, absolute or symlinked paths, non-numeric, negative, huge
  or missing fields, extra or missing columns, duplicate rows, odd encodings and bytes.
"""

from __future__ import annotations

import io
import json
import shutil
import struct
import tarfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks.robust.pngs import PNG_SIG, chunk, chunks, forged_png, png_bytes

KINDS = ("checkpoint", "archive", "image", "manifest")


# ----------------------------------------------------------------------------- setup


@dataclass
class Context:
    work: Path
    ckpt: dict  # the real checkpoint object
    ckpt_bytes: bytes
    ckpt_path: Path
    stream_path: Path  # a real .c3d stream of that checkpoint
    archive: bytes
    dataset: Path
    frame: np.ndarray


def setup(work: Path, seed: int) -> Context:
    """A real checkpoint, archive and dataset under ``work/files-setup`` (a few seconds)."""
    import torch

    from baselines.archive.pack import archive_folder
    from benchmarks.robust.streams import frame
    from cloud3d.imageio import write_png
    from cloud3d_dataset.manifest import index_dataset
    from models.architectures import create_model
    from models.checkpoint import load_checkpoint, save_checkpoint
    from models.codec import compress_image

    base = work / "files-setup"
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir(parents=True)
    torch.manual_seed(seed)
    ck = save_checkpoint(base / "m.pt", create_model("bmshj2018-hyperprior", N=16, M=24), {"app": "x"})
    img = frame(seed)
    ds = base / "ds"
    for i in range(3):
        write_png(ds / "test" / "alpha-72p" / f"{i}.png", np.roll(img, 7 * i, axis=1))
    write_png(ds / "train" / "alpha-72p" / "3.png", img[::-1].copy())
    index_dataset(ds, progress=False)
    archive_folder(ds, base / "a.tar", "png", workers=1, progress=False)
    model, _ = load_checkpoint(ck)
    (base / "s.c3d").write_bytes(compress_image(model, img))
    return Context(work, torch.load(ck, weights_only=True), ck.read_bytes(), ck, base / "s.c3d",
                   (base / "a.tar").read_bytes(), ds, img)


def _case_dir(ctx: Context, i: int) -> Path:
    d = ctx.work / "files-cases" / str(i % 64)
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    return d


# ----------------------------------------------------------------------------- checkpoints


def _ckpt_case(ctx: Context, rng, d: Path) -> tuple[str, Callable[[], object], list]:
    import copy

    import torch

    from models.checkpoint import load_checkpoint

    obj = copy.copy(ctx.ckpt)
    obj["state_dict"] = dict(ctx.ckpt["state_dict"])
    meta = json.loads(obj["meta_json"])
    v = int(rng.integers(0, 14))
    names = ["config", "arch", "format", "meta-type", "meta-json", "sd-missing", "sd-extra",
             "sd-shape", "sd-value", "pickle", "truncate", "flip", "random", "empty"]
    path = d / "m.pt"
    raw: bytes | None = None
    if v == 0:
        meta["config"] = [{"N": 100000}, {"N": 40000, "M": 40000}, {"bogus": 1}, "N=16", [16, 24],
                          None, {"N": -1}, {"N": 1.5}, {"N": "16"}, {"N": True}, {"N": 2**63},
                          {"N": {"x": 1}}][int(rng.integers(0, 12))]
    elif v == 1:
        meta["arch"] = [None, 7, "c2f-large", "mbt2018-mean", "../x", "", "a" * 10000][int(rng.integers(0, 7))]
    elif v == 2:
        k = ["format", "format_version"][int(rng.integers(0, 2))]
        obj[k] = [None, 2, "x", -1][int(rng.integers(0, 4))]
    elif v == 3:
        obj["meta_json"] = json.dumps([[], "s", 3, None, 1.5][int(rng.integers(0, 5))])
    elif v == 4:
        obj["meta_json"] = ["{", 7, None, b"{}", "{" * 100000][int(rng.integers(0, 5))]
    elif v == 5:
        keys = list(obj["state_dict"])
        del obj["state_dict"][keys[int(rng.integers(0, len(keys)))]]
    elif v == 6:
        obj["state_dict"]["bogus.weight"] = torch.zeros(3)
    elif v == 7:
        keys = list(obj["state_dict"])
        k = keys[int(rng.integers(0, len(keys)))]
        obj["state_dict"][k] = torch.zeros(int(rng.integers(1, 5)), 2)
    elif v == 8:
        keys = list(obj["state_dict"])
        obj["state_dict"][keys[int(rng.integers(0, len(keys)))]] = [1, 2, 3]
    elif v == 9:
        obj["meta_json"] = json.dumps(meta)
        buf = io.BytesIO()
        torch.save({**obj, "evil": Path("/etc/passwd")}, buf)  # a class weights_only refuses
        raw = buf.getvalue()
    elif v == 10:
        raw = ctx.ckpt_bytes[: int(rng.integers(0, len(ctx.ckpt_bytes)))]
    elif v == 11:
        b = bytearray(ctx.ckpt_bytes)
        for _ in range(int(rng.integers(1, 9))):
            b[int(rng.integers(0, len(b)))] ^= 1 << int(rng.integers(0, 8))
        raw = bytes(b)
    elif v == 12:
        raw = b"PK" + rng.integers(0, 256, size=int(rng.integers(0, 4096)), dtype=np.uint8).tobytes()
    else:
        raw = b""
    if raw is None:
        if v < 3:
            obj["meta_json"] = json.dumps(meta)
        torch.save(obj, path)
    else:
        path.write_bytes(raw)
    return (f"checkpoint/{names[v]}", lambda: load_checkpoint(path),
            ["decompress", ctx.stream_path, "-m", path, "-o", d / "out.png"])


# ----------------------------------------------------------------------------- archives


def _tar_with(members: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for info, data in members:
            tf.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def _archive_members(blob: bytes) -> list[tuple[tarfile.TarInfo, bytes]]:
    with tarfile.open(fileobj=io.BytesIO(blob), mode="r:") as tf:
        return [(m, tf.extractfile(m).read()) for m in tf.getmembers()]


def _rehash(doc: dict) -> bytes:
    import hashlib

    from baselines.archive.container import canonical_json

    doc["body_sha256"] = hashlib.sha256(canonical_json(doc["body"])).hexdigest()
    return json.dumps(doc).encode()


def _archive_case(ctx: Context, rng, d: Path) -> tuple[str, Callable[[], object], list]:
    from baselines.archive.unpack import unarchive

    members = _archive_members(ctx.archive)
    head, manifest = members[0]
    doc = json.loads(manifest)
    entries = doc["body"]["entries"]
    e = entries[int(rng.integers(0, len(entries)))]
    v = int(rng.integers(0, 11))
    names = ["path", "size", "field-type", "field-missing", "codec", "member-name", "link",
             "truncate", "flip", "random", "entries-type"]
    raw: bytes | None = None
    if v == 0:
        e["path"] = ["../../pwn.png", "/tmp/pwn.png", "a/../../pwn.png", "", ".", "a//b.png",
                     "x\x00.png", "test/../../../pwn.png", "C:\\pwn.png", "~/pwn.png"][int(rng.integers(0, 10))]
    elif v == 1:
        e[["width", "height", "bytes", "member_bytes"][int(rng.integers(0, 4))]] = \
            [0, -1, 2**31, 2**63, 100000, 16385][int(rng.integers(0, 6))]
    elif v == 2:
        k = list(e)[int(rng.integers(0, len(e)))]
        e[k] = [None, "x", [], {}, 1.5, True][int(rng.integers(0, 6))]
    elif v == 3:
        del e[list(e)[int(rng.integers(0, len(e)))]]
    elif v == 4:
        doc["body"]["codec"] = [None, {"spec": "bogus"}, {"spec": "learned:checkpoint=/nonexistent.pt"},
                                {"spec": 7}, "png"][int(rng.integers(0, 5))]
    elif v == 10:
        doc["body"]["entries"] = [None, {}, "x", [None], [1]][int(rng.integers(0, 5))]
    if v <= 4 or v == 10:
        data = _rehash(doc)
        head.size = len(data)
        members[0] = (head, data)
        raw = _tar_with(members)
    elif v == 5:
        info, data = members[1 + int(rng.integers(0, len(members) - 1))]
        info.name = ["/abs/x.png", "../x.png", "data/../../x.png", "data/a/../../../x"][int(rng.integers(0, 4))]
        raw = _tar_with(members)
    elif v == 6:
        link = tarfile.TarInfo(members[1][0].name)
        link.type = [tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.CHRTYPE, tarfile.FIFOTYPE][int(rng.integers(0, 4))]
        link.linkname = "/etc/passwd"
        raw = _tar_with([members[0], (link, None), *members[2:]])
    elif v == 7:
        raw = ctx.archive[: int(rng.integers(0, len(ctx.archive)))]
    elif v == 8:
        b = bytearray(ctx.archive)
        for _ in range(int(rng.integers(1, 17))):
            b[int(rng.integers(0, len(b)))] ^= 1 << int(rng.integers(0, 8))
        raw = bytes(b)
    else:
        raw = rng.integers(0, 256, size=int(rng.integers(0, 8192)), dtype=np.uint8).tobytes()
    path = d / "a.tar"
    path.write_bytes(raw)
    out = d / "deep" / "out"

    escape = Path("/tmp/pwn.png")

    def call():
        try:
            unarchive(path, out, workers=1, progress=False)
        finally:  # a climbing path lands in d or above it; an absolute one in /tmp
            outside = [p for p in (escape, ctx.work / "pwn.png", ctx.work / "files-cases" / "pwn.png")
                       if p.exists()]
            outside += [p for p in d.rglob("*") if p.is_file() and out not in p.parents and p != path]
            if outside:
                for p in outside:
                    p.unlink()
                raise AssertionError(f"written outside the output folder: {outside[:3]}")

    return f"archive/{names[v]}", call, ["unarchive", path, "-o", out, "--quiet"]


# ----------------------------------------------------------------------------- images


def _image_bytes(ctx: Context, rng) -> tuple[str, bytes]:
    img = ctx.frame
    v = int(rng.integers(0, 16))
    if v == 0:
        w, h = [(12000, 12000), (2**31 - 1, 1), (1, 2**31 - 1), (65536, 65536), (7000, 6000),
                (0, 10)][int(rng.integers(0, 6))]
        return "forged-size", forged_png(w, h)
    if v == 1:
        ct, ch = [(0, 1), (2, 3), (4, 2), (6, 4)][int(rng.integers(0, 4))]
        a = rng.integers(0, 65536, size=(24, 32, ch) if ch > 1 else (24, 32), dtype=np.uint16)
        return "16-bit", png_bytes(a, 16, ct)
    if v == 2:
        pal = chunk(b"PLTE", rng.integers(0, 256, size=3 * int(rng.integers(1, 257)), dtype=np.uint8).tobytes())
        a = rng.integers(0, 256, size=(24, 32), dtype=np.uint8)
        return "palette", png_bytes(a, 8, 3, extra=pal)
    if v == 3:  # 1/2/4-bit gray: rows packed
        depth = int(rng.choice([1, 2, 4]))
        w, h = 32, 24
        row = (w * depth + 7) // 8
        raw = b"".join(b"\x00" + rng.integers(0, 256, size=row, dtype=np.uint8).tobytes() for _ in range(h))
        ihdr = struct.pack(">IIBBBBB", w, h, depth, 0, 0, 0, 0)
        return "low-bit", PNG_SIG + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    if v == 4:  # interlace flag set on plain rows: a wrong-size stream for Adam7
        good = png_bytes(img)
        ihdr = bytearray(good[16:29])
        ihdr[12] = 1
        return "interlaced", good[:8] + chunk(b"IHDR", bytes(ihdr)) + good[33:]
    if v == 5:
        return "truncated", png_bytes(img)[: int(rng.integers(0, 4000))]
    if v == 6:
        b = bytearray(png_bytes(img))
        for _ in range(int(rng.integers(1, 9))):
            b[int(rng.integers(8, len(b)))] ^= 1 << int(rng.integers(0, 8))
        return "flipped", bytes(b)
    if v == 7:  # flipped inside a chunk, that chunk's CRC recomputed
        b = bytearray(png_bytes(img))
        off, n = chunks(bytes(b))[int(rng.integers(0, 3))]
        if n:
            b[off + 8 + int(rng.integers(0, n))] ^= 1 << int(rng.integers(0, 8))
        b[off + 8 + n:off + 12 + n] = struct.pack(">I", zlib.crc32(bytes(b[off + 4:off + 8 + n])))
        return "flipped-crc-fixed", bytes(b)
    if v == 8:  # IDAT inflating far past what the header implies
        return "idat-bomb", forged_png(64, 64, payload=bytes(int(rng.choice([10**6, 5 * 10**7]))))
    if v == 9:
        z = chunk(b"zTXt", b"Comment\x00\x00" + zlib.compress(bytes(int(rng.choice([2 * 10**6, 10**8])))))
        return "ztxt-bomb", png_bytes(img, extra=z)
    if v == 10:
        z = chunk(b"iCCP", b"icc\x00\x00" + zlib.compress(bytes(int(rng.choice([2 * 10**6, 10**8])))))
        return "iccp-bomb", png_bytes(img, extra=z)
    if v == 11:
        from PIL import Image

        buf = io.BytesIO()
        fmt = ["JPEG", "GIF", "BMP", "TIFF", "WEBP", "ICO"][int(rng.integers(0, 6))]
        Image.fromarray(img).save(buf, format=fmt)
        return f"{fmt.lower()}-as-png", buf.getvalue()
    if v == 12:
        return "empty", b""
    if v == 13:
        return "bad-depth", forged_png(32, 24, bit_depth=int(rng.choice([0, 3, 7, 32])),
                                       color_type=int(rng.choice([1, 2, 5, 7])))
    if v == 14:
        return "rgba", png_bytes(rng.integers(0, 256, size=(24, 32, 4), dtype=np.uint8), 8, 6)
    return "random", rng.integers(0, 256, size=int(rng.integers(1, 4096)), dtype=np.uint8).tobytes()


def _image_case(ctx: Context, rng, d: Path) -> tuple[str, Callable[[], object], list]:
    from cloud3d.imageio import read_image_rgb

    name, data = _image_bytes(ctx, rng)
    path = d / "x.png"
    path.write_bytes(data)
    return (f"image/{name}", lambda: read_image_rgb(path),
            ["compress", path, "-m", ctx.ckpt_path, "-o", d / "out.c3d"])


# ----------------------------------------------------------------------------- manifests


def _manifest_case(ctx: Context, rng, d: Path, i: int) -> tuple[str, Callable[[], object], list]:
    from cloud3d_dataset.manifest import load_manifest
    from cloud3d_dataset.torch_dataset import Cloud3dImages
    from cloud3d_dataset.verify import verify

    ds = d / "ds"
    shutil.copytree(ctx.dataset, ds)
    text = (ds / "manifest.csv").read_text()
    lines = text.splitlines()
    header = lines[0].split(",")
    row = int(rng.integers(1, len(lines)))
    cells = lines[row].split(",")
    v = int(rng.integers(0, 12))
    names = ["path", "symlink", "number", "empty-field", "columns", "duplicate", "encoding",
             "huge-field", "quoting", "empty-file", "binary", "row-count"]
    if v == 0:
        cells[header.index("path")] = ["/etc/passwd", "../../pwn.png", "test/alpha-72p/../../../x.png",
                                       "test/alpha-72p", "test/alpha-72p/9.png", "", "test\\alpha-72p\\0.png",
                                       "./test/alpha-72p/0.png"][int(rng.integers(0, 8))]
    elif v == 1:
        target = ["/etc/passwd", str(ctx.work), "/dev/zero", "../../../../x"][int(rng.integers(0, 4))]
        p = ds / lines[row].split(",")[header.index("path")]
        p.unlink()
        p.symlink_to(target)
    elif v == 2:
        col = ["width", "height", "bytes", "source_index", "capture_time"][int(rng.integers(0, 5))]
        cells[header.index(col)] = ["12x80", "-1", "1e300", "nan", "inf", "99999999999999999999",
                                    "0x10", " 72", "1.5", "0"][int(rng.integers(0, 10))]
    elif v == 3:
        cells[int(rng.integers(0, len(cells)))] = ""
    elif v == 4:
        k = int(rng.integers(0, len(header)))
        lines = [",".join(x for j, x in enumerate(ln.split(",")) if j != k) for ln in lines] \
            if rng.random() < 0.5 else [ln + ",extra" for ln in lines]
    elif v == 5:
        lines.append(lines[row])
    elif v == 6:
        data = "\n".join(lines).encode("utf-8")
        data = [b"\xef\xbb\xbf" + data, data.replace(b"\n", b"\r\n"), data.decode().encode("utf-16"),
                data + b"\xff\xfe\x00"][int(rng.integers(0, 4))]
        (ds / "manifest.csv").write_bytes(data)
    elif v == 7:
        cells[int(rng.integers(0, len(cells)))] = "x" * int(rng.choice([10**4, 10**6]))
    elif v == 8:
        cells[int(rng.integers(0, len(cells)))] = ['"a,b"', '"unterminated', 'a"b', '"\n"'][int(rng.integers(0, 4))]
    elif v == 9:
        lines = [] if rng.random() < 0.5 else lines[:1]
    elif v == 10:
        (ds / "manifest.csv").write_bytes(rng.integers(0, 256, size=2048, dtype=np.uint8).tobytes())
    else:
        lines = lines + [lines[row]] * int(rng.integers(1000, 20000))
    if v not in (6, 10):
        if v in (0, 2, 3, 7, 8):
            lines[row] = ",".join(cells)
        (ds / "manifest.csv").write_text("\n".join(lines) + ("\n" if lines else ""))
    (ds / "manifest.parquet").unlink(missing_ok=True)
    reader = i // len(KINDS) % 3
    calls = [lambda: load_manifest(ds), lambda: verify(ds, workers=1, progress=False),
             lambda: _first_last(Cloud3dImages(ds, "test", crop=None))]
    argv = [["entropy", ds, "--out", d / "e", "--workers", 1],
            ["verify", ds, "--workers", 1],
            ["bench", ds, "--codec", "jpeg:q=50", "--results", d / "r.sqlite", "--workers", 1,
             "--no-estimate", "--quiet"]][reader]
    return f"manifest/{names[v]}/{['load', 'verify', 'dataset'][reader]}", calls[reader], argv


def _first_last(dataset) -> None:
    """Read the first and last item (a whole pass is work in proportion to the rows)."""
    dataset[0]
    dataset[len(dataset) - 1]


def case(ctx: Context, seed: int, i: int) -> tuple[str, Callable[[], object]]:
    """Case ``i``: ``(name, call)`` (see the module docstring)."""
    name, call, _ = case_with_argv(ctx, seed, i)
    return name, call


def case_with_argv(ctx: Context, seed: int, i: int) -> tuple[str, Callable[[], object], list]:
    """Case ``i``: ``(name, library call, cloud3d arguments reading the same file)``."""
    rng = np.random.default_rng([seed, i, 1])
    d = _case_dir(ctx, i)
    kind = KINDS[i % len(KINDS)]
    if kind == "checkpoint":
        return _ckpt_case(ctx, rng, d)
    if kind == "archive":
        return _archive_case(ctx, rng, d)
    if kind == "image":
        return _image_case(ctx, rng, d)
    return _manifest_case(ctx, rng, d, i)
