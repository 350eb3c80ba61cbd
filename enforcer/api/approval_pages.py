"""The approver's HTML pages: requests awaiting a decision (kept live), and one request with its history.

Owns: the markup of approval requests (rendered on the server, SQL highlighted there) and the
small inline script that posts decisions to the JSON API and refreshes the list every
:data:`POLL_MS` by fetching the rows again as server-rendered HTML (``/approvals/rows``).
Never: puts text from a request into a page unescaped (the SQL, identity, parameters and reasons
come from the client whose statement is held: attacker-controlled); the script never builds
markup from data, it only moves rows the server rendered and sets ``textContent``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from urllib.parse import quote, urlencode

from enforcer.api.approval_queries import DEFAULT_LIMIT, MAX_REASON_CHARS, ApprovalQuery
from enforcer.api.pages import Page, e, time_tag
from enforcer.api.sql_highlight import highlight_sql
from enforcer.approvals.store import APPROVABLE, STATES, ApprovalRequest

#: How often the list page fetches its rows again.
POLL_MS = 2000

#: ``(request) -> None`` if the viewer may decide it now, else why not (shown instead of buttons).
DecideCheck = Callable[[ApprovalRequest], str | None]

_STATE_NOTES = {
    "timed_out": "the client stopped waiting; approved, the identical statement runs once when re-sent",
    "abandoned": "the gateway restarted while the client waited; approved, it runs once when re-sent",
    "approved": "approved while nobody waited: the identical statement runs once when re-sent",
}

_SCRIPT = """
(function () {
  "use strict";
  var POLL_MS = __POLL_MS__;
  var meta = document.querySelector('meta[name="pgwarden-csrf"]');
  var csrf = meta ? meta.getAttribute("content") : "";
  var table = document.getElementById("approvals");
  var rows = document.getElementById("approval-rows");
  var live = document.getElementById("live-status");

  function setButtons(box, disabled) {
    Array.prototype.forEach.call(box.querySelectorAll("button"), function (b) { b.disabled = disabled; });
  }
  function say(box, text, refused) {
    var out = box.querySelector(".outcome");
    out.textContent = text;
    out.setAttribute("data-outcome", refused ? "refused" : "ok");
  }
  function decide(box, approve, reason) {
    var id = box.getAttribute("data-approval-id");
    setButtons(box, true);
    say(box, approve ? "approving ..." : "rejecting ...", false);
    fetch("/api/approvals/" + encodeURIComponent(id) + (approve ? "/approve" : "/reject"), {
      method: "POST",
      credentials: "same-origin",
      redirect: "error",
      headers: {"content-type": "application/json", "x-pgwarden-csrf": csrf},
      body: JSON.stringify({reason: reason})
    }).then(function (r) {
      return r.json().then(function (doc) { return {ok: r.ok, doc: doc}; });
    }).then(function (res) {
      if (!res.ok) {
        say(box, res.doc.error || "refused", true);
        setButtons(box, false);
        return;
      }
      if (!table) { window.location.reload(); return; }
      var row = box.closest("tr");
      row.setAttribute("data-decided", res.doc.state);
      row.setAttribute("data-state", res.doc.state);
      row.querySelector('[data-live="state"]').textContent = res.doc.state + " by " + res.doc.decided_by;
      Array.prototype.forEach.call(box.querySelectorAll(".buttons, form"), function (el) { el.remove(); });
      say(box, res.doc.state + (res.doc.decision_reason ? ": " + res.doc.decision_reason : ""), false);
    }).catch(function (err) {
      say(box, "could not reach the gateway: " + err.message, true);
      setButtons(box, false);
    });
  }

  document.addEventListener("click", function (ev) {
    var button = ev.target.closest("button[data-decide]");
    if (!button) { return; }
    var box = button.closest(".decide");
    var form = box.querySelector("form.reject-form");
    var what = button.getAttribute("data-decide");
    if (what === "approve") {
      decide(box, true, "");
    } else if (what === "reject") {
      form.hidden = false;
      form.querySelector("textarea").focus();
    } else if (what === "cancel") {
      form.hidden = true;
    }
  });
  document.addEventListener("submit", function (ev) {
    var form = ev.target.closest("form.reject-form");
    if (!form) { return; }
    ev.preventDefault();
    decide(form.closest(".decide"), false, form.querySelector("textarea").value);
  });

  if (!table) { return; }
  var polls = 0;
  function merge(html) {
    var tpl = document.createElement("template");
    tpl.innerHTML = html;  // rows rendered and escaped by the server, parsed inert
    var seen = {};
    var first = rows.querySelector("tr[data-approval-id]");
    Array.prototype.forEach.call(tpl.content.querySelectorAll("tr[data-approval-id]"), function (tr) {
      var id = tr.getAttribute("data-approval-id");
      seen[id] = true;
      var old = document.getElementById(tr.id);
      if (!old) {
        rows.insertBefore(tr, first);
      } else if (old.hasAttribute("data-decided")) {
        return;
      } else if (old.getAttribute("data-state") !== tr.getAttribute("data-state")) {
        rows.replaceChild(tr, old);
      } else {
        // Same state: refresh the times only, so an open reject form keeps what was typed.
        Array.prototype.forEach.call(tr.querySelectorAll("[data-live]"), function (cell) {
          var mine = old.querySelector('[data-live="' + cell.getAttribute("data-live") + '"]');
          if (mine) { mine.replaceWith(cell); }
        });
      }
    });
    Array.prototype.forEach.call(rows.querySelectorAll("tr[data-approval-id]"), function (tr) {
      if (!seen[tr.getAttribute("data-approval-id")] && !tr.hasAttribute("data-decided")) { tr.remove(); }
    });
    document.getElementById("no-approvals").hidden = rows.querySelector("tr[data-approval-id]") !== null;
  }
  function poll() {
    var query = table.getAttribute("data-query");
    fetch("/approvals/rows" + (query ? "?" + query : ""), {credentials: "same-origin", redirect: "error"})
      .then(function (r) {
        if (!r.ok) {
          throw new Error(r.status === 401 ? "signed out; reload the page to sign in" : "HTTP " + r.status);
        }
        return r.text();
      })
      .then(function (html) {
        merge(html);
        polls += 1;
        live.setAttribute("data-polls", String(polls));
        live.setAttribute("data-live-state", "ok");
        live.textContent = "updated " + new Date().toLocaleTimeString();
      })
      .catch(function (err) {
        live.setAttribute("data-live-state", "failed");
        live.textContent = "not updating: " + err.message;
      })
      .then(function () { setTimeout(poll, POLL_MS); });
  }
  setTimeout(poll, POLL_MS);
})();
""".replace("__POLL_MS__", str(POLL_MS))


def _span(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{int(seconds)} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min"
    hours, rest = divmod(int(seconds), 3600)
    return f"{hours} h {rest // 60} min" if rest >= 60 else f"{hours} h"


def _params(params: Sequence[str | None] | None) -> str:
    if not params:
        return ""
    shown = ", ".join(f"${i} = {'NULL' if v is None else json.dumps(v)}" for i, v in enumerate(params, 1))
    return f'<div class="params muted">parameters: <code>{e(shown)}</code></div>'


def _reasons(reasons: Sequence[str]) -> str:
    if not reasons:
        return ""
    return '<ul class="reasons">' + "".join(f"<li>{e(r)}</li>" for r in reasons) + "</ul>"


def _state(req: ApprovalRequest, now: float) -> str:
    badge = f'<span class="badge state-{e(req.state)}">{e(req.state.replace("_", " "))}</span>'
    if req.state == "pending":
        note = f"client waiting {_span(req.wait_until - now)} more"
    elif req.state in ("approved", "executed", "rejected") and req.decided_by:
        note = f"by {req.decided_by}"
    else:
        note = _STATE_NOTES.get(req.state, "")
    return badge + (f'<div class="muted">{e(note)}</div>' if note else "")


def _expires(req: ApprovalRequest, now: float) -> str:
    if req.state not in (*APPROVABLE, "approved"):
        return ""
    left = req.expires_at - now
    return f"in {_span(left)}" if left > 0 else "expired"


def _actions(req: ApprovalRequest, why_not: str | None) -> str:
    if req.state not in APPROVABLE:
        return ""
    if why_not is not None:
        return f'<span class="muted cannot-decide">{e(why_not)}</span>'
    return (
        f'<div class="decide" data-approval-id="{e(req.id)}">'
        '<div class="buttons">'
        '<button type="button" class="approve" data-decide="approve">Approve</button>'
        '<button type="button" class="reject" data-decide="reject">Reject ...</button></div>'
        '<form class="reject-form" hidden>'
        "<label>Reason (the requester sees it)"
        f'<textarea name="reason" rows="2" maxlength="{MAX_REASON_CHARS}" required></textarea></label>'
        '<div class="buttons"><button type="submit" class="reject">Reject</button>'
        '<button type="button" data-decide="cancel">Cancel</button></div></form>'
        '<p class="outcome" role="status"></p></div>'
    )


def _href(req: ApprovalRequest) -> str:
    return f"/approvals/{quote(req.id, safe='')}"


def approval_rows(requests: Sequence[ApprovalRequest], why_not: DecideCheck, *, now: float) -> str:
    """One ``<tr>`` per request; the page and its live refresh (``/approvals/rows``) both use this."""
    out = []
    for req in requests:
        out.append(
            f'<tr id="approval-{e(req.id)}" data-approval-id="{e(req.id)}" data-state="{e(req.state)}">'
            f'<td><a href="{e(_href(req))}"><code>{e(req.id)}</code></a></td>'
            f'<td data-live="age">{e(_span(now - req.created_at))}</td>'
            f'<td class="identity">{e(req.subject)}</td>'
            f"<td>{e(req.connection)}</td>"
            f'<td class="sql-cell"><pre class="sql"><code>{highlight_sql(req.sql)}</code></pre>'
            f"{_params(req.params)}</td>"
            f"<td>{_reasons(req.reasons)}</td>"
            f'<td data-live="expires">{e(_expires(req, now))}</td>'
            f'<td data-live="state">{_state(req, now)}</td>'
            f'<td class="actions">{_actions(req, why_not(req))}</td></tr>'
        )
    return "".join(out)


def _state_options(query: ApprovalQuery) -> str:
    current = query.as_params().get("state", "")
    choices = [("", "awaiting a decision"), ("all", "all"), *((s, s.replace("_", " ")) for s in STATES)]
    return "".join(
        f'<option value="{e(value)}"{" selected" if value == current else ""}>{e(label)}</option>'
        for value, label in choices
    )


def approvals_page(
    requests: Sequence[ApprovalRequest], why_not: DecideCheck, *, query: ApprovalQuery, now: float
) -> Page:
    params = query.as_params()
    limit = (
        f'<input type="hidden" name="limit" value="{e(query.limit)}">' if query.limit != DEFAULT_LIMIT else ""
    )
    form = (
        '<form class="filters" method="get" action="/approvals" id="approval-filters">'
        f'<label>state<select name="state" id="filter-state">{_state_options(query)}</select></label>{limit}'
        '<button type="submit">Show</button></form>'
    )
    empty = (
        f'<tr id="no-approvals"{" hidden" if requests else ""}><td colspan="9" class="muted">'
        "No requests that you may see are in these states.</td></tr>"
    )
    table = (
        f'<table class="approvals" id="approvals" data-query="{e(urlencode(params))}">'
        "<thead><tr><th>request</th><th>age</th><th>identity</th><th>connection</th><th>statement</th>"
        "<th>reasons</th><th>expires</th><th>state</th><th>decision</th></tr></thead>"
        f'<tbody id="approval-rows">{empty}{approval_rows(requests, why_not, now=now)}</tbody></table>'
    )
    live = (
        '<p class="muted">Updates every '
        f'{POLL_MS // 1000} s: <span id="live-status" data-polls="0" aria-live="polite">live</span></p>'
    )
    return Page("Approvals", f"<h1>Approval requests</h1>{form}{live}{table}", script=_SCRIPT, fetches=True)


def approval_page(req: ApprovalRequest, why_not: str | None, *, now: float, auditor: bool) -> Page:
    """One request: what was held, why, for whom, and what became of it."""
    session = e(req.session_id)
    if auditor and req.session_id:
        session = f'<a href="/sessions/{e(quote(req.session_id, safe=""))}">{session}</a>'
    facts = [
        ("state", f'<span id="approval-state">{_state(req, now)}</span>'),
        ("identity", f'<span id="approval-identity">{e(req.subject)}</span> ({e(req.issuer)})'),
        ("groups", e(", ".join(req.groups))),
        ("connection", e(req.connection)),
        ("session", session),
        ("protocol", e(req.protocol)),
        ("may be decided by", e(", ".join(req.approvers) or "(no approver group named by the policy)")),
        ("requested", f"{time_tag(req.created_at)} ({e(_span(now - req.created_at))} ago)"),
        ("client waits until", time_tag(req.wait_until)),
        ("expires", f"{time_tag(req.expires_at)} {e(_expires(req, now))}"),
        ("decided by", f'<span id="approval-decided-by">{e(req.decided_by)}</span>'),
        ("decided", time_tag(req.decided_at)),
        ("decision reason", f'<span id="approval-decision-reason">{e(req.decision_reason)}</span>'),
        ("executed", f'<span id="approval-executed-at">{time_tag(req.executed_at)}</span>'),
        ("gateway instance", e(req.instance)),
        ("decision", f"<code>{e(req.decision_id)}</code>" if req.decision_id else ""),
    ]
    dl = '<dl class="session">' + "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in facts) + "</dl>"
    why = _reasons(req.reasons) or '<p class="muted">(the policy gave no reason)</p>'
    body = (
        f"<h1>Approval {e(req.id)}</h1>"
        f'<section id="approval" data-approval-id="{e(req.id)}" data-state="{e(req.state)}">{dl}'
        f'<h2>Statement</h2><pre class="sql"><code>{highlight_sql(req.sql)}</code></pre>{_params(req.params)}'
        f"<h2>Why it is held</h2>{why}"
        f"{_actions(req, why_not)}</section>"
        '<p><a href="/approvals">All requests awaiting a decision</a></p>'
    )
    return Page(f"Approval {req.id}", body, script=_SCRIPT, fetches=True)
