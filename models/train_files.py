"""What a training run keeps in its folder and where it starts from.

* ``log.csv``: one row per logged step (:data:`LOG_FIELDS`); a resume first drops the rows
  written after the checkpoint it starts from.
* The starting state (:func:`restore`): step 0 for a fresh run (with ``--init``'s weights when
  given), ``last.pt`` for a resumed one, or ``plateau.pt`` when a longer ``--steps`` moved
  the end of a ``plateau`` schedule past a decay that had already begun
  (:mod:`models.train`'s docstring has the schedule rules).

``cfg`` arguments are :class:`models.train.TrainConfig` objects (typed ``Any`` here, so that
this module does not import the one that uses it).
"""

from __future__ import annotations

import csv
import io
import math
import sys
from pathlib import Path
from typing import Any

from cloud3d.atomic import atomic_write_text
from cloud3d.errors import Cloud3dError

#: columns of ``log.csv``
LOG_FIELDS = ["step", "phase", "quality", "lambda", "loss", "bpp", "mse", "psnr", "aux_loss",
              "lr", "elapsed_s", "cpu_s", "gpx"]


def append_log(path: Path, row: dict[str, Any]) -> None:
    """Append ``row`` to the log at ``path`` (header first when the file is new)."""
    new = not path.exists()
    with open(path, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=LOG_FIELDS)
        if new:
            w.writeheader()
        w.writerow({k: row.get(k, "") for k in LOG_FIELDS})


def truncate_log(path: Path, step: int) -> None:
    """Drop log rows after ``step`` (written after the checkpoint a resume starts from); a
    log with older columns is rewritten with :data:`LOG_FIELDS` (missing values empty)."""
    if not path.exists():
        return
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
        header = reader.fieldnames
    keep = [r for r in rows if r.get("step", "").isdigit() and int(r["step"]) <= step]
    if len(keep) == len(rows) and header == LOG_FIELDS:
        return
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=LOG_FIELDS, lineterminator="\r\n")
    w.writeheader()
    w.writerows({k: r.get(k, "") for k in LOG_FIELDS} for r in keep)
    atomic_write_text(path, buf.getvalue())


def check_resume(meta: dict[str, Any], cfg: Any, model: Any, last: Path) -> None:
    """Refuse to resume ``last`` (its metadata ``meta``) with another architecture, app or
    lambda (ladder) than it was trained with."""
    mine = {"arch": cfg.arch, "app": cfg.app}
    if cfg.variable_rate:
        mine["lambdas"] = list(model.lambdas)
        theirs = {**meta, "lambdas": meta.get("config", {}).get("lambdas")}
    else:
        mine["lambda"] = cfg.lmbda
        theirs = meta
    for key, value in mine.items():
        if theirs.get(key) != value:
            raise Cloud3dError(f"{last} was trained with {key}={theirs.get(key)}, not {value}: "
                               "use the original settings or another --out")


def load_init(model: Any, ref: str) -> dict[str, Any]:
    """Copy the weights of ``ref`` (see :func:`models.library.open_model`) into ``model``;
    returns what the checkpoint metadata records of it. Cloud3dError when ``ref`` is another
    architecture or configuration (e.g. another lambda ladder)."""
    from models.checkpoint import load_weights
    from models.library import open_model

    src, info = open_model(ref)
    if src.arch != model.arch or src.config() != model.config():
        raise Cloud3dError(f"--init {ref} is {src.arch} {src.config()}, this run trains "
                           f"{model.arch} {model.config()}: the architecture and its "
                           "configuration must be the same")
    load_weights(model, src.state_dict(), ref)
    meta = info.get("meta") or {}
    return {"ref": ref, "kind": info["kind"], "step": meta.get("step"), "app": meta.get("app"),
            "gpx_seen": meta.get("gpx_seen")}


def restore(cfg: Any, model: Any, opt: Any, aux_opt: Any, out: Path
             ) -> tuple[int, float, float, dict[str, Any] | None]:
    """Load the state a run starts from: ``(step, best_loss, gpx_seen, init_meta)``.

    A fresh run starts at step 0 (from ``cfg.init``'s weights when given). A resumed run
    starts from ``last.pt``, or from ``plateau.pt`` when ``cfg.steps`` moved the end of a
    ``plateau`` schedule past a decay that had already begun (module docstring)."""
    from models.checkpoint import load_weights, read_checkpoint

    last = out / "last.pt"
    if not (cfg.resume and last.exists()):
        init_meta = load_init(model, cfg.init) if cfg.init is not None else None
        gpx = float((init_meta or {}).get("gpx_seen") or 0.0)
        return 0, math.inf, gpx, init_meta
    ck = read_checkpoint(last)
    meta = ck["meta"]
    check_resume(meta, cfg, model, last)
    planned = int(meta.get("steps_total") or cfg.steps)
    old_decay = int(meta.get("decay_start") or planned)  # as that run planned it
    src = last
    if cfg.steps > planned and int(meta["step"]) > old_decay and meta.get("schedule") == "plateau":
        src = out / "plateau.pt"
        if not src.exists():
            raise Cloud3dError(f"{last} is already in its final decay and {src} is missing: "
                               "continue with --init from best.pt in another --out instead")
        ck = read_checkpoint(src)
        meta = ck["meta"]
        if cfg.progress:
            print(f"note: {out} was planned for {planned} steps and had begun its decay: going "
                  f"on from {src.name} (step {meta['step']}) at the constant rate",
                  file=sys.stderr)
    load_weights(model, ck["state_dict"], str(src))
    opt.load_state_dict(ck["optimizer"])
    aux_opt.load_state_dict(ck["aux_optimizer"])
    step = int(meta["step"])
    truncate_log(out / "log.csv", step)
    return (step, float(meta.get("best_loss", math.inf)), float(meta.get("gpx_seen") or 0.0),
            meta.get("init"))
