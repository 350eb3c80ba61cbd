"""Approval requests as the gateway records them when it holds a statement, for the API tests."""

from __future__ import annotations

import time
from collections.abc import Sequence

from enforcer.approvals.store import ApprovalRequest, ApprovalStore, binding_of, new_approval_id

UPDATE_SQL = "UPDATE customers SET email = $1 WHERE id = $2"
SCRIPT_SQL = "UPDATE notes SET body = '<script>window.pwned = 1</script>' WHERE id = 1"


def held(
    store: ApprovalStore,
    *,
    subject: str = "ci-bot",
    approvers: Sequence[str] = ("dba",),
    sql: str = UPDATE_SQL,
    params: Sequence[str | None] | None = ("x@example.com", "7"),
    reasons: Sequence[str] = ("writes to customers need a DBA's approval",),
    state: str = "pending",
    age: float = 5.0,
    wait: float = 300.0,
    validity: float = 3600.0,
    connection: str = "demo",
    approval_id: str | None = None,
) -> ApprovalRequest:
    """Store and return a request created ``age`` seconds ago by ``subject``."""
    created = time.time() - age
    req = ApprovalRequest(
        id=approval_id or new_approval_id(),
        state=state,
        binding=binding_of(subject, connection, sql, list(params) if params is not None else None),
        subject=subject,
        issuer="pgwarden",
        groups=["agents"],
        connection=connection,
        session_id="5e55e55e-0000-4000-8000-000000000001",
        instance="gw-test-w0",
        protocol="extended" if params is not None else "simple",
        sql=sql,
        params=list(params) if params is not None else None,
        reasons=list(reasons),
        approvers=list(approvers),
        created_at=created,
        wait_until=created + wait,
        expires_at=created + validity,
        decision_id="d-" + (approval_id or "x"),
    )
    store.create(req)
    return req
