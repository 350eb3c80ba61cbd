"""The analyse() API: shapes, text slicing, errors, and that it never builds pglast node objects."""

from __future__ import annotations

import dataclasses
import json
import re
import time
from pathlib import Path

import pglast
import pytest
from pglast import parser

from enforcer.analysis import SIDE_EFFECT_FUNCTIONS, Analysis, AnalysisError, StatementFacts, analyse
from enforcer.analysis.errors import CHARACTER_NOT_IN_REPERTOIRE, STATEMENT_TOO_COMPLEX, SYNTAX_ERROR
from enforcer.analysis.facts import (
    ACCESS_MODES,
    COLUMN_CONTEXTS,
    DOCUMENT_KEYS,
    FLAG_KEYS,
    KINDS,
    WRITE_KINDS,
)
from tests.unit.analysis.invariants import check_invariants


@pytest.mark.parametrize(
    "sql", ["", "   ", "\n\t", "-- nothing\n", "/* nothing */", ";", ";;  ;", "/* a */ -- b\n;"]
)
def test_empty_or_comment_only_text_has_no_statements(sql: str) -> None:
    assert analyse(sql) == Analysis(statements=())


def test_result_types_are_frozen() -> None:
    analysis = analyse("SELECT 1")
    assert isinstance(analysis.statements, tuple)
    statement = analysis.statements[0]
    assert isinstance(statement, StatementFacts)
    with pytest.raises(dataclasses.FrozenInstanceError):
        statement.text = "DELETE FROM t"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        analysis.statements = ()  # type: ignore[misc]


def test_to_document_adds_the_ast_and_is_json_serialisable() -> None:
    statement = analyse("SELECT email FROM customers WHERE id = $1").statements[0]
    document = statement.to_document()
    assert list(document) == [*DOCUMENT_KEYS, "ast"]
    assert document["ast"] is statement.ast
    assert "SelectStmt" in document["ast"]
    assert json.loads(json.dumps(document))["ast"] == statement.ast
    without = statement.to_document(include_ast=False)
    assert "ast" not in without
    assert list(without) == list(DOCUMENT_KEYS)
    assert list(without["flags"]) == list(FLAG_KEYS)
    # to_document returns a new mapping each time: adding keys does not touch the facts.
    document["extra"] = 1
    assert "extra" not in statement.document


def test_ast_is_the_raw_statement_node_of_that_statement() -> None:
    analysis = analyse("SELECT 1; DELETE FROM t")
    assert list(analysis.statements[0].ast) == ["SelectStmt"]
    assert list(analysis.statements[1].ast) == ["DeleteStmt"]
    assert analysis.statements[1].ast["DeleteStmt"]["relation"]["relname"] == "t"


def test_multi_statement_indexes_and_texts() -> None:
    analysis = analyse("  SELECT 1 ;\nUPDATE t SET a = 1 WHERE b = 2;DELETE FROM u  ")
    assert [s.index for s in analysis.statements] == [0, 1, 2]
    assert [s.text for s in analysis.statements] == [
        "SELECT 1",
        "UPDATE t SET a = 1 WHERE b = 2",
        "DELETE FROM u",
    ]
    assert [s.document["kind"] for s in analysis.statements] == ["select", "update", "delete"]


def test_text_slicing_uses_byte_offsets_correctly_with_multibyte_characters() -> None:
    sql = "SELECT 'ü€𝄞' AS x; SELECT 'ß'; DELETE FROM \"tä\""
    texts = [s.text for s in analyse(sql).statements]
    assert texts == ["SELECT 'ü€𝄞' AS x", "SELECT 'ß'", 'DELETE FROM "tä"']
    assert analyse(sql).statements[2].document["relations"] == [
        {"schema": None, "name": "tä", "access": "delete"}
    ]


def test_identifier_folding_and_unicode_escapes_are_the_parsers() -> None:
    document = (
        analyse('SELECT "Email", EMAIL FROM "Users" u, Public.ORDERS, U&"d\\0061t\\+000061"')
        .statements[0]
        .document
    )
    assert {(r["schema"], r["name"]) for r in document["relations"]} == {
        (None, "Users"),
        ("public", "orders"),
        (None, "data"),
    }
    assert {c["name"] for c in document["columns"]} == {"Email", "email"}


@pytest.mark.parametrize(
    ("sql", "message", "position"),
    [
        ("selec 1", 'syntax error at or near "selec"', 1),
        ("SELECT 1 FROM t WHERE x = = 1", 'syntax error at or near "="', 27),
        ("SELECT 'é' FROM FROM", 'syntax error at or near "FROM"', 17),
        ("SELECT * FROM t WHERE", "syntax error at end of input", None),
        ("SELECT 1; SELEC 2", 'syntax error at or near "SELEC"', 11),
    ],
)
def test_syntax_errors_carry_the_parsers_message_and_position(
    sql: str, message: str, position: int | None
) -> None:
    with pytest.raises(AnalysisError) as raised:
        analyse(sql)
    error = raised.value
    assert error.message == message
    assert error.position == position
    assert error.sqlstate == SYNTAX_ERROR
    assert str(error) == (message if position is None else f"{message} (at character {position})")


