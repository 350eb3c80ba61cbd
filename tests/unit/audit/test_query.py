"""`pgwarden audit query`: filters, SQL over the views, output formats, read-only, errors.

The logs are real: statements decided by the shipped policies through the policy gate, which
writes the decision records; outcomes written as the relay writes them.
"""

from __future__ import annotations

import csv
import io
import json
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest
import yaml
from typer.testing import CliRunner

from enforcer.audit.decision_log import DecisionLog
from enforcer.audit.query import AuditDatabase, QueryError, parse_time
from enforcer.cli import app
from enforcer.config import SHIPPED_POLICIES
from enforcer.identity import Identity
from enforcer.policy.engine import EmbeddedEngine
from enforcer.proxy.gate import SessionContext, Verdict
from enforcer.proxy.policy_gate import PolicyGate
from enforcer.wire import Parse, Query

runner = CliRunner()
ENGINE = EmbeddedEngine([SHIPPED_POLICIES])


@dataclass
class Log:
    dir: Path
    #: Between the first and the second stream's records.
    mark: datetime
    ids: dict[str, str]


def _gate(directory: Path, stream: str) -> PolicyGate:
    labels = {"app": "pgwarden", "engine": ENGINE.name, "policy_version": ENGINE.version, "instance": "gw"}
    return PolicyGate(ENGINE, DecisionLog(directory, stream=stream, labels=labels))


def _ctx(session: str, subject: str, group: str, connection: str = "demo") -> SessionContext:
    identity = Identity(subject, "pgwarden", (group,), "gateway-token", time.time() + 600)
    return SessionContext(session, identity, connection, "demo", "127.0.0.1:5000", True)


def _decide(gate: PolicyGate, ctx: SessionContext, msg: Query | Parse) -> Verdict:
    verdict = gate.decide(ctx, msg)
    assert isinstance(verdict, Verdict)
    assert verdict.decision_id
    return verdict


def _outcome(
    gate: PolicyGate,
    verdict: Verdict,
    session: str,
    tag: str,
    rows: int | None,
    ms: float,
    error: dict[str, str] | None = None,
) -> None:
    gate.decision_log.write_outcome(
        decision_id=verdict.decision_id,
        session=session,
        forwarded=True,
        command_tag=tag,
        rows=rows,
        duration_ms=ms,
        error=error,
    )


@pytest.fixture(scope="module")
def log(tmp_path_factory: pytest.TempPathFactory) -> Log:
    directory = tmp_path_factory.mktemp("decision-log")
    ids: dict[str, str] = {}

    g = _gate(directory, "gw-w0")
    alice = _ctx("sess-alice-1", "alice", "dba")
    v = _decide(g, alice, Query("UPDATE public.orders SET status = 'shipped' WHERE id = 1"))
    assert v.action == "allow"
    _outcome(g, v, "sess-alice-1", "UPDATE 1", 1, 2.5)
    ids["alice_update"] = v.decision_id
    v = _decide(g, alice, Query("SELECT name FROM products WHERE id = 1"))
    _outcome(g, v, "sess-alice-1", "SELECT 1", 1, 0.4)

    bot = _ctx("sess-bot-1", "ci-bot", "agents")
    v = _decide(g, bot, Query("DELETE FROM orders"))
    assert v.action == "deny"
    ids["bot_delete"] = v.decision_id
    v = _decide(g, bot, Parse("q", "SELECT name FROM products WHERE id = $1", ()))
    assert v.action == "allow"
    _outcome(g, v, "sess-bot-1", "SELECT 1", 1, 0.7)  # executed twice: two outcomes
    _outcome(g, v, "sess-bot-1", "SELECT 3", 3, 0.9)
    ids["bot_prepared"] = v.decision_id
    v = _decide(g, bot, Query("UPDATE orders SET status = 'x' WHERE id = 2"))
    assert v.action == "review"
    v = _decide(g, bot, Query("SELECT email FROM customers"))
    assert v.action == "mask"
    v = _decide(g, bot, Query("SELECT name FROM products WHERE id = 1 / 0"))
    _outcome(g, v, "sess-bot-1", "", None, 0.3, {"sqlstate": "22012", "message": "division by zero"})
    ids["bot_error"] = v.decision_id
    v = _decide(g, bot, Query("SELEC broken"))  # its input has no identity: the record still counts
    assert v.action == "deny"
    ids["bot_parse_error"] = v.decision_id
    g.decision_log.close()

    mark = datetime.now(UTC)
    g = _gate(directory, "gw-w1")
    bob = _ctx("sess-bob-1", "bob", "dba")
    v = _decide(g, bob, Query("SELECT count(*) FROM orders"))
    _outcome(g, v, "sess-bob-1", "SELECT 1", 1, 120.0)
    ids["bob_count"] = v.decision_id
    v = _decide(
        g, _ctx("sess-eve-1", "eve", "dba", connection="reporting"), Query("SELECT name FROM products")
    )
    assert v.action == "deny"  # no group is granted that connection
    ids["eve_denied"] = v.decision_id
    # An input of another shape (an older gateway, another engine): the views must not break on it.
    g.decision_log.write(
        decision_id="odd-input",
        input_json='{"statement":{"text":"SELECT 1","relations":"not a list"},"identity":"nobody"}',
        result={"action": "allow", "reasons": "not a list"},
        enforcement={"session": "sess-eve-1", "connection": "reporting", "subject": "eve", "forwarded": True},
        metrics={},
    )
    g.decision_log.close()
    # Not records: retention anchors next to the segments.
    (directory / "gw-w1" / "anchors.jsonl").write_text('{"stream":"gw-w1","segment":0}\n')
    return Log(directory, mark, ids)


