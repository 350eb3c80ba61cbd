"""Errors raised by the sans-I/O protocol layer.

Each carries the SQLSTATE a Postgres server would use for the same fault, so the
I/O driver can answer the client without guessing.
"""

from __future__ import annotations


class ProtocolError(Exception):
    """The peer sent bytes that are not valid Postgres v3 protocol (08P01)."""

    sqlstate = "08P01"


class MessageTooLarge(ProtocolError):
    """A length field announces a message larger than the configured maximum (08P01)."""


class UnknownMessageType(ProtocolError):
    """A message type byte that is not valid in this direction (08P01)."""


class InvalidEncoding(ProtocolError):
    """A string field is not valid UTF-8 (22021, as Postgres reports an invalid byte sequence)."""

    sqlstate = "22021"
