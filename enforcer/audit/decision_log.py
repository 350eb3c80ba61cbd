"""Decision log: one OPA-style decision-log event per policy decision, as JSON lines.

Owns: the record shape (OPA's decision_id, timestamp, path, input, result,
labels, metrics, plus what the enforcer did) and appending it durably enough
that a record exists before the statement it describes is forwarded.
Never: swallows a write failure; the caller refuses the statement instead.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from pathlib import Path
from typing import Any


class DecisionLogError(Exception):
    """The record could not be written; the statement must not be forwarded."""


def new_decision_id() -> str:
    return str(uuid.uuid4())


def rfc3339(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts * 1e6) % 1_000_000:06d}Z"


class DecisionLog:
    """Appends records to a JSONL file (or keeps them in memory when ``path`` is None, for tools)."""

    def __init__(self, path: Path | None, labels: dict[str, str] | None = None) -> None:
        self.path = path
        self.labels = labels or {}
        self._lock = threading.Lock()
        self._fd: int | None = None
        self.memory: list[dict[str, Any]] = []
        if path is not None:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            except OSError as exc:
                raise DecisionLogError(f"cannot open the decision log {path}: {exc.strerror}") from None

    def write(
        self,
        *,
        decision_id: str,
        input_json: str,
        result: dict[str, Any],
        enforcement: dict[str, Any],
        metrics: dict[str, int],
        path: str = "pgwarden/decision",
    ) -> None:
        """Write one record. ``input_json`` is pre-serialised (cached decisions reuse it)."""
        head = {
            "decision_id": decision_id,
            "timestamp": rfc3339(time.time()),
            "path": path,
            "labels": self.labels,
            "result": result,
            "metrics": metrics,
            "enforcement": enforcement,
        }
        line = json.dumps(head, separators=(",", ":"), default=str)[:-1] + ',"input":' + input_json + "}\n"
        if self._fd is None:
            self.memory.append(json.loads(line))
            return
        data = line.encode()
        try:
            with self._lock:
                written = os.write(self._fd, data)
            if written != len(data):
                raise DecisionLogError(f"short write to the decision log {self.path}")
        except OSError as exc:
            raise DecisionLogError(f"cannot write the decision log {self.path}: {exc.strerror}") from None

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