def query(log: Log, *args: str) -> list[dict[str, Any]]:
    res = runner.invoke(app, ["audit", "query", "--dir", str(log.dir), "--format", "json", *args])
    assert res.exit_code == 0, res.output
    rows: list[dict[str, Any]] = json.loads(res.stdout)
    return rows


def sql(log: Log, text: str) -> list[dict[str, Any]]:
    return query(log, "--sql", text)


def fail(*args: str) -> str:
    res = runner.invoke(app, ["audit", "query", *args])
    assert res.exit_code == 2, res.output
    assert "pgwarden: error:" in res.output
    return res.output


# ---------------------------------------------------------------------- filters
def test_lists_every_decision_newest_first(log: Log) -> None:
    rows = query(log)
    assert len(rows) == 11
    assert [r["decision_id"] for r in rows[:3]] == ["odd-input", log.ids["eve_denied"], log.ids["bob_count"]]
    assert [r["ts"] for r in rows] == sorted((r["ts"] for r in rows), reverse=True)
    assert [r["decision_id"] for r in query(log, "--limit", "2")] == [d["decision_id"] for d in rows[:2]]


def test_identity(log: Log) -> None:
    rows = query(log, "--identity", "alice")
    assert {r["statement"] for r in rows} == {
        "UPDATE public.orders SET status = 'shipped' WHERE id = 1",
        "SELECT name FROM products WHERE id = 1",
    }
    bot = {r["decision_id"] for r in query(log, "--identity", "ci-bot")}
    assert len(bot) == 6 and log.ids["bot_parse_error"] in bot


def test_action(log: Log) -> None:
    denied = query(log, "--action", "deny")
    assert {r["decision_id"] for r in denied} == {
        log.ids["bot_delete"],
        log.ids["bot_parse_error"],
        log.ids["eve_denied"],
    }
    assert all(r["forwarded"] is False for r in denied)
    assert [r["statement"] for r in query(log, "--action", "review")] == [
        "UPDATE orders SET status = 'x' WHERE id = 2"
    ]


def test_relation_by_name_or_schema_and_name(log: Log) -> None:
    on_orders = {r["statement"] for r in query(log, "--relation", "orders")}
    assert on_orders == {
        "UPDATE public.orders SET status = 'shipped' WHERE id = 1",
        "DELETE FROM orders",
        "UPDATE orders SET status = 'x' WHERE id = 2",
        "SELECT count(*) FROM orders",
    }
    # An unqualified reference may be public.orders (the search path decided), so it matches too.
    assert {r["statement"] for r in query(log, "--relation", "public.orders")} == on_orders
    assert {r["statement"] for r in query(log, "--relation", "archive.orders")} == on_orders - {
        "UPDATE public.orders SET status = 'shipped' WHERE id = 1"
    }
    assert {r["statement"] for r in query(log, "--relation", "Customers")} == {"SELECT email FROM customers"}
    assert query(log, "--relation", "nothing_here") == []


