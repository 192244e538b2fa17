"""``cloud3d bench-video``: H.264/H.265 sequence baselines on a dataset split (see :mod:`baselines.video`)."""

from __future__ import annotations

import click

from cloud3d.errors import Cloud3dError


def _int_list(text: str, what: str) -> list[int]:
    try:
        vals = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise Cloud3dError(f"--{what} takes comma-separated integers 0..51, got {text!r}") from None
    if not vals or any(not 0 <= v <= 51 for v in vals):
        raise Cloud3dError(f"--{what} values must be integers 0..51, got {text!r}")
    return vals


@click.command("bench-video")
@click.argument("dataset_dir", type=click.Path(file_okay=False))
@click.option("--split", default="test", show_default=True, help="dataset split to encode")
@click.option("--app", "apps", multiple=True, help="only these apps (repeatable; default all)")
@click.option("--resolution", "resolutions", multiple=True, help="only these resolutions, e.g. 720p (repeatable)")
@click.option("--codec", "codecs", multiple=True, type=click.Choice(["libx264", "libx265"]),
              default=("libx264",), show_default=True, help="ffmpeg encoder (repeatable)")
@click.option("--crf", default=None, help="CRF sweep, e.g. 18,23,28 (default when --qp is not given)")
@click.option("--qp", default=None, help="constant-QP sweep, e.g. 22,27,32,37")
@click.option("--fps", default=60.0, show_default=True, type=float, help="frame rate used for Mbps")
@click.option("--preset", default="veryfast", show_default=True, help="x264/x265 preset")
@click.option("--gop", default=0, show_default=True, type=int, help="intra period in frames (0 = fps)")
@click.option("--max-frames", default=None, type=int, help="use only the first N frames of each group")
@click.option("--out", "out_csv", required=True, type=click.Path(dir_okay=False),
              help="summary CSV (per-frame PSNR goes to <stem>.frames.csv); re-running resumes")
@click.option("--keep", default=None, type=click.Path(file_okay=False), help="keep the bitstreams here")
@click.option("--ffmpeg", default=None, help="ffmpeg executable (default: from PATH)")
@click.option("--no-progress", is_flag=True, help="hide the progress bar")
def bench_video_cmd(dataset_dir, split, apps, resolutions, codecs, crf, qp, fps, preset, gop, max_frames,
                    out_csv, keep, ffmpeg, no_progress) -> None:
    """Encode each app-resolution group of a split as one low-latency video and report Mbps and PSNR.

    \b
    Example:
      cloud3d bench-video data/ --split test --app dota2 --codec libx264 --crf 18,23,28 \\
          --fps 60 --out results/video.csv
    """
    from baselines.video import VideoSettings, bench_video

    if crf and qp:
        raise Cloud3dError("give either --crf or --qp, not both")
    mode, values = ("qp", _int_list(qp, "qp")) if qp else ("crf", _int_list(crf or "18,23,28", "crf"))
    if max_frames is not None and max_frames < 1:
        raise Cloud3dError("--max-frames must be >= 1")
    try:
        settings = [VideoSettings(codec=c, rate_mode=mode, value=v, fps=fps, preset=preset, gop=gop)
                    for c in codecs for v in values]
    except ValueError as exc:
        raise Cloud3dError(str(exc)) from None
    df = bench_video(dataset_dir, settings, out_csv, split=split, apps=apps or None,
                     resolutions=resolutions or None, max_frames=max_frames, ffmpeg=ffmpeg,
                     progress=not no_progress, keep=keep)
    cols = ["app", "resolution", "codec", "rate_mode", "value", "frames", "mbps", "bpp", "mean_psnr",
            "psnr_of_mean_mse", "min_psnr", "encode_s", "decode_s"]
    click.echo(df[cols].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    from pathlib import Path

    from baselines.bench_figures import video_figure

    png = video_figure(df, Path(out_csv).with_suffix(""))[0]
    click.echo(f"wrote {out_csv} and {png} (rate vs PSNR)")


def register(group: click.Group) -> None:
    """Add ``bench-video`` to the ``cloud3d`` group."""
    group.add_command(bench_video_cmd)
