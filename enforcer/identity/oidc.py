"""Tokens from external OpenID Connect issuers, verified against their published keys.

Owns: choosing the issuer of a presented token, discovery and JWKS fetching and
caching (with a rate-limited refetch for unknown key ids), signature and claim
verification, and mapping claims to an :class:`Identity` and a startup user.
Never: trusts a key it did not fetch from the configured issuer (``jku``, ``x5u``
and ``jwk`` headers are ignored), accepts ``none`` or an HMAC algorithm, accepts a
token whose lifetime exceeds the configured maximum, or puts a token or a secret
into a refusal message or a log line.

Claim mappings are configuration (``OIDCIssuerConfig``), not code. Typical ones:

- **Okta**: ``sub`` is the user id or login; a custom authorization server adds a
  ``groups`` claim (``groups_claims: [groups]``). The audience is the authorization
  server's audience (e.g. ``api://pgwarden``).
- **Azure AD / Entra ID**: ``iss`` is ``https://login.microsoftonline.com/<tenant>/v2.0``;
  app roles arrive in ``roles`` and security groups in ``groups`` as object GUIDs
  (``groups_claims: [roles, groups]``). ``sub`` is pairwise per application, so
  ``subject_claim: oid`` (the stable object id) is recommended; ``user_claim`` is
  often ``preferred_username`` with a ``user_map``. With more than 200 groups Entra
  omits ``groups`` (an "overage" pointing at Microsoft Graph); the gateway does not
  call Graph, so prefer app roles.
- **GitHub Actions OIDC**: issuer ``https://token.actions.githubusercontent.com``;
  ``sub`` looks like ``repo:org/name:ref:refs/heads/main`` (or
  ``repo:org/name:environment:prod``); claims ``repository``, ``repository_owner``,
  ``ref``, ``workflow``, ``environment``, ``job_workflow_ref`` stay in
  ``Identity.claims`` for the policy. Map the ``sub`` to a startup user with
  ``user_map`` (``repo:acme/app:ref:refs/heads/main: ci-main``) and take groups from
  e.g. ``repository_owner``. The audience is what the workflow asks for
  (``core.getIDToken('pgwarden')``).
- **Google**: issuer ``https://accounts.google.com``; ``aud`` is the OAuth client id;
  ``email`` (with ``email_verified``) and ``hd`` (the Workspace domain) are the useful
  claims; ID tokens carry no groups (``groups_claims: []``).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import functools
import ipaddress
import json
import logging
import ssl
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from enforcer.config import OIDCIssuerConfig
from enforcer.identity.jwt_checks import decode_token
from enforcer.identity.model import AuthenticationFailed, Identity

log = logging.getLogger("pgwarden.identity")

#: Algorithms a JWK of each key type may verify. Anything else (``none``, HS*) is never accepted.
_RSA_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"})
_EC_ALGORITHMS = {"P-256": "ES256", "P-384": "ES384", "P-521": "ES512"}
_OKP_ALGORITHMS = {"Ed25519": "EdDSA"}
SUPPORTED_ALGORITHMS = (
    _RSA_ALGORITHMS | frozenset(_EC_ALGORITHMS.values()) | frozenset(_OKP_ALGORITHMS.values())
)

#: A token larger than this is refused before any parsing (Entra tokens with 200 group GUIDs are ~10 KiB).
MAX_TOKEN_CHARS = 64 * 1024
#: Discovery documents and key sets larger than this are not read to the end.
MAX_DOCUMENT_BYTES = 1024 * 1024
#: Keys older than this are refetched before use, so a key the IdP withdrew stops verifying
#: even when no token with an unknown kid ever arrives.
JWKS_MAX_AGE = 900.0
#: While no key set was ever loaded, retry a failed fetch at most this often (capped by the
#: configured refresh interval), so a down IdP is not hammered but recovers quickly.
RETRY_UNLOADED_AFTER = 2.0
_MIN_RSA_BITS = 2048
_PRIVATE_JWK_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})


def _segment(part: str) -> Any:
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def _peek(token: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """Header and payload of a compact JWS, unverified; None when it is not one."""
    if len(token) > MAX_TOKEN_CHARS or token.count(".") != 2:
        return None
    head, body, _ = token.split(".")
    try:
        header, payload = _segment(head), _segment(body)
    except (ValueError, binascii.Error, UnicodeDecodeError, RecursionError):
        return None
    if not isinstance(header, dict) or not isinstance(payload, dict):
        return None
    return header, payload


def _shown(value: object, limit: int = 120) -> str:
    """A value from an unverified token, quoted and shortened for a message."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _shown_alg(alg: object) -> str:
    """The header ``alg`` for a message: bare when it looks like an algorithm name, else quoted."""
    if isinstance(alg, str) and alg.isascii() and alg.isalnum() and len(alg) <= 16:
        return alg
    return _shown(alg, 40)


