"""``cloud3d compress``, ``cloud3d decompress`` and ``cloud3d train`` (heavy imports inside)."""

from __future__ import annotations

import click

from cloud3d.errors import Cloud3dError

#: lambdas used by the reference paper (Sec. 4), MSE distortion
PAPER_LAMBDAS = (0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.004, 0.01, 0.02, 0.04, 0.08, 0.16)


def _check_output(path: str) -> None:
    """Refuse, before any work, an output file whose folder cannot be made: one that lies
    below an existing file (``-o frame.png/x.png``)."""
    from pathlib import Path

    folder = Path(path).absolute().parent
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir():
        raise Cloud3dError(f"cannot write {path}: {folder} is a file, not a folder")


def _tile(value: str) -> int | str:
    if value == "whole":
        return value
    try:
        return int(value)
    except ValueError:
        raise Cloud3dError(f"--tile must be 'whole' or an integer, got {value!r}") from None


@click.command()
@click.argument("image", type=click.Path(dir_okay=False))
@click.option("-m", "--model", "model_ref", required=True, metavar="NAME|FILE",
              help="A bundled or user model's name (`cloud3d models` lists them), a model card "
                   "(.json), or a checkpoint (.pt) from `cloud3d train`.")
@click.option("-q", "--quality", type=click.IntRange(min=0), default=None,
              help="Quality index of a variable-rate model, 0 (fewest bits) .. Q-1; the stream "
                   "records it. Fixed-rate models take none.")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="Bitstream file to write (.c3d).")
@click.option("--device", default="auto", type=click.Choice(["auto", "cpu", "cuda"]),
              show_default=True)
@click.option("--tile", default="whole", show_default=True,
              help="'whole' frame, or tiles of N pixels (a multiple of the model's stride).")
@click.option("--coder", default="ans", type=click.Choice(["ans", "lzma"]), show_default=True,
              help="ans: learned entropy model + rANS; lzma: same symbols with LZMA (ablation).")
@click.option("--fp16", is_flag=True, help="Run the transforms in float16 (CUDA only).")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="CPU threads for the transforms and the rANS substreams [default: the cores "
                   "available to this process].")
@click.option("--substreams", "substreams_k", type=click.IntRange(1, 64), default=None,
              help="K: cut each latent level into up to K independent rANS substreams, which "
                   "a decoder reads on K threads at once [default: 4]. Any K decodes to the "
                   "same image; each extra substream costs about 14 bytes.")
@click.option("--overfit", "overfit_steps", default=0, show_default=True,
              type=click.IntRange(0, 100_000), metavar="STEPS",
              help="Latent overfitting: refine this image's latents for STEPS steps against "
                   "the model's own rate-distortion trade-off (its lambda, or the quality's), then a greedy "
                   "search; the stream is kept only if its bytes + lambda*MSE are lower than "
                   "the plain encode's. Same decoder. Each step runs the synthesis forwards "
                   "and backwards (time per step: docs/models.md, 'Latent overfitting').")
