"""Property tests: analyse() only ever raises AnalysisError, and what it returns is well-formed."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from enforcer.analysis import AnalysisError, analyse
from enforcer.analysis.errors import INTERNAL_ERROR
from tests.unit.analysis.corpus import load_corpus
from tests.unit.analysis.invariants import check_invariants

MODEST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Any code point, surrogates and NUL included.
any_text = st.text(st.characters(exclude_categories=()), max_size=200)

FRAGMENTS = [
    "SELECT",
    "INSERT INTO",
    "UPDATE",
    "DELETE FROM",
    "MERGE INTO",
    "WITH",
    "AS",
    "(",
    ")",
    ",",
    ";",
    "FROM",
    "WHERE",
    "JOIN",
    "ON",
    "USING",
    "RETURNING",
    "VALUES",
    "SET",
    "INTO",
    "t",
    "u",
    "s.t",
    "*",
    "a",
    "b",
    "t.a",
    "1",
    "'x'",
    "$1",
    "=",
    "+",
    "AND",
    "OR",
    "NOT",
    "EXISTS",
    "IN",
    "LATERAL",
    "UNION",
    "ORDER BY",
    "GROUP BY",
    "HAVING",
    "LIMIT",
    "FOR UPDATE",
    "DO",
    "$$ x $$",
    "EXPLAIN",
    "ANALYZE",
    "PREPARE p AS",
    "EXECUTE p",
    "COPY",
    "TO STDOUT",
    "FROM STDIN",
    "PROGRAM 'x'",
    "set_config('role', 'x', false)",
    "pg_sleep(1)",
    "f(a)",
    "count(*)",
    "OVER (PARTITION BY a)",
    "CREATE TABLE",
    "DROP TABLE",
    "ALTER TABLE",
    "GRANT",
    "REVOKE",
    "TO",
    "ROLE",
    "SESSION AUTHORIZATION",
    "BEGIN",
    "COMMIT",
    "TRUNCATE",
    "LOCK",
    "VACUUM",
    "CALL p()",
    "/* c */",
    "-- c\n",
    'U&"\\0061"',
    "E'\\''",
    "DEFAULT",
    "ON CONFLICT (a) DO UPDATE SET a = excluded.a",
    "WHEN MATCHED THEN DELETE",
    "CASE WHEN a THEN b END",
    "ARRAY[1]",
    "ROW(1)",
    "a::int",
    "DISTINCT",
    "TABLE t",
    "NULL",
]
fragment_soup = st.lists(st.sampled_from(FRAGMENTS), min_size=1, max_size=25).map(" ".join)

CORPUS_SQL = [case.sql for case in load_corpus() if case.error is None]


@st.composite
def mutated_corpus_sql(draw: st.DrawFn) -> str:
    """A corpus statement with a few characters deleted, inserted or replaced: near-valid SQL."""
    sql = draw(st.sampled_from(CORPUS_SQL))
    for _ in range(draw(st.integers(1, 3))):
        position = draw(st.integers(0, len(sql)))
        action = draw(st.sampled_from(["delete", "insert", "replace"]))
        piece = draw(
            st.sampled_from(["(", ")", ",", ";", " ", "'", '"', "$", "*", "a", "1", "--", "/*", "SELECT "])
        )
        if action == "delete":
            sql = sql[:position] + sql[position + 1 :]
        elif action == "insert":
            sql = sql[:position] + piece + sql[position:]
        else:
            sql = sql[:position] + piece + sql[position + len(piece) :]
    return sql


def _check(sql: str) -> None:
    try:
        analysis = analyse(sql)
    except AnalysisError as error:
        # Refusals are the parser's (or the text's) fault, never an unexpected tree shape.
        assert error.sqlstate != INTERNAL_ERROR, (sql, error.__cause__)
        assert error.message
        return
    for index, statement in enumerate(analysis.statements):
        assert statement.index == index
        check_invariants(statement.to_document(include_ast=False))


@MODEST
@given(any_text)
def test_arbitrary_text(sql: str) -> None:
    _check(sql)


@MODEST
@given(fragment_soup)
def test_sql_fragment_soup(sql: str) -> None:
    _check(sql)


@MODEST
@given(mutated_corpus_sql())
def test_mutated_corpus_statements(sql: str) -> None:
    _check(sql)
