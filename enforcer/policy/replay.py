"""What-if for policies: recorded decisions re-evaluated under a candidate policy.

Owns: reading the ``decision`` records of a decision log (every stream's segments), rebuilding
each recorded input document for the engine (with the AST re-derived from the recorded text when
the log left it out and the candidate policy may read it), deciding it as the gateway does
(``data.pgwarden.decision`` on an :class:`EmbeddedEngine`, :func:`parse_decision`, fail closed on
any engine error), and the report of what would change: counts per old -> new action, per rule
whose reasons appear or disappear, and examples.
Never: writes to the log or anywhere else; asks the policy about what the gateway decides itself
(a statement that does not parse, EXECUTE of a prepared name, and whatever the injected
``gateway_rule`` decides: the pinned settings).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from enforcer.analysis import AnalysisError, StatementFacts, analyse
from enforcer.audit.decision_log import segments_of
from enforcer.policy.decision import Decision, fail_closed, parse_decision
from enforcer.policy.engine import EmbeddedEngine, PolicyError

#: A decision the gateway takes before asking the policy (None: ask the policy).
GatewayRule = Callable[[StatementFacts], Decision | None]

# A policy that may read the AST: the field by name, a walk over the input, or the whole document.
_READS_AST = re.compile(r"\.ast\b|\"ast\"|\bwalk\(|statement\s*\[|json\.marshal\(")
# Reasons name the rule that produced them in parentheses at the end.
_RULE_OF_REASON = re.compile(r"\(((?:[a-z]+ )?[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+)\)\s*$")

SKIP_PARSE_ERROR = "does not parse (the gateway refuses it whatever the policy)"
SKIP_EXECUTE = "EXECUTE of a prepared statement (the gateway decides it as its PREPARE)"
SKIP_NO_STATEMENT = "no statement in the recorded input"


def reads_ast(policy_texts: Iterable[str]) -> bool:
    """True if a module may read ``statement.ast`` (so recorded inputs need it re-derived)."""
    return any(_READS_AST.search(text) for text in policy_texts)


def rule_of(reason: str) -> str:
    """The rule a reason names, e.g. ``pgwarden.danger.unbounded_write`` or ``waives pgwarden.danger.x``.

    A reason that names no rule is its own key.
    """
    m = _RULE_OF_REASON.search(reason)
    return m.group(1) if m else reason


def _parse_timestamp(value: Any) -> float | None:
    if not isinstance(value, str):
        return None
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


@dataclass(frozen=True)
class RecordedDecision:
    """One ``decision`` record of the log: what the policy saw and said."""

    decision_id: str
    timestamp: str
    time: float
    stream: str
    seq: int
    input: dict[str, Any]
    result: dict[str, Any]
    enforcement: dict[str, Any]

    @property
    def statement(self) -> dict[str, Any]:
        st = self.input.get("statement")
        return st if isinstance(st, dict) else {}

    @property
    def subject(self) -> str:
        identity = self.input.get("identity")
        subject = identity.get("subject") if isinstance(identity, dict) else None
        return str(subject or self.enforcement.get("subject") or "")

    @property
    def connection(self) -> str:
        session = self.input.get("session")
        conn = session.get("connection") if isinstance(session, dict) else None
        return str(conn or self.enforcement.get("connection") or "")

    @staticmethod
    def from_record(record: dict[str, Any]) -> RecordedDecision | None:
        """None for a record that is not a whole decision (another event, or a damaged one)."""
        if record.get("event") != "decision":
            return None
        when = _parse_timestamp(record.get("timestamp"))
        inp, result = record.get("input"), record.get("result")
        if when is None or not isinstance(inp, dict) or not isinstance(result, dict):
            return None
        chain = record.get("chain")
        if not isinstance(chain, dict):
            chain = {}
        enforcement = record.get("enforcement")
        return RecordedDecision(
            decision_id=str(record.get("decision_id", "")),
            timestamp=str(record["timestamp"]),
            time=when,
            stream=str(chain.get("stream", "")),
            seq=int(chain.get("seq", 0) or 0),
            input=inp,
            result=result,
            enforcement=enforcement if isinstance(enforcement, dict) else {},
        )


@dataclass
class LogReading:
    decisions: list[RecordedDecision] = field(default_factory=list)
    #: Lines that are not JSON objects (a torn last record of a killed gateway, or damage).
    unreadable_lines: int = 0


def read_decisions(directory: Path, *, since: float | None = None, until: float | None = None) -> LogReading:
    """The decision records of every stream under ``directory`` within [since, until], oldest first."""
    if not directory.is_dir():
        raise FileNotFoundError(f"decision log directory {directory} does not exist")
    reading = LogReading()
    for stream_dir in sorted(p for p in directory.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for _, segment in segments_of(stream_dir):
            for record in _records(segment, reading):
                decision = RecordedDecision.from_record(record)
                if decision is None:
                    continue
                if (since is not None and decision.time < since) or (
                    until is not None and decision.time > until
                ):
                    continue
                reading.decisions.append(decision)
    reading.decisions.sort(key=lambda d: (d.time, d.stream, d.seq))
    return reading


def _records(segment: Path, reading: LogReading) -> Iterator[dict[str, Any]]:
    with open(segment, "rb") as f:
        for line in f:
            try:
                record = json.loads(line)
            except ValueError:
                reading.unreadable_lines += 1
                continue
            if isinstance(record, dict):
                yield record
            else:
                reading.unreadable_lines += 1


@dataclass(frozen=True)
class Replayed:
    """A recorded decision and the candidate's decision on the same input (None: not asked)."""

    record: RecordedDecision
    new: dict[str, Any] | None
    skipped: str | None = None

    @property
    def old(self) -> dict[str, Any]:
        return self.record.result

    @property
    def old_action(self) -> str:
        return str(self.old.get("action", "?"))

    @property
    def new_action(self) -> str:
        return str((self.new or {}).get("action", "?"))

    @property
    def reasons_removed(self) -> list[str]:
        new = set(_strings((self.new or {}).get("reasons")))
        return [r for r in _strings(self.old.get("reasons")) if r not in new]

    @property
    def reasons_added(self) -> list[str]:
        old = set(_strings(self.old.get("reasons")))
        return [r for r in _strings((self.new or {}).get("reasons")) if r not in old]

    @property
    def changed(self) -> bool:
        if self.new is None:
            return False
        return (
            self.old_action != self.new_action
            or set(_strings(self.old.get("reasons"))) != set(_strings(self.new.get("reasons")))
            or _canonical(self.old.get("masks") or []) != _canonical(self.new.get("masks") or [])
            or _canonical(self.old.get("review")) != _canonical(self.new.get("review"))
        )


