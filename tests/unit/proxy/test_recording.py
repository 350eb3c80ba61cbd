"""The statement tracker: which response completes which statement, and its outcome records."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from enforcer.audit.decision_log import DecisionLog
from enforcer.audit.verify import verify_directory
from enforcer.proxy.gate import Verdict
from enforcer.proxy.recording import StatementTracker
from enforcer.wire import CommandComplete, ErrorResponse, Query, ReadyForQuery


def frame(message: CommandComplete | ReadyForQuery | ErrorResponse) -> tuple[int, bytes]:
    raw = message.encode()
    return raw[0], raw[5:]


def run_statements(tracker: StatementTracker, n: int) -> None:
    """``n`` simple queries, each answered; the last one fails."""
    for i in range(n):
        tracker.message(Query(f"SELECT {i}"), Verdict(decision_id=f"d{i}", action="allow"), i)
        answer = ErrorResponse.build("42P01", "no such table") if i == n - 1 else CommandComplete("SELECT 1")
        tracker.frames([frame(answer), frame(ReadyForQuery("I"))], i)


def test_outcomes_of_a_drain_are_written_in_order_with_one_timestamp(tmp_path: Path) -> None:
    log = DecisionLog(tmp_path, stream="gw-w0")
    tracker = StatementTracker("s1", recorder=None, decision_log=log)
    run_statements(tracker, 3)  # no running loop: each report is processed at once
    log.write_pending()
    lines = (tmp_path / "gw-w0" / "000001.jsonl").read_bytes().splitlines()
    outcomes = [r for r in map(json.loads, lines) if r["event"] == "outcome"]
    assert [o["decision_id"] for o in outcomes] == ["d0", "d1", "d2"]
    assert [o["rows"] for o in outcomes] == [1, 1, None]
    assert outcomes[2]["error"] == {"sqlstate": "42P01", "message": "no such table"}
    assert all(o["session"] == "s1" and o["forwarded"] for o in outcomes)
    log.close()
    assert verify_directory(tmp_path).ok


def test_a_batch_shares_its_timestamp(tmp_path: Path) -> None:
    log = DecisionLog(None)
    tracker = StatementTracker("s1", recorder=None, decision_log=log)
    # Queue the reports as a running gateway would, then process them in one drain.
    for i in range(4):
        tracker._queue.append((Query(f"SELECT {i}"), Verdict(decision_id=f"d{i}"), i, 0.0, 0.0))
        tracker._queue.append(([frame(CommandComplete("SELECT 1")), frame(ReadyForQuery("I"))], i, 0.001))
    tracker.drain()
    assert [r["decision_id"] for r in log.memory] == ["d0", "d1", "d2", "d3"]
    assert len({r["timestamp"] for r in log.memory}) == 1
    assert all(r["duration_ms"] == 1.0 for r in log.memory)


def test_a_decision_log_failure_is_logged_not_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    log = DecisionLog(tmp_path, stream="gw-w0")
    log.close()  # every later write fails
    tracker = StatementTracker("s1", recorder=None, decision_log=log)
    with caplog.at_level(logging.ERROR, logger="pgwarden.audit"):
        run_statements(tracker, 2)
        tracker.close()
    failures = [r for r in caplog.records if getattr(r, "event", "") == "decision_log_failed"]
    assert failures and "1 outcome record(s) lost, the first of decision d0" in failures[0].getMessage()


def test_drain_soon_processes_the_reports_on_the_next_turn_of_the_loop() -> None:
    import asyncio

    async def scenario() -> tuple[list[str], list[str]]:
        log = DecisionLog(None)
        tracker = StatementTracker("s1", recorder=None, decision_log=log)
        tracker.message(Query("SELECT 1"), Verdict(decision_id="d0"), 0)
        tracker.frames([frame(CommandComplete("SELECT 1")), frame(ReadyForQuery("I"))], 0)
        tracker.drain_soon()
        tracker.drain_soon()  # asked twice, drained once
        before = [str(r["decision_id"]) for r in log.memory]
        await asyncio.sleep(0)
        return before, [str(r["decision_id"]) for r in log.memory]

    before, after = asyncio.run(scenario())
    assert before == [] and after == ["d0"]  # not before the relay's callback has returned
