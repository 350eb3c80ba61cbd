"""Talking to a gateway's approvals API from a terminal: the HTTP client and what it prints.

Owns: the HTTP calls behind ``pgwarden approvals`` (httpx, Bearer token), turning refusals
into :class:`ApiError` with the server's message, and rendering requests with rich.
Never: prints or logs the token; prints request text as rich markup or raw control characters
(the SQL, identity and reasons come from the client whose statement is held).
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import httpx
from rich.console import Console
from rich.table import Table
from rich.text import Text

from enforcer.terminal import console as terminal_console
from enforcer.terminal import printable

#: Exit status for refusals the person can only fix elsewhere (403, 404, 409, 503, unreachable).
REFUSED = 1
#: Exit status for a usage problem (a missing or refused token, a bad option value).
USAGE = 2


class ApiError(Exception):
    """A request failed; ``message`` names the problem and the fix, ``exit_code`` for the CLI."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.exit_code = USAGE if status in (400, 401, 413) else REFUSED


class ApprovalsClient:
    """``base_url`` is the gateway's API (``approvals.public_url``); ``token`` a Bearer token."""

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.base_url,
            headers={"authorization": f"Bearer {token}", "accept": "application/json"},
            timeout=timeout,
            transport=transport,
        )

    def __enter__(self) -> ApprovalsClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def list_requests(self, state: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
        params: dict[str, str] = {}
        if state:
            params["state"] = state
        if limit is not None:
            params["limit"] = str(limit)
        found = self._call("GET", "/api/approvals", params=params)
        if not isinstance(found, list):
            raise ApiError(f"{self.base_url}/api/approvals answered with something other than a list")
        return found

    def get(self, approval_id: str) -> dict[str, Any]:
        return self._document(self._call("GET", f"/api/approvals/{quote(approval_id, safe='')}"))

    def decide(self, approval_id: str, *, approve: bool, reason: str = "") -> dict[str, Any]:
        verb = "approve" if approve else "reject"
        path = f"/api/approvals/{quote(approval_id, safe='')}/{verb}"
        return self._document(self._call("POST", path, json={"reason": reason}))

    def _document(self, doc: Any) -> dict[str, Any]:
        if not isinstance(doc, dict):
            raise ApiError(f"{self.base_url} answered with something other than an approval request")
        return doc

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            r = self._http.request(method, path, **kwargs)
        except httpx.TimeoutException:
            raise ApiError(f"{self.base_url} did not answer in time; is the gateway overloaded?") from None
        except httpx.HTTPError as exc:
            raise ApiError(
                f"cannot reach the gateway's API at {self.base_url} ({type(exc).__name__}: {exc}); "
                "check --url, or that the gateway runs with an api section"
            ) from None
        try:
            doc = r.json()
        except ValueError:
            doc = None
        if r.is_success and doc is not None:
            return doc
        message = doc.get("error") if isinstance(doc, dict) else None
        if not isinstance(message, str):
            message = f"{method} {path} answered HTTP {r.status_code} without an explanation"
        if r.status_code == 401:
            message += (
                "; pass a valid token with --token or PGWARDEN_TOKEN (`pgwarden token issue` mints one)"
            )
        raise ApiError(message, r.status_code)


# ---------------------------------------------------------------------- rendering


def _shorten(text: str, limit: int) -> str:
    flat = printable(text, one_line=True)
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _age(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{int(seconds)}s"
    if seconds < 3600:
        return f"{int(seconds // 60)}m"
    if seconds < 86400:
        return f"{int(seconds // 3600)}h{int(seconds % 3600) // 60:02d}m"
    return f"{int(seconds // 86400)}d"


def _ts(value: float | None) -> str:
    if value is None:
        return "-"
    return datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def render_list(docs: list[dict[str, Any]], console: Console | None = None, now: float | None = None) -> None:
    console = console or terminal_console()
    if not docs:
        console.print("no approval requests that you may see are in these states")
        return
    now = time.time() if now is None else now
    table = Table()
    for name in ("id", "age", "identity", "connection"):
        table.add_column(name, no_wrap=True)
    table.add_column("SQL", overflow="fold", min_width=20)
    table.add_column("reasons", overflow="fold")
    table.add_column("state", no_wrap=True)
    for d in docs:
        reasons = "; ".join(str(r) for r in d.get("reasons") or [])
        table.add_row(
            Text(printable(str(d["id"]), one_line=True)),
            Text(_age(now - float(d["created_at"]))),
            Text(_shorten(str(d["subject"]), 40)),
            Text(_shorten(str(d["connection"]), 30)),
            Text(_shorten(str(d["sql"]), 80)),
            Text(_shorten(reasons, 80)),
            Text(str(d["state"]), style="yellow" if d["state"] in ("pending", "timed_out") else ""),
        )
    console.print(table)


def render_request(doc: dict[str, Any], console: Console | None = None, now: float | None = None) -> None:
    console = console or terminal_console()
    now = time.time() if now is None else now
    params = doc.get("params")
    fields: list[tuple[str, str]] = [
        ("id", str(doc["id"])),
        ("state", str(doc["state"])),
        (
            "identity",
            f"{doc['subject']} ({doc['issuer']}); groups: {', '.join(doc.get('groups') or []) or '-'}",
        ),
        ("connection", str(doc["connection"])),
        ("session", str(doc["session_id"])),
        ("approvers", ", ".join(doc.get("approvers") or []) or "(none named by the policy)"),
        ("requested", f"{_ts(doc['created_at'])} ({_age(now - float(doc['created_at']))} ago)"),
        ("client waits until", _ts(doc["wait_until"])),
        ("expires", _ts(doc["expires_at"])),
        ("decided by", str(doc.get("decided_by") or "-")),
        ("decided", _ts(doc.get("decided_at"))),
        ("decision reason", str(doc.get("decision_reason") or "-")),
        ("executed", _ts(doc.get("executed_at"))),
    ]
    if params is not None:
        fields.append(("parameters", json.dumps(params)))
    for i, reason in enumerate(doc.get("reasons") or []):
        fields.append(("reason" if i == 0 else "", str(reason)))
    width = max(len(k) for k, _ in fields)
    for key, value in fields:
        line = Text(f"{key:>{width}}  ", style="bold")
        line.append(printable(value, one_line=True))
        console.print(line)
    console.print(Text("SQL:", style="bold"))
    console.print(Text(printable(str(doc["sql"]))))
