"""Recorded sessions used by the API tests: ordinary ones and ones full of attacker-shaped text."""

from __future__ import annotations

import time

from enforcer.audit.sessions import SessionEnd, SessionStart, StatementEvent

NOW = time.time()
ALICE = "a11ce000-0000-4000-8000-000000000001"
BOB = "b0b00000-0000-4000-8000-000000000002"
CAROL = "ca401000-0000-4000-8000-000000000003"
SCRIPT_SQL = "SELECT '<script>window.pwned = 1</script>' AS x, 1 < 2"


def session_start(sid: str, started: float, subject: str, connection: str, app: str = "psql") -> SessionStart:
    return SessionStart(
        id=sid,
        instance="gw-test",
        started_at=started,
        subject=subject,
        issuer="pgwarden",
        groups=["agents"],
        user_name="app",
        connection=connection,
        database="demo",
        client_addr="127.0.0.1",
        application_name=app,
        tls=True,
    )


def recorded_sessions() -> list[SessionStart | StatementEvent | SessionEnd]:
    """alice (an hour ago): an allowed SELECT with rows, a denied DROP, a failed statement.
    bob (three days ago): one clean statement. carol (a minute ago): attacker-shaped text everywhere."""
    a0 = NOW - 3600
    b0 = NOW - 3 * 86400
    c0 = NOW - 60
    return [
        session_start(ALICE, a0, "alice", "demo"),
        StatementEvent(
            ALICE,
            1,
            a0 + 1.0,
            2.5,
            "simple",
            "SELECT id, email FROM customers LIMIT 2",
            decision_id="d-1",
            action="mask",
            reasons=["email is personal data"],
            command_tag="SELECT 2",
            rows=2,
            columns=["id", "email"],
            result_rows=[["1", "a***@example.com"], ["2", None]],
        ),
        StatementEvent(
            ALICE,
            2,
            a0 + 1.5,
            0.4,
            "simple",
            "DROP TABLE customers",
            decision_id="d-2",
            action="deny",
            reasons=["DDL is not allowed for agents"],
            forwarded=False,
            error_sqlstate="42501",
            error_message="denied by policy",
        ),
        StatementEvent(
            ALICE,
            3,
            a0 + 1.7,
            1.1,
            "extended",
            "SELECT * FROM missing WHERE id = $1",
            decision_id="d-3",
            action="allow",
            params=["7"],
            error_sqlstate="42P01",
            error_message='relation "missing" does not exist',
        ),
        SessionEnd(ALICE, a0 + 2.0, "client_terminated"),
        session_start(BOB, b0, "bob", "other"),
        StatementEvent(
            BOB, 1, b0 + 0.1, 1.0, "simple", "SELECT 1", action="allow", command_tag="SELECT 1", rows=1
        ),
        SessionEnd(BOB, b0 + 1.0, "client_terminated"),
        session_start(
            CAROL, c0, "carol<script>window.pwned=2</script>", "demo", app="<img src=x onerror=alert(1)>"
        ),
        StatementEvent(
            CAROL,
            1,
            c0 + 0.2,
            0.8,
            "simple",
            SCRIPT_SQL,
            action="allow",
            command_tag="SELECT 1",
            rows=1,
            columns=["<b>x</b>"],
            result_rows=[["<script>window.pwned = 3</script>"]],
        ),
        StatementEvent(
            CAROL,
            2,
            c0 + 0.5,
            0.3,
            "simple",
            "SELECT 2",
            action="deny",
            reasons=["</li><script>window.pwned=4</script>"],
            forwarded=False,
            error_sqlstate="42501",
            error_message="<script>window.pwned=5</script>",
        ),
    ]
