"""`pgwarden policy replay`: recorded decisions re-decided under a candidate policy.

The logs are real: statements decided by the shipped policies through the gateway's PolicyGate,
which writes the decision records to hash-chained segments on disk. The candidates are copies
of policies/rego with a data.json change, or small policies of their own.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from enforcer.audit.decision_log import DecisionLog
from enforcer.cli import app
from enforcer.config import SHIPPED_POLICIES
from enforcer.identity import Identity
from enforcer.policy.engine import EmbeddedEngine
from enforcer.policy.replay import (
    SKIP_EXECUTE,
    SKIP_PARSE_ERROR,
    read_decisions,
    reads_ast,
    replay_log,
    rule_of,
)
from enforcer.proxy.gate import SessionContext, Verdict
from enforcer.proxy.policy_gate import PolicyGate, choose_cache_key, pinned_setting_decision
from enforcer.wire import Parse, Query

runner = CliRunner()
SHIPPED = EmbeddedEngine([SHIPPED_POLICIES])


@dataclass
class Log:
    dir: Path
    #: Between the first stream's records and the second's.
    mark: datetime
    ids: dict[str, str]


def _gate(directory: Path, stream: str, *, record_ast: bool = False) -> PolicyGate:
    labels = {"app": "pgwarden", "engine": SHIPPED.name, "policy_version": SHIPPED.version, "instance": "gw"}
    return PolicyGate(
        SHIPPED,
        DecisionLog(directory, stream=stream, labels=labels),
        cache_key=choose_cache_key("auto", SHIPPED.texts),
        record_ast=record_ast,
    )


def _ctx(session: str, subject: str, group: str) -> SessionContext:
    identity = Identity(subject, "pgwarden", (group,), "gateway-token", time.time() + 600)
    return SessionContext(session, identity, "demo", "demo", "127.0.0.1:5000", True)


def _decide(gate: PolicyGate, ctx: SessionContext, msg: Query | Parse, action: str) -> str:
    verdict = gate.decide(ctx, msg)
    assert isinstance(verdict, Verdict)
    assert verdict.action == action, (msg, verdict.reasons)
    return verdict.decision_id


@pytest.fixture(scope="module")
def log(tmp_path_factory: pytest.TempPathFactory) -> Log:
    directory = tmp_path_factory.mktemp("decision-log")
    ids: dict[str, str] = {}
    g = _gate(directory, "gw-w0")
    bot = _ctx("sess-bot", "ci-bot", "agents")
    ids["read"] = _decide(g, bot, Query("SELECT name FROM products WHERE id = 1"), "allow")
    ids["read_again"] = _decide(g, bot, Query("SELECT name FROM products WHERE id = 2"), "allow")  # cached
    ids["insert"] = _decide(g, bot, Query("INSERT INTO audit_notes (note) VALUES ('hi')"), "review")
    ids["update"] = _decide(g, bot, Parse("u", "UPDATE orders SET quantity = $1 WHERE id = $2", ()), "review")
    ids["delete_all"] = _decide(g, bot, Query("DELETE FROM orders"), "deny")
    ids["masked"] = _decide(g, bot, Query("SELECT email FROM customers"), "mask")
    ids["pinned"] = _decide(g, bot, Query("SET client_encoding = 'LATIN1'"), "deny")
    ids["parse_error"] = _decide(g, bot, Query("SELEC broken"), "deny")
    ids["prepare"] = _decide(g, bot, Query("PREPARE p AS SELECT 1"), "allow")
    ids["execute"] = _decide(g, bot, Query("EXECUTE p"), "allow")  # decided by the gateway as p
    g.decision_log.close()

    mark = datetime.now(UTC)
    g = _gate(directory, "gw-w1")
    dba = _ctx("sess-dba", "ann", "dba")
    ids["dba_ddl"] = _decide(g, dba, Query("CREATE TABLE scratch (x int)"), "allow")
    ids["dba_delete"] = _decide(g, dba, Query("DELETE FROM orders WHERE id = 1"), "allow")
    g.decision_log.close()
    return Log(directory, mark, ids)


def candidate(tmp_path: Path, change: dict[str, dict[str, str]]) -> Path:
    """A copy of policies/rego whose data.json sets ``{group: {capability: value}}`` on ``demo``."""
    root = tmp_path / "candidate"
    shutil.copytree(SHIPPED_POLICIES, root)
    data_file = root / "pgwarden" / "data.json"
    doc = json.loads(data_file.read_text())
    for group, perms in change.items():
        doc["config"]["access"]["groups"][group]["connections"]["demo"]["permissions"].update(perms)
    data_file.write_text(json.dumps(doc, indent=2))
    return root


def replay_json(*args: str) -> dict[str, Any]:
    result = runner.invoke(app, ["policy", "replay", "--format", "json", *args])
    assert result.exit_code == 0, result.output
    report: dict[str, Any] = json.loads(result.stdout)
    return report


def transitions(report: dict[str, Any]) -> dict[str, tuple[int, int]]:
    return {f"{t['old']} -> {t['new']}": (t["decisions"], t["changed"]) for t in report["transitions"]}


def test_the_recorded_policy_reproduces_every_recorded_decision(log: Log) -> None:
    report = replay_json("--policies", str(SHIPPED_POLICIES), "--dir", str(log.dir))
    assert report["found"] == 12
    assert report["skipped"] == {SKIP_EXECUTE: 1, SKIP_PARSE_ERROR: 1}
    assert report["replayed"] == 10 and report["changed"] == 0
    assert transitions(report) == {
        "allow -> allow": (5, 0),
        "review -> review": (2, 0),
        "deny -> deny": (2, 0),  # DELETE without WHERE; the pinned setting (decided by the gateway)
        "mask -> mask": (1, 0),
    }
    assert report["examples"] == [] and report["reasons_added"] == {} and report["unreadable_lines"] == 0


def test_a_stricter_group_turns_reviews_into_denials(log: Log, tmp_path: Path) -> None:
    policies = candidate(tmp_path, {"agents": {"insert": "deny", "update": "deny", "delete": "deny"}})
    report = replay_json("--policies", str(policies), "--dir", str(log.dir))
    assert report["changed"] == 3
    assert transitions(report)["review -> deny"] == (2, 2)
    assert transitions(report)["deny -> deny"] == (2, 1)  # DELETE without WHERE gains a reason
    assert report["reasons_added"] == {"pgwarden.access.not_permitted": 3}
    assert report["reasons_removed"] == {"pgwarden.access.needs_review": 2}
    by_id = {e["decision_id"]: e for e in report["examples"]}
    assert set(by_id) == {log.ids["insert"], log.ids["update"], log.ids["delete_all"]}
    insert = by_id[log.ids["insert"]]
    assert insert["subject"] == "ci-bot" and insert["connection"] == "demo"
    assert insert["statement"] == "INSERT INTO audit_notes (note) VALUES ('hi')"
    assert (insert["old_action"], insert["new_action"]) == ("review", "deny")
    assert insert["reasons_removed"] == [
        "insert on public.audit_notes by group agents on demo needs approval (pgwarden.access.needs_review)"
    ]
    assert insert["reasons_added"] == [
        "insert on public.audit_notes is not permitted for group agents on demo "
        "(pgwarden.access.not_permitted)"
    ]
    assert by_id[log.ids["update"]]["statement"] == "UPDATE orders SET quantity = $1 WHERE id = $2"


def test_table_output_names_transitions_rules_and_examples(log: Log, tmp_path: Path) -> None:
    policies = candidate(tmp_path, {"dba": {"ddl": "deny"}})
    result = runner.invoke(app, ["policy", "replay", "--policies", str(policies), "--dir", str(log.dir)])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert out.startswith(f"Replayed 10 of 12 decision(s) from {log.dir} under {policies} (version ")
    assert "1 would change, 9 would not." in out
    assert re.search(r"^  allow -> deny +1 +1$", out, re.MULTILINE)
    assert "  +1     pgwarden.danger.destructive_kind\n" in out
    assert "  -1     waives pgwarden.danger.destructive_kind\n" in out
    assert f"  {log.ids['dba_ddl']}  " in out and "ann on demo" in out
    assert "    CREATE TABLE scratch (x int)\n    allow -> deny\n" in out
    failing = runner.invoke(
        app, ["policy", "replay", "--policies", str(policies), "--dir", str(log.dir), "--fail-on-change"]
    )
    assert failing.exit_code == 1


def test_window_and_limit(log: Log, tmp_path: Path) -> None:
    policies = candidate(tmp_path, {"dba": {"ddl": "deny"}})
    since = log.mark.isoformat()
    later = replay_json("--policies", str(policies), "--dir", str(log.dir), "--since", since)
    assert later["found"] == 2 and later["replayed"] == 2 and later["changed"] == 1
    assert later["since"] is not None and later["since"].startswith(log.mark.strftime("%Y-%m-%dT%H:%M:%S"))
    earlier = replay_json("--policies", str(policies), "--dir", str(log.dir), "--until", since)
    assert earlier["found"] == 10 and earlier["changed"] == 0
    newest = replay_json("--policies", str(policies), "--dir", str(log.dir), "--limit", "1")
    assert newest["found"] == 12 and newest["replayed"] == 1 and newest["changed"] == 0  # the DELETE
    assert replay_json("--policies", str(policies), "--dir", str(log.dir), "--since", "1h")["found"] == 12
    assert replay_json("--policies", str(policies), "--dir", str(log.dir), "--until", "1h")["found"] == 0


def test_examples_are_bounded_and_spread_over_transitions(log: Log, tmp_path: Path) -> None:
    policies = candidate(
        tmp_path,
        {"agents": {"insert": "deny", "update": "deny", "read": "deny"}, "dba": {"ddl": "deny"}},
    )
    report = replay_json("--policies", str(policies), "--dir", str(log.dir), "--examples", "3")
    assert len(report["examples"]) == 3
    assert len({(e["old_action"], e["new_action"]) for e in report["examples"]}) == 3
    assert report["changed"] > 3


def test_the_gateways_own_rules_are_not_asked_of_the_policy(log: Log, tmp_path: Path) -> None:
    """SET client_encoding = 'LATIN1' is refused by the gateway before any policy, whatever it says."""
    allow_all = tmp_path / "allow-all"
    (allow_all / "pgwarden").mkdir(parents=True)
    (allow_all / "pgwarden" / "decision.rego").write_text(
        "package pgwarden\n\nimport rego.v1\n\n"
        'decision := {"action": "allow", "reasons": ["everything (test.allow_all)"], "masks": [], '
        '"review": null}\n'
    )
    engine = EmbeddedEngine([allow_all])
    with_rule = replay_log(log.dir, engine, gateway_rule=pinned_setting_decision)
    without = replay_log(log.dir, engine)
    assert with_rule.transitions[("deny", "deny")] == [1, 0]  # the pinned setting stays denied
    assert ("deny", "deny") not in without.transitions  # asked of the policy, it would be allowed
    assert without.transitions[("deny", "allow")] == [2, 2]


AST_POLICY = """package pgwarden

