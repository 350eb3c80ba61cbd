"""Showing recorded sessions on a terminal: lists, one session, and replay with its original pacing.

Owns: turning session-store rows into rich output (SQL highlighted, decisions
coloured, recorded result rows as tables) and the pacing of a replay.
Never: reads the store itself, or anything but what it is handed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.panel import Panel
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text

from enforcer.audit.timespec import point_in_time
from enforcer.terminal import console as terminal_console
from enforcer.terminal import printable

_ACTION_STYLE = {"allow": "green", "deny": "bold red", "mask": "yellow", "review": "magenta"}
#: A replay never sits longer than this between two statements, whatever the recorded gap.
MAX_PAUSE = 10.0


def parse_when(value: str, option: str, now: float | None = None) -> float:
    """A point in time: an ISO-8601 timestamp (UTC unless it says otherwise) or a duration ago (``7d``)."""
    try:
        return point_in_time(value, now=now)
    except ValueError as exc:
        raise ValueError(f"{option}: {exc}") from None


def _safe(value: str) -> Text:
    """Recorded text as inert text: no rich markup, no terminal control or format characters."""
    return Text(printable(value))


def _ts(value: float | None) -> str:
    if value is None:
        return "-"
    return datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%d %H:%M:%S")


def render_session_list(rows: list[dict[str, Any]], console: Console | None = None) -> None:
    console = console or terminal_console()
    if not rows:
        console.print("no recorded sessions match")
        return
    table = Table()
    for name in ("session", "started (UTC)", "identity", "connection"):
        table.add_column(name, no_wrap=True)
    table.add_column("stmts/ref/err", justify="right", no_wrap=True)
    table.add_column("ended", overflow="fold", min_width=14)
    for r in rows:
        counts = Text(f"{r['statements']}/")
        counts.append(str(r["refused"]), style="red" if r["refused"] else "")
        counts.append("/")
        counts.append(str(r["errors"]), style="yellow" if r["errors"] else "")
        # Recorded text is the client's: never let rich read it as markup.
        table.add_row(
            _safe(r["id"]),
            _ts(r["started_at"]),
            _safe(r["subject"]),
            _safe(r["connection"]),
            counts,
            _safe(r["end_reason"] or "(open)"),
        )
    console.print(table)


def _header(session: dict[str, Any]) -> Panel:
    groups = ", ".join(session["groups"]) or "-"
    lines = [
        f"session {session['id']}  ({session['instance']})",
        f"identity {session['subject']} from {session['issuer']}  groups: {groups}",
        f"connection {session['connection']} (database {session['database']}) as user {session['user_name']}",
        f"client {session['client_addr']}  application {session['application_name'] or '-'}  "
        f"tls {'yes' if session['tls'] else 'no'}",
        f"started {_ts(session['started_at'])}  ended {_ts(session['ended_at'])}  "
        f"{session['end_reason'] or '(still open or not closed cleanly)'}",
    ]
    return Panel(_safe("\n".join(lines)), title="pgwarden session", expand=False)


def _statement(console: Console, st: dict[str, Any], start: float) -> None:
    offset = st["started_at"] - start
    action = st["action"] or "-"
    head = Text(f"+{offset:8.3f}s  #{st['seq']}  ")
    head.append(action, style=_ACTION_STYLE.get(action, ""))
    if not st["forwarded"]:
        head.append("  (not forwarded)", style="red")
    head.append(f"  {st['protocol']}  {st['duration_ms']:.1f} ms")
    if st["decision_id"]:
        head.append(f"  decision {st['decision_id']}", style="dim")
    console.print(head)
    console.print(
        Syntax(_safe(st["sql"]).plain, "sql", theme="ansi_dark", word_wrap=True, background_color="default")
    )
    if st["reasons"]:
        console.print(_safe("  reasons: " + "; ".join(st["reasons"])), style="dim")
    if st.get("masked"):
        console.print(_safe("  masked: " + ", ".join(st["masked"])), style="yellow")
    if st["columns"] is not None and st["result_rows"] is not None:
        table = Table(show_lines=False)
        for name in st["columns"]:
            table.add_column(_safe(name))
        for row in st["result_rows"]:
            table.add_row(*(Text("NULL", style="dim") if v is None else _safe(v) for v in row))
        console.print(table)
        if st["rows_truncated"]:
            console.print(Text("  (recording of the rows stopped at the configured limit)", style="dim"))
    if st["error_sqlstate"] or st["error_message"]:
        code = f"{st['error_sqlstate']} " if st["error_sqlstate"] else ""
        console.print(_safe(f"  ERROR {code}{st['error_message']}"), style="red")
    elif st["command_tag"]:
        console.print(_safe(f"  {st['command_tag']}"), style="cyan")


def render_session(
    session: dict[str, Any],
    statements: list[dict[str, Any]],
    *,
    speed: float | None,
    console: Console | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Print a session; with ``speed`` set, wait between statements as recorded, divided by speed
    (0 means as fast as possible), each pause capped at :data:`MAX_PAUSE`."""
    console = console or terminal_console()
    console.print(_header(session))
    start = session["started_at"]
    previous = start
    for st in statements:
        if speed:
            gap = max(st["started_at"] - previous, 0.0) / speed
            if gap > 0:
                sleep(min(gap, MAX_PAUSE))
        previous = st["started_at"]
        _statement(console, st, start)
    console.print(Text(f"{len(statements)} statement(s)", style="dim"))
