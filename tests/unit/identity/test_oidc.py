"""OIDC verification against a real issuer on loopback: keys, algorithms, claims, refetching, mapping."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import replace
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from enforcer.config import OIDCIssuerConfig
from enforcer.identity import AuthenticationFailed, Identity
from enforcer.identity.oidc import JWKS_MAX_AGE, OIDCVerifier
from tests.oidc_issuer import LocalIssuer

INTERVAL = 30.0


class FakeClock:
    """The monotonic clock behind refetch rate limits, advanced by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def issuer() -> Iterator[LocalIssuer]:
    idp = LocalIssuer()
    yield idp
    idp.stop()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def config_for(idp: LocalIssuer, **changes: Any) -> OIDCIssuerConfig:
    base = OIDCIssuerConfig(
        name="test-idp",
        issuer=idp.url,
        audiences=("pgwarden",),
        algorithms=("RS256", "PS256", "ES256", "EdDSA"),
        max_token_lifetime=3600,
        clock_skew=5,
        jwks_refresh_min_interval=INTERVAL,
        http_timeout=2,
    )
    return replace(base, **changes)


MakeVerifier = Callable[..., OIDCVerifier]


@pytest.fixture
async def make_verifier(clock: FakeClock) -> AsyncIterator[MakeVerifier]:
    made: list[OIDCVerifier] = []

    def make(*configs: OIDCIssuerConfig) -> OIDCVerifier:
        verifier = OIDCVerifier(list(configs), clock=clock)
        made.append(verifier)
        return verifier

    yield make
    for verifier in made:
        await verifier.aclose()


@pytest.fixture
def verifier(issuer: LocalIssuer, make_verifier: MakeVerifier) -> OIDCVerifier:
    return make_verifier(config_for(issuer))


async def refused(verifier: OIDCVerifier, token: str, user: str = "alice") -> AuthenticationFailed:
    with pytest.raises(AuthenticationFailed) as info:
        await verifier.authenticate(user, token)
    return info.value


