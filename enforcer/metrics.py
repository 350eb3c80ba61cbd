"""Prometheus metrics of the gateway (prometheus-client), served at /metrics by the API server.

Owns: the metric families and their names. Instrumented code increments the
pre-bound children here; with ``--workers N`` each worker writes to the
multiprocess directory (``PROMETHEUS_MULTIPROC_DIR``, set by the supervisor) and
worker 0's API server aggregates them.
Never: does I/O on the statement path (an increment is a few hundred nanoseconds).
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess

ACTIONS = ("allow", "deny", "mask", "review")

SESSIONS = Counter("pgwarden_sessions_total", "Client sessions that completed authentication.", ["channel"])
SESSIONS_ACTIVE = Gauge("pgwarden_sessions_active", "Client sessions open now.", multiprocess_mode="livesum")
AUTH_FAILURES = Counter("pgwarden_auth_failures_total", "Refused logins (bad, expired or unknown tokens).")
STATEMENTS = Counter(
    "pgwarden_statements_total",
    "Decided messages by the policy's action and whether they were forwarded.",
    ["action", "forwarded"],
)
DECISION_SECONDS = Histogram(
    "pgwarden_decision_seconds",
    "Policy evaluation time of decisions that were not served from the cache.",
    buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5),
)
MASKED_FIELDS = Counter("pgwarden_masked_fields_total", "Values masked on the way to clients.", ["strategy"])
APPROVALS_PENDING = Gauge(
    "pgwarden_approvals_waiting", "Statements held for approval right now.", multiprocess_mode="livesum"
)
APPROVAL_EVENTS = Counter("pgwarden_approval_events_total", "Approval events by kind.", ["event"])
UPSTREAM_ERRORS = Counter(
    "pgwarden_upstream_errors_total",
    "Upstream connections refused, unreachable or lost.",
    ["connection", "kind"],
)
DECISION_LOG_FAILURES = Counter(
    "pgwarden_decision_log_failures_total", "Decision records that could not be written."
)
BUSY_POLL_SECONDS = Counter(
    "pgwarden_busy_poll_seconds_total",
    "Wall time event loops spent polling instead of sleeping (listener.busy_poll); CPU spent waiting.",
)

#: Pre-bound children for the hot path.
STATEMENT_COUNTERS = {
    (action, forwarded): STATEMENTS.labels(action=action, forwarded=str(forwarded).lower())
    for action in ACTIONS
    for forwarded in (True, False)
}


def render() -> tuple[bytes, str]:
    """The exposition text (all workers' values when running multiprocess)."""
    from prometheus_client import CONTENT_TYPE_LATEST

    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST
