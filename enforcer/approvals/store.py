"""Approval requests and their store: SQLite by default, Postgres for several gateway instances.

Owns: the approval request record, its states and every transition between
them as one conditional UPDATE, so that two approvers, two gateway processes or
an approver racing a timeout can never both win. An approval is bound to the
identity, connection, exact statement text and parameters (``binding``), and is
single-use: it moves to ``executed`` exactly once.
Never: decides who may approve (the service does); runs anything.

States::

    pending    the client is waiting for a decision
    timed_out  the client stopped waiting; still approvable until expires_at (retry path)
    abandoned  the gateway restarted while the client waited; still approvable (retry path)
    approved   approved while nobody waits: the identical statement, re-sent, runs once
    executed   approved and run (final)
    rejected   (final)
    withdrawn  the client cancelled or disconnected while waiting (final)
    expired    nobody approved it in time (final)
"""

from __future__ import annotations

import hashlib
import json
import secrets
import sqlite3
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from enforcer.store_url import describe_store_url, is_postgres_url

APPROVABLE = ("pending", "timed_out", "abandoned")
#: Postgres stores announce every transition here (payload: the approval id).
NOTIFY_CHANNEL = "pgwarden_approvals"
FINAL = ("executed", "rejected", "withdrawn", "expired")
STATES = (*APPROVABLE, "approved", *FINAL)

_COLUMNS = (
    "id",
    "state",
    "binding",
    "subject",
    "issuer",
    "groups",
    "connection",
    "session_id",
    "instance",
    "protocol",
    "sql",
    "params",
    "reasons",
    "approvers",
    "created_at",
    "wait_until",
    "expires_at",
    "decided_by",
    "decided_at",
    "decision_reason",
    "executed_at",
    "decision_id",
)


class ApprovalStoreError(Exception):
    """The approval store cannot be opened, read or written."""


def new_approval_id() -> str:
    return "apr_" + secrets.token_hex(6)


def binding_of(subject: str, connection: str, sql: str, params: Sequence[str | None] | None) -> str:
    """What an approval is bound to: identity + connection + exact statement + parameters."""
    doc = json.dumps([subject, connection, sql, list(params) if params is not None else None])
    return hashlib.sha256(doc.encode()).hexdigest()


@dataclass
class ApprovalRequest:
    id: str
    state: str
    binding: str
    subject: str
    issuer: str
    groups: list[str]
    connection: str
    session_id: str
    instance: str
    protocol: str
    sql: str
    params: list[str | None] | None
    reasons: list[str]
    approvers: list[str]
    created_at: float
    #: The client waits until then (policy's or config's timeout).
    wait_until: float
    #: The request (and an approval of it) is valid until then.
    expires_at: float
    decided_by: str = ""
    decided_at: float | None = None
    decision_reason: str = ""
    executed_at: float | None = None
    decision_id: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_document(self) -> dict[str, Any]:
        doc = asdict(self)
        doc.pop("extra")
        doc.pop("binding")
        return doc


