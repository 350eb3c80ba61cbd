"""Where a store lives (sessions, approvals): a SQLite file, or a ``postgresql://`` URL.

Owns: telling the two apart, and naming a store in messages and logs without its credentials.
"""

from __future__ import annotations

_POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def is_postgres_url(url: str) -> bool:
    return url.startswith(_POSTGRES_SCHEMES)


def describe_store_url(url: str) -> str:
    """The store URL without any credentials in it, for messages."""
    if is_postgres_url(url):
        rest = url.split("://", 1)[1].split("?", 1)[0]  # query parameters may carry a password
        return "postgresql://" + rest.rsplit("@", 1)[-1]
    return url