def compress(image, model_ref, quality, output, device, tile, coder, fp16, threads, substreams_k,
             overfit_steps) -> None:
    """Compress IMAGE (PNG or any Pillow format) to a .c3d bitstream.

    Grayscale, palette and 16-bit images are converted to 8-bit RGB; alpha is dropped.
    Any size works (padded to the model's stride, cropped back on decode).

    \b
    Examples:
      cloud3d compress frame.png -m general -o g.c3d   # a bundled model (preview)
      cloud3d compress frame.png -m runs/stk-0.01/best.pt -o frame.c3d
      cloud3d compress frame.png -m runs/stk-0.01/best.pt -o frame.c3d --overfit 200
    """
    _passive_omp_wait()  # before torch loads OpenMP: its idle threads must not spin on
    # the core the substream coder threads need
    from cloud3d.atomic import atomic_write_bytes
    from cloud3d.imageio import read_image_rgb
    from models.bitstream import MAX_DECODE_PIXELS
    from models.codec import compress_image_timed
    from models.library import open_model

    _check_output(output)
    if overfit_steps and fp16:
        raise Cloud3dError("--overfit refines in float32: drop --fp16")
    rgb, note = read_image_rgb(image)
    if note:
        click.echo(f"note: {image}: {note}", err=True)
    model, info = open_model(model_ref)
    if overfit_steps:
        _compress_overfit(model, info["meta"] or {}, rgb, output, model_ref, overfit_steps,
                          _tile(tile), coder, device, quality)
        return
    r = compress_image_timed(model, rgb, tile=_tile(tile), coder=coder, device=device, fp16=fp16,
                             quality=quality, threads=threads, substreams_k=substreams_k)
    atomic_write_bytes(output, r.data)
    h, w = rgb.shape[:2]
    if w * h > MAX_DECODE_PIXELS:
        click.echo(f"note: {w}x{h} is above the decoder's default budget of {MAX_DECODE_PIXELS} "
                   f"pixels: decode it with --max-pixels {w * h}", err=True)
    click.echo(
        f"{output}: {len(r.data)} bytes, {8 * len(r.data) / (w * h):.4f} bpp, {w}x{h}, "
        + ("" if quality is None else f"quality {quality}, ")
        + f"tile {r.tile or 'whole'}, network {r.network_s * 1e3:.1f} ms, "
        f"entropy coding {r.entropy_s * 1e3:.1f} ms"
    )


def _compress_overfit(model, meta, rgb, output, checkpoint, steps, tile, coder, device,
                      quality) -> None:
    """``compress --overfit STEPS``: refine, keep the better stream, write it atomically."""
    from cloud3d.atomic import atomic_write_bytes
    from models.overfit import compress_overfit

    lmbda = meta.get("lambda")
    if not isinstance(lmbda, int | float) or isinstance(lmbda, bool):
        lmbda = None  # overfit_lambda says what is missing
    try:
        r = compress_overfit(model, rgb, steps, lmbda=lmbda, quality=quality, tile=tile,
                             coder=coder, device=device, progress=True)
    except Cloud3dError as exc:
        raise Cloud3dError(f"{checkpoint}: {exc}") from None
    atomic_write_bytes(output, r.data)
    h, w = rgb.shape[:2]
    p, o = r.plain, r.overfit
    click.echo(
        f"{output}: {len(r.data)} bytes, {8 * len(r.data) / (w * h):.4f} bpp, {w}x{h}; "
        f"overfit {steps} steps (lambda {r.lmbda:g}) in {r.refine_s:.1f} s: plain "
        f"{p.bpp:.4f} bpp {p.psnr:.2f} dB cost {p.cost:.4f}, overfitted {o.bpp:.4f} bpp "
        f"{o.psnr:.2f} dB cost {o.cost:.4f}; kept {r.kept}")


@click.command()
@click.argument("stream", type=click.Path(dir_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="PNG file to write.")
@click.option("-m", "--model", "model_ref", default=None, metavar="NAME|FILE",
              help="The model used to compress: checkpoint (.pt), model card (.json) or model "
                   "name. Default: the bundled or user model whose weights hash the stream "
                   "records.")
@click.option("-q", "--quality", type=click.IntRange(min=0), default=None,
              help="Only for streams of a variable-rate model made before streams recorded "
                   "their quality index.")
@click.option("--device", default="auto", type=click.Choice(["auto", "cpu", "cuda"]),
              show_default=True)
@click.option("--fp16", is_flag=True, help="Run the synthesis in float16 (CUDA only).")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="CPU threads for the synthesis and the rANS substreams [default: the cores "
                   "available to this process]. Every count decodes to the same latents.")
@click.option("--max-pixels", type=click.IntRange(min=1), default=None,
              help="Decode images of up to this many pixels (default: the environment variable "
                   "CLOUD3D_MAX_DECODE_PIXELS, else 8847360 = 4096x2160). A larger claim is "
                   "refused before any work: decoding costs time and memory in proportion to "
                   "the pixels claimed, not to the file's size.")