def test_session_id_or_prefix_and_connection(log: Log) -> None:
    assert len(query(log, "--session", "sess-bot-1")) == 6
    assert {r["subject"] for r in query(log, "--session", "sess-b")} == {"ci-bot", "bob"}
    reporting = query(log, "--connection", "reporting")
    assert {r["decision_id"] for r in reporting} == {log.ids["eve_denied"], "odd-input"}
    assert query(log, "--connection", "reporting", "--identity", "alice") == []


def test_since_and_until(log: Log) -> None:
    mark = log.mark.isoformat()
    assert {r["subject"] for r in query(log, "--since", mark)} == {"bob", "eve"}
    assert {r["subject"] for r in query(log, "--until", mark)} == {"alice", "ci-bot"}
    assert len(query(log, "--since", "1h")) == 11
    assert query(log, "--until", "1h") == []
    assert query(log, "--since", "2d", "--until", "1d") == []
    # A naive ISO time is UTC; a date is its midnight.
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%d")
    assert len(query(log, "--until", tomorrow)) == 11


def test_parse_time() -> None:
    now = datetime(2026, 5, 8, 12, 0, tzinfo=UTC)
    assert parse_time("7d", "--since", now=now) == datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
    assert parse_time("90m", "--since", now=now) == datetime(2026, 5, 8, 10, 30, tzinfo=UTC)
    assert parse_time("2026-05-01T09:30:00Z", "--since") == datetime(2026, 5, 1, 9, 30, tzinfo=UTC)
    assert parse_time("2026-05-01 09:30", "--since") == datetime(2026, 5, 1, 9, 30, tzinfo=UTC)
    with pytest.raises(QueryError, match=r"--until: expected an ISO-8601 time .* got '7x'"):
        parse_time("7x", "--until")


def test_outcome_joined_by_decision_id(log: Log) -> None:
    rows = sql(log, "SELECT * EXCLUDE (record) FROM decisions")
    by_id = {r["decision_id"]: r for r in rows}
    update = by_id[log.ids["alice_update"]]
    assert (
        update["rows"] == 1 and update["duration_ms"] == 2.5 and update["outcome_command_tag"] == "UPDATE 1"
    )
    assert update["relations"] == [
        {"schema": "public", "name": "orders", "access": "read"},
        {"schema": "public", "name": "orders", "access": "update"},
    ]
    assert update["groups"] == ["dba"] and update["issuer"] == "pgwarden" and update["kind"] == "update"
    assert update["command_tag"] == "UPDATE" and update["policy_version"] == ENGINE.version
    prepared = by_id[log.ids["bot_prepared"]]  # the first of its two executions
    assert prepared["rows"] == 1 and prepared["outcome_count"] == 2
    error = by_id[log.ids["bot_error"]]
    assert error["error_sqlstate"] == "22012" and error["error_message"] == "division by zero"
    denied = by_id[log.ids["bot_delete"]]
    assert denied["rows"] is None and denied["outcome_count"] == 0 and denied["forwarded"] is False
    parse_error = by_id[log.ids["bot_parse_error"]]
    assert parse_error["subject"] == "ci-bot" and parse_error["session"] == "sess-bot-1"
    odd = by_id["odd-input"]
    assert odd["relations"] is None and odd["reasons"] is None and odd["subject"] == "eve"


# ---------------------------------------------------------------------- SQL over the views
def test_sql_count_by_action(log: Log) -> None:
    rows = sql(log, "SELECT action, count(*) AS n FROM decisions GROUP BY action ORDER BY action")
    assert rows == [
        {"action": "allow", "n": 6},
        {"action": "deny", "n": 3},
        {"action": "mask", "n": 1},
        {"action": "review", "n": 1},
    ]


def test_sql_join_of_decisions_and_outcomes(log: Log) -> None:
    rows = sql(
        log,
        "SELECT d.subject, sum(o.rows) AS total_rows, max(o.duration_ms) AS slowest "
        "FROM decisions d JOIN outcomes o USING (decision_id) GROUP BY d.subject ORDER BY d.subject",
    )
    assert rows == [
        {"subject": "alice", "total_rows": 2, "slowest": 2.5},
        {"subject": "bob", "total_rows": 1, "slowest": 120.0},
        {"subject": "ci-bot", "total_rows": 4, "slowest": 0.9},
    ]


