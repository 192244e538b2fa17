"""Checkpoints: ``torch.save`` of a plain dict (state dict + JSON metadata), loaded with
``weights_only=True`` (no arbitrary unpickling).

File content::

    {"format": "cloud3d-model", "format_version": 1,
     "meta_json": '{"arch": "c2f-small-pruned", "config": {}, "lambda": 0.01, "app": "dota2",
                    "step": 1200, "metrics": {...}}',
     "state_dict": {...},                      # includes the entropy-coder CDF tables
     "optimizer": {...}, "aux_optimizer": {...}}   # training checkpoints only (for --resume)

The model is ``update()``-d before saving, so a checkpoint can compress/decompress directly.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from cloud3d.atomic import atomic_path
from cloud3d.errors import Cloud3dError
from models.architectures import ARCHITECTURES, create_model
from models.latent_model import LatentModel

FORMAT = "cloud3d-model"
FORMAT_VERSION = 1


def save_checkpoint(
    path: str | os.PathLike,
    model: LatentModel,
    meta: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Atomically save ``model`` (after ``update(force=True)``) with JSON-able ``meta``.

    ``meta`` gets ``arch`` and ``config`` filled in; ``extra`` holds optimizer states etc.
    """
    model.update(force=True)
    full_meta = {**(meta or {}), "arch": model.arch, "config": model.config()}
    obj = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "meta_json": json.dumps(full_meta, sort_keys=True),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        **(extra or {}),
    }
    with atomic_path(path, suffix=".tmp") as tmp:
        torch.save(obj, tmp)
    return Path(path)


def read_checkpoint(path: str | os.PathLike, map_location: str = "cpu") -> dict[str, Any]:
    """The raw checkpoint dict with ``meta`` parsed; Cloud3dError for anything unreadable."""
    p = Path(path)
    if not p.is_file():
        raise Cloud3dError(f"no such checkpoint: {p}")
    with open(p, "rb") as f:
        head = f.read(4)
    if head[:2] != b"PK":
        raise Cloud3dError(f"{p} is not a cloud3d model checkpoint (not a torch zip file)")
    try:
        obj = torch.load(p, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt/foreign files
        raise Cloud3dError(
            f"cannot read checkpoint {p}: {str(exc).splitlines()[0][:200]} "
            "(not a cloud3d checkpoint, corrupt, or truncated)"
        ) from None
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise Cloud3dError(f"{p} is not a cloud3d model checkpoint (made by `cloud3d train`?)")
    if obj.get("format_version") != FORMAT_VERSION:
        raise Cloud3dError(f"{p}: checkpoint format {obj.get('format_version')} is not supported")
    try:
        obj["meta"] = json.loads(obj["meta_json"])
    except (KeyError, TypeError, ValueError):
        raise Cloud3dError(f"{p}: checkpoint metadata is missing or not JSON") from None
    return obj


def load_checkpoint(
    path: str | os.PathLike,
    arch: str | None = None,
    device: str | torch.device = "cpu",
) -> tuple[LatentModel, dict[str, Any]]:
    """Build the model recorded in the checkpoint and load its weights; returns ``(model, meta)``.

    ``arch``: when given, a checkpoint of another architecture is a :class:`Cloud3dError`.
    The model is returned in eval mode on ``device``.
    """
    obj = read_checkpoint(path)
    meta = obj["meta"]
    got = meta.get("arch")
    if got not in ARCHITECTURES:
        raise Cloud3dError(f"{path}: unknown architecture {got!r} in checkpoint")
    if arch is not None and arch != got:
        raise Cloud3dError(
            f"{path} is a checkpoint of architecture {got}, not {arch}: pass a {arch} checkpoint "
            f"or use --arch {got}"
        )
    model = create_model(got, **meta.get("config", {}))
    load_weights(model, obj["state_dict"], str(path))
    model.eval()
    return model.to(device), meta


def load_weights(model: LatentModel, state_dict: dict[str, Any], source: str) -> None:
    """Strictly load ``state_dict``; Cloud3dError naming ``source`` on a mismatch."""
    try:
        model.load_state_dict(state_dict, strict=True)
    except (RuntimeError, KeyError, ValueError) as exc:
        first = str(exc).splitlines()[0][:300]
        raise Cloud3dError(
            f"{source} does not match architecture {model.arch}: {first} "
            "(checkpoint of another architecture or size?)"
        ) from None
