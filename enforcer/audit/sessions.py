"""Session recording: what each session did, stored for auditors to list, show and replay.

Owns: the session store (SQLite file by default, Postgres when several gateway
instances share one) with its schema, the recorder that writes to it off the
event loop, and the read API used by the CLI and the web page.
Never: blocks the event loop on the store; drops an event silently (a store
that fails is retried and the failure logged until it recovers or the gateway stops).

Statements are recorded when they complete (or are refused), with the decision
that was taken, timing, command tag, row count and error. Result rows are kept
only when configured, as the client received them (masked), bounded per
statement and per session.
"""

from __future__ import annotations

import json
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from enforcer.store_url import describe_store_url, is_postgres_url

log = logging.getLogger("pgwarden.audit")

_SESSION_COLUMNS = (
    "id",
    "instance",
    "started_at",
    "ended_at",
    "subject",
    "issuer",
    "groups",
    "user_name",
    "connection",
    "database",
    "client_addr",
    "application_name",
    "tls",
    "protocol",
    "end_reason",
)
_STATEMENT_COLUMNS = (
    "session_id",
    "seq",
    "started_at",
    "duration_ms",
    "protocol",
    "sql",
    "params",
    "decision_id",
    "action",
    "reasons",
    "forwarded",
    "command_tag",
    "rows",
    "error_sqlstate",
    "error_message",
    "columns",
    "result_rows",
    "rows_truncated",
    "masked",
)


class StoreError(Exception):
    """The session store cannot be opened or read."""


@dataclass
class SessionStart:
    id: str
    instance: str
    started_at: float
    subject: str
    issuer: str
    groups: list[str]
    user_name: str
    connection: str
    database: str
    client_addr: str
    application_name: str
    tls: bool
    protocol: str = "postgres"


@dataclass
class StatementEvent:
    session_id: str
    seq: int
    started_at: float
    duration_ms: float
    protocol: str
    sql: str
    decision_id: str = ""
    action: str = ""
    reasons: list[str] = field(default_factory=list)
    forwarded: bool = True
    command_tag: str = ""
    rows: int | None = None
    error_sqlstate: str = ""
    error_message: str = ""
    params: list[str | None] | None = None
    columns: list[str] | None = None
    result_rows: list[list[str | None]] | None = None
    rows_truncated: bool = False
    #: Columns masked in the results, ``schema.table.column:strategy`` (never values).
    masked: list[str] = field(default_factory=list)


@dataclass
class SessionEnd:
    id: str
    ended_at: float
    end_reason: str


class _DB(Protocol):
    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any: ...
    def commit(self) -> None: ...
    def close(self) -> None: ...