def decompress(stream, output, model_ref, quality, device, fp16, threads, max_pixels) -> None:
    """Decode a .c3d STREAM to a PNG.

    Without -m the model is found by the weights hash the stream records, among the bundled
    models and those in the user model folder (`cloud3d models`).

    \b
    Example:
      cloud3d decompress frame.c3d -m runs/stk-0.01/best.pt -o frame.png
      cloud3d decompress g.c3d -o g.png   # made with -m general: found by the weights hash
      cloud3d decompress big.c3d -m best.pt -o big.png --max-pixels 67108864   # an 8K frame
    """
    _passive_omp_wait()  # before torch loads OpenMP (see compress)
    from cloud3d.untrusted import read_regular
    from models import bitstream

    _check_output(output)
    # a regular file of at most the raw size of the largest image a stream may hold: a
    # device (/dev/zero) or a pipe is refused at once, a huge file after that many bytes
    data = read_regular(stream, 3 * bitstream.MAX_PIXELS, "stream")
    # container and budget first: a stream refused here costs no torch import, no model
    s = bitstream.parse(data, str(stream))
    bitstream.check_decode_budget(s, max_pixels, str(stream))

    from cloud3d.imageio import write_png
    from models.codec import decompress_image_timed
    from models.library import model_for_stream, open_model

    if model_ref is None:
        model, entry = model_for_stream(s.weights_hash, s.arch, str(stream))
        used = f"{entry.origin} model {entry.name}"
    else:
        model, info = open_model(model_ref)
        used = f"{info['kind']} {info['name']}"
    r = decompress_image_timed(model, data, device=device, fp16=fp16, source=str(stream),
                               quality=quality, max_pixels=max_pixels, threads=threads)
    write_png(output, r.rgb)
    h, w = r.rgb.shape[:2]
    shown_q = "" if s.quality is None else f", quality {s.quality}"
    click.echo(f"{output}: {w}x{h}, {used}{shown_q}, network {r.network_s * 1e3:.1f} ms, "
               f"entropy decoding {r.entropy_s * 1e3:.1f} ms in {r.passes} passes")


def _passive_omp_wait() -> None:
    """OMP_WAIT_POLICY=PASSIVE for this process unless set already, before torch loads OpenMP.

    Idle OpenMP threads then sleep instead of spinning. In a 2-thread decode a spinning torch
    thread holds the core the rANS substream thread needs: the entropy phase took 2.9 ms
    instead of 1.3 ms (1 thread: 1.7 ms; docs/studies/2026-12-06-substream-handoff.md).
    On a machine shared with other jobs
    a spinning thread holds a core the other thread's work needs: measured here with the
    load average at 13-15, a 2-thread training step took 10-13 s spinning and 2.8-3.6 s
    passive (1 thread: 2.3 s); see
    docs/studies/2026-11-29-train-speed-cpu.md.
    """
    import os
    import sys

    if "torch" not in sys.modules:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


@click.command()
@click.argument("dataset_dir", type=click.Path(file_okay=False))
@click.option("--app", required=True, help="Application to train on, or 'all' for a general model.")
@click.option("--arch", default="c2f-small-pruned", show_default=True,
              help="Architecture (c2f-{large,medium,small,xsmall}[-pruned][-msp][-vr], "
                   "c2f-{xsmall,small}-m{96,128,192}[-pruned][-vr] (wide latent), "
                   "mbt2018-mean, ...); -msp: multi-scale progressive probability model of y; "
                   "a name ending in -vr is variable-rate.")
@click.option("--variable-rate", is_flag=True,
              help="One model for a ladder of lambdas (gain units, quality index 0..Q-1): "
                   "adds -vr to --arch.")
@click.option("--lambda", "lmbda", default=None, type=click.FloatRange(min=0, min_open=True),
              help="Fixed-rate trade-off: loss = lambda*255^2*MSE + bpp [default: 0.01]. Paper: "
                   + ", ".join(f"{v:g}" for v in PAPER_LAMBDAS))
