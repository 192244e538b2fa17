"""Compress an RGB image to a ``.c3d`` bitstream with a learned model, and back.

Public API::

    compress_image(model, rgb, tile="whole", coder="ans", device=None, fp16=False,
                   fast=True, quality=None) -> bytes
    decompress_image(model, data, device=None, fp16=False, fast=True, quality=None,
                     max_pixels=None) -> (H, W, 3) uint8
    compress_image_timed(...) -> CompressResult(data, network_s, entropy_s, tile)
    compress_image_timed(..., refine=hook)   # encoder-side latent refinement (models.overfit)
    decompress_image_timed(...) -> DecompressResult(rgb, network_s, entropy_s, passes)
    quantized_reconstruction(model, rgb, tile="whole") -> (H, W, 3) uint8
    weights_hash(model) -> 32 bytes;  prepare(model, device) -> PreparedModel

``model`` is a :class:`~models.latent_model.LatentModel` (any architecture of
:mod:`models.architectures`) or a :class:`~models.prepared.PreparedModel`. A bare model is
prepared for the call (inference copy, float64 parameter nets, tables, hash) and the
preparation is dropped afterwards; prepare it once with :func:`prepare` to code many images.

This module cuts images into tiles and runs the transforms; the entropy coding, its
float64 parameter path and the cross-device determinism rules are in :mod:`models.entropy`,
the container in :mod:`models.bitstream`.

Variable-rate models (``num_qualities > 0``) need ``quality`` (an index into their
``lambdas``) to compress; the stream records it (container version 2) and the decoder uses
the recorded index. Only a version-1 stream of a variable-rate model (made before the field
existed) needs ``quality`` to decode. Fixed-rate models take no quality.

Decoder limits: a stream is decoded only if its image fits the pixel budget
(:func:`models.bitstream.decode_pixel_budget`: ``max_pixels``, else the environment variable
``CLOUD3D_MAX_DECODE_PIXELS``, else :data:`models.bitstream.MAX_DECODE_PIXELS`, DCI 4K) and
its strings are long enough for the latents it claims (:func:`models.entropy.check_strings`);
both are checked before any tensor is allocated.

Times: ``network_s`` covers g_a/hyper-analysis/parameter nets/g_s (CUDA synchronised);
``entropy_s`` covers rounding to symbols, index building and the rANS or LZMA coder.
``passes``: entropy-decoding passes, i.e. sequential decoder steps, per stream (summed over
tiles): one per level, or a progressive level's fixed number of passes
(:func:`models.latent_model.level_passes`), whatever the image size.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from cloud3d.errors import Cloud3dError, CodecError
from models import bitstream, substreams
from models.entropy import (
    Levels,
    Times,
    check_strings,
    code_levels,
    decode_levels,
    encode_strings,
    pass_sizes,
    sync,
)
from models.latent_model import LatentModel, model_qualities
from models.prepared import PreparedModel, prepare, resolve_device, weights_hash

__all__ = [
    "FALLBACK_TILE", "CompressResult", "DecompressResult", "PreparedModel", "compress_image",
    "compress_image_timed", "decompress_image", "decompress_image_timed", "prepare",
    "quantized_reconstruction", "resolve_device", "weights_hash",
]

#: tile used when a whole frame does not fit in GPU memory
FALLBACK_TILE = 512

Model = LatentModel | PreparedModel

#: ``refine(pm, x, (h, w), quality, latents) -> latents``: an encoder-side hook that replaces
#: a tile's float64 latents (finest first, on ``pm.param_device``) before they are coded;
#: ``x`` is the padded tile ``(1, 3, H, W)`` on ``pm.device`` and ``(h, w)`` its size before
#: padding. The stream is made from the returned latents exactly as from the analysis's, so
#: the decoder needs nothing to read it (latent overfitting, :mod:`models.overfit`).
Refine = Callable[[PreparedModel, torch.Tensor, tuple[int, int], int | None,
                   list[torch.Tensor]], list[torch.Tensor]]


@dataclass
class CompressResult:
    data: bytes
    network_s: float
    entropy_s: float
    tile: int  # 0 = whole frame
    #: packing the container (header, tables, CRC)
    container_s: float = 0.0


@dataclass
class DecompressResult:
    rgb: np.ndarray
    network_s: float
    entropy_s: float
    #: entropy-decoding passes (sequential decoder steps) over all tiles
    passes: int = 0
    #: parsing and checking the container and the string bounds
    container_s: float = 0.0


def _rgb_to_tensor(rgb: np.ndarray) -> torch.Tensor:
    """``(H, W, 3) uint8`` -> ``(1, 3, H, W)`` float32 in 0..1."""
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise Cloud3dError(f"expected an (H, W, 3) uint8 RGB image, got {rgb.shape} {rgb.dtype}")
    return torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None].float() / 255.0


def _pad(x: torch.Tensor, stride: int) -> torch.Tensor:
    """Pad ``(B, C, H, W)`` right/bottom by edge replication to multiples of ``stride``."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % stride, (-w) % stride
    return F.pad(x, (0, pw, 0, ph), mode="replicate") if (ph or pw) else x


