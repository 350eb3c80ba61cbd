"""The documented contracts match what the gateway really sends and accepts.

Every statement of the SQL corpus is turned into the exact input document the
policy gate builds and validated against docs/schema/policy-input.schema.json,
whose objects forbid unknown properties: a field the analyser emits but the
schema (and so the documentation) lacks fails this test.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from enforcer.analysis import AnalysisError, analyse
from enforcer.audit.decision_log import DecisionLog
from enforcer.config import SHIPPED_POLICIES
from enforcer.identity import Identity
from enforcer.policy.decision import parse_decision
from enforcer.policy.engine import EmbeddedEngine
from enforcer.proxy.gate import SessionContext
from enforcer.proxy.policy_gate import PolicyGate
from tests.unit.analysis.corpus import load_corpus

SCHEMAS = Path(__file__).resolve().parents[3] / "docs" / "schema"
INPUT_SCHEMA = json.loads((SCHEMAS / "policy-input.schema.json").read_text())
DECISION_SCHEMA = json.loads((SCHEMAS / "decision.schema.json").read_text())
CASES = [c for c in load_corpus() if not c.error]


@pytest.fixture(scope="module")
def gate() -> PolicyGate:
    return PolicyGate(EmbeddedEngine([SHIPPED_POLICIES]), DecisionLog(None))


def context() -> SessionContext:
    identity = Identity(
        "ci-bot", "pgwarden", ("agents",), "gateway-token", time.time() + 60, "jti", {"sub": "ci-bot"}
    )
    ctx = SessionContext("s1", identity, "demo", "demo", "127.0.0.1:5555", True, "psql")
    ctx.parameters.update({"server_version": "15.18", "application_name": "psql"})
    return ctx


def inputs(gate: PolicyGate, sql: str) -> list[dict[str, Any]]:
    analysis = analyse(sql)
    # Round-trip through JSON: that is what the engines receive.
    return [json.loads(json.dumps(doc)) for _, doc in gate._inputs(context(), "simple", analysis)]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_every_emitted_field_is_in_the_schema(gate: PolicyGate, case: Any) -> None:
    try:
        docs = inputs(gate, case.sql)
    except AnalysisError:
        pytest.fail(f"corpus case {case.name} is not marked as an error but does not parse")
    for doc in docs:
        jsonschema.validate(doc, INPUT_SCHEMA)


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT name FROM products",
        "DELETE FROM orders",
        "SELECT email FROM customers",
        "UPDATE products SET price = 1 WHERE id = 2",
    ],
)
def test_shipped_decisions_match_the_decision_schema(gate: PolicyGate, sql: str) -> None:
    for doc in inputs(gate, sql):
        raw = gate.engine.evaluate_sync(doc)
        jsonschema.validate(raw, DECISION_SCHEMA)
        assert parse_decision(raw).failure is None


def test_schema_rejects_an_unknown_field(gate: PolicyGate) -> None:
    doc = inputs(gate, "SELECT 1")[0]
    doc["statement"]["surprise"] = True
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, INPUT_SCHEMA)
