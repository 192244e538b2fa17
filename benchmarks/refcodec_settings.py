"""How the BPG and VTM settings move the numbers, measured on one real frame.

For one PNG and one QP this runs, each as a real encode + decode:

* ``bpg-hand``: ``bpgenc -q QP -f 444`` and ``bpgdec`` run by hand (bpgenc's own defaults);
* ``bpg``: the ``bpg`` codec with its defaults (the same command line, so the same bytes);
* ``bpg-420``: ``subsampling=420``;
* ``vtm``: the ``vtm`` codec with its defaults (BT.709, full range, 4:2:0, 10-bit,
  2x2-mean chroma down-sampling, bilinear up-sampling);
* ``vtm-nearest``: the same stream decoded with ``upsampling=nearest`` (no extra encode);
* ``vtm-limited``, ``vtm-8bit``, ``vtm-444``: one option changed each;
* ``vtm-ffmpeg``: the hand pipeline of the common scripts: ffmpeg (swscale, BT.709 limited
  range, ``yuv420p10le``, its default chroma filter) -> EncoderApp -> DecoderApp -> ffmpeg
  back to RGB (needs ffmpeg).

It prints bytes, bpp, PSNR-RGB, PSNR-Y (BT.709 full-range luma of the RGB images, so every
row is measured the same way) and the wall seconds of the external encoder and decoder
(``time.perf_counter``; a VTM encode of a 720p frame takes about a minute on one core).
The encodes run in ``--jobs`` parallel processes.

    .venv/bin/python benchmarks/refcodec_settings.py FRAME.png --qp 32 --jobs 2 [--only vtm,vtm-limited]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cloud3d.lifetime import process_pool  # noqa: E402

#: variant -> (codec name, options); the hand pipelines are handled separately
VARIANTS = {
    "bpg": ("bpg", {}),
    "bpg-420": ("bpg", {"subsampling": "420"}),
    "vtm": ("vtm", {}),
    "vtm-limited": ("vtm", {"range": "limited"}),
    "vtm-8bit": ("vtm", {"bit_depth": 8}),
    "vtm-444": ("vtm", {"chroma": "444"}),
}
HAND = ("bpg-hand", "vtm-ffmpeg")


def _measure(rgb, rec, nbytes: int, enc_s: float, dec_s: float) -> dict:
    from baselines.metrics import bpp, psnr_rgb, psnr_y

    h, w = rgb.shape[:2]
    return {"bytes": nbytes, "bpp": bpp(nbytes, w, h), "psnr_rgb": psnr_rgb(rgb, rec), "psnr_y": psnr_y(rgb, rec),
            "enc_s": enc_s, "dec_s": dec_s}


def run_codec(variant: str, png: str, qp: int) -> list[tuple[str, dict]]:
    """Encode + decode through the codec; ``vtm`` also decodes its stream with nearest up-sampling."""
    from baselines.codecs.registry import get_codec_class
    from cloud3d.imageio import read_image_rgb

    rgb, _ = read_image_rgb(png)
    name, opts = VARIANTS[variant]
    codec = get_codec_class(name)(**opts)
    enc = codec.encode_timed(rgb, qp)
    dec = codec.decode_timed(enc.data)
    out = [(variant, _measure(rgb, dec.rgb, len(enc.data), enc.encode_s, dec.decode_s))]
    if variant == "vtm":
        near = get_codec_class(name)(upsampling="nearest").decode_timed(enc.data)
        out.append(("vtm-nearest", _measure(rgb, near.rgb, len(enc.data), enc.encode_s, near.decode_s)))
    return out


def run_hand(variant: str, png: str, qp: int) -> list[tuple[str, dict]]:
    """The same coding with the programs called by hand (no cloud3d conversion code)."""
    from baselines.codecs.bpg import BpgCodec
    from baselines.codecs.vtm import VtmCodec
    from cloud3d.imageio import read_image_rgb

    rgb, _ = read_image_rgb(png)
    h, w = rgb.shape[:2]
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        if variant == "bpg-hand":
            files = BpgCodec().locate()
            t0 = time.perf_counter()
            subprocess.run([files["bpgenc"], "-q", str(qp), "-f", "444", "-o", t / "o.bpg", png], check=True)
            t1 = time.perf_counter()
            subprocess.run([files["bpgdec"], "-o", t / "rec.png", t / "o.bpg"], check=True)
            t2 = time.perf_counter()
            nbytes = (t / "o.bpg").stat().st_size
        else:
            files = VtmCodec().locate()
            scale = "scale=out_color_matrix=bt709:out_range=tv:flags=accurate_rnd+full_chroma_int"
            subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", png, "-vf", scale, "-pix_fmt", "yuv420p10le",
                            "-f", "rawvideo", t / "in.yuv"], check=True)
            t0 = time.perf_counter()
            subprocess.run([files["encoder"], "-c", files["cfg"], f"--InputFile={t / 'in.yuv'}",
                            f"--BitstreamFile={t / 'o.266'}", f"--SourceWidth={w}", f"--SourceHeight={h}",
                            "--InputBitDepth=10", "--InternalBitDepth=10", "--OutputBitDepth=10",
                            "--InputChromaFormat=420", "--ChromaFormatIDC=420", "--FrameRate=1",
                            "--FramesToBeEncoded=1", "--ConformanceWindowMode=1", f"--QP={qp}"],
                           check=True, capture_output=True, cwd=tmp)
            t1 = time.perf_counter()
            subprocess.run([files["decoder"], f"--BitstreamFile={t / 'o.266'}", f"--ReconFile={t / 'rec.yuv'}",
                            "--OutputBitDepth=10"], check=True, capture_output=True, cwd=tmp)
            t2 = time.perf_counter()
            back = "scale=in_color_matrix=bt709:in_range=tv:flags=accurate_rnd+full_chroma_int"
            subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "yuv420p10le",
                            "-s", f"{w}x{h}", "-i", t / "rec.yuv", "-vf", back, "-pix_fmt", "rgb24",
                            t / "rec.png"], check=True)
            nbytes = (t / "o.266").stat().st_size
        rec, _ = read_image_rgb(t / "rec.png")
    return [(variant, _measure(rgb, rec, nbytes, t1 - t0, t2 - t1))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("png", help="a real frame (e.g. a 1280x720 capture)")
    ap.add_argument("--qp", type=int, default=32)
    ap.add_argument("--jobs", type=int, default=2, help="parallel encodes (one core each)")
    ap.add_argument("--only", help="comma-separated variants (default: all): "
                                   + ",".join((*HAND, *VARIANTS)))
    args = ap.parse_args()
    chosen = args.only.split(",") if args.only else [*HAND, *VARIANTS]
    if "vtm-ffmpeg" in chosen and shutil.which("ffmpeg") is None:
        print("ffmpeg not found: skipping vtm-ffmpeg")
        chosen.remove("vtm-ffmpeg")
    # the slow VTM encodes first, so that parallel jobs finish together
    chosen.sort(key=lambda v: not v.startswith("vtm"))
    with process_pool(args.jobs) as pool:  # workers die with this script
        futs = [pool.submit(run_hand if v in HAND else run_codec, v, args.png, args.qp) for v in chosen]
        results = [row for f in futs for row in f.result()]
    print(f"{args.png}, QP {args.qp}")
    print(f"{'variant':<12} {'bytes':>8} {'bpp':>7} {'PSNR-RGB':>9} {'PSNR-Y':>8} {'enc s':>7} {'dec s':>6}")
    for name, m in sorted(results, key=lambda r: r[0]):
        print(f"{name:<12} {m['bytes']:>8} {m['bpp']:>7.4f} {m['psnr_rgb']:>9.3f} {m['psnr_y']:>8.3f} "
              f"{m['enc_s']:>7.2f} {m['dec_s']:>6.2f}")


if __name__ == "__main__":
    main()
