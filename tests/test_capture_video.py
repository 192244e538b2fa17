"""``capture video``: frames of a real video file, decoded with PyAV."""

from __future__ import annotations

import subprocess

import numpy as np
import pandas as pd
from helpers import CLI

from capture.options import RecordOptions
from capture.recorder import record
from capture.video import VideoSource
from cloud3d.imageio import read_png_rgb


def _make_video(ffmpeg, path, seconds=2, rate=10):
    # ffv1 is lossless; testsrc2 changes every frame
    subprocess.run([ffmpeg, "-v", "error", "-y", "-f", "lavfi", "-i",
                    f"testsrc2=size=320x180:rate={rate}", "-t", str(seconds), "-pix_fmt", "bgr0",
                    "-c:v", "ffv1", str(path)], check=True, timeout=60)


def test_video_every_frame_and_sampled(ffmpeg_binary, tmp_path):
    video = tmp_path / "play.mkv"
    _make_video(ffmpeg_binary, video)
    with VideoSource(video) as src:
        s = record(src, tmp_path / "all", "vid", RecordOptions(progress=False))
    assert s.grabbed == 20 and s.stopped_because == "end of source"
    assert s.written + sum(s.dropped.values()) == 20 and s.written >= 18
    with VideoSource(video, fps=2) as src:
        s2 = record(src, tmp_path / "two", "vid", RecordOptions(resolutions=("720p",), progress=False))
    assert s2.grabbed == 4
    df = pd.read_csv(tmp_path / "two" / "vid" / "frames.csv", dtype={"reason": str})
    assert set(df["source"]) == {"video"} and set(df["synthetic"]) == {0}
    assert read_png_rgb(tmp_path / "two" / "vid" / "720p" / "000000.png").shape == (720, 1280, 3)
    # the first written frame equals the first decoded frame (lossless path end to end)
    import av

    with av.open(str(video)) as c:
        first = next(c.decode(video=0)).to_ndarray(format="rgb24")
    assert np.array_equal(read_png_rgb(tmp_path / "all" / "vid" / "native" / "000000.png"), first)


def test_video_bad_file(tmp_path):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"not a video at all" * 10)
    r = subprocess.run([*CLI, "capture", "video", str(bad),
                        "--app", "v", "--out", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: cannot read video {bad}")