def rsa_private(idp: LocalIssuer) -> rsa.RSAPrivateKey:
    key = idp.private_key("rsa")
    assert isinstance(key, rsa.RSAPrivateKey)
    return key


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hmac_token(header: dict[str, Any], claims: dict[str, Any], secret: bytes) -> str:
    """HS256 by hand: PyJWT rightly refuses to use a PEM public key as an HMAC secret."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


# ---------------------------------------------------------------------- accepted tokens


@pytest.mark.parametrize("key", ["rsa", "ec", "ed25519"])
async def test_accepts_each_key_type(issuer: LocalIssuer, verifier: OIDCVerifier, key: str) -> None:
    token = issuer.issue({"groups": ["analysts"]}, key=key)
    ident = await verifier.authenticate("alice", token)
    assert isinstance(ident, Identity)
    assert ident.subject == "alice" and ident.issuer == issuer.url
    assert ident.groups == ("analysts",) and ident.auth_method == "oidc"
    assert ident.expires_at == ident.claims["exp"] and ident.token_id == ident.claims["jti"]


async def test_rsa_pss_is_an_rsa_algorithm(issuer: LocalIssuer, verifier: OIDCVerifier) -> None:
    ident = await verifier.authenticate("alice", issuer.issue(alg="PS256"))
    assert ident.subject == "alice"


async def test_claims_are_exactly_the_tokens(issuer: LocalIssuer, verifier: OIDCVerifier) -> None:
    token = issuer.issue({"email": "alice@example.com", "jti": None})
    ident = await verifier.authenticate("alice", token)
    assert set(ident.claims) == {"iss", "aud", "sub", "iat", "exp", "email"}
    assert ident.token_id is None and ident.groups == ()


async def test_audience_list_needs_one_match(issuer: LocalIssuer, make_verifier: MakeVerifier) -> None:
    verifier = make_verifier(config_for(issuer, audiences=("pgwarden", "api://db")))
    await verifier.authenticate("alice", issuer.issue({"aud": ["other", "api://db"]}))
    err = await refused(verifier, issuer.issue({"aud": ["other", "another"]}))
    assert "audience" in err.message and "'api://db'" in err.message


# ---------------------------------------------------------------------- claim refusals


def _now() -> int:
    return int(time.time())


@pytest.mark.parametrize(
    "claims,fragment",
    [
        ({"iat": _now() - 900, "exp": _now() - 60}, "expired"),
        ({"nbf": _now() + 600}, "not valid yet"),
        ({"iat": _now() + 600, "exp": _now() + 900}, "not valid yet"),
        ({"aud": "someone-else"}, "wrong audience"),
        ({"exp": None}, "'exp'"),
        ({"iat": None}, "'iat'"),
        ({"sub": None}, "'sub'"),
        ({"aud": None}, "'aud'"),
        (
            {"iat": _now(), "exp": _now() + 7200},
            "lifetime 7200s exceeds the maximum this gateway accepts (3600s)",
        ),
        ({"groups": 42}, "claim 'groups' must be a string or a list of strings"),
        ({"groups": ["ok", 1]}, "claim 'groups' must be a string or a list of strings"),
        ({"exp": "soon"}, "malformed"),
    ],
)
async def test_claim_refusals(
    issuer: LocalIssuer, verifier: OIDCVerifier, claims: dict[str, Any], fragment: str
) -> None:
    err = await refused(verifier, issuer.issue(claims))
    assert fragment in err.message and err.sqlstate == "28P01"


async def test_lifetime_within_skew_is_accepted(issuer: LocalIssuer, verifier: OIDCVerifier) -> None:
    await verifier.authenticate("alice", issuer.issue(lifetime=3600 + 5))


async def test_not_a_token(verifier: OIDCVerifier) -> None:
    for password in ("hunter2", "a.b", "x" * 70_000):
        err = await refused(verifier, password)
        assert "not a token" in err.message or "too large" in err.message
        assert password not in err.message


async def test_unknown_issuer_names_the_trusted_ones(issuer: LocalIssuer, verifier: OIDCVerifier) -> None:
    err = await refused(verifier, issuer.issue({"iss": "https://evil.example"}))
    assert err.message == (
        "token is from an unknown issuer 'https://evil.example'; "
        f"this gateway trusts: test-idp ({issuer.url})"
    )
    err = await refused(verifier, issuer.issue({"iss": None}))
    assert err.message.startswith("token lacks the required claim 'iss'; this gateway trusts: test-idp")
    assert issuer.jwks_requests == 0


# ---------------------------------------------------------------------- algorithms


async def test_alg_none_is_refused_before_any_fetch(issuer: LocalIssuer, verifier: OIDCVerifier) -> None:
    claims = issuer.claims()
    for alg in ("none", "None", "NONE"):
        header = {"alg": alg, "typ": "JWT", "kid": issuer.kid("rsa")}
        token = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}."
        err = await refused(verifier, token)
        assert f"does not accept ({alg}); test-idp tokens must use RS256, PS256" in err.message
    assert issuer.jwks_requests == 0 and issuer.discovery_requests == 0


async def test_odd_alg_headers_are_quoted(issuer: LocalIssuer, verifier: OIDCVerifier) -> None:
    payload = b64(json.dumps(issuer.claims()).encode())
    for alg, shown in ((["RS256"], "['RS256']"), ("RS256\n", "'RS256\\n'"), (None, "None")):
        header = {"alg": alg, "kid": issuer.kid("rsa")}
        err = await refused(verifier, f"{b64(json.dumps(header).encode())}.{payload}.c2ln")
        assert f"does not accept ({shown});" in err.message


async def test_hs256_with_the_rsa_public_key_is_refused(issuer: LocalIssuer, verifier: OIDCVerifier) -> None:
    public = rsa_private(issuer).public_key()
    pem = public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    jwk = json.dumps(RSAAlgorithm.to_jwk(public, as_dict=True)).encode()
    await verifier.prefetch()
    for secret in (pem, jwk):
        token = hmac_token({"alg": "HS256", "typ": "JWT", "kid": issuer.kid("rsa")}, issuer.claims(), secret)
        err = await refused(verifier, token)
        assert "algorithm this gateway does not accept (HS256)" in err.message


def test_hmac_cannot_be_allowed(issuer: LocalIssuer) -> None:
    for algorithms in (("RS256", "HS256"), ("none",), ()):
        with pytest.raises(ValueError, match=r"identity.oidc\[test-idp\].algorithms"):
            OIDCVerifier([config_for(issuer, algorithms=algorithms)])


async def test_alg_outside_the_allow_list(issuer: LocalIssuer, make_verifier: MakeVerifier) -> None:
    verifier = make_verifier(config_for(issuer, algorithms=("RS256",)))
    for token, alg in ((issuer.issue(alg="PS256"), "PS256"), (issuer.issue(key="ec"), "ES256")):
        err = await refused(verifier, token)
        assert err.message == (
            f"token is signed with an algorithm this gateway does not accept ({alg}); "
            "test-idp tokens must use RS256"
        )


@pytest.mark.parametrize(
    "signer,alg,kid_of,kind",
    [
        ("rsa", "RS256", "ec", "EC P-256"),
        ("rsa", "RS256", "ed25519", "OKP Ed25519"),
        ("ec", "ES256", "rsa", "RSA"),
        ("ed25519", "EdDSA", "ec", "EC P-256"),
    ],
)
async def test_alg_must_match_the_key_type(
    issuer: LocalIssuer, verifier: OIDCVerifier, signer: str, alg: str, kid_of: str, kind: str
) -> None:
    token = issuer.issue(key=signer, alg=alg, headers={"kid": issuer.kid(kid_of)})
    err = await refused(verifier, token)
    assert f"does not accept ({alg}); its signing key '{issuer.kid(kid_of)}' is a {kind} key" in err.message


async def test_jwk_alg_member_restricts_the_key(issuer: LocalIssuer, verifier: OIDCVerifier) -> None:
    public = rsa_private(issuer).public_key()
    issuer.extra_jwks.append({**RSAAlgorithm.to_jwk(public, as_dict=True), "kid": "rs-only", "alg": "RS256"})
    await verifier.authenticate("alice", issuer.issue(headers={"kid": "rs-only"}))
    err = await refused(verifier, issuer.issue(alg="PS256", headers={"kid": "rs-only"}))
    assert "does not accept (PS256)" in err.message


async def test_signature_by_another_key(issuer: LocalIssuer, verifier: OIDCVerifier) -> None:
    other = LocalIssuer()
    try:
        forged = other.issue({"iss": issuer.url}, headers={"kid": issuer.kid("rsa")})
    finally:
        other.stop()
    err = await refused(verifier, forged)
    assert err.message == "token signature does not verify"


async def test_private_key_material_in_the_jwks_is_ignored(
    issuer: LocalIssuer, verifier: OIDCVerifier
) -> None:
    private = rsa_private(issuer)
    issuer.extra_jwks.append({**RSAAlgorithm.to_jwk(private, as_dict=True), "kid": "leaked"})
    err = await refused(verifier, issuer.issue(headers={"kid": "leaked"}))
    assert "signing key 'leaked' not found" in err.message


async def test_token_without_kid_needs_a_single_key(issuer: LocalIssuer, verifier: OIDCVerifier) -> None:
    err = await refused(verifier, issuer.issue(headers={"kid": None}))
    assert err.message == "token has no key id (kid) and test-idp publishes several signing keys"
    for kind in ("ec", "ed25519"):
        issuer.remove_key(issuer.kid(kind))
    solo = OIDCVerifier([config_for(issuer)])
    try:
        await solo.authenticate("alice", issuer.issue(headers={"kid": None}))
    finally:
        await solo.aclose()


# ---------------------------------------------------------------------- keys: refetch, rotation, rate limit


async def test_unknown_kid_refetches_once_then_refuses(
    issuer: LocalIssuer, verifier: OIDCVerifier, clock: FakeClock
) -> None:
    await verifier.prefetch()
    assert issuer.jwks_requests == 1
    clock.advance(INTERVAL)
    err = await refused(verifier, issuer.issue(headers={"kid": "no-such-key"}))
    assert err.message == "signing key 'no-such-key' not found at the issuer's JWKS"
    assert issuer.jwks_requests == 2


async def test_rotation(issuer: LocalIssuer, verifier: OIDCVerifier, clock: FakeClock) -> None:
    old = issuer.kid("rsa")
    await verifier.authenticate("alice", issuer.issue())
    new = issuer.rotate("rsa", drop_old=True)
    # Still cached: the verifier has not seen the new key set yet.
    await verifier.authenticate("alice", issuer.issue(key=old))
    clock.advance(INTERVAL)
    ident = await verifier.authenticate("alice", issuer.issue(key=new))
    assert ident.subject == "alice" and issuer.jwks_requests == 2
    err = await refused(verifier, issuer.issue(key=old))
    assert err.message == f"signing key '{old}' not found at the issuer's JWKS"


async def test_withdrawn_key_stops_verifying_once_the_cache_is_old(
    issuer: LocalIssuer, verifier: OIDCVerifier, clock: FakeClock
) -> None:
    old = issuer.kid("ec")
    await verifier.authenticate("alice", issuer.issue(key="ec"))
    issuer.remove_key(old)
    clock.advance(JWKS_MAX_AGE + 1)
    err = await refused(verifier, issuer.issue(key=old))
    assert "not found" in err.message and issuer.jwks_requests == 2


async def test_old_cache_is_kept_when_the_idp_is_down(
    issuer: LocalIssuer, verifier: OIDCVerifier, clock: FakeClock
) -> None:
    await verifier.authenticate("alice", issuer.issue())
    issuer.fail_status = 503
    clock.advance(JWKS_MAX_AGE + 1)
    await verifier.authenticate("alice", issuer.issue())
    assert issuer.jwks_requests == 2


async def test_refetch_is_rate_limited(issuer: LocalIssuer, verifier: OIDCVerifier, clock: FakeClock) -> None:
    await verifier.prefetch()
    clock.advance(INTERVAL)
    for i in range(25):
        await refused(verifier, issuer.issue(headers={"kid": f"bogus-{i}"}))
        clock.advance(INTERVAL / 100)
    assert issuer.jwks_requests == 2
    clock.advance(INTERVAL)
    await refused(verifier, issuer.issue(headers={"kid": "bogus-late"}))
    assert issuer.jwks_requests == 3


async def test_concurrent_authentications_share_one_fetch(
    issuer: LocalIssuer, verifier: OIDCVerifier
) -> None:
    issuer.latency = 0.05
    tokens = [issuer.issue(key=kind) for kind in ("rsa", "ec", "ed25519") for _ in range(10)]
    idents = await asyncio.gather(*(verifier.authenticate("alice", t) for t in tokens))
    assert len(idents) == 30
    assert issuer.discovery_requests == 1 and issuer.jwks_requests == 1


async def test_concurrent_unknown_kids_share_one_refetch(
    issuer: LocalIssuer, verifier: OIDCVerifier, clock: FakeClock
) -> None:
    await verifier.prefetch()
    clock.advance(INTERVAL)
    issuer.latency = 0.05
    tokens = [issuer.issue(headers={"kid": f"flood-{i}"}) for i in range(20)]
    results = await asyncio.gather(
        *(verifier.authenticate("alice", t) for t in tokens), return_exceptions=True
    )
    assert all(isinstance(r, AuthenticationFailed) and "not found" in r.message for r in results)
    assert issuer.jwks_requests == 2


# ---------------------------------------------------------------------- the identity provider


async def test_idp_down(
    issuer: LocalIssuer, verifier: OIDCVerifier, caplog: pytest.LogCaptureFixture
) -> None:
    token = issuer.issue()
    issuer.stop()
    with caplog.at_level(logging.WARNING, logger="pgwarden.identity"):
        await verifier.prefetch()
        err = await refused(verifier, token)
    assert err.message == "cannot reach the identity provider test-idp to verify the token"
    assert err.sqlstate == "28P01"
    assert "ConnectError" in caplog.text and token not in caplog.text


async def test_idp_recovers_after_a_failed_start(
    issuer: LocalIssuer, verifier: OIDCVerifier, clock: FakeClock
) -> None:
    issuer.fail_status = 503
    await verifier.prefetch()
    assert "cannot reach" in (await refused(verifier, issuer.issue())).message
    issuer.fail_status = None
    clock.advance(2)
    await verifier.authenticate("alice", issuer.issue())


async def test_idp_too_slow(issuer: LocalIssuer, make_verifier: MakeVerifier) -> None:
    verifier = make_verifier(config_for(issuer, http_timeout=0.1))
    issuer.latency = 0.3
    err = await refused(verifier, issuer.issue())
    assert err.message == "cannot reach the identity provider test-idp to verify the token"


async def test_known_keys_survive_an_idp_outage(issuer: LocalIssuer, verifier: OIDCVerifier) -> None:
    await verifier.prefetch()
    issuer.stop()
    await verifier.authenticate("alice", issuer.issue(key="ed25519"))


async def test_discovery_issuer_mismatch(
    issuer: LocalIssuer, verifier: OIDCVerifier, caplog: pytest.LogCaptureFixture
) -> None:
    issuer.discovery = {"issuer": "https://evil.example"}
    err = await refused(verifier, issuer.issue())
    assert err.message == (
        "cannot verify the token: the identity provider test-idp published an unusable "
        "discovery document or key set (see the gateway log)"
    )
    assert "names issuer 'https://evil.example'" in caplog.text and issuer.jwks_requests == 0


async def test_discovery_pointing_jwks_off_https_is_refused(
    issuer: LocalIssuer, verifier: OIDCVerifier, caplog: pytest.LogCaptureFixture
) -> None:
    issuer.discovery = {"jwks_uri": "http://keys.example/jwks.json"}
    assert "unusable" in (await refused(verifier, issuer.issue())).message
    assert "not an https:// URL" in caplog.text


async def test_configured_jwks_uri_skips_discovery(issuer: LocalIssuer, make_verifier: MakeVerifier) -> None:
    verifier = make_verifier(config_for(issuer, jwks_uri=f"{issuer.url}/jwks.json"))
    issuer.discovery = {"issuer": "https://ignored.example"}
    await verifier.authenticate("alice", issuer.issue())
    assert issuer.discovery_requests == 0 and issuer.jwks_requests == 1


def test_plain_http_only_on_loopback(issuer: LocalIssuer) -> None:
    with pytest.raises(ValueError, match=r"issuer: 'http://idp.example' is not an https:// URL"):
        OIDCVerifier([config_for(issuer, issuer="http://idp.example")])
    with pytest.raises(ValueError, match="configured twice"):
        OIDCVerifier([config_for(issuer), config_for(issuer, name="again")])


# ---------------------------------------------------------------------- users and groups


async def test_user_mismatch_is_28000(issuer: LocalIssuer, verifier: OIDCVerifier) -> None:
    err = await refused(verifier, issuer.issue(), user="admin")
    assert err.sqlstate == "28000"
    assert (
        err.message == "token subject does not match the connection user 'admin'; connect with user='alice'"
    )


async def test_github_actions_token(make_verifier: MakeVerifier) -> None:
    actions = LocalIssuer(audience="pgwarden", subject="repo:acme/app:ref:refs/heads/main")
    try:
        verifier = make_verifier(
            config_for(
                actions,
                name="github-actions",
                groups_claims=("repository_owner",),
                user_map={"repo:acme/app:ref:refs/heads/main": "ci-main"},
            )
        )
        context = {
            "repository": "acme/app",
            "repository_owner": "acme",
            "ref": "refs/heads/main",
            "workflow": "deploy",
            "environment": "prod",
            "job_workflow_ref": "acme/app/.github/workflows/deploy.yml@refs/heads/main",
        }
        token = actions.issue(context, lifetime=300)
        ident = await verifier.authenticate("ci-main", token)
        assert ident.subject == "repo:acme/app:ref:refs/heads/main" and ident.groups == ("acme",)
        assert {k: ident.claims[k] for k in context} == context
        err = await refused(verifier, token, user="repo:acme/app:ref:refs/heads/main")
        assert err.sqlstate == "28000" and "connect with user='ci-main'" in err.message
        unmapped = actions.issue({"sub": "repo:acme/app:pull_request"})
        err = await refused(verifier, unmapped, user="ci-main")
        assert "connect with user='repo:acme/app:pull_request'" in err.message
    finally:
        actions.stop()


async def test_entra_token(issuer: LocalIssuer, make_verifier: MakeVerifier) -> None:
    verifier = make_verifier(
        config_for(
            issuer,
            name="entra",
            audiences=("api://pgwarden",),
            subject_claim="oid",
            user_claim="preferred_username",
            user_map={"alice@contoso.com": "alice"},
            groups_claims=("roles", "groups"),
        )
    )
    oid = "00000000-0000-0000-0000-00000000a11c"
    groups = ["6f1c7c1e-0000-4000-8000-000000000001", "6f1c7c1e-0000-4000-8000-000000000002"]
    token = issuer.issue(
        {
            "aud": "api://pgwarden",
            "sub": "pairwise-per-app",
            "oid": oid,
            "tid": "contoso-tenant",
            "preferred_username": "alice@contoso.com",
            "roles": ["db.reader", "db.writer"],
            "groups": [*groups, "db.reader", groups[0]],
        }
    )
    ident = await verifier.authenticate("alice", token)
    assert ident.subject == oid
    assert ident.groups == ("db.reader", "db.writer", *groups)
    missing = issuer.issue({"aud": "api://pgwarden", "oid": oid})
    assert (await refused(verifier, missing)).message == "token lacks the required claim 'preferred_username'"


async def test_okta_token(issuer: LocalIssuer, make_verifier: MakeVerifier) -> None:
    verifier = make_verifier(config_for(issuer, name="okta", audiences=("api://pgwarden",)))
    token = issuer.issue(
        {"aud": "api://pgwarden", "sub": "00u1abcd", "groups": ["Everyone", "dba"]}, key="ec"
    )
    ident = await verifier.authenticate("00u1abcd", token)
    assert ident.groups == ("Everyone", "dba")
    single = issuer.issue({"aud": "api://pgwarden", "sub": "00u1abcd", "groups": "dba"})
    assert (await verifier.authenticate("00u1abcd", single)).groups == ("dba",)


# ---------------------------------------------------------------------- several issuers


async def test_several_issuers(make_verifier: MakeVerifier) -> None:
    first, second = LocalIssuer(), LocalIssuer(subject="bob")
    try:
        verifier = make_verifier(config_for(first, name="first"), config_for(second, name="second"))
        await verifier.prefetch()
        assert first.jwks_requests == 1 and second.jwks_requests == 1
        assert (await verifier.authenticate("alice", first.issue())).issuer == first.url
        assert (await verifier.authenticate("bob", second.issue(key="ec"))).issuer == second.url
        # The second issuer's key cannot vouch for the first issuer's tokens.
        crossed = second.issue({"iss": first.url, "sub": "alice"})
        assert "not found" in (await refused(verifier, crossed)).message
        assert verifier.handles(first.issue()) and verifier.handles(second.issue())
        err = await refused(verifier, first.issue({"iss": "https://third.example"}))
        assert f"this gateway trusts: first ({first.url}), second ({second.url})" in err.message
    finally:
        first.stop()
        second.stop()


def test_handles_never_raises(issuer: LocalIssuer) -> None:
    verifier = OIDCVerifier([config_for(issuer)])
    assert verifier.handles("  " + issuer.issue() + "\n")
    payload = b64(json.dumps({"iss": issuer.url}).encode())
    assert verifier.handles(f"e30.{payload}.")
    for password in (
        "",
        "hunter2",
        "a.b.c",
        "..",
        f"{payload}.{payload}",
        f"e30.{b64(b'[1, 2]')}.x",
        f"e30.{b64(json.dumps({'iss': 5}).encode())}.x",
        f"e30.{b64(b'{' * 5000)}.x",
        f"e30.{b64(json.dumps({'iss': issuer.url, 'pad': 'x' * 70_000}).encode())}.x",
        "\udcff.\udcff.\udcff",
        issuer.issue({"iss": "https://other.example"}),
    ):
        assert not verifier.handles(password)


async def test_oidc_only_router_refuses_everything_else() -> None:
    from enforcer.identity.router import IssuerRouter

    issuer = LocalIssuer()
    try:
        router = IssuerRouter(None, OIDCVerifier([OIDCIssuerConfig("okta", issuer.url, ("pgwarden",))]))
        identity = await router.authenticate("alice", issuer.issue({"sub": "alice"}))
        assert identity.auth_method == "oidc"
        stranger = LocalIssuer()
        foreign = stranger.issue({"sub": "alice"})
        stranger.stop()
        for password in ("hunter2", foreign):
            with pytest.raises(AuthenticationFailed):
                await router.authenticate("alice", password)
    finally:
        issuer.stop()


async def test_issuer_aliases_accept_the_other_iss_spelling(
    issuer: LocalIssuer, make_verifier: MakeVerifier
) -> None:
    """Google signs ID tokens with iss `accounts.google.com` as well as `https://accounts.google.com`."""
    verifier = make_verifier(config_for(issuer, issuer_aliases=("accounts.example",)))
    identity = await verifier.authenticate("alice", issuer.issue({"iss": "accounts.example"}))
    assert identity.subject == "alice" and identity.issuer == issuer.url  # the canonical issuer
    await verifier.authenticate("alice", issuer.issue())  # the URL form still works
    err = await refused(verifier, issuer.issue({"iss": "accounts.other"}))
    assert "unknown issuer 'accounts.other'" in err.message and err.message.count("test-idp") == 1
