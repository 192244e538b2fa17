"""Compress an RGB image to a ``.c3d`` bitstream with a learned model, and back.

Public API::

    compress_image(model, rgb, tile="whole", coder="ans", device=None, fp16=False,
                   fast=True) -> bytes
    decompress_image(model, data, fast=True) -> (H, W, 3) uint8
    compress_image_timed(...) -> CompressResult(data, network_s, entropy_s, tile)
    decompress_image_timed(...) -> DecompressResult(rgb, network_s, entropy_s)
    quantized_reconstruction(model, rgb, tile="whole") -> (H, W, 3) uint8
    weights_hash(model) -> 32 bytes

``model`` is any architecture from :mod:`models.architectures` (eval mode is set here;
entropy tables are built with ``model.update()`` if missing).

Cross-device determinism
------------------------
The decoder must rebuild exactly the CDF index and mean the encoder used for every latent
element, even when encoder (GPU) and decoder (CPU) differ. Three rules make this robust:

1. The entropy-parameter path (hyper-synthesis h_s + Pro-Est head) runs on a float64 copy
   of those layers, fed with quantized latents that are exact in floating point. float64
   results on different devices differ by ~1e-15 relative, not ~1e-6 as float32/TF32 do.
2. Predicted means are snapped to a grid of 1/64 (:data:`MEAN_GRID`) and scales are turned
   into table indexes by float64 comparisons. A device difference only matters if a value
   lies within ~1e-13 of a grid step or table boundary: about 1e-11 per element, i.e. about
   one frame in 10^5 at 1080p for the small model.
3. Decoded latents are ``symbol + snapped mean`` (exact), so each level's input to the next
   level's parameter network is identical on every device.

The synthesis g_s itself stays float32 (or fp16); it does not feed the entropy decoder, so
device differences there only move reconstructed pixels by rounding noise (typically 0-1
code values), never desynchronise the stream.

Times: ``network_s`` covers g_a/hyper-analysis/parameter nets/g_s (CUDA synchronised);
``entropy_s`` covers rounding to symbols, index building and the rANS or LZMA coder.
"""

from __future__ import annotations

import copy
import hashlib
import lzma
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from cloud3d.errors import Cloud3dError
from models import bitstream
from models.fast_inference import inference_copy, state_fingerprint, to_channels_last

#: predicted means are rounded to multiples of this (a power of two: exact in binary)
MEAN_GRID = 1.0 / 64
#: tile used when a whole frame does not fit in GPU memory
FALLBACK_TILE = 512


@dataclass
class CompressResult:
    data: bytes
    network_s: float
    entropy_s: float
    tile: int  # 0 = whole frame


@dataclass
class DecompressResult:
    rgb: np.ndarray
    network_s: float
    entropy_s: float


def weights_hash(model: torch.nn.Module) -> bytes:
    """SHA-256 over the state dict (sorted names, dtypes, shapes, raw bytes).

    Cached per model until its weights change (see :func:`models.fast_inference.state_fingerprint`).
    """
    cached = getattr(model, "_c3d_hash", None)
    fp = state_fingerprint(model)
    if cached is not None and model.__dict__.get("_c3d_hash_fp") == fp:
        return cached
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        a = t.detach().cpu().contiguous()
        h.update(f"{name}|{a.dtype}|{tuple(a.shape)}\n".encode())
        h.update(a.numpy().tobytes() if a.dtype != torch.bfloat16 else a.float().numpy().tobytes())
    model._c3d_hash = h.digest()
    model._c3d_hash_fp = fp
    return model._c3d_hash


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None``/``"auto"`` -> CUDA if available else CPU; a clear error for unusable CUDA."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise Cloud3dError("--device cuda requested but no CUDA GPU is usable here; use --device cpu")
    return dev


class _Tables:
    """CDF tables of one entropy model as Python lists (what the rANS coder takes)."""

    def __init__(self, em: Any) -> None:
        if em._quantized_cdf.numel() == 0:
            raise Cloud3dError("model has no entropy-coder tables: call model.update() first")
        self.cdf = em._quantized_cdf.tolist()
        self.lengths = em._cdf_length.reshape(-1).int().tolist()
        self.offsets = em._offset.reshape(-1).int().tolist()


