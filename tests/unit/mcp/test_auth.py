"""Tokens for the MCP endpoint: verified by the gateway's own authenticator, on stdio and over HTTP."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from mcp.server.auth.middleware.auth_context import get_access_token
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from enforcer.config import GatewayTokenConfig
from enforcer.identity.gateway_tokens import GatewayTokens, generate_key, load_private_key
from enforcer.mcp.auth import BearerTokenGate, StdioToken, TokenCheck, TokenRefused


@pytest.fixture
def tokens(tmp_path: Path) -> GatewayTokens:
    generate_key(tmp_path / "token.key")
    return GatewayTokens(GatewayTokenConfig(signing_key_file=tmp_path / "token.key"))


def expired(tokens: GatewayTokens) -> str:
    now = int(time.time())
    claims = {"iss": "pgwarden", "aud": "pgwarden", "sub": "ci-bot", "iat": now - 900, "exp": now - 300}
    return jwt.encode(claims, load_private_key(tokens.config.signing_key_file), algorithm="EdDSA")


async def test_verify_accepts_valid_tokens_and_explains_refusals(tokens: GatewayTokens) -> None:
    check = TokenCheck(tokens)
    token = tokens.issue("ci-bot", ["agents"], 600)
    identity = await check.verify(token)
    assert (identity.subject, identity.groups) == ("ci-bot", ("agents",))
    assert await check.verify(f" {token}\n") is identity  # remembered until it expires
    for bad, why in (
        ("", "no token"),
        ("not-a-token", "not a token"),
        (expired(tokens), "expired"),
        (jwt.encode({"aud": "pgwarden"}, "k" * 32, algorithm="HS256"), "no subject"),
        ("x" * 20_000, "too large"),
    ):
        with pytest.raises(TokenRefused, match=why):
            await check.verify(bad)


async def test_a_remembered_token_still_expires(tokens: GatewayTokens) -> None:
    check = TokenCheck(tokens)
    token = tokens.issue("ci-bot", [], 600)
    identity = await check.verify(token)
    check._verified[token] = dataclasses.replace(identity, expires_at=time.time() - 1)
    with pytest.raises(TokenRefused, match="expired"):
        await check.verify(token)


def test_the_stdio_token_comes_from_the_environment_or_a_file_read_each_time(tmp_path: Path) -> None:
    assert StdioToken({"PGWARDEN_TOKEN": " abc \n"}).current() == "abc"
    with pytest.raises(TokenRefused, match="PGWARDEN_TOKEN"):
        StdioToken({}).current()
    file = tmp_path / "token"
    file.write_text("first\n")
    source = StdioToken({"PGWARDEN_TOKEN_FILE": str(file), "PGWARDEN_TOKEN": "ignored"})
    assert source.current() == "first"
    file.write_text("refreshed\n")
    assert source.current() == "refreshed"
    file.unlink()
    with pytest.raises(TokenRefused, match="cannot read the token file"):
        source.current()


def test_http_requests_need_a_valid_bearer_token(tokens: GatewayTokens) -> None:
    async def whoami(request: Request) -> JSONResponse:
        access = get_access_token()
        assert access is not None
        return JSONResponse({"subject": access.subject, "issuer": (access.claims or {}).get("iss")})

    app: Any = BearerTokenGate(Starlette(routes=[Route("/mcp", whoami)]), TokenCheck(tokens))
    client = TestClient(app)
    good = tokens.issue("ci-bot", ["agents"], 600)
    assert client.get("/mcp", headers={"Authorization": f"Bearer {good}"}).json() == {
        "subject": "ci-bot",
        "issuer": "pgwarden",
    }
    for header, why in (
        (None, "Authorization: Bearer"),
        ("Token abc", "Authorization: Bearer"),
        (f"Bearer {expired(tokens)}", "expired"),
    ):
        resp = client.get("/mcp", headers={"Authorization": header} if header else {})
        assert resp.status_code == 401
        assert why in resp.json()["error_description"]
        assert resp.headers["www-authenticate"].startswith(
            'Bearer error="invalid_token", error_description="'
        )
