"""Video baselines: encode a split's frames as one sequence with ffmpeg (H.264/H.265) and measure it.

For each (app, resolution) group of a split the frames, in capture order
(manifest ``source_index``), are piped as raw ``rgb24`` into ffmpeg and coded
with low-latency settings:

* ``libx264`` / ``libx265``, ``-preset P`` (default ``veryfast``),
  ``-tune zerolatency`` (no look-ahead, no frame threading delay),
  no B-frames, an intra period of ``gop`` frames (default: one second,
  ``gop = fps``; scene-cut detection off so the period is exact);
* rate control by ``crf`` (constant rate factor) or ``qp`` (constant QP), 0..51;
* RGB -> Y'CbCr 4:2:0 8-bit (``yuv420p``) by ffmpeg's swscale with the BT.709
  matrix, limited ("TV") range, accurate rounding and full chroma
  interpolation, tagged in the stream; decoding converts back with the same
  matrix and range to ``rgb24``;
* the output is the raw elementary stream (``.h264`` / ``.hevc``, Annex B), so
  its size is the coded size with no container overhead.

Figures per sequence: ``mbps = bytes * 8 * fps / frames / 1e6`` (the bit rate
the stream would need when played at ``fps``), ``bpp = 8 * bytes / (frames * W * H)``,
per-frame PSNR on RGB (:func:`baselines.metrics.psnr_rgb`) and its mean
(identical frames capped at 100 dB), plus the PSNR of the mean MSE. Encode
and decode wall times are measured with ``perf_counter`` around the ffmpeg
processes; encode time includes reading the PNGs that feed the pipe
(``read_s`` says how much of it that was).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from baselines.metrics import PSNR_CAP_DB, aggregate_psnr, mse, psnr_from_mse
from cloud3d.errors import Cloud3dError
from cloud3d.imageio import read_image_rgb
from cloud3d.provenance import tool_version

VIDEO_CODECS: dict[str, str] = {"libx264": ".h264", "libx265": ".hevc"}
RAW_FORMAT = {"libx264": "h264", "libx265": "hevc"}
PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")
RATE_MODES = ("crf", "qp")
_SWS = "accurate_rnd+full_chroma_int+bicubic"


@dataclass(frozen=True)
class VideoSettings:
    """One encoder configuration. ``gop`` 0 means ``fps`` (one intra frame per second)."""

    codec: str = "libx264"
    rate_mode: str = "crf"
    value: int = 23
    fps: float = 60.0
    preset: str = "veryfast"
    gop: int = 0

    def __post_init__(self) -> None:
        if self.codec not in VIDEO_CODECS:
            raise ValueError(f"unknown video codec {self.codec!r}; valid: {', '.join(VIDEO_CODECS)}")
        if self.rate_mode not in RATE_MODES:
            raise ValueError(f"rate mode must be one of {', '.join(RATE_MODES)}, got {self.rate_mode!r}")
        if not 0 <= int(self.value) <= 51 or int(self.value) != self.value:
            raise ValueError(f"{self.rate_mode} must be an integer 0..51, got {self.value}")
        if not self.fps > 0:
            raise ValueError(f"fps must be > 0, got {self.fps}")
        if self.preset not in PRESETS:
            raise ValueError(f"unknown preset {self.preset!r}; valid: {', '.join(PRESETS)}")
        if self.gop < 0:
            raise ValueError(f"gop must be >= 0 (0 = one second), got {self.gop}")

    @property
    def intra_period(self) -> int:
        return self.gop if self.gop > 0 else max(1, round(self.fps))


def find_ffmpeg(path: str | None = None) -> str:
    """The ffmpeg executable (``path`` or PATH); Cloud3dError with an install hint if missing."""
    found = path if path and os.access(path, os.X_OK) else shutil.which(path or "ffmpeg")
    if not found:
        raise Cloud3dError("ffmpeg not found: install it (apt-get install ffmpeg) or pass --ffmpeg PATH")
    return found


def check_encoder(ffmpeg: str, codec: str) -> None:
    """Raise Cloud3dError when this ffmpeg was built without ``codec``."""
    proc = subprocess.run([ffmpeg, "-hide_banner", "-encoders"], capture_output=True, timeout=30, check=False)
    names = {ln.split()[1] for ln in proc.stdout.decode("utf-8", "replace").splitlines() if len(ln.split()) > 1}
    if codec not in names:
        raise Cloud3dError(f"{ffmpeg} has no {codec} encoder: install an ffmpeg built with it (Debian's has both)")


def encode_args(ffmpeg: str, width: int, height: int, s: VideoSettings, out: str | os.PathLike) -> list[str]:
    """ffmpeg command line reading raw rgb24 frames on stdin and writing an elementary stream."""
    g = s.intra_period
    args = [
        ffmpeg, "-hide_banner", "-loglevel", "error", "-y",
        "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}", "-r", f"{s.fps:g}", "-i", "pipe:0",
        "-vf", f"scale=out_color_matrix=bt709:out_range=tv:flags={_SWS}",
        "-pix_fmt", "yuv420p", "-colorspace", "bt709", "-color_primaries", "bt709", "-color_trc", "bt709",
        "-color_range", "tv",
        "-c:v", s.codec, "-preset", s.preset, "-tune", "zerolatency", "-g", str(g), "-bf", "0",
    ]
    if s.codec == "libx264":
        args += ["-sc_threshold", "0", f"-{s.rate_mode}", str(int(s.value))]
    else:
        args += ["-x265-params", f"{s.rate_mode}={int(s.value)}:keyint={g}:min-keyint={g}:bframes=0:scenecut=0:log-level=error"]
    return args + ["-f", RAW_FORMAT[s.codec], str(out)]


def decode_args(ffmpeg: str, bitstream: str | os.PathLike, codec: str) -> list[str]:
    """ffmpeg command line decoding an elementary stream to raw rgb24 frames on stdout."""
    return [
        ffmpeg, "-hide_banner", "-loglevel", "error", "-f", RAW_FORMAT[codec], "-i", str(bitstream),
        "-vf", f"scale=in_color_matrix=bt709:in_range=tv:flags={_SWS}",
        "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1",
    ]


def _stderr_tail(f) -> str:
    f.seek(0)
    text = f.read().decode("utf-8", "replace").strip()
    return text[-800:] if text else "(no output)"


def encode_sequence(
    frames: Iterable[np.ndarray], width: int, height: int, s: VideoSettings, out: str | os.PathLike, ffmpeg: str
) -> dict[str, float]:
    """Pipe ``(H, W, 3) uint8`` frames into ffmpeg; returns ``frames``, ``bytes``, ``encode_s``, ``read_s``."""
    n = 0
    read_s = 0.0
    with tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(encode_args(ffmpeg, width, height, s, out), stdin=subprocess.PIPE,
                                stdout=subprocess.DEVNULL, stderr=err)
        try:
            it = iter(frames)
            while True:
                tr = time.perf_counter()
                try:
                    f = next(it)
                except StopIteration:
                    break
                read_s += time.perf_counter() - tr
                if f.shape != (height, width, 3) or f.dtype != np.uint8:
                    raise Cloud3dError(f"frame {n} is {f.shape} {f.dtype}, expected ({height}, {width}, 3) uint8")
                proc.stdin.write(np.ascontiguousarray(f).tobytes())
                n += 1
            proc.stdin.close()
            rc = proc.wait(timeout=600)
        except BrokenPipeError:
            rc = proc.wait(timeout=60)
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        elapsed = time.perf_counter() - t0
        if rc != 0:
            raise Cloud3dError(f"ffmpeg {s.codec} encode failed (status {rc}): {_stderr_tail(err)}")
    size = Path(out).stat().st_size
    return {"frames": n, "bytes": size, "encode_s": elapsed, "read_s": read_s}


def decode_sequence(bitstream: str | os.PathLike, width: int, height: int, codec: str, ffmpeg: str,
                    timing: dict | None = None) -> Iterator[np.ndarray]:
    """Yield decoded ``(H, W, 3) uint8`` frames; sets ``timing["decode_s"]`` (wall, incl. the reader)."""
    fb = width * height * 3
    with tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(decode_args(ffmpeg, bitstream, codec), stdout=subprocess.PIPE, stderr=err)
        try:
            while True:
                buf = proc.stdout.read(fb)
                if not buf:
                    break
                if len(buf) != fb:
                    raise Cloud3dError(f"ffmpeg decode of {bitstream} ended mid-frame ({len(buf)} of {fb} bytes)")
                yield np.frombuffer(buf, np.uint8).reshape(height, width, 3)
            rc = proc.wait(timeout=600)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if timing is not None:
            timing["decode_s"] = time.perf_counter() - t0
        if rc != 0:
            raise Cloud3dError(f"ffmpeg decode of {bitstream} failed (status {rc}): {_stderr_tail(err)}")


def _read_frames(paths: Sequence[str]) -> Iterator[np.ndarray]:
    for p in paths:
        rgb, _ = read_image_rgb(p)
        yield rgb


def bench_sequence(paths: Sequence[str], s: VideoSettings, ffmpeg: str, keep: str | os.PathLike | None = None
                   ) -> tuple[dict, list[dict]]:
    """Encode, decode and measure one sequence of PNG frames (all of one size).

    Returns ``(summary, per_frame)``: summary keys ``frames, width, height,
    bytes, mbps, bpp, mean_psnr, psnr_of_mean_mse, min_psnr, n_capped,
    encode_s, read_s, decode_s`` plus the settings; per-frame rows
    ``frame, path, mse, psnr`` (psnr capped at 100 dB).
    """
    if not paths:
        raise Cloud3dError("no frames to encode")
    first, _ = read_image_rgb(paths[0])
    h, w = first.shape[:2]
    if h % 2 or w % 2:
        raise Cloud3dError(f"yuv420p video needs even frame sizes, {paths[0]} is {w}x{h}")
    with tempfile.TemporaryDirectory(prefix="cloud3d-video-") as tmp:
        bs = Path(tmp) / f"seq{VIDEO_CODECS[s.codec]}"
        enc = encode_sequence(_read_frames(paths), w, h, s, bs, ffmpeg)
        timing: dict = {}
        per_frame: list[dict] = []
        refs = _read_frames(paths)
        for i, rec in enumerate(decode_sequence(bs, w, h, s.codec, ffmpeg, timing)):
            if i >= len(paths):
                raise Cloud3dError(f"decoder returned more frames than the {len(paths)} encoded")
            m = mse(next(refs), rec)
            per_frame.append({"frame": i, "path": str(paths[i]), "mse": m, "psnr": min(psnr_from_mse(m), PSNR_CAP_DB)})
        if len(per_frame) != len(paths):
            raise Cloud3dError(f"decoder returned {len(per_frame)} frames, {len(paths)} were encoded")
        if keep:
            Path(keep).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(bs, Path(keep) / f"{s.codec}-{s.rate_mode}{s.value}{bs.suffix}")
    agg = aggregate_psnr([r["mse"] for r in per_frame])
    n = len(per_frame)
    summary = {
        **asdict(s), "gop": s.intra_period, "frames": n, "width": w, "height": h, "bytes": enc["bytes"],
        "mbps": enc["bytes"] * 8.0 * s.fps / n / 1e6, "bpp": 8.0 * enc["bytes"] / (n * w * h),
        "mean_psnr": agg["mean_psnr"], "psnr_of_mean_mse": agg["psnr_of_mean_mse"],
        "min_psnr": min(r["psnr"] for r in per_frame), "n_capped": int(agg["n_capped"]),
        "encode_s": enc["encode_s"], "read_s": enc["read_s"], "decode_s": timing.get("decode_s", float("nan")),
    }
    return summary, per_frame


#: columns of the summary CSV that identify one measurement (used to skip finished work)
KEY_COLUMNS = ("app", "resolution", "codec", "rate_mode", "value", "fps", "preset", "gop", "frames", "first_sha256")


def bench_video(
    dataset_dir: str | os.PathLike,
    settings: Sequence[VideoSettings],
    out_csv: str | os.PathLike,
    split: str = "test",
    apps: Sequence[str] | None = None,
    resolutions: Sequence[str] | None = None,
    max_frames: int | None = None,
    ffmpeg: str | None = None,
    progress: bool = True,
    keep: str | os.PathLike | None = None,
):
    """Run every setting on every (app, resolution) group of ``split``; returns the summary DataFrame.

    Writes ``out_csv`` (one row per group x setting) and ``<stem>.frames.csv``
    (one row per frame) atomically after every finished sequence; rows already
    in ``out_csv`` with the same key (:data:`KEY_COLUMNS`) are skipped, so an
    interrupted run resumes.
    """
    import pandas as pd
    from tqdm import tqdm

    from cloud3d.atomic import atomic_write_text
    from cloud3d_dataset.manifest import image_paths

    exe = find_ffmpeg(ffmpeg)
    for codec in sorted({s.codec for s in settings}):
        check_encoder(exe, codec)
    version = tool_version([exe, "-hide_banner", "-version"])
    df = image_paths(dataset_dir, split=split, app=list(apps) if apps else None,
                     resolution=list(resolutions) if resolutions else None)
    out_csv = Path(out_csv)
    frames_csv = out_csv.with_name(out_csv.stem + ".frames.csv")
    done = pd.read_csv(out_csv) if out_csv.is_file() else pd.DataFrame()
    frames_done = pd.read_csv(frames_csv) if frames_csv.is_file() and not done.empty else pd.DataFrame()
    rows = done.to_dict("records")
    frame_rows = frames_done.to_dict("records")
    done_keys = {_key(r) for r in rows}
    wanted: set[tuple] = set()
    jobs = []
    for (app, res), g in df.groupby(["app", "resolution"], sort=True):
        g = g.sort_values("source_index")
        if max_frames:
            g = g.head(max_frames)
        for s in settings:
            jobs.append((app, res, g, s))
    bar = tqdm(jobs, desc="bench-video", unit="seq", disable=not progress)
    for app, res, g, s in bar:
        key_vals = {"app": app, "resolution": res, "codec": s.codec, "rate_mode": s.rate_mode, "value": s.value,
                    "fps": f"{s.fps:g}", "preset": s.preset, "gop": s.intra_period, "frames": len(g),
                    "first_sha256": g["sha256"].iloc[0]}
        key = _key(key_vals)
        wanted.add(key)
        if key in done_keys:
            continue
        bar.set_postfix_str(f"{app}-{res} {s.codec} {s.rate_mode}={s.value}")
        summary, per_frame = bench_sequence(list(g["abspath"]), s, exe,
                                            keep=Path(keep) / f"{app}-{res}" if keep else None)
        summary.update(key_vals)
        summary["fps"] = s.fps
        summary["ffmpeg"] = version
        rows.append(summary)
        fkey = {"app": app, "resolution": res, "codec": s.codec, "rate_mode": s.rate_mode, "value": s.value,
                "fps": s.fps, "preset": s.preset, "gop": s.intra_period}
        # drop rows a killed run left for this sequence before its summary row was written
        frame_rows = [r for r in frame_rows if any(str(r.get(k)) != str(v) for k, v in fkey.items())]
        frame_rows.extend({**fkey, **r} for r in per_frame)
        done_keys.add(key)
        atomic_write_text(frames_csv, pd.DataFrame(frame_rows).to_csv(index=False))
        atomic_write_text(out_csv, pd.DataFrame(rows).to_csv(index=False))
    return pd.DataFrame([r for r in rows if _key(r) in wanted])


def _key(row: dict) -> tuple:
    """Normalised :data:`KEY_COLUMNS` values of a summary row (CSV round trips change types)."""
    out = []
    for k in KEY_COLUMNS:
        v = row[k]
        if k == "fps":
            v = f"{float(v):g}"
        elif k in ("value", "gop", "frames"):
            v = int(v)
        out.append(str(v))
    return tuple(out)
