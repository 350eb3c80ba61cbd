"""One agent's standing with the gateway: its gateway session, and the statements held for approval.

Owns: which gateway connection a statement of an agent (an identity: token issuer + subject) runs
on, noticing that the gateway *held* a statement (its "held for approval apr_..." NOTICE) and
answering at once with the approval id while the statement keeps waiting on its own connection,
and handing the held statement's outcome over exactly once.
Never: re-sends a statement that may have reached the gateway; keeps a result after handing it
over; lets one identity see another's held statements.

Statements of an agent run one at a time on one gateway session, so that an MCP session appears
as one session in the recordings. A held statement keeps that connection (the gateway pauses the
session until a person decides), so the agent's next statement opens a new one. When the MCP
process ends, it withdraws what is still held (a CancelRequest each, as Ctrl-C in psql does) and
closes its sessions.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from enforcer.identity import Identity
from enforcer.mcp.gateway_client import (
    GatewayConnection,
    SessionEnded,
    StatementResult,
)
from enforcer.mcp.values import builtin_type_name
from enforcer.wire import NoticeResponse

log = logging.getLogger("pgwarden.mcp")

#: The gateway's NOTICE when it holds a statement (enforcer.approvals.service.ApprovalService.hold).
HELD = re.compile(r"\bheld for approval (apr_[0-9a-f]+)")
_TYPE_LOOKUP = (
    "SELECT t.oid::int8, pg_catalog.format_type(t.oid, NULL) FROM pg_catalog.pg_type t "
    "WHERE t.oid = ANY($1::oid[])"
)


@dataclass(frozen=True)
class GatewayTarget:
    """Where and as what the agents' statements go: the gateway's MCP socket and a connection name."""

    socket_path: Path
    connection: str
    application_name: str = "pgwarden-mcp"
    connect_timeout: float = 15.0


@dataclass(frozen=True)
class Held:
    """A statement the gateway holds for approval; the agent polls for its outcome."""

    approval_id: str
    notice: str
    since: float


class UnknownApproval(LookupError):
    """No held statement with this id in this agent's session (never, or already handed over)."""


@dataclass
class _HeldStatement:
    approval_id: str
    notice: str
    since: float
    task: asyncio.Task[StatementResult]
    conn: GatewayConnection