def _to_rgb8(x_hat: torch.Tensor, h: int, w: int) -> np.ndarray:
    """The top-left ``h x w`` of ``(1, 3, H', W')`` in nominal 0..1 as ``(h, w, 3) uint8``."""
    x = torch.nan_to_num(x_hat[0, :, :h, :w].float(), nan=0.0).clamp(0, 1)
    return x.mul(255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()


def _autocast(device: torch.device, fp16: bool):
    if fp16 and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.float16)
    return contextlib.nullcontext()


def _check_tile(model: Model, tile: int | str | None) -> int:
    if tile is None or tile == "whole" or tile == 0:
        return 0
    try:
        t = int(tile)
    except (TypeError, ValueError):
        raise Cloud3dError(f"--tile must be 'whole' or a positive integer, got {tile!r}") from None
    if t <= 0 or t % model.stride:
        raise Cloud3dError(
            f"tile size {t} must be a positive multiple of {model.arch}'s stride {model.stride} "
            f"(e.g. {model.stride * max(1, round(max(t, 1) / model.stride))}), or 'whole'"
        )
    return t


def _check_quality(model: Model, quality: int | None) -> int | None:
    """The quality index to pass to a variable-rate model's transforms; None for fixed rate."""
    n = model_qualities(model.model if isinstance(model, PreparedModel) else model)
    if n == 0:
        if quality is not None:
            raise Cloud3dError(f"{model.arch} is a fixed-rate model: it takes no quality")
        return None
    if quality is None or isinstance(quality, bool) or not isinstance(quality, int | np.integer) \
            or not 0 <= int(quality) < n:
        raise Cloud3dError(f"{model.arch} is a variable-rate model: give a quality 0..{n - 1}, "
                           f"got {quality!r}")
    return int(quality)


def _stream_quality(model: Model, s: bitstream.Stream, quality: int | None,
                    source: str) -> int | None:
    """The quality index to decode ``s`` at: the one it records, else the caller's."""
    if s.quality is None:
        return _check_quality(model, quality)
    if quality is not None and quality != s.quality:
        raise CodecError(f"{source} was coded at quality {s.quality}, not {quality}: decode "
                         "without a quality (the stream records it)")
    n = model_qualities(model.model if isinstance(model, PreparedModel) else model)
    if not s.quality < n:
        have = f"qualities 0..{n - 1}" if n else "no qualities (fixed-rate)"
        raise CodecError(f"{source} records quality {s.quality} but {model.arch} has {have} "
                         "(corrupt or forged stream)")
    return s.quality


def _tiles(w: int, h: int, tile: int, stride: int):
    """``(x0, y0, tw, th, ph, pw)`` per tile, row-major; ``ph x pw``: size padded to ``stride``."""
    for x0, y0, tw, th in bitstream.tile_grid(w, h, tile):
        yield x0, y0, tw, th, th + (-th) % stride, tw + (-tw) % stride


