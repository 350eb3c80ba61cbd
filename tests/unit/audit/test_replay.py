"""Terminal rendering of recorded sessions: pacing, and recorded text shown as text, never as markup."""

from __future__ import annotations

import io
from typing import Any

from rich.console import Console

from enforcer.audit.replay import MAX_PAUSE, render_session, render_session_list


def session(**kw: Any) -> dict[str, Any]:
    base = {
        "id": "s1",
        "instance": "gw-w0",
        "started_at": 1000.0,
        "ended_at": 1010.0,
        "subject": "[red]bot[/red]",
        "issuer": "pgwarden",
        "groups": ["agents"],
        "user_name": "bot",
        "connection": "demo",
        "database": "demo",
        "client_addr": "127.0.0.1:5",
        "application_name": "[link=x]app",
        "tls": True,
        "protocol": "postgres",
        "end_reason": "client terminated",
        "statements": 2,
        "refused": 1,
        "errors": 0,
    }
    return {**base, **kw}


def statement(seq: int, at: float, **kw: Any) -> dict[str, Any]:
    base = {
        "seq": seq,
        "started_at": at,
        "duration_ms": 1.0,
        "protocol": "simple",
        "sql": f"SELECT {seq}",
        "decision_id": f"d{seq}",
        "action": "allow",
        "reasons": [],
        "forwarded": True,
        "command_tag": "SELECT 1",
        "rows": 1,
        "error_sqlstate": "",
        "error_message": "",
        "columns": ["[b]x"],
        "result_rows": [["[i]v\x1b[31m"]],
        "rows_truncated": False,
    }
    return {**base, **kw}


def render(fn: Any, *args: Any, **kw: Any) -> str:
    out = io.StringIO()
    fn(*args, console=Console(file=out, width=200, color_system=None), **kw)
    return out.getvalue()


def test_recorded_text_is_never_markup_or_terminal_control() -> None:
    text = render(render_session, session(), [statement(1, 1001.0)], speed=None)
    assert "[red]bot[/red]" in text and "[link=x]app" in text and "[b]x" in text and "[i]v" in text
    assert "\x1b" not in text
    listing = render(render_session_list, [session()])
    assert "[red]bot[/red]" in listing


def test_replay_keeps_the_recorded_pacing_divided_by_speed_and_capped() -> None:
    pauses: list[float] = []
    statements = [statement(1, 1002.0), statement(2, 1006.0), statement(3, 1100.0)]
    render(render_session, session(), statements, speed=2.0, sleep=pauses.append)
    assert pauses == [1.0, 2.0, MAX_PAUSE]
    pauses.clear()
    render(render_session, session(), statements, speed=0, sleep=pauses.append)
    assert pauses == []
