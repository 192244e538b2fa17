"""Learned codecs (``models/``) as a baselines codec.

    learned:checkpoint=a.pt,b.pt            one rate point per fixed-rate checkpoint
    learned:checkpoint=vr.pt                a variable-rate checkpoint: all its qualities
    learned:checkpoint=vr.pt@0,vr.pt@3      chosen quality indexes
    learned:model=supertuxkart              a bundled or user model (`cloud3d models`), by name
    learned:model=supertuxkart@2,general@2  chosen quality indexes

A rate point is a model plus, for a variable-rate model, a quality index (``REF@Q``); a
variable-rate model given without ``@Q`` stands for every one of its qualities. Paths may
not contain ``,`` or ``;`` (the spec separators). Options: ``device`` (auto|cpu|cuda),
``tile`` (whole or a multiple of the model's stride), ``coder`` (ans|lzma), ``fp16``,
``overfit`` (steps of latent overfitting, :mod:`models.overfit`, with the model's own lambda,
or the quality's lambda for a variable-rate model; 0 = the plain encoder), ``threads`` (CPU
threads for the transforms and the rANS substreams; 0 = the cores available, torch's own
setting for the transforms) and ``substreams`` (K, the most substreams per latent level;
0 = the default, 4). Neither changes the decoded image.
The curve is named ``learned-{name}`` for a named model, ``learned-{arch}-{app}`` from the
checkpoints' metadata (``app`` is ``all`` for a general model), or by ``label=``.

The bytes reported are the complete ``.c3d`` container (header, CRC and all), and
``details`` splits the time into ``network_s`` and ``entropy_s`` (with ``overfit``: the
steps, the seconds spent refining, which stream was kept and the plain stream's bytes; the
encode time then covers the whole overfitting encoder). :meth:`decode` finds the
model by the weights hash stored in the stream: among the models this instance has loaded
(the runner encodes before it decodes with the same instance), else among the bundled and
user models (:func:`models.library.find_by_hash`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from baselines.codecs.base import (
    Codec,
    CodecError,
    DecodeResult,
    EncodeResult,
    QualityParam,
    check_int,
)
from cloud3d.errors import Cloud3dError


@dataclass(frozen=True)
class CheckpointParam(QualityParam):
    """A quality "parameter" that is the path of an existing checkpoint file."""

    def check(self, value: Any) -> str:  # type: ignore[override]
        p = Path(str(value))
        if not p.is_file():
            raise ValueError(f"{self.name}={value}: no such checkpoint file ({self.meaning})")
        return str(p)


class LearnedCodec(Codec):
    name: ClassVar[str] = "learned"
    description: ClassVar[str] = (
        "learned codec from `cloud3d train` (Coarse-to-Fine family / compressai references)"
    )
    quality: ClassVar[QualityParam] = CheckpointParam(
        "checkpoint", "path of a .pt checkpoint from `cloud3d train`", 0, 0, integer=False
    )
    options_defaults: ClassVar[dict[str, Any]] = {
        "device": "auto", "tile": "whole", "coder": "ans", "fp16": False, "overfit": 0,
        "threads": 0, "substreams": 0,
    }
    extension: ClassVar[str] = ".c3d"

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        if self.options["coder"] not in ("ans", "lzma"):
            raise ValueError(f"learned: option coder must be ans or lzma, got {self.options['coder']!r}")
        if self.options["device"] not in ("auto", "cpu", "cuda"):
            raise ValueError("learned: option device must be auto, cpu or cuda")
        steps = self.options["overfit"]
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
            raise ValueError(f"learned: option overfit must be a whole number of steps >= 0, "
                             f"got {steps!r}")
        if steps:
            from models.overfit import MAX_STEPS  # torch: only when overfitting is asked for

            if steps > MAX_STEPS:
                raise ValueError(f"learned: option overfit must be at most {MAX_STEPS}, "
                                 f"got {steps}")
        self.options["threads"] = check_int(self.name, "threads", self.options["threads"], 0, 1024)
        self.options["substreams"] = check_int(self.name, "substreams", self.options["substreams"],
                                               0, 64)
        if self.options["overfit"] and self.options["fp16"]:
            raise ValueError("learned: overfit refines in float32; it does not combine with fp16")
        self._models: dict[str, Any] = {}  # checkpoint path or model name -> prepared model
        self._lambdas: dict[str, Any] = {}  # the same -> its recorded lambda (fixed-rate)
        self._by_hash: dict[bytes, Any] = {}

    def __getstate__(self) -> dict[str, Any]:  # models are reloaded lazily in workers
        return {**self.__dict__, "_models": {}, "_by_hash": {}, "_lambdas": {}}

    @classmethod
    def parse_qualities(cls, key: str, values: list[str]) -> tuple[str, list[Any]] | None:
        """``checkpoint=`` and ``model=`` values (see module docstring) as rate points:
        ``PATH`` (fixed-rate checkpoint), ``/abs/PATH@Q`` or ``NAME[@Q]``."""
        if key not in ("checkpoint", "model"):
            raise ValueError(f"{cls.name}: expected '{cls.name}:checkpoint=A.pt,B.pt' or "
                             f"'{cls.name}:model=NAME[@Q],...', got {key!r}")
        points: list[Any] = []
        for value in values:
            ref, q = _split_point(value)
            try:
                n = _qualities_of(key, ref)
            except Cloud3dError as exc:
                raise ValueError(str(exc)) from None
            if key == "checkpoint":
                ref = cls.quality.check(ref) if not n else str(Path(ref).resolve())
            if q is not None and not 0 <= q < n:
                have = f"qualities 0..{n - 1}" if n else "no qualities (fixed-rate)"
                raise ValueError(f"{cls.name}: {value}: {ref} has {have}")
            if q is not None:
                points.append(f"{ref}@{q}")
            else:
                points.extend([f"{ref}@{i}" for i in range(n)] if n else [ref])
        return key, points

    def quality_key(self, quality: Any) -> dict[str, Any]:
        """The weights behind a named model or a ``PATH@Q`` rate point (a plain checkpoint
        path is hashed by the planner)."""
        ref, q = _split_point(str(quality))
        if Path(ref).is_file():
            from cloud3d.provenance import sha256_file

            return {} if q is None else {"checkpoint_sha256": sha256_file(ref)}
        from models.library import find_model

        try:
            return {"weights_sha256": find_model(ref).card["weights_sha256"]}
        except Cloud3dError:
            return {}

    @classmethod
    def curve_label(cls, qualities: list[Any]) -> str:
        """``learned-{name}`` when every point is of one named model; ``learned-{arch}-{app}``
        when every checkpoint records the same architecture and training app (``all`` for a
        general model), so that app-specific and general models make separate curves; plain
        ``learned`` otherwise (name curves with ``label=``)."""
        from models.checkpoint import read_checkpoint

        refs = {_split_point(str(q))[0] for q in qualities}
        if len(refs) == 1 and not Path(next(iter(refs))).is_file():
            return f"{cls.name}-{refs.pop()}"
        kinds = set()
        for ref in refs:
            try:
                meta = read_checkpoint(ref)["meta"]
            except Cloud3dError:
                return cls.name
            kinds.add((meta.get("arch"), meta.get("app")))
        arch, app = kinds.pop() if len(kinds) == 1 else (None, None)
        return f"{cls.name}-{arch}-{app}" if arch and app else cls.name

    def availability(self) -> str | None:
        import importlib.util

        # find_spec, not import: importing torch takes seconds and `cloud3d codecs` should not
        missing = [m for m in ("torch", "compressai") if importlib.util.find_spec(m) is None]
        if missing:
            return f"{' and '.join(missing)} not installed (pip install torch compressai)"
        return None

    def version(self) -> str:
        # package metadata, not imports: `cloud3d codecs` lists versions without loading torch
        from importlib.metadata import PackageNotFoundError
        from importlib.metadata import version as dist_version

        def v(name: str) -> str:
            try:
                return dist_version(name)
            except PackageNotFoundError:
                return "missing"

        # overfit=0 is the plain encoder: left out, so results stored before the option
        # existed still match
        # left out at their defaults (threads, substreams: container v3 came with them)
        plain = tuple(k for k in ("overfit", "threads", "substreams") if not self.options[k])
        container = "c3d-v3" if self.options["coder"] == "ans" else "c3d-v1"
        return (f"cloud3d models {container}, compressai {v('compressai')}, torch {v('torch')} "
                f"{self.options_text(exclude=plain)}")

    def provenance(self) -> dict[str, Any]:
        out: dict[str, Any] = {"checkpoints": {p: self._hash_hex(m) for p, m in self._models.items()}}
        if self.options["overfit"]:
            from models.overfit import DEFAULT_GREEDY_ROUNDS, DEFAULT_LR

            out["overfit"] = {"steps": self.options["overfit"], "lr": DEFAULT_LR,
                              "greedy_rounds": DEFAULT_GREEDY_ROUNDS,
                              "lambdas": {p: self._lambdas.get(p) for p in self._models}}
        return out

    @staticmethod
    def _hash_hex(model: Any) -> str:
        from models.codec import weights_hash

        return weights_hash(model).hex()

    def _keep(self, ref: str, model: Any, lmbda: Any = None) -> Any:
        from models.codec import prepare, weights_hash

        # prepared once per model: inference copy, float64 nets, tables, hash
        model = prepare(model, self.options["device"])
        self._models[ref] = model
        self._lambdas[ref] = lmbda
        self._by_hash[weights_hash(model)] = model
        return model

    def _model(self, ref: str) -> Any:
        if ref not in self._models:
            from models.library import open_model

            try:
                model, info = open_model(ref)
                self._keep(ref, model, (info.get("meta") or {}).get("lambda"))
            except Cloud3dError as exc:
                raise CodecError(str(exc)) from None
        return self._models[ref]

    def encode_timed(self, rgb: np.ndarray, quality: Any) -> EncodeResult:
        from models.codec import compress_image_timed

        ref, q = _split_point(str(quality))
        model = self._model(ref)
        if self.options["overfit"]:
            return self._encode_overfit(model, rgb, ref, q)
        t0 = time.perf_counter()
        r = compress_image_timed(model, rgb, tile=self.options["tile"], coder=self.options["coder"],
                                 device=self.options["device"], fp16=bool(self.options["fp16"]),
                                 quality=q, threads=self.options["threads"] or None,
                                 substreams_k=self.options["substreams"] or None)
        total = time.perf_counter() - t0
        return EncodeResult(data=r.data, encode_s=total, details={
            "network_s": r.network_s, "entropy_s": r.entropy_s, "container_s": r.container_s,
            "tile": r.tile or "whole",
            "arch": model.arch, "coder": self.options["coder"], "quality_index": q})

    def _encode_overfit(self, model: Any, rgb: np.ndarray, checkpoint: str,
                        quality: int | None) -> EncodeResult:
        from models.overfit import compress_overfit

        lmbda = self._lambdas.get(checkpoint)
        if not isinstance(lmbda, int | float) or isinstance(lmbda, bool):
            lmbda = None  # overfit_lambda says what is missing
        try:
            r = compress_overfit(model, rgb, self.options["overfit"], lmbda=lmbda, quality=quality,
                                 tile=self.options["tile"], coder=self.options["coder"],
                                 device=self.options["device"])
        except Cloud3dError as exc:
            raise CodecError(f"{checkpoint}: {exc}") from None
        return EncodeResult(data=r.data, encode_s=r.encode_s, details={
            "overfit": r.steps, "overfit_s": r.refine_s, "overfit_kept": r.kept,
            "plain_bytes": r.plain.bytes if r.plain else len(r.data), "lambda": r.lmbda,
            "greedy_moves": r.greedy_moves, "tile": self.options["tile"], "arch": model.arch,
            "coder": self.options["coder"], "quality_index": quality})

    def decode_timed(self, data: bytes) -> DecodeResult:
        from models.bitstream import parse
        from models.codec import decompress_image_timed
        from models.library import model_for_stream

        s = parse(data)
        model = self._by_hash.get(s.weights_hash)
        if model is None:  # not encoded here: a bundled or user model, by its hash
            try:
                found, entry = model_for_stream(s.weights_hash, s.arch, "stream")
            except Cloud3dError as exc:
                raise CodecError(str(exc)) from None
            model = self._keep(entry.name, found)
        t0 = time.perf_counter()
        r = decompress_image_timed(model, data, device=self.options["device"],
                                   fp16=bool(self.options["fp16"]),
                                   threads=self.options["threads"] or None)
        total = time.perf_counter() - t0
        return DecodeResult(rgb=r.rgb, decode_s=total,
                            details={"network_s": r.network_s, "entropy_s": r.entropy_s,
                                     "container_s": r.container_s})


def _split_point(value: str) -> tuple[str, int | None]:
    """``"REF@Q"`` -> ``(REF, Q)``; anything else (an existing file, no ``@`` followed by
    digits at the end) -> ``(value, None)``."""
    ref, at, q = value.rpartition("@")
    if not at or not q.isdigit() or Path(value).is_file():
        return value, None
    return ref, int(q)


def _qualities_of(key: str, ref: str) -> int:
    """Quality count of the checkpoint (``key == "checkpoint"``) or named model ``ref``."""
    if key == "model":
        from models.library import find_model

        return int(find_model(ref).card["qualities"])
    if not Path(ref).is_file():
        raise Cloud3dError(f"checkpoint={ref}: no such checkpoint file")
    from models.checkpoint import read_checkpoint

    config = read_checkpoint(ref)["meta"].get("config")
    lambdas = config.get("lambdas") if isinstance(config, dict) else None
    return len(lambdas) if isinstance(lambdas, list) else 0


CODECS = [LearnedCodec]
