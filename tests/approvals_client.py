"""Deciding approvals through the gateway's HTTP API, for tests (plain httpx, Bearer token).

    from tests.approvals_client import approve, list_pending, reject, wait_for_pending

    req = wait_for_pending(api_url, dba_token, sql="UPDATE customers SET ...")
    approve(api_url, dba_token, req["id"], reason="checked")

Every call raises :class:`ApprovalCallFailed` (with the HTTP status and the server's
``error``) unless the gateway answered 200, so a refusal is an assertion you can make.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import quote

import httpx


class ApprovalCallFailed(AssertionError):
    def __init__(self, status: int, error: str) -> None:
        super().__init__(f"HTTP {status}: {error}")
        self.status = status
        self.error = error


def _call(method: str, base_url: str, token: str, path: str, **kwargs: Any) -> Any:
    r = httpx.request(
        method,
        base_url.rstrip("/") + path,
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
        **kwargs,
    )
    if r.status_code != 200:
        try:
            error = r.json().get("error", r.text)
        except ValueError:
            error = r.text
        raise ApprovalCallFailed(r.status_code, error)
    return r.json()


def list_pending(base_url: str, token: str, state: str | None = None) -> list[dict[str, Any]]:
    """Requests the token's identity may see, newest first (default: those awaiting a decision)."""
    return list(_call("GET", base_url, token, "/api/approvals", params={"state": state} if state else {}))


def get(base_url: str, token: str, approval_id: str) -> dict[str, Any]:
    return dict(_call("GET", base_url, token, f"/api/approvals/{quote(approval_id, safe='')}"))


def approve(base_url: str, token: str, approval_id: str, reason: str = "") -> dict[str, Any]:
    """Approve; returns the request as it is now (``state`` approved)."""
    path = f"/api/approvals/{quote(approval_id, safe='')}/approve"
    return dict(_call("POST", base_url, token, path, json={"reason": reason}))


def reject(
    base_url: str, token: str, approval_id: str, reason: str = "rejected by the test"
) -> dict[str, Any]:
    """Reject (a reason is required); returns the request as it is now (``state`` rejected)."""
    path = f"/api/approvals/{quote(approval_id, safe='')}/reject"
    return dict(_call("POST", base_url, token, path, json={"reason": reason}))


def wait_for_pending(
    base_url: str, token: str, *, sql: str | None = None, subject: str | None = None, timeout: float = 10.0
) -> dict[str, Any]:
    """The newest pending request (with this exact SQL / subject, if given), once the gateway holds one.

    The gateway records the request before it sends the client the NOTICE; a test that cannot
    wait for the NOTICE (psql blocks) polls for the record instead."""
    deadline = time.monotonic() + timeout
    while True:
        for req in list_pending(base_url, token, state="pending"):
            if (sql is None or req["sql"] == sql) and (subject is None or req["subject"] == subject):
                return req
        if time.monotonic() > deadline:
            raise AssertionError(
                f"no pending approval request (sql={sql!r}, subject={subject!r}) in {timeout}s"
            )
        time.sleep(0.05)
