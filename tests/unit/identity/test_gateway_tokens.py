"""Gateway tokens: minting and every refusal, without a network."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import jwt
import pytest

from enforcer.config import GatewayTokenConfig
from enforcer.identity import AuthenticationFailed
from enforcer.identity.gateway_tokens import GatewayTokens, generate_key


@pytest.fixture
def tokens(tmp_path: Path) -> GatewayTokens:
    generate_key(tmp_path / "k.pem")
    return GatewayTokens(GatewayTokenConfig(signing_key_file=tmp_path / "k.pem", max_ttl=3600, clock_skew=5))


def forge(tokens: GatewayTokens, **claims: object) -> str:
    now = int(time.time())
    base: dict[str, object] = {
        "iss": "pgwarden",
        "aud": "pgwarden",
        "sub": "ci-bot",
        "iat": now,
        "exp": now + 60,
    }
    base.update(claims)
    return jwt.encode({k: v for k, v in base.items() if v is not None}, tokens._private, algorithm="EdDSA")


def test_issue_and_verify(tokens: GatewayTokens) -> None:
    ident = tokens.verify("ci-bot", tokens.issue("ci-bot", ["agents", "ci"], 900))
    assert ident.subject == "ci-bot" and ident.groups == ("agents", "ci")
    assert ident.auth_method == "gateway-token" and ident.token_id
    assert ident.expires_at - time.time() == pytest.approx(900, abs=5)


def test_issue_refuses_ttl_over_max(tokens: GatewayTokens) -> None:
    with pytest.raises(ValueError, match="max_ttl"):
        tokens.issue("ci-bot", [], 7200)


@pytest.mark.parametrize(
    "claims,fragment",
    [
        ({"exp": int(time.time()) - 60}, "expired"),
        ({"aud": "someone-else"}, "audience"),
        ({"iss": "evil"}, "unknown issuer"),
        ({"exp": None}, "'exp'"),
        ({"nbf": int(time.time()) + 600}, "not valid yet"),
        ({"exp": int(time.time()) + 86400}, "lifetime"),
        ({"groups": "admins"}, "groups"),
    ],
)
def test_refusals(tokens: GatewayTokens, claims: dict[str, object], fragment: str) -> None:
    with pytest.raises(AuthenticationFailed) as info:
        tokens.verify("ci-bot", forge(tokens, **claims))
    assert fragment in info.value.message and info.value.sqlstate == "28P01"


def test_subject_mismatch_is_28000(tokens: GatewayTokens) -> None:
    with pytest.raises(AuthenticationFailed) as info:
        tokens.verify("admin", tokens.issue("ci-bot", [], 60))
    assert info.value.sqlstate == "28000"


def test_algorithm_confusion_and_none(tokens: GatewayTokens) -> None:
    now = int(time.time())
    claims = {"iss": "pgwarden", "aud": "pgwarden", "sub": "ci-bot", "iat": now, "exp": now + 60}
    unsigned = jwt.encode(claims, None, algorithm="none")
    hs = jwt.encode(claims, "k" * 32, algorithm="HS256")
    for tok in (unsigned, hs):
        with pytest.raises(AuthenticationFailed, match="algorithm"):
            tokens.verify("ci-bot", tok)


def test_other_key_is_refused(tokens: GatewayTokens, tmp_path: Path) -> None:
    generate_key(tmp_path / "other.pem")
    other = GatewayTokens(replace(tokens.config, signing_key_file=tmp_path / "other.pem"))
    with pytest.raises(AuthenticationFailed, match="signature"):
        tokens.verify("ci-bot", other.issue("ci-bot", [], 60))


def test_not_a_token(tokens: GatewayTokens) -> None:
    with pytest.raises(AuthenticationFailed, match="not a token"):
        tokens.verify("ci-bot", "hunter2")
    with pytest.raises(AuthenticationFailed, match="malformed"):
        tokens.verify("ci-bot", "a.b.c")
