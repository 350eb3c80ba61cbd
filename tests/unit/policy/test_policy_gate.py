"""The policy gate without sockets: memory for the extended protocol, caches, records, fail closed."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

from enforcer.analysis.normalise import normalise
from enforcer.audit.decision_log import DecisionLog, DecisionLogError
from enforcer.config import SHIPPED_POLICIES
from enforcer.identity import Identity
from enforcer.policy.engine import EmbeddedEngine, PolicyError
from enforcer.proxy.gate import SessionContext, Verdict
from enforcer.proxy.policy_gate import PolicyGate, cached_analysis, choose_cache_key, literal_independent
from enforcer.wire import Bind, BindHead, Execute, Parse, Query

ENGINE = EmbeddedEngine([SHIPPED_POLICIES])


def ctx(groups: tuple[str, ...] = ("agents",)) -> SessionContext:
    identity = Identity("ci-bot", "pgwarden", groups, "gateway-token", time.time() + 60)
    return SessionContext("s1", identity, "demo", "demo", "127.0.0.1:1", True)


def gate(**kw: Any) -> PolicyGate:
    kw.setdefault("cache_key", choose_cache_key("auto", ENGINE.texts))
    return PolicyGate(ENGINE, DecisionLog(None), **kw)


def head(bind: Bind) -> BindHead:
    return BindHead.decode(bind.encode()[5:])


def decide(g: PolicyGate, c: SessionContext, msg: Any) -> Verdict:
    v = g.decide(c, msg)
    assert isinstance(v, Verdict)
    return v


def test_shipped_policy_allows_facts_keyed_cache() -> None:
    assert choose_cache_key("auto", ENGINE.texts) == "facts"
    assert choose_cache_key("auto", ["package x\nallow if input.statement.text == 'x'"]) == "exact"
    assert choose_cache_key("auto", ["package x\nallow if walk(input, [p, v])"]) == "exact"


def test_extended_protocol_memory() -> None:
    g, c = gate(), ctx()
    assert decide(g, c, Parse("ok", "SELECT name FROM products WHERE id = $1", ())).allowed
    assert not decide(g, c, Parse("bad", "DELETE FROM orders", ())).allowed
    assert decide(g, c, head(Bind("p1", "ok", (), (b"1",), ()))).allowed
    assert decide(g, c, Execute("p1", 0)).allowed
    refused = decide(g, c, head(Bind("p2", "bad", (), (), ())))
    assert refused.refusal is not None and refused.refusal.sqlstate == "42501"
    assert not decide(g, c, Execute("p2", 0)).allowed
    never = decide(g, c, head(Bind("", "never-parsed", (), (), ())))
    assert never.refusal is not None and never.refusal.sqlstate == "26000"
    unknown_portal = decide(g, c, Execute("nope", 0))
    assert unknown_portal.refusal is not None and unknown_portal.refusal.sqlstate == "26000"


def test_sql_prepare_execute_and_deallocate() -> None:
    g, c = gate(), ctx()
    assert decide(g, c, Query("PREPARE q AS SELECT name FROM products WHERE id = $1")).allowed
    assert decide(g, c, Query("EXECUTE q(1)")).allowed
    assert not decide(g, c, Query("PREPARE w AS DELETE FROM orders")).allowed
    assert not decide(g, c, Query("EXECUTE w")).allowed
    assert decide(g, c, Query("DEALLOCATE q")).allowed
    assert not decide(g, c, Query("EXECUTE q(1)")).allowed


@pytest.mark.parametrize(
    "sql",
    [
        "SET client_encoding = 'LATIN1'",
        "SET standard_conforming_strings = off",
        "RESET standard_conforming_strings",
        "SELECT set_config('client_encoding', 'SQL_ASCII', false)",
    ],
)
def test_pinned_settings_are_refused_whatever_the_policy(sql: str) -> None:
    v = decide(gate(), ctx(("dba",)), Query(sql))
    assert v.refusal is not None and "pinned" in v.refusal.message


def test_literals_share_one_analysis_but_records_keep_their_text() -> None:
    g, c = gate(), ctx()
    cached_analysis.cache_clear()
    for aid in (1, 2, 3):
        assert decide(g, c, Query(f"SELECT name FROM products WHERE id = {aid}")).allowed
    assert cached_analysis.cache_info().currsize == 1  # only the normalised form was analysed
    texts = [r["input"]["statement"]["text"] for r in g.decision_log.memory]
    assert texts == [f"SELECT name FROM products WHERE id = {aid}" for aid in (1, 2, 3)]
    assert [r["enforcement"]["cached"] for r in g.decision_log.memory] == [False, True, True]


@pytest.mark.parametrize(
    "sql",
    [
        "SET search_path = 'evil'",
        "SELECT set_config('role', 'postgres', false)",
        "SELECT pg_read_file('/etc/passwd')",
        "COPY orders TO PROGRAM 'cat'",
        "SELECT query_to_xml('DELETE FROM orders', true, true, '')",
    ],
)
def test_literal_dependent_statements_are_analysed_as_written(sql: str) -> None:
    norm = normalise(sql)
    assert norm is None or norm == sql or not literal_independent(norm)


def test_cache_is_invalidated_by_session_changes() -> None:
    g, c = gate(), ctx()
    decide(g, c, Query("SELECT name FROM products"))
    decide(g, c, Query("SELECT name FROM products"))
    assert [r["enforcement"]["cached"] for r in g.decision_log.memory] == [False, True]
    decide(g, c, Query("SET application_name = 'x'"))
    decide(g, c, Query("SELECT name FROM products"))
    assert g.decision_log.memory[-1]["enforcement"]["cached"] is False
    c.transaction_status = "T"
    decide(g, c, Query("SELECT name FROM products"))
    assert g.decision_log.memory[-1]["enforcement"]["cached"] is False


class BrokenEngine:
    name = "broken"
    version = "x"
    synchronous = True
    texts: list[str] = []

    def __init__(self, result: Any = None, error: bool = False) -> None:
        self.result = result
        self.error = error

    def evaluate_sync(self, input_doc: dict[str, Any]) -> Any:
        if self.error:
            raise PolicyError("engine exploded")
        return self.result

    async def evaluate(self, input_doc: dict[str, Any]) -> Any:
        return self.evaluate_sync(input_doc)


@pytest.mark.parametrize(
    "engine,fragment",
    [
        (BrokenEngine(error=True), "engine exploded"),
        (BrokenEngine(result=None), "undefined"),
        (BrokenEngine(result={"action": "allow-ish"}), "unknown action"),
        (BrokenEngine(result={"action": "mask", "masks": []}), "without any mask"),
        (BrokenEngine(result=["allow"]), "not an object"),
    ],
)
def test_fail_closed(engine: BrokenEngine, fragment: str) -> None:
    g = PolicyGate(engine, DecisionLog(None))  # type: ignore[arg-type]
    v = decide(g, ctx(), Query("SELECT 1"))
    assert v.refusal is not None and v.refusal.sqlstate == "42501"
    assert "fail closed" in v.refusal.message and fragment in v.refusal.message
    assert g.decision_log.memory[0]["result"]["action"] == "deny"


def _broken_log(tmp_path: Path, **kw: Any) -> DecisionLog:
    log = DecisionLog(tmp_path / "d", stream="t", **kw)
    assert log._fd is not None
    os.close(log._fd)  # the segment's descriptor is gone: every write fails with EBADF
    return log


def test_unwritable_decision_log_refuses(tmp_path: Path) -> None:
    log = _broken_log(tmp_path)
    g = PolicyGate(ENGINE, log)
    v = decide(g, ctx(), Query("SELECT name FROM products"))
    assert v.refusal is not None and "cannot record its decision" in v.refusal.message
    with pytest.raises(DecisionLogError):
        log.write(decision_id="x", input_json="{}", result={}, enforcement={}, metrics={})


def test_a_cached_decision_is_refused_once_the_log_cannot_be_written(tmp_path: Path) -> None:
    log = DecisionLog(tmp_path / "d", stream="t")
    g, c = PolicyGate(ENGINE, log, cache_key="facts"), ctx()
    assert decide(g, c, Query("SELECT name FROM products WHERE id = 1")).allowed
    assert log._fd is not None
    os.close(log._fd)  # the disk goes away between two uses of the same decision
    v = decide(g, c, Query("SELECT name FROM products WHERE id = 2"))
    assert v.refusal is not None and "cannot record its decision" in v.refusal.message
    assert not decide(g, c, Query("SELECT name FROM products WHERE id = 3")).allowed  # the chain stays closed


def test_decision_log_failure_forwards_only_when_configured(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    g = PolicyGate(ENGINE, _broken_log(tmp_path, fail_open=True))
    v = decide(g, ctx(), Query("SELECT name FROM products"))
    assert v.refusal is None and v.action == "allow"
    assert "FORWARDING WITHOUT A DECISION RECORD" in caplog.text


def test_parse_error_is_refused_as_syntax_error() -> None:
    v = decide(gate(), ctx(), Query("SELEC 1"))
    assert v.refusal is not None and v.refusal.sqlstate == "42601" and "syntax error" in v.refusal.message


def test_cached_records_match_uncached_ones_except_id_time_and_cache() -> None:
    """Cached uses assemble the record from kept pieces: it must say what an uncached one says."""
    g, c = gate(), ctx()
    decide(g, c, Query("SELECT name FROM products WHERE id = 1"))
    decide(g, c, Query("SELECT name FROM products WHERE id = 'ünï\"\\x'"))
    first, second = g.decision_log.memory
    assert second["input"]["statement"]["text"] == "SELECT name FROM products WHERE id = 'ünï\"\\x'"
    assert (first["enforcement"]["cached"], second["enforcement"]["cached"]) == (False, True)
    assert second["metrics"] == {"timer_pgwarden_decision_ns": 0}
    for record in (first, second):
        del record["decision_id"], record["timestamp"], record["enforcement"]["cached"], record["metrics"]
        del record["input"]["statement"]["text"]
    assert first == second


def test_recorded_input_follows_the_session_state() -> None:
    g, c = gate(), ctx()
    decide(g, c, Query("SELECT name FROM products"))
    c.transaction_status = "T"
    c.parameters["application_name"] = "reporting"
    c.parameters_epoch += 1
    decide(g, c, Query("SELECT name FROM products"))
    decide(g, c, Parse("", "SELECT name FROM products", ()))
    sessions = [r["input"]["session"] for r in g.decision_log.memory]
    assert [s["transaction_status"] for s in sessions] == ["I", "T", "T"]
    assert [s["protocol"] for s in sessions] == ["simple", "simple", "extended"]
    assert sessions[1]["parameters"]["application_name"] == "reporting"


def test_each_statement_of_a_message_is_recorded_with_its_own_text() -> None:
    g, c = gate(), ctx()
    sql = "SELECT name FROM products; SELECT 'é' AS e"
    for _ in range(2):  # uncached, then cached
        decide(g, c, Query(sql))
    statements = [r["input"]["statement"] for r in g.decision_log.memory]
    assert [s["text"] for s in statements] == ["SELECT name FROM products", "SELECT 'é' AS e"] * 2
    assert [s["message"] for s in statements] == [{"index": 0, "count": 2}, {"index": 1, "count": 2}] * 2
    assert [r["enforcement"]["statement_index"] for r in g.decision_log.memory] == [0, 1, 0, 1]