def _encode_tile(pm: PreparedModel, x: torch.Tensor, fp16: bool, quality: int | None,
                 times: Times, refine: Refine | None = None,
                 valid: tuple[int, int] | None = None) -> Levels:
    """Analysis and quantization of one padded tile ``(1, 3, H, W)``; ``refine`` (with the
    tile's unpadded size ``valid``) may replace the latents first (see :data:`Refine`)."""
    t0 = time.perf_counter()
    x = x.to(pm.device)
    with torch.inference_mode(), _autocast(pm.device, fp16):
        lat = pm.latents(x, quality)
        # NCHW-contiguous float64: the decoder builds the same layout from the stream
        lat = [t.to(pm.param_device, torch.float64).contiguous() for t in lat]
    if refine is not None:
        # outside inference mode (the hook differentiates); clones are ordinary tensors
        shapes = [tuple(t.shape) for t in lat]
        lat = refine(pm, x.clone(), valid or tuple(x.shape[-2:]), quality,
                     [t.clone() for t in lat])
        if [tuple(t.shape) for t in lat] != shapes:
            raise CodecError("a latent refinement changed the latents' shapes")
        lat = [t.to(pm.param_device, torch.float64).contiguous() for t in lat]
    sync(pm.device)
    times["network"] += time.perf_counter() - t0
    def symbols(k: int, mask: torch.Tensor | None, offset: torch.Tensor,
                _idx: torch.Tensor) -> torch.Tensor:
        return torch.round((lat[k] if mask is None else lat[k][mask]) - offset)

    return code_levels(pm.entropy, [tuple(t.shape) for t in lat], symbols, times)


def _latent_shapes(model: Model, ph: int, pw: int) -> list[tuple[int, ...]]:
    return [(1, c, ph // s, pw // s) for s, c in zip(model.latent_strides, model.latent_channels,
                                                     strict=True)]


def _synthesis(pm: PreparedModel, y_hat: torch.Tensor, fp16: bool, quality: int | None,
               times: Times, threads: int = 1) -> torch.Tensor:
    """g_s of the float64 ``y_hat`` on the transform device (float32, or fp16 under autocast;
    on a CPU in row bands on ``threads`` threads: :mod:`models.bands`)."""
    t0 = time.perf_counter()
    with torch.inference_mode(), _autocast(pm.device, fp16):
        x_hat = pm.synthesis(y_hat.to(pm.device, torch.float32), quality, threads,
                             substreams.pool(threads))
    sync(pm.device)
    times["network"] += time.perf_counter() - t0
    return x_hat


def compress_image_timed(
    model: Model,
    rgb: np.ndarray,
    tile: int | str | None = "whole",
    coder: str = "ans",
    device: str | torch.device | None = None,
    fp16: bool = False,
    param_device: str | torch.device | None = None,
    fast: bool = True,
    quality: int | None = None,
    refine: Refine | None = None,
    threads: int | None = None,
    substreams_k: int | None = None,
) -> CompressResult:
    """Compress ``rgb`` (``(H, W, 3) uint8``) to ``.c3d`` bytes; see module docstring.

    ``tile``: ``"whole"`` (default; falls back to :data:`FALLBACK_TILE` on CUDA out-of-memory)
    or a multiple of ``model.stride``. ``coder``: ``"ans"`` (learned entropy model) or
    ``"lzma"`` (ablation: the same symbols written with LZMA). ``device``: where the
    transforms run (default: a prepared model's own, else CUDA if present); ``param_device``:
    where the float64 entropy-parameter path runs (default: ``device``). ``fast``: run the
    float32 transforms through the inference copy (:mod:`models.fast_inference`); ``False``
    runs compressai's layers as they are (same streams). ``quality``: variable-rate models only.
    ``refine``: encoder-side hook replacing each tile's latents (:data:`Refine`); its time
    counts as ``network_s``. ``threads``: CPU threads of this call, for torch and for the
    rANS substreams (default: torch's own setting, and the cores available,
    :func:`models.substreams.available_cores`, for the substreams);
    ``substreams_k``: K, the most substreams a level is cut into (default
    :data:`models.substreams.DEFAULT_SUBSTREAMS`; rANS only, container version 3). The
    stream decodes to the same image whatever the two.
    """
    if coder not in bitstream.CODERS:
        raise Cloud3dError(f"unknown coder {coder!r}; valid: {', '.join(bitstream.CODERS)}")
    n_threads, k_max = _check_threads(threads), _check_substreams(substreams_k)
    t = _check_tile(model, tile)
    q = _check_quality(model, quality)
    h, w = rgb.shape[:2]
    if not (1 <= h <= bitstream.MAX_SIDE and 1 <= w <= bitstream.MAX_SIDE):
        raise Cloud3dError(f"image size {w}x{h} outside 1..{bitstream.MAX_SIDE}")
    tw, th = (w, h) if t == 0 else (min(t, w), min(t, h))
    if w * h > bitstream.MAX_PIXELS:
        raise Cloud3dError(f"image {w}x{h} above the limit of {bitstream.MAX_PIXELS} pixels")
    if tw * th > bitstream.MAX_TILE_PIXELS:
        raise Cloud3dError(f"{w}x{h} in one piece is above {bitstream.MAX_TILE_PIXELS} pixels: "
                           "use --tile 2048 (or smaller)")
    x = _rgb_to_tensor(rgb)
    pm = prepare(model, device, param_device, fast)
    with substreams.torch_threads(threads):
        try:
            return _compress(pm, x, t, coder, fp16, q, refine, n_threads, k_max)
        except torch.OutOfMemoryError:
            if t != 0 or pm.device.type != "cuda":
                raise Cloud3dError(f"out of memory compressing {w}x{h} with tile {t or 'whole'}: "
                                   "use a smaller --tile") from None
            torch.cuda.empty_cache()
            return _compress(pm, x, FALLBACK_TILE, coder, fp16, q, refine, n_threads, k_max)