def _strings(value: Any) -> list[str]:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def _canonical(value: Any) -> str:
    if isinstance(value, list):
        return json.dumps(sorted(json.dumps(v, sort_keys=True) for v in value))
    return json.dumps(value, sort_keys=True)


class Replayer:
    """Decides recorded inputs under a candidate policy, the way the gateway decides live ones."""

    def __init__(
        self,
        engine: EmbeddedEngine,
        *,
        gateway_rule: GatewayRule | None = None,
        with_ast: bool | None = None,
    ) -> None:
        self.engine = engine
        self.gateway_rule = gateway_rule
        #: Re-derive the AST of inputs recorded without it (default: when the policy may read it).
        self.with_ast = reads_ast(engine.texts) if with_ast is None else with_ast

    def replay(self, record: RecordedDecision) -> Replayed:
        statement = record.input.get("statement")
        if not isinstance(statement, dict):
            return Replayed(record, None, SKIP_NO_STATEMENT)
        if "parse_error" in statement:
            return Replayed(record, None, SKIP_PARSE_ERROR)
        if statement.get("execute"):
            return Replayed(record, None, SKIP_EXECUTE)
        statement = dict(statement)
        ast = statement.get("ast")
        if not isinstance(ast, dict) and self.with_ast:
            try:
                ast = self._rederive_ast(statement)
            except AnalysisError as exc:
                return Replayed(record, None, f"the AST cannot be re-derived from the recorded text ({exc})")
            statement["ast"] = ast
        input_doc = {**record.input, "statement": statement}
        facts = StatementFacts(
            index=int(statement.get("index", 0) or 0),
            text=str(statement.get("text", "")),
            document=statement,
            ast=ast if isinstance(ast, dict) else {},
        )
        decision = self.gateway_rule(facts) if self.gateway_rule is not None else None
        if decision is None:
            decision = self._ask_policy(input_doc)
        return Replayed(record, decision.to_document())

    def _ask_policy(self, input_doc: dict[str, Any]) -> Decision:
        # As PolicyGate._evaluate: the engine's result through parse_decision, any error a deny.
        try:
            return parse_decision(self.engine.evaluate_sync(input_doc))
        except PolicyError as exc:
            return fail_closed(str(exc))

    @staticmethod
    def _rederive_ast(statement: dict[str, Any]) -> dict[str, Any]:
        """The AST of the recorded statement, parsed again from its recorded text."""
        text = statement.get("text")
        if not isinstance(text, str):
            raise AnalysisError("the recorded statement has no text")
        statements = analyse(text).statements
        index = int(statement.get("index", 0) or 0)
        if len(statements) == 1:
            return dict(statements[0].ast)
        if 0 <= index < len(statements):
            return dict(statements[index].ast)
        raise AnalysisError(f"the recorded text holds {len(statements)} statements, not statement {index}")