class ApprovalStore:
    """``sqlite:PATH`` (or a path) or ``postgresql://...``; safe to share between threads."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.is_postgres = is_postgres_url(url)
        self._table = "pgwarden.approvals" if self.is_postgres else "approvals"
        self._lock = threading.Lock()
        try:
            self._db: Any = self._connect()
            self._migrate()
        except Exception as exc:
            raise ApprovalStoreError(f"cannot open the approval store {self.describe()}: {exc}") from None

    def describe(self) -> str:
        return describe_store_url(self.url)

    def _connect(self) -> Any:
        if self.is_postgres:
            import psycopg

            return psycopg.connect(self.url, autocommit=True)
        path = Path(self.url.removeprefix("sqlite:"))
        path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(path, timeout=30, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        return db

    def _sql(self, sql: str) -> str:
        sql = sql.replace("{t}", self._table)
        return sql.replace("?", "%s") if self.is_postgres else sql

    def _run(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            try:
                cur = self._db.execute(self._sql(sql), params)
                rows = cur.fetchall() if cur.description else []
                return [tuple(r) for r in rows]
            except Exception as exc:
                try:
                    self._db.close()
                finally:
                    self._db = self._connect()
                raise ApprovalStoreError(f"approval store {self.describe()}: {exc}") from None

    def _migrate(self) -> None:
        real = "DOUBLE PRECISION" if self.is_postgres else "REAL"
        if self.is_postgres:
            self._run("CREATE SCHEMA IF NOT EXISTS pgwarden")
        self._run(
            f"""CREATE TABLE IF NOT EXISTS {{t}} (
                id TEXT PRIMARY KEY, state TEXT NOT NULL, binding TEXT NOT NULL, subject TEXT, issuer TEXT,
                groups TEXT, connection TEXT, session_id TEXT, instance TEXT, protocol TEXT, sql TEXT,
                params TEXT, reasons TEXT, approvers TEXT, created_at {real}, wait_until {real},
                expires_at {real}, decided_by TEXT, decided_at {real}, decision_reason TEXT,
                executed_at {real}, decision_id TEXT)"""
        )
        self._run("CREATE INDEX IF NOT EXISTS approvals_binding ON {t} (binding, state)")
        self._run("CREATE INDEX IF NOT EXISTS approvals_state ON {t} (state, created_at)")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # ------------------------------------------------------------------ rows
    @staticmethod
    def _row(values: tuple[Any, ...]) -> ApprovalRequest:
        row = dict(zip(_COLUMNS, values, strict=True))
        for key in ("groups", "reasons", "approvers"):
            row[key] = json.loads(row[key] or "[]")
        row["params"] = json.loads(row["params"]) if row["params"] is not None else None
        for key in ("decided_by", "decision_reason", "decision_id"):
            row[key] = row[key] or ""
        return ApprovalRequest(**row)

    def create(self, req: ApprovalRequest) -> None:
        doc = asdict(req)
        doc.pop("extra")
        for key in ("groups", "reasons", "approvers"):
            doc[key] = json.dumps(doc[key])
        doc["params"] = json.dumps(doc["params"]) if doc["params"] is not None else None
        marks = ",".join("?" * len(_COLUMNS))
        self._run(f"INSERT INTO {{t}} ({','.join(_COLUMNS)}) VALUES ({marks})", [doc[c] for c in _COLUMNS])

    def get(self, approval_id: str) -> ApprovalRequest | None:
        rows = self._run(f"SELECT {','.join(_COLUMNS)} FROM {{t}} WHERE id = ?", [approval_id])
        return self._row(rows[0]) if rows else None

    def list_requests(self, states: Sequence[str] | None = None, limit: int = 200) -> list[ApprovalRequest]:
        where, params = "", []
        if states:
            where = f" WHERE state IN ({','.join('?' * len(states))})"
            params = list(states)
        rows = self._run(
            f"SELECT {','.join(_COLUMNS)} FROM {{t}}{where} ORDER BY created_at DESC LIMIT ?",
            [*params, limit],
        )
        return [self._row(r) for r in rows]

    def state_of(self, ids: Sequence[str]) -> dict[str, str]:
        if not ids:
            return {}
        rows = self._run(f"SELECT id, state FROM {{t}} WHERE id IN ({','.join('?' * len(ids))})", list(ids))
        return {r[0]: r[1] for r in rows}

    # ------------------------------------------------------------------ transitions
    def transition(
        self, approval_id: str, from_states: Sequence[str], to_state: str, **fields: Any
    ) -> ApprovalRequest | None:
        """Move one request from one of ``from_states`` to ``to_state``; None if it was not in one.

        The conditional UPDATE is the arbiter of every race (two approvers, approve vs timeout)."""
        sets = ["state = ?"] + [f"{k} = ?" for k in fields]
        marks = ",".join("?" * len(from_states))
        rows = self._run(
            f"UPDATE {{t}} SET {', '.join(sets)} WHERE id = ? AND state IN ({marks}) "
            f"RETURNING {','.join(_COLUMNS)}",
            [to_state, *fields.values(), approval_id, *from_states],
        )
        if rows and self.is_postgres:
            # Instances sharing this store LISTEN: the waiting session wakes at once (see service).
            self._run("SELECT pg_notify(?, ?)", [NOTIFY_CHANNEL, approval_id])
        return self._row(rows[0]) if rows else None

    def consume_approved(self, binding: str, now: float) -> ApprovalRequest | None:
        """The retry path: an approved, unexpired request for exactly this statement runs once."""
        rows = self._run(
            "SELECT id FROM {t} WHERE binding = ? AND state = 'approved' AND expires_at > ? "
            "ORDER BY decided_at LIMIT 1",
            [binding, now],
        )
        if not rows:
            return None
        return self.transition(rows[0][0], ["approved"], "executed", executed_at=now)

    def expire(self, now: float) -> list[ApprovalRequest]:
        """Requests past their validity become ``expired`` (returned, for notifications)."""
        rows = self._run(
            "UPDATE {t} SET state = 'expired' "
            "WHERE state IN ('pending', 'timed_out', 'abandoned', 'approved') "
            f"AND expires_at <= ? RETURNING {','.join(_COLUMNS)}",
            [now],
        )
        return [self._row(r) for r in rows]

    def abandon_instance(self, instance: str) -> list[ApprovalRequest]:
        """At start: requests this instance's clients were waiting on are abandoned (still approvable)."""
        rows = self._run(
            f"UPDATE {{t}} SET state = 'abandoned' WHERE state = 'pending' AND instance = ? "
            f"RETURNING {','.join(_COLUMNS)}",
            [instance],
        )
        return [self._row(r) for r in rows]


def now() -> float:
    return time.time()
