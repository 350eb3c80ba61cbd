"""Gateway-minted short-lived tokens: Ed25519-signed JWTs.

Owns: key generation, minting (``pgwarden token issue``) and verification.
Never: accepts an algorithm other than EdDSA, a token without ``exp``, or a
token whose lifetime exceeds the configured maximum, even if correctly signed.
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from enforcer.config import GatewayTokenConfig
from enforcer.identity.jwt_checks import decode_token
from enforcer.identity.model import AuthenticationFailed, Identity

ALGORITHM = "EdDSA"


def generate_key(path: Path) -> None:
    """Write a new Ed25519 private key (PEM, mode 0600) to ``path``."""
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)


def load_private_key(path: Path) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot load the token signing key {path}: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(
            f"the token signing key {path} is not an Ed25519 key; make one with `pgwarden token keygen`"
        )
    return key


class GatewayTokens:
    """Mints and verifies gateway tokens with one key pair."""

    def __init__(self, config: GatewayTokenConfig) -> None:
        self.config = config
        self._private = load_private_key(config.signing_key_file)
        self._public: Ed25519PublicKey = self._private.public_key()

    def issue(self, subject: str, groups: list[str], ttl: float, extra: dict[str, Any] | None = None) -> str:
        if not subject:
            raise ValueError("a token needs a subject")
        if ttl <= 0:
            raise ValueError("the token lifetime must be positive")
        if ttl > self.config.max_ttl:
            raise ValueError(
                f"a lifetime of {ttl:g}s exceeds gateway_tokens.max_ttl ({self.config.max_ttl:g}s); "
                "ask for a shorter --ttl"
            )
        now = int(time.time())
        claims: dict[str, Any] = dict(extra or {})
        claims.update(
            iss=self.config.issuer,
            aud=self.config.audience,
            sub=subject,
            groups=list(groups),
            iat=now,
            nbf=now,
            exp=now + int(ttl),
            jti=str(uuid.uuid4()),
        )
        return jwt.encode(claims, self._private, algorithm=ALGORITHM)

    async def authenticate(self, user: str, token: str) -> Identity:
        return self.verify(user, token)

    def verify(self, user: str, token: str) -> Identity:
        token = token.strip()
        if token.count(".") != 2:
            raise AuthenticationFailed(
                "password authentication failed: the password is not a token; "
                "present a token from `pgwarden token issue` (or your identity provider) as the password"
            )
        claims = decode_token(
            token,
            self._public,
            algorithm=ALGORITHM,
            audience=self.config.audience,
            issuer=self.config.issuer,
            leeway=self.config.clock_skew,
            require=["exp", "iat", "sub", "iss", "aud"],
            max_lifetime=self.config.max_ttl,
            wrong_audience=(
                f"token has the wrong audience; this gateway accepts audience {self.config.audience!r}"
            ),
            wrong_issuer="token is from an unknown issuer",
        )
        subject = str(claims["sub"])
        if subject != user:
            raise AuthenticationFailed(
                f"token subject does not match the connection user {user!r}; connect with user={subject!r}",
                sqlstate="28000",
            )
        groups = claims.get("groups", [])
        if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
            raise AuthenticationFailed("token claim 'groups' must be a list of strings")
        return Identity(
            subject=subject,
            issuer=str(claims["iss"]),
            groups=tuple(groups),
            auth_method="gateway-token",
            expires_at=float(claims["exp"]),
            token_id=claims.get("jti"),
            claims=claims,
        )
