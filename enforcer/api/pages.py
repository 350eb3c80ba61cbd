"""The HTML frame and the auditor's pages: sign-in, the list of recorded sessions, one session with replay.

Owns: the document frame every page shares (header, navigation, style, CSRF meta tag), the
session pages' markup and the replay script (no build step, no external assets: everything
is in the page, allowed by a per-response CSP nonce). The approval pages are in approval_pages.
Never: puts text from the store or the request into a page without escaping it; recorded
SQL, identities, application names and error messages are attacker-controlled.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from enforcer.api.sql_highlight import highlight_sql
from enforcer.identity.model import Identity


@dataclass(frozen=True)
class Page:
    """What a handler renders: the body markup (already escaped) and an optional inline script."""

    title: str
    body: str
    status: int = 200
    script: str = ""
    #: The script talks to this server (fetch): the CSP then allows ``connect-src 'self'``.
    fetches: bool = False


def e(value: object) -> str:
    """HTML-escaped text, safe in element content and in quoted attribute values."""
    return html.escape("" if value is None else str(value), quote=True)


def fmt_time(ts: float | None) -> str:
    if ts is None:
        return ""
    when = datetime.fromtimestamp(ts, UTC)
    return when.strftime("%Y-%m-%d %H:%M:%S") + f".{when.microsecond // 1000:03d}Z"


def time_tag(ts: float | None) -> str:
    if ts is None:
        return ""
    iso = datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")
    return f'<time datetime="{e(iso)}">{e(fmt_time(ts))}</time>'


def _duration_ms(ms: float | None) -> str:
    if ms is None:
        return ""
    return f"{ms / 1000:.2f} s" if ms >= 1000 else f"{ms:.1f} ms"


_STYLE = """
:root { --fg: #1d232b; --muted: #5d6b7a; --line: #d8dee6; --bg: #f6f8fa; --accent: #0b5cad; }
* { box-sizing: border-box; }
[hidden] { display: none !important; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--fg); }
header { display: flex; align-items: center; gap: 1rem; padding: .6rem 1.2rem;
  background: #14202e; color: #fff; }
header a { color: #fff; text-decoration: none; font-weight: 600; }
header .who { margin-left: auto; color: #c9d4df; }
header form { display: inline; }
main { padding: 1rem 1.2rem 3rem; max-width: 1400px; }
h1 { font-size: 1.3rem; margin: .2rem 0 1rem; }
a { color: var(--accent); }
table { border-collapse: collapse; }
th, td { border-bottom: 1px solid var(--line); padding: .3rem .55rem; text-align: left; vertical-align: top; }
th { background: var(--bg); font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
.notice { padding: .7rem 1rem; background: #fff6dd; border: 1px solid #e8d38a; border-radius: 4px; }
.error-box { padding: .7rem 1rem; background: #fdecec; border: 1px solid #e9a5a5; border-radius: 4px; }
form.filters { display: flex; gap: .8rem; align-items: end; flex-wrap: wrap; margin-bottom: 1rem; }
form.filters label { display: flex; flex-direction: column; font-size: .85rem; color: var(--muted); }
input, select, button, textarea { font: inherit; }
textarea { width: 100%; font-family: ui-monospace, monospace; }
button { cursor: pointer; padding: .25rem .8rem; }
dl.session { display: grid; grid-template-columns: max-content 1fr; gap: .2rem 1rem; margin: 0 0 1rem; }
dl.session dt { color: var(--muted); }
dl.session dd { margin: 0; }
.replay { display: flex; gap: .6rem; align-items: center; padding: .6rem; background: var(--bg);
  border: 1px solid var(--line); border-radius: 4px; margin-bottom: 1rem; }
ol.statements { list-style: none; padding: 0; margin: 0; }
li.stmt { border: 1px solid var(--line); border-left: 4px solid #6aa84f; border-radius: 4px;
  padding: .5rem .8rem; margin-bottom: .6rem; }
li.stmt.refused { border-left-color: #c0392b; }
li.stmt.failed { border-left-color: #e69138; }
.stmt-head { display: flex; gap: .7rem; align-items: baseline; flex-wrap: wrap; color: var(--muted); }
.stmt-head .seq { font-weight: 700; color: var(--fg); }
.badge { display: inline-block; padding: 0 .45rem; border-radius: 3px; font-size: .8rem; font-weight: 600;
  color: #fff; background: #777; }
.badge.action-allow { background: #3d8b37; }
.badge.action-deny { background: #c0392b; }
.badge.action-mask { background: #7e57c2; }
.badge.action-review { background: #e69138; }
.badge.refused { background: #8e1b10; }
pre.sql { margin: .4rem 0; padding: .5rem .7rem; background: var(--bg); border-radius: 3px;
  white-space: pre-wrap; word-break: break-word; font: 13px/1.4 ui-monospace, SFMono-Regular, monospace; }
.sql-keyword { color: #0033b3; font-weight: 600; }
.sql-string { color: #067d17; }
.sql-number { color: #1750eb; }
.sql-comment { color: #8c8c8c; font-style: italic; }
.sql-ident { color: #871094; }
.sql-param { color: #b35900; }
ul.reasons { margin: .2rem 0; padding-left: 1.2rem; }
.stmt .error { color: #a61b1b; }
table.result { margin: .4rem 0; font: 12px/1.35 ui-monospace, monospace; }
td.null { color: var(--muted); font-style: italic; }
.muted { color: var(--muted); }
.badge.state-pending, .badge.state-timed_out, .badge.state-abandoned { background: #e69138; }
.badge.state-approved, .badge.state-executed { background: #3d8b37; }
.badge.state-rejected { background: #c0392b; }
table.approvals td.sql-cell { max-width: 42rem; }
table.approvals pre.sql { margin: 0; }
.decide { display: flex; flex-direction: column; gap: .3rem; min-width: 12rem; }
.decide .buttons { display: flex; gap: .4rem; }
button.approve { background: #3d8b37; color: #fff; border: 1px solid #2f6d2a; border-radius: 3px; }
button.reject { background: #fff; color: #a61b1b; border: 1px solid #c0392b; border-radius: 3px; }
.reject-form textarea { font-family: inherit; }
.outcome { margin: 0; }
.outcome[data-outcome="refused"] { color: #a61b1b; }
"""

# Statements stay visible without JavaScript; the script only hides and re-reveals them.
_REPLAY_SCRIPT = """
(function () {
  "use strict";
  var list = document.getElementById("statements");
  var items = Array.prototype.slice.call(list.querySelectorAll("[data-statement-seq]"));
  var speed = document.getElementById("replay-speed");
  var status = document.getElementById("replay-status");
  var timer = null;
  var run = 0;
  function showAll(state) {
    run += 1;
    clearTimeout(timer);
    items.forEach(function (el) { el.hidden = false; });
    list.setAttribute("data-replay-state", state);
  }
  function play() {
    run += 1;
    clearTimeout(timer);
    var mine = run;
    var factor = speed.value === "max" ? 0 : 1 / Number(speed.value);
    items.forEach(function (el) { el.hidden = true; el.removeAttribute("data-replay-index"); });
    list.setAttribute("data-replay-state", "playing");
    var i = 0;
    function step() {
      if (mine !== run) { return; }
      var el = items[i];
      el.hidden = false;
      el.setAttribute("data-replay-index", String(i));
      if (factor !== 0) { el.scrollIntoView({block: "nearest"}); }
      i += 1;
      if (i >= items.length) {
        status.textContent = "replayed " + items.length + " statement(s)";
        list.setAttribute("data-replay-state", "done");
        return;
      }
      var gap = (Number(items[i].dataset.startedAt) - Number(items[i - 1].dataset.startedAt)) * 1000 * factor;
      gap = Math.max(0, gap || 0);
      status.textContent = "statement " + i + " of " + items.length +
        (gap >= 1000 ? "; next in " + (gap / 1000).toFixed(1) + " s" : "");
      timer = setTimeout(step, gap);
    }
    if (items.length === 0) { showAll("done"); return; }
    timer = setTimeout(step, 0);
  }
  document.getElementById("replay-start").addEventListener("click", play);
  document.getElementById("replay-stop").addEventListener("click", function () {
    showAll("stopped");
    status.textContent = "";
  });
})();
"""


def render(
    page: Page,
    *,
    nonce: str,
    viewer: Identity | None,
    csrf: str | None = None,
    approvals: bool = False,
) -> str:
    """The whole HTML document; ``nonce`` must match the response's Content-Security-Policy.

    ``csrf`` is the signed-in browser's CSRF token, for the scripts that post decisions;
    ``approvals`` adds the Approvals link to the navigation."""
    who = ""
    if viewer is not None:
        who = (
            f'<span class="who">signed in as <strong id="auditor">{e(viewer.subject)}</strong> '
            '<form method="post" action="/logout"><button type="submit">Sign out</button></form></span>'
        )
    script = f'<script nonce="{e(nonce)}">{page.script}</script>' if page.script else ""
    meta = f'<meta name="pgwarden-csrf" content="{e(csrf)}">' if csrf else ""
    nav = '<a href="/sessions">Sessions</a>' + ('<a href="/approvals">Approvals</a>' if approvals else "")
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"{meta}<title>{e(page.title)} · pgwarden</title>"
        f'<style nonce="{e(nonce)}">{_STYLE}</style></head>'
        f'<body><header><a href="/sessions">pgwarden</a>{nav}{who}</header>'
        f"<main>{page.body}</main>{script}</body></html>\n"
    )


def message_page(title: str, message: str, *, status: int, link: tuple[str, str] | None = None) -> Page:
    more = f'<p><a href="{e(link[0])}">{e(link[1])}</a></p>' if link else ""
    box = "error-box" if status >= 400 else "notice"
    return Page(
        title, f'<h1>{e(title)}</h1><p class="{box}" id="message">{e(message)}</p>{more}', status=status
    )


def login_page(*, next_path: str, message: str | None, status: int = 200, approvals: bool = False) -> Page:
    note = f'<p class="error-box" id="login-message">{e(message)}</p>' if message else ""
    who = (
        "an identity in an auditor group (recorded sessions) or in a group that may approve "
        "held statements (approval requests)"
        if approvals
        else "an identity in an auditor group"
    )
    body = (
        "<h1>Sign in</h1>"
        f"{note}"
        f"<p>Paste a token of {who}: a gateway token from "
        "<code>pgwarden token issue</code> or a token from a trusted identity provider. "
        "It is kept in an HttpOnly cookie until it expires.</p>"
        '<form method="post" action="/login" id="login-form">'
        f'<input type="hidden" name="next" value="{e(next_path)}">'
        '<p><label for="token">Token</label><br>'
        '<textarea id="token" name="token" rows="5" required autocomplete="off" spellcheck="false">'
        "</textarea></p>"
        '<p><button type="submit" id="login-submit">Sign in</button></p></form>'
    )
    return Page("Sign in", body, status=status)


_OUTCOME_LABELS = (("", "any"), ("ok", "ok"), ("refused", "refused"), ("error", "error"))


def sessions_page(sessions: Sequence[Mapping[str, Any]], filters: Mapping[str, str]) -> Page:
    options = "".join(
        f'<option value="{e(value)}"{" selected" if filters.get("outcome", "") == value else ""}>'
        f"{e(label)}</option>"
        for value, label in _OUTCOME_LABELS
    )
    form = (
        '<form class="filters" method="get" action="/sessions" id="filters">'
        '<label>identity<input name="identity" id="filter-identity" '
        f'value="{e(filters.get("identity", ""))}"></label>'
        '<label>connection<input name="connection" id="filter-connection" '
        f'value="{e(filters.get("connection", ""))}"></label>'
        f'<label>outcome<select name="outcome" id="filter-outcome">{options}</select></label>'
        '<button type="submit">Filter</button> <a href="/sessions">clear</a></form>'
    )
    rows = []
    for s in sessions:
        sid = str(s["id"])
        ended = e(s.get("end_reason") or "") if s.get("ended_at") is not None else "in progress"
        client = s.get("client_addr") or ""
        rows.append(
            f'<tr data-session-id="{e(sid)}">'
            f'<td><a href="/sessions/{e(quote(sid, safe=""))}">{time_tag(s.get("started_at"))}</a></td>'
            f'<td class="identity">{e(s.get("subject"))}</td>'
            f"<td>{e(s.get('connection'))}</td>"
            f"<td>{e(client)}{' (TLS)' if s.get('tls') else ''}</td>"
            f"<td>{e(s.get('application_name'))}</td>"
            f'<td class="num">{e(s.get("statements", 0))}</td>'
            f'<td class="num">{e(s.get("refused", 0))}</td>'
            f'<td class="num">{e(s.get("errors", 0))}</td>'
            f"<td>{ended}</td></tr>"
        )
    if not rows:
        rows.append('<tr><td colspan="9" class="muted" id="no-sessions">No sessions match.</td></tr>')
    table = (
        '<table id="sessions"><thead><tr><th>started (UTC)</th><th>identity</th><th>connection</th>'
        '<th>client</th><th>app</th><th class="num">statements</th><th class="num">refused</th>'
        '<th class="num">errors</th><th>end reason</th></tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )
    return Page("Sessions", f"<h1>Recorded sessions</h1>{form}{table}")


def session_page(
    session: Mapping[str, Any],
    statements: Sequence[Mapping[str, Any]],
    *,
    page: int = 1,
    per_page: int = 1000,
) -> Page:
    """The session and one page of its statements (a long session would not fit a browser at once)."""
    total = len(statements)
    pages = max(1, -(-total // per_page))
    statements = statements[(page - 1) * per_page : page * per_page]
    groups = ", ".join(str(g) for g in session.get("groups") or [])
    ended = (
        f"{time_tag(session.get('ended_at'))} ({e(session.get('end_reason') or '')})"
        if session.get("ended_at") is not None
        else "in progress"
    )
    facts = [
        ("session", f"<code>{e(session['id'])}</code>"),
        ("identity", f'<span id="session-identity">{e(session.get("subject"))}</span>'),
        ("issuer", e(session.get("issuer"))),
        ("groups", e(groups)),
        ("connection", f"{e(session.get('connection'))} (database {e(session.get('database'))})"),
        ("upstream user", e(session.get("user_name"))),
        ("client", f"{e(session.get('client_addr'))}{' over TLS' if session.get('tls') else ''}"),
        ("application", e(session.get("application_name"))),
        ("gateway instance", e(session.get("instance"))),
        ("started", time_tag(session.get("started_at"))),
        ("ended", ended),
    ]
    dl = '<dl class="session">' + "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in facts) + "</dl>"
    replay = (
        '<div class="replay" id="replay">'
        '<label for="replay-speed">Replay at</label>'
        '<select id="replay-speed"><option value="1">1x</option><option value="10">10x</option>'
        '<option value="max">max</option></select>'
        '<button type="button" id="replay-start">Replay</button>'
        '<button type="button" id="replay-stop">Show all</button>'
        '<span id="replay-status" class="muted" aria-live="polite"></span></div>'
    )
    first = statements[0]["started_at"] if statements else None
    items = "".join(_statement(s, first) for s in statements)
    if not statements:
        items = '<li class="muted" id="no-statements">No statements were recorded in this session.</li>'
    heading = f"Statements ({total})"
    nav = ""
    if pages > 1:
        lo = (page - 1) * per_page + 1
        heading = f"Statements {lo} to {lo + len(statements) - 1} of {total}"
        here = f"/sessions/{e(quote(str(session['id']), safe=''))}"
        links = []
        if page > 1:
            links.append(f'<a id="page-previous" href="{here}?page={page - 1}">previous page</a>')
        if page < pages:
            links.append(f'<a id="page-next" href="{here}?page={page + 1}">next page</a>')
        nav = f'<p class="pages">page {page} of {pages}: {" · ".join(links)}</p>'
    body = (
        f"<h1>Session {e(str(session['id'])[:8])}</h1>{dl}"
        f"<h2>{e(heading)}</h2>{nav}{replay}"
        f'<ol class="statements" id="statements" data-replay-state="idle">{items}</ol>{nav}'
    )
    return Page(f"Session {str(session['id'])[:8]}", body, script=_REPLAY_SCRIPT)


def _statement(s: Mapping[str, Any], first: float | None) -> str:
    seq = int(s["seq"])
    started = s.get("started_at")
    offset = ""
    if started is not None and first is not None:
        offset = f'<span class="offset">+{started - first:.3f} s</span>'
    action = str(s.get("action") or "")
    forwarded = bool(s.get("forwarded"))
    failed = bool(s.get("error_sqlstate")) and forwarded
    classes = "stmt" + ("" if forwarded else " refused") + (" failed" if failed else "")
    head = [
        f'<span class="seq">#{seq}</span>',
        time_tag(started),
        offset,
        f'<span class="badge action-{e(action or "none")}" data-role="action">'
        f"{e(action or 'no decision')}</span>",
    ]
    if not forwarded:
        head.append('<span class="badge refused">not forwarded</span>')
    head.append(f'<span class="duration">{e(_duration_ms(s.get("duration_ms")))}</span>')
    if s.get("command_tag"):
        head.append(f'<span class="command-tag"><code>{e(s["command_tag"])}</code></span>')
    if s.get("rows") is not None:
        head.append(f'<span class="rows">{e(s["rows"])} row(s)</span>')
    if s.get("protocol"):
        head.append(f'<span class="protocol">{e(s["protocol"])} protocol</span>')
    parts = [f'<div class="stmt-head">{" ".join(p for p in head if p)}</div>']
    parts.append(f'<pre class="sql"><code>{highlight_sql(str(s.get("sql") or ""))}</code></pre>')
    params = s.get("params")
    if params:
        shown = ", ".join(f"${i} = {'NULL' if v is None else json.dumps(v)}" for i, v in enumerate(params, 1))
        parts.append(f'<div class="params muted">parameters: <code>{e(shown)}</code></div>')
    reasons = s.get("reasons") or []
    if reasons:
        parts.append('<ul class="reasons">' + "".join(f"<li>{e(r)}</li>" for r in reasons) + "</ul>")
    masked = s.get("masked") or []
    if masked:
        parts.append(f'<p class="muted masked">masked: {e(", ".join(masked))}</p>')
    if s.get("error_sqlstate") or s.get("error_message"):
        parts.append(
            f'<div class="error"><code>{e(s.get("error_sqlstate"))}</code> {e(s.get("error_message"))}</div>'
        )
    parts.append(_result_table(s))
    if s.get("decision_id"):
        parts.append(f'<div class="muted decision-id">decision <code>{e(s["decision_id"])}</code></div>')
    return (
        f'<li class="{classes}" id="stmt-{seq}" data-statement-seq="{seq}" '
        f'data-started-at="{e(started if started is not None else "")}" data-action="{e(action)}">'
        f"{''.join(parts)}</li>"
    )


def _result_table(s: Mapping[str, Any]) -> str:
    columns = s.get("columns")
    rows = s.get("result_rows")
    if not columns and not rows:
        return ""
    head = "".join(f"<th>{e(c)}</th>" for c in columns or [])
    body = "".join(
        "<tr>"
        + "".join('<td class="null">NULL</td>' if v is None else f"<td>{e(v)}</td>" for v in row)
        + "</tr>"
        for row in rows or []
    )
    note = '<p class="muted truncated">(result truncated)</p>' if s.get("rows_truncated") else ""
    return f'<table class="result"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{note}'
