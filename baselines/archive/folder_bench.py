"""``cloud3d bench-folder``: seed 002's Tables 3-4 on one folder of frames.

Every row compresses the same files (a dataset selection or a folder of PNGs, see
:mod:`baselines.archive.sources`) into one file on disk and restores them into an empty folder:

* general-purpose archivers run as the programs users run, on the original PNG files:
  ``tar`` (GNU tar, no compression), ``7z`` (7-Zip's defaults: LZMA2 at ``-mx5``,
  multi-threaded), ``zstd-3`` / ``zstd-19`` (``tar | zstd -3`` / ``-19``, zstd's defaults
  otherwise);
* image codecs run as ``cloud3d archive`` + ``cloud3d unarchive`` (in this process, through
  :func:`~baselines.archive.pack.archive_folder` and :func:`~baselines.archive.unpack.unarchive`):
  ``png-opt``, ``webp-lossless``, ``jpegxl-lossless``, any ``--codec`` spec, and with a
  checkpoint ``learned-lzma`` (the symbols of a learned model written with LZMA, seed 002's
  method) and ``learned-ans`` (the same model's rANS coder with its learned entropy model).

Figures per row: ``compressed_bytes`` (the file's size on disk), ``compression_rate`` =
original bytes / compressed bytes (seed 002's definition; the original is the PNG files as
stored), ``bpp`` = 8 x compressed bytes / pixels, ``compress_s`` + ``decompress_s`` =
``total_s`` (``time.perf_counter`` wall time of the whole command, file reads and writes
included; the median of ``repeat`` runs), and quality: ``bit_exact`` (archivers: every restored
file has the original's SHA-256; codecs: every restored image has the original's pixels) and
for lossy rows the mean PSNR, PSNR of the mean MSE and mean MS-SSIM (:mod:`baselines.metrics`).

A row whose program fails (an archiver's non-zero exit, a codec's error) is recorded with its
one-line message in ``error`` and empty figures, and the other rows still run; a later run
retries it.

The 1-minute load average before and after each row is recorded (``loadavg_before``,
``loadavg_after``): on a shared machine, wall times are only comparable between rows run under
similar load.

Warm-up, untimed: every input file is read once (so no row pays for a cold page cache), each
program is started once (``--help``), and each codec codes a 64x64 image (loading libraries and
a learned model's weights) before its timed runs.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cloud3d.atomic import atomic_write_text, remove_stale_temps
from cloud3d.errors import Cloud3dError
from cloud3d.imageio import read_png_header, read_png_rgb
from cloud3d.provenance import (
    machine_description,
    sha256_bytes,
    sha256_file,
    tool_version,
    utc_stamp,
)
from cloud3d.untrusted import read_regular

from .codecs import cached_codec
from .sources import Sources, list_sources

#: the default codec rows (lossless); learned rows are added when a checkpoint is given
DEFAULT_CODECS = ("png-opt", "webp-lossless", "jpegxl-lossless")
ARCHIVERS = ("tar", "7z", "zstd-3", "zstd-19")
_INSTALL = {"tar": "apt-get install tar", "7z": "apt-get install p7zip-full (or 7zip)",
            "zstd": "apt-get install zstd"}
#: seconds one external archiver run may take
TOOL_TIMEOUT = 4 * 3600


@dataclass
class Method:
    """One row: ``compress(sources, out_file)`` and ``decompress(out_file, folder)``."""

    name: str
    kind: str  # "archiver" or "codec"
    lossless: bool
    version: str
    command: str
    compress: Callable[[Sources, Path], None]
    decompress: Callable[[Path, Path], None]
    warm_up: Callable[[], None]
    suffix: str = ".tar"  # of the compressed file


def _run(argv: list[str], cwd: Path | None = None) -> None:
    proc = subprocess.run(argv, cwd=cwd, capture_output=True, timeout=TOOL_TIMEOUT, check=False)
    if proc.returncode:
        err = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        raise Cloud3dError(f"{argv[0]} failed (exit {proc.returncode}): {err[-1] if err else ''}")


def _pipe(first: list[str], second: list[str], cwd: Path | None = None) -> None:
    """``first | second`` as two processes joined by a pipe (no shell)."""
    p1 = subprocess.Popen(first, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        p2 = subprocess.run(second, cwd=cwd, stdin=p1.stdout, capture_output=True,
                            timeout=TOOL_TIMEOUT, check=False)
    finally:
        p1.stdout.close()
        rc1 = p1.wait()
    for argv, rc, err in ((first, rc1, p1.stderr.read()), (second, p2.returncode, p2.stderr)):
        if rc:
            raise Cloud3dError(f"{argv[0]} failed (exit {rc}): {err.decode('utf-8', 'replace').strip()[-200:]}")


def _file_list(src: Sources, out: Path) -> Path:
    """The relative names, one per line, in a list file next to ``out`` (for tar -T and 7z @)."""
    lst = out.parent / f"{out.name}.files"
    lst.write_text("".join(f"{f.relpath}\n" for f in src.files))
    return lst


def _which(tool: str) -> str | None:
    for name in ((tool,) if tool != "7z" else ("7z", "7zz", "7za")):
        if path := shutil.which(name):
            return path
    return None


def archiver(name: str) -> Method:
    """The external archiver row ``name`` (one of :data:`ARCHIVERS`); :class:`Cloud3dError` if
    its program is missing."""
    tool = name.split("-")[0]
    exe = _which(tool)
    tar = _which("tar")
    if exe is None or tar is None:
        missing = tool if exe is None else "tar"
        raise Cloud3dError(f"{name}: `{missing}` is not installed ({_INSTALL[missing]})")
    if name == "tar":
        return Method(
            name, "archiver", True, tool_version([tar, "--version"]),
            "tar -cf OUT -C ROOT -T LIST; tar -xf OUT -C DEST",
            lambda src, out: _run([tar, "-cf", str(out), "-C", str(src.root), "-T", str(_file_list(src, out))]),
            lambda out, dest: _run([tar, "-xf", str(out), "-C", str(dest)]),
            lambda: _run([tar, "--version"]))
    if tool == "7z":
        opts = ["-t7z", "-m0=lzma2", "-mx=5"]
        return Method(
            name, "archiver", True, tool_version([exe]),
            f"7z a {' '.join(opts)} OUT @LIST (in ROOT); 7z x -oDEST OUT",
            lambda src, out: _run([exe, "a", *opts, "-bd", "-y", str(out), f"@{_file_list(src, out)}"],
                                  cwd=src.root),
            lambda out, dest: _run([exe, "x", "-bd", "-y", f"-o{dest}", str(out)]),
            lambda: _run([exe, "i"]), suffix=".7z")
    level = name.split("-")[1]
    return Method(
        name, "archiver", True, tool_version([exe, "--version"]),
        f"tar -cf - -C ROOT -T LIST | zstd -{level} -o OUT; zstd -dc OUT | tar -xf - -C DEST",
        lambda src, out: _pipe([tar, "-cf", "-", "-C", str(src.root), "-T", str(_file_list(src, out))],
                               [exe, f"-{level}", "-q", "-f", "-o", str(out)]),
        lambda out, dest: _pipe([exe, "-d", "-q", "-c", str(out)], [tar, "-xf", "-", "-C", str(dest)]),
        lambda: _run([exe, "--version"]), suffix=".tar.zst")


def codec_method(spec: str, name: str | None = None, workers: int = 1, progress: bool = False) -> Method:
    """A row made of ``cloud3d archive --codec SPEC`` and ``cloud3d unarchive``."""
    from .pack import archive_folder
    from .unpack import decoder, unarchive

    ac = cached_codec(spec)
    label = name or (ac.name if ac.codec is None else f"{ac.name}:{ac.codec.quality.name}={ac.quality}")
    if name is None and ";" in spec:  # options (coder=..., tile=...) make another row
        label += ";" + spec.split(";", 1)[1]

    def compress(src: Sources, out: Path) -> None:
        archive_folder(src.root, out, spec, split=src.selection.get("split"), app=src.selection.get("app"),
                       resolution=src.selection.get("resolution"), workers=workers, verify=False,
                       force=True, progress=progress)

    def decompress(out: Path, dest: Path) -> None:
        unarchive(out, dest, workers=workers, progress=progress)

    return Method(label, "codec", ac.lossless, ac.version(),
                  f"cloud3d archive ROOT -o OUT --codec '{spec}' --no-verify; cloud3d unarchive OUT -o DEST",
                  compress, decompress, lambda: decoder(spec))


def plan_methods(methods: list[str] | None, extra_codecs: list[str], checkpoint: str | None,
                 workers: int = 1, progress: bool = False, echo=print) -> list[Method]:
    """The rows to run, in table order. Names in ``methods`` must exist; without ``methods``
    an archiver whose program is missing is left out with a note."""
    learned = {}
    if checkpoint:
        learned = {f"learned-{c}": f"learned:checkpoint={checkpoint};coder={c}" for c in ("lzma", "ans")}
    wanted = list(methods) if methods else [*ARCHIVERS, *DEFAULT_CODECS, *learned]
    wanted += [c for c in extra_codecs if c not in wanted]
    out = []
    for name in wanted:
        if name in ARCHIVERS:
            try:
                out.append(archiver(name))
            except Cloud3dError as exc:
                if methods:
                    raise
                echo(f"note: row {name} left out: {exc}")
        elif name.startswith("learned-") and name not in learned:
            raise Cloud3dError(f"row {name} needs --checkpoint")
        else:
            out.append(codec_method(learned.get(name, name), name if name in learned else None,
                                    workers=workers, progress=progress))
    return out


def _read_sources(src: Sources) -> tuple[str, int]:
    """Read every file once (warming the page cache); returns a fingerprint of names and
    contents, and the total pixel count."""
    lines, pixels = [], 0
    for f in src.files:
        lines.append(f"{f.relpath} {sha256_file(f.abspath)}\n")
        h = read_png_header(f.abspath)
        pixels += h.width * h.height
    return sha256_bytes("".join(lines).encode()), pixels


def _quality(src: Sources, dest: Path, method: Method) -> dict[str, Any]:
    """Bit-exactness (and PSNR / MS-SSIM for lossy rows) of the restored folder ``dest``."""
    from baselines.metrics import aggregate_psnr, ms_ssim_rgb, mse

    if method.kind == "archiver":
        exact = all(sha256_file(dest / f.relpath) == sha256_file(f.abspath) for f in src.files)
        return {"bit_exact": "yes" if exact else "no"}
    mses, ssims, exact = [], [], True
    for f in src.files:
        ref, rec = read_png_rgb(f.abspath), read_png_rgb(dest / f.relpath)
        if ref.shape != rec.shape:
            raise Cloud3dError(f"{method.name}: {f.relpath} was restored as {rec.shape}, not {ref.shape}")
        same = bool(np.array_equal(ref, rec))
        exact &= same
        mses.append(0.0 if same else mse(ref, rec))
        if not method.lossless:
            try:
                ssims.append(ms_ssim_rgb(ref, rec))
            except ValueError:
                pass
    q: dict[str, Any] = {"bit_exact": "yes" if exact else "no"}
    if not exact:
        agg = aggregate_psnr(mses)
        q.update(mean_psnr=agg["mean_psnr"], psnr_of_mean_mse=agg["psnr_of_mean_mse"],
                 n_psnr_capped=int(agg["n_capped"]))
    if ssims:
        q["mean_ms_ssim"] = float(np.mean(ssims))
    return q


def _measure(method: Method, src: Sources, scratch: Path, repeat: int) -> dict[str, Any]:
    method.warm_up()
    comp, decomp = [], []
    for r in range(repeat):
        if scratch.exists():
            shutil.rmtree(scratch)
        scratch.mkdir(parents=True)
        out, dest = scratch / f"archive{method.suffix}", scratch / "restored"
        dest.mkdir()
        t0 = time.perf_counter()
        method.compress(src, out)
        t1 = time.perf_counter()
        method.decompress(out, dest)
        t2 = time.perf_counter()
        comp.append(t1 - t0)
        decomp.append(t2 - t1)
        size = out.stat().st_size
        if r == repeat - 1:
            quality = _quality(src, dest, method)
    shutil.rmtree(scratch, ignore_errors=True)
    c, d = statistics.median(comp), statistics.median(decomp)
    return {"compressed_bytes": size, "compress_s": c, "decompress_s": d, "total_s": c + d,
            "runs_s": ";".join(f"{a:.3f}+{b:.3f}" for a, b in zip(comp, decomp, strict=True)),
            **quality}


COLUMNS = ["method", "kind", "lossless", "files", "pixels", "original_bytes", "compressed_bytes",
           "compression_rate", "bpp", "compress_s", "decompress_s", "total_s", "bit_exact",
           "mean_psnr", "psnr_of_mean_mse", "n_psnr_capped", "mean_ms_ssim", "repeat", "runs_s",
           "workers", "version", "command", "input", "input_fingerprint", "cpu_model", "cores",
           "host", "loadavg_before", "loadavg_after", "finished", "error"]


#: largest results table read back (bytes); a table of thousands of rows is well below it
MAX_TABLE_BYTES = 64 << 20


def _read_table(csv_path: Path) -> pd.DataFrame:
    """The rows an earlier run wrote to ``csv_path`` (none when it does not exist or is
    empty); :class:`Cloud3dError` when it is not such a table, which is then left alone."""
    import io

    if not csv_path.exists() and not csv_path.is_symlink():
        return pd.DataFrame(columns=COLUMNS)
    raw = read_regular(csv_path, MAX_TABLE_BYTES, "bench-folder table")
    if not raw.strip():
        return pd.DataFrame(columns=COLUMNS)
    try:
        table = pd.read_csv(io.BytesIO(raw))
    except (ValueError, UnicodeDecodeError) as exc:  # pandas' ParserError is a ValueError
        first = (str(exc).splitlines() or [""])[0][:120]
        raise Cloud3dError(f"{csv_path} is not a bench-folder table ({first}): choose another "
                           "--out, or move that file away") from None
    missing = [c for c in ("method", "input_fingerprint") if c not in table.columns]
    if missing:
        raise Cloud3dError(f"{csv_path} is not a bench-folder table (no column {missing[0]!r}): "
                           "choose another --out, or move that file away")
    return table


def run_folder_bench(folder: str | os.PathLike, split=None, app=None, resolution=None,
                     methods: list[str] | None = None, extra_codecs: list[str] = (),
                     checkpoint: str | None = None, csv_path: str | os.PathLike = "bench-folder.csv",
                     work: str | os.PathLike | None = None, repeat: int = 1, workers: int = 1,
                     force: bool = False, progress: bool = True, echo=print) -> pd.DataFrame:
    """Run every row (see the module docstring) and return the table; the CSV at ``csv_path``
    is rewritten atomically after each row, and rows it already holds for the same input and
    method are kept and skipped (unless ``force``)."""
    from tqdm import tqdm

    src = list_sources(folder, split=split, app=app, resolution=resolution)
    plan = plan_methods(methods, list(extra_codecs), checkpoint, workers=workers, progress=progress,
                        echo=echo)
    csv_path = Path(csv_path).absolute()  # absolute before an archiver runs in the folder
    scratch_root = Path(work).absolute() if work else csv_path.parent / f".{csv_path.name}.work"
    fingerprint, pixels = _read_sources(src)
    remove_stale_temps(csv_path.parent, [csv_path.name])  # a killed run's half-written table
    table = _read_table(csv_path).reindex(columns=COLUMNS)
    machine = machine_description()
    for m in tqdm(plan, desc="bench-folder", unit="row", disable=not progress):
        done = (table["method"] == m.name) & (table["input_fingerprint"] == fingerprint)
        if (done & table["error"].isna()).any() and not force:
            echo(f"{m.name}: already in {csv_path}, skipped")
            continue
        load = os.getloadavg()[0]
        try:
            res = _measure(m, src, scratch_root / m.name.replace("/", "_").replace(":", "_"), repeat)
        except (Cloud3dError, OSError, subprocess.TimeoutExpired) as exc:
            res = {"error": str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
                   "compressed_bytes": float("nan"), "total_s": float("nan"), "bit_exact": None}
            echo(f"{m.name}: failed: {res['error']}")
        row = {
            "method": m.name, "kind": m.kind, "lossless": m.lossless, "files": len(src.files),
            "pixels": pixels, "original_bytes": src.total_bytes,
            "compression_rate": src.total_bytes / res["compressed_bytes"],
            "bpp": 8 * res["compressed_bytes"] / pixels, "repeat": repeat, "workers": workers,
            "version": m.version, "command": m.command, "input": str(Path(folder).resolve()) + (
                f" {src.selection}" if src.selection else ""),
            "input_fingerprint": fingerprint, "cpu_model": machine.get("cpu_model"),
            "cores": machine.get("cores"), "host": machine.get("host"), "finished": utc_stamp(),
            "loadavg_before": round(load, 2), "loadavg_after": round(os.getloadavg()[0], 2), **res,
        }
        table = pd.concat([table[~done], pd.DataFrame([row])],
                          ignore_index=True).reindex(columns=COLUMNS)
        atomic_write_text(csv_path, table.to_csv(index=False, lineterminator="\n"))
        if "error" not in res:
            echo(f"{m.name}: {res['compressed_bytes']:,} bytes, rate {row['compression_rate']:.3f}, "
                 f"{res['total_s']:.2f} s, bit-exact {res['bit_exact']}")
    if work is None:
        shutil.rmtree(scratch_root, ignore_errors=True)
    return table[table["input_fingerprint"] == fingerprint].reset_index(drop=True)


def format_table(df: pd.DataFrame) -> str:
    """The table as seed 002 prints it (size in MB = 10^6 bytes), plus quality."""
    out = pd.DataFrame({
        "method": df["method"],
        "size_MB": (df["compressed_bytes"] / 1e6).round(3),
        "rate": df["compression_rate"].round(3),
        "bpp": df["bpp"].round(3),
        "compress_s": df["compress_s"].round(2),
        "decompress_s": df["decompress_s"].round(2),
        "total_s": df["total_s"].round(2),
        "bit_exact": df["bit_exact"],
        "psnr_dB": df["mean_psnr"].round(2) if "mean_psnr" in df else None,
        "ms_ssim": df["mean_ms_ssim"].round(4) if "mean_ms_ssim" in df else None,
    })
    if "error" in df and df["error"].notna().any():
        out["error"] = df["error"]
    return out.to_string(index=False, na_rep="")
