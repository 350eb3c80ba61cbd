"""Interception points of the data path: the statement gate and result transformers.

Owns: the contract between the session (which moves bytes) and whatever decides
about statements (the policy layer, later issues). Every frontend message that
can execute SQL (Query, Parse, Bind, Execute) passes through exactly one
:meth:`StatementGate.decide` call before anything of it is forwarded.
Never: performs I/O itself; a gate that needs I/O returns an awaitable.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

from enforcer.identity import Identity
from enforcer.wire import BindHead, ErrorResponse, Execute, Parse, Query

#: Bind arrives as its names only (:class:`BindHead`); ``.full()`` decodes its parameters.
SQLMessage = Query | Parse | BindHead | Execute


@dataclass
class SessionContext:
    """What a gate may know about the session a message belongs to (read-only for gates)."""

    session_id: str
    identity: Identity
    connection: str
    database: str
    client_addr: str
    tls: bool
    application_name: str = ""
    transaction_status: str = "I"
    parameters: dict[str, str] = field(default_factory=dict)
    startup_parameters: Mapping[str, str] = field(default_factory=dict)
    #: Per-session memory owned by the gate (e.g. which prepared statements it allowed).
    gate_state: Any = None
    #: Moves whenever the server reports a changed parameter (part of decision cache keys).
    parameters_epoch: int = 0
    #: How the client reached the gateway: "postgres" (a driver) or "mcp" (`pgwarden mcp`).
    channel: str = "postgres"
    #: Sends the client a NOTICE at once, e.g. "held for approval" (set by the relay).
    notice: Callable[[str], None] | None = None


class ResultTransformer(Protocol):
    """Rewrites the upstream messages answering one statement before the client sees them.

    ``transform`` receives one backend frame (type byte, payload) and returns the
    frames to send instead (possibly none, possibly the same one).
    """

    def transform(self, type_byte: int, payload: bytes) -> list[tuple[int, bytes]]: ...


class Verdict(NamedTuple):
    """What the session must do with one message.

    ``refusal`` set: the message is not forwarded; the client receives this
    error in its proper place in the response stream, and Postgres's own
    error semantics apply (a transaction block is aborted, an extended-protocol
    batch is skipped until Sync).

    Immutable, as verdicts are shared (:data:`ALLOW`, cached decisions). A named tuple
    rather than a frozen dataclass: one is built for every statement on the data path, and
    a frozen dataclass takes half as long again to build (1.2 µs against 0.8 µs).
    """

    refusal: ErrorResponse | None = None
    transformer: ResultTransformer | None = None
    notices: tuple[str, ...] = ()
    #: Bytes to send upstream instead of the message as the client sent it (a rewritten statement).
    replacement: bytes | None = None
    #: For the audit trail: the decision record this verdict came from, and what it said.
    decision_id: str = ""
    action: str = ""
    reasons: tuple[str, ...] = ()
    #: Columns masked in this statement's results, as ``schema.table.column:strategy`` (never values).
    masked: tuple[str, ...] = ()

    @property
    def allowed(self) -> bool:
        return self.refusal is None


ALLOW = Verdict()


class StatementGate(Protocol):
    def decide(self, ctx: SessionContext, message: SQLMessage) -> Verdict | Awaitable[Verdict]: ...


class AllowAllGate:
    """The gate of the bare proxy: forwards everything (replaced by the policy gate)."""

    def decide(self, ctx: SessionContext, message: SQLMessage) -> Verdict:
        return ALLOW
