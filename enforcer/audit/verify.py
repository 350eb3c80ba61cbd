"""Verification of the decision log's hash chains.

Owns: walking every stream of a decision log directory and naming the first
record that is edited, removed, reordered, truncated or out of place.
Never: modifies the log.

What the chain proves, and what it cannot: every record is bound to the one
before it, so a change anywhere before the last record of a stream is detected.
Records cut from the end of a stream that is still open (gateway running or
crashed) leave a shorter chain that is valid; a cleanly stopped gateway ends
each stream with a ``close`` record and each restart opens a segment that names
how the previous one ended, which narrows that window to the running segment.
Ship segments off the machine (or to OPA's decision-log service) to close it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from enforcer.audit.decision_log import (
    ANCHORS,
    GENESIS,
    continuation,
    segment_number,
    segments_of,
    split_hash,
)
from enforcer.audit.journal import JOURNAL, read_pending


@dataclass
class StreamReport:
    stream: str
    records: int = 0
    decisions: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    closed: bool = False
    problem: str | None = None
    segments: int = 0
    anchored_from: int | None = None
    #: Things an auditor should know that do not break the chain (a crash, or records cut before a restart).
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.problem is None


@dataclass
class VerifyReport:
    directory: Path
    streams: list[StreamReport] = field(default_factory=list)
    problem: str | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None and all(s.ok for s in self.streams)


def verify_directory(directory: Path) -> VerifyReport:
    report = VerifyReport(directory)
    if not directory.is_dir():
        report.problem = f"{directory} is not a directory (audit.decision_log.dir)"
        return report
    streams = sorted(p for p in directory.iterdir() if p.is_dir())
    if not streams:
        report.problem = f"{directory} holds no decision log streams"
    for stream_dir in streams:
        report.streams.append(verify_stream(stream_dir))
    return report


def _anchors(stream_dir: Path) -> dict[int, dict[str, Any]]:
    path = stream_dir / ANCHORS
    out: dict[int, dict[str, Any]] = {}
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                a = json.loads(line)
                out[int(a["segment"])] = a
            except (ValueError, KeyError, TypeError):
                continue
    return out


def journalled_after(stream_dir: Path, seq: int, digest: str) -> int:
    """How many records of the stream's journal continue the chain after ``seq``/``digest``."""
    return len(continuation(read_pending(stream_dir / JOURNAL), stream_dir.name, seq, digest))


