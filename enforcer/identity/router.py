"""Routes a presented token to the verifier of its issuer: gateway tokens or a trusted OIDC issuer.

Owns: the choice of verifier, by the token's (unverified) ``iss``; the chosen
verifier then checks everything, signature first.
Never: accepts a token no verifier claims.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import jwt

from enforcer.identity.gateway_tokens import GatewayTokens
from enforcer.identity.model import AuthenticationFailed, Identity

if TYPE_CHECKING:
    from enforcer.config import Config
    from enforcer.identity.oidc import OIDCVerifier


class IssuerRouter:
    def __init__(self, gateway_tokens: GatewayTokens | None, oidc: OIDCVerifier | None = None) -> None:
        if gateway_tokens is None and oidc is None:
            raise ValueError("no token verifier configured")
        self.gateway_tokens = gateway_tokens
        self.oidc = oidc

    @classmethod
    def from_config(cls, config: Config) -> IssuerRouter:
        """The verifiers the configuration names; ValueError says which cannot be loaded and why."""
        tokens = GatewayTokens(config.gateway_tokens) if config.gateway_tokens is not None else None
        oidc = None
        if config.identity.oidc:
            from enforcer.identity.oidc import OIDCVerifier  # only when configured: it loads httpx

            oidc = OIDCVerifier(list(config.identity.oidc))
        return cls(tokens, oidc)

    async def authenticate(self, user: str, token: str) -> Identity:
        if self.oidc is not None and (self.oidc.handles(token) or not self._is_gateway_token(token)):
            # OIDC refusals list the trusted issuers, which helps with a token from the wrong IdP.
            return await self.oidc.authenticate(user, token)
        if self.gateway_tokens is None:
            raise AuthenticationFailed(
                "password authentication failed: the password is not a token; present a token from "
                "your identity provider as the password"
            )
        return await self.gateway_tokens.authenticate(user, token)

    def _is_gateway_token(self, token: str) -> bool:
        if self.gateway_tokens is None:
            return False
        try:
            claims = jwt.decode(token.strip(), options={"verify_signature": False})
        except jwt.InvalidTokenError:
            return True  # not a JWT at all: the gateway-token verifier explains what a token is
        return bool(claims.get("iss") == self.gateway_tokens.config.issuer)