def _check_threads(threads: int | None) -> int:
    try:
        return substreams.check_threads(threads)
    except ValueError as exc:
        raise Cloud3dError(str(exc)) from None


def _check_substreams(k: int | None) -> int:
    if k is None:
        return substreams.DEFAULT_SUBSTREAMS
    if isinstance(k, bool) or not isinstance(k, int | np.integer) \
            or not 1 <= k <= bitstream.MAX_SUBSTREAMS:
        raise Cloud3dError(f"substreams must be 1..{bitstream.MAX_SUBSTREAMS}, got {k!r}")
    return int(k)


def _compress(pm: PreparedModel, x: torch.Tensor, t: int, coder: str, fp16: bool,
              quality: int | None, refine: Refine | None = None, threads: int = 1,
              k_max: int = 1) -> CompressResult:
    h, w = x.shape[-2:]
    times = {"network": 0.0, "entropy": 0.0}
    strings, parts = [], []
    workers = substreams.pool(threads)
    for x0, y0, tw, th, _, _ in _tiles(w, h, t, pm.stride):
        levels = _encode_tile(pm, _pad(x[..., y0 : y0 + th, x0 : x0 + tw], pm.stride), fp16,
                              quality, times, refine, (th, tw))
        t0 = time.perf_counter()
        tile_strings, tile_parts = encode_strings(pm.entropy, levels, coder, k_max, workers)
        strings.append(tile_strings)
        parts.append(tile_parts)
        times["entropy"] += time.perf_counter() - t0
    t0 = time.perf_counter()
    v3 = coder == "ans"  # rANS: substreams (container version 3); LZMA: versions 1/2
    s = bitstream.Stream(pm.arch, pm.weights_hash, w, h, t, coder, len(pm.latent_strides), strings,
                         quality, parts if v3 else None, k_max if v3 else 0)
    data = bitstream.pack(s)
    return CompressResult(data, times["network"], times["entropy"], t,
                          time.perf_counter() - t0)


def compress_image(model: Model, rgb: np.ndarray, tile: int | str | None = "whole",
                   coder: str = "ans", device: str | torch.device | None = None,
                   fp16: bool = False, fast: bool = True, quality: int | None = None,
                   threads: int | None = None, substreams_k: int | None = None) -> bytes:
    """Compress ``rgb`` to ``.c3d`` bytes (see :func:`compress_image_timed`)."""
    return compress_image_timed(model, rgb, tile=tile, coder=coder, device=device, fp16=fp16,
                                fast=fast, quality=quality, threads=threads,
                                substreams_k=substreams_k).data


def quantized_reconstruction(model: Model, rgb: np.ndarray, tile: int | str | None = "whole",
                             device: str | torch.device | None = None, fast: bool = True,
                             quality: int | None = None, threads: int | None = None) -> np.ndarray:
    """The encoder's own reconstruction: g_s of the quantized latents, no entropy coding.

    A correct decoder reproduces this exactly on the same device, with any ``threads``.
    """
    n_threads = _check_threads(threads)
    t = _check_tile(model, tile)
    q = _check_quality(model, quality)
    pm = prepare(model, device, None, fast)
    x = _rgb_to_tensor(rgb)
    h, w = x.shape[-2:]
    out = np.empty((h, w, 3), np.uint8)
    times = {"network": 0.0, "entropy": 0.0}
    for x0, y0, tw, th, _, _ in _tiles(w, h, t, pm.stride):
        levels = _encode_tile(pm, _pad(x[..., y0 : y0 + th, x0 : x0 + tw], pm.stride), False, q,
                              times)
        x_hat = _synthesis(pm, levels.y_hat, False, q, times, n_threads)
        out[y0 : y0 + th, x0 : x0 + tw] = _to_rgb8(x_hat, th, tw)
    return out


