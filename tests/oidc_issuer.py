"""A real OpenID Connect issuer on loopback for tests: discovery, JWKS and token minting.

Owns: an HTTP server (``ThreadingHTTPServer`` in a daemon thread, so it answers while
the test's asyncio loop is blocked on it) serving ``/.well-known/openid-configuration``
and ``/jwks.json``, and RSA, EC P-256 and Ed25519 signing keys with kids.
Never: mocks the verifier's HTTP client; the verifier fetches over a real socket.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import socket
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

DEFAULT_ALGORITHM = {"rsa": "RS256", "ec": "ES256", "ed25519": "EdDSA"}

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey


@dataclass
class IssuerKey:
    kind: str
    kid: str
    private: PrivateKey

    def public_jwk(self) -> dict[str, Any]:
        public = self.private.public_key()
        jwk: dict[str, Any]
        if isinstance(public, rsa.RSAPublicKey):
            jwk = RSAAlgorithm.to_jwk(public, as_dict=True)
        elif isinstance(public, ec.EllipticCurvePublicKey):
            jwk = ECAlgorithm.to_jwk(public, as_dict=True)
        else:
            jwk = OKPAlgorithm.to_jwk(public, as_dict=True)
        jwk.update(kid=self.kid, use="sig")
        return jwk


#: RSA generation (~50 ms) would dominate the suite, so RSA keys cycle through a small pool:
#: any RSA_POOL_SIZE consecutive RSA keys of the process are distinct, which is all a test
#: comparing "this issuer's key" with "another key" needs.
RSA_POOL_SIZE = 8
_rsa_pool: list[rsa.RSAPrivateKey] = []
_rsa_taken = itertools.count()


def _generate(kind: str) -> PrivateKey:
    if kind == "rsa":
        n = next(_rsa_taken) % RSA_POOL_SIZE
        if n == len(_rsa_pool):
            _rsa_pool.append(rsa.generate_private_key(public_exponent=65537, key_size=2048))
        return _rsa_pool[n]
    if kind == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    if kind == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    raise ValueError(f"unknown key kind {kind!r}; use rsa, ec or ed25519")


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A verifier that timed out (or a stop()) hangs up mid-answer; that is what tests ask for.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class LocalIssuer:
    """An OIDC issuer at ``http://127.0.0.1:<port>`` whose ``iss`` is :attr:`url`.

    ``discovery`` entries override the discovery document (e.g. a wrong ``issuer``);
    ``latency`` delays every answer; ``fail_status`` makes every answer that HTTP status;
    ``extra_jwks`` are published as they are after the issuer's own keys.
    """

    def __init__(self, *, audience: str = "pgwarden", subject: str = "alice") -> None:
        self.audience = audience
        self.subject = subject
        self.discovery: dict[str, Any] = {}
        self.latency = 0.0
        self.fail_status: int | None = None
        #: Raw JWKs published after the issuer's own keys (e.g. malformed or private ones).
        self.extra_jwks: list[dict[str, Any]] = []
        self.jwks_requests = 0
        self.discovery_requests = 0
        self._lock = threading.Lock()
        self._keys: dict[str, IssuerKey] = {}
        self._current: dict[str, str] = {}
        self._published: list[str] = []
        self._connections: set[socket.socket] = set()
        for kind in DEFAULT_ALGORITHM:
            self.add_key(kind)

        issuer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def setup(self) -> None:
                super().setup()
                with issuer._lock:
                    issuer._connections.add(self.connection)

            def finish(self) -> None:
                with issuer._lock:
                    issuer._connections.discard(self.connection)
                super().finish()

            def do_GET(self) -> None:
                issuer._answer(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = _QuietServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        # A short poll keeps stop() quick; serve_forever only notices shutdown() between polls.
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.02,), name="local-issuer", daemon=True
        )
        self._thread.start()

    # ------------------------------------------------------------------ HTTP

    def _answer(self, request: BaseHTTPRequestHandler) -> None:
        if self.latency:
            time.sleep(self.latency)
        path = request.path.split("?", 1)[0]
        with self._lock:
            if path == "/.well-known/openid-configuration":
                self.discovery_requests += 1
                document: Any = {
                    "issuer": self.url,
                    "jwks_uri": f"{self.url}/jwks.json",
                    "id_token_signing_alg_values_supported": ["RS256", "ES256", "EdDSA"],
                    **self.discovery,
                }
            elif path == "/jwks.json":
                self.jwks_requests += 1
                document = self.jwks()
            else:
                document = None
        status = self.fail_status or (200 if document is not None else 404)
        body = json.dumps(document if status == 200 else {"error": "not found"}).encode()
        request.send_response(status)
        request.send_header("Content-Type", "application/json")
        request.send_header("Content-Length", str(len(body)))
        request.end_headers()
        request.wfile.write(body)

    def jwks(self) -> dict[str, Any]:
        return {"keys": [self._keys[kid].public_jwk() for kid in self._published] + self.extra_jwks}

    # ------------------------------------------------------------------ keys

    def add_key(self, kind: str, *, kid: str | None = None, private: PrivateKey | None = None) -> str:
        """Publish a new key of ``kind`` and make it the one ``issue(key=kind)`` signs with."""
        key = IssuerKey(kind, kid or f"{kind}-{uuid.uuid4().hex[:8]}", private or _generate(kind))
        with self._lock:
            self._keys[key.kid] = key
            self._published.append(key.kid)
            self._current[kind] = key.kid
        return key.kid

    def remove_key(self, kid: str) -> None:
        """Stop publishing ``kid``; it can still sign (``issue(key=kid)``), as a withdrawn key could."""
        with self._lock:
            self._published.remove(kid)

    def rotate(self, kind: str, *, drop_old: bool = False) -> str:
        old = self._current[kind]
        new = self.add_key(kind)
        if drop_old:
            self.remove_key(old)
        return new

    def kid(self, kind: str) -> str:
        """The kid ``issue(key=kind)`` signs with."""
        return self._current[kind]

    def private_key(self, key: str) -> PrivateKey:
        """The private key of a kind (its current key) or of a kid."""
        return self._keys[self._current.get(key, key)].private

    # ------------------------------------------------------------------ tokens

    def claims(self, lifetime: float = 600, **overrides: Any) -> dict[str, Any]:
        now = int(time.time())
        base: dict[str, Any] = {
            "iss": self.url,
            "aud": self.audience,
            "sub": self.subject,
            "iat": now,
            "exp": now + int(lifetime),
            "jti": uuid.uuid4().hex,
        }
        base.update(overrides)
        return {k: v for k, v in base.items() if v is not None}

    def issue(
        self,
        claims: dict[str, Any] | None = None,
        *,
        key: str = "rsa",
        alg: str | None = None,
        lifetime: float = 600,
        headers: dict[str, Any] | None = None,
    ) -> str:
        """A signed token. ``key`` is a kind (its current key) or a kid; a claim set to None is left out."""
        signing = self._keys[self._current.get(key, key)]
        header = {"kid": signing.kid, **(headers or {})}
        if header["kid"] is None:
            del header["kid"]
        return jwt.encode(
            self.claims(lifetime, **(claims or {})),
            signing.private,
            algorithm=alg or DEFAULT_ALGORITHM[signing.kind],
            headers=header,
        )

    def stop(self) -> None:
        """Stop listening and cut kept-alive connections too, so the issuer is really unreachable."""
        self._server.shutdown()
        self._server.server_close()
        with self._lock:
            for conn in self._connections:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
        self._thread.join(timeout=5)
