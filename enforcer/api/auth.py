"""Who is asking: a verified token, whether its identity is an auditor, and whether a cookie POST is ours.

Owns: finding the token in a request (``Authorization: Bearer`` or the login
cookie), verifying it with the gateway's own authenticator, the auditor check,
and the cross-site request checks for requests that a browser authenticates
with the cookie (Origin / Sec-Fetch-Site, and a CSRF token the pages carry).
Never: logs, echoes or stores the token anywhere but the HttpOnly cookie the person asked for.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from urllib.parse import urlsplit

import jwt
from starlette.requests import Request

from enforcer.identity.model import AuthenticationFailed, Authenticator, Identity

log = logging.getLogger("pgwarden.api")

COOKIE = "pgwarden_token"
#: The header the pages send their CSRF token in (see :func:`csrf_token`).
CSRF_HEADER = "x-pgwarden-csrf"
#: Longer tokens are refused before any parsing (OIDC tokens are a few KiB at most).
MAX_TOKEN_CHARS = 16 * 1024


class AuthRefused(Exception):
    """401 (no usable token) or 403 (a valid token, but not allowed); ``message`` is safe to show."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class TokenGate:
    """Verifies the token a request carries; knows which identities are auditors (``auditor_groups``)."""

    def __init__(self, authenticator: Authenticator, auditor_groups: tuple[str, ...]) -> None:
        if not auditor_groups:
            raise ValueError("name at least one auditor group")
        self.authenticator = authenticator
        self.auditor_groups = auditor_groups

    @staticmethod
    def token_from(request: Request) -> str | None:
        """The bearer token if the request has an Authorization header, else the login cookie."""
        header = request.headers.get("authorization")
        if header is not None:
            scheme, _, token = header.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise AuthRefused(401, "the Authorization header must be 'Bearer <token>'")
            return token.strip()
        cookie = request.cookies.get(COOKIE)
        return cookie.strip() if cookie else None

    async def verify(self, token: str) -> Identity:
        """The identity the token proves, verified by the gateway's authenticator; else AuthRefused(401)."""
        if len(token) > MAX_TOKEN_CHARS:
            raise AuthRefused(401, f"the token is too large (over {MAX_TOKEN_CHARS} characters)")
        try:
            claims = jwt.decode(token, options={"verify_signature": False})
        except jwt.InvalidTokenError:
            raise AuthRefused(
                401,
                "that is not a token; paste a token from `pgwarden token issue` or your identity provider",
            ) from None
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject:
            raise AuthRefused(401, "the token has no subject (sub claim)")
        try:
            # The unverified subject only names who the token claims to be; authenticate checks it all.
            return await self.authenticator.authenticate(subject, token)
        except AuthenticationFailed as exc:
            log.info(
                "API sign-in refused: %s",
                exc.message,
                # The subject is unverified here: keep it short and on one line.
                extra={
                    "event": "api_auth_failed",
                    "fields": {"subject": subject[:200].encode("unicode_escape").decode()},
                },
            )
            raise AuthRefused(401, exc.message) from None

    def is_auditor(self, identity: Identity) -> bool:
        return bool(set(identity.groups) & set(self.auditor_groups))

    def require_auditor(self, identity: Identity) -> Identity:
        if self.is_auditor(identity):
            return identity
        raise AuthRefused(
            403,
            f"{identity.subject} is not an auditor: the session pages need membership of "
            f"{' or '.join(self.auditor_groups)}",
        )

    async def identity(self, request: Request) -> Identity:
        """Whoever this request's token proves, auditor or not; else AuthRefused(401)."""
        token = self.token_from(request)
        if token is None:
            raise AuthRefused(
                401, "sign in: send 'Authorization: Bearer <token>' or log in at /login with a token"
            )
        return await self.verify(token)

    async def auditor(self, request: Request) -> Identity:
        """The auditor making this request, or AuthRefused."""
        return self.require_auditor(await self.identity(request))


def same_origin(request: Request) -> bool:
    """False for a browser request from another site (a forged form post or fetch)."""
    if request.headers.get("sec-fetch-site") == "cross-site":
        return False
    origin = request.headers.get("origin")
    if origin is None:
        return True  # not a browser form post (browsers send Origin on POST)
    return urlsplit(origin).netloc == request.headers.get("host", "")


def csrf_token(cookie_token: str) -> str:
    """The CSRF token of a signed-in browser: derived from its cookie, so no server state is needed.

    Another site can neither read the cookie (HttpOnly) nor our pages (same-origin policy), so it
    cannot compute or learn this value; the hash reveals nothing of the token itself."""
    return hmac.new(b"pgwarden csrf v1", cookie_token.encode(), hashlib.sha256).hexdigest()


def check_cookie_post(request: Request) -> None:
    """Refuse (403) a state-changing request authenticated by the cookie unless it comes from our page.

    Requests with ``Authorization: Bearer`` need no check: a browser never adds that header to a
    cross-site request on its own."""
    if request.headers.get("authorization") is not None:
        return
    cookie = request.cookies.get(COOKIE)
    if not cookie:
        return  # no credentials at all: authentication refuses it
    sent = request.headers.get(CSRF_HEADER, "")
    if not same_origin(request) or not hmac.compare_digest(
        sent.encode(), csrf_token(cookie.strip()).encode()
    ):
        raise AuthRefused(
            403,
            "refused a cross-site or stale request: reload the page and try again "
            f"(signed-in browsers must send the page's {CSRF_HEADER} header from this site)",
        )
