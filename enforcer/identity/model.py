"""The identity handed to the policy, and the authenticator interface.

Owns: the shape of an authenticated identity and of an authentication refusal.
Never: knows about sockets or the wire protocol.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class Identity:
    subject: str
    issuer: str
    groups: tuple[str, ...]
    auth_method: str
    expires_at: float
    token_id: str | None = None
    claims: Mapping[str, Any] = field(default_factory=dict)

    def to_document(self) -> dict[str, Any]:
        return {
            "subject": self.subject,
            "issuer": self.issuer,
            "groups": list(self.groups),
            "auth_method": self.auth_method,
            "expires_at": self.expires_at,
            "token_id": self.token_id,
            "claims": dict(self.claims),
        }


class AuthenticationFailed(Exception):
    """A token was refused. ``message`` is safe to show the client; it never echoes the token."""

    def __init__(self, message: str, sqlstate: str = "28P01") -> None:
        super().__init__(message)
        self.message = message
        self.sqlstate = sqlstate


class Authenticator(Protocol):
    async def authenticate(self, user: str, token: str) -> Identity:
        """Verify ``token`` presented by a client claiming to be ``user``; raise AuthenticationFailed."""
        ...
