"""``cloud3d bench-video`` with the real ffmpeg on a tiny 8-frame 64x48 dataset."""

from __future__ import annotations

import subprocess
from pathlib import Path

import av
import numpy as np
import pandas as pd
import pytest
from helpers import make_game_like_frame
from skimage.metrics import peak_signal_noise_ratio

from baselines.video import VideoSettings, decode_args, encode_args
from cloud3d.imageio import read_image_rgb, write_png
from cloud3d_dataset.layout import image_relpath
from cloud3d_dataset.manifest import index_dataset

W, H, N = 64, 48, 8


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("videods")
    for n in range(N):
        write_png(root / image_relpath("test", "toy", "720p", 10 + n), make_game_like_frame(H, W, 0, t=n / N))
    write_png(root / image_relpath("train", "toy", "720p", 0), make_game_like_frame(H, W, 1))
    index_dataset(root, progress=False)
    return root



def test_command_lines_are_low_latency():
    s = VideoSettings(codec="libx264", rate_mode="qp", value=30, fps=30, preset="fast", gop=0)
    a = encode_args("ffmpeg", 64, 48, s, "o.h264")
    for pair in (("-tune", "zerolatency"), ("-bf", "0"), ("-g", "30"), ("-qp", "30"), ("-preset", "fast"),
                 ("-pix_fmt", "yuv420p"), ("-s", "64x48"), ("-r", "30")):
        i = a.index(pair[0], a.index("-i") if pair[0] == "-pix_fmt" else 0)
        assert a[i + 1] == pair[1], pair
    x5 = encode_args("ffmpeg", 64, 48, VideoSettings(codec="libx265", value=28, gop=8), "o.hevc")
    assert "crf=28:keyint=8:min-keyint=8:bframes=0:scenecut=0:log-level=error" in x5
    assert decode_args("ffmpeg", "o.hevc", "libx265")[-3:] == ["-pix_fmt", "rgb24", "pipe:1"]
    for bad in ({"codec": "vp9"}, {"value": 52}, {"rate_mode": "abr"}, {"preset": "warp"}, {"fps": 0}):
        with pytest.raises(ValueError):
            VideoSettings(**bad)


def test_bench_video_x264_figures_and_resume(run_cli, dataset, ffmpeg_binary, tmp_path):
    out, keep = tmp_path / "video.csv", tmp_path / "keep"
    r = run_cli("bench-video", dataset, "--split", "test", "--codec", "libx264", "--crf", "18,40", "--fps", 60,
             "--gop", 4, "--out", out, "--keep", keep, "--no-progress", "--ffmpeg", ffmpeg_binary)
    assert r.returncode == 0, r.stderr
    assert "mean_psnr" in r.stdout and "toy" in r.stdout
    df = pd.read_csv(out)
    assert len(df) == 2 and set(df["value"]) == {18, 40} and (df["frames"] == N).all()
    frames = pd.read_csv(out.with_name("video.frames.csv"))
    assert len(frames) == 2 * N

    refs = [read_image_rgb(dataset / image_relpath("test", "toy", "720p", 10 + n))[0] for n in range(N)]
    for _, row in df.iterrows():
        bs = keep / "toy-720p" / f"libx264-crf{row['value']}.h264"
        size = bs.stat().st_size
        assert row["bytes"] == size
        assert row["mbps"] == pytest.approx(size * 8 * 60 / N / 1e6)
        assert row["bpp"] == pytest.approx(size * 8 / (N * W * H))
        # independent decode (PyAV): frame count, GOP structure and no B-frames
        with av.open(str(bs), format="h264") as c:
            decoded = list(c.decode(video=0))
        assert len(decoded) == N
        assert [f.key_frame for f in decoded] == [n % 4 == 0 for n in range(N)]
        assert {int(f.pict_type) for f in decoded} <= {1, 2}  # AVPictureType: 1 = I, 2 = P, 3 = B
        # independent PSNR: decode with an explicit ffmpeg command, measure with scikit-image
        raw = subprocess.run(
            [ffmpeg_binary, "-loglevel", "error", "-f", "h264", "-i", str(bs), "-vf",
             "scale=in_color_matrix=bt709:in_range=tv:flags=accurate_rnd+full_chroma_int+bicubic",
             "-f", "rawvideo", "-pix_fmt", "rgb24", "-"], capture_output=True, timeout=60, check=True).stdout
        recs = np.frombuffer(raw, np.uint8).reshape(N, H, W, 3)
        want = [peak_signal_noise_ratio(refs[n], recs[n], data_range=255) for n in range(N)]
        got = frames[frames["value"] == row["value"]].sort_values("frame")["psnr"].to_numpy()
        np.testing.assert_allclose(got, want, atol=1e-9)
        assert row["mean_psnr"] == pytest.approx(np.mean(want))
    lo, hi = df.set_index("value").loc[40], df.set_index("value").loc[18]
    assert hi["mean_psnr"] > lo["mean_psnr"] and hi["bytes"] > lo["bytes"]

    # resume: the same command computes nothing new and leaves both files byte-identical
    before = out.read_bytes(), out.with_name("video.frames.csv").read_bytes()
    r2 = run_cli("bench-video", dataset, "--codec", "libx264", "--crf", "18,40", "--fps", 60, "--gop", 4,
              "--out", out, "--no-progress", "--ffmpeg", ffmpeg_binary)
    assert r2.returncode == 0, r2.stderr
    assert (out.read_bytes(), out.with_name("video.frames.csv").read_bytes()) == before


