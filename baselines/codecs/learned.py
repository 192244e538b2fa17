"""Learned codecs (``models/``) as a baselines codec: ``learned:checkpoint=a.pt,b.pt``.

The "quality" of a learned codec is fixed by its trained weights, so the quality parameter
is a checkpoint path (one rate point per checkpoint, e.g. one per lambda). Paths may not
contain ``,`` or ``;`` (the spec separators). Options: ``device`` (auto|cpu|cuda),
``tile`` (whole or a multiple of the model's stride), ``coder`` (ans|lzma), ``fp16``,
``overfit`` (steps of latent overfitting, :mod:`models.overfit`, with each checkpoint's own
lambda; 0 = the plain encoder).
The curve is named ``learned-{arch}-{app}`` from the checkpoints' metadata (``app`` is
``all`` for a general model), or by ``label=``.

The bytes reported are the complete ``.c3d`` container (header, CRC and all), and
``details`` splits the time into ``network_s`` and ``entropy_s`` (with ``overfit``: the
steps, the seconds spent refining, which stream was kept and the plain stream's bytes; the
encode time then covers the whole overfitting encoder). :meth:`decode` finds the
model by the weights hash stored in the stream, among the checkpoints this instance has
loaded (the runner always encodes before it decodes with the same instance).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from baselines.codecs.base import Codec, CodecError, DecodeResult, EncodeResult, QualityParam
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
        if self.options["overfit"] and self.options["fp16"]:
            raise ValueError("learned: overfit refines in float32; it does not combine with fp16")
        self._models: dict[str, Any] = {}  # checkpoint path -> model
        self._lambdas: dict[str, Any] = {}  # checkpoint path -> its recorded lambda
        self._by_hash: dict[bytes, Any] = {}

    def __getstate__(self) -> dict[str, Any]:  # models are reloaded lazily in workers
        return {**self.__dict__, "_models": {}, "_by_hash": {}, "_lambdas": {}}

    @classmethod
    def curve_label(cls, qualities: list[Any]) -> str:
        """``learned-{arch}-{app}`` when every checkpoint records the same architecture and
        training app (``all`` for a general model), so that app-specific and general models
        make separate curves; plain ``learned`` otherwise (name curves with ``label=``)."""
        from models.checkpoint import read_checkpoint

        kinds = set()
        for q in qualities:
            try:
                meta = read_checkpoint(str(q))["meta"]
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
        plain = () if self.options["overfit"] else ("overfit",)
        return (f"cloud3d models c3d-v1, compressai {v('compressai')}, torch {v('torch')} "
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

    def _model(self, checkpoint: str) -> Any:
        if checkpoint not in self._models:
            from models.checkpoint import load_checkpoint
            from models.codec import prepare, weights_hash

            # prepared once per checkpoint: inference copy, float64 nets, tables, hash
            loaded, meta = load_checkpoint(checkpoint)
            model = prepare(loaded, self.options["device"])
            self._models[checkpoint] = model
            self._lambdas[checkpoint] = meta.get("lambda")
            self._by_hash[weights_hash(model)] = model
        return self._models[checkpoint]

    def encode_timed(self, rgb: np.ndarray, quality: Any) -> EncodeResult:
        from models.codec import compress_image_timed

        model = self._model(str(quality))
        if self.options["overfit"]:
            return self._encode_overfit(model, rgb, str(quality))
        t0 = time.perf_counter()
        r = compress_image_timed(model, rgb, tile=self.options["tile"], coder=self.options["coder"],
                                 device=self.options["device"], fp16=bool(self.options["fp16"]))
        total = time.perf_counter() - t0
        return EncodeResult(data=r.data, encode_s=total, details={
            "network_s": r.network_s, "entropy_s": r.entropy_s, "tile": r.tile or "whole",
            "arch": model.arch, "coder": self.options["coder"]})

    def _encode_overfit(self, model: Any, rgb: np.ndarray, checkpoint: str) -> EncodeResult:
        from models.overfit import compress_overfit

        lmbda = self._lambdas.get(checkpoint)
        if not isinstance(lmbda, int | float) or isinstance(lmbda, bool):
            lmbda = None  # overfit_lambda says what is missing
        try:
            r = compress_overfit(model, rgb, self.options["overfit"], lmbda=lmbda,
                                 tile=self.options["tile"], coder=self.options["coder"],
                                 device=self.options["device"])
        except Cloud3dError as exc:
            raise CodecError(f"{checkpoint}: {exc}") from None
        return EncodeResult(data=r.data, encode_s=r.encode_s, details={
            "overfit": r.steps, "overfit_s": r.refine_s, "overfit_kept": r.kept,
            "plain_bytes": r.plain.bytes if r.plain else len(r.data), "lambda": r.lmbda,
            "greedy_moves": r.greedy_moves, "tile": self.options["tile"], "arch": model.arch,
            "coder": self.options["coder"]})

    def decode_timed(self, data: bytes) -> DecodeResult:
        from models.bitstream import parse
        from models.codec import decompress_image_timed

        s = parse(data)
        model = self._by_hash.get(s.weights_hash)
        if model is None:
            raise CodecError(
                f"stream made by weights {s.weights_hash.hex()[:12]} ({s.arch}), which this codec "
                "instance has not loaded: encode with the checkpoint first"
            )
        t0 = time.perf_counter()
        r = decompress_image_timed(model, data, device=self.options["device"], fp16=bool(self.options["fp16"]))
        total = time.perf_counter() - t0
        return DecodeResult(rgb=r.rgb, decode_s=total,
                            details={"network_s": r.network_s, "entropy_s": r.entropy_s})


CODECS = [LearnedCodec]
