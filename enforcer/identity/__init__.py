"""Who is connecting: token verification and the identity model."""

from enforcer.identity.model import AuthenticationFailed, Authenticator, Identity

__all__ = ["AuthenticationFailed", "Authenticator", "Identity"]
