"""Reading and deciding approval requests for the pages and the JSON API.

Owns: the query parameters of an approval listing and the body of a decision (parsed,
with an error naming the bad parameter), who may see which request (its approvers and
auditors), and the calls to the approval service off the event loop.
Never: decides whether someone may approve (:meth:`ApprovalService.decide` does, with
``check_approver``, on every decision), or writes to the approval store itself.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from dataclasses import dataclass

from enforcer.api.session_queries import BadParameter
from enforcer.approvals.service import ApprovalRefused, ApprovalService, check_approver
from enforcer.approvals.store import APPROVABLE, STATES, ApprovalRequest
from enforcer.identity.model import Identity

NOT_ENABLED = "approvals are not enabled on this gateway"
QUERY_PARAMETERS = ("state", "limit")
DEFAULT_LIMIT = 200
MAX_LIMIT = 1000
#: The newest requests in the asked states that are read to find those a person may see.
SCAN_LIMIT = 5000
MAX_REASON_CHARS = 1000
MAX_BODY_BYTES = 16 * 1024


class ApprovalsDisabled(Exception):
    """The gateway has no ``approvals`` section: every approval route answers 503."""


class BodyTooLarge(Exception):
    pass


@dataclass(frozen=True)
class ApprovalQuery:
    states: tuple[str, ...] = APPROVABLE
    limit: int = DEFAULT_LIMIT

    def as_params(self) -> dict[str, str]:
        """The query string that asks for this listing again (what the page polls with)."""
        params = {}
        if self.states != APPROVABLE:
            params["state"] = "all" if self.states == STATES else ",".join(self.states)
        if self.limit != DEFAULT_LIMIT:
            params["limit"] = str(self.limit)
        return params


def parse_approval_query(params: Mapping[str, str]) -> ApprovalQuery:
    """``state`` (one, several comma-separated, or ``all``; default the approvable ones) and ``limit``."""
    unknown = sorted(set(params) - set(QUERY_PARAMETERS))
    if unknown:
        raise BadParameter(
            unknown[0], f"{unknown[0][:40]}: unknown parameter; use {', '.join(QUERY_PARAMETERS)}"
        )
    states: tuple[str, ...] = APPROVABLE
    raw_state = params.get("state", "").strip()
    if raw_state == "all":
        states = STATES
    elif raw_state:
        asked = tuple(dict.fromkeys(s.strip() for s in raw_state.split(",") if s.strip()))
        bad = [s for s in asked if s not in STATES]
        if bad or not asked:
            raise BadParameter(
                "state",
                f"state: expected all or one or more of {', '.join(STATES)} (comma-separated), "
                f"got {raw_state[:60]!r}",
            )
        states = asked
    limit = DEFAULT_LIMIT
    raw_limit = params.get("limit", "").strip()
    if raw_limit:
        if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= MAX_LIMIT:
            raise BadParameter(
                "limit", f"limit: expected an integer from 1 to {MAX_LIMIT}, got {raw_limit[:40]!r}"
            )
        limit = int(raw_limit)
    return ApprovalQuery(states, limit)


def parse_decision(body: bytes, *, approve: bool) -> str:
    """The reason in a decision body ``{"reason": "..."}``: required to reject, optional to approve."""
    doc: object = {}
    if body.strip():
        try:
            doc = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise BadParameter("body", 'body: expected JSON such as {"reason": "why"}') from None
    if not isinstance(doc, dict):
        raise BadParameter("body", 'body: expected a JSON object such as {"reason": "why"}')
    unknown = sorted(set(doc) - {"reason"})
    if unknown:
        raise BadParameter(unknown[0][:40], f"{unknown[0][:40]}: unknown field; the body has only reason")
    reason = doc.get("reason", "")
    if reason is None:
        reason = ""
    if not isinstance(reason, str):
        raise BadParameter("reason", f"reason: expected a string, got {type(reason).__name__}")
    reason = reason.strip()
    if len(reason) > MAX_REASON_CHARS:
        raise BadParameter(
            "reason", f"reason: at most {MAX_REASON_CHARS} characters, got {len(reason)}; shorten it"
        )
    # The reason reaches the held client inside a Postgres ErrorResponse, where a NUL ends the text.
    if any((ord(c) < 0x20 and c not in "\t\n\r") or ord(c) == 0x7F for c in reason):
        raise BadParameter("reason", "reason: control characters are not allowed")
    if not approve and not reason:
        raise BadParameter("reason", "reason: required to reject; the requester sees it in the error")
    return reason


class ApprovalDesk:
    """The approval service as the pages and the JSON API use it; ``None`` service means disabled."""

    def __init__(self, service: ApprovalService | None, auditor_groups: tuple[str, ...]) -> None:
        self.service = service
        self.auditor_groups = auditor_groups

    @property
    def enabled(self) -> bool:
        return self.service is not None

    def _service(self) -> ApprovalService:
        if self.service is None:
            raise ApprovalsDisabled(NOT_ENABLED)
        return self.service

    def require_enabled(self) -> None:
        self._service()

    def is_auditor(self, viewer: Identity) -> bool:
        return bool(set(viewer.groups) & set(self.auditor_groups))

    def may_see(self, req: ApprovalRequest, viewer: Identity) -> bool:
        """Its approvers (any group the policy named), auditors, and the identity that asked see a request."""
        return (
            self.is_auditor(viewer)
            or bool(set(viewer.groups) & set(req.approvers))
            or (viewer.subject == req.subject and viewer.issuer == req.issuer)
        )

    def why_not_decide(self, req: ApprovalRequest, viewer: Identity) -> str | None:
        """None if ``viewer`` may decide ``req`` now, else why not (only for showing buttons)."""
        if req.state not in APPROVABLE:
            return f"{req.id} is {req.state}: no longer awaiting a decision"
        try:
            check_approver(req, viewer)
        except ApprovalRefused as exc:
            return exc.message
        return None

    async def list_requests(self, query: ApprovalQuery, viewer: Identity) -> list[ApprovalRequest]:
        """The newest requests in ``query.states`` that ``viewer`` may see, at most ``query.limit``."""
        service = self._service()
        scan = query.limit if self.is_auditor(viewer) else SCAN_LIMIT
        found = await asyncio.to_thread(service.store.list_requests, list(query.states), scan)
        return [r for r in found if self.may_see(r, viewer)][: query.limit]

    async def get(self, approval_id: str, viewer: Identity) -> ApprovalRequest:
        """The request, if ``viewer`` may see it; ApprovalRefused 404 or 403 otherwise."""
        service = self._service()
        req = await asyncio.to_thread(service.store.get, approval_id)
        if req is None:
            raise ApprovalRefused(f"no approval request {approval_id[:80]}", status=404)
        if not self.may_see(req, viewer):
            approvers = ", ".join(req.approvers) or "(none named by the policy)"
            raise ApprovalRefused(
                f"{viewer.subject} may not see {req.id}: only its requester, its approvers ({approvers}) "
                f"and auditors ({', '.join(self.auditor_groups)}) may",
                status=403,
            )
        return req

    async def decide(
        self, approval_id: str, viewer: Identity, *, approve: bool, reason: str
    ) -> ApprovalRequest:
        """The service decides, and checks the approver (four eyes, approver groups) every time."""
        return await self._service().decide(approval_id, viewer, approve=approve, reason=reason)