def decompress_image_timed(
    model: Model,
    data: bytes,
    device: str | torch.device | None = None,
    fp16: bool = False,
    param_device: str | torch.device | None = None,
    source: str = "stream",
    fast: bool = True,
    quality: int | None = None,
    max_pixels: int | None = None,
    threads: int | None = None,
) -> DecompressResult:
    """Decode ``.c3d`` bytes made by :func:`compress_image` with the same weights.

    Raises :class:`~cloud3d.errors.CodecError` if the stream is corrupt, truncated, foreign,
    was made by another architecture or other weights, records a quality the model does not
    have, claims an image above the pixel budget (``max_pixels``; see
    :func:`models.bitstream.decode_pixel_budget`) or latents its strings are too short for.
    ``fast``: as in :func:`compress_image_timed` (affects only the float32 synthesis, never
    how the stream is read). ``quality``: only for a version-1 stream of a variable-rate
    model; a stream that records its quality is decoded at it (a different ``quality`` is an
    error). ``source`` names the stream in errors. ``threads``: CPU threads of this call
    (torch, the substreams of a version-3 stream, and on a CPU the row bands of g_s:
    :mod:`models.bands`; default: torch's own setting, and the cores available for the
    substreams and bands); every thread count decodes to the same image.
    """
    n_threads = _check_threads(threads)
    t_container = time.perf_counter()
    s = bitstream.parse(data, source)
    bitstream.check_decode_budget(s, max_pixels, source)
    if s.arch != model.arch:
        raise CodecError(
            f"{source} was made by architecture {s.arch} but the checkpoint is {model.arch}: "
            "decode with the checkpoint used to compress it"
        )
    if s.n_levels != len(model.latent_strides):
        raise CodecError(f"{source}: {s.n_levels} latent levels, {model.arch} has "
                         f"{len(model.latent_strides)}")
    if s.tile and s.tile % model.stride:
        raise CodecError(f"{source}: tile size {s.tile} is not a multiple of stride {model.stride}")
    q = _stream_quality(model, s, quality, source)
    pm = prepare(model, device, param_device, fast)
    if s.weights_hash != pm.weights_hash:
        raise CodecError(
            f"{source} was made by other weights (hash {s.weights_hash.hex()[:12]}) than this "
            f"checkpoint ({pm.weights_hash.hex()[:12]}): decode with the checkpoint used to "
            "compress it"
        )
    pieces = list(_tiles(s.width, s.height, s.tile, pm.stride))
    parts = s.parts or [None] * len(pieces)
    for (*_, ph, pw), strings, tile_parts in zip(pieces, s.strings, parts, strict=True):
        shapes = _latent_shapes(pm, ph, pw)
        check_strings(pm.entropy, shapes, strings, s.coder, source, tile_parts,
                      pass_sizes(pm.entropy, shapes) if tile_parts else None)
    t_container = time.perf_counter() - t_container
    times = {"network": 0.0, "entropy": 0.0}
    out = np.empty((s.height, s.width, 3), np.uint8)
    passes = 0
    with substreams.torch_threads(threads):
        for (x0, y0, tw, th, ph, pw), strings, tile_parts in zip(pieces, s.strings, parts,
                                                                 strict=True):
            levels = decode_levels(pm.entropy, _latent_shapes(pm, ph, pw), strings, s.coder,
                                   times, source, tile_parts, substreams.pool(n_threads))
            passes += levels.passes
            x_hat = _synthesis(pm, levels.y_hat, fp16, q, times, n_threads)
            t0 = time.perf_counter()
            out[y0 : y0 + th, x0 : x0 + tw] = _to_rgb8(x_hat, th, tw)
            sync(pm.device)
            times["network"] += time.perf_counter() - t0
    return DecompressResult(out, times["network"], times["entropy"], passes, t_container)


def decompress_image(model: Model, data: bytes, device: str | torch.device | None = None,
                     fp16: bool = False, fast: bool = True, quality: int | None = None,
                     max_pixels: int | None = None, threads: int | None = None) -> np.ndarray:
    """Decode ``.c3d`` bytes to ``(H, W, 3) uint8`` RGB (see :func:`decompress_image_timed`)."""
    return decompress_image_timed(model, data, device=device, fp16=fp16, fast=fast,
                                  quality=quality, max_pixels=max_pixels, threads=threads).rgb
