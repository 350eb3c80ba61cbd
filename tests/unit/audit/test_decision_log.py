"""The hash-chained decision log: writing, rotation, restart, retention, and verify against tampering."""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import time
from pathlib import Path

import pytest

from enforcer.audit.decision_log import DecisionLog, DecisionLogError, read_tip, segments_of, split_hash
from enforcer.audit.verify import verify_directory, verify_stream


def write_decisions(log: DecisionLog, n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        log.write(
            decision_id=f"d{i}",
            input_json=json.dumps({"statement": {"text": f"SELECT {i}"}}),
            result={"action": "allow", "reasons": []},
            enforcement={"forwarded": True},
            metrics={},
        )


REAL_FDATASYNC = os.fdatasync


def count_syncs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The descriptors of every fdatasync the decision log makes from now on (each still syncs)."""
    synced: list[int] = []
    monkeypatch.setattr(
        "enforcer.audit.decision_log.os.fdatasync", lambda fd: (synced.append(fd), REAL_FDATASYNC(fd))
    )
    return synced


def make_log(root: Path, **kw: object) -> DecisionLog:
    return DecisionLog(root, stream="gw-w0", labels={"app": "pgwarden"}, **kw)  # type: ignore[arg-type]


def lines_of(path: Path) -> list[bytes]:
    return path.read_bytes().split(b"\n")[:-1]


def rewrite(path: Path, lines: list[bytes]) -> None:
    path.write_bytes(b"".join(line + b"\n" for line in lines))


def problem(root: Path) -> str:
    report = verify_directory(root)
    assert not report.ok
    return next(s.problem for s in report.streams if s.problem)  # type: ignore[return-value]


@pytest.fixture
def closed_log(tmp_path: Path) -> Path:
    log = make_log(tmp_path)
    write_decisions(log, 5)
    log.close()
    return tmp_path


def test_records_are_chained_and_verify(closed_log: Path) -> None:
    seg = closed_log / "gw-w0" / "000001.jsonl"
    records = [json.loads(line) for line in lines_of(seg)]
    assert [r["event"] for r in records] == ["segment", *["decision"] * 5, "close"]
    assert [r["chain"]["seq"] for r in records] == list(range(1, 8))
    assert records[0]["chain"]["prev"] == "0" * 64
    for before, after in itertools.pairwise(records):
        assert after["chain"]["prev"] == before["hash"]
    # The hash covers the line's bytes without the hash member.
    body, digest = split_hash(lines_of(seg)[2]) or (b"", "")
    assert hashlib.sha256(body).hexdigest() == digest == records[2]["hash"]
    # OPA's decision-log event shape.
    assert {"decision_id", "timestamp", "path", "input", "result", "labels", "metrics"} <= set(records[1])
    report = verify_directory(closed_log)
    assert report.ok, report
    (stream,) = report.streams
    assert (stream.records, stream.decisions, stream.closed) == (7, 5, True)


def test_edited_record_is_named(closed_log: Path) -> None:
    seg = closed_log / "gw-w0" / "000001.jsonl"
    lines = lines_of(seg)
    lines[3] = lines[3].replace(b'"allow"', b'"deny"')
    rewrite(seg, lines)
    assert problem(closed_log).startswith("000001.jsonl:4: the record's hash does not match")


def test_edited_record_with_recomputed_hash_breaks_the_next_link(closed_log: Path) -> None:
    seg = closed_log / "gw-w0" / "000001.jsonl"
    lines = lines_of(seg)
    body, _ = split_hash(lines[3].replace(b'"allow"', b'"deny"')) or (b"", "")
    lines[3] = body[:-1] + b',"hash":"' + hashlib.sha256(body).hexdigest().encode() + b'"}'
    rewrite(seg, lines)
    assert problem(closed_log).startswith("000001.jsonl:5: record 5 does not chain on the record before it")


def test_removed_record_is_named(closed_log: Path) -> None:
    seg = closed_log / "gw-w0" / "000001.jsonl"
    lines = lines_of(seg)
    del lines[2]
    rewrite(seg, lines)
    assert problem(closed_log) == "000001.jsonl:3: record 4 does not follow record 2: 1 record(s) removed"


def test_reordered_records_are_named(closed_log: Path) -> None:
    seg = closed_log / "gw-w0" / "000001.jsonl"
    lines = lines_of(seg)
    lines[2], lines[3] = lines[3], lines[2]
    rewrite(seg, lines)
    assert problem(closed_log).startswith("000001.jsonl:3: record 4 does not follow record 2")


def test_replayed_record_is_named(closed_log: Path) -> None:
    seg = closed_log / "gw-w0" / "000001.jsonl"
    lines = lines_of(seg)
    lines.insert(4, lines[1])  # a copy of an earlier record
    rewrite(seg, lines)
    assert problem(closed_log) == "000001.jsonl:5: record 2 is out of order (reordered or duplicated)"


def test_truncated_last_record_is_named(closed_log: Path) -> None:
    seg = closed_log / "gw-w0" / "000001.jsonl"
    data = seg.read_bytes()
    seg.write_bytes(data[: len(data) - 40])
    assert "000001.jsonl:7: the last record is cut off" in problem(closed_log)


def test_records_cut_from_a_closed_stream_are_detected_at_restart(tmp_path: Path) -> None:
    log = make_log(tmp_path)
    write_decisions(log, 3)
    log.close()
    seg = tmp_path / "gw-w0" / "000001.jsonl"
    rewrite(seg, lines_of(seg)[:-2])  # drop the last decision and the close record
    log = make_log(tmp_path)  # a restart chains on what it finds...
    write_decisions(log, 1)
    log.close()
    header = json.loads(lines_of(tmp_path / "gw-w0" / "000002.jsonl")[0])
    assert header["previous"] == {"segment": 1, "closed": False, "torn_bytes": 0}
    # ...and records that the previous segment did not end cleanly: a crash and a cut look alike,
    # so verify cannot fail on it, but it tells the auditor.
    report = verify_directory(tmp_path)
    assert report.ok
    assert "segment 000001 ended without a close record" in report.streams[0].notes[0]


def test_removed_segment_is_named(tmp_path: Path) -> None:
    log = make_log(tmp_path, rotate_size=4096)
    write_decisions(log, 60)
    log.close()
    segments = segments_of(tmp_path / "gw-w0")
    assert len(segments) >= 3
    assert verify_directory(tmp_path).ok
    segments[1][1].unlink()
    assert problem(tmp_path) == f"segment 000002.jsonl is missing (next present: {segments[2][1].name})"
    segments[0][1].unlink()
    assert "segments 1..2 are missing and no retention anchor covers them" in problem(tmp_path)


def test_rotation_chains_across_segments(tmp_path: Path) -> None:
    log = make_log(tmp_path, rotate_size=4096)
    write_decisions(log, 40)
    log.close()
    segments = segments_of(tmp_path / "gw-w0")
    first_of_second = json.loads(lines_of(segments[1][1])[0])
    tip = read_tip(segments[0][1])
    assert tip is not None and first_of_second["chain"]["prev"] == tip.hash
    report = verify_stream(tmp_path / "gw-w0")
    assert report.ok and report.decisions == 40 and report.segments == len(segments)
    assert report.notes == []


def test_restart_continues_the_chain_and_acknowledges_a_torn_tail(tmp_path: Path) -> None:
    log = make_log(tmp_path)
    write_decisions(log, 2)
    assert log._fd is not None
    os.write(log._fd, b'{"event":"decision","decision_id":"half')  # what a power cut can leave
    log._fd = None  # crash: no close record
    if log._lock_fd is not None:
        os.close(log._lock_fd)
    assert "cut off" in problem(tmp_path)
    log = make_log(tmp_path)
    write_decisions(log, 2, start=2)
    log.close()
    report = verify_directory(tmp_path)
    assert report.ok, report.streams
    header = json.loads(lines_of(tmp_path / "gw-w0" / "000002.jsonl")[0])
    assert header["previous"]["torn_bytes"] == len(b'{"event":"decision","decision_id":"half')


def test_retention_deletes_old_segments_and_leaves_a_verifiable_anchor(tmp_path: Path) -> None:
    log = make_log(tmp_path, rotate_size=4096, retention=3600.0)
    write_decisions(log, 30)
    old = segments_of(tmp_path / "gw-w0")
    for _, path in old:
        os.utime(path, (time.time() - 7200, time.time() - 7200))
    write_decisions(log, 30, start=30)
    log.close()
    remaining = segments_of(tmp_path / "gw-w0")
    assert remaining[0][0] > 1
    report = verify_stream(tmp_path / "gw-w0")
    assert report.ok, report.problem
    assert report.anchored_from == remaining[0][0]
    # An anchor forged to hide the deletion of one more segment is not in the chain's own records.
    victim = remaining[0][1]
    tip = read_tip(victim)
    assert tip is not None
    anchor = {"stream": "gw-w0", "segment": remaining[0][0], "last_seq": tip.seq, "last_hash": tip.hash}
    with open(tmp_path / "gw-w0" / "anchors.jsonl", "a") as f:
        f.write(json.dumps(anchor) + "\n")
    victim.unlink()
    assert "is not recorded in the chain: the anchors file was edited" in (
        verify_stream(tmp_path / "gw-w0").problem or ""
    )


def test_one_writer_per_stream(tmp_path: Path) -> None:
    log = make_log(tmp_path)
    with pytest.raises(DecisionLogError, match="another gateway process is writing"):
        make_log(tmp_path)
    log.close()
    make_log(tmp_path).close()


def test_fsync_always_and_outcomes(tmp_path: Path) -> None:
    log = make_log(tmp_path, fsync="always")
    write_decisions(log, 1)
    log.write_outcome(
        decision_id="d0",
        session="s",
        forwarded=True,
        command_tag="SELECT 1",
        rows=1,
        duration_ms=0.5,
        error=None,
    )
    log.close()
    records = [json.loads(line) for line in lines_of(tmp_path / "gw-w0" / "000001.jsonl")]
    assert records[2]["event"] == "outcome" and records[2]["rows"] == 1
    assert verify_directory(tmp_path).ok


def test_verify_reports_an_empty_or_missing_directory(tmp_path: Path) -> None:
    assert not verify_directory(tmp_path / "nope").ok
    assert not verify_directory(tmp_path).ok


def test_outcomes_wait_in_memory_in_chain_order_until_the_next_write(tmp_path: Path) -> None:
    log = make_log(tmp_path)
    seg = tmp_path / "gw-w0" / "000001.jsonl"

    def outcome(i: int) -> None:
        log.write_outcome(
            decision_id=f"d{i}",
            session="s",
            forwarded=True,
            command_tag="SELECT 1",
            rows=1,
            duration_ms=0.25,
            error=None,
        )

    write_decisions(log, 1)
    outcome(0)
    assert [json.loads(x)["event"] for x in lines_of(seg)] == ["segment", "decision"]  # held back
    write_decisions(log, 1, start=1)  # a decision record takes the held outcome with it, first
    assert [json.loads(x)["event"] for x in lines_of(seg)] == ["segment", "decision", "outcome", "decision"]
    outcome(1)
    log.write_pending()
    records = [json.loads(x) for x in lines_of(seg)]
    assert records[-1]["event"] == "outcome" and records[-1]["error"] is None and records[-1]["rows"] == 1
    outcome(2)
    log.close()  # nothing held is lost at a clean stop
    events = [json.loads(x)["event"] for x in lines_of(seg)]
    assert events[-2:] == ["outcome", "close"]
    assert verify_directory(tmp_path).ok


def test_decision_ids_are_random_version_4_uuids() -> None:
    import uuid

    from enforcer.audit.decision_log import new_decision_id

    ids = [new_decision_id() for _ in range(2000)]  # several batches
    assert len(set(ids)) == len(ids)
    for text in ids[:300]:
        parsed = uuid.UUID(text)
        assert str(parsed) == text
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122


def test_decision_ids_are_formatted_ahead_while_the_gateway_waits(tmp_path: Path) -> None:
    """The copy after forwarding tops the batch up, so a statement never formats 256 ids."""
    from enforcer.audit.decision_log import new_decision_id

    log = DecisionLog(tmp_path, stream="s")
    while len(new_decision_id._ready) >= new_decision_id._BATCH // 4:
        new_decision_id()
    before = len(new_decision_id._ready)
    log.write_pending()
    assert len(new_decision_id._ready) == before + new_decision_id._BATCH
    log.write_pending()  # enough ready: nothing more is formatted
    assert len(new_decision_id._ready) == before + new_decision_id._BATCH
    log.close()


def test_a_forked_worker_never_reuses_the_parents_batch_of_ids() -> None:
    from enforcer.audit.decision_log import new_decision_id

    new_decision_id()  # the parent now holds a batch
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its first ids, then leave without running pytest's exit handlers
        os.close(read_end)
        os.write(write_end, " ".join(new_decision_id() for _ in range(5)).encode())
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as f:
        child = set(f.read().decode().split())
    os.waitpid(pid, 0)
    parent = {new_decision_id() for _ in range(300)}
    assert len(child) == 5 and not child & parent


def test_timestamps_are_rfc3339_utc_with_microseconds() -> None:
    import re

    from enforcer.audit.decision_log import now_rfc3339, rfc3339

    assert rfc3339(0.5) == "1970-01-01T00:00:00.500000Z"
    assert rfc3339(1795729773.000001) == "2026-11-26T21:49:33.000001Z"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", now_rfc3339())


def test_fsync_interval_is_left_to_the_background_flush(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced = count_syncs(monkeypatch)
    log = make_log(tmp_path, fsync="interval", fsync_interval=0.0)
    synced.clear()
    write_decisions(log, 2)
    assert len(synced) == 2  # no flusher: every write past the interval syncs inline
    log.sync_in_background = True
    synced.clear()
    write_decisions(log, 3, start=2)
    assert synced == []  # the data path never waits for the disk
    log.flush()
    assert len(synced) == 1
    log.close()
    assert verify_directory(tmp_path).ok


def test_flush_syncs_outside_the_lock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    log = make_log(tmp_path, fsync="interval")
    log.sync_in_background = True
    write_decisions(log, 1)
    in_sync, release = threading.Event(), threading.Event()

    def slow_sync(fd: int) -> None:
        in_sync.set()
        assert release.wait(10), "the test did not release the sync"
        REAL_FDATASYNC(fd)

    monkeypatch.setattr("enforcer.audit.decision_log.os.fdatasync", slow_sync)
    flusher = threading.Thread(target=log.flush)
    flusher.start()
    assert in_sync.wait(10)
    writer = threading.Thread(target=write_decisions, args=(log, 1, 1))
    writer.start()
    writer.join(5)
    wrote_during_sync = not writer.is_alive()
    release.set()
    writer.join()
    flusher.join()
    assert wrote_during_sync, "a record had to wait for the fsync"
    monkeypatch.setattr("enforcer.audit.decision_log.os.fdatasync", REAL_FDATASYNC)
    log.close()
    assert verify_directory(tmp_path).ok


def test_a_failed_flush_is_a_decision_log_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = make_log(tmp_path, fsync="interval")
    log.sync_in_background = True
    write_decisions(log, 1)

    def failing(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr("enforcer.audit.decision_log.os.fdatasync", failing)
    with pytest.raises(DecisionLogError, match=r"cannot fsync the decision log .*Input/output error"):
        log.flush()
    synced = count_syncs(monkeypatch)
    log.flush()
    assert len(synced) == 1  # still dirty: the next flush syncs what the failed one did not
    log.close()