class _Context:
    """Everything derived once per (model, parameter device): float64 nets, tables, hash."""

    def __init__(self, model: Any, pdev: torch.device) -> None:
        self.pdev = pdev
        self.hash = weights_hash(model)
        self.nets64 = [copy.deepcopy(n).to(pdev, torch.float64).eval() for n in model.param_nets]
        self.top = _Tables(model.bottleneck)
        self.gauss = [_Tables(g) for g in model.gaussians]
        self.scale_tables = [g.scale_table.to(pdev, torch.float64) for g in model.gaussians]
        self.scale_bounds = [float(g.lower_bound_scale.bound) for g in model.gaussians]
        med = model.bottleneck._get_medians().detach().reshape(1, -1, 1, 1)
        self.medians = med.to(pdev, torch.float64)


def _context(model: Any, pdev: torch.device) -> _Context:
    """Prepare (and cache on the model) the coding context; builds CDF tables if missing."""
    model.eval()
    if model.bottleneck._quantized_cdf.numel() == 0 or any(
        g._quantized_cdf.numel() == 0 for g in model.gaussians
    ):
        model.update(force=True)
        model._c3d_hash = None
    cache = model.__dict__.setdefault("_c3d_ctx", {})
    key = str(pdev)
    if key not in cache or cache[key].hash != weights_hash(model):
        cache[key] = _Context(model, pdev)
    return cache[key]


def _transforms(model: Any, dev: torch.device, fast: bool) -> Any:
    """The model that runs the float32 transforms (analysis, hyper-analysis, synthesis).

    ``fast``: an inference copy (fused GDN, channels-last; :mod:`models.fast_inference`) cached
    on the model until its weights change; otherwise the model itself (compressai's layers).
    """
    if not fast:
        return model
    fp = state_fingerprint(model)
    cache = model.__dict__.setdefault("_c3d_fast", {})
    key = str(dev)
    if key not in cache or cache[key][0] != fp:
        # the parameter nets run as float64 copies (_Context): the fast copy shares, not
        # duplicates, them
        shared = [m for net in model.param_nets for m in net.modules()]
        cache[key] = (fp, inference_copy(model, share=shared))
    return cache[key][1]


def _params(ctx: _Context, model: Any, k: int, upper: torch.Tensor):
    """Snapped means (or zeros) and CDF indexes for level ``k`` from quantized level ``k+1``."""
    with torch.inference_mode():
        raw = ctx.nets64[k](upper)
    means, scales = model.split_params(k, raw)
    if means is None:
        means = torch.zeros_like(scales)
    else:
        means = torch.round(means / MEAN_GRID) * MEAN_GRID
    table = ctx.scale_tables[k]
    scales = scales.clamp_min(ctx.scale_bounds[k])
    # index = number of table entries (last excluded) strictly below the scale: compressai's
    # build_indexes rule, as exact float64 comparisons
    idx = torch.bucketize(scales.contiguous(), table[:-1].contiguous(), right=False)
    return means, idx.to(torch.int32)


def _to_list(t: torch.Tensor) -> list[int]:
    return t.reshape(-1).to("cpu", torch.int32).numpy().tolist()


def _rgb_to_tensor(rgb: np.ndarray) -> torch.Tensor:
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise Cloud3dError(f"expected an (H, W, 3) uint8 RGB image, got {rgb.shape} {rgb.dtype}")
    return torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None].float() / 255.0


def _pad(x: torch.Tensor, stride: int) -> torch.Tensor:
    h, w = x.shape[-2:]
    ph, pw = (-h) % stride, (-w) % stride
    return F.pad(x, (0, pw, 0, ph), mode="replicate") if (ph or pw) else x


def _to_rgb8(x_hat: torch.Tensor, h: int, w: int) -> np.ndarray:
    x = torch.nan_to_num(x_hat[0, :, :h, :w].float(), nan=0.0).clamp(0, 1)
    return x.mul(255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()


def _autocast(device: torch.device, fp16: bool):
    import contextlib

    if fp16 and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.float16)
    return contextlib.nullcontext()


def _check_tile(model: Any, tile: int | str | None) -> int:
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


