"""Bundled models: a trained model as two plain files, ``NAME.npz`` (weights) and
``NAME.json`` (its model card); no pickle anywhere.

Weights file: an uncompressed NumPy ``.npz`` (a zip of ``.npy`` arrays, ``ZIP_STORED``)
holding exactly the model's state dict, one array per tensor, named as in the state dict.
Float parameters are stored as float16 (``dtype="float16"``, the default; half the size) or
float32; every buffer (entropy-coder tables, bounds, scale tables) keeps its own dtype, so
the tables streams are coded with are stored, never recomputed on another machine.

Model card (JSON object, at most :data:`MAX_CARD_BYTES`)::

    {"format": "cloud3d-model-card", "format_version": 1,
     "name": "supertuxkart", "arch": "c2f-xsmall-pruned-vr", "config": {"lambdas": [...]},
     "weights_file": "supertuxkart.npz", "weights_file_sha256": "<hex of the .npz file>",
     "weights_dtype": "float16", "weights_sha256": "<hex: what every stream records>",
     "qualities": 7, "lambdas": [...], "app": "supertuxkart", "step": 40000,
     "source": {"checkpoint": "...", "checkpoint_sha256": "...", "weights_sha256": "..."},
     "exported": "2026-11-29T22:40:00Z", ...}

plus whatever the exporter adds (``--card-json``): data and command that made the model,
CPU hours, test-split numbers, a description.

Weights hash: ``weights_sha256`` is :func:`models.prepared.weights_hash` of the model as
loaded from the bundle (float32 in memory), the hash every stream made with it records. A
float32 bundle holds the checkpoint's weights bit for bit, so its hash is the checkpoint's
and streams decode with either. A float16 bundle holds the checkpoint's parameters rounded
to float16 (its entropy-coder tables rebuilt for them): other weights, so another hash, and
streams made with the checkpoint do not decode with the bundle (nor the reverse). The card
keeps the checkpoint's hash in ``source.weights_sha256``.

Loading (:func:`load_bundle`) treats both files as untrusted, as checkpoints are: the card
is size-limited and checked field by field, the weights file must have the sha256 its card
states, every array's header (name, dtype, shape) is checked against the architecture built
on fake tensors (:func:`models.checkpoint.check_config`) before any data is read, members
must be stored uncompressed with exactly the bytes their header implies (so a file never
makes us allocate more than its size), and the loaded model must hash to the card's
``weights_sha256``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cloud3d.atomic import atomic_path, atomic_write_text
from cloud3d.errors import Cloud3dError
from cloud3d.provenance import sha256_file, utc_stamp
from cloud3d.untrusted import loads_json, open_regular, quote, read_regular
from models.checkpoint import build_model, check_arch, check_config, load_checkpoint
from models.latent_model import LatentModel, model_qualities
from models.prepared import weights_hash

__all__ = ["CARD_FORMAT", "MAX_CARD_BYTES", "NAME_RE", "export_bundle", "load_bundle",
           "read_card"]

CARD_FORMAT = "cloud3d-model-card"
CARD_VERSION = 1
#: largest model card read (bytes)
MAX_CARD_BYTES = 1 << 20
#: deepest JSON nesting of a card (the exporter's own cards use 4 levels)
MAX_CARD_DEPTH = 32
#: longest lambda ladder a card may list: a stream names quality indices 0..254
MAX_LADDER = 255
#: what a model name may be (it names files): lower-case letters, digits, ``. _ -``
NAME_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
#: card fields the exporter sets; ``--card-json`` may not override them
RESERVED = ("format", "format_version", "name", "arch", "config", "weights_file",
            "weights_file_sha256", "weights_dtype", "weights_sha256", "qualities", "lambdas",
            "source", "exported")
_DTYPES = {"float16": np.float16, "float32": np.float32}
_FLOAT16_MAX = float(np.finfo(np.float16).max)


def check_name(name: str) -> str:
    """``name`` if it is a valid model name (see :data:`NAME_RE`), else Cloud3dError."""
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise Cloud3dError(f"model name {quote(name)} must be 1-64 lower-case letters, digits or . _ - "
                           "(starting with a letter or digit)")
    return name


def _hex64(card: dict[str, Any], key: str, source: str) -> str:
    v = card.get(key)
    if not isinstance(v, str) or not re.fullmatch(r"[0-9a-f]{64}", v):
        raise Cloud3dError(f"{source}: card field {key!r} must be 64 lower-case hex digits")
    return v


def read_card(path: str | os.PathLike) -> dict[str, Any]:
    """The model card at ``path`` (``NAME.json``), checked; Cloud3dError naming the file and
    the defect for anything else. The weights file is not opened."""
    p = Path(path)
    src = str(p)
    try:
        card = loads_json(read_regular(p, MAX_CARD_BYTES, "model card"), src, MAX_CARD_DEPTH)
    except Cloud3dError as exc:
        raise Cloud3dError(f"{exc}: not a model card") from None
    if not isinstance(card, dict) or card.get("format") != CARD_FORMAT:
        raise Cloud3dError(f"{src} is not a cloud3d model card (format {CARD_FORMAT!r})")
    if card.get("format_version") != CARD_VERSION:
        raise Cloud3dError(f"{src}: model card version {quote(card.get('format_version'))} is not "
                           f"supported (this cloud3d reads {CARD_VERSION})")
    name = card.get("name")
    if name != p.stem:
        raise Cloud3dError(f"{src}: card names the model {quote(name)}, its file is {p.name}")
    check_name(name)
    if not isinstance(card.get("arch"), str) or not isinstance(card.get("config"), dict):
        raise Cloud3dError(f"{src}: card needs an 'arch' name and a 'config' object")
    check_arch(card["arch"], src, " (made by a newer cloud3d, or forged)")
    for where, ladder in (("lambdas", card.get("lambdas")),
                          ("config lambdas", card["config"].get("lambdas"))):
        if isinstance(ladder, list) and len(ladder) > MAX_LADDER:
            raise Cloud3dError(f"{src}: card field {where} lists {len(ladder)} values, more "
                               f"than the {MAX_LADDER} qualities a stream can name")
    if card.get("weights_file") != f"{name}.npz":
        raise Cloud3dError(f"{src}: card field 'weights_file' must be {name}.npz")
    if not isinstance(card.get("weights_dtype"), str) or card["weights_dtype"] not in _DTYPES:
        raise Cloud3dError(f"{src}: card field 'weights_dtype' must be one of {', '.join(_DTYPES)}")
    q = card.get("qualities")
    if isinstance(q, bool) or not isinstance(q, int) or not 0 <= q <= 255:
        raise Cloud3dError(f"{src}: card field 'qualities' must be an int 0..255")
    _hex64(card, "weights_sha256", src)
    _hex64(card, "weights_file_sha256", src)
    return card


def _npz_headers(path: Path) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """``{name: (shape, dtype)}`` of every array in the ``.npz`` at ``path``, read from the
    ``.npy`` headers only; Cloud3dError for anything but stored, plain, exactly sized arrays."""
    src = str(path)
    out: dict[str, tuple[tuple[int, ...], np.dtype]] = {}
    try:
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                if not info.filename.endswith(".npy") or info.filename[:-4] in out:
                    raise Cloud3dError(f"{src}: unexpected or repeated member {quote(info.filename)}")
                if info.compress_type != zipfile.ZIP_STORED or info.flag_bits & 0x1:
                    raise Cloud3dError(f"{src}: member {quote(info.filename)} is compressed or "
                                       "encrypted; bundled weights are stored plain")
                with zf.open(info) as f:
                    version = np.lib.format.read_magic(f)
                    if version == (1, 0):
                        shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
                    elif version == (2, 0):
                        shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
                    else:
                        raise ValueError(f"npy format {version}")
                    head = f.tell() if f.seekable() else None
                if dtype.hasobject or fortran or dtype.kind not in "fiu":
                    raise Cloud3dError(f"{src}: member {quote(info.filename)} is not a plain "
                                       "C-ordered numeric array")
                n = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
                if head is None or info.file_size != head + n or info.compress_size != info.file_size:
                    raise Cloud3dError(f"{src}: member {quote(info.filename)} holds "
                                       f"{info.file_size} bytes, its header implies {n} of data")
                out[info.filename[:-4]] = (tuple(int(d) for d in shape), dtype)
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        raise Cloud3dError(f"{src} is not a readable weights file ({str(exc)[:120]}): corrupt, "
                           "truncated or not an .npz") from None
    return out


def _read_weights(path: Path, arch: str, config: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The state dict in ``path``, each tensor in the dtype of ``arch``'s own (float16
    parameters widen exactly to float32); every check before any data is read."""
    src = str(path)
    heads = _npz_headers(path)
    specs = check_config(arch, config, {k: shape for k, (shape, _) in heads.items()}, src)
    for key, (_, dtype) in heads.items():
        want = specs[key][1]
        if want.is_floating_point:  # float16 or float32 storage of a float tensor
            ok = dtype.kind == "f" and dtype.itemsize in (2, 4)
        else:  # integer buffers (entropy-coder tables) exactly as the model holds them
            ok = dtype == torch.empty(0, dtype=want).numpy().dtype
        if not ok or dtype.byteorder == ">":
            raise Cloud3dError(f"{src}: {key} is stored as {dtype}, the model's tensor is {want}")
    out = {}
    try:
        with np.load(path, allow_pickle=False) as z:
            for key in heads:
                out[key] = torch.from_numpy(np.array(z[key])).to(specs[key][1])
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        raise Cloud3dError(f"cannot read {src}: {str(exc)[:120]}") from None
    return out