@dataclass(frozen=True)
class Change:
    decision_id: str
    timestamp: str
    subject: str
    connection: str
    statement: str
    old_action: str
    new_action: str
    reasons_removed: tuple[str, ...]
    reasons_added: tuple[str, ...]

    def to_document(self) -> dict[str, Any]:
        return {
            "decision_id": self.decision_id,
            "timestamp": self.timestamp,
            "subject": self.subject,
            "connection": self.connection,
            "statement": self.statement,
            "old_action": self.old_action,
            "new_action": self.new_action,
            "reasons_removed": list(self.reasons_removed),
            "reasons_added": list(self.reasons_added),
        }


@dataclass
class ReplayReport:
    directory: str
    policies: list[str]
    policy_version: str
    since: str | None = None
    until: str | None = None
    #: Decision records in the window (before --limit).
    found: int = 0
    replayed: int = 0
    changed: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    #: (old action, new action) -> [decisions, of which changed]
    transitions: dict[tuple[str, str], list[int]] = field(default_factory=dict)
    #: Per rule (or reason without a rule): how many changed decisions gained / lost it.
    reasons_added: Counter[str] = field(default_factory=Counter)
    reasons_removed: Counter[str] = field(default_factory=Counter)
    examples: list[Change] = field(default_factory=list)
    unreadable_lines: int = 0

    def to_document(self) -> dict[str, Any]:
        return {
            "directory": self.directory,
            "policies": self.policies,
            "policy_version": self.policy_version,
            "since": self.since,
            "until": self.until,
            "found": self.found,
            "replayed": self.replayed,
            "changed": self.changed,
            "skipped": dict(sorted(self.skipped.items())),
            "transitions": [
                {"old": old, "new": new, "decisions": n, "changed": c}
                for (old, new), (n, c) in sorted(self.transitions.items(), key=lambda kv: (-kv[1][0], kv[0]))
            ],
            "reasons_added": dict(self.reasons_added.most_common()),
            "reasons_removed": dict(self.reasons_removed.most_common()),
            "examples": [c.to_document() for c in self.examples],
            "unreadable_lines": self.unreadable_lines,
        }