def _quantize_tile(model, ctx, x: torch.Tensor, device, fp16, times, net=None):
    """Analysis + quantization of one padded tile: (symbols, indexes, y_hat), finest first.

    ``net``: the model running the analysis transforms (default ``model``; see
    :func:`_transforms`).
    """
    net = model if net is None else net
    t0 = time.perf_counter()
    with torch.inference_mode(), _autocast(device, fp16):
        xd = x.to(device)
        lat = net.latents(to_channels_last(xd) if net is not model else xd)
        # NCHW-contiguous float64: the decoder builds the same layout from the stream
        lat = [t.to(ctx.pdev, torch.float64).contiguous() for t in lat]
    _sync(device)
    times["network"] += time.perf_counter() - t0
    L = len(lat)
    syms: list[torch.Tensor] = [None] * L  # type: ignore[list-item]
    idxs: list[torch.Tensor] = [None] * L  # type: ignore[list-item]
    t0 = time.perf_counter()
    syms[-1] = torch.round(lat[-1] - ctx.medians)
    c = lat[-1].shape[1]
    idxs[-1] = torch.arange(c, dtype=torch.int32, device=ctx.pdev).view(1, c, 1, 1).expand_as(lat[-1])
    upper = syms[-1] + ctx.medians
    times["entropy"] += time.perf_counter() - t0
    for k in reversed(range(L - 1)):
        t0 = time.perf_counter()
        means, idx = _params(ctx, model, k, upper)
        _sync(ctx.pdev)
        t1 = time.perf_counter()
        syms[k] = torch.round(lat[k] - means)
        idxs[k] = idx
        upper = syms[k] + means
        t2 = time.perf_counter()
        times["network"] += t1 - t0
        times["entropy"] += t2 - t1
    return syms, idxs, upper


def _encode_strings(model, ctx, syms, idxs, coder: str) -> list[bytes]:
    if coder == "lzma":
        payload = b"".join(s.to("cpu", torch.int32).numpy().astype("<i4").tobytes() for s in syms)
        return [lzma.compress(payload, preset=6)]
    from compressai import ans

    enc = ans.RansEncoder()
    out = []
    for k, (s, i) in enumerate(zip(syms, idxs, strict=True)):
        tb = ctx.gauss[k] if k < len(syms) - 1 else ctx.top
        out.append(enc.encode_with_indexes(_to_list(s), _to_list(i), tb.cdf, tb.lengths, tb.offsets))
    return out


def compress_image_timed(
    model: Any,
    rgb: np.ndarray,
    tile: int | str | None = "whole",
    coder: str = "ans",
    device: str | torch.device | None = None,
    fp16: bool = False,
    param_device: str | torch.device | None = None,
    fast: bool = True,
) -> CompressResult:
    """Compress ``rgb`` (``(H, W, 3) uint8``) to ``.c3d`` bytes; see module docstring.

    ``tile``: ``"whole"`` (default; falls back to :data:`FALLBACK_TILE` on CUDA out-of-memory)
    or a multiple of ``model.stride``. ``coder``: ``"ans"`` (learned entropy model) or
    ``"lzma"`` (ablation: the same symbols written with LZMA). ``param_device``: where the
    float64 entropy-parameter path runs (default: ``device``). ``fast``: run the float32
    transforms through the cached inference copy (:mod:`models.fast_inference`); ``False``
    runs compressai's layers as they are (same results to float32 rounding).
    """
    if coder not in bitstream.CODERS:
        raise Cloud3dError(f"unknown coder {coder!r}; valid: {', '.join(bitstream.CODERS)}")
    dev = resolve_device(device)
    pdev = resolve_device(param_device) if param_device is not None else dev
    model.to(dev)
    ctx = _context(model, pdev)
    t = _check_tile(model, tile)
    h, w = rgb.shape[:2]
    if not (1 <= h <= bitstream.MAX_SIDE and 1 <= w <= bitstream.MAX_SIDE):
        raise Cloud3dError(f"image size {w}x{h} outside 1..{bitstream.MAX_SIDE}")
    tw, th = (w, h) if t == 0 else (min(t, w), min(t, h))
    if w * h > bitstream.MAX_PIXELS or tw * th > bitstream.MAX_TILE_PIXELS:
        if w * h > bitstream.MAX_PIXELS:
            raise Cloud3dError(f"image {w}x{h} above the limit of {bitstream.MAX_PIXELS} pixels")
        raise Cloud3dError(f"{w}x{h} in one piece is above {bitstream.MAX_TILE_PIXELS} pixels: "
                           "use --tile 2048 (or smaller)")
    x = _rgb_to_tensor(rgb)
    net = _transforms(model, dev, fast)
    try:
        return _compress(model, ctx, x, t, coder, dev, fp16, net)
    except torch.OutOfMemoryError:
        if t != 0 or dev.type != "cuda":
            raise Cloud3dError(
                f"out of memory compressing {w}x{h} with tile {t or 'whole'}: use a smaller --tile"
            ) from None
        torch.cuda.empty_cache()
        return _compress(model, ctx, x, FALLBACK_TILE, coder, dev, fp16, net)


