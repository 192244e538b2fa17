"""The benchmark results store: one SQLite file per study.

Two tables:

``results``
    one row per task (image x codec x parameters), unique on
    ``(image_sha256, codec, codec_version, params)``. ``params`` is canonical
    JSON (sorted keys, no spaces) of the quality value and the codec's full
    options (defaults included), so the same work always has the same key.
    Numbers are plain columns (bytes, bpp, PSNR...), codec extras and
    provenance are JSON text. ``status`` is ``ok`` or ``failed`` (``error``
    then holds the message; timeouts start with ``timeout``).
``runs``
    one row per ``cloud3d bench`` invocation: command line, versions, machine
    description (CPU model, cores, RAM, torch/CUDA when present), summary.

The file uses SQLite's rollback journal (``journal_mode=DELETE``); only the main
process writes, one committed transaction per finished task, so a killed run loses
at most the task in flight and re-running resumes from the rows present. Not WAL:
a WAL database keeps ``-wal`` and ``-shm`` files beside it while it is open, and a
killed run left them there; the rollback journal exists only inside a write (a
kill during one leaves it, and the next open rolls the write back and removes it).
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import pandas as pd

from cloud3d.errors import Cloud3dError


def _column(sql: str) -> Any:
    """A :class:`TaskRecord` field stored as a ``results`` column of SQLite type ``sql``."""
    return field(metadata={"sql": sql})


@dataclass(frozen=True)
class TaskRecord:
    """The part of a ``results`` row known before its task runs: what is measured, on what.

    These fields are the first columns of the ``results`` table (:data:`RESULT_COLUMNS` is
    built from them), and :class:`baselines.bench.tasks.Task` extends them with what a worker
    needs, so the list is written once. ``params`` is canonical JSON (see
    :func:`canonical_json`); ``quality`` is a number, or a file path for codecs whose
    quality is a file (a learned codec's checkpoint); ``options`` holds every codec
    option, defaults included (stored as JSON). ``relpath`` is relative to ``dataset``;
    ``width``/``height`` are pixels of the original image.
    """

    image_sha256: str = _column("TEXT NOT NULL")
    codec: str = _column("TEXT NOT NULL")
    codec_version: str = _column("TEXT NOT NULL")
    params: str = _column("TEXT NOT NULL")
    codec_label: str = _column("TEXT")
    quality_param: str = _column("TEXT")
    quality: float | str = _column("REAL")
    options: dict[str, Any] = _column("TEXT")
    dataset: str = _column("TEXT")
    relpath: str = _column("TEXT")
    app: str = _column("TEXT")
    resolution: str = _column("TEXT")
    split: str = _column("TEXT")
    width: int = _column("INTEGER")
    height: int = _column("INTEGER")

    def record(self) -> dict[str, Any]:
        """The :class:`TaskRecord` fields as a dict: the start of a result row."""
        return {f.name: getattr(self, f.name) for f in fields(TaskRecord)}


#: columns a worker fills in when the task has run, with SQLite types
MEASURED_COLUMNS: dict[str, str] = {
    "bytes": "INTEGER",
    "bpp": "REAL",
    "psnr_rgb": "REAL",
    "mse": "REAL",
    "ms_ssim": "REAL",
    "ms_ssim_db": "REAL",
    "encode_s": "REAL",
    "decode_s": "REAL",
    "convert_enc_s": "REAL",
    "convert_dec_s": "REAL",
    "details": "TEXT",
    "status": "TEXT NOT NULL",
    "error": "TEXT",
    "provenance": "TEXT",
    "host": "TEXT",
    "run_id": "INTEGER",
    "started": "TEXT",
    "finished": "TEXT",
}
#: result columns (besides the integer ``id``), in table order, with SQLite types
RESULT_COLUMNS: dict[str, str] = {
    **{f.name: f.metadata["sql"] for f in fields(TaskRecord)},
    **MEASURED_COLUMNS,
}
KEY_COLUMNS = ("image_sha256", "codec", "codec_version", "params")
JSON_COLUMNS = ("details", "provenance", "options")

RUN_COLUMNS: dict[str, str] = {
    "started": "TEXT",
    "finished": "TEXT",
    "command": "TEXT",
    "versions": "TEXT",
    "machine": "TEXT",
    "summary": "TEXT",
}


def canonical_json(obj: Any) -> str:
    """Canonical JSON text (sorted keys, compact separators) used for keys and JSON columns."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


class ResultsStore:
    """A results SQLite file. Use as a context manager or call :meth:`close`.

    Only one process should write at a time (the runner's main process);
    readers may open the same file concurrently (a write waits up to 30 s for them).
    """

    def __init__(self, path: str | os.PathLike, readonly: bool = False) -> None:
        self.path = Path(path)
        if readonly and not self.path.is_file():
            raise Cloud3dError(f"results file not found: {self.path} (run `cloud3d bench ... --results {self.path}`)")
        if not readonly:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise Cloud3dError(f"cannot create folder for {self.path}: {exc.strerror}") from None
        try:
            if readonly:
                self.conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=30)
            else:
                self.conn = sqlite3.connect(self.path, timeout=30)
                self.conn.execute("PRAGMA journal_mode=DELETE")  # also converts a WAL file
                self._create()
            self.conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.DatabaseError as exc:
            raise Cloud3dError(f"{self.path} is not a usable results database: {exc}") from None
        if readonly:
            tables = {r[0] for r in self.conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if "results" not in tables:
                raise Cloud3dError(f"{self.path} has no results table: is it a `cloud3d bench` results file?")

    def _create(self) -> None:
        cols = ",\n  ".join(f"{k} {v}" for k, v in RESULT_COLUMNS.items())
        run_cols = ",\n  ".join(f"{k} {v}" for k, v in RUN_COLUMNS.items())
        with self.conn:
            self.conn.execute(
                f"CREATE TABLE IF NOT EXISTS results (\n  id INTEGER PRIMARY KEY,\n  {cols},\n"
                f"  UNIQUE ({', '.join(KEY_COLUMNS)})\n)"
            )
            self.conn.execute(f"CREATE TABLE IF NOT EXISTS runs (\n  id INTEGER PRIMARY KEY,\n  {run_cols}\n)")

    # -- context manager -------------------------------------------------------------
    def __enter__(self) -> ResultsStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.conn.close()

    # -- runs ------------------------------------------------------------------------
    def start_run(self, started: str, command: str, versions: dict, machine: dict) -> int:
        """Insert a ``runs`` row and return its id."""
        with self.conn:
            cur = self.conn.execute(
                "INSERT INTO runs (started, command, versions, machine) VALUES (?, ?, ?, ?)",
                (started, command, canonical_json(versions), canonical_json(machine)),
            )
        return int(cur.lastrowid)

    def finish_run(self, run_id: int, finished: str, summary: dict) -> None:
        with self.conn:
            self.conn.execute(
                "UPDATE runs SET finished=?, summary=? WHERE id=?", (finished, canonical_json(summary), run_id)
            )

    def runs(self) -> pd.DataFrame:
        """The ``runs`` table with JSON columns parsed into dicts."""
        df = pd.read_sql_query("SELECT * FROM runs ORDER BY id", self.conn)
        for c in ("versions", "machine", "summary"):
            df[c] = [json.loads(v) if isinstance(v, str) and v else {} for v in df[c]]
        return df

    # -- results ---------------------------------------------------------------------
    def statuses(self) -> dict[tuple[str, str, str, str], str]:
        """``{key: status}`` for every stored task (key = :data:`KEY_COLUMNS`)."""
        cur = self.conn.execute(f"SELECT {', '.join(KEY_COLUMNS)}, status FROM results")
        return {tuple(r[:4]): r[4] for r in cur}

    def put(self, row: dict[str, Any]) -> None:
        """Insert or replace (same key) one result row and commit it.

        Dict/list values of JSON columns are serialised; unknown keys are an error.
        """
        unknown = set(row) - set(RESULT_COLUMNS)
        if unknown:
            raise KeyError(f"unknown result columns: {sorted(unknown)}")
        values = {k: row.get(k) for k in RESULT_COLUMNS}
        for c in JSON_COLUMNS:
            if values[c] is not None and not isinstance(values[c], str):
                values[c] = canonical_json(values[c])
        cols = list(values)
        update = ", ".join(f"{c}=excluded.{c}" for c in cols if c not in KEY_COLUMNS)
        sql = (
            f"INSERT INTO results ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))}) "
            f"ON CONFLICT ({', '.join(KEY_COLUMNS)}) DO UPDATE SET {update}"
        )
        with self.conn:
            self.conn.execute(sql, [values[c] for c in cols])

    def results(self, status: str | Iterable[str] | None = None,
                columns: Iterable[str] | None = None) -> pd.DataFrame:
        """Results as a DataFrame (``status`` filters, e.g. ``"ok"``; ``columns`` picks
        columns, default all); JSON columns stay text."""
        cols = ["*"] if columns is None else list(columns)
        unknown = set(cols) - set(RESULT_COLUMNS) - {"id", "*"}
        if unknown:
            raise KeyError(f"unknown result columns: {sorted(unknown)}")
        sql = f"SELECT {', '.join(cols)} FROM results"
        args: list[str] = []
        if status is not None:
            wanted = [status] if isinstance(status, str) else list(status)
            sql += f" WHERE status IN ({', '.join('?' * len(wanted))})"
            args = wanted
        return pd.read_sql_query(sql + " ORDER BY id", self.conn, params=args)
