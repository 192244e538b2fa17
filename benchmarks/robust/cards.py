"""Hostile model folders and cards, read the way ``cloud3d models`` and ``decompress`` do.

Each case builds a user model folder (``CLOUD3D_MODEL_DIR``) holding a real bundle
(``real.json`` + ``real.npz`` of a small seeded model) and one hostile piece drawn from
``(seed, i)``, then lists the folder (:func:`models.library.scan_models`) and loads the
hostile card (:func:`models.bundle.load_bundle`), or, for a hash clash, decodes a real
stream of the real model without naming it (:func:`models.library.model_for_stream`),
which must find the real model past the broken card. Variants (:data:`VARIANTS`):

* the card a symbolic link to ``/dev/zero`` or ``/dev/urandom``, a named pipe, a folder, a
  symbolic-link loop;
* JSON nested 33 to 100,000 levels deep, a card above the size limit (sparse or padded),
  ``NaN``/``Infinity``, bytes that are not UTF-8;
* an unknown architecture (short or 10,000 characters), a lambda ladder of 256 to 100,000
  values, any card field set to another JSON type;
* the weights file a link to ``/dev/zero``, a pipe, truncated, random bytes;
* a broken card (no weights, garbage, a device or a pipe for weights) sorting first and
  claiming the real model's weights hash.

Every problem ``scan_models`` reports must be one line of at most 1,000 characters; a
longer one, or a clash that blocks decoding, fails the case as a traceback (a defect).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

VARIANTS = ("zero", "urandom", "fifo", "folder", "loop", "deep", "big", "nan", "bytes", "arch",
            "ladder", "types", "weights", "clash")
#: longest problem line scan_models may report
MAX_LINE = 1000


@dataclass
class Context:
    work: Path
    card: dict  # the real card
    npz: bytes  # the real weights file
    stream: bytes  # a real stream of the real model
    whash: bytes
    arch: str


def setup(work: Path, seed: int) -> Context:
    """A real bundle and a stream of it under ``work/cards-setup`` (a few seconds)."""
    import torch

    from benchmarks.robust.streams import frame
    from models.architectures import create_model
    from models.bundle import export_bundle, load_bundle
    from models.checkpoint import save_checkpoint
    from models.codec import compress_image

    base = work / "cards-setup"
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir(parents=True)
    torch.manual_seed(seed)
    ck = save_checkpoint(base / "m.pt", create_model("bmshj2018-hyperprior", N=16, M=24), {})
    card = export_bundle(ck, "real", base / "models", dtype="float32")
    model, meta = load_bundle(card)
    return Context(work, meta, card.with_name("real.npz").read_bytes(),
                   compress_image(model, frame(seed)), bytes.fromhex(meta["weights_sha256"]),
                   meta["arch"])


def _folder(ctx: Context, i: int) -> Path:
    d = ctx.work / "cards-cases" / str(i % 64)
    shutil.rmtree(d, ignore_errors=True)
    (d / "user").mkdir(parents=True)
    (d / "user" / "real.npz").write_bytes(ctx.npz)
    (d / "user" / "real.json").write_text(json.dumps(ctx.card))
    return d


def _hostile_weights(path: Path, rng, npz: bytes) -> str:
    how = ["zero", "fifo", "truncated", "random", "missing"][int(rng.integers(0, 5))]
    path.unlink(missing_ok=True)
    if how == "zero":
        path.symlink_to("/dev/zero")
    elif how == "fifo":
        os.mkfifo(path)
    elif how == "truncated":
        path.write_bytes(npz[: int(rng.integers(0, len(npz)))])
    elif how == "random":
        path.write_bytes(rng.integers(0, 256, int(rng.integers(0, 4096)), dtype=np.uint8).tobytes())
    return how


def _card_case(ctx: Context, rng, d: Path, v: str) -> tuple[str, Path]:
    """Make the hostile piece of variant ``v`` in ``d/user``; returns (detail, card path)."""
    user = d / "user"
    card = user / "evil.json"
    doc = {**ctx.card, "name": "evil", "weights_file": "evil.npz"}
    (user / "evil.npz").write_bytes(ctx.npz)
    detail = ""
    if v in ("zero", "urandom"):
        card.symlink_to(f"/dev/{v}")
    elif v == "fifo":
        os.mkfifo(card)
    elif v == "folder":
        card.mkdir()
    elif v == "loop":
        card.symlink_to(user / "evil2.json")
        (user / "evil2.json").symlink_to(card)
    elif v == "deep":
        depth = int(rng.choice([33, 65, 1000, 100_000]))
        detail = str(depth)
        card.write_text(json.dumps(doc)[:-1] + ', "x": ' + "[" * depth + "]" * depth + "}")
    elif v == "big":
        if rng.integers(0, 2):
            with open(card, "wb") as f:
                f.truncate((1 << 20) + int(rng.integers(1, 1 << 20)))
        else:
            card.write_text(json.dumps({**doc, "pad": " " * (1 << 20)}))
    elif v == "nan":
        key = str(rng.choice(["qualities", "step", "cpu_hours", "x"]))
        detail = key
        card.write_text(json.dumps({**doc, key: float(rng.choice([np.nan, np.inf, -np.inf]))}))
    elif v == "bytes":
        card.write_bytes(rng.integers(0, 256, int(rng.integers(1, 4096)), dtype=np.uint8).tobytes())
    elif v == "arch":
        doc["arch"] = "x" * int(rng.choice([1, 10_000])) if rng.integers(0, 2) else "nope-arch"
        card.write_text(json.dumps(doc))
    elif v == "ladder":
        n = int(rng.choice([256, 1000, 100_000]))
        detail = str(n)
        if rng.integers(0, 2):
            doc["lambdas"] = list(range(n))
        else:
            doc["config"] = {**doc["config"], "lambdas": list(range(1, n + 1))}
        card.write_text(json.dumps(doc))
    elif v == "types":
        key = str(rng.choice(sorted(doc)))
        detail = key
        doc[key] = [None, "x", [], {}, 1.5, True, -1, 2**70, "é" * 5000][int(rng.integers(0, 9))]
        card.write_text(json.dumps(doc))
    elif v == "weights":
        card.write_text(json.dumps(doc))
        detail = _hostile_weights(user / "evil.npz", rng, ctx.npz)
    return detail, card


def case(ctx: Context, seed: int, i: int) -> tuple[str, Callable[[], object]]:
    """Case ``i``: ``(name, call)`` (see the module docstring)."""
    name, call, _, _ = case_with_argv(ctx, seed, i)
    return name, call


def case_with_argv(ctx: Context, seed: int, i: int
                   ) -> tuple[str, Callable[[], object], list, dict[str, str]]:
    """Case ``i``: ``(name, library call, cloud3d arguments, environment)``; the command
    decodes the real stream without ``-m`` (the folder is scanned, the clash met)."""
    from models.bundle import load_bundle
    from models.library import model_for_stream, scan_models

    rng = np.random.default_rng([seed, i, 3])
    d = _folder(ctx, i)
    v = VARIANTS[i % len(VARIANTS)]
    user = d / "user"
    stream = d / "s.c3d"
    stream.write_bytes(ctx.stream)
    if v == "clash":  # "aaa" sorts before "real" and claims its hash
        (user / "aaa.json").write_text(json.dumps({**ctx.card, "name": "aaa",
                                                   "weights_file": "aaa.npz"}))
        detail = _hostile_weights(user / "aaa.npz", rng, ctx.npz)
        card = user / "aaa.json"
    else:
        detail, card = _card_case(ctx, rng, d, v)

    def call():
        _, problems = scan_models(user)
        long = [p for p in problems if "\n" in p or len(p) > MAX_LINE]
        if long:
            raise AssertionError(f"a problem line of {len(long[0])} characters or several lines")
        if v == "clash":
            _, entry = model_for_stream(ctx.whash, ctx.arch, str(stream), user_dir=user)
            if entry.name != "real":
                raise AssertionError(f"decoded with {entry.name}, not the real model")
        else:
            load_bundle(card)

    argv = ["decompress", stream, "-o", d / "out.png"]
    return f"cards/{v}{'/' + detail if detail else ''}", call, argv, {"CLOUD3D_MODEL_DIR": str(user)}
