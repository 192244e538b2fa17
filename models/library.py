"""Where models are found: the bundled models shipped in the package and a user folder.

* bundled: ``models/bundled/NAME.json`` + ``NAME.npz`` (package data, :data:`BUNDLED_DIR`);
* user: :func:`user_model_dir`, the environment variable :data:`MODEL_DIR_ENV`
  (``CLOUD3D_MODEL_DIR``) or else ``$XDG_DATA_HOME/cloud3d/models`` (default
  ``~/.local/share/cloud3d/models``); put bundles made by ``cloud3d models export`` there.

A name means the bundled model when both folders hold it: shipped names are stable, and
``cloud3d models`` flags the user model it hides. :func:`find_by_hash` finds the model a
stream was made with from the weights hash the stream records (``cloud3d decompress``
without ``-m``), reading cards only; the weights are loaded, and checked against the card,
for the one that matches. :func:`open_model` resolves a ``-m`` argument: a checkpoint
path, a card path or a model name.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from cloud3d.errors import Cloud3dError, CodecError
from cloud3d.untrusted import quote
from models.bundle import NAME_RE, load_bundle, read_card
from models.latent_model import LatentModel

__all__ = ["BUNDLED_DIR", "MODEL_DIR_ENV", "ModelEntry", "find_by_hash", "find_model",
           "matches_by_hash", "model_for_stream", "open_model", "scan_models", "user_model_dir"]

#: the bundled models shipped with the package
BUNDLED_DIR = Path(__file__).resolve().parent / "bundled"
#: environment variable naming the user model folder
MODEL_DIR_ENV = "CLOUD3D_MODEL_DIR"


def user_model_dir() -> Path:
    """The user model folder (see module docstring); it need not exist."""
    env = os.environ.get(MODEL_DIR_ENV, "").strip()
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_DATA_HOME", "").strip() or os.path.join("~", ".local", "share")
    return Path(base).expanduser() / "cloud3d" / "models"


@dataclass(frozen=True)
class ModelEntry:
    """One model card found in a folder: ``origin`` is ``"bundled"`` or ``"user"``;
    ``hidden``: a user model with a bundled model's name (the bundled one wins)."""

    name: str
    origin: str
    path: Path
    card: dict[str, Any]
    hidden: bool = False

    def load(self, device: str | torch.device = "cpu") -> LatentModel:
        """The model, every check of :func:`models.bundle.load_bundle` done."""
        return load_bundle(self.path, device)[0]


def scan_models(user_dir: str | os.PathLike | None = None
                ) -> tuple[list[ModelEntry], list[str]]:
    """``(entries, problems)``: every readable card, bundled first then the user folder
    (``user_dir`` or :func:`user_model_dir`), sorted by name; ``problems``: one line per
    card that could not be read (a broken file never hides the others)."""
    entries: list[ModelEntry] = []
    problems: list[str] = []
    seen: set[str] = set()
    folders = [("bundled", BUNDLED_DIR), ("user", Path(user_dir) if user_dir else user_model_dir())]
    for origin, folder in folders:
        try:
            paths = sorted(folder.glob("*.json")) if folder.is_dir() else []
        except OSError as exc:
            problems.append(f"{folder}: {exc.strerror or exc}")
            continue
        for path in paths:
            try:
                card = read_card(path)
            except Cloud3dError as exc:
                problems.append(str(exc))
                continue
            entries.append(ModelEntry(card["name"], origin, path, card, card["name"] in seen))
            seen.add(card["name"])
    return entries, problems


def _known(entries: list[ModelEntry]) -> str:
    names = [e.name for e in entries if not e.hidden]
    return ", ".join(names) if names else "none"


def find_model(name: str, user_dir: str | os.PathLike | None = None) -> ModelEntry:
    """The model called ``name`` (bundled first); Cloud3dError listing the known names."""
    entries, _ = scan_models(user_dir)
    for e in entries:
        if e.name == name and not e.hidden:
            return e
    raise Cloud3dError(f"no model named {quote(name)} (known: {_known(entries)}; user folder "
                       f"{Path(user_dir) if user_dir else user_model_dir()}); `cloud3d models` "
                       "lists them")


def find_by_hash(whash: bytes, user_dir: str | os.PathLike | None = None) -> ModelEntry | None:
    """The first model (bundled first) whose card records weights hash ``whash``, or None."""
    found = matches_by_hash(whash, user_dir)
    return found[0] if found else None


def matches_by_hash(whash: bytes, user_dir: str | os.PathLike | None = None) -> list[ModelEntry]:
    """Every model (bundled first, then by name) whose card records weights hash ``whash``.
    A card only claims a hash: :meth:`ModelEntry.load` checks the weights against it."""
    hexed = whash.hex()
    return [e for e in scan_models(user_dir)[0] if e.card["weights_sha256"] == hexed]


def model_for_stream(whash: bytes, arch: str, source: str,
                     device: str | torch.device = "cpu",
                     user_dir: str | os.PathLike | None = None) -> tuple[LatentModel, ModelEntry]:
    """The bundled or user model a stream was made with (by its weights hash), loaded;
    :class:`CodecError` naming the hash and the folders searched when none matches.

    A card whose bundle does not load (missing or replaced weights, a forged card claiming
    another model's hash) is passed over for the next card claiming the hash; the error
    names the first such card when none loads."""
    folder = Path(user_dir) if user_dir else user_model_dir()
    broken: list[str] = []
    for entry in matches_by_hash(whash, user_dir):
        try:
            return entry.load(device), entry
        except Cloud3dError as exc:
            broken.append(str(exc))
    why = (f"; {len(broken)} card(s) claim it but their bundles do not load (first: "
           f"{broken[0]})" if broken else "")
    raise CodecError(f"{source} was made by a {quote(arch)} model with weights "
                     f"{whash.hex()[:12]}, which matches no bundled model and none in {folder}"
                     f"{why}: pass its checkpoint with -m, or put its bundle in that folder")


def open_model(ref: str, device: str | torch.device = "cpu",
               user_dir: str | os.PathLike | None = None) -> tuple[LatentModel, dict[str, Any]]:
    """A ``-m`` argument as ``(model, info)``: an existing file is a checkpoint (``.pt``) or a
    model card (``.json``); otherwise ``ref`` is a bundled or user model name. ``info``:
    ``{"name", "kind" ("checkpoint"|"bundled"|"user"), "path", "meta"}`` (``meta``: the
    checkpoint's metadata or the card)."""
    from models.checkpoint import load_checkpoint

    p = Path(ref)
    if p.is_file():
        if p.suffix == ".json":
            model, card = load_bundle(p, device)
            return model, {"name": card["name"], "kind": "card", "path": str(p), "meta": card}
        model, meta = load_checkpoint(p, device=device)
        return model, {"name": p.stem, "kind": "checkpoint", "path": str(p), "meta": meta}
    if NAME_RE.fullmatch(ref) and not p.suffix == ".pt":
        e = find_model(ref, user_dir)
        return e.load(device), {"name": e.name, "kind": e.origin, "path": str(e.path),
                                "meta": e.card}
    raise Cloud3dError(f"-m {ref}: no such checkpoint file, and not a model name; "
                       "`cloud3d models` lists the models")
