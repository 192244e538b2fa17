"""Planning a bench: parse the ``--codec`` specs, then one :class:`Task` per (image, codec, quality).

A task is a frozen dataclass that travels unchanged to a local process pool or a
Dask cluster (it pickles by reference to its codec class). Its first fields are
the store's :class:`baselines.bench.store.TaskRecord`, the columns of a result row known
before the task runs, so the list of those columns lives in one place; the rest is
what a worker needs to run it (the codec class, the image path, ``--keep``, the time
limit, and with ``--send-images`` the image bytes).

Planning reads no image: it needs the manifest rows only (path, sha256, size), the
codecs' versions and provenance, and for a codec whose quality is a file (a learned
codec's checkpoint) that file's sha256.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from baselines.bench.store import KEY_COLUMNS, TaskRecord, canonical_json
from baselines.codecs.base import Codec, CodecUnavailable
from baselines.codecs.registry import CodecSpec, parse_codec_spec
from cloud3d.errors import Cloud3dError
from cloud3d.provenance import sha256_file

#: a result key: ``(image_sha256, codec, codec_version, params)`` (:data:`baselines.bench.store.KEY_COLUMNS`)
TaskKey = tuple[str, str, str, str]


@dataclass(frozen=True)
class Task(TaskRecord):
    """One (image, codec, quality) to run: the :class:`TaskRecord` columns plus what a worker needs.

    ``abspath`` is the image file as the workers see it; ``keep`` the ``--keep`` folder
    (absolute) or ``None``; ``timeout`` seconds per task or ``None``; ``image_bytes``
    the PNG file's bytes when they are sent along (``--send-images``), else ``None``.
    """

    codec_cls: type[Codec]
    abspath: str
    keep: str | None = None
    timeout: float | None = None
    image_bytes: bytes | None = field(default=None, repr=False)

    @property
    def key(self) -> TaskKey:
        """The task's result key in the store."""
        return tuple(getattr(self, c) for c in KEY_COLUMNS)  # type: ignore[return-value]

    @property
    def pixels(self) -> int:
        """Width x height of the image."""
        return int(self.width) * int(self.height)


# ----------------------------------------------------------------------------------------
# specs
# ----------------------------------------------------------------------------------------
def spec_label(spec: CodecSpec) -> str:
    """Curve label: the spec's ``label=``, else the codec's curve name
    (:meth:`Codec.curve_label`) plus the options that differ from the defaults."""
    if spec.label:
        return spec.label
    changed = {k: v for k, v in spec.options.items() if spec.cls.options_defaults.get(k) != v}
    base = spec.cls.curve_label(spec.qualities)
    return base + "".join(f";{k}={v}" for k, v in sorted(changed.items()))


def resolve_specs(specs: Sequence[str | CodecSpec]) -> list[CodecSpec]:
    """Parse every spec and check every codec is available, before any work starts.

    Raises :class:`Cloud3dError` listing all problems at once (unknown codec,
    bad parameter, unavailable codec with its install hint).
    """
    if not specs:
        raise Cloud3dError("no --codec given; list codecs with `cloud3d codecs`")
    out: list[CodecSpec] = []
    problems: list[str] = []
    for s in specs:
        if isinstance(s, CodecSpec):
            out.append(s)
            continue
        try:
            out.append(parse_codec_spec(s))
        except ValueError as exc:
            problems.append(f"--codec {s!r}: {exc}")
    for spec in out:
        reason = spec.make().availability()  # per instance: honours bpg_dir/vtm_dir options
        if reason:
            problems.append(f"codec {spec.cls.name} is not available here: {reason}")
    if problems:
        raise Cloud3dError("; ".join(problems))
    return out


# ----------------------------------------------------------------------------------------
# tasks
# ----------------------------------------------------------------------------------------
def plan_tasks(
    images: Iterable[dict[str, Any]],
    specs: Sequence[CodecSpec],
    dataset: str,
    keep: str | None = None,
    timeout: float | None = None,
) -> list[Task]:
    """One :class:`Task` per (image row, spec, quality); ``images`` are manifest rows with ``abspath``.

    Byte-identical images (same sha256) give the same result key, so they are
    planned once: the row carries the first path, and means are over distinct images.
    Raises :class:`Cloud3dError` when a codec cannot tell its version here.
    """
    codecs: list[tuple[CodecSpec, Codec, str]] = []
    for spec in specs:
        codec = spec.make()
        try:
            version = codec.version()
            codec.provenance()  # fails now, not in every task, when a binary cannot be hashed
        except CodecUnavailable as exc:
            raise Cloud3dError(f"codec {spec.cls.name} is not available here: {exc}") from None
        codecs.append((spec, codec, version))
    labels = [spec_label(spec) for spec, *_ in codecs]  # once: a learned label reads checkpoints
    tasks: list[Task] = []
    seen: set[TaskKey] = set()
    for img in images:
        for (spec, codec, version), label in zip(codecs, labels, strict=True):
            qname = spec.quality_param or spec.cls.quality.name
            for q in spec.qualities:
                pdict: dict[str, Any] = {"options": codec.options, qname: q, **codec.quality_key(q)}
                if isinstance(q, str) and Path(q).is_file():
                    # quality given by a file (a learned codec's checkpoint): absolute path for the
                    # workers, and its hash in the key so a retrained file is benchmarked again
                    q = str(Path(q).resolve())
                    pdict = {"options": codec.options, qname: q, f"{qname}_sha256": _file_sha(q)}
                if spec.label:
                    # a row belongs to one curve: the same setting under a chosen label is
                    # its own result (default labels follow from what the key already holds)
                    pdict["label"] = spec.label
                task = Task(
                    image_sha256=img["sha256"], codec=spec.cls.name, codec_version=version,
                    params=canonical_json(pdict), codec_label=label, quality_param=qname,
                    quality=q, options=dict(codec.options), dataset=dataset, relpath=img["path"],
                    app=img["app"], resolution=img["resolution"], split=img["split"],
                    width=int(img["width"]), height=int(img["height"]),
                    codec_cls=spec.cls, abspath=img["abspath"], keep=keep, timeout=timeout,
                )
                if task.key in seen:
                    continue  # byte-identical image already planned (first path wins)
                seen.add(task.key)
                tasks.append(task)
    return tasks


def _file_sha(path: str, _cache: dict[str, str] = {}) -> str:  # noqa: B006 - per-process memo
    if path not in _cache:
        _cache[path] = sha256_file(path)
    return _cache[path]


def quality_slug(q: Any) -> str:
    """Short text for a quality value in file names: ``40``, ``0.5``, or for a file its stem and
    the first 8 hex digits of the sha256 of its path (``best-1f0c3a9e``), so that two checkpoints
    both called ``best.pt`` never share a ``--keep`` folder."""
    if isinstance(q, int | float) and not isinstance(q, bool):
        return f"{q:g}"
    path = Path(str(q))
    return f"{path.stem.replace(' ', '_')}-{hashlib.sha256(str(path).encode()).hexdigest()[:8]}"


def label_slug(label: str) -> str:
    """A curve label as a file or folder name: ``bpg;subsampling=420`` -> ``bpg_subsampling-420``."""
    return label.replace(";", "_").replace("=", "-").replace("/", "-").replace(" ", "")