@click.option("--lambdas", default=None,
              help="Variable rate: comma-separated ascending ladder (quality 0 = first) "
                   "[default: 0.0018,0.0035,0.0067,0.013,0.025,0.0483,0.0932].")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Run folder.")
@click.option("--steps", default=100_000, show_default=True, type=click.IntRange(min=1))
@click.option("--batch", default=8, show_default=True, type=click.IntRange(min=1))
@click.option("--crop", default=256, show_default=True, type=click.IntRange(min=1),
              help="Random crop side (px), a multiple of the architecture's stride.")
@click.option("--lr", default=1e-4, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="Peak learning rate.")
@click.option("--schedule", default="plateau", show_default=True,
              type=click.Choice(["plateau", "cosine", "constant"]),
              help="After the warm-up: plateau (constant, then a cosine decay to lr/100 over the "
                   "last --decay steps; --resume with more --steps continues from the "
                   "un-decayed plateau.pt), cosine decay over the whole run, or constant.")
@click.option("--decay", default=None, type=click.IntRange(min=0),
              help="Steps of the plateau schedule's final decay [default: 10% of --steps].")
@click.option("--warmup", default=None, type=click.IntRange(min=0),
              help="Linear warm-up steps [default: 5% of --steps, at most 1000].")
@click.option("--device", default="auto", type=click.Choice(["auto", "cpu", "cuda"]),
              show_default=True)
@click.option("--resume", is_flag=True, help="Continue the run in --out from last.pt.")
@click.option("--val-every", default=1000, show_default=True, type=click.IntRange(min=1))
@click.option("--val-images", default=20, show_default=True, type=click.IntRange(min=1),
              help="Validation frames used (whole frames spread over the validation split).")
@click.option("--resolution", type=click.Choice(["720p", "1080p"]), default=None,
              help="Only frames of this resolution (default: both).")
@click.option("--threads", default=0, show_default=True, type=click.IntRange(min=0),
              help="Torch threads (0: one per core).")
@click.option("--cache-gb", default=8.0, show_default=True,
              type=click.FloatRange(min=0, min_open=True),
              help="Memory for the decoded train frames (beyond it, a window of each frame).")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--init", "init", default=None, metavar="REF",
              help="Start from the weights of REF (checkpoint, model card or model name) of "
                   "the same architecture, with fresh optimizer states: continue a run on "
                   "another machine, or fine-tune the general model on one app.")
def train(dataset_dir, app, arch, variable_rate, lmbda, lambdas, out, steps, batch, crop, lr,
          schedule, decay, warmup, device, resume, val_every, val_images, resolution, threads,
          cache_gb, seed, init) -> None:
    """Train a learned codec on DATASET_DIR's train split (best.pt, last.pt, log.csv in --out).

    The train frames are decoded once into memory; each step takes random crops of them.
    Interrupt with Ctrl-C at any time: last.pt keeps the step reached, --resume goes on
    exactly as an unbroken run would; --resume with more --steps extends the run.

    \b
    Examples:
      cloud3d train dataset --app supertuxkart --lambda 0.01 --out runs/stk-0.01
      cloud3d train dataset --app supertuxkart --variable-rate --out runs/stk-vr
      cloud3d train dataset --app supertuxkart --arch c2f-xsmall-m192-pruned --lambda 0.013 \\
        --init general --out runs/stk-ft
    """
    if variable_rate and not arch.endswith("-vr"):
        arch += "-vr"
    ladder = None
    if lambdas is not None:
        try:
            ladder = tuple(float(v) for v in lambdas.split(","))
        except ValueError:
            raise Cloud3dError(f"--lambdas must be comma-separated numbers, got {lambdas!r}") from None
        if not arch.endswith("-vr"):
            raise Cloud3dError("--lambdas is for variable-rate training: add --variable-rate")
    if arch.endswith("-vr") and lmbda is not None:
        raise Cloud3dError("--lambda is for fixed-rate training; a variable-rate model takes "
                           "--lambdas (a ladder)")
    lmbda = 0.01 if lmbda is None else lmbda
    _passive_omp_wait()  # before torch loads OpenMP
    from cloud3d_dataset.torch_dataset import CropTooLarge
    from models.train import TrainConfig
    from models.train import train as run

    cfg = TrainConfig(dataset=dataset_dir, out=out, app=app, arch=arch, lmbda=lmbda,
                      lambdas=ladder, steps=steps, batch=batch, crop=crop, lr=lr,
                      schedule=schedule, decay=decay, warmup=warmup, device=device, resume=resume,
                      val_every=val_every, val_images=val_images, resolution=resolution,
                      threads=threads, cache_gb=cache_gb, seed=seed, init=init)
    try:
        res = run(cfg)
    except CropTooLarge as exc:  # speak of the option, not of the Python argument
        raise Cloud3dError(exc.describe("--crop")) from None
    shown = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                      for k, v in res.items())
    click.echo(f"{out}: {shown}")


