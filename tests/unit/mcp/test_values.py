"""Result values for agents: type names and JSON values that lose nothing."""

from __future__ import annotations

import pytest

from enforcer.mcp.values import builtin_type_name, json_value, parameter_text


@pytest.mark.parametrize(
    ("oid", "name"),
    [
        (16, "boolean"),
        (23, "integer"),
        (1007, "integer[]"),
        (1184, "timestamp with time zone"),
        (90001, None),
    ],
)
def test_type_names(oid: int, name: str | None) -> None:
    assert builtin_type_name(oid) == name


@pytest.mark.parametrize(
    ("oid", "text", "value"),
    [
        (23, "42", 42),
        (20, "-9007199254740993", -9007199254740993),
        (701, "1.5", 1.5),
        (701, "NaN", "NaN"),
        (701, "Infinity", "Infinity"),
        (16, "t", True),
        (16, "f", False),
        (1700, "129.00", "129.00"),  # numeric keeps its precision
        (3802, '{"a": [1, 2]}', {"a": [1, 2]}),
        (1007, "{1,2}", "{1,2}"),  # arrays as Postgres prints them
        (1184, "2024-01-02 03:04:05+00", "2024-01-02 03:04:05+00"),
        (90001, "happy", "happy"),
        (23, None, None),
    ],
)
def test_json_values(oid: int, text: str | None, value: object) -> None:
    assert json_value(oid, text) == value


def test_parameters_are_text() -> None:
    assert [parameter_text(v) for v in (None, True, False, 3, 2.5, "x", {"a": 1}, [1, "b"])] == [
        None,
        "true",
        "false",
        "3",
        "2.5",
        "x",
        '{"a":1}',
        '[1,"b"]',
    ]
