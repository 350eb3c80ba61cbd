"""Reading recorded sessions for the web page and the JSON API.

Owns: the query parameters an auditor may give (parsed into :class:`SessionQuery`,
with an error naming the bad parameter) and access to the session store off the
event loop, one store connection used by one thread at a time.
Never: writes to the store, or blocks the event loop on it.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from starlette.concurrency import run_in_threadpool

from enforcer.audit.sessions import SessionStore, StoreError
from enforcer.audit.timespec import point_in_time
from enforcer.store_url import describe_store_url

log = logging.getLogger("pgwarden.api")

OUTCOMES = ("ok", "refused", "error")
MAX_LIMIT = 1000
QUERY_PARAMETERS = ("identity", "connection", "since", "until", "outcome", "limit")

T = TypeVar("T")


class BadParameter(Exception):
    """A query parameter is invalid; ``message`` names it and says what is accepted."""

    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(message)
        self.parameter = parameter
        self.message = message


class StoreUnavailable(Exception):
    """The session store cannot be read (not configured, or failing); ``message`` is safe to show."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


NOT_ENABLED = "session recording is not enabled in this gateway's configuration (audit.sessions)"


@dataclass(frozen=True)
class SessionQuery:
    """Which sessions to list; ``since``/``until`` are unix times."""

    identity: str | None = None
    connection: str | None = None
    since: float | None = None
    until: float | None = None
    outcome: str | None = None
    limit: int = 100


def parse_time(value: str, parameter: str, now: float) -> float:
    """Unix time from an ISO-8601 timestamp (UTC unless it says otherwise) or a duration ago (``7d``)."""
    try:
        return point_in_time(value, now=now)
    except ValueError as exc:
        raise BadParameter(parameter, f"{parameter}: {exc}") from None


def parse_session_query(params: Mapping[str, str], *, now: float) -> SessionQuery:
    """A :class:`SessionQuery` from URL query parameters; empty values count as absent."""
    unknown = sorted(set(params) - set(QUERY_PARAMETERS))
    if unknown:
        raise BadParameter(
            unknown[0],
            f"{unknown[0][:40]}: unknown parameter; use {', '.join(QUERY_PARAMETERS)}",
        )
    given = {k: v for k, v in params.items() if v.strip()}
    outcome = given.get("outcome")
    if outcome is not None and outcome not in OUTCOMES:
        raise BadParameter("outcome", f"outcome: expected one of {', '.join(OUTCOMES)}, got {outcome[:40]!r}")
    limit = 100
    if "limit" in given:
        raw = given["limit"].strip()
        if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
            raise BadParameter("limit", f"limit: expected an integer from 1 to {MAX_LIMIT}, got {raw[:40]!r}")
        limit = int(raw)
    since = parse_time(given["since"], "since", now) if "since" in given else None
    until = parse_time(given["until"], "until", now) if "until" in given else None
    if since is not None and until is not None and since >= until:
        raise BadParameter("until", "until: must be later than since")
    return SessionQuery(
        identity=given.get("identity"),
        connection=given.get("connection"),
        since=since,
        until=until,
        outcome=outcome,
        limit=limit,
    )


class SessionReader:
    """The session store as the web page reads it: opened on first use, reopened after a failure."""

    def __init__(self, store_url: str | None) -> None:
        self.store_url = store_url
        self._store: SessionStore | None = None
        # A store connection must be used by one thread at a time; requests run on a thread pool.
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.store_url is not None

    async def list_sessions(self, query: SessionQuery) -> list[dict[str, Any]]:
        return await self._call(
            lambda store: store.list_sessions(
                identity=query.identity,
                connection=query.connection,
                since=query.since,
                until=query.until,
                outcome=query.outcome,
                limit=query.limit,
            )
        )

    async def session(self, session_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
        """The session whose id is or starts with ``session_id``, with its statements."""

        def read(store: SessionStore) -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
            try:
                found = store.get_session(session_id)
            except StoreError as exc:  # get_session raises it only for an ambiguous prefix
                raise BadParameter("id", str(exc)) from None
            if found is None:
                return None
            return found, store.statements(found["id"])

        return await self._call(read)

    def close(self) -> None:
        with self._lock:
            if self._store is not None:
                self._store.close()
                self._store = None

    async def _call(self, read: Callable[[SessionStore], T]) -> T:
        if self.store_url is None:
            raise StoreUnavailable(NOT_ENABLED)
        return await run_in_threadpool(self._locked, read)

    def _locked(self, read: Callable[[SessionStore], T]) -> T:
        assert self.store_url is not None
        with self._lock:
            try:
                if self._store is None:
                    self._store = SessionStore(self.store_url)
                return read(self._store)
            except BadParameter:
                raise
            except Exception as exc:
                # Drop the connection so the next request starts afresh (a restarted Postgres, say).
                if self._store is not None:
                    with contextlib.suppress(Exception):
                        self._store.close()
                    self._store = None
                where = describe_store_url(self.store_url)
                log.error(
                    "cannot read the session store %s: %s",
                    where,
                    exc,
                    extra={"event": "session_store_read_failed"},
                )
                raise StoreUnavailable(
                    f"cannot read the session store {where}; see the gateway log"
                ) from None
