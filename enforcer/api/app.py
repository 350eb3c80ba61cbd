"""The gateway's HTTP application: health, sign-in, recorded sessions and approval requests.

Owns: the routes, who may use each (recorded sessions: auditors; an approval request: its
approvers and auditors; a decision: whom the approval service admits), the cross-site checks
of cookie-authenticated posts, and the security headers of every response.
Never: serves a recorded session to anyone but a verified auditor, decides an approval without
the service's approver check, or sends a page without a Content-Security-Policy that forbids
every external source.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs, quote

from starlette.applications import Starlette
from starlette.datastructures import MutableHeaders
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from enforcer import metrics
from enforcer.api import approval_pages, pages
from enforcer.api.approval_queries import (
    MAX_BODY_BYTES,
    ApprovalDesk,
    ApprovalsDisabled,
    BodyTooLarge,
    parse_approval_query,
    parse_decision,
)
from enforcer.api.auth import COOKIE, AuthRefused, TokenGate, check_cookie_post, csrf_token, same_origin
from enforcer.api.session_queries import BadParameter, SessionReader, StoreUnavailable, parse_session_query
from enforcer.approvals.service import ApprovalRefused, ApprovalService
from enforcer.approvals.store import ApprovalStoreError
from enforcer.identity.model import Authenticator, Identity

log = logging.getLogger("pgwarden.api")

#: Sent with every response that does not set its own (pages add a per-response nonce).
_DEFAULT_HEADERS = (
    ("content-security-policy", "default-src 'none'; frame-ancestors 'none'; base-uri 'none'"),
    ("x-content-type-options", "nosniff"),
    # Not no-referrer: with it Chromium sends "Origin: null" on our own form posts (see same_origin).
    ("referrer-policy", "same-origin"),
    ("x-frame-options", "DENY"),
    ("cache-control", "no-store"),
)
_MAX_FORM_BYTES = 64 * 1024
#: Statements on one session page; the JSON API returns them all.
STATEMENTS_PER_PAGE = 1000
_LOGIN_REASONS = {
    "missing": "Sign in to see recorded sessions.",
    "refused": "Your token was refused (expired, or not valid for this gateway); paste a fresh one.",
    "signed_out": "Signed out.",
}
_MISSING_APPROVALS = "Sign in to see approval requests."

JSONHandler = Callable[[Request, Identity], Awaitable[Response]]
PageHandler = Callable[[Request, Identity], Awaitable[pages.Page]]
Endpoint = Callable[[Request], Awaitable[Response]]


def page_csp(nonce: str, *, fetches: bool = False) -> str:
    connect = "connect-src 'self'; " if fetches else ""
    return (
        f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; {connect}"
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    )


class SecurityHeaders:
    """Adds :data:`_DEFAULT_HEADERS` a response has not set itself (404s from the router included)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in _DEFAULT_HEADERS:
                    if name not in headers:
                        headers.append(name, value)
            await send(message)

        await self.app(scope, receive, send_with_headers)