def _compress(model, ctx, x, t, coder, dev, fp16, net) -> CompressResult:
    h, w = x.shape[-2:]
    times = {"network": 0.0, "entropy": 0.0}
    strings = []
    for x0, y0, tw, th in bitstream.tile_grid(w, h, t):
        xt = _pad(x[..., y0 : y0 + th, x0 : x0 + tw], model.stride)
        syms, idxs, _ = _quantize_tile(model, ctx, xt, dev, fp16, times, net)
        t0 = time.perf_counter()
        strings.append(_encode_strings(model, ctx, syms, idxs, coder))
        times["entropy"] += time.perf_counter() - t0
    s = bitstream.Stream(model.arch, ctx.hash, w, h, t, coder, len(model.latent_strides), strings)
    return CompressResult(bitstream.pack(s), times["network"], times["entropy"], t)


def compress_image(model: Any, rgb: np.ndarray, tile: int | str | None = "whole", coder: str = "ans",
                   device: str | torch.device | None = None, fp16: bool = False,
                   fast: bool = True) -> bytes:
    """Compress ``rgb`` to ``.c3d`` bytes (see :func:`compress_image_timed`)."""
    return compress_image_timed(model, rgb, tile=tile, coder=coder, device=device, fp16=fp16,
                                fast=fast).data


def quantized_reconstruction(model: Any, rgb: np.ndarray, tile: int | str | None = "whole",
                             device: str | torch.device | None = None,
                             fast: bool = True) -> np.ndarray:
    """The encoder's own reconstruction: g_s of the quantized latents, no entropy coding.

    A correct decoder reproduces this exactly on the same device.
    """
    dev = resolve_device(device)
    model.to(dev)
    ctx = _context(model, dev)
    t = _check_tile(model, tile)
    net = _transforms(model, dev, fast)
    x = _rgb_to_tensor(rgb)
    h, w = x.shape[-2:]
    out = np.empty((h, w, 3), np.uint8)
    times = {"network": 0.0, "entropy": 0.0}
    for x0, y0, tw, th in bitstream.tile_grid(w, h, t):
        xt = _pad(x[..., y0 : y0 + th, x0 : x0 + tw], model.stride)
        _, _, y_hat = _quantize_tile(model, ctx, xt, dev, False, times, net)
        x_hat = _synthesis(model, net, y_hat, dev, False)
        out[y0 : y0 + th, x0 : x0 + tw] = _to_rgb8(x_hat, th, tw)
    return out


def _synthesis(model, net, y_hat: torch.Tensor, dev, fp16: bool) -> torch.Tensor:
    """g_s of the float64 ``y_hat`` on ``dev`` (float32, or fp16 under CUDA autocast)."""
    with torch.inference_mode(), _autocast(dev, fp16):
        y = y_hat.to(dev, torch.float32)
        return net.synthesis(to_channels_last(y) if net is not model else y)


