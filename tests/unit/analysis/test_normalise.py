"""The normalisation fast path returns exactly what the parser's normaliser returns."""

from __future__ import annotations

import random
import re

import pglast.parser
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from enforcer.analysis.normalise import LiteralTemplates, template_of
from tests.unit.analysis.corpus import load_corpus

_DIGIT_RUN = re.compile(r"[0-9]+")
#: New values for a literal: the same length, shorter, longer, leading zeros, past int4 and nine digits.
VALUES = ["0", "7", "42", "007", "123456789", "999999999", "1234567890", "99999999999999999999"]


def parser(text: str) -> str | None:
    try:
        return pglast.parser.normalize(text)
    except pglast.parser.ParseError:
        return None


def new_literals(text: str, rng: random.Random) -> str:
    """``text`` with every run of digits replaced (inside identifiers and strings as well)."""
    return _DIGIT_RUN.sub(lambda _: rng.choice([*VALUES, str(rng.randint(0, 10**6))]), text)


def test_corpus_with_new_literal_values_normalises_as_the_parser_does() -> None:
    rng = random.Random(20261127)
    templates = LiteralTemplates()
    checked = 0
    for case in load_corpus():
        assert templates.normalise(case.sql) == parser(case.sql), case.id
        for _ in range(8):
            text = new_literals(case.sql, rng)
            assert templates.normalise(text) == parser(text), f"{case.id}: {text!r}"
            checked += 1
    # The fast path must actually have answered a good share, or this test proves nothing.
    assert templates.hits > checked // 10, (templates.hits, checked)


PAIRS = [
    # (learnt from, then asked)
    (
        "SELECT abalance FROM pgbench_accounts WHERE aid = 5;",
        "SELECT abalance FROM pgbench_accounts WHERE aid = 912;",
    ),
    ("SELECT 1 -5", "SELECT 1 -55"),
    ("SELECT a FROM t WHERE a = 5", "SELECT a FROM t WHERE a = 1234567890"),  # ten digits: the parser
    ("SELECT a::float(5)", "SELECT a::float(0)"),  # a type modifier is not a replaced constant
    ("SELECT a FROM t1 WHERE b = 1", "SELECT a FROM t2 WHERE b = 1"),  # digits of a name
    ("SELECT 5", "SELECT 0x1F"),
    ("SELECT 5", "SELECT 1_000"),
    ("SELECT 5, 1.5", "SELECT 6, 1.5"),  # a decimal literal: no template
    ("SELECT x FROM t LIMIT 5 OFFSET 10", "SELECT x FROM t LIMIT 50 OFFSET 0"),
    ("SELECT '5'", "SELECT '6'"),  # a string literal: no template
    ("SELECT 5 -- 5\n", "SELECT 6 -- 7\n"),
    ("SELECT 5 /* 5 */", "SELECT 6 /* 7 */"),
    ("SELECT $1, 5", "SELECT $1, 6"),  # a parameter in the text: no template
    ("SELECT $$5$$, 5", "SELECT $$6$$, 6"),  # dollar quoting: no template
    ("SELECT -5", "SELECT -6"),  # the constant's span includes the sign: no template
    ("SELECT a[1:2] FROM t", "SELECT a[3:4] FROM t"),
    ("SELECT 5::int", "SELECT 6::int"),
    ("SELECT 5abc", "SELECT 6abc"),  # does not parse
    ("SELECT x5", "SELECT x6"),
    ("SELECT 5 FROM t", "SELECT 6 FROM t; DROP TABLE t"),
]


@pytest.mark.parametrize(("learnt", "asked"), PAIRS)
def test_pairs_normalise_as_the_parser_does(learnt: str, asked: str) -> None:
    templates = LiteralTemplates()
    assert templates.normalise(learnt) == parser(learnt)
    assert templates.normalise(asked) == parser(asked)


def test_a_template_answers_without_the_parser() -> None:
    templates = LiteralTemplates()
    first = "SELECT abalance FROM pgbench_accounts WHERE aid = 5 AND bid IN (1, 2);"
    assert templates.normalise(first) == parser(first)
    for aid in (7, 123456789, 0):
        text = f"SELECT abalance FROM pgbench_accounts WHERE aid = {aid} AND bid IN (3, 44);"
        assert (
            templates.normalise(text)
            == "SELECT abalance FROM pgbench_accounts WHERE aid = $1 AND bid IN ($2, $3);"
        )
    assert (templates.hits, templates.parses) == (3, 1)


@pytest.mark.parametrize(
    "text",
    [
        "SELECT $1, 5",
        "SELECT $$x$$, 5",
        "SELECT -5",
        "SELECT 1.5",
        "SELECT '5'",
        "SELECT 1234567890",
        "SELECT a FROM t WHERE b = E'5'",
        "SELECT 5.",
    ],
)
def test_no_template_unless_every_constant_is_a_small_bounded_integer(text: str) -> None:
    normalised = parser(text)
    assert normalised is not None and normalised != text
    assert template_of(text, normalised) is None


def test_the_number_of_templates_is_bounded() -> None:
    templates = LiteralTemplates(max_keys=2)
    for table in ("a", "b", "c"):
        templates.normalise(f"SELECT x FROM {table} WHERE y = 1")
    assert len(templates._by_key) == 2
    templates.normalise("SELECT x FROM a WHERE y = 2")  # evicted: parsed again
    assert templates.parses == 4


TOKENS = [
    "SELECT", "FROM", "WHERE", "t", "t1", "a2b", "x", "=", "-", "+", "*", "/", "(", ")", ",", ";",
    ".", "..", ":", "::int", "[", "]", "e", "E", "_", "x", "'s'", "'5'", "E'\\5'", "U&'\\0035'",
    "$1", "$$5$$", "--c5\n", "/*5*/", " ", "\n", "5", "0", "42", "1.5", "1e5", "0x1F", "1_000", "AND",
    "IN", "LIMIT", "float(5)", '"q5"', "-5",
]  # fmt: skip


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(TOKENS), min_size=1, max_size=14), st.randoms(use_true_random=False))
def test_token_soup_normalises_as_the_parser_does(tokens: list[str], rng: random.Random) -> None:
    learnt = "SELECT " + "".join(tokens)  # tokens run together unless a space or newline is drawn
    templates = LiteralTemplates()
    assert templates.normalise(learnt) == parser(learnt)
    for _ in range(4):
        asked = new_literals(learnt, rng)
        assert templates.normalise(asked) == parser(asked), (learnt, asked)