def replay_log(
    directory: Path,
    engine: EmbeddedEngine,
    *,
    policies: Iterable[Path] = (),
    since: float | None = None,
    until: float | None = None,
    limit: int | None = None,
    examples: int = 10,
    gateway_rule: GatewayRule | None = None,
    with_ast: bool | None = None,
) -> ReplayReport:
    """Replay the decisions of ``directory`` (the newest ``limit`` in the window) under ``engine``."""
    reading = read_decisions(directory, since=since, until=until)
    records = reading.decisions
    report = ReplayReport(
        directory=str(directory),
        policies=[str(p) for p in policies],
        policy_version=engine.version,
        since=_iso(since),
        until=_iso(until),
        found=len(records),
        unreadable_lines=reading.unreadable_lines,
    )
    if limit is not None:
        records = records[-limit:] if limit > 0 else []
    replayer = Replayer(engine, gateway_rule=gateway_rule, with_ast=with_ast)
    changes: dict[tuple[str, str], list[Change]] = {}
    for record in records:
        done = replayer.replay(record)
        if done.skipped is not None:
            report.skipped[done.skipped] += 1
            continue
        report.replayed += 1
        key = (done.old_action, done.new_action)
        counts = report.transitions.setdefault(key, [0, 0])
        counts[0] += 1
        if not done.changed:
            continue
        counts[1] += 1
        report.changed += 1
        report.reasons_removed.update({rule_of(r) for r in done.reasons_removed})
        report.reasons_added.update({rule_of(r) for r in done.reasons_added})
        changes.setdefault(key, []).append(
            Change(
                decision_id=record.decision_id,
                timestamp=record.timestamp,
                subject=record.subject,
                connection=record.connection,
                statement=str(record.statement.get("text", "")),
                old_action=done.old_action,
                new_action=done.new_action,
                reasons_removed=tuple(done.reasons_removed),
                reasons_added=tuple(done.reasons_added),
            )
        )
    report.examples = _pick_examples(changes, examples)
    return report


def _pick_examples(changes: dict[tuple[str, str], list[Change]], n: int) -> list[Change]:
    """Up to ``n`` changes, taken in turn from each transition (the most frequent first)."""
    queues = [list(v) for _, v in sorted(changes.items(), key=lambda kv: (-len(kv[1]), kv[0]))]
    picked: list[Change] = []
    while len(picked) < n and any(queues):
        for q in queues:
            if q and len(picked) < n:
                picked.append(q.pop(0))
    return picked


def _iso(t: float | None) -> str | None:
    return None if t is None else datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")


def write_report(report: ReplayReport, out: TextIO, output: str = "table") -> None:
    """The report as a JSON document, or as text for a person."""
    if output == "json":
        json.dump(report.to_document(), out, indent=2)
        out.write("\n")
        return
    w = out.write
    window = ""
    if report.since or report.until:
        window = f" between {report.since or 'the start'} and {report.until or 'now'}"
    w(
        f"Replayed {report.replayed} of {report.found} decision(s) from {report.directory}{window} "
        f"under {', '.join(report.policies) or 'the candidate policy'} (version {report.policy_version})\n"
    )
    not_replayed = report.found - report.replayed - sum(report.skipped.values())
    if not_replayed:
        w(f"  {not_replayed} older decision(s) left out by --limit\n")
    for why, count in sorted(report.skipped.items()):
        w(f"  {count} not replayed: {why}\n")
    if report.unreadable_lines:
        w(f"  {report.unreadable_lines} unreadable line(s) skipped (run `pgwarden audit verify`)\n")
    w(f"{report.changed} would change, {report.replayed - report.changed} would not.\n")
    if report.transitions:
        w("\n")
        rows = [("old -> new", "decisions", "changed")]
        for (old, new), (total, changed) in sorted(
            report.transitions.items(), key=lambda kv: (-kv[1][0], kv[0])
        ):
            rows.append((f"{old} -> {new}", str(total), str(changed)))
        width = max(len(r[0]) for r in rows)
        for transition, total_s, changed_s in rows:
            w(f"  {transition:<{width}}  {total_s:>9}  {changed_s:>7}\n")
    if report.reasons_added or report.reasons_removed:
        w("\nReasons that changed (by rule; decisions gaining + / losing - it)\n")
        for rule, count in report.reasons_added.most_common():
            w(f"  +{count:<5} {rule}\n")
        for rule, count in report.reasons_removed.most_common():
            w(f"  -{count:<5} {rule}\n")
    if report.examples:
        w(f"\nExamples ({len(report.examples)} of {report.changed})\n")
        for c in report.examples:
            w(f"  {c.decision_id}  {c.timestamp}  {c.subject} on {c.connection}\n")
            w(f"    {_one_line(c.statement)}\n")
            w(f"    {c.old_action} -> {c.new_action}\n")
            for r in c.reasons_removed:
                w(f"      - {r}\n")
            for r in c.reasons_added:
                w(f"      + {r}\n")


def _one_line(sql: str, width: int = 160) -> str:
    flat = " ".join(sql.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"
