"""A learned model made ready for coding: :class:`PreparedModel` and :func:`prepare`.

Coding needs more than the model: a fast inference copy of the float32 transforms
(:mod:`models.fast_inference`), float64 copies of the entropy-parameter nets, the CDF tables
as Python lists (:class:`models.entropy.EntropyParams`) and the SHA-256 of the weights that
every stream records. Building them costs tens of milliseconds to seconds (c2f-large), so a
caller coding many images prepares the model once::

    pm = prepare(model, device="cpu")
    data = compress_image(pm, rgb)          # models.codec accepts a model or a PreparedModel
    rgb2 = decompress_image(pm, data)

The prepared state follows the model: every coding call runs :meth:`PreparedModel.refresh`,
which rebuilds it when the weights changed (``load_state_dict``, optimiser steps,
``update()``, moving the model; see :func:`models.fast_inference.state_fingerprint`). Nothing
is stored on the model itself.
"""

from __future__ import annotations

import hashlib

import torch
from torch import Tensor

from cloud3d.errors import Cloud3dError
from models import bands, substreams
from models.entropy import EntropyParams
from models.fast_inference import inference_copy, state_fingerprint, to_channels_last
from models.latent_model import LatentModel, model_qualities

__all__ = ["PreparedModel", "prepare", "resolve_device", "weights_hash"]


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None``/``"auto"`` -> CUDA if available else CPU; a clear error for unusable CUDA."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise Cloud3dError("--device cuda requested but no CUDA GPU is usable here; use --device cpu")
    return dev


def _hash_state(model: LatentModel) -> bytes:
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        a = t.detach().cpu().contiguous()
        h.update(f"{name}|{a.dtype}|{tuple(a.shape)}\n".encode())
        h.update(a.numpy().tobytes() if a.dtype != torch.bfloat16 else a.float().numpy().tobytes())
    return h.digest()


def _has_tables(model: LatentModel) -> bool:
    return model.bottleneck._quantized_cdf.numel() > 0 and all(
        g._quantized_cdf.numel() > 0 for g in model.gaussians)


class PreparedModel:
    """A :class:`~models.latent_model.LatentModel` with everything coding derives from it.

    Args:
        model: the model; it is moved to ``device``, put in eval mode and ``update()``-d if
            it has no entropy-coder tables (as coding always did).
        device: where the float32 transforms run (``None``/``"auto"``: CUDA if present).
        param_device: where the float64 entropy-parameter path runs (default: ``device``).
        fast: run the transforms through an inference copy (fused GDN, channels-last);
            ``False`` runs the model's own compressai layers (same streams).

    Attributes (current after :meth:`refresh`): ``weights_hash`` (32 bytes), ``entropy``
    (:class:`~models.entropy.EntropyParams`), ``transforms`` (the module running g_a, the
    hyper-analysis and g_s).
    """

    def __init__(self, model: LatentModel, device: str | torch.device | None = None,
                 param_device: str | torch.device | None = None, fast: bool = True) -> None:
        if isinstance(model, PreparedModel):
            raise TypeError("model is already prepared")
        self.model = model
        self.device = resolve_device(device)
        self.param_device = resolve_device(param_device) if param_device is not None else self.device
        self.fast = fast
        self._fingerprint: tuple | None = None
        self.refresh()

    # the model's coding interface, for callers that only hold the prepared model
    @property
    def arch(self) -> str:
        return self.model.arch

    @property
    def stride(self) -> int:
        return self.model.stride

    @property
    def latent_strides(self) -> list[int]:
        return self.model.latent_strides

    @property
    def latent_channels(self) -> list[int]:
        return self.model.latent_channels

    @property
    def num_qualities(self) -> int:
        return model_qualities(self.model)

    def refresh(self) -> None:
        """Rebuild the derived state if the model's weights (or device) changed since."""
        if state_fingerprint(self.model) == self._fingerprint:
            return
        model = self.model
        model.to(self.device)
        model.eval()
        if not _has_tables(model):
            model.update(force=True)
        self.weights_hash = _hash_state(model)
        self.synthesis_halo = bands.synthesis_halo(model.g_s) if hasattr(model, "g_s") else None
        self.entropy = EntropyParams(model, self.param_device)
        if self.fast:
            # the parameter nets run as float64 copies (EntropyParams): the inference copy
            # shares, not duplicates, them
            shared = [m for net in model.param_nets for m in net.modules()]
            self.transforms = inference_copy(model, share=shared)
        else:
            self.transforms = model
        self._fingerprint = state_fingerprint(model)

    def latents(self, x: Tensor, quality: int | None = None) -> list[Tensor]:
        """Analysis of ``x`` (``(1, 3, H, W)`` on :attr:`device`, multiples of the stride)."""
        net = self.transforms
        xin = to_channels_last(x) if net is not self.model else x
        return net.latents(xin) if quality is None else net.latents(xin, quality)

    def synthesis(self, y_hat: Tensor, quality: int | None = None, threads: int = 1,
                  workers: substreams.Workers | None = None) -> Tensor:
        """g_s of the float32 ``y_hat`` (``(1, C, h, w)``) on :attr:`device`.

        On a CPU, a g_s that :func:`models.bands.synthesis_halo` can cut runs as row bands,
        one torch thread each, up to ``threads`` of them at once on ``workers``: every thread
        count gives the same pixels (:mod:`models.bands`).
        """
        net = self.transforms

        def run(y: Tensor) -> Tensor:
            y = to_channels_last(y) if net is not self.model else y
            return net.synthesis(y) if quality is None else net.synthesis(y, quality)

        if self.device.type != "cpu" or self.synthesis_halo is None:
            return run(y_hat)
        n = bands.band_count(y_hat.shape[2], threads, self.synthesis_halo[0])
        return bands.synthesize_bands(run, y_hat, n, *self.synthesis_halo,
                                      workers if n > 1 else None)


def prepare(model: LatentModel | PreparedModel, device: str | torch.device | None = None,
            param_device: str | torch.device | None = None,
            fast: bool = True) -> PreparedModel:
    """``model`` ready for coding on ``device`` (see :class:`PreparedModel`).

    A :class:`PreparedModel` with the same devices and ``fast`` is returned as it is
    (``device=None`` then means its own device); otherwise its model is prepared anew.
    """
    if isinstance(model, PreparedModel):
        if device is None and param_device is None:
            dev, pdev = model.device, model.param_device
        else:
            dev = model.device if device is None else resolve_device(device)
            pdev = dev if param_device is None else resolve_device(param_device)
        if (dev, pdev, fast) == (model.device, model.param_device, model.fast):
            model.refresh()
            return model
        return PreparedModel(model.model, dev, pdev, fast)
    return PreparedModel(model, device, param_device, fast)


def weights_hash(model: LatentModel | PreparedModel) -> bytes:
    """SHA-256 over the state dict (sorted names, dtypes, shapes, raw bytes): 32 bytes.

    A :class:`PreparedModel` answers from its state (recomputed only when the weights
    changed); a bare model is hashed on every call.
    """
    if isinstance(model, PreparedModel):
        model.refresh()
        return model.weights_hash
    return _hash_state(model)
