"""Approval requests over HTTP: a real ApprovalService over a real SQLite store, real gateway tokens.

Who may see a request (its approvers, auditors), who may decide it (whom the service's
approver check admits: four eyes, approver groups), the decision body, cross-site refusals
for cookie-authenticated posts, and the pages.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.exceptions import StarletteDeprecationWarning

from enforcer.api.app import close_app, create_app
from enforcer.api.auth import COOKIE, CSRF_HEADER
from enforcer.approvals.service import ApprovalService
from enforcer.approvals.store import ApprovalStore
from tests.unit.api.conftest import Auth
from tests.unit.api.held import SCRIPT_SQL, held

with warnings.catch_warnings():
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient

DBA = ("dora", ("dba",))
AUDITOR = ("audrey", ("auditors",))
SECURITY = ("sam", ("security",))
AGENT = ("ci-bot", ("agents",))


@pytest.fixture
def client(store_url: str, auth: Auth, approvals: ApprovalService) -> Iterator[TestClient]:
    app = create_app(
        store_url=store_url,
        authenticator=auth.authenticator,
        auditor_groups=("auditors",),
        approvals=approvals,
    )
    with TestClient(app) as c:
        yield c
    close_app(app)


def as_(auth: Auth, who: tuple[str, tuple[str, ...]]) -> dict[str, str]:
    return {"Authorization": f"Bearer {auth.token(*who)}"}


def ids(response: Any) -> list[str]:
    assert response.status_code == 200, response.text
    return [d["id"] for d in response.json()]


# ---------------------------------------------------------------------------- seeing


def test_approvers_see_their_requests_and_auditors_see_all(
    client: TestClient, auth: Auth, approval_store: ApprovalStore
) -> None:
    for_dba = held(approval_store, approvers=["dba", "leads"], age=30)
    for_security = held(approval_store, approvers=["security"], age=10)
    assert ids(client.get("/api/approvals", headers=as_(auth, DBA))) == [for_dba.id]
    assert ids(client.get("/api/approvals", headers=as_(auth, SECURITY))) == [for_security.id]
    assert ids(client.get("/api/approvals", headers=as_(auth, AUDITOR))) == [for_security.id, for_dba.id]
    # The requester is in no approver group, but sees their own requests (the timeout error
    # points them to `pgwarden approvals show`); deciding them stays impossible (four eyes).
    assert ids(client.get("/api/approvals", headers=as_(auth, AGENT))) == [for_security.id, for_dba.id]

    doc = client.get(f"/api/approvals/{for_dba.id}", headers=as_(auth, DBA)).json()
    assert doc == for_dba.to_document()
    assert "binding" not in doc and doc["params"] == ["x@example.com", "7"]
    assert client.get(f"/api/approvals/{for_dba.id}", headers=as_(auth, AUDITOR)).status_code == 200
    r = client.get(f"/api/approvals/{for_dba.id}", headers=as_(auth, SECURITY))
    assert r.status_code == 403
    assert r.json()["error"] == (
        f"sam may not see {for_dba.id}: only its requester, its approvers (dba, leads) "
        "and auditors (auditors) may"
    )
    r = client.get("/api/approvals/apr_000000000000", headers=as_(auth, AUDITOR))
    assert r.status_code == 404 and r.json() == {"error": "no approval request apr_000000000000"}


def test_states_default_to_those_awaiting_a_decision(
    client: TestClient, auth: Auth, approval_store: ApprovalStore
) -> None:
    states = ["pending", "timed_out", "abandoned", "approved", "executed", "rejected", "withdrawn", "expired"]
    by_state = {s: held(approval_store, state=s, age=100 - i).id for i, s in enumerate(states)}
    headers = as_(auth, DBA)
    newest_first = [by_state[s] for s in reversed(states)]
    assert ids(client.get("/api/approvals", headers=headers)) == [
        by_state["abandoned"],
        by_state["timed_out"],
        by_state["pending"],
    ]
    assert ids(client.get("/api/approvals?state=all", headers=headers)) == newest_first
    assert ids(client.get("/api/approvals?state=rejected", headers=headers)) == [by_state["rejected"]]
    assert ids(client.get("/api/approvals?state=approved,executed", headers=headers)) == [
        by_state["executed"],
        by_state["approved"],
    ]
    assert ids(client.get("/api/approvals?state=all&limit=2", headers=headers)) == newest_first[:2]


@pytest.mark.parametrize(
    "query,parameter",
    [("state=done", "state"), ("state=pending,nope", "state"), ("limit=0", "limit"), ("sate=all", "sate")],
)
def test_bad_query_parameters_are_400(client: TestClient, auth: Auth, query: str, parameter: str) -> None:
    r = client.get(f"/api/approvals?{query}", headers=as_(auth, DBA))
    assert r.status_code == 400
    assert r.json()["parameter"] == parameter and r.json()["error"].startswith(f"{parameter}:")


def test_without_a_token_is_401(client: TestClient, approval_store: ApprovalStore) -> None:
    req = held(approval_store)
    for method, path in [
        ("GET", "/api/approvals"),
        ("GET", f"/api/approvals/{req.id}"),
        ("POST", f"/api/approvals/{req.id}/approve"),
    ]:
        r = client.request(method, path)
        assert r.status_code == 401 and "Bearer" in r.headers["www-authenticate"], path
    assert approval_store.get(req.id).state == "pending"  # type: ignore[union-attr]


# ---------------------------------------------------------------------------- deciding


def test_approve(client: TestClient, auth: Auth, approval_store: ApprovalStore) -> None:
    req = held(approval_store)
    r = client.post(
        f"/api/approvals/{req.id}/approve", json={"reason": "  checked the ticket "}, headers=as_(auth, DBA)
    )
    assert r.status_code == 200, r.text
    doc = r.json()
    assert (doc["id"], doc["state"], doc["decided_by"], doc["decision_reason"]) == (
        req.id,
        "approved",
        "dora",
        "checked the ticket",
    )
    stored = approval_store.get(req.id)
    assert stored is not None and stored.state == "approved" and stored.decided_by == "dora"
    assert doc == stored.to_document()


def test_approve_needs_no_body(client: TestClient, auth: Auth, approval_store: ApprovalStore) -> None:
    req = held(approval_store)
    r = client.post(f"/api/approvals/{req.id}/approve", headers=as_(auth, DBA))
    assert r.status_code == 200 and r.json()["decision_reason"] == ""


def test_reject_needs_a_reason(client: TestClient, auth: Auth, approval_store: ApprovalStore) -> None:
    req = held(approval_store)
    for body in ({}, {"reason": ""}, {"reason": "   "}, {"reason": None}):
        r = client.post(f"/api/approvals/{req.id}/reject", json=body, headers=as_(auth, DBA))
        assert r.status_code == 400, body
        assert r.json() == {
            "error": "reason: required to reject; the requester sees it in the error",
            "parameter": "reason",
        }
    assert approval_store.get(req.id).state == "pending"  # type: ignore[union-attr]
    r = client.post(
        f"/api/approvals/{req.id}/reject", json={"reason": "use the batch job"}, headers=as_(auth, DBA)
    )
    assert r.status_code == 200
    assert (r.json()["state"], r.json()["decision_reason"]) == ("rejected", "use the batch job")
    assert approval_store.get(req.id).state == "rejected"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "body,status,fragment",
    [
        (b"reason=ok", 400, "body: expected JSON"),
        (b"[1]", 400, "body: expected a JSON object"),
        (b'{"reason": 5}', 400, "reason: expected a string, got int"),
        (b'{"reason": "ok", "approve": true}', 400, "approve: unknown field"),
        (b'{"reason": "' + b"x" * 1001 + b'"}', 400, "reason: at most 1000 characters, got 1001"),
        (b'{"reason": "a\\u0000b"}', 400, "reason: control characters are not allowed"),
        (b'{"reason": "' + b"x" * 20_000 + b'"}', 413, "over 16384 bytes"),
    ],
)
def test_bad_decision_bodies_are_refused(
    client: TestClient, auth: Auth, approval_store: ApprovalStore, body: bytes, status: int, fragment: str
) -> None:
    req = held(approval_store)
    r = client.post(
        f"/api/approvals/{req.id}/approve",
        content=body,
        headers={**as_(auth, DBA), "content-type": "application/json"},
    )
    assert r.status_code == status and fragment in r.json()["error"]
    assert approval_store.get(req.id).state == "pending"  # type: ignore[union-attr]


def test_a_reason_of_1000_characters_is_accepted(
    client: TestClient, auth: Auth, approval_store: ApprovalStore
) -> None:
    req = held(approval_store)
    r = client.post(f"/api/approvals/{req.id}/reject", json={"reason": "é" * 1000}, headers=as_(auth, DBA))
    assert r.status_code == 200 and r.json()["decision_reason"] == "é" * 1000


def test_four_eyes_nobody_decides_their_own_request(
    client: TestClient, auth: Auth, approval_store: ApprovalStore
) -> None:
    req = held(approval_store, subject="dora", approvers=["dba"])
    for verb, body in (("approve", {}), ("reject", {"reason": "never mind"})):
        r = client.post(f"/api/approvals/{req.id}/{verb}", json=body, headers=as_(auth, DBA))
        assert r.status_code == 403
        assert r.json() == {"error": f"dora requested {req.id} and cannot approve their own request"}
    assert approval_store.get(req.id).state == "pending"  # type: ignore[union-attr]


@pytest.mark.parametrize("who", [AUDITOR, SECURITY, AGENT], ids=["auditor", "other-group", "requester"])
def test_only_the_policys_approver_groups_decide(
    client: TestClient, auth: Auth, approval_store: ApprovalStore, who: tuple[str, tuple[str, ...]]
) -> None:
    req = held(approval_store, approvers=["dba"])
    r = client.post(f"/api/approvals/{req.id}/approve", json={}, headers=as_(auth, who))
    assert r.status_code == 403
    error = r.json()["error"]
    assert error.startswith(who[0]) and ("may decide" in error or "own request" in error)
    assert approval_store.get(req.id).state == "pending"  # type: ignore[union-attr]


def test_unknown_request_is_404(client: TestClient, auth: Auth) -> None:
    r = client.post("/api/approvals/apr_ffffffffffff/approve", json={}, headers=as_(auth, DBA))
    assert r.status_code == 404 and r.json() == {"error": "no approval request apr_ffffffffffff"}


def test_a_request_is_decided_once(client: TestClient, auth: Auth, approval_store: ApprovalStore) -> None:
    req = held(approval_store)
    assert client.post(f"/api/approvals/{req.id}/approve", headers=as_(auth, DBA)).status_code == 200
    second = ("leo", ("dba",))
    for verb in ("approve", "reject"):
        r = client.post(f"/api/approvals/{req.id}/{verb}", json={"reason": "late"}, headers=as_(auth, second))
        assert r.status_code == 409
        assert r.json() == {"error": f"approval {req.id} is approved, not pending"}
    stored = approval_store.get(req.id)
    assert stored is not None and stored.decided_by == "dora"


def test_timed_out_and_abandoned_requests_are_still_approvable(
    client: TestClient, auth: Auth, approval_store: ApprovalStore
) -> None:
    for state in ("timed_out", "abandoned"):
        req = held(approval_store, state=state)
        r = client.post(f"/api/approvals/{req.id}/approve", headers=as_(auth, DBA))
        assert r.status_code == 200 and r.json()["state"] == "approved", state


def test_an_expired_request_is_409(client: TestClient, auth: Auth, approval_store: ApprovalStore) -> None:
    req = held(approval_store, age=7200, wait=60, validity=3600)
    r = client.post(f"/api/approvals/{req.id}/approve", headers=as_(auth, DBA))
    assert r.status_code == 409 and r.json() == {"error": f"approval {req.id} has expired"}


# ---------------------------------------------------------------------------- cross-site


def _sign_in(client: TestClient, auth: Auth, who: tuple[str, tuple[str, ...]], next_path: str) -> str:
    r = client.post("/login", data={"token": auth.token(*who), "next": next_path}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == next_path
    page = client.get(next_path)
    assert page.status_code == 200
    m = re.search(r'<meta name="pgwarden-csrf" content="([0-9a-f]{64})">', page.text)
    assert m, "a signed-in page carries the CSRF token"
    return m.group(1)


def test_cookie_posts_need_the_pages_csrf_token_and_our_origin(
    client: TestClient, auth: Auth, approval_store: ApprovalStore
) -> None:
    req = held(approval_store)
    csrf = _sign_in(client, auth, DBA, "/approvals")
    url = f"/api/approvals/{req.id}/approve"
    for headers in (
        {},  # a forged form or fetch from another site has no token
        {CSRF_HEADER: "0" * 64},
        {CSRF_HEADER: csrf, "Origin": "https://evil.example"},
        {CSRF_HEADER: csrf, "Sec-Fetch-Site": "cross-site"},
    ):
        r = client.post(url, json={}, headers=headers)
        assert r.status_code == 403, headers
        assert "reload the page" in r.json()["error"]
    assert approval_store.get(req.id).state == "pending"  # type: ignore[union-attr]
    r = client.post(url, json={}, headers={CSRF_HEADER: csrf, "Origin": "http://testserver"})
    assert r.status_code == 200 and r.json()["decided_by"] == "dora"
    # GETs need no token: they change nothing.
    assert client.get(f"/api/approvals/{req.id}").status_code == 200


def test_the_csrf_token_belongs_to_the_cookie(
    client: TestClient, auth: Auth, approval_store: ApprovalStore
) -> None:
    req = held(approval_store)
    old = _sign_in(client, auth, DBA, "/approvals")
    _sign_in(client, auth, ("leo", ("dba",)), "/approvals")  # another sign-in, another cookie
    r = client.post(f"/api/approvals/{req.id}/approve", json={}, headers={CSRF_HEADER: old})
    assert r.status_code == 403


def test_bearer_posts_need_no_csrf_token(
    client: TestClient, auth: Auth, approval_store: ApprovalStore
) -> None:
    req = held(approval_store)
    client.cookies.set(COOKIE, auth.token("leo", ("dba",)))  # a cookie alongside does not matter
    r = client.post(f"/api/approvals/{req.id}/approve", headers=as_(auth, DBA))
    assert r.status_code == 200 and r.json()["decided_by"] == "dora"


# ---------------------------------------------------------------------------- approvals off


def test_approvals_not_enabled_is_503(store_url: str, auth: Auth) -> None:
    app = create_app(store_url=store_url, authenticator=auth.authenticator, auditor_groups=("auditors",))
    error = {"error": "approvals are not enabled on this gateway"}
    with TestClient(app, headers=as_(auth, DBA)) as c:
        assert c.get("/api/approvals").status_code == 503 and c.get("/api/approvals").json() == error
        assert c.get("/api/approvals/apr_1").json() == error
        for verb in ("approve", "reject"):
            r = c.post(f"/api/approvals/apr_1/{verb}", content=b"not even json")
            assert r.status_code == 503 and r.json() == error
        page = c.get("/approvals")
        assert page.status_code == 503 and "approvals are not enabled on this gateway" in page.text
        assert c.get("/approvals/rows").status_code == 503
        assert 'href="/approvals"' not in c.get("/sessions", headers=as_(auth, AUDITOR)).text
    close_app(app)


# ---------------------------------------------------------------------------- pages


def test_anyone_with_a_valid_token_signs_in_when_approvals_are_on(client: TestClient, auth: Auth) -> None:
    r = client.post("/login", data={"token": auth.token(*DBA)}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/approvals"  # not an auditor: their page
    assert client.get("/sessions").status_code == 403  # still no recorded sessions for them
    assert client.get("/api/sessions").status_code == 403
    form = client.get("/login?next=/approvals/apr_1&reason=missing")
    assert "Sign in to see approval requests." in form.text


def test_approvals_page_lists_what_the_viewer_may_see(
    client: TestClient, auth: Auth, approval_store: ApprovalStore
) -> None:
    mine = held(approval_store, age=90)
    own = held(approval_store, subject="dora", age=30)
    held(approval_store, approvers=["security"])
    r = client.get("/approvals", headers=as_(auth, DBA))
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert re.findall(r'<tr id="approval-[^"]+" data-approval-id="([^"]+)"', r.text) == [own.id, mine.id]
    row = _row(r.text, mine.id)
    assert '<span class="sql-keyword">UPDATE</span>' in row and '<span class="sql-param">$1</span>' in row
    assert "$1 = &quot;x@example.com&quot;, $2 = &quot;7&quot;" in row
    assert "writes to customers need a DBA&#x27;s approval" in row
    assert '<td data-live="age">1 min</td>' in row and '<td data-live="expires">in 58 min</td>' in row
    assert "client waiting 3 min more" in row
    assert 'data-decide="approve"' in row and 'class="reject-form" hidden' in row
    own_row = _row(r.text, own.id)  # four eyes: no buttons on one's own request, and why
    assert 'data-decide="approve"' not in own_row
    assert "dora requested" in own_row and "cannot approve their own request" in own_row
    assert 'id="no-approvals" hidden' in r.text
    assert 'id="live-status"' in r.text and 'data-query=""' in r.text
    assert '<a href="/approvals">Approvals</a>' in r.text

    audit = client.get("/approvals", headers=as_(auth, AUDITOR)).text
    assert len(re.findall(r"data-approval-id=", audit)) == 3
    assert 'data-decide="approve"' not in audit and "audrey is not in a group that may decide" in audit
    empty = client.get(
        "/approvals", headers=as_(auth, ("bob", ("agents",)))
    ).text  # neither asked nor decides
    assert '<tr id="no-approvals">' in empty
    assert len(re.findall(r"data-approval-id=", client.get("/approvals", headers=as_(auth, AGENT)).text)) == 2

    history = client.get("/approvals?state=all", headers=as_(auth, DBA)).text
    assert 'data-query="state=all"' in history and '<option value="all" selected>' in history
    assert client.get("/approvals?state=soon", headers=as_(auth, DBA)).status_code == 400


def test_rows_fragment_for_the_live_refresh(
    client: TestClient, auth: Auth, approval_store: ApprovalStore
) -> None:
    req = held(approval_store)
    r = client.get("/approvals/rows", headers=as_(auth, DBA))
    assert r.status_code == 200 and r.text.startswith(f'<tr id="approval-{req.id}"')
    assert "<html" not in r.text and "<script" not in r.text
    assert r.headers["content-security-policy"].startswith("default-src 'none'")
    assert client.get("/approvals/rows?state=rejected", headers=as_(auth, DBA)).text == ""
    # Refusals are plain statuses, never a redirect to the sign-in form (the script would show it).
    r = client.get("/approvals/rows", follow_redirects=False)
    assert r.status_code == 401 and "location" not in r.headers
    assert client.get("/approvals/rows?state=x", headers=as_(auth, DBA)).status_code == 400


def test_pages_redirect_to_sign_in_and_back(client: TestClient, approval_store: ApprovalStore) -> None:
    req = held(approval_store)
    r = client.get(f"/approvals/{req.id}", follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"] == f"/login?next=%2Fapprovals%2F{req.id}&reason=missing"


def test_approval_page_shows_the_request_and_its_history(
    client: TestClient, auth: Auth, approval_store: ApprovalStore
) -> None:
    req = held(approval_store)
    page = client.get(f"/approvals/{req.id}", headers=as_(auth, DBA)).text
    assert f"<h1>Approval {req.id}</h1>" in page and 'data-decide="approve"' in page
    assert '<span id="approval-identity">ci-bot</span>' in page
    assert client.get(f"/approvals/{req.id}", headers=as_(auth, SECURITY)).status_code == 403
    assert client.get("/approvals/apr_0", headers=as_(auth, DBA)).status_code == 404

    client.post(f"/api/approvals/{req.id}/reject", json={"reason": "<b>not now</b>"}, headers=as_(auth, DBA))
    page = client.get(f"/approvals/{req.id}", headers=as_(auth, DBA)).text
    assert 'data-decide="approve"' not in page
    assert '<span class="badge state-rejected">rejected</span>' in page
    assert '<span id="approval-decided-by">dora</span>' in page
    assert '<span id="approval-decision-reason">&lt;b&gt;not now&lt;/b&gt;</span>' in page
    audit = client.get(f"/approvals/{req.id}", headers=as_(auth, AUDITOR)).text
    assert f'href="/sessions/{req.session_id}"' in audit  # auditors can follow it to the session
    assert f'href="/sessions/{req.session_id}"' not in page


def test_request_text_is_rendered_inert(
    client: TestClient, auth: Auth, approval_store: ApprovalStore
) -> None:
    req = held(
        approval_store,
        subject="mallory<script>window.pwned=2</script>",
        sql=SCRIPT_SQL,
        params=["</code><script>window.pwned=3</script>"],
        reasons=["</li><img src=x onerror=alert(4)>"],
        connection='<img src=x onerror="pwned=5">',
    )
    headers = as_(auth, DBA)
    for path in ("/approvals", f"/approvals/{req.id}", "/approvals/rows"):
        text = client.get(path, headers=headers).text
        assert len(re.findall(r"<script", text, re.I)) == (0 if path == "/approvals/rows" else 1), path
        assert "<img" not in text and "</code><script" not in text, path
        assert "&lt;script&gt;window.pwned = 1&lt;/script&gt;" in text
        assert "mallory&lt;script&gt;window.pwned=2&lt;/script&gt;" in text
        assert "&lt;/li&gt;&lt;img src=x onerror=alert(4)&gt;" in text


def test_pages_have_the_strict_csp(client: TestClient, auth: Auth, approval_store: ApprovalStore) -> None:
    req = held(approval_store)
    for path in ("/approvals", f"/approvals/{req.id}"):
        r = client.get(path, headers=as_(auth, DBA))
        m = re.fullmatch(
            r"default-src 'none'; script-src 'nonce-([\w-]+)'; style-src 'nonce-\1'; "
            r"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
            r.headers["content-security-policy"],
        )
        assert m and f'<script nonce="{m.group(1)}">' in r.text, path
        assert "http://" not in r.text and "https://" not in r.text
        assert r.headers["cache-control"] == "no-store"
        assert (
            '<meta name="pgwarden-csrf"' not in r.text
        )  # Bearer, not a signed-in browser: no token to hand out


def _row(text: str, approval_id: str) -> str:
    m = re.search(rf'<tr id="approval-{approval_id}".*?</tr>', text, re.S)
    assert m, approval_id
    return m.group(0)


def test_sign_in_lands_where_the_identity_belongs(client: TestClient, auth: Auth) -> None:
    for who, landing in ((DBA, "/approvals"), (AUDITOR, "/sessions")):
        client.cookies.clear()
        r = client.post("/login", data={"token": auth.token(*who), "next": ""}, follow_redirects=False)
        assert r.headers["location"] == landing, who
    r = client.post(
        "/login", data={"token": auth.token(*DBA), "next": "//evil.example"}, follow_redirects=False
    )
    assert r.headers["location"] == "/approvals"
    page = client.get("/sessions")  # a signed-in approver who wanders to the auditor's pages
    assert page.status_code == 403 and 'href="/approvals"' in page.text
