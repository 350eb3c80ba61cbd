"""Every case of the SQL corpus (testdata/sql/*.sql) yields the annotated facts."""

from __future__ import annotations

import json

import pytest

from enforcer.analysis import AnalysisError, analyse
from tests.unit.analysis.corpus import Case, check_document, load_corpus
from tests.unit.analysis.invariants import check_invariants

CASES = load_corpus()


def test_corpus_is_substantial() -> None:
    files = {case.file for case in CASES}
    assert {
        "select.sql",
        "dml.sql",
        "ddl.sql",
        "utility.sql",
        "session.sql",
        "copy.sql",
        "bypass.sql",
    } <= files
    assert len(CASES) >= 300


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_corpus_case(case: Case) -> None:
    if case.error is not None:
        with pytest.raises(AnalysisError) as raised:
            analyse(case.sql)
        assert case.error in str(raised.value)
        if case.sqlstate is not None:
            assert raised.value.sqlstate == case.sqlstate
        return
    analysis = analyse(case.sql)
    assert len(analysis.statements) == case.statement_count, [s.text for s in analysis.statements]
    problems: list[str] = []
    for index, statement in enumerate(analysis.statements):
        assert statement.index == index
        assert statement.document["index"] == index
        assert statement.document["text"] == statement.text
        check_invariants(dict(statement.document))
        problems += [
            f"[{index}] {problem}"
            for problem in check_document(dict(statement.document), case.expect.get(index, {}))
        ]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("case", [c for c in CASES if c.error is None], ids=lambda c: c.id)
def test_corpus_case_is_deterministic(case: Case) -> None:
    first = [s.to_document() for s in analyse(case.sql).statements]
    second = [s.to_document() for s in analyse(case.sql).statements]
    assert json.dumps(first) == json.dumps(second)
