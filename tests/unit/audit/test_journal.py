"""The decision log's journal: records stored before forwarding survive the process and are recovered."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from enforcer.audit.decision_log import DecisionLog, recover_stream
from enforcer.audit.journal import JOURNAL, Entry, Journal, read_pending
from enforcer.audit.verify import verify_directory

STREAM = "gw-w0"


def lines_of(path: Path) -> list[bytes]:
    return path.read_bytes().split(b"\n")[:-1]


def records(root: Path, segment: int = 1) -> list[dict[str, object]]:
    return [json.loads(line) for line in lines_of(root / STREAM / f"{segment:06d}.jsonl")]


def die_after(root: Path, copied: int, stored: int) -> None:
    """A gateway process that writes ``copied`` decision records all the way into the segment,
    then ``stored`` more that only reach the journal, and is killed (no close, no copy)."""
    code = f"""
        import json, os, signal
        from pathlib import Path
        from enforcer.audit.decision_log import DecisionLog
        log = DecisionLog(Path({str(root)!r}), stream={STREAM!r})
        def write(i):
            text = json.dumps({{"statement": {{"text": f"SELECT {{i}}"}}}})
            log.write(decision_id=f"d{{i}}", input_json=text, result={{"action": "allow"}},
                      enforcement={{"forwarded": True}}, metrics={{}})
        for i in range({copied}):
            write(i)
        log.copy_soon = lambda: None  # the event loop never gets to copy
        for i in range({copied}, {copied + stored}):
            write(i)
        os.kill(os.getpid(), signal.SIGKILL)
    """
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True)
    assert proc.returncode == -9, proc.stderr


def record(log: DecisionLog, decision_id: str, input_json: str = "{}") -> None:
    """One decision record with empty members apart from its id and input."""
    log.write(decision_id=decision_id, input_json=input_json, result={}, enforcement={}, metrics={})


def decision_ids(root: Path, segment: int = 1) -> list[object]:
    return [r["decision_id"] for r in records(root, segment) if r["event"] == "decision"]


def test_records_reach_the_segment_after_the_journal(tmp_path: Path) -> None:
    log = DecisionLog(tmp_path, stream=STREAM)
    asked: list[int] = []
    log.copy_soon = lambda: asked.append(1)
    for i in range(3):
        record(log, f"d{i}")
    assert asked == [1]  # one copy asked for, however many records wait for it
    assert decision_ids(tmp_path) == []
    assert len(read_pending(tmp_path / STREAM / JOURNAL)) == 3
    log.write_pending()
    assert decision_ids(tmp_path) == ["d0", "d1", "d2"]
    assert read_pending(tmp_path / STREAM / JOURNAL) == []
    log.close()
    assert verify_directory(tmp_path).ok


def test_a_killed_process_loses_no_record_it_stored(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    die_after(tmp_path, copied=3, stored=4)
    assert decision_ids(tmp_path) == ["d0", "d1", "d2"]
    report = verify_directory(tmp_path)
    assert (
        report.ok and "4 record(s) are in the journal and not yet in a segment" in report.streams[0].notes[-1]
    )
    with caplog.at_level(logging.WARNING, logger="pgwarden.audit"):
        log = DecisionLog(tmp_path, stream=STREAM)  # the next start recovers them
    assert log.recovered == 4
    assert "recovered 4 decision log record(s) from the journal" in caplog.text
    assert decision_ids(tmp_path) == [f"d{i}" for i in range(7)]
    record(log, "after")
    log.close()
    header = records(tmp_path, 2)[0]
    assert header["previous"] == {"segment": 1, "closed": False, "torn_bytes": 0, "recovered": 4}
    assert decision_ids(tmp_path, 2) == ["after"]
    assert verify_directory(tmp_path).ok


def test_audit_recover_for_a_gateway_that_stays_stopped(tmp_path: Path) -> None:
    die_after(tmp_path, copied=1, stored=2)
    assert recover_stream(tmp_path / STREAM) == 2
    assert decision_ids(tmp_path) == ["d0", "d1", "d2"]
    assert recover_stream(tmp_path / STREAM) == 0  # once only
    res = subprocess.run(
        [sys.executable, "-m", "enforcer.cli", "audit", "recover", "--dir", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0 and f"ok   {STREAM}: nothing to recover" in res.stdout, res.stdout + res.stderr
    assert verify_directory(tmp_path).ok


def test_audit_recover_leaves_a_running_gateway_alone(tmp_path: Path) -> None:
    log = DecisionLog(tmp_path, stream=STREAM)
    res = subprocess.run(
        [sys.executable, "-m", "enforcer.cli", "audit", "recover", "--dir", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 1 and "a gateway is writing the decision log stream" in res.stdout
    log.close()


def test_a_copy_cut_by_the_crash_is_completed_from_the_journal(tmp_path: Path) -> None:
    die_after(tmp_path, copied=2, stored=2)
    seg = tmp_path / STREAM / "000001.jsonl"
    first_missing = read_pending(tmp_path / STREAM / JOURNAL)[0].body
    with open(seg, "ab") as f:  # the copy's write(2) got half-way
        f.write(first_missing[: len(first_missing) // 2])
    assert not verify_directory(tmp_path).ok
    assert "the journal holds 2 record(s) from there on" in verify_directory(tmp_path).streams[0].problem  # type: ignore[operator]
    log = DecisionLog(tmp_path, stream=STREAM)
    assert log.recovered == 2
    log.close()
    assert decision_ids(tmp_path) == ["d0", "d1", "d2", "d3"]
    assert records(tmp_path, 2)[0]["previous"]["torn_bytes"] == 0  # type: ignore[index]
    assert verify_directory(tmp_path).ok


def test_a_cut_record_that_is_not_in_the_journal_is_left_for_the_auditor(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    die_after(tmp_path, copied=2, stored=2)
    seg = tmp_path / STREAM / "000001.jsonl"
    with open(seg, "ab") as f:
        f.write(b'{"event":"decision","forged')
    with caplog.at_level(logging.ERROR, logger="pgwarden.audit"):
        log = DecisionLog(tmp_path, stream=STREAM)
    assert log.recovered == 0
    assert "2 journal record(s) were not recovered" in caplog.text
    log.close()
    kept = list((tmp_path / STREAM).glob(f"{JOURNAL}.unrecovered-*"))
    assert len(kept) == 1 and len(read_pending(kept[0])) == 2
    assert seg.read_bytes().endswith(b'"forged')  # untouched
    assert records(tmp_path, 2)[0]["previous"]["torn_bytes"] == len(b'{"event":"decision","forged')  # type: ignore[index]


def test_a_clean_close_leaves_nothing_to_recover(tmp_path: Path) -> None:
    log = DecisionLog(tmp_path, stream=STREAM)
    log.copy_soon = lambda: None
    record(log, "d0")
    log.close()  # copies what the loop had not yet
    assert read_pending(tmp_path / STREAM / JOURNAL) == []
    log = DecisionLog(tmp_path, stream=STREAM)
    assert log.recovered == 0
    log.close()
    assert verify_directory(tmp_path).ok


def test_a_record_larger_than_the_journal_is_written_directly(tmp_path: Path) -> None:
    log = DecisionLog(tmp_path, stream=STREAM)
    log.copy_soon = lambda: None
    record(log, "small")
    big = json.dumps({"statement": {"text": "SELECT '" + "x" * (5 << 20) + "'"}})
    record(log, "big", big)
    assert decision_ids(tmp_path) == ["small", "big"]  # in order, before write() returned
    log.close()
    assert verify_directory(tmp_path).ok


def test_recovery_writes_the_lines_the_copy_would_have_written(tmp_path: Path) -> None:
    """Records are chained when they are copied: recovery must chain them byte for byte alike."""
    log = DecisionLog(tmp_path, stream=STREAM)
    log.copy_soon = lambda: None
    record(log, "d0")
    log.write_pending()
    seg = tmp_path / STREAM / "000001.jsonl"
    before = seg.read_bytes()
    for i in range(1, 4):
        record(log, f"d{i}", '{"statement":{"text":"SELECT 1"}}')
    journal = (tmp_path / STREAM / JOURNAL).read_bytes()  # what a process killed now would leave
    log.write_pending()
    copied = seg.read_bytes()
    log.close()
    seg.write_bytes(before)
    (tmp_path / STREAM / JOURNAL).write_bytes(journal)
    for p in (tmp_path / STREAM).glob("00000[2-9].jsonl"):
        p.unlink()
    assert recover_stream(tmp_path / STREAM) == 3
    assert seg.read_bytes() == copied


def test_an_entry_whose_crc_does_not_match_ends_what_is_read(tmp_path: Path) -> None:
    journal = Journal(tmp_path / JOURNAL, size=3 * 4096)
    journal.reset()
    for seq, body in enumerate((b'{"a":1', b'{"b":2', b'{"c":3'), start=1):
        assert journal.put(seq, body)
    assert journal.pending() == [Entry(1, b'{"a":1'), Entry(2, b'{"b":2'), Entry(3, b'{"c":3')]
    # The second entry's body only partly reached the disk (a power loss during writeback).
    second = 4096 + 16 + 6
    journal._map[second + 16 : second + 18] = b"\0\0"
    assert journal.pending() == [Entry(1, b'{"a":1')]
    journal.close()


def test_a_journal_in_another_format_is_kept_aside_not_reused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    log = DecisionLog(tmp_path, stream=STREAM)
    log.close()
    path = tmp_path / STREAM / JOURNAL
    old = b"PGWJRNL1" + path.read_bytes()[8:]
    path.write_bytes(old)
    with caplog.at_level(logging.ERROR, logger="pgwarden.audit"):
        log = DecisionLog(tmp_path, stream=STREAM)
    log.close()
    assert "is not in a format this version of pgwarden reads" in caplog.text
    kept = list((tmp_path / STREAM).glob(f"{JOURNAL}.unrecovered-*"))
    assert len(kept) == 1 and kept[0].read_bytes() == old


def test_the_ring_wraps_and_takes_nothing_it_has_no_room_for(tmp_path: Path) -> None:
    journal = Journal(tmp_path / JOURNAL, size=3 * 4096)
    journal.reset()
    bodies = [bytes([65 + i]) * 1001 for i in range(20)]
    taken = 0
    while journal.put(taken + 1, bodies[taken]):
        taken += 1
    assert taken == 8  # 8 KiB of room: 8 entries of 1,017 bytes and the zero after the last
    assert journal.pending() == [Entry(i + 1, bodies[i]) for i in range(taken)]
    journal.copied()
    assert journal.pending() == []
    more = 0
    while journal.put(taken + more + 1, bodies[taken + more]):
        more += 1
    assert more == 7  # at the start of the ring; the 56 bytes left at its end count as used
    expected = [Entry(i + 1, bodies[i]) for i in range(taken, taken + more)]
    assert journal.pending() == expected
    journal.close()
    reopened = Journal(tmp_path / JOURNAL)
    assert reopened.capacity == 3 * 4096 and reopened.pending() == expected
    reopened.close()


def test_a_line_stored_half_way_is_not_read(tmp_path: Path) -> None:
    journal = Journal(tmp_path / JOURNAL, size=3 * 4096)
    journal.reset()
    assert journal.put(1, b"first") and journal.put(2, b"second")
    # A process killed inside put(): the body's bytes are there, its length not yet.
    journal._map[journal._pos + 16 : journal._pos + 23] = b"partial"
    assert journal.pending() == [Entry(1, b"first"), Entry(2, b"second")]
    journal.close()
