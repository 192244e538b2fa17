"""Checkpoints: ``torch.save`` of a plain dict (state dict + JSON metadata), loaded with
``weights_only=True`` (no arbitrary unpickling).

File content::

    {"format": "cloud3d-model", "format_version": 1,
     "meta_json": '{"arch": "c2f-small-pruned", "config": {}, "lambda": 0.01, "app": "dota2",
                    "step": 1200, "metrics": {...}}',
     "state_dict": {...},                      # includes the entropy-coder CDF tables
     "optimizer": {...}, "aux_optimizer": {...}}   # training checkpoints only (for --resume)

The model is ``update()``-d before saving, so a checkpoint can compress/decompress directly.

A checkpoint is untrusted input: its metadata names an architecture and constructor
arguments (``config``), and a few bytes of JSON can ask for a model of any size. Before
anything is built, :func:`check_config` builds the model on fake tensors (shapes only, no
memory), refuses configs the registry does not accept, models above :data:`MAX_MODEL_PARAMS`
parameters, and state dicts whose names and shapes are not exactly the model's, so a
checkpoint never makes us allocate more than the weights it holds.
"""

from __future__ import annotations

import difflib
import functools
import inspect
import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from cloud3d.atomic import atomic_path
from cloud3d.errors import Cloud3dError
from cloud3d.untrusted import quote
from models.architectures import REGISTRY as ARCH_REGISTRY
from models.architectures import create_model
from models.latent_model import LatentModel

FORMAT = "cloud3d-model"
FORMAT_VERSION = 1
#: most parameters (and buffer elements) a checkpoint's model may have; c2f-large has 149 M
MAX_MODEL_PARAMS = 400_000_000


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
    if not isinstance(obj["meta"], dict):
        raise Cloud3dError(f"{p}: checkpoint metadata is {type(obj['meta']).__name__} JSON, "
                           "not an object")
    sd = obj.get("state_dict")
    if not isinstance(sd, dict) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in sd.items()):
        raise Cloud3dError(f"{p}: checkpoint has no state dict of named tensors")
    return obj


def check_arch(arch: Any, source: str, where: str = "") -> str:
    """``arch`` when it names a registered architecture, else a one-line :class:`Cloud3dError`
    naming ``source`` (``where``: words after the name, such as " in checkpoint") and the
    closest known names (the whole list is long: ``cloud3d train --help`` shows its families)."""
    if isinstance(arch, str) and arch in ARCH_REGISTRY:
        return arch
    # suggestions only for a name of sensible length (a forged one may be megabytes long)
    near = (difflib.get_close_matches(arch, list(ARCH_REGISTRY), n=3)
            if isinstance(arch, str) and len(arch) <= 100 else [])
    hint = f"closest: {', '.join(near)}; " if near else ""
    raise Cloud3dError(f"{source}: unknown architecture {quote(arch)}{where} ({hint}"
                       f"{len(ARCH_REGISTRY)} known: see `cloud3d train --help`)")


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
    check_arch(got, f"{path}", " in checkpoint")
    if arch is not None and arch != got:
        raise Cloud3dError(
            f"{path} is a checkpoint of architecture {got}, not {arch}: pass a {arch} checkpoint "
            f"or use --arch {got}"
        )
    return build_model(got, meta.get("config", {}), obj["state_dict"], str(path)).to(device), meta


def build_model(arch: str, config: Any, state_dict: dict[str, torch.Tensor],
                source: str) -> LatentModel:
    """The model ``arch`` built with ``config`` and holding ``state_dict``, in eval mode on the
    CPU, after :func:`check_config`; the one way checkpoints and bundled models are built.
    ``source`` names the file in errors (:class:`Cloud3dError`)."""
    check_config(arch, config, state_dict, source)
    model = create_model(arch, **config)
    load_weights(model, state_dict, source)
    model.eval()
    return model


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


