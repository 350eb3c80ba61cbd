"""Verifying a signed JWT and turning every failure into a refusal a person understands.

Owns: the checks every token verifier shares (signature, algorithm, issuer,
audience, time claims with skew, maximum lifetime) and their refusal messages.
Never: chooses keys or algorithms; the caller decides what it trusts.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jwt

from enforcer.identity.model import AuthenticationFailed


def decode_token(
    token: str,
    key: Any,
    *,
    algorithm: str,
    audience: str | list[str],
    issuer: str | Sequence[str],
    leeway: float,
    require: list[str],
    max_lifetime: float,
    wrong_audience: str,
    wrong_issuer: str,
    enforce_minimum_key_length: bool = False,
) -> dict[str, Any]:
    """The verified claims of ``token``; :class:`AuthenticationFailed` (28P01) otherwise."""
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=[algorithm],
            audience=audience,
            issuer=issuer,
            leeway=leeway,
            options={"require": require, "enforce_minimum_key_length": enforce_minimum_key_length},
        )
    except jwt.ExpiredSignatureError:
        raise AuthenticationFailed("token expired; request a new one") from None
    except jwt.InvalidAudienceError:
        raise AuthenticationFailed(wrong_audience) from None
    except jwt.InvalidIssuerError:
        raise AuthenticationFailed(wrong_issuer) from None
    except jwt.ImmatureSignatureError:
        raise AuthenticationFailed("token is not valid yet (nbf/iat in the future); check clocks") from None
    except jwt.MissingRequiredClaimError as exc:
        raise AuthenticationFailed(f"token lacks the required claim {exc.claim!r}") from None
    except jwt.InvalidAlgorithmError:
        raise AuthenticationFailed(
            f"token is signed with an algorithm this gateway does not accept (expected {algorithm})"
        ) from None
    except jwt.InvalidSignatureError:
        raise AuthenticationFailed("token signature does not verify") from None
    except jwt.InvalidTokenError as exc:
        raise AuthenticationFailed(f"token is malformed ({type(exc).__name__})") from None
    lifetime = float(claims["exp"]) - float(claims["iat"])
    if lifetime > max_lifetime + leeway:
        raise AuthenticationFailed(
            f"token lifetime {lifetime:g}s exceeds the maximum this gateway accepts ({max_lifetime:g}s)"
        )
    return claims