def _latent_shape(model, k: int, ph: int, pw: int) -> tuple[int, int, int, int]:
    s = model.latent_strides[k]
    return (1, model.latent_channels[k], ph // s, pw // s)


def decompress_image_timed(
    model: Any,
    data: bytes,
    device: str | torch.device | None = None,
    fp16: bool = False,
    param_device: str | torch.device | None = None,
    source: str = "stream",
    fast: bool = True,
) -> DecompressResult:
    """Decode ``.c3d`` bytes made by :func:`compress_image` with the same weights.

    Raises :class:`Cloud3dError` if the stream is corrupt, truncated, foreign, or was made by
    another architecture or other weights. ``fast``: as in :func:`compress_image_timed`
    (affects only the float32 synthesis, never how the stream is read).
    """
    s = bitstream.parse(data, source)
    dev = resolve_device(device)
    pdev = resolve_device(param_device) if param_device is not None else dev
    if s.arch != model.arch:
        raise Cloud3dError(
            f"{source} was made by architecture {s.arch} but the checkpoint is {model.arch}: "
            "decode with the checkpoint used to compress it"
        )
    if s.n_levels != len(model.latent_strides):
        raise Cloud3dError(f"{source}: {s.n_levels} latent levels, {model.arch} has "
                           f"{len(model.latent_strides)}")
    model.to(dev)
    ctx = _context(model, pdev)
    if s.weights_hash != ctx.hash:
        raise Cloud3dError(
            f"{source} was made by other weights (hash {s.weights_hash.hex()[:12]}) than this "
            f"checkpoint ({ctx.hash.hex()[:12]}): decode with the checkpoint used to compress it"
        )
    if s.tile and s.tile % model.stride:
        raise Cloud3dError(f"{source}: tile size {s.tile} is not a multiple of stride {model.stride}")
    net = _transforms(model, dev, fast)
    times = {"network": 0.0, "entropy": 0.0}
    out = np.empty((s.height, s.width, 3), np.uint8)
    for (x0, y0, tw, th), strings in zip(bitstream.tile_grid(s.width, s.height, s.tile),
                                         s.strings, strict=True):
        ph, pw = th + (-th) % model.stride, tw + (-tw) % model.stride
        y_hat = _decode_tile(model, ctx, strings, s.coder, ph, pw, times, source)
        t0 = time.perf_counter()
        x_hat = _synthesis(model, net, y_hat, dev, fp16)
        out[y0 : y0 + th, x0 : x0 + tw] = _to_rgb8(x_hat, th, tw)
        _sync(dev)
        times["network"] += time.perf_counter() - t0
    return DecompressResult(out, times["network"], times["entropy"])


def decompress_image(model: Any, data: bytes, device: str | torch.device | None = None,
                     fp16: bool = False, fast: bool = True) -> np.ndarray:
    """Decode ``.c3d`` bytes to ``(H, W, 3) uint8`` RGB (see :func:`decompress_image_timed`)."""
    return decompress_image_timed(model, data, device=device, fp16=fp16, fast=fast).rgb


def _decode_tile(model, ctx, strings, coder, ph, pw, times, source) -> torch.Tensor:
    L = len(model.latent_strides)
    shapes = [_latent_shape(model, k, ph, pw) for k in range(L)]
    t0 = time.perf_counter()
    if coder == "lzma":
        flat = _lzma_symbols(strings[0], shapes, source)
    times["entropy"] += time.perf_counter() - t0

    def get(k: int, idx: torch.Tensor | None) -> torch.Tensor:
        shape = shapes[k]
        if coder == "lzma":
            return flat[k].to(ctx.pdev, torch.float64)
        from compressai import ans

        tb = ctx.top if k == L - 1 else ctx.gauss[k]
        n = int(np.prod(shape))
        # Defensive zero padding: the rANS decoder reads at most one 32-bit word per symbol
        # plus bypass bits whose count the stream itself encodes (<= 15 bits read per bit
        # present), so a corrupt or forged string cannot make it read past the buffer.
        data = strings[k] + bytes(8 * n + 16 * len(strings[k]) + 64)
        vals = ans.RansDecoder().decode_with_indexes(data, _to_list(idx), tb.cdf, tb.lengths,
                                                    tb.offsets)
        return torch.tensor(vals, dtype=torch.float64, device=ctx.pdev).reshape(shape)

    t0 = time.perf_counter()
    c = shapes[-1][1]
    top_idx = torch.arange(c, dtype=torch.int32).view(1, c, 1, 1).expand(shapes[-1])
    upper = get(L - 1, top_idx) + ctx.medians
    times["entropy"] += time.perf_counter() - t0
    for k in reversed(range(L - 1)):
        t0 = time.perf_counter()
        means, idx = _params(ctx, model, k, upper)
        _sync(ctx.pdev)
        t1 = time.perf_counter()
        upper = get(k, idx) + means
        times["network"] += t1 - t0
        times["entropy"] += time.perf_counter() - t1
    return upper


def _lzma_symbols(blob: bytes, shapes, source: str) -> list[torch.Tensor]:
    sizes = [int(np.prod(s)) for s in shapes]
    expect = 4 * sum(sizes)
    d = lzma.LZMADecompressor()
    try:
        raw = d.decompress(blob, max_length=expect + 1)
    except lzma.LZMAError as exc:
        raise Cloud3dError(f"{source}: corrupt LZMA latent data ({exc})") from None
    if len(raw) != expect or not d.eof:
        raise Cloud3dError(f"{source}: LZMA latent data has the wrong size for this image")
    arr = np.frombuffer(raw, dtype="<i4")
    out, pos = [], 0
    for s, n in zip(shapes, sizes, strict=True):
        out.append(torch.from_numpy(arr[pos : pos + n].astype(np.int64)).reshape(s))
        pos += n
    return out