def test_nul_character_is_refused() -> None:
    # libpg_query reads a C string: without this check "DROP TABLE t" would go unseen.
    with pytest.raises(AnalysisError) as raised:
        analyse("SELECT 1;\x00 DROP TABLE t")
    assert raised.value.sqlstate == CHARACTER_NOT_IN_REPERTOIRE
    assert raised.value.position == 10


def test_unpaired_surrogate_is_refused() -> None:
    with pytest.raises(AnalysisError) as raised:
        analyse("SELECT '\ud800'")
    assert raised.value.sqlstate == CHARACTER_NOT_IN_REPERTOIRE


def test_moderately_deep_nesting_is_analysed() -> None:
    # The walk is iterative: depth is limited by the parser and the JSON decoder, not by the walker.
    analysis = analyse("SELECT a FROM t WHERE " + " + ".join(["a"] * 400) + " > 0")
    assert analysis.statements[0].document["relations"] == [{"schema": None, "name": "t", "access": "read"}]
    nested = "SELECT " + "(SELECT " * 60 + "secret FROM s" + ")" * 60
    assert analyse(nested).statements[0].document["relations"][0]["name"] == "s"


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT 1" + " + 1" * 2000,
        "SELECT " + "(" * 20000 + "1" + ")" * 20000,
        "SELECT " + "ARRAY[" * 3000 + "1" + "]" * 3000,
        "SELECT 1" + " + 1" * 50000,
    ],
)
def test_excessive_nesting_is_refused_not_crashed(sql: str) -> None:
    with pytest.raises(AnalysisError) as raised:
        analyse(sql)
    assert raised.value.sqlstate in (STATEMENT_TOO_COMPLEX, SYNTAX_ERROR)


def test_analysis_never_builds_pglast_node_objects(monkeypatch: pytest.MonkeyPatch) -> None:
    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("pglast Python node objects must not be built on the hot path")

    monkeypatch.setattr(parser, "parse_sql", forbidden)
    monkeypatch.setattr(pglast, "parse_sql", forbidden)
    monkeypatch.setattr(pglast.ast.Node, "__init__", forbidden)
    sql = (
        "WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d;"
        " EXPLAIN ANALYZE UPDATE u SET a = 1; PREPARE p AS SELECT 1"
    )
    assert len(analyse(sql).statements) == 3


def test_every_key_is_present_for_every_kind_of_statement() -> None:
    sql = ";".join(
        [
            "SELECT 1",
            "INSERT INTO t VALUES (1)",
            "CREATE TABLE t (a int)",
            "SET ROLE x",
            "COPY t TO STDOUT",
            "EXPLAIN SELECT 1",
            "PREPARE p AS SELECT 1",
            "EXECUTE p",
            "DEALLOCATE p",
            "DO $$ $$",
            "BEGIN",
            "CHECKPOINT",
        ]
    )
    for statement in analyse(sql).statements:
        check_invariants(statement.to_document(include_ast=False))


def test_side_effect_functions_constant_is_public_and_documented() -> None:
    assert {
        "pg_terminate_backend",
        "pg_read_file",
        "lo_import",
        "dblink",
        "set_config",
        "pg_sleep",
    } <= SIDE_EFFECT_FUNCTIONS


def test_simple_select_is_fast() -> None:
    sql = "SELECT id, email FROM customers WHERE id = 1"
    analyse(sql)
    runs = 300
    started = time.perf_counter()
    for _ in range(runs):
        analyse(sql)
    per_call = (time.perf_counter() - started) / runs
    # Measured ~40 us on a laptop; the bound is loose so that a loaded CI machine does not flake.
    assert per_call < 0.001, f"analyse() took {per_call * 1e6:.0f} us"


DOCS = Path(__file__).resolve().parents[3] / "docs" / "statement-facts.md"


def test_docs_example_is_the_real_output() -> None:
    text = DOCS.read_text(encoding="utf-8")
    match = re.search(
        r'`analyse\("DELETE FROM audit"\)\.statements\[0\]\.document`:\n\n```json\n(.*?)```', text, re.S
    )
    assert match is not None
    assert json.loads(match.group(1)) == analyse("DELETE FROM audit").statements[0].document


def test_docs_name_every_key_and_value() -> None:
    text = DOCS.read_text(encoding="utf-8")
    names = [*DOCUMENT_KEYS, *FLAG_KEYS, *ACCESS_MODES, *COLUMN_CONTEXTS, *KINDS, *WRITE_KINDS]
    missing = [name for name in names if f"`{name}`" not in text]
    assert not missing, missing