def create_app(
    *,
    store_url: str | None,
    authenticator: Authenticator,
    auditor_groups: tuple[str, ...],
    approvals: ApprovalService | None = None,
    readiness: Callable[[], Awaitable[list[str]]] | None = None,
) -> Starlette:
    """The application; ``store_url`` None means session recording is off, ``approvals`` None that
    approvals are (the pages and routes say so)."""
    gate = TokenGate(authenticator, auditor_groups)
    reader = SessionReader(store_url)
    desk = ApprovalDesk(approvals, auditor_groups)

    def html(page: pages.Page, viewer: Identity | None, request: Request | None = None) -> HTMLResponse:
        nonce = secrets.token_urlsafe(18)
        cookie = request.cookies.get(COOKIE) if request is not None and viewer is not None else None
        return HTMLResponse(
            pages.render(
                page,
                nonce=nonce,
                viewer=viewer,
                csrf=csrf_token(cookie.strip()) if cookie else None,
                approvals=desk.enabled,
            ),
            status_code=page.status,
            headers={"content-security-policy": page_csp(nonce, fetches=page.fetches)},
        )

    def json_route(handler: JSONHandler, *, auditors_only: bool = True) -> Endpoint:
        async def endpoint(request: Request) -> Response:
            try:
                if request.method == "POST":
                    check_cookie_post(request)
                who = await (gate.auditor(request) if auditors_only else gate.identity(request))
            except AuthRefused as exc:
                headers = {"www-authenticate": 'Bearer realm="pgwarden"'} if exc.status == 401 else None
                return JSONResponse({"error": exc.message}, status_code=exc.status, headers=headers)
            try:
                return await handler(request, who)
            except BadParameter as exc:
                return JSONResponse({"error": exc.message, "parameter": exc.parameter}, status_code=400)
            except BodyTooLarge:
                return JSONResponse({"error": f"the body is over {MAX_BODY_BYTES} bytes"}, status_code=413)
            except ApprovalRefused as exc:
                return JSONResponse({"error": exc.message}, status_code=exc.status)
            except (StoreUnavailable, ApprovalsDisabled) as exc:
                return JSONResponse({"error": str(exc)}, status_code=503)
            except ApprovalStoreError as exc:
                log.error("%s", exc, extra={"event": "approval_store_failed"})
                return JSONResponse({"error": "cannot use the approval store; see the gateway log"}, 503)

        return endpoint

    def page_route(handler: PageHandler, *, auditors_only: bool = True) -> Endpoint:
        async def endpoint(request: Request) -> Response:
            try:
                who = await (gate.auditor(request) if auditors_only else gate.identity(request))
            except AuthRefused as exc:
                if exc.status == 403:
                    return html(
                        pages.message_page(
                            "Not an auditor",
                            exc.message,
                            status=403,
                            link=("/approvals", "Approval requests")
                            if desk.enabled
                            else ("/login", "Sign in as someone else"),
                        ),
                        None,
                    )
                target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                reason = "missing" if _carries_no_token(request) else "refused"
                response = RedirectResponse(
                    f"/login?next={quote(target, safe='')}&reason={reason}", status_code=303
                )
                if request.cookies.get(COOKIE):
                    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
                return response
            try:
                page = await handler(request, who)
            except BadParameter as exc:
                home = ("/sessions", "All sessions") if auditors_only else ("/approvals", "All requests")
                page = pages.message_page("Bad request", exc.message, status=400, link=home)
            except StoreUnavailable as exc:
                page = pages.message_page("Sessions unavailable", exc.message, status=503)
            except ApprovalsDisabled as exc:
                page = pages.message_page("Approvals unavailable", str(exc), status=503)
            except ApprovalRefused as exc:
                title = "No such request" if exc.status == 404 else "Not allowed"
                page = pages.message_page(
                    title, exc.message, status=exc.status, link=("/approvals", "All requests")
                )
            except ApprovalStoreError as exc:
                log.error("%s", exc, extra={"event": "approval_store_failed"})
                page = pages.message_page(
                    "Approvals unavailable", "cannot use the approval store; see the gateway log", status=503
                )
            return html(page, who, request)

        return endpoint

    # ------------------------------------------------------------------ JSON
    async def api_sessions(request: Request, auditor: Identity) -> Response:
        query = parse_session_query(request.query_params, now=time.time())
        return JSONResponse(await reader.list_sessions(query))

    async def api_session(request: Request, auditor: Identity) -> Response:
        session_id = request.path_params["session_id"]
        found = await reader.session(session_id)
        if found is None:
            return JSONResponse({"error": f"no recorded session has the id {session_id[:80]!r}"}, 404)
        session, statements = found
        return JSONResponse({"session": session, "statements": statements})

    async def api_approvals(request: Request, viewer: Identity) -> Response:
        query = parse_approval_query(request.query_params)
        found = await desk.list_requests(query, viewer)
        return JSONResponse([r.to_document() for r in found])

    async def api_approval(request: Request, viewer: Identity) -> Response:
        req = await desk.get(request.path_params["approval_id"], viewer)
        return JSONResponse(req.to_document())

    def decision(approve: bool) -> JSONHandler:
        async def decide(request: Request, approver: Identity) -> Response:
            approval_id = request.path_params["approval_id"]
            desk.require_enabled()  # a 503 says more than a complaint about the body
            reason = parse_decision(await _read_body(request), approve=approve)
            try:
                req = await desk.decide(approval_id, approver, approve=approve, reason=reason)
            except ApprovalRefused as exc:
                log.info(
                    "approval decision refused: %s",
                    exc.message,
                    extra={
                        "event": "api_approval_refused",
                        "fields": {
                            "approval_id": approval_id[:80],
                            "by": approver.subject,
                            "status": exc.status,
                        },
                    },
                )
                raise
            return JSONResponse(req.to_document())

        return decide

    # ------------------------------------------------------------------ pages
    async def sessions_page(request: Request, auditor: Identity) -> pages.Page:
        query = parse_session_query(request.query_params, now=time.time())
        filters = {k: v for k, v in request.query_params.items()}
        return pages.sessions_page(await reader.list_sessions(query), filters)

    async def session_page(request: Request, auditor: Identity) -> pages.Page:
        session_id = request.path_params["session_id"]
        found = await reader.session(session_id)
        if found is None:
            return pages.message_page(
                "No such session",
                f"No recorded session has the id {session_id[:80]!r}.",
                status=404,
                link=("/sessions", "All sessions"),
            )
        session, statements = found
        return pages.session_page(
            session, statements, page=_page_number(request, statements), per_page=STATEMENTS_PER_PAGE
        )

    async def approvals_page(request: Request, viewer: Identity) -> pages.Page:
        query = parse_approval_query(request.query_params)
        found = await desk.list_requests(query, viewer)
        return approval_pages.approvals_page(
            found, lambda r: desk.why_not_decide(r, viewer), query=query, now=time.time()
        )

    async def approval_rows(request: Request) -> Response:
        """The list page's rows alone, for its live refresh (errors as plain text, never a redirect)."""
        try:
            viewer = await gate.identity(request)
            query = parse_approval_query(request.query_params)
            found = await desk.list_requests(query, viewer)
        except AuthRefused as exc:
            return PlainTextResponse(exc.message, status_code=exc.status)
        except BadParameter as exc:
            return PlainTextResponse(exc.message, status_code=400)
        except ApprovalsDisabled as exc:
            return PlainTextResponse(str(exc), status_code=503)
        except ApprovalStoreError as exc:
            log.error("%s", exc, extra={"event": "approval_store_failed"})
            return PlainTextResponse("cannot use the approval store; see the gateway log", status_code=503)
        rows = approval_pages.approval_rows(found, lambda r: desk.why_not_decide(r, viewer), now=time.time())
        return HTMLResponse(rows)

    async def approval_page(request: Request, viewer: Identity) -> pages.Page:
        req = await desk.get(request.path_params["approval_id"], viewer)
        return approval_pages.approval_page(
            req, desk.why_not_decide(req, viewer), now=time.time(), auditor=gate.is_auditor(viewer)
        )

    # ------------------------------------------------------------------ sign-in
    async def login_form(request: Request) -> Response:
        next_path = _local_path(request.query_params.get("next"))
        reason = _LOGIN_REASONS.get(request.query_params.get("reason", ""))
        if reason == _LOGIN_REASONS["missing"] and next_path.startswith("/approvals"):
            reason = _MISSING_APPROVALS
        return html(pages.login_page(next_path=next_path, message=reason, approvals=desk.enabled), None)

    async def login(request: Request) -> Response:
        if not same_origin(request):
            return PlainTextResponse("cross-site sign-in refused", status_code=403)
        form = await _read_form(request)
        if form is None:
            return PlainTextResponse("the sign-in form is too large", status_code=413)
        next_path = _local_path(form.get("next"))
        token = (form.get("token") or "").strip()

        def refused(message: str, status: int) -> Response:
            page = pages.login_page(
                next_path=next_path, message=message, status=status, approvals=desk.enabled
            )
            return html(page, None)

        if not token:
            return refused("Paste a token.", 401)
        try:
            who = await gate.verify(token)
            # With approvals on, anyone may be an approver (the policy names the groups per request):
            # each page then decides what this identity may see.
            if not desk.enabled:
                gate.require_auditor(who)
        except AuthRefused as exc:
            return refused(exc.message, exc.status)
        log.info("signed in to the API", extra={"event": "api_sign_in", "fields": {"subject": who.subject}})
        if not next_path:
            next_path = "/approvals" if desk.enabled and not gate.is_auditor(who) else "/sessions"
        response = RedirectResponse(next_path, status_code=303)
        response.set_cookie(
            COOKIE,
            token,
            max_age=max(1, int(who.expires_at - time.time())),
            path="/",
            secure=request.url.scheme == "https",
            httponly=True,
            samesite="strict",
        )
        return response

    async def logout(request: Request) -> Response:
        if not same_origin(request):
            return PlainTextResponse("cross-site sign-out refused", status_code=403)
        response = RedirectResponse("/login?reason=signed_out", status_code=303)
        response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
        return response

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok")

    async def readyz(request: Request) -> Response:
        """200 when the gateway can take traffic; 503 naming every reason it cannot."""
        problems = await readiness() if readiness is not None else []
        if problems:
            return PlainTextResponse("not ready: " + "; ".join(problems) + "\n", status_code=503)
        return PlainTextResponse("ready\n")

    async def metrics_endpoint(request: Request) -> Response:
        body, content_type = await asyncio.to_thread(metrics.render)
        return Response(body, media_type=content_type)

    async def root(request: Request) -> Response:
        return RedirectResponse("/sessions", status_code=303)

    app = Starlette(
        routes=[
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
            Route("/metrics", metrics_endpoint, methods=["GET"]),
            Route("/", root, methods=["GET"]),
            Route("/login", login_form, methods=["GET"]),
            Route("/login", login, methods=["POST"]),
            Route("/logout", logout, methods=["POST"]),
            Route("/api/sessions", json_route(api_sessions), methods=["GET"]),
            Route("/api/sessions/{session_id}", json_route(api_session), methods=["GET"]),
            Route("/sessions", page_route(sessions_page), methods=["GET"]),
            Route("/sessions/{session_id}", page_route(session_page), methods=["GET"]),
            Route("/api/approvals", json_route(api_approvals, auditors_only=False), methods=["GET"]),
            Route(
                "/api/approvals/{approval_id}", json_route(api_approval, auditors_only=False), methods=["GET"]
            ),
            Route(
                "/api/approvals/{approval_id}/approve",
                json_route(decision(approve=True), auditors_only=False),
                methods=["POST"],
            ),
            Route(
                "/api/approvals/{approval_id}/reject",
                json_route(decision(approve=False), auditors_only=False),
                methods=["POST"],
            ),
            Route("/approvals", page_route(approvals_page, auditors_only=False), methods=["GET"]),
            Route("/approvals/rows", approval_rows, methods=["GET"]),
            Route(
                "/approvals/{approval_id}", page_route(approval_page, auditors_only=False), methods=["GET"]
            ),
        ],
        middleware=[Middleware(SecurityHeaders)],
    )
    app.state.session_reader = reader
    return app