def _is_loopback(host: str | None) -> bool:
    if host == "localhost":
        return True
    try:
        return host is not None and ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _url_problem(url: str) -> str | None:
    """Why ``url`` may not be fetched, or None. Plain HTTP is for loopback test issuers only."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return None
    if parts.scheme == "http" and _is_loopback(parts.hostname):
        return None
    return f"{url!r} is not an https:// URL (plain http is accepted on loopback only)"


@functools.cache
def _default_tls() -> ssl.SSLContext:
    # Building a context loads the whole CA bundle (~20 ms); every issuer can share one.
    return httpx.create_ssl_context()


class _FetchFailed(Exception):
    """Discovery or JWKS could not be used. ``unreachable`` separates network trouble from bad documents."""

    def __init__(self, detail: str, *, unreachable: bool) -> None:
        super().__init__(detail)
        self.unreachable = unreachable


@dataclass
class _SigningKey:
    """One usable public key from a JWKS, with the algorithms its type allows."""

    kid: str | None
    description: str
    algorithms: frozenset[str]
    jwk: dict[str, Any]
    _bound: dict[str, jwt.PyJWK] = field(default_factory=dict)

    def for_algorithm(self, alg: str) -> jwt.PyJWK:
        key = self._bound.get(alg)
        if key is None:
            key = self._bound[alg] = jwt.PyJWK(self.jwk, algorithm=alg)
        return key


def _signing_key(jwk: Any, issuer: str) -> _SigningKey | None:
    """The verifying key described by ``jwk``, or None (logged) when it is unusable for signatures."""
    if not isinstance(jwk, dict):
        return None
    kid = jwk.get("kid")
    if kid is not None and not isinstance(kid, str):
        log.warning("issuer %s publishes a key with a non-string kid; ignored", issuer)
        return None
    if jwk.get("use", "sig") != "sig":
        return None
    if _PRIVATE_JWK_MEMBERS & jwk.keys():
        log.error(
            "issuer %s publishes private or symmetric key material (kid %s); key ignored",
            issuer,
            kid,
            extra={"event": "oidc_jwks_private_key"},
        )
        return None
    kty, crv = jwk.get("kty"), jwk.get("crv")
    if kty == "RSA":
        algorithms, description = _RSA_ALGORITHMS, "RSA"
    elif kty == "EC" and crv in _EC_ALGORITHMS:
        algorithms, description = frozenset({_EC_ALGORITHMS[crv]}), f"EC {crv}"
    elif kty == "OKP" and crv in _OKP_ALGORITHMS:
        algorithms, description = frozenset({_OKP_ALGORITHMS[crv]}), f"OKP {crv}"
    else:
        log.info("issuer %s publishes key %s of unsupported type %s %s; ignored", issuer, kid, kty, crv or "")
        return None
    declared = jwk.get("alg")
    if declared is not None:
        if declared not in algorithms:
            log.warning(
                "issuer %s key %s declares alg %r, which a %s key cannot use; ignored",
                issuer,
                kid,
                declared,
                description,
            )
            return None
        algorithms = frozenset({declared})
    key = _SigningKey(kid, description, algorithms, dict(jwk))
    try:
        public = key.for_algorithm(min(algorithms)).key
    except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError) as exc:
        log.warning("issuer %s key %s cannot be loaded (%s); ignored", issuer, kid, exc)
        return None
    if isinstance(public, RSAPublicKey) and public.key_size < _MIN_RSA_BITS:
        log.warning("issuer %s key %s is a %d-bit RSA key; ignored", issuer, kid, public.key_size)
        return None
    return key


@dataclass
class _IssuerState:
    config: OIDCIssuerConfig
    #: None: the default trust store (certifi or SSL_CERT_FILE, as httpx does).
    ssl_context: ssl.SSLContext | None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    client: httpx.AsyncClient | None = None
    #: From configuration or discovery; forgotten after a failed fetch so discovery runs again.
    jwks_uri: str | None = None
    #: kid -> keys; None until a key set was loaded once.
    keys: dict[str | None, list[_SigningKey]] | None = None
    loaded_at: float = 0.0
    last_attempt: float | None = None
    last_failure: _FetchFailed | None = None
    #: Incremented after every completed fetch, so waiters on the lock can reuse its outcome.
    generation: int = 0

    def lookup(self, kid: str | None) -> list[_SigningKey]:
        if self.keys is None:
            return []
        if kid is not None:
            return self.keys.get(kid, [])
        every = [k for keys in self.keys.values() for k in keys]
        # A token without kid is only tied to a key when the choice is unambiguous.
        return self.keys.get(None, []) or (every if len(every) == 1 else [])


class OIDCVerifier:
    """Verifies tokens of several trusted OIDC issuers; an ``Authenticator``."""

    def __init__(
        self, issuers: Sequence[OIDCIssuerConfig], *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        """``clock`` is the monotonic clock behind refetch rate limits (tests pass a fake one)."""
        self._clock = clock
        self._by_issuer: dict[str, _IssuerState] = {}
        names: set[str] = set()
        for cfg in issuers:
            where = f"identity.oidc[{cfg.name}]"
            if cfg.issuer in self._by_issuer:
                raise ValueError(f"{where}: issuer {cfg.issuer!r} is configured twice")
            if cfg.name in names:
                raise ValueError(f"{where}: the name {cfg.name!r} is used twice")
            names.add(cfg.name)
            if not cfg.audiences:
                raise ValueError(f"{where}.audiences: name at least one accepted audience")
            bad = sorted(set(cfg.algorithms) - SUPPORTED_ALGORITHMS)
            if bad or not cfg.algorithms:
                raise ValueError(
                    f"{where}.algorithms: {', '.join(bad) or 'empty'} not accepted; "
                    f"choose from {', '.join(sorted(SUPPORTED_ALGORITHMS))}"
                )
            for url, key in ((cfg.issuer, "issuer"), (cfg.jwks_uri, "jwks_uri")):
                problem = url is not None and _url_problem(url)
                if problem:
                    raise ValueError(f"{where}.{key}: {problem}")
            context: ssl.SSLContext | None = None
            if cfg.ca_file is not None:
                try:
                    context = ssl.create_default_context(cafile=str(cfg.ca_file))
                except (OSError, ssl.SSLError) as exc:
                    raise ValueError(f"{where}.ca_file: cannot load {cfg.ca_file}: {exc}") from None
            state = _IssuerState(cfg, context, jwks_uri=cfg.jwks_uri)
            for iss in (cfg.issuer, *cfg.issuer_aliases):
                if iss in self._by_issuer:
                    raise ValueError(f"{where}: issuer {iss!r} is configured twice")
                self._by_issuer[iss] = state

    # ------------------------------------------------------------------ Authenticator

    def handles(self, token: str) -> bool:
        """True iff the token's (unverified) ``iss`` is one of the configured issuers."""
        try:
            peeked = _peek(token.strip())
        except Exception:  # never raise: this only routes a password to an authenticator
            return False
        if peeked is None:
            return False
        iss = peeked[1].get("iss")
        return isinstance(iss, str) and iss in self._by_issuer

    async def authenticate(self, user: str, token: str) -> Identity:
        token = token.strip()
        if len(token) > MAX_TOKEN_CHARS:
            raise AuthenticationFailed(f"token is too large (over {MAX_TOKEN_CHARS} characters)")
        peeked = _peek(token)
        if peeked is None:
            raise AuthenticationFailed(
                "password authentication failed: the password is not a token; "
                "present a token from your identity provider (or `pgwarden token issue`) as the password"
            )
        header, unverified = peeked
        iss = unverified.get("iss")
        state = self._by_issuer.get(iss) if isinstance(iss, str) else None
        if state is None:
            states = {id(s): s for s in self._by_issuer.values()}.values()
            trusted = ", ".join(f"{s.config.name} ({s.config.issuer})" for s in states)
            what = (
                "lacks the required claim 'iss'"
                if iss is None
                else f"is from an unknown issuer {_shown(iss)}"
            )
            raise AuthenticationFailed(f"token {what}; this gateway trusts: {trusted or 'none'}")
        cfg = state.config
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in cfg.algorithms or alg not in SUPPORTED_ALGORITHMS:
            raise AuthenticationFailed(
                f"token is signed with an algorithm this gateway does not accept ({_shown_alg(alg)}); "
                f"{cfg.name} tokens must use {', '.join(cfg.algorithms)}"
            )
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise AuthenticationFailed("token is malformed (the kid header is not a string)")
        candidates = await self._keys_for(state, kid)
        matching = [k for k in candidates if alg in k.algorithms]
        if not matching:
            kinds = ", ".join(sorted({k.description for k in candidates}))
            raise AuthenticationFailed(
                f"token is signed with an algorithm this gateway does not accept ({alg}); "
                f"its signing key {_shown(kid, 80)} is a {kinds} key"
            )
        claims = self._decode(token, alg, matching[0].for_algorithm(alg), cfg)
        return self._identity(user, claims, cfg)

    def _decode(self, token: str, alg: str, key: jwt.PyJWK, cfg: OIDCIssuerConfig) -> dict[str, Any]:
        accepted = ", ".join(repr(a) for a in cfg.audiences)
        return decode_token(
            token,
            key,
            algorithm=alg,
            audience=list(cfg.audiences),
            issuer=[cfg.issuer, *cfg.issuer_aliases] if cfg.issuer_aliases else cfg.issuer,
            leeway=cfg.clock_skew,
            require=list(dict.fromkeys(["exp", "iat", "iss", "aud", cfg.subject_claim, cfg.user_claim])),
            max_lifetime=cfg.max_token_lifetime,
            wrong_audience=(
                f"token has the wrong audience; this gateway accepts audience {accepted} from {cfg.name}"
            ),
            wrong_issuer=f"token issuer does not match {cfg.issuer}",
            enforce_minimum_key_length=True,
        )

    @staticmethod
    def _identity(user: str, claims: dict[str, Any], cfg: OIDCIssuerConfig) -> Identity:
        groups: dict[str, None] = {}  # an ordered set
        for name in cfg.groups_claims:
            value = claims.get(name)
            if value is None:
                continue
            if isinstance(value, str):
                values = [value]
            elif isinstance(value, list) and all(isinstance(v, str) for v in value):
                values = value
            else:
                raise AuthenticationFailed(f"claim {name!r} must be a string or a list of strings")
            groups.update(dict.fromkeys(values))
        claimed = str(claims[cfg.user_claim])
        expected = cfg.user_map.get(claimed, claimed)
        if user != expected:
            raise AuthenticationFailed(
                f"token subject does not match the connection user {user!r}; connect with user={expected!r}",
                sqlstate="28000",
            )
        jti = claims.get("jti")
        return Identity(
            subject=str(claims[cfg.subject_claim]),
            issuer=cfg.issuer,
            groups=tuple(groups),
            auth_method="oidc",
            expires_at=float(claims["exp"]),
            token_id=jti if isinstance(jti, str) else None,
            claims=claims,
        )

    # ------------------------------------------------------------------ keys

    async def _keys_for(self, state: _IssuerState, kid: str | None) -> list[_SigningKey]:
        cfg = state.config
        found = state.lookup(kid)
        stale = self._clock() - state.loaded_at > JWKS_MAX_AGE
        # A refresh of an old but known key set is in flight: keep verifying with what we have.
        if found and (not stale or state.lock.locked()):
            return found
        seen = state.generation
        async with state.lock:
            # Whoever held the lock before us may have fetched already; share that outcome.
            if state.generation == seen and self._may_fetch(state):
                await self._refresh(state)
            found = state.lookup(kid)
        if found:
            return found
        failure = state.last_failure
        if state.keys is None or failure is not None:
            if failure is not None and not failure.unreachable:
                raise AuthenticationFailed(
                    f"cannot verify the token: the identity provider {cfg.name} published an unusable "
                    "discovery document or key set (see the gateway log)"
                )
            raise AuthenticationFailed(f"cannot reach the identity provider {cfg.name} to verify the token")
        if kid is None:
            raise AuthenticationFailed(
                f"token has no key id (kid) and {cfg.name} publishes several signing keys"
            )
        raise AuthenticationFailed(f"signing key {_shown(kid, 80)} not found at the issuer's JWKS")

    def _may_fetch(self, state: _IssuerState) -> bool:
        if state.last_attempt is None:
            return True
        interval = state.config.jwks_refresh_min_interval
        if state.keys is None:
            interval = min(interval, RETRY_UNLOADED_AFTER)
        return self._clock() - state.last_attempt >= interval

    async def _refresh(self, state: _IssuerState) -> None:
        """Fetch discovery (when needed) and the JWKS; the caller holds ``state.lock``.

        A failure is recorded in ``state.last_failure`` and logged, never raised; the old keys stay.
        """
        cfg = state.config
        state.last_attempt = self._clock()
        try:
            if state.jwks_uri is None:
                state.jwks_uri = await self._discover(state)
            document = await self._get_json(state, state.jwks_uri, "JWKS")
            raw_keys = document.get("keys")
            if not isinstance(raw_keys, list):
                raise _FetchFailed(f"{state.jwks_uri} has no 'keys' list", unreachable=False)
        except _FetchFailed as exc:
            state.last_failure = exc
            if cfg.jwks_uri is None:
                state.jwks_uri = None
            log.warning(
                "cannot load the signing keys of %s: %s",
                cfg.name,
                exc,
                extra={"event": "oidc_jwks_failed", "fields": {"issuer": cfg.name}},
            )
        else:
            keys: dict[str | None, list[_SigningKey]] = {}
            for raw in raw_keys:
                key = _signing_key(raw, cfg.name)
                if key is not None:
                    keys.setdefault(key.kid, []).append(key)
            state.keys, state.loaded_at, state.last_failure = keys, self._clock(), None
            log.info(
                "loaded %d signing key(s) of %s",
                sum(map(len, keys.values())),
                cfg.name,
                extra={
                    "event": "oidc_jwks_loaded",
                    "fields": {"issuer": cfg.name, "kids": ",".join(str(k) for k in keys)},
                },
            )
            if not keys:
                log.warning(
                    "%s publishes no usable signing key", cfg.name, extra={"event": "oidc_jwks_empty"}
                )
        state.generation += 1

    async def _discover(self, state: _IssuerState) -> str:
        cfg = state.config
        url = cfg.issuer.rstrip("/") + "/.well-known/openid-configuration"
        document = await self._get_json(state, url, "discovery document")
        if document.get("issuer") != cfg.issuer:
            raise _FetchFailed(
                f"the discovery document at {url} names issuer {_shown(document.get('issuer'))}, "
                f"not the configured {cfg.issuer!r}",
                unreachable=False,
            )
        jwks_uri = document.get("jwks_uri")
        if not isinstance(jwks_uri, str):
            raise _FetchFailed(f"the discovery document at {url} has no jwks_uri", unreachable=False)
        problem = _url_problem(jwks_uri)
        if problem:
            raise _FetchFailed(f"the discovery document at {url}: jwks_uri {problem}", unreachable=False)
        return jwks_uri

    async def _get_json(self, state: _IssuerState, url: str, what: str) -> dict[str, Any]:
        cfg = state.config
        if state.client is None:
            state.client = httpx.AsyncClient(
                timeout=httpx.Timeout(cfg.http_timeout),
                verify=state.ssl_context or _default_tls(),
                follow_redirects=False,
                headers={"Accept": "application/json", "User-Agent": "pgwarden"},
            )
        body = bytearray()
        try:
            async with asyncio.timeout(cfg.http_timeout):
                async with state.client.stream("GET", url) as response:
                    if response.status_code != 200:
                        raise _FetchFailed(
                            f"GET {url} ({what}) answered HTTP {response.status_code}",
                            unreachable=response.status_code >= 500,
                        )
                    async for chunk in response.aiter_bytes():
                        body += chunk
                        if len(body) > MAX_DOCUMENT_BYTES:
                            raise _FetchFailed(
                                f"GET {url} ({what}) is larger than {MAX_DOCUMENT_BYTES} bytes",
                                unreachable=False,
                            )
        except TimeoutError:
            raise _FetchFailed(
                f"GET {url} ({what}) took longer than {cfg.http_timeout:g}s", unreachable=True
            ) from None
        except httpx.HTTPError as exc:
            raise _FetchFailed(
                f"GET {url} ({what}) failed: {type(exc).__name__}: {exc}", unreachable=True
            ) from None
        try:
            document = json.loads(body)
        except ValueError:
            raise _FetchFailed(f"GET {url} ({what}) did not return JSON", unreachable=False) from None
        if not isinstance(document, dict):
            raise _FetchFailed(f"GET {url} ({what}) did not return a JSON object", unreachable=False)
        return document

    # ------------------------------------------------------------------ lifecycle

    async def prefetch(self) -> None:
        """Load every issuer's keys now (at gateway start); failures are logged, never raised."""

        async def one(state: _IssuerState) -> None:
            async with state.lock:
                await self._refresh(state)

        await asyncio.gather(*(one(s) for s in self._by_issuer.values()))

    async def aclose(self) -> None:
        for state in self._by_issuer.values():
            if state.client is not None:
                client, state.client = state.client, None
                await client.aclose()

    @property
    def issuers(self) -> Mapping[str, OIDCIssuerConfig]:
        """The trusted issuers, by ``iss``."""
        return {iss: s.config for iss, s in self._by_issuer.items()}
