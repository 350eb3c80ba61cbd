"""The gateway's own CPU per pgbench -S transaction, with the relay driven in-process.

    .venv/bin/python bench/relay_cost.py [--n 10000]

Feeds the relay the bytes pgbench sends (simple: a Query with a new literal each
time; prepared: Bind/Execute/Sync of a statement parsed once) and the bytes Postgres
answers, through transports that only count bytes. No sockets and no other process,
so this is the Python work per transaction in a hot loop: the floor of what the
gateway adds, which a real run multiplies (caches are cold after every context
switch). Two configurations:

- bare relay: framing, decoding and cycle tracking with a gate that allows everything
  and no audit trail;
- shipped policy: the PolicyGate on the shipped policies (decisions cached per session
  as in a real session), the hash-chained decision log on disk (each record copied from the
  journal into its segment at once: a gateway does that after forwarding), and the statement
  tracker writing outcome records.

Prints microseconds per transaction, best of five runs; bench/run.py puts the same
figures into RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from enforcer.audit.decision_log import DecisionLog  # noqa: E402
from enforcer.config import SHIPPED_POLICIES, ListenerConfig  # noqa: E402
from enforcer.identity import Identity  # noqa: E402
from enforcer.policy.engine import EmbeddedEngine  # noqa: E402
from enforcer.proxy.gate import AllowAllGate, SessionContext, StatementGate  # noqa: E402
from enforcer.proxy.policy_gate import PolicyGate, choose_cache_key  # noqa: E402
from enforcer.proxy.recording import StatementTracker  # noqa: E402
from enforcer.proxy.relay import Relay  # noqa: E402
from enforcer.wire import (  # noqa: E402
    Bind,
    CommandComplete,
    DataRow,
    Execute,
    FieldDescription,
    Parse,
    Query,
    ReadyForQuery,
    RowDescription,
    Sync,
)

SQL = "SELECT abalance FROM pgbench_accounts WHERE aid = $1;"
PARSE_COMPLETE, BIND_COMPLETE = b"1\x00\x00\x00\x04", b"2\x00\x00\x00\x04"


class _CountingTransport:
    def __init__(self) -> None:
        self.bytes = 0

    def write(self, data: bytes) -> None:
        self.bytes += len(data)

    def is_closing(self) -> bool:
        return False

    def set_protocol(self, protocol: Any) -> None: ...
    def pause_reading(self) -> None: ...
    def resume_reading(self) -> None: ...
    def close(self) -> None: ...


def _per_txn(relay: Relay, requests: list[bytes], answer: bytes, n: int) -> float:
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for i in range(n):
            relay.from_client(requests[i & 4095])
            relay.from_upstream(answer)
        best = min(best, time.perf_counter() - start)
    return best / n * 1e6


async def _measure(mode: str, policy: bool, n: int, work: Path) -> float:
    identity = Identity("bench", "pgwarden", ("agents",), "gateway-token", time.time() + 3600)
    ctx = SessionContext("bench", identity, "demo", "demo", "127.0.0.1:1", False)
    gate: StatementGate = AllowAllGate()
    tracker = None
    if policy:
        engine = EmbeddedEngine([SHIPPED_POLICIES])
        log = DecisionLog(
            work / mode, stream="bench", labels={"app": "pgwarden", "policy_version": engine.version}
        )
        gate = PolicyGate(engine, log, cache_key=choose_cache_key("auto", engine.texts))
        tracker = StatementTracker("bench", recorder=None, decision_log=log)
    client, upstream = _CountingTransport(), _CountingTransport()
    relay = Relay(
        ctx=ctx,
        gate=gate,
        listener=ListenerConfig(),
        client=client,  # type: ignore[arg-type]
        upstream=upstream,  # type: ignore[arg-type]
        event=lambda *a, **k: None,
        tracker=tracker,
    )
    rng = random.Random(7)
    row = DataRow((b"0",)).encode() + CommandComplete("SELECT 1").encode() + ReadyForQuery("I").encode()
    if mode == "simple":
        field = FieldDescription("abalance", 0, 0, 23, 4, -1, 0)
        answer = RowDescription((field,)).encode() + row
        requests = [Query(SQL.replace("$1", str(rng.randint(1, 1_000_000)))).encode() for _ in range(4096)]
    else:
        relay.from_client(Parse("P0_1", SQL, (23,)).encode() + Sync().encode())
        relay.from_upstream(PARSE_COMPLETE + ReadyForQuery("I").encode())
        answer = BIND_COMPLETE + row
        requests = [
            Bind("", "P0_1", (0,), (str(rng.randint(1, 1_000_000)).encode(),), (1,)).encode()
            + Execute("", 0).encode()
            + Sync().encode()
            for _ in range(4096)
        ]
    _per_txn(relay, requests, answer, 1000)  # warm the caches the way a session would
    result = _per_txn(relay, requests, answer, n)
    if relay.refused:
        raise RuntimeError(
            f"{relay.refused} statements were refused: the measurement is not of allowed traffic"
        )
    return result


def measure(n: int) -> list[tuple[str, str, float]]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="pgwarden-relay-cost-") as tmp:
        for label, policy in (("bare relay", False), ("shipped policy, decision log, tracker", True)):
            for mode in ("simple", "prepared"):
                rows.append((label, mode, asyncio.run(_measure(mode, policy, n, Path(tmp)))))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=10000)
    args = ap.parse_args()
    for label, mode, us in measure(args.n):
        print(f"{label:40} {mode:8} {us:6.1f} µs per transaction")


if __name__ == "__main__":
    main()
