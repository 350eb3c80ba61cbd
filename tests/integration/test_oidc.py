"""OIDC tokens from a local issuer (discovery + JWKS over HTTP) with real clients through the gateway."""

from __future__ import annotations

import time
from collections.abc import Iterator

import asyncpg
import psycopg
import pytest

from tests.conftest import REPO
from tests.integration.wireclient import WireClient
from tests.oidc_issuer import LocalIssuer

pytestmark = pytest.mark.integration

CI_POLICY = REPO / "testdata" / "policies" / "github_actions"


@pytest.fixture(scope="module")
def issuers() -> Iterator[tuple[LocalIssuer, LocalIssuer]]:
    github, okta = LocalIssuer(), LocalIssuer()
    yield github, okta
    github.stop()
    okta.stop()


@pytest.fixture(scope="module")
def gw(gateway_factory, issuers):
    github, okta = issuers
    return gateway_factory(
        policy={"paths": [str(CI_POLICY)]},
        identity={
            "oidc": [
                {
                    "name": "github",
                    "issuer": github.url,
                    "audiences": ["pgwarden"],
                    "groups_claims": ["repository_owner"],
                    "user_map": {
                        "repo:acme/app:ref:refs/heads/main": "ci-main",
                        "repo:acme/app:ref:refs/heads/feature": "ci-feature",
                        "repo:evil/fork:ref:refs/heads/main": "ci-fork",
                    },
                    "max_token_lifetime": "1h",
                },
                {
                    "name": "okta",
                    "issuer": okta.url,
                    "audiences": ["pgwarden"],
                    "groups_claims": ["groups"],
                    "jwks_refresh_min_interval": "200ms",
                },
            ]
        },
    )


def actions_token(github: LocalIssuer, repo: str, ref: str, key: str = "rsa") -> str:
    return github.issue(
        {
            "sub": f"repo:{repo}:ref:{ref}",
            "repository": repo,
            "repository_owner": repo.split("/")[0],
            "ref": ref,
            "workflow": "deploy",
            "environment": "production",
        },
        key=key,
    )


def test_github_actions_main_may_write_branches_may_not(gw, issuers, upstream) -> None:
    github, _ = issuers
    main = actions_token(github, "acme/app", "refs/heads/main")
    with psycopg.connect(gw.dsn(user="ci-main", password=main), autocommit=True) as conn:
        conn.execute("INSERT INTO audit_notes (note) VALUES ('deployed from main')")
    feature = actions_token(github, "acme/app", "refs/heads/feature", key="ec")
    with psycopg.connect(gw.dsn(user="ci-feature", password=feature), autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM products").fetchone() == (4,)
        with pytest.raises(psycopg.errors.InsufficientPrivilege) as info:
            conn.execute("INSERT INTO audit_notes (note) VALUES ('from a branch')")
        assert "only from acme/app on refs/heads/main" in str(info.value)
    fork = actions_token(github, "evil/fork", "refs/heads/main", key="ed25519")
    with (
        psycopg.connect(gw.dsn(user="ci-fork", password=fork), autocommit=True) as conn,
        pytest.raises(psycopg.errors.InsufficientPrivilege),
    ):
        conn.execute("DELETE FROM audit_notes WHERE id > 0")
    notes = upstream.pg.psql(
        "SELECT note FROM audit_notes ORDER BY id",
        database="demo",
        user="app",
        password=upstream.app_password,
    )
    assert notes.split() == ["deployed", "from", "main"]
    record = next(
        r for r in gw.decisions() if r["input"]["identity"]["subject"] == "repo:acme/app:ref:refs/heads/main"
    )
    assert record["input"]["identity"]["auth_method"] == "oidc"
    assert record["input"]["identity"]["claims"]["workflow"] == "deploy"
    assert record["input"]["identity"]["groups"] == ["acme"]


async def test_okta_token_with_asyncpg(gw, issuers) -> None:
    _, okta = issuers
    token = okta.issue({"sub": "alice", "groups": ["agents", "engineering"]}, key="ec")
    conn = await asyncpg.connect(
        host="127.0.0.1", port=gw.port, user="alice", database="demo", password=token, ssl="require"
    )
    try:
        assert await conn.fetchval("SELECT count(*) FROM products") == 4
    finally:
        await conn.close()


def test_refusals_are_28P01_with_a_reason(gw, issuers) -> None:
    _, okta = issuers
    stranger = LocalIssuer()
    stranger_token = stranger.issue({"sub": "alice"})
    stranger.stop()
    cases = [
        (okta.issue({"sub": "alice"}, lifetime=-60), "alice", "expired"),
        (okta.issue({"sub": "alice", "aud": "someone-else"}), "alice", "audience"),
        (okta.issue({"sub": "alice"}, lifetime=86400), "alice", "lifetime"),
        (stranger_token, "alice", "unknown issuer"),
    ]
    for token, user, fragment in cases:
        c = WireClient(gw.port)
        err = c.login(user, token)[-1]
        assert err.sqlstate == "28P01" and fragment in err.message, (fragment, err.message)
    c = WireClient(gw.port)
    err = c.login("mallory", okta.issue({"sub": "alice"}))[-1]
    assert err.sqlstate == "28000" and "user='alice'" in err.message
    logs = gw.logs()
    assert "auth_failed" in logs


def test_key_rotation_is_picked_up(gw, issuers) -> None:
    _, okta = issuers
    okta.rotate("rsa", drop_old=True)
    time.sleep(0.3)  # past the refetch rate limit
    token = okta.issue({"sub": "alice", "groups": ["agents"]})
    with psycopg.connect(gw.dsn(user="alice", password=token)) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_gateway_tokens_still_work_beside_oidc(gw) -> None:
    with psycopg.connect(gw.dsn()) as conn:
        assert conn.execute("SELECT count(*) FROM products").fetchone() == (4,)