def test_bench_video_x265_qp(run_cli, dataset, ffmpeg_binary, tmp_path):
    out = tmp_path / "v265.csv"
    r = run_cli("bench-video", dataset, "--codec", "libx265", "--qp", "22,42", "--preset", "ultrafast",
             "--max-frames", 4, "--out", out, "--no-progress", "--ffmpeg", ffmpeg_binary)
    assert r.returncode == 0, r.stderr
    df = pd.read_csv(out).set_index("value")
    assert (df["frames"] == 4).all() and (df["rate_mode"] == "qp").all()
    assert df.loc[22, "mean_psnr"] > df.loc[42, "mean_psnr"] and df.loc[22, "bytes"] > df.loc[42, "bytes"]
    assert df.loc[22, "mean_psnr"] > 30


def test_bench_video_bad_input(run_cli, dataset, ffmpeg_binary, tmp_path):
    r = run_cli("bench-video", dataset, "--crf", "99", "--out", tmp_path / "x.csv")
    assert r.returncode == 1 and "error: --crf values must be integers 0..51" in r.stderr
    r = run_cli("bench-video", dataset, "--crf", "20", "--qp", "20", "--out", tmp_path / "x.csv")
    assert r.returncode == 1 and "either --crf or --qp" in r.stderr
    r = run_cli("bench-video", dataset, "--app", "nope", "--out", tmp_path / "x.csv", "--ffmpeg", ffmpeg_binary)
    assert r.returncode == 1 and "no images" in r.stderr
    r = run_cli("bench-video", dataset, "--out", tmp_path / "x.csv", "--ffmpeg", tmp_path / "no-ffmpeg")
    assert r.returncode == 1 and "ffmpeg not found" in r.stderr
    assert not (tmp_path / "x.csv").exists()


def test_odd_frame_size_is_refused(run_cli, tmp_path, ffmpeg_binary):
    root = tmp_path / "odd"
    for n in range(2):
        write_png(root / image_relpath("test", "odd", "720p", n), make_game_like_frame(45, 67, 0, t=n / 2))
    index_dataset(root, progress=False)
    r = run_cli("bench-video", root, "--out", tmp_path / "o.csv", "--ffmpeg", ffmpeg_binary, "--no-progress")
    assert r.returncode == 1 and "needs even frame sizes" in r.stderr and "67x45" in r.stderr
    assert Path(root).is_dir()