def close_app(app: Starlette) -> None:
    """Release what :func:`create_app` opened (the session store connection)."""
    reader = getattr(app.state, "session_reader", None)
    if isinstance(reader, SessionReader):
        reader.close()


def _page_number(request: Request, statements: list[dict[str, Any]]) -> int:
    unknown = sorted(set(request.query_params) - {"page"})
    if unknown:
        raise BadParameter(unknown[0], f"{unknown[0][:40]}: unknown parameter; use page")
    raw = request.query_params.get("page", "1").strip() or "1"
    last = max(1, -(-len(statements) // STATEMENTS_PER_PAGE))
    if not raw.isdigit() or not 1 <= int(raw) <= last:
        raise BadParameter("page", f"page: expected an integer from 1 to {last}, got {raw[:40]!r}")
    return int(raw)


def _carries_no_token(request: Request) -> bool:
    try:
        return TokenGate.token_from(request) is None
    except AuthRefused:
        return False


def _local_path(value: str | None) -> str:
    """``value`` if it is a path on this server, else "" (no open redirect)."""
    if (
        not value
        or not value.startswith("/")
        or value.startswith(("//", "/\\"))
        or any(ord(c) < 0x20 or c == "\\" for c in value)
    ):
        return ""
    return value


async def _read_form(request: Request) -> dict[str, str] | None:
    """An urlencoded form body as a dict (last value wins), or None when it is too large."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > _MAX_FORM_BYTES:
            return None
    fields = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    return {k: v[-1] for k, v in fields.items()}


async def _read_body(request: Request) -> bytes:
    """The request body, or BodyTooLarge past :data:`MAX_BODY_BYTES`."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise BodyTooLarge
    return bytes(body)
