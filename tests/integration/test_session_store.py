"""The session store on both engines: SQLite (default) and a real Postgres (several instances)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from enforcer.audit.sessions import (
    SessionEnd,
    SessionRecorder,
    SessionStart,
    SessionStore,
    StatementEvent,
    StoreError,
)

pytestmark = pytest.mark.integration


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: Any, tmp_path: Path, upstream: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    if request.param == "sqlite":
        yield str(tmp_path / "sessions.sqlite")
        return
    db = f"audit_{int(time.time() * 1000) % 10**9}"
    upstream.pg.psql(f"CREATE DATABASE {db} OWNER app")
    monkeypatch.setenv("PGPASSWORD", upstream.app_password)  # never in the URL
    try:
        yield f"postgresql://app@127.0.0.1:{upstream.port}/{db}"
    finally:
        upstream.pg.psql(f"DROP DATABASE {db} WITH (FORCE)")


def start(sid: str, subject: str, at: float, connection: str = "demo") -> SessionStart:
    return SessionStart(
        sid,
        "gw-w0",
        at,
        subject,
        "pgwarden",
        ["agents"],
        subject,
        connection,
        "demo",
        "127.0.0.1:5000",
        "psql",
        True,
    )


def test_write_list_show(store_url: str) -> None:
    now = time.time()
    store = SessionStore(store_url)
    store.write(
        [
            start("aaaa1111", "ci-bot", now - 7200),
            StatementEvent(
                "aaaa1111",
                1,
                now - 7199,
                1.5,
                "simple",
                "SELECT 1",
                "d1",
                "allow",
                command_tag="SELECT 1",
                rows=1,
                columns=["x"],
                result_rows=[["1"]],
            ),
            SessionEnd("aaaa1111", now - 7000, "client terminated"),
            start("bbbb2222", "agent-7", now - 60, connection="prod"),
            StatementEvent(
                "bbbb2222",
                1,
                now - 59,
                0.1,
                "simple",
                "DROP TABLE t",
                "d2",
                "deny",
                reasons=["no DDL"],
                forwarded=False,
                error_sqlstate="42501",
                error_message="denied",
            ),
            StatementEvent(
                "bbbb2222",
                2,
                now - 58,
                0.3,
                "extended",
                "SELECT 1/0",
                "d3",
                "allow",
                error_sqlstate="22012",
                error_message="division by zero",
            ),
            start("cccc3333", "ci-bot", now - 30),
        ]
    )
    # A retried batch (the recorder retries after a failure) does not duplicate anything.
    store.write([start("cccc3333", "ci-bot", now - 30)])
    assert [s["id"] for s in store.list_sessions()] == ["cccc3333", "bbbb2222", "aaaa1111"]
    assert [s["id"] for s in store.list_sessions(identity="ci-bot")] == ["cccc3333", "aaaa1111"]
    assert [s["id"] for s in store.list_sessions(connection="prod")] == ["bbbb2222"]
    assert [s["id"] for s in store.list_sessions(since=now - 3600)] == ["cccc3333", "bbbb2222"]
    assert [s["id"] for s in store.list_sessions(until=now - 3600)] == ["aaaa1111"]
    assert [s["id"] for s in store.list_sessions(outcome="refused")] == ["bbbb2222"]
    assert [s["id"] for s in store.list_sessions(outcome="error")] == ["bbbb2222"]
    assert [s["id"] for s in store.list_sessions(outcome="ok")] == ["cccc3333", "aaaa1111"]
    with pytest.raises(StoreError, match="unknown outcome"):
        store.list_sessions(outcome="weird")
    listed = store.list_sessions(identity="agent-7")[0]
    assert (listed["statements"], listed["refused"], listed["errors"]) == (2, 1, 1)
    assert listed["groups"] == ["agents"] and listed["tls"] is True

    session = store.get_session("aaaa")
    assert session is not None and session["end_reason"] == "client terminated"
    (st,) = store.statements("aaaa1111")
    assert (st["sql"], st["rows"], st["result_rows"], st["forwarded"]) == ("SELECT 1", 1, [["1"]], True)
    assert store.get_session("zzzz") is None
    store.write([start("aaaa9999", "x", now)])
    with pytest.raises(StoreError, match="ambiguous"):
        store.get_session("aaaa")
    store.close()


def test_recorder_writes_in_the_background_and_flushes_on_close(store_url: str) -> None:
    recorder = SessionRecorder(SessionStore(store_url), flush_interval=0.05)
    now = time.time()
    recorder.put(start("dddd4444", "ci-bot", now))
    for i in range(1, 1201):
        recorder.put(StatementEvent("dddd4444", i, now + i / 1000, 0.1, "simple", f"SELECT {i}"))
    recorder.put(SessionEnd("dddd4444", now + 2, "client terminated"))
    recorder.close()
    store = SessionStore(store_url)
    assert len(store.statements("dddd4444")) == 1200
    session = store.get_session("dddd4444")
    assert session is not None and session["ended_at"] == pytest.approx(now + 2)
    store.close()


def test_unreachable_store_is_a_clear_error() -> None:
    with pytest.raises(StoreError, match=r"cannot open the session store postgresql://127\.0\.0\.1:1/x"):
        SessionStore("postgresql://someone@127.0.0.1:1/x?connect_timeout=2")