def load_bundle(card_path: str | os.PathLike,
                device: str | torch.device = "cpu") -> tuple[LatentModel, dict[str, Any]]:
    """The model of the card at ``card_path`` and the card: ``(model, card)``, the model in
    eval mode on ``device``. Every check of the module docstring; Cloud3dError on a defect."""
    card_path = Path(card_path)
    card = read_card(card_path)
    npz = card_path.with_name(card["weights_file"])
    with open_regular(npz, "weights file") as f:  # not a device or a pipe put in its place
        got = hashlib.file_digest(f, "sha256").hexdigest()
    if got != card["weights_file_sha256"]:
        raise Cloud3dError(f"{npz} is not the weights file its card {card_path.name} names "
                           f"(sha256 {got[:12]}, card {card['weights_file_sha256'][:12]}): "
                           "corrupt or replaced; export the model again")
    arch, config = card["arch"], card["config"]
    model = build_model(arch, config, _read_weights(npz, arch, config), str(npz))
    h = weights_hash(model).hex()
    if h != card["weights_sha256"]:
        raise Cloud3dError(f"{npz}: its weights hash to {h[:12]}, the card says "
                           f"{card['weights_sha256'][:12]} (forged or mismatched card)")
    if model_qualities(model) != card["qualities"]:
        raise Cloud3dError(f"{card_path}: card says {card['qualities']} qualities, the model has "
                           f"{model_qualities(model)}")
    return model.to(device), card