def verify_stream(stream_dir: Path) -> StreamReport:
    stream = stream_dir.name
    rep = StreamReport(stream)
    segments = segments_of(stream_dir)
    strays = [p.name for p in stream_dir.iterdir() if p.suffix == ".jsonl" and p.name != ANCHORS]
    strays = [n for n in strays if segment_number(stream_dir / n) is None]
    if strays:
        rep.problem = f"unexpected file(s) in the stream directory: {', '.join(sorted(strays))}"
        return rep
    if not segments:
        rep.problem = "no segments"
        return rep
    rep.segments = len(segments)
    anchors = _anchors(stream_dir)
    chained_anchors: dict[int, dict[str, Any]] = {}
    first_number = segments[0][0]
    prev_hash, prev_seq = GENESIS, 0
    if first_number != 1:
        anchor = anchors.get(first_number - 1)
        if anchor is None:
            rep.problem = (
                f"segments 1..{first_number - 1} are missing and no retention anchor covers them "
                f"(first segment present: {segments[0][1].name})"
            )
            return rep
        prev_hash, prev_seq = str(anchor["last_hash"]), int(anchor["last_seq"])
        rep.anchored_from = first_number
    expected_number = first_number
    last_event = ""
    torn_before = 0
    for index, (number, path) in enumerate(segments):
        if number != expected_number:
            rep.problem = f"segment {expected_number:06d}{'.jsonl'} is missing (next present: {path.name})"
            return rep
        expected_number += 1
        data = path.read_bytes()
        lines = data.split(b"\n")
        tail = lines.pop()  # bytes after the last newline: empty unless a record was cut
        is_last = index == len(segments) - 1
        for lineno, line in enumerate(lines, 1):
            where = f"{path.name}:{lineno}"
            parts = split_hash(line)
            if parts is None:
                rep.problem = f"{where}: not a record of this log (no hash member): edited or damaged"
                return rep
            body, digest = parts
            if hashlib.sha256(body).hexdigest() != digest:
                rep.problem = f"{where}: the record's hash does not match its content: the record was edited"
                return rep
            try:
                record = json.loads(body)
                chain = record["chain"]
                seq, prev = int(chain["seq"]), str(chain["prev"])
            except (ValueError, KeyError, TypeError):
                rep.problem = f"{where}: the record has no valid chain member"
                return rep
            if chain.get("stream") != stream:
                rep.problem = f"{where}: the record belongs to stream {chain.get('stream')!r}, not {stream!r}"
                return rep
            if prev != prev_hash or seq != prev_seq + 1:
                if seq <= prev_seq:
                    what = "is out of order (reordered or duplicated)"
                else:
                    what = f"does not follow record {prev_seq}: {seq - prev_seq - 1 or 'a'} record(s) removed"
                    if prev != prev_hash and seq == prev_seq + 1:
                        what = "does not chain on the record before it (a record was replaced or removed)"
                rep.problem = f"{where}: record {seq} {what}"
                return rep
            event = record.get("event")
            if lineno == 1:
                if event != "segment" or record.get("segment") != number:
                    rep.problem = f"{where}: a segment must start with its own segment header"
                    return rep
                previous = record.get("previous")
                if previous and not previous.get("closed") and not previous.get("rotated"):
                    rep.notes.append(
                        f"segment {int(previous.get('segment', 0)):06d} ended without a close record: the "
                        "gateway stopped without closing its log (crash or kill), or records were cut "
                        "from its end before the restart"
                    )
                if index > 0:
                    acknowledged = int((previous or {}).get("torn_bytes", 0))
                    if acknowledged != torn_before:
                        rep.problem = (
                            f"{segments[index - 1][1].name}: ends with {torn_before} bytes of a cut record "
                            f"that the next segment does not account for: truncated"
                        )
                        return rep
            elif event == "segment":
                rep.problem = f"{where}: segment header in the middle of a segment"
                return rep
            if event == "retention":
                chained_anchors[int(record["segment"])] = record
            if event == "decision":
                rep.decisions += 1
            if rep.first_seq is None:
                rep.first_seq = seq
            prev_hash, prev_seq = digest, seq
            last_event = str(event)
            rep.records += 1
        if tail and is_last:
            rep.problem = (
                f"{path.name}:{len(lines) + 1}: the last record is cut off after {len(tail)} bytes: "
                f"truncated (a crash during a write leaves this too; the {rep.records} records before "
                "it verify)"
            )
            journalled = journalled_after(stream_dir, prev_seq, prev_hash)
            if journalled:
                rep.problem += (
                    f"; the journal holds {journalled} record(s) from there on: `pgwarden audit recover` "
                    "completes the segment with them"
                )
            return rep
        torn_before = len(tail)
    rep.last_seq = prev_seq
    rep.closed = last_event == "close"
    journalled = journalled_after(stream_dir, prev_seq, prev_hash)
    if journalled:
        rep.notes.append(
            f"{journalled} record(s) are in the journal and not yet in a segment: the gateway is "
            "running, or it stopped without copying them (`pgwarden audit recover` appends them "
            "once it has stopped; the gateway does when it starts)"
        )
    if rep.anchored_from is not None:
        anchor = anchors[rep.anchored_from - 1]
        recorded = chained_anchors.get(rep.anchored_from - 1)
        if recorded is None or recorded.get("last_hash") != anchor.get("last_hash"):
            rep.problem = (
                f"{ANCHORS}: the anchor for deleted segment {rep.anchored_from - 1} is not recorded in the "
                "chain: the anchors file was edited"
            )
    return rep