import rego.v1

default decision := {"action": "allow", "reasons": ["bounded (test.limit)"], "masks": [], "review": null}

decision := {"action": "deny", "reasons": ["a SELECT without LIMIT (test.limit)"], "masks": [],
             "review": null} if {
	select := input.statement.ast.SelectStmt
	not select.limitCount
}
"""


def test_the_ast_is_re_derived_when_the_candidate_reads_it(tmp_path: Path) -> None:
    directory = tmp_path / "log"
    g = _gate(directory, "gw-w0")
    bot = _ctx("s", "ci-bot", "agents")
    _decide(g, bot, Query("SELECT name FROM products"), "allow")
    _decide(g, bot, Query("SELECT 1 LIMIT 1; SELECT name FROM products"), "allow")
    g.decision_log.close()
    records = read_decisions(directory).decisions
    assert all("ast" not in r.statement for r in records)  # audit.record_ast is off
    policy = tmp_path / "ast-policy" / "pgwarden"
    policy.mkdir(parents=True)
    (policy / "decision.rego").write_text(AST_POLICY)
    engine = EmbeddedEngine([policy.parent])
    assert reads_ast(engine.texts) and not reads_ast(SHIPPED.texts)
    report = replay_log(directory, engine)
    assert report.transitions == {("allow", "deny"): [2, 2], ("allow", "allow"): [1, 1]}
    assert sorted(c.statement for c in report.examples if c.new_action == "deny") == [
        "SELECT name FROM products",
        "SELECT name FROM products",
    ]
    blind = replay_log(directory, engine, with_ast=False)  # without the AST the rule cannot fire
    assert blind.transitions == {("allow", "allow"): [3, 3]}


def test_a_recorded_ast_is_used_as_recorded(tmp_path: Path) -> None:
    directory = tmp_path / "log"
    g = _gate(directory, "gw-w0", record_ast=True)
    _decide(g, _ctx("s", "ci-bot", "agents"), Query("SELECT 1 LIMIT 1"), "allow")
    g.decision_log.close()
    [record] = read_decisions(directory).decisions
    assert "SelectStmt" in record.statement["ast"]
    policy = tmp_path / "ast-policy" / "pgwarden"
    policy.mkdir(parents=True)
    (policy / "decision.rego").write_text(AST_POLICY)
    report = replay_log(directory, EmbeddedEngine([policy.parent]), with_ast=False)
    assert report.transitions == {("allow", "allow"): [1, 1]}  # reasons differ, the action does not


def test_torn_lines_and_other_events_are_skipped(log: Log, tmp_path: Path) -> None:
    copy = tmp_path / "log"
    shutil.copytree(log.dir, copy)
    segment = sorted((copy / "gw-w1").glob("*.jsonl"))[-1]
    with open(segment, "a") as f:
        f.write('{"event":"decision","decision_id":"torn","inp')
    reading = read_decisions(copy)
    assert reading.unreadable_lines == 1 and len(reading.decisions) == 12
    report = replay_log(copy, SHIPPED)
    assert report.unreadable_lines == 1


def test_errors_name_the_problem(log: Log, tmp_path: Path) -> None:
    missing = runner.invoke(app, ["policy", "replay", "--policies", str(SHIPPED_POLICIES)])
    assert missing.exit_code == 2 and "--dir DIR or the gateway's --config FILE" in missing.output
    bad_time = runner.invoke(
        app,
        ["policy", "replay", "--policies", str(SHIPPED_POLICIES), "--dir", str(log.dir), "--since", "soon"],
    )
    assert bad_time.exit_code == 2 and "--since/--until: expected an ISO-8601 time" in bad_time.output
    broken = tmp_path / "broken" / "pgwarden"
    broken.mkdir(parents=True)
    (broken / "decision.rego").write_text("package pgwarden\n\ndecision := {\n")
    result = runner.invoke(app, ["policy", "replay", "--policies", str(broken.parent), "--dir", str(log.dir)])
    assert result.exit_code == 2 and "does not compile" in result.output
    nowhere = runner.invoke(
        app, ["policy", "replay", "--policies", str(SHIPPED_POLICIES), "--dir", str(tmp_path / "none")]
    )
    assert nowhere.exit_code == 2 and "does not exist" in nowhere.output


def test_decision_log_from_the_configuration(log: Log, tmp_path: Path) -> None:
    assert runner.invoke(app, ["token", "keygen", str(tmp_path / "token.key")]).exit_code == 0
    cfg = tmp_path / "pgwarden.yaml"
    cfg.write_text(
        "listener: {host: 127.0.0.1, insecure_loopback_dev: true}\n"
        "gateway_tokens: {signing_key_file: token.key}\n"
        "connections: {demo: {database: demo, user: demo, password_env: PW}}\n"
        f"audit: {{decision_log: {{dir: {log.dir}, on_failure: refuse}}}}\n"
    )
    report = replay_json("--policies", str(SHIPPED_POLICIES), "--config", str(cfg))
    assert report["directory"] == str(log.dir) and report["found"] == 12


def test_rule_of_a_reason() -> None:
    assert rule_of(
        "DELETE without WHERE on public.orders is destructive (pgwarden.danger.unbounded_write)"
    ) == ("pgwarden.danger.unbounded_write")
    assert rule_of("read allowed for group agents on demo") == "read allowed for group agents on demo"
    assert rule_of("CREATE TABLE on public.t allowed for group dba on demo (waives pgwarden.danger.ddl)") == (
        "waives pgwarden.danger.ddl"
    )