def check_config(arch: str, config: Any,
                 state_dict: Mapping[str, torch.Tensor | tuple[int, ...]],
                 source: str) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    """Refuse (:class:`Cloud3dError`, one line) what building ``arch`` with ``config`` must not
    do: unknown or ill-typed options, more than :data:`MAX_MODEL_PARAMS` elements, or tensors
    other than exactly those of ``state_dict`` (names, and shapes where the fresh model's
    tensor is not empty: entropy-coder tables are sized by ``update()``). Nothing is allocated.

    ``state_dict`` maps names to tensors or to bare shapes (a file's headers, read before its
    data). Returns the fresh model's ``{name: (shape, dtype)}``.
    """
    check_arch(arch, source)
    if not isinstance(config, dict):
        raise Cloud3dError(f"{source}: architecture config is {type(config).__name__} JSON, "
                           "not an object of constructor options")
    shown = quote(config)
    options = _named_options(arch)
    for key, value in config.items():
        if options is not None and key not in options:
            allowed = ", ".join(options) or "none"
            raise Cloud3dError(f"{source}: {arch} has no config option {quote(key)} (options: {allowed})")
        default = options.get(key) if options is not None else None
        if isinstance(default, int) and not isinstance(default, bool) and (
                isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise Cloud3dError(f"{source}: {arch} config {key[:80]}={quote(value)} is not a positive integer")
    try:
        specs = _fake_state(arch, json.dumps(config, sort_keys=True))
    except (TypeError, ValueError, RuntimeError) as exc:
        first = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
        raise Cloud3dError(f"{source}: config {shown} is not valid for {arch}: {first}") from None
    shapes = {k: shape for k, (shape, _) in specs.items()}
    n = sum(math.prod(s) for s in shapes.values())
    if n > MAX_MODEL_PARAMS:
        raise Cloud3dError(f"{source}: {arch} with config {shown} has {n:,} parameters, above the "
                           f"limit of {MAX_MODEL_PARAMS:,} (forged or foreign checkpoint)")
    missing = sorted(set(shapes) - set(state_dict))
    extra = sorted(set(state_dict) - set(shapes))
    if missing or extra:
        what = f"lacks {quote(missing[0])}" if missing else f"has an unexpected {quote(extra[0])}"
        raise Cloud3dError(f"{source} does not match architecture {arch} {shown}: its state dict "
                           f"{what} (checkpoint of another architecture or size?)")
    for key, shape in shapes.items():
        value = state_dict[key]
        got = tuple(value.shape if isinstance(value, torch.Tensor) else value)
        if math.prod(shape) and got != shape:
            raise Cloud3dError(f"{source} does not match architecture {arch} {shown}: {key} has "
                               f"shape {list(got)}, the model {list(shape)}")
    return specs


def _named_options(arch: str) -> dict[str, Any] | None:
    """Constructor options of ``arch`` with their defaults; None when the factory only takes
    ``**kwargs`` (it then checks them itself)."""
    params = inspect.signature(ARCH_REGISTRY[arch].make).parameters.values()
    named = {p.name: p.default for p in params
             if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    return named if named or not any(p.kind == p.VAR_KEYWORD for p in params) else None


#: longest list option (a variable-rate model's lambda ladder) built on real tensors at once
_REAL_LIST_MAX = 64


def _no_larger_than_default(arch: str, config: dict[str, Any]) -> bool:
    """True when ``config`` cannot make ``arch`` larger than its default model: each integer
    option at most its default, each list at most :data:`_REAL_LIST_MAX` long."""
    options = _named_options(arch) or {}
    for key, value in config.items():
        default = options.get(key)
        if isinstance(value, list) and len(value) <= _REAL_LIST_MAX:
            continue
        if not (isinstance(value, int) and isinstance(default, int) and value <= default):
            return False
    return True


@functools.lru_cache(maxsize=32)
def _fake_state(arch: str, config_json: str) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    """Names, shapes and dtypes of the state of ``create_model(arch, **config)``; the RNG state
    is kept. A config no larger than the default is built on real tensors (it costs what the
    caller's model then costs); any other on fake tensors (torch's FakeTensorMode: shapes
    without memory), whose import (torch._dynamo) takes about a second."""
    config = json.loads(config_json)
    with torch.random.fork_rng(devices=[]):
        if _no_larger_than_default(arch, config):
            model = create_model(arch, **config)
        else:
            from torch._subclasses.fake_tensor import FakeTensorMode

            with FakeTensorMode():
                model = create_model(arch, **config)
                return {k: (tuple(v.shape), v.dtype) for k, v in model.state_dict().items()}
        return {k: (tuple(v.shape), v.dtype) for k, v in model.state_dict().items()}