def _round_to_float16(model: LatentModel, source: str) -> None:
    """Round every float parameter of ``model`` to float16 values (kept as float32) and
    rebuild its entropy-coder tables for them; Cloud3dError if a value does not fit."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if not p.is_floating_point():
                continue
            big = float(p.detach().abs().max()) if p.numel() else 0.0
            if not big <= _FLOAT16_MAX:
                raise Cloud3dError(f"{source}: parameter {name} holds {big:g}, beyond float16: "
                                   "export with --dtype float32")
            p.copy_(p.detach().half().float())
    model.update(force=True)


def export_bundle(checkpoint: str | os.PathLike, name: str, out_dir: str | os.PathLike,
                  card_extra: dict[str, Any] | None = None,
                  dtype: str = "float16") -> Path:
    """Write ``out_dir/NAME.npz`` and ``out_dir/NAME.json`` from a ``cloud3d train``
    checkpoint; returns the card's path. The card holds the checkpoint's metadata
    (``app``, ``step``, ``metrics``, ``dataset``, ``train_config``...) and ``card_extra``
    (which may not set the fields of :data:`RESERVED`). The written bundle is loaded back
    and must reproduce the recorded hash before this returns.
    """
    check_name(name)
    if dtype not in _DTYPES:
        raise Cloud3dError(f"dtype must be one of {', '.join(_DTYPES)}, got {dtype!r}")
    extra = dict(card_extra or {})
    clash = sorted(set(extra) & set(RESERVED))
    if clash:
        raise Cloud3dError(f"card fields {', '.join(clash)} are set by the export, not by the "
                           "extra card JSON")
    src = str(checkpoint)
    if not Path(src).is_file():
        raise Cloud3dError(f"no such checkpoint: {src}")
    # hashed before and after loading: a run still training rewrites best.pt (atomically),
    # and the card must name the file whose weights it holds
    checkpoint_sha = sha256_file(src)
    model, meta = load_checkpoint(checkpoint)
    if sha256_file(src) != checkpoint_sha:
        raise Cloud3dError(f"{src} changed while it was read (is a training run still writing "
                           "it?): copy it first, or export once the run is done")
    source_hash = weights_hash(model).hex()
    if dtype == "float16":
        _round_to_float16(model, src)
    params = {k for k, _ in model.named_parameters()}
    arrays = {}
    for k, v in model.state_dict().items():
        a = v.detach().cpu().numpy()
        arrays[k] = a.astype(np.float16) if dtype == "float16" and k in params else a
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    npz, card_path = out / f"{name}.npz", out / f"{name}.json"
    with atomic_path(npz, suffix=".tmp") as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)
    card = {
        **{k: v for k, v in meta.items() if k not in ("arch", "config") and k not in RESERVED},
        **extra,
        "format": CARD_FORMAT, "format_version": CARD_VERSION, "name": name,
        "arch": model.arch, "config": model.config(),
        "weights_file": npz.name, "weights_file_sha256": sha256_file(npz),
        "weights_dtype": dtype, "weights_sha256": weights_hash(model).hex(),
        "qualities": model_qualities(model), "lambdas": list(getattr(model, "lambdas", ()) or ()),
        "source": {"checkpoint": os.path.abspath(src), "checkpoint_sha256": checkpoint_sha,
                   "weights_sha256": source_hash},
        "exported": utc_stamp(),
    }
    atomic_write_text(card_path, json.dumps(card, indent=1, sort_keys=True) + "\n")
    _, back = load_bundle(card_path)  # the file as users will read it, every check included
    assert back["weights_sha256"] == card["weights_sha256"]
    return card_path