@click.command("lap")
@click.argument("dataset_dir", type=click.Path(file_okay=False))
@click.option("--stage", default="general", show_default=True,
              help="Model of the plan: general, supertuxkart, redeclipse, 0ad.")
@click.option("--budget", default=600.0, show_default=True, type=click.FloatRange(min=30),
              help="Wall seconds for the whole lap (throughput probe, training, validation).")
@click.option("--runs", default="runs/laps", show_default=True, type=click.Path(file_okay=False),
              help="Folder of the lap runs (RUNS/STAGE: checkpoints, log.csv, laps.csv).")
@click.option("--device", default="auto", type=click.Choice(["auto", "cpu", "cuda"]),
              show_default=True)
@click.option("--bundle-dir", default=None, type=click.Path(file_okay=False),
              help="Where the weights are read and kept [default: the bundled models' folder].")
@click.option("--batch", default=8, show_default=True, type=click.IntRange(min=1))
@click.option("--crop", default=256, show_default=True, type=click.IntRange(min=64))
@click.option("--threads", default=0, show_default=True, type=click.IntRange(min=0),
              help="Torch threads (0: one per core).")
@click.option("--val-frames", default=12, show_default=True, type=click.IntRange(min=1))
@click.option("--steps", default=None, type=click.IntRange(min=1),
              help="Train exactly this many steps this lap [default: what fits the budget].")
def lap(dataset_dir, stage, budget, runs, device, bundle_dir, batch, crop, threads,
        val_frames, steps) -> None:
    """One training lap of the bundled models' plan on DATASET_DIR, within --budget seconds.

    Continues the stage from its lap run (or from the weights in the repository), trains at
    a constant rate with a short decay at the end, validates against JPEG with the real
    codec, appends RUNS/STAGE/laps.csv and keeps the weights as a bundled model when the
    saving vs JPEG improved by 3 points or more. On a CPU, run it with nice in the
    background; Ctrl-C keeps last.pt.

    \b
    Examples:
      cloud3d lap dataset --budget 3600 --device cpu
      cloud3d lap dataset --stage supertuxkart --budget 600 --device cuda
    """
    _passive_omp_wait()
    from models.codec import resolve_device
    from models.lap import LapOptions, run_lap

    dev = resolve_device(device).type
    row = run_lap(dataset_dir, runs, budget, stage=stage,
                  options=LapOptions(device=dev, bundle_dir=bundle_dir, batch=batch, crop=crop,
                                     threads=threads, val_frames=val_frames, steps=steps))
    click.echo(", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                         for k, v in row.items()))


def register(group: click.Group) -> None:
    """Add ``compress``, ``decompress``, ``train``, ``lap`` and ``models`` to the ``cloud3d``
    group."""
    from models.library_cli import models

    for cmd in (compress, decompress, train, lap, models):
        group.add_command(cmd)