class AgentSession:
    """The gateway session(s) of one identity, and its held statements."""

    def __init__(self, target: GatewayTarget, identity: Identity, token: str) -> None:
        self.target = target
        self.identity = identity
        self.token = token
        self.last_used = time.monotonic()
        self._primary: GatewayConnection | None = None
        self._lock = asyncio.Lock()
        self._held: dict[str, _HeldStatement] = {}
        self._type_names: dict[int, str] = {}
        self._closing: set[asyncio.Task[None]] = set()

    def use(self, identity: Identity, token: str) -> None:
        """This agent's current token (a refreshed one replaces the old for new gateway sessions)."""
        self.identity = identity
        self.token = token
        self.last_used = time.monotonic()

    @property
    def parameters(self) -> dict[str, str]:
        """What the gateway session reported with ParameterStatus (empty before the first statement)."""
        return dict(self._primary.parameters) if self._primary is not None else {}

    @property
    def busy(self) -> bool:
        return bool(self._held) or self._lock.locked()

    # ------------------------------------------------------------------ running statements
    async def run(
        self, sql: str, params: Sequence[str | None] | None, *, max_rows: int
    ) -> StatementResult | Held:
        """Run one statement through the gateway; a Held at once if the gateway holds it for approval.

        Raises GatewayRefusal (the gateway or Postgres refused it) or GatewayUnavailable.
        """
        async with self._lock:
            self.last_used = time.monotonic()
            for attempt in (1, 2):
                conn = await self._connection()
                try:
                    return await self._run_on(conn, sql, params, max_rows)
                except SessionEnded as exc:
                    # Nothing was sent: the gateway had ended the idle session (say, its token expired).
                    self._primary = None
                    if attempt == 2:
                        raise
                    log.info("gateway session ended while idle (%s); reconnecting", exc)
            raise AssertionError("unreachable")

    async def _run_on(
        self, conn: GatewayConnection, sql: str, params: Sequence[str | None] | None, max_rows: int
    ) -> StatementResult | Held:
        held = asyncio.Event()
        notices: list[NoticeResponse] = []

        def on_notice(notice: NoticeResponse) -> None:
            if not held.is_set() and HELD.search(notice.message):
                notices.append(notice)
                held.set()

        task = asyncio.ensure_future(conn.execute(sql, params, max_rows=max_rows, on_notice=on_notice))
        waiter = asyncio.ensure_future(held.wait())
        try:
            await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            # The agent gave up on the call: the session is mid-statement, so it cannot be reused.
            task.cancel()
            self._primary = None
            await conn.close()
            raise
        finally:
            waiter.cancel()
        if task.done():
            if conn.closed:
                self._primary = None
            return task.result()
        # Held: the connection now belongs to the held statement; the next one opens another.
        self._primary = None
        m = HELD.search(notices[0].message)
        assert m is not None
        entry = _HeldStatement(m.group(1), notices[0].message, time.time(), task, conn)
        self._held[entry.approval_id] = entry
        task.add_done_callback(lambda _: self._close_later(conn))
        return Held(entry.approval_id, entry.notice, entry.since)

    async def _connection(self) -> GatewayConnection:
        conn = self._primary
        if conn is not None and (conn.closed or conn.token != self.token):
            self._primary = None
            await conn.close()
            conn = None
        if conn is None:
            conn = self._primary = await GatewayConnection.open(
                self.target.socket_path,
                user=self.identity.subject,
                token=self.token,
                connection=self.target.connection,
                application_name=self.target.application_name,
                timeout=self.target.connect_timeout,
            )
        return conn

    def _close_later(self, conn: GatewayConnection) -> None:
        task = asyncio.ensure_future(conn.close())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    # ------------------------------------------------------------------ held statements
    def outcome(self, approval_id: str) -> StatementResult | Held:
        """Held while it waits; then its result (once) or its refusal raised (once)."""
        entry = self._held.get(approval_id)
        if entry is None:
            raise UnknownApproval(approval_id)
        self.last_used = time.monotonic()
        if not entry.task.done():
            return Held(entry.approval_id, entry.notice, entry.since)
        del self._held[approval_id]
        return entry.task.result()

    async def wait(self, approval_id: str, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for the held statement's outcome (it keeps waiting after)."""
        entry = self._held.get(approval_id)
        if entry is None:
            raise UnknownApproval(approval_id)
        await asyncio.wait({entry.task}, timeout=timeout)

    def forget_collected(self, older_than: float) -> None:
        """Drop outcomes nobody collected for a long time (their connections are already closed)."""
        for approval_id, entry in list(self._held.items()):
            if entry.task.done() and entry.since < older_than:
                del self._held[approval_id]
                if not entry.task.cancelled():
                    entry.task.exception()  # retrieved: no "never retrieved" warning

    # ------------------------------------------------------------------ type names
    async def type_names(self, oids: Sequence[int]) -> dict[int, str]:
        """``format_type`` names of result column types; others are looked up through the gateway."""
        out: dict[int, str] = {}
        missing = []
        for oid in set(oids):
            name = builtin_type_name(oid) or self._type_names.get(oid)
            if name is None:
                missing.append(oid)
            else:
                out[oid] = name
        if missing:
            try:
                found = await self.run(
                    _TYPE_LOOKUP,
                    ["{" + ",".join(str(o) for o in sorted(missing)) + "}"],
                    max_rows=len(missing),
                )
            except Exception as exc:  # a name is a convenience: never fail the statement over it
                log.info("could not look up type names %s: %s", missing, exc)
                found = None
            if isinstance(found, StatementResult):
                for oid_text, name in found.rows:
                    if oid_text is not None and name is not None:
                        self._type_names[int(oid_text)] = name
            for oid in missing:
                out[oid] = self._type_names.get(oid, f"oid {oid}")
        return out

    # ------------------------------------------------------------------ the end
    async def close(self) -> None:
        """Close every gateway session, withdrawing statements still held (a CancelRequest each)."""
        waiting = [e for e in self._held.values() if not e.task.done()]
        if waiting:
            await asyncio.gather(*(e.conn.cancel() for e in waiting))
            await asyncio.wait({e.task for e in waiting}, timeout=5)
        for entry in self._held.values():
            entry.task.cancel()
        conns = [e.conn for e in self._held.values()]
        if self._primary is not None:
            conns.append(self._primary)
            self._primary = None
        for conn in conns:
            await conn.close()
        for entry in self._held.values():
            with contextlib.suppress(BaseException):
                await entry.task
        self._held.clear()
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)


class AgentRegistry:
    """The agents this MCP process serves, by token issuer and subject."""

    def __init__(self, target: GatewayTarget, *, idle_timeout: float = 900.0, keep_outcomes: float = 3600.0):
        self.target = target
        self.idle_timeout = idle_timeout
        self.keep_outcomes = keep_outcomes
        self._agents: dict[tuple[str, str], AgentSession] = {}

    def session_for(self, identity: Identity, token: str) -> AgentSession:
        key = (identity.issuer, identity.subject)
        agent = self._agents.get(key)
        if agent is None:
            agent = self._agents[key] = AgentSession(self.target, identity, token)
        else:
            agent.use(identity, token)
        return agent

    async def sweep(self) -> None:
        """Close agents idle for ``idle_timeout`` with nothing held; forget uncollected old outcomes."""
        now = time.monotonic()
        for key, agent in list(self._agents.items()):
            agent.forget_collected(time.time() - self.keep_outcomes)
            if not agent.busy and now - agent.last_used > self.idle_timeout:
                del self._agents[key]
                await agent.close()

    async def close(self) -> None:
        agents, self._agents = list(self._agents.values()), {}
        for agent in agents:
            await agent.close()
