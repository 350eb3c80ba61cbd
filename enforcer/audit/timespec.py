"""Points in time as auditors write them: an ISO-8601 timestamp, or a duration meaning "that long ago".

Owns: the one parser used by `pgwarden sessions`, `pgwarden audit query` and the HTTP API.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime

_AGO = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
EXAMPLES = "an ISO-8601 time such as 2026-05-01T12:00:00Z or a duration ago such as 30m, 12h, 7d or 2w"


def point_in_time(value: str, *, now: float | None = None) -> float:
    """Unix time; naive ISO times are UTC. Raises ValueError naming the accepted forms."""
    m = _AGO.match(value)
    if m:
        return (time.time() if now is None else now) - float(m.group(1)) * _UNITS[m.group(2)]
    try:
        when = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"expected {EXAMPLES}, got {value[:40]!r}") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()
