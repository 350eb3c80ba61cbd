"""Result values for agents: Postgres type names and JSON values from the text the gateway relays.

Owns: naming a column's type (``integer``, ``text``, ``numeric``, ``integer[]`` as ``format_type``
names them) and turning one text value into the JSON value an agent reads.
Never: loses precision or guesses: ``numeric`` stays a string, and every type without an exact JSON
counterpart is the text Postgres printed.
"""

from __future__ import annotations

import json
import math
from typing import Any

from psycopg.postgres import types as _builtin_types

_INTEGERS = frozenset({"int2", "int4", "int8", "oid"})
_FLOATS = frozenset({"float4", "float8"})
_JSON = frozenset({"json", "jsonb"})


def builtin_type_name(oid: int) -> str | None:
    """``format_type`` name of a built-in type (arrays as ``elem[]``), None for other types."""
    info = _builtin_types.get(oid)
    if info is None:
        return None
    if info.array_oid == oid and info.oid != oid:
        return f"{info.regtype}[]"
    return str(info.regtype)


def _kind(oid: int) -> str | None:
    info = _builtin_types.get(oid)
    if info is None or info.oid != oid:
        return None  # not built in, or an array: text
    return str(info.name)


def json_value(type_oid: int, text: str | None) -> Any:
    """The JSON value of one result value (``text`` as Postgres sent it, None for NULL)."""
    if text is None:
        return None
    kind = _kind(type_oid)
    if kind in _INTEGERS:
        return int(text)
    if kind in _FLOATS:
        value = float(text)
        return value if math.isfinite(value) else text  # NaN/Infinity are not JSON numbers
    if kind == "bool":
        return text == "t"
    if kind in _JSON:
        try:
            return json.loads(text)
        except ValueError:
            return text
    return text


def parameter_text(value: Any) -> str | None:
    """A tool argument as the text of a statement parameter (Postgres infers its type from the SQL)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | str):
        return str(value)
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
