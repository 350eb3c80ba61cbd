"""The gateway's HTTP application: health, auditor sign-in, recorded sessions as pages and JSON.

Owns: the routes, which of them need an auditor, and the security headers of every response.
Never: serves a page or a JSON document from the store to anyone but a verified auditor,
or sends a page without a Content-Security-Policy that forbids every external source.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

from starlette.applications import Starlette
from starlette.datastructures import MutableHeaders
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from enforcer.api import pages
from enforcer.api.auth import COOKIE, AuditorGate, AuthRefused
from enforcer.api.session_queries import BadParameter, SessionReader, StoreUnavailable, parse_session_query
from enforcer.identity.model import Authenticator, Identity

log = logging.getLogger("pgwarden.api")

#: Sent with every response that does not set its own (pages add a per-response nonce).
_DEFAULT_HEADERS = (
    ("content-security-policy", "default-src 'none'; frame-ancestors 'none'; base-uri 'none'"),
    ("x-content-type-options", "nosniff"),
    # Not no-referrer: with it Chromium sends "Origin: null" on our own form posts (see _same_origin).
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

JSONHandler = Callable[[Request, Identity], Awaitable[Response]]
PageHandler = Callable[[Request, Identity], Awaitable[pages.Page]]
Endpoint = Callable[[Request], Awaitable[Response]]


def page_csp(nonce: str) -> str:
    return (
        f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; "
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
    *, store_url: str | None, authenticator: Authenticator, auditor_groups: tuple[str, ...]
) -> Starlette:
    """The application; ``store_url`` None means session recording is off (the pages say so)."""
    gate = AuditorGate(authenticator, auditor_groups)
    reader = SessionReader(store_url)

    def html(page: pages.Page, auditor: Identity | None) -> HTMLResponse:
        nonce = secrets.token_urlsafe(18)
        return HTMLResponse(
            pages.render(page, nonce=nonce, auditor=auditor),
            status_code=page.status,
            headers={"content-security-policy": page_csp(nonce)},
        )

    def json_route(handler: JSONHandler) -> Endpoint:
        async def endpoint(request: Request) -> Response:
            try:
                auditor = await gate.auditor(request)
            except AuthRefused as exc:
                headers = {"www-authenticate": 'Bearer realm="pgwarden"'} if exc.status == 401 else None
                return JSONResponse({"error": exc.message}, status_code=exc.status, headers=headers)
            try:
                return await handler(request, auditor)
            except BadParameter as exc:
                return JSONResponse({"error": exc.message, "parameter": exc.parameter}, status_code=400)
            except StoreUnavailable as exc:
                return JSONResponse({"error": exc.message}, status_code=503)

        return endpoint

    def page_route(handler: PageHandler) -> Endpoint:
        async def endpoint(request: Request) -> Response:
            try:
                auditor = await gate.auditor(request)
            except AuthRefused as exc:
                if exc.status == 403:
                    return html(
                        pages.message_page(
                            "Not an auditor",
                            exc.message,
                            status=403,
                            link=("/login", "Sign in as someone else"),
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
                page = await handler(request, auditor)
            except BadParameter as exc:
                page = pages.message_page(
                    "Bad request", exc.message, status=400, link=("/sessions", "All sessions")
                )
            except StoreUnavailable as exc:
                page = pages.message_page("Sessions unavailable", exc.message, status=503)
            return html(page, auditor)

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

    # ------------------------------------------------------------------ sign-in
    async def login_form(request: Request) -> Response:
        reason = _LOGIN_REASONS.get(request.query_params.get("reason", ""))
        next_path = _local_path(request.query_params.get("next"))
        return html(pages.login_page(next_path=next_path, message=reason), None)

    async def login(request: Request) -> Response:
        if not _same_origin(request):
            return PlainTextResponse("cross-site sign-in refused", status_code=403)
        form = await _read_form(request)
        if form is None:
            return PlainTextResponse("the sign-in form is too large", status_code=413)
        next_path = _local_path(form.get("next"))
        token = (form.get("token") or "").strip()
        if not token:
            return html(pages.login_page(next_path=next_path, message="Paste a token.", status=401), None)
        try:
            auditor = gate.require_auditor(await gate.verify(token))
        except AuthRefused as exc:
            return html(pages.login_page(next_path=next_path, message=exc.message, status=exc.status), None)
        log.info("auditor signed in", extra={"event": "api_sign_in", "fields": {"subject": auditor.subject}})
        response = RedirectResponse(next_path, status_code=303)
        response.set_cookie(
            COOKIE,
            token,
            max_age=max(1, int(auditor.expires_at - time.time())),
            path="/",
            secure=request.url.scheme == "https",
            httponly=True,
            samesite="strict",
        )
        return response

    async def logout(request: Request) -> Response:
        if not _same_origin(request):
            return PlainTextResponse("cross-site sign-out refused", status_code=403)
        response = RedirectResponse("/login?reason=signed_out", status_code=303)
        response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
        return response

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok")

    async def root(request: Request) -> Response:
        return RedirectResponse("/sessions", status_code=303)

    app = Starlette(
        routes=[
            Route("/healthz", healthz, methods=["GET"]),
            Route("/", root, methods=["GET"]),
            Route("/login", login_form, methods=["GET"]),
            Route("/login", login, methods=["POST"]),
            Route("/logout", logout, methods=["POST"]),
            Route("/api/sessions", json_route(api_sessions), methods=["GET"]),
            Route("/api/sessions/{session_id}", json_route(api_session), methods=["GET"]),
            Route("/sessions", page_route(sessions_page), methods=["GET"]),
            Route("/sessions/{session_id}", page_route(session_page), methods=["GET"]),
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
        return AuditorGate.token_from(request) is None
    except AuthRefused:
        return False


def _local_path(value: str | None) -> str:
    """``value`` if it is a path on this server, else /sessions (no open redirect)."""
    if (
        not value
        or not value.startswith("/")
        or value.startswith(("//", "/\\"))
        or any(ord(c) < 0x20 or c == "\\" for c in value)
    ):
        return "/sessions"
    return value


def _same_origin(request: Request) -> bool:
    """False for a browser request from another site (a forged sign-in or sign-out form)."""
    if request.headers.get("sec-fetch-site") == "cross-site":
        return False
    origin = request.headers.get("origin")
    if origin is None:
        return True  # not a browser form post (browsers send Origin on POST)
    return urlsplit(origin).netloc == request.headers.get("host", "")


async def _read_form(request: Request) -> dict[str, str] | None:
    """An urlencoded form body as a dict (last value wins), or None when it is too large."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > _MAX_FORM_BYTES:
            return None
    fields = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    return {k: v[-1] for k, v in fields.items()}
