"""Holding statements for a person: request, wait, and run exactly once when approved.

Owns: the gateway side of an approval: the request record, the NOTICE to the
client, waiting (in order, with the client paused) until a decision, a timeout,
a cancel or a disconnect, the retry path for approvals that arrive after the
client stopped waiting, four-eyes and approver-group checks for decisions, and
the approval events in the audit trail and notifications.
Never: runs a statement whose approval it did not consume (``approved`` ->
``executed`` is a conditional update: one winner); runs a statement for a
session that is gone.

Waking a waiting session: a decision taken in this process resolves its future
at once; decisions taken by another process or gateway instance are seen by
polling the shared store (``poll_interval``), and MQTT events when configured.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from enforcer import metrics
from enforcer.approvals.store import (
    APPROVABLE,
    NOTIFY_CHANNEL,
    ApprovalRequest,
    ApprovalStore,
    ApprovalStoreError,
    binding_of,
    new_approval_id,
)
from enforcer.audit.decision_log import DecisionLogError
from enforcer.wire import ErrorResponse

if TYPE_CHECKING:
    from enforcer.approvals.notify import Notifier
    from enforcer.audit.decision_log import DecisionLog
    from enforcer.identity import Identity
    from enforcer.policy.decision import Decision
    from enforcer.proxy.gate import SessionContext

log = logging.getLogger("pgwarden.approvals")


class ApprovalRefused(Exception):
    """An approver may not take this decision (wrong group, own request, not pending)."""

    def __init__(self, message: str, status: int = 403) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass(frozen=True)
class ApprovalSettings:
    default_timeout: float = 300.0
    validity: float = 3600.0
    poll_interval: float = 0.25
    public_url: str = ""
    instance: str = "pgwarden"


class ApprovalService:
    def __init__(
        self,
        store: ApprovalStore,
        settings: ApprovalSettings,
        *,
        decision_log: DecisionLog | None = None,
        notifier: Notifier | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.decision_log = decision_log
        self.notifier = notifier
        #: approval id -> future resolved with the new state by a decision, a cancel or the poller.
        self._waiters: dict[str, asyncio.Future[str]] = {}
        self._by_session: dict[str, str] = {}
        self._tasks: list[asyncio.Task[None]] = []
        #: Set when the gateway stops: held statements are then abandoned rather than withdrawn.
        self.shutting_down = False

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        for req in await asyncio.to_thread(self.store.abandon_instance, self.settings.instance):
            self._event(req, "abandoned", by="", reason="the gateway restarted while the client waited")
        self._tasks.append(asyncio.create_task(self._poll(), name="approvals-poll"))
        if self.store.is_postgres:
            self._tasks.append(asyncio.create_task(self._listen(), name="approvals-listen"))

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        self._tasks.clear()

    async def _poll(self) -> None:
        """Notice decisions taken elsewhere (another worker or instance), and expire old requests."""
        last_expiry = 0.0
        while True:
            await asyncio.sleep(self.settings.poll_interval)
            try:
                ids = list(self._waiters)
                if ids:
                    states = await asyncio.to_thread(self.store.state_of, ids)
                    for approval_id, state in states.items():
                        if state not in ("pending",):
                            self._resolve(approval_id, state)
                if time.monotonic() - last_expiry > 5:
                    last_expiry = time.monotonic()
                    for req in await asyncio.to_thread(self.store.expire, time.time()):
                        self._event(req, "expired", by="", reason="nobody decided before it expired")
            except ApprovalStoreError as exc:
                log.error("%s", exc, extra={"event": "approval_store_failed"})

    async def _listen(self) -> None:
        """Postgres store: LISTEN for transitions, so that a decision taken through any instance
        wakes the waiting session at once (polling stays as the fallback)."""
        import psycopg

        backoff = 0.5
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(self.store.url, autocommit=True) as conn:
                    await conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
                    backoff = 0.5
                    async for note in conn.notifies():
                        if note.payload in self._waiters:
                            states = await asyncio.to_thread(self.store.state_of, [note.payload])
                            state = states.get(note.payload, "")
                            if state and state != "pending":
                                self._resolve(note.payload, state)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning(
                    "LISTEN on the approval store failed (%s); polling meanwhile, retrying in %.1fs",
                    exc,
                    backoff,
                    extra={"event": "approval_listen_failed"},
                )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 30.0)

    def _resolve(self, approval_id: str, state: str) -> None:
        fut = self._waiters.get(approval_id)
        if fut is not None and not fut.done():
            fut.set_result(state)

    # ------------------------------------------------------------------ the session side
    async def hold(
        self,
        ctx: SessionContext,
        *,
        sql: str,
        params: Sequence[str | None] | None,
        protocol: str,
        decision: Decision,
        decision_id: str,
        notice: Callable[[str], None] | None,
    ) -> ErrorResponse | None:
        """Wait for a person: None when the statement may now run (once), else the error to answer with."""
        identity = ctx.identity
        binding = binding_of(identity.subject, ctx.connection, sql, params)
        reasons = tuple(decision.reasons)
        now = time.time()
        try:
            reused = await asyncio.to_thread(self.store.consume_approved, binding, now)
        except ApprovalStoreError as exc:
            return self._store_failure(exc)
        if reused is not None:
            self._event(reused, "executed", by=reused.decided_by, reason="identical statement re-sent")
            if notice is not None:
                notice(f"running statement approved by {reused.decided_by} ({reused.id})")
            return None

        review = decision.review
        timeout = (
            review.timeout_seconds if review and review.timeout_seconds > 0 else self.settings.default_timeout
        )
        req = ApprovalRequest(
            id=new_approval_id(),
            state="pending",
            binding=binding,
            subject=identity.subject,
            issuer=identity.issuer,
            groups=list(identity.groups),
            connection=ctx.connection,
            session_id=ctx.session_id,
            instance=self.settings.instance,
            protocol=protocol,
            sql=sql,
            params=list(params) if params is not None else None,
            reasons=list(reasons),
            approvers=list(review.approvers) if review else [],
            created_at=now,
            wait_until=now + timeout,
            expires_at=now + max(self.settings.validity, timeout),
            decision_id=decision_id,
        )
        try:
            await asyncio.to_thread(self.store.create, req)
        except ApprovalStoreError as exc:
            return self._store_failure(exc)
        fut: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._waiters[req.id] = fut
        metrics.APPROVALS_PENDING.inc()
        self._by_session[ctx.session_id] = req.id
        self._event(req, "requested", by=identity.subject, reason="; ".join(reasons))
        if notice is not None:
            where = (
                f" or at {self.settings.public_url.rstrip('/')}/approvals/{req.id}"
                if self.settings.public_url
                else ""
            )
            notice(
                f"held for approval {req.id}; approve with `pgwarden approvals approve {req.id}`{where} "
                f"(waiting up to {_human(timeout)})"
            )
        try:
            try:
                state = await asyncio.wait_for(asyncio.shield(fut), timeout)
            except TimeoutError:
                state = "timeout"
            return await self._conclude(req, state, timeout)
        except asyncio.CancelledError:
            if self.shutting_down:
                await asyncio.shield(self._abandon(req))
            else:
                # The client is gone: withdraw, so that an approval never runs it for nobody.
                await asyncio.shield(self._withdraw(req, "the client disconnected while waiting"))
            raise
        finally:
            metrics.APPROVALS_PENDING.dec()
            self._waiters.pop(req.id, None)
            if self._by_session.get(ctx.session_id) == req.id:
                del self._by_session[ctx.session_id]

    async def _conclude(self, req: ApprovalRequest, state: str, timeout: float) -> ErrorResponse | None:
        if state == "timeout":
            moved = await asyncio.to_thread(self.store.transition, req.id, ["pending"], "timed_out")
            if moved is not None:
                self._event(moved, "timed_out", by="", reason=f"no decision within {_human(timeout)}")
                return ErrorResponse.build(
                    "57014",
                    f"canceling statement: approval {req.id} was not decided within {_human(timeout)}",
                    detail=f"If {req.id} is approved before it expires, send the identical statement "
                    "again (same connection, text and parameters) to run it once.",
                    hint=f"pgwarden approvals show {req.id}",
                )
            state = (await asyncio.to_thread(self.store.state_of, [req.id])).get(req.id, "")
        if state == "cancelled":
            await self._withdraw(req, "the client cancelled the statement")
            return ErrorResponse.build(
                "57014", f"canceling statement due to user request (approval {req.id} withdrawn)"
            )
        if state == "approved":
            done = await asyncio.to_thread(
                self.store.transition, req.id, ["approved"], "executed", executed_at=time.time()
            )
            if done is not None:
                self._event(done, "executed", by=done.decided_by, reason=done.decision_reason)
                return None
            state = (await asyncio.to_thread(self.store.state_of, [req.id])).get(req.id, "")
        current = await asyncio.to_thread(self.store.get, req.id)
        if current is not None and current.state == "rejected":
            why = f": {current.decision_reason}" if current.decision_reason else ""
            return ErrorResponse.build(
                "42501",
                f"pgwarden: {current.decided_by} rejected this statement (approval {req.id}){why}",
            )
        return ErrorResponse.build(
            "42501",
            f"pgwarden: approval {req.id} ended as {state or 'unknown'}; the statement was not run",
        )

    async def _withdraw(self, req: ApprovalRequest, reason: str) -> None:
        try:
            moved = await asyncio.to_thread(self.store.transition, req.id, list(APPROVABLE), "withdrawn")
        except ApprovalStoreError as exc:
            log.error("%s", exc, extra={"event": "approval_store_failed"})
            return
        if moved is not None:
            self._event(moved, "withdrawn", by=moved.subject, reason=reason)

    async def _abandon(self, req: ApprovalRequest) -> None:
        try:
            moved = await asyncio.to_thread(self.store.transition, req.id, ["pending"], "abandoned")
        except ApprovalStoreError as exc:
            log.error("%s", exc, extra={"event": "approval_store_failed"})
            return
        if moved is not None:
            self._event(moved, "abandoned", by="", reason="the gateway stopped while the client waited")

    def cancel_session(self, session_id: str) -> bool:
        """A CancelRequest for a session waiting on an approval withdraws it (True if one was waiting)."""
        approval_id = self._by_session.get(session_id)
        if approval_id is None:
            return False
        self._resolve(approval_id, "cancelled")
        return True

    def _store_failure(self, exc: Exception) -> ErrorResponse:
        log.error("%s", exc, extra={"event": "approval_store_failed"})
        return ErrorResponse.build(
            "42501",
            "pgwarden cannot record an approval request, so the statement was not run (fail closed)",
            detail=str(exc),
        )

    # ------------------------------------------------------------------ the approver side
    async def decide(
        self, approval_id: str, approver: Identity, *, approve: bool, reason: str
    ) -> ApprovalRequest:
        req = await asyncio.to_thread(self.store.get, approval_id)
        if req is None:
            raise ApprovalRefused(f"no approval request {approval_id}", status=404)
        check_approver(req, approver)
        if req.expires_at <= time.time():
            raise ApprovalRefused(f"approval {approval_id} has expired", status=409)
        target = "approved" if approve else "rejected"
        moved = await asyncio.to_thread(
            self.store.transition,
            approval_id,
            list(APPROVABLE),
            target,
            decided_by=approver.subject,
            decided_at=time.time(),
            decision_reason=reason,
        )
        if moved is None:
            current = await asyncio.to_thread(self.store.get, approval_id)
            state = current.state if current else "gone"
            raise ApprovalRefused(f"approval {approval_id} is {state}, not pending", status=409)
        self._event(moved, target, by=approver.subject, reason=reason)
        self._resolve(approval_id, target)
        return moved

    # ------------------------------------------------------------------ audit and notifications
    def _event(self, req: ApprovalRequest, event: str, *, by: str, reason: str) -> None:
        doc = {
            "approval_id": req.id,
            "event": event,
            "by": by,
            "reason": reason,
            "subject": req.subject,
            "connection": req.connection,
            "session": req.session_id,
            "decision_id": req.decision_id,
            "sql": req.sql,
            "approvers": req.approvers,
            "state": req.state,
        }
        metrics.APPROVAL_EVENTS.labels(event=event).inc()
        log.info(
            "approval %s %s%s", req.id, event, f" by {by}" if by else "", extra={"event": f"approval_{event}"}
        )
        if self.decision_log is not None:
            try:
                self.decision_log.write_approval(doc)
            except DecisionLogError as exc:
                log.error(
                    "%s (approval event %s %s)", exc, req.id, event, extra={"event": "decision_log_failed"}
                )
        if self.notifier is not None:
            self.notifier.publish(event, {**doc, "created_at": req.created_at, "expires_at": req.expires_at})


def check_approver(req: ApprovalRequest, approver: Identity) -> None:
    """Four eyes and the policy's approver groups."""
    if approver.subject == req.subject:
        raise ApprovalRefused(f"{approver.subject} requested {req.id} and cannot approve their own request")
    if not set(approver.groups) & set(req.approvers):
        allowed = ", ".join(req.approvers) or "(none named by the policy)"
        raise ApprovalRefused(f"{approver.subject} is not in a group that may decide {req.id}: {allowed}")


def _human(seconds: float) -> str:
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{int(seconds // 3600)}h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{int(seconds // 60)}m"
    return f"{seconds:g}s"


__all__ = ["ApprovalRefused", "ApprovalService", "ApprovalSettings", "check_approver"]