def test_records_view_has_every_line_and_the_json(log: Log) -> None:
    rows = sql(log, "SELECT stream, event, count(*) AS n FROM records GROUP BY ALL ORDER BY ALL")
    counts = {(r["stream"], r["event"]): r["n"] for r in rows}
    assert counts == {
        ("gw-w0", "close"): 1,
        ("gw-w0", "decision"): 8,
        ("gw-w0", "outcome"): 5,
        ("gw-w0", "segment"): 1,
        ("gw-w1", "close"): 1,
        ("gw-w1", "decision"): 3,
        ("gw-w1", "outcome"): 1,
        ("gw-w1", "segment"): 1,
    }
    (first,) = sql(log, "SELECT record FROM records WHERE stream = 'gw-w0' AND seq = 1")
    assert first["record"]["event"] == "segment" and first["record"]["labels"]["instance"] == "gw"
    (bob,) = sql(log, f"SELECT record FROM decisions WHERE decision_id = '{log.ids['bob_count']}'")
    assert bob["record"]["input"]["identity"]["subject"] == "bob"
    assert bob["record"]["input"]["statement"]["relations"] == [
        {"access": "read", "name": "orders", "schema": None}
    ]


# ---------------------------------------------------------------------- output formats
def test_table_format(log: Log) -> None:
    res = runner.invoke(app, ["audit", "query", "--dir", str(log.dir), "--identity", "bob", "--limit", "1"])
    assert res.exit_code == 0, res.output
    assert "decision_id" in res.output and log.ids["bob_count"] in res.output and "1 row(s)" in res.output
    res = runner.invoke(app, ["audit", "query", "--dir", str(log.dir), "--sql", "SELECT '[red]x[/red]' AS s"])
    assert res.exit_code == 0 and "[red]x[/red]" in res.output  # data, not markup


def test_json_format(log: Log) -> None:
    rows = query(log, "--identity", "alice")
    assert len(rows) == 2
    assert set(rows[0]) == {
        "ts",
        "decision_id",
        "subject",
        "session",
        "connection",
        "action",
        "forwarded",
        "statement",
        "rows",
        "duration_ms",
        "error_sqlstate",
        "reasons",
    }
    assert datetime.fromisoformat(rows[0]["ts"]).tzinfo is not None
    assert rows[1]["reasons"] == [
        "read allowed for group dba on demo",
        "update allowed for group dba on demo",
    ]


def test_csv_format(log: Log) -> None:
    res = runner.invoke(app, ["audit", "query", "--dir", str(log.dir), "--format", "csv", "--action", "deny"])
    assert res.exit_code == 0, res.output
    rows = list(csv.DictReader(io.StringIO(res.stdout)))
    assert {r["statement"] for r in rows} == {
        "DELETE FROM orders",
        "SELEC broken",
        "SELECT name FROM products",
    }
    assert {r["forwarded"] for r in rows} == {"false"} and {r["rows"] for r in rows} == {""}
    assert all(json.loads(r["reasons"]) for r in rows)


# ---------------------------------------------------------------------- read-only
@pytest.mark.parametrize(
    "text,fragment",
    [
        ("COPY decisions TO '{out}'", "not a statement of type COPY"),
        ("CREATE TABLE x AS SELECT 1", "not a statement of type CREATE"),
        ("DELETE FROM log_lines", "not a statement of type DELETE"),
        ("SET enable_external_access = true", "not a statement of type SET"),
        ("ATTACH '{out}' AS x", "not a statement of type ATTACH"),
        ("SELECT 1; COPY decisions TO '{out}'", "exactly one query; this SQL has 2 statements"),
        ("SELECT * FROM read_csv('/etc/passwd')", "file system operations are disabled"),
        ("SELECT * FROM read_text('{out}')", "file system operations are disabled"),
        ("SELECT * FROM query('COPY decisions TO ''{out}''')", "the query failed"),
    ],
)
def test_only_read_only_queries(log: Log, tmp_path: Path, text: str, fragment: str) -> None:
    out = tmp_path / "leak.csv"
    output = fail("--dir", str(log.dir), "--sql", text.format(out=out))
    assert fragment in output
    assert not out.exists()
    assert len(query(log)) == 11  # nothing changed


def test_configuration_cannot_be_unlocked(log: Log) -> None:
    with AuditDatabase(log.dir) as db:
        with pytest.raises(duckdb.InvalidInputException, match="locked"):
            db.con.execute("SET enable_external_access = true")
        with pytest.raises(QueryError, match="disabled"):
            db.sql("SELECT * FROM glob('/etc/*')")


# ---------------------------------------------------------------------- errors
def test_no_such_directory(tmp_path: Path) -> None:
    output = fail("--dir", str(tmp_path / "nope"))
    assert "does not exist" in output and "audit.decision_log.dir" in output


