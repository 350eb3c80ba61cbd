"""Per-statement cost of analysis + decision, embedded and OPA-over-HTTP, cached and uncached.

    .venv/bin/python bench/policy_cost.py [--n 2000]

Prints microseconds per statement for each stage; bench/run.py includes the same
numbers in RESULTS.md. The OPA figures use tests/integration/opa_server.py (an
HTTP server speaking OPA's Data API, evaluating with the embedded engine) because
no OPA binary is available here: they measure the HTTP round trip the gateway pays,
not OPA's own evaluation speed.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from enforcer.analysis import analyse  # noqa: E402
from enforcer.audit.decision_log import DecisionLog  # noqa: E402
from enforcer.config import SHIPPED_POLICIES  # noqa: E402
from enforcer.identity import Identity  # noqa: E402
from enforcer.policy.engine import EmbeddedEngine, OPAEngine  # noqa: E402
from enforcer.proxy.gate import SessionContext  # noqa: E402
from enforcer.proxy.policy_gate import PolicyGate, cached_analysis  # noqa: E402
from enforcer.wire import Query  # noqa: E402

STATEMENTS = {
    "pgbench -S select": "SELECT abalance FROM pgbench_accounts WHERE aid = 48213",
    "join + aggregate": (
        "SELECT p.name, sum(o.quantity) FROM orders o JOIN products p ON p.id = o.product_id "
        "WHERE o.ordered_at > now() - interval '7 days' GROUP BY p.name ORDER BY 2 DESC LIMIT 10"
    ),
    "writable CTE": "WITH gone AS (DELETE FROM orders WHERE id < 10 RETURNING *) SELECT count(*) FROM gone",
}


def ctx() -> SessionContext:
    identity = Identity("bench", "pgwarden", ("agents",), "gateway-token", time.time() + 3600)
    return SessionContext("bench", identity, "demo", "demo", "127.0.0.1:1", False)


def per_call(fn: Any, n: int) -> float:
    samples = []
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(n):
            fn()
        samples.append((time.perf_counter() - t) / n * 1e6)
    return statistics.median(samples)


def measure(n: int) -> list[tuple[str, str, float]]:
    rows: list[tuple[str, str, float]] = []
    engine = EmbeddedEngine([SHIPPED_POLICIES])
    for label, sql in STATEMENTS.items():
        rows.append(
            (label, "analysis (pglast parse + facts), uncached", per_call(lambda s=sql: analyse(s), n))
        )
        doc_gate = PolicyGate(engine, DecisionLog(None), cache_ttl=0)
        c = ctx()
        analysis = cached_analysis(sql)
        assert not isinstance(analysis, Exception)
        inputs = doc_gate._inputs(c, "simple", analysis)
        rows.append(
            (label, "embedded Rego evaluation", per_call(lambda i=inputs: engine.evaluate_sync(i[0][1]), n))
        )
        uncached = PolicyGate(engine, DecisionLog(None), cache_ttl=0)
        c1 = ctx()
        msg = Query(sql)

        def full_uncached(g: PolicyGate = uncached, cc: SessionContext = c1, m: Query = msg) -> None:
            g.decide(cc, m)
            g.decision_log.memory.clear()

        rows.append((label, "gate total, decision uncached (analysis cached)", per_call(full_uncached, n)))
        cached = PolicyGate(engine, DecisionLog(None), cache_ttl=3600)
        c2 = ctx()

        def full_cached(g: PolicyGate = cached, cc: SessionContext = c2, m: Query = msg) -> None:
            g.decide(cc, m)
            g.decision_log.memory.clear()

        rows.append((label, "gate total, decision cached (record still written)", per_call(full_cached, n)))
    rows.append(
        (
            "pgbench -S select",
            "gate total, new literal each time (pgbench -M simple)",
            unique_literals(engine, n),
        )
    )
    rows += measure_opa(max(n // 10, 50))
    return rows


def unique_literals(engine: EmbeddedEngine, n: int) -> float:
    from enforcer.proxy.policy_gate import choose_cache_key

    gate = PolicyGate(engine, DecisionLog(None), cache_key=choose_cache_key("auto", engine.texts))
    c = ctx()
    counter = iter(range(10**9))

    def one() -> None:
        gate.decide(c, Query(f"SELECT abalance FROM pgbench_accounts WHERE aid = {next(counter)}"))
        gate.decision_log.memory.clear()

    return per_call(one, n)


def measure_opa(n: int) -> list[tuple[str, str, float]]:
    from tests.integration.opa_server import OPAServer

    server = OPAServer([SHIPPED_POLICIES])
    try:

        async def run() -> float:
            engine = OPAEngine(server.url, timeout=2)
            analysis = cached_analysis(STATEMENTS["pgbench -S select"])
            assert not isinstance(analysis, Exception)
            gate = PolicyGate(engine, DecisionLog(None), cache_ttl=0)
            doc = gate._inputs(ctx(), "simple", analysis)[0][1]
            await engine.evaluate(doc)
            t = time.perf_counter()
            for _ in range(n):
                await engine.evaluate(doc)
            await engine.close()
            return (time.perf_counter() - t) / n * 1e6

        return [("pgbench -S select", "OPA Data API over HTTP (keep-alive), uncached", asyncio.run(run()))]
    finally:
        server.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=2000)
    args = ap.parse_args()
    for label, stage, us in measure(args.n):
        print(f"{label:20} {stage:55} {us:9.1f} us")


if __name__ == "__main__":
    main()
