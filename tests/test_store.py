"""The SQLite results store: schema, unique key, upsert of retried tasks, runs, read-only errors."""

from __future__ import annotations

import sqlite3

import pytest

from baselines.bench.store import KEY_COLUMNS, ResultsStore, canonical_json
from cloud3d.errors import Cloud3dError


def _row(**kw):
    base = {"image_sha256": "ab" * 32, "codec": "jpeg", "codec_version": "v1",
            "params": canonical_json({"q": 20, "options": {"b": 1, "a": 2}}), "status": "ok",
            "bytes": 100, "bpp": 0.5, "details": {"encode": {"x": 1}}, "relpath": "test/a-720p/0.png"}
    base.update(kw)
    return base


def test_rollback_journal_unique_key_and_upsert(tmp_path):
    path = tmp_path / "sub" / "r.sqlite"
    with ResultsStore(path) as st:
        # not WAL: its -wal/-shm files stayed beside the results of a killed bench (issue 23)
        assert st.conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
        st.put(_row(status="failed", error="boom", bytes=None))
        first_id = st.conn.execute("SELECT id FROM results").fetchone()[0]
        st.put(_row())  # retry of the same key replaces the failed row in place
        st.put(_row(params=canonical_json({"q": 40, "options": {"a": 2, "b": 1}})))
        assert len(st.results()) == 2
        df = st.results("ok")
        assert list(df["id"])[0] == first_id and df["error"].isna().all()
        assert st.statuses()[("ab" * 32, "jpeg", "v1", '{"options":{"a":2,"b":1},"q":20}')] == "ok"
        with pytest.raises(KeyError, match="unknown result columns"):
            st.put(_row(colour="red"))
        rid = st.start_run("t0", "cloud3d bench x", {"numpy": "1"}, {"cores": 2})
        st.finish_run(rid, "t1", {"ok": 2})
        runs = st.runs()
        assert runs.loc[0, "machine"] == {"cores": 2} and runs.loc[0, "summary"] == {"ok": 2}
    con = sqlite3.connect(path)
    with pytest.raises(sqlite3.IntegrityError):
        cols = ", ".join(KEY_COLUMNS) + ", status"
        con.execute(f"INSERT INTO results ({cols}) VALUES (?, ?, ?, ?, 'ok')",
                    ("ab" * 32, "jpeg", "v1", '{"options":{"a":2,"b":1},"q":20}'))
    assert con.execute("SELECT details FROM results WHERE id=1").fetchone()[0] == '{"encode":{"x":1}}'
    con.close()


def test_readonly_errors(tmp_path):
    with pytest.raises(Cloud3dError, match="results file not found"):
        ResultsStore(tmp_path / "missing.sqlite", readonly=True)
    bad = tmp_path / "bad.sqlite"
    bad.write_bytes(b"this is not sqlite at all" * 100)
    with pytest.raises(Cloud3dError, match="not a usable results database"):
        ResultsStore(bad, readonly=True)
    other = tmp_path / "other.sqlite"
    sqlite3.connect(other).execute("CREATE TABLE t (x)").connection.close()
    with pytest.raises(Cloud3dError, match="no results table"):
        ResultsStore(other, readonly=True)