def test_no_records(tmp_path: Path) -> None:
    (tmp_path / "gw-w0").mkdir()
    (tmp_path / "gw-w0" / ".lock").write_text("")
    assert "holds no decision log segments" in fail("--dir", str(tmp_path))
    (tmp_path / "gw-w0" / "000001.jsonl").write_text("torn{\n")
    assert "no readable records" in fail("--dir", str(tmp_path))


def test_torn_last_line_is_skipped_with_a_warning(log: Log, tmp_path: Path) -> None:
    g = _gate(tmp_path, "gw-w0")
    _decide(g, _ctx("s", "alice", "dba"), Query("SELECT 1"))
    assert g.decision_log.path is not None
    with open(g.decision_log.path, "a") as f:
        f.write('{"event":"decision","decision_id":"cut-')
    res = runner.invoke(app, ["audit", "query", "--dir", str(tmp_path), "--format", "json"])
    assert res.exit_code == 0, res.output
    assert "skipped 1 unreadable line(s)" in res.stderr and "pgwarden audit verify" in res.stderr
    assert [r["statement"] for r in json.loads(res.stdout)] == ["SELECT 1"]
    g.decision_log.close()


def test_bad_sql_shows_duckdbs_message(log: Log) -> None:
    output = fail("--dir", str(log.dir), "--sql", "SELECT nope FROM decisions")
    assert "the query failed" in output and 'column "nope" not found' in output
    assert "does not parse" in fail("--dir", str(log.dir), "--sql", "SELEC 1")


def test_bad_duration(log: Log) -> None:
    output = fail("--dir", str(log.dir), "--since", "a week")
    assert "--since: expected an ISO-8601 time" in output and "7d" in output and "'a week'" in output


def test_sql_with_filters_is_refused(log: Log) -> None:
    output = fail("--dir", str(log.dir), "--sql", "SELECT 1", "--identity", "bob", "--limit", "5")
    assert "--sql cannot be combined with --identity, --limit" in output


def test_directory_from_config(log: Log, tmp_path: Path) -> None:
    assert "--dir DIR or the gateway's --config FILE" in fail()
    assert runner.invoke(app, ["token", "keygen", str(tmp_path / "token.key")]).exit_code == 0
    cfg: dict[str, Any] = {
        "listener": {"host": "127.0.0.1", "port": 0, "insecure_loopback_dev": True},
        "gateway_tokens": {"signing_key_file": "token.key"},
        "connections": {"demo": {"database": "demo", "user": "app", "password_env": "PW"}},
    }
    path = tmp_path / "pgwarden.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert "has no audit.decision_log" in fail("--config", str(path))
    cfg["audit"] = {"decision_log": {"dir": str(log.dir)}}
    path.write_text(yaml.safe_dump(cfg))
    res = runner.invoke(app, ["audit", "query", "-c", str(path), "--format", "json", "--identity", "bob"])
    assert res.exit_code == 0, res.output
    assert [r["decision_id"] for r in json.loads(res.stdout)] == [log.ids["bob_count"]]


def test_documented_queries_run(log: Log) -> None:
    doc = (Path(__file__).resolve().parents[3] / "docs" / "audit.md").read_text()
    section = doc.split("## Querying the decision log", 1)[1].split("\n## ", 1)[0]
    queries = re.findall(r"```sql\n(.*?)```", section, re.S)
    assert len(queries) == 3
    with AuditDatabase(log.dir) as db:
        changed, denied, slowest = (db.sql(q).objects() for q in queries)
        described = {row[0] for row in db.sql("DESCRIBE decisions").rows}
    assert {r["statement"] for r in changed} == {
        "UPDATE public.orders SET status = 'shipped' WHERE id = 1",
        "DELETE FROM orders",
        "UPDATE orders SET status = 'x' WHERE id = 2",
    }
    assert [(r["subject"], r["denied"]) for r in denied] == [("ci-bot", 2), ("eve", 1)]
    assert slowest[0]["subject"] == "bob" and slowest[0]["duration_ms"] == 120.0
    table = section.split("**`decisions`**", 1)[1].split("**`outcomes`**", 1)[0]
    rows = [line.split("|")[1] for line in table.splitlines() if line.startswith("| `")]
    documented = {c for cell in rows for c in re.findall(r"`(\w+)`", cell)}
    assert documented == described