class SessionStore:
    """One store of sessions and statements: ``sqlite:PATH`` (or a path) or ``postgresql://...``."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.is_postgres = is_postgres_url(url)
        self._sessions = "pgwarden.sessions" if self.is_postgres else "sessions"
        self._statements = "pgwarden.statements" if self.is_postgres else "statements"
        try:
            self._db = self._connect()
            self._migrate()
        except Exception as exc:
            raise StoreError(f"cannot open the session store {self.describe()}: {exc}") from None

    def describe(self) -> str:
        return describe_store_url(self.url)

    # ------------------------------------------------------------------ connection
    def _connect(self) -> _DB:
        if self.is_postgres:
            import psycopg

            return psycopg.connect(self.url, autocommit=False)
        path = Path(self.url.removeprefix("sqlite:"))
        path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(path, timeout=30, check_same_thread=False, isolation_level="DEFERRED")
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        return db

    def _sql(self, sql: str) -> str:
        sql = sql.replace("{sessions}", self._sessions).replace("{statements}", self._statements)
        return sql.replace("?", "%s") if self.is_postgres else sql

    def _exec(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self._db.execute(self._sql(sql), params)

    def _migrate(self) -> None:
        real = "DOUBLE PRECISION" if self.is_postgres else "REAL"
        integer = "BIGINT" if self.is_postgres else "INTEGER"
        if self.is_postgres:
            self._exec("CREATE SCHEMA IF NOT EXISTS pgwarden")
        self._exec(
            f"""CREATE TABLE IF NOT EXISTS {{sessions}} (
                id TEXT PRIMARY KEY, instance TEXT, started_at {real}, ended_at {real},
                subject TEXT, issuer TEXT, groups TEXT, user_name TEXT, connection TEXT,
                database TEXT, client_addr TEXT, application_name TEXT, tls {integer},
                protocol TEXT, end_reason TEXT)"""
        )
        self._exec(
            f"""CREATE TABLE IF NOT EXISTS {{statements}} (
                session_id TEXT NOT NULL, seq {integer} NOT NULL, started_at {real}, duration_ms {real},
                protocol TEXT, sql TEXT, params TEXT, decision_id TEXT, action TEXT, reasons TEXT,
                forwarded {integer}, command_tag TEXT, rows {integer}, error_sqlstate TEXT,
                error_message TEXT, columns TEXT, result_rows TEXT, rows_truncated {integer},
                masked TEXT, PRIMARY KEY (session_id, seq))"""
        )
        self._exec("CREATE INDEX IF NOT EXISTS sessions_started ON {sessions} (started_at)")
        # Stores made by earlier versions: add the columns they lack.
        if self.is_postgres:
            self._exec("ALTER TABLE {statements} ADD COLUMN IF NOT EXISTS masked TEXT")
        else:
            have = {r[1] for r in self._exec("PRAGMA table_info(statements)").fetchall()}
            if "masked" not in have:
                self._exec("ALTER TABLE statements ADD COLUMN masked TEXT")
        self._db.commit()

    def close(self) -> None:
        self._db.close()

    # ------------------------------------------------------------------ writing
    def write(self, items: Iterable[SessionStart | StatementEvent | SessionEnd]) -> None:
        """Write a batch in one transaction (idempotent: a retried batch does not duplicate)."""
        conflict = "ON CONFLICT DO NOTHING"
        statements: list[tuple[Any, ...]] = []
        insert_statements = self._sql(
            f"INSERT INTO {{statements}} ({','.join(_STATEMENT_COLUMNS)}) "
            f"VALUES ({','.join('?' * len(_STATEMENT_COLUMNS))}) {conflict}"
        )

        def flush_statements() -> None:
            # Consecutive statements go in one executemany (order between kinds is kept).
            if statements:
                db: Any = self._db
                if self.is_postgres:
                    with db.cursor() as cur:
                        cur.executemany(insert_statements, statements)
                else:
                    db.executemany(insert_statements, statements)
                statements.clear()

        try:
            for item in items:
                if not isinstance(item, StatementEvent):
                    flush_statements()
                if isinstance(item, SessionStart):
                    row = asdict(item)
                    row["groups"] = json.dumps(row["groups"])
                    row["tls"] = int(row["tls"])
                    cols = [c for c in _SESSION_COLUMNS if c in row]
                    marks = ",".join("?" * len(cols))
                    self._exec(
                        f"INSERT INTO {{sessions}} ({','.join(cols)}) VALUES ({marks}) {conflict}",
                        [row[c] for c in cols],
                    )
                elif isinstance(item, StatementEvent):
                    statements.append(_statement_row(item))
                    continue
                else:
                    self._exec(
                        "UPDATE {sessions} SET ended_at = ?, end_reason = ? WHERE id = ?",
                        [item.ended_at, item.end_reason, item.id],
                    )
            flush_statements()
            self._db.commit()
        except Exception:
            try:
                self._db.close()
            finally:
                self._db = self._connect()
            raise

    # ------------------------------------------------------------------ reading
    def list_sessions(
        self,
        *,
        identity: str | None = None,
        connection: str | None = None,
        since: float | None = None,
        until: float | None = None,
        outcome: str | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        """Sessions newest first, with statement counts. ``outcome``: ok, refused or error."""
        where: list[str] = []
        params: list[Any] = []
        if identity:
            where.append("s.subject = ?")
            params.append(identity)
        if connection:
            where.append("s.connection = ?")
            params.append(connection)
        if since is not None:
            where.append("s.started_at >= ?")
            params.append(since)
        if until is not None:
            where.append("s.started_at < ?")
            params.append(until)
        having = {
            None: "",
            "ok": " HAVING SUM(CASE WHEN t.forwarded = 0 OR t.error_sqlstate <> '' THEN 1 ELSE 0 END) = 0",
            "refused": " HAVING SUM(CASE WHEN t.forwarded = 0 THEN 1 ELSE 0 END) > 0",
            "error": (
                " HAVING SUM(CASE WHEN t.forwarded = 1 AND t.error_sqlstate <> '' THEN 1 ELSE 0 END) > 0"
            ),
        }
        if outcome not in having:
            raise StoreError(f"unknown outcome {outcome!r}: use ok, refused or error")
        cols = ", ".join(f"s.{c}" for c in _SESSION_COLUMNS)
        sql = (
            f"SELECT {cols}, COUNT(t.seq) AS statements, "
            "COALESCE(SUM(CASE WHEN t.forwarded = 0 THEN 1 ELSE 0 END), 0) AS refused, "
            "COALESCE(SUM(CASE WHEN t.forwarded = 1 AND t.error_sqlstate <> '' THEN 1 ELSE 0 END), 0) "
            "AS errors FROM {sessions} s LEFT JOIN {statements} t ON t.session_id = s.id"
            + (" WHERE " + " AND ".join(where) if where else "")
            + f" GROUP BY {cols}"
            + having[outcome]
            + " ORDER BY s.started_at DESC LIMIT ?"
        )
        rows = self._exec(sql, [*params, limit]).fetchall()
        self._db.commit()
        names = [*_SESSION_COLUMNS, "statements", "refused", "errors"]
        return [_session_row(dict(zip(names, r, strict=True))) for r in rows]

    def get_session(self, session_id: str) -> dict[str, Any] | None:
        found = [s for s in self._matching(session_id)]
        if len(found) > 1:
            raise StoreError(f"session id prefix {session_id!r} is ambiguous; give more characters")
        return found[0] if found else None

    def _matching(self, session_id: str) -> list[dict[str, Any]]:
        cols = ", ".join(_SESSION_COLUMNS)
        rows = self._exec(
            f"SELECT {cols} FROM {{sessions}} WHERE id LIKE ? ORDER BY started_at LIMIT 2",
            [session_id.replace("%", "").replace("_", "") + "%"],
        ).fetchall()
        self._db.commit()
        return [_session_row(dict(zip(_SESSION_COLUMNS, r, strict=True))) for r in rows]

    def statements(self, session_id: str) -> list[dict[str, Any]]:
        rows = self._exec(
            f"SELECT {', '.join(_STATEMENT_COLUMNS)} FROM {{statements}} WHERE session_id = ? ORDER BY seq",
            [session_id],
        ).fetchall()
        self._db.commit()
        out = []
        for r in rows:
            row = dict(zip(_STATEMENT_COLUMNS, r, strict=True))
            for key in ("reasons", "params", "columns", "result_rows", "masked"):
                row[key] = None if row[key] is None else json.loads(row[key])
            row["masked"] = row["masked"] or []
            row["forwarded"] = bool(row["forwarded"])
            row["rows_truncated"] = bool(row["rows_truncated"])
            out.append(row)
        return out


def _json_or_none(value: Any) -> str | None:
    return None if value is None else json.dumps(value, separators=(",", ":"))


def _statement_row(e: StatementEvent) -> tuple[Any, ...]:
    """The row of one statement in _STATEMENT_COLUMNS order (no dataclasses.asdict: it deep-copies)."""
    return (
        e.session_id,
        e.seq,
        e.started_at,
        e.duration_ms,
        e.protocol,
        e.sql,
        _json_or_none(e.params),
        e.decision_id,
        e.action,
        _json_or_none(e.reasons),
        int(e.forwarded),
        e.command_tag,
        e.rows,
        e.error_sqlstate,
        e.error_message,
        _json_or_none(e.columns),
        _json_or_none(e.result_rows),
        int(e.rows_truncated),
        _json_or_none(e.masked),
    )


def _session_row(row: dict[str, Any]) -> dict[str, Any]:
    row["groups"] = json.loads(row["groups"] or "[]")
    row["tls"] = bool(row["tls"])
    return row


_Item = SessionStart | StatementEvent | SessionEnd


class SessionRecorder:
    """Queues session events from the event loop and writes them in batches on a thread."""

    def __init__(self, store: SessionStore, *, flush_interval: float = 0.2) -> None:
        self.store = store
        self.flush_interval = flush_interval
        self._queue: queue.SimpleQueue[_Item] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="pgwarden-session-recorder", daemon=True)
        self._failing_since: float | None = None
        self._stop = threading.Event()
        self._thread.start()

    @property
    def failing(self) -> bool:
        """True while the store refuses writes (events are held and retried)."""
        return self._failing_since is not None

    def put(self, item: SessionStart | StatementEvent | SessionEnd) -> None:
        self._queue.put(item)

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued, then stop."""
        self._stop.set()
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.error(
                "session recorder could not flush within %.0fs; some session events are not stored",
                timeout,
                extra={"event": "session_store_failed"},
            )
        else:
            self.store.close()

    def _run(self) -> None:
        # Wake every flush_interval and take everything queued, rather than on every event: a
        # thread that wakes per statement competes with the event loop for the GIL on each one,
        # which costs the relay far more than the writes themselves.
        pending: list[SessionStart | StatementEvent | SessionEnd] = []
        stopping = False
        while True:
            if not stopping:
                stopping = self._stop.wait(self.flush_interval)
            while True:
                try:
                    pending.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            if pending:
                try:
                    self.store.write(pending)
                    pending = []
                    if self._failing_since is not None:
                        log.warning("session store recovered", extra={"event": "session_store_recovered"})
                        self._failing_since = None
                except Exception as exc:
                    now = time.monotonic()
                    if self._failing_since is None:
                        self._failing_since = now
                        log.error(
                            "cannot write to the session store %s: %s (retrying; %d events held)",
                            self.store.describe(),
                            exc,
                            len(pending),
                            extra={"event": "session_store_failed"},
                        )
                    time.sleep(min(1.0, self.flush_interval * 5))
                    continue
            if stopping and not pending and self._queue.empty():
                return
