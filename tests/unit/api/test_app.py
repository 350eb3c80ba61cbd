"""The auditor pages and JSON API against a real SQLite session store and real gateway tokens."""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from starlette.exceptions import StarletteDeprecationWarning

from enforcer.api.app import close_app, create_app
from enforcer.api.auth import COOKIE
from enforcer.audit.sessions import SessionStore
from enforcer.config import GatewayTokenConfig
from enforcer.identity.gateway_tokens import GatewayTokens, generate_key
from tests.unit.api.conftest import Auth
from tests.unit.api.recorded import ALICE, BOB, CAROL, NOW, session_start

with warnings.catch_warnings():
    # starlette 1.10 would rather drive its test client with httpx2; the pinned httpx works the same.
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient


@pytest.fixture
def client(store_url: str, auth: Auth) -> Iterator[TestClient]:
    app = create_app(store_url=store_url, authenticator=auth.authenticator, auditor_groups=("auditors",))
    with TestClient(app) as c:
        yield c
    close_app(app)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# ---------------------------------------------------------------------------- authentication


def test_healthz_needs_no_token(client: TestClient) -> None:
    r = client.get("/healthz")
    assert r.status_code == 200 and r.text == "ok"


@pytest.mark.parametrize("path", ["/api/sessions", f"/api/sessions/{ALICE}"])
def test_api_without_token_is_401(client: TestClient, path: str) -> None:
    r = client.get(path)
    assert r.status_code == 401
    assert "Bearer" in r.headers["www-authenticate"]
    assert "sign in" in r.json()["error"]


def test_api_with_bad_tokens_is_401(client: TestClient, auth: Auth, tmp_path: Path) -> None:
    generate_key(tmp_path / "other.key")
    forged = GatewayTokens(GatewayTokenConfig(signing_key_file=tmp_path / "other.key")).issue(
        "audrey", ["auditors"], 600
    )
    for headers in (
        bearer("not-a-token"),
        bearer(forged),
        {"Authorization": "Basic YXVkcmV5OnNlY3JldA=="},
        {"Authorization": "Bearer "},
    ):
        r = client.get("/api/sessions", headers=headers)
        assert r.status_code == 401, headers
        assert "error" in r.json()
        assert forged not in r.text  # never echoed


def test_api_with_non_auditor_token_is_403(client: TestClient, auth: Auth) -> None:
    r = client.get("/api/sessions", headers=bearer(auth.token("ci-bot", ("agents",))))
    assert r.status_code == 403
    assert "not an auditor" in r.json()["error"] and "auditors" in r.json()["error"]


def test_any_of_the_auditor_groups_is_enough(store_url: str, auth: Auth) -> None:
    app = create_app(store_url=store_url, authenticator=auth.authenticator, auditor_groups=("sec", "audit"))
    with TestClient(app) as c:
        assert c.get("/api/sessions", headers=bearer(auth.token("x", ("dev", "audit")))).status_code == 200
        assert c.get("/api/sessions", headers=bearer(auth.token("y", ("auditors",)))).status_code == 403
    close_app(app)


def test_pages_without_token_redirect_to_login(client: TestClient) -> None:
    r = client.get("/sessions?identity=alice", follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"] == "/login?next=%2Fsessions%3Fidentity%3Dalice&reason=missing"


def test_pages_with_refused_cookie_redirect_and_clear_it(client: TestClient) -> None:
    client.cookies.set(COOKIE, "eyJhbGciOiJub25lIn0.e30.")
    r = client.get(f"/sessions/{ALICE}", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].endswith("&reason=refused")
    assert f'{COOKIE}=""' in r.headers["set-cookie"] and "Max-Age=0" in r.headers["set-cookie"]


def test_pages_for_non_auditor_are_403(client: TestClient, auth: Auth) -> None:
    r = client.get("/sessions", headers=bearer(auth.token("ci-bot", ("agents",))))
    assert r.status_code == 403
    assert "not an auditor" in r.text and "ci-bot" in r.text


# ---------------------------------------------------------------------------- sign-in


def test_login_sets_a_strict_httponly_cookie(client: TestClient, auth: Auth) -> None:
    form = client.get("/login?next=/sessions/a11ce&reason=missing")
    assert form.status_code == 200 and 'id="login-form"' in form.text
    assert "Sign in to see recorded sessions." in form.text
    token = auth.token()
    r = client.post("/login", data={"token": token, "next": "/sessions/a11ce"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/sessions/a11ce"
    cookie = r.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}={token};")
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
    assert "Secure" not in cookie  # plain http here; see the https test
    max_age = int(re.search(r"Max-Age=(\d+)", cookie).group(1))  # type: ignore[union-attr]
    assert 590 <= max_age <= 600
    page = client.get("/sessions/a11ce")
    assert page.status_code == 200 and 'data-statement-seq="1"' in page.text
    assert client.get("/api/sessions").status_code == 200  # the cookie works for the API too


def test_login_over_https_sets_a_secure_cookie(store_url: str, auth: Auth) -> None:
    app = create_app(store_url=store_url, authenticator=auth.authenticator, auditor_groups=("auditors",))
    with TestClient(app, base_url="https://audit.example") as c:
        r = c.post("/login", data={"token": auth.token()}, follow_redirects=False)
        assert "Secure" in r.headers["set-cookie"]
        assert r.headers["location"] == "/sessions"
    close_app(app)


def test_login_refusals_show_why_without_the_token(client: TestClient, auth: Auth) -> None:
    agent = auth.token("ci-bot", ("agents",))
    r = client.post("/login", data={"token": agent}, follow_redirects=False)
    assert r.status_code == 403 and "set-cookie" not in r.headers
    assert "not an auditor" in r.text and agent not in r.text
    r = client.post("/login", data={"token": "hunter2-not-a-token"}, follow_redirects=False)
    assert r.status_code == 401 and "not a token" in r.text and "hunter2" not in r.text
    r = client.post("/login", data={"token": ""}, follow_redirects=False)
    assert r.status_code == 401


@pytest.mark.parametrize(
    "target", ["//evil.example/x", "https://evil.example/", "/\\evil.example", "sessions"]
)
def test_login_never_redirects_off_site(client: TestClient, auth: Auth, target: str) -> None:
    r = client.post("/login", data={"token": auth.token(), "next": target}, follow_redirects=False)
    assert r.headers["location"] == "/sessions"


def test_cross_site_login_and_logout_are_refused(client: TestClient, auth: Auth) -> None:
    r = client.post(
        "/login",
        data={"token": auth.token()},
        headers={"Origin": "https://evil.example"},
        follow_redirects=False,
    )
    assert r.status_code == 403 and "set-cookie" not in r.headers
    r = client.post("/logout", headers={"Sec-Fetch-Site": "cross-site"}, follow_redirects=False)
    assert r.status_code == 403
    r = client.post(
        "/login",
        data={"token": auth.token()},
        headers={"Origin": "http://testserver"},
        follow_redirects=False,
    )
    assert r.status_code == 303


def test_logout_clears_the_cookie(client: TestClient, auth: Auth) -> None:
    client.post("/login", data={"token": auth.token()})
    assert client.get("/api/sessions").status_code == 200
    r = client.post("/logout", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login?reason=signed_out"
    assert "Max-Age=0" in r.headers["set-cookie"]
    assert client.get("/api/sessions").status_code == 401


def test_oversized_login_form_is_refused(client: TestClient) -> None:
    r = client.post("/login", data={"token": "x" * 70_000})
    assert r.status_code == 413


# ---------------------------------------------------------------------------- JSON API


def test_list_is_newest_first_with_counts(client: TestClient, auth: Auth) -> None:
    r = client.get("/api/sessions", headers=bearer(auth.token()))
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    rows = r.json()
    assert [s["id"] for s in rows] == [CAROL, ALICE, BOB]
    alice = rows[1]
    assert (alice["subject"], alice["statements"], alice["refused"], alice["errors"]) == ("alice", 3, 1, 1)
    assert alice["groups"] == ["agents"] and alice["tls"] is True
    assert alice["end_reason"] == "client_terminated"


@pytest.mark.parametrize(
    "query,expected",
    [
        ("identity=alice", [ALICE]),
        ("connection=other", [BOB]),
        ("connection=demo&outcome=refused", [CAROL, ALICE]),
        ("outcome=error", [ALICE]),
        ("outcome=ok", [BOB]),
        ("since=2d", [CAROL, ALICE]),
        ("since=30m", [CAROL]),
        ("until=2h", [BOB]),
        ("since=1w&until=1d", [BOB]),
        ("limit=1", [CAROL]),
        ("identity=&connection=&outcome=", [CAROL, ALICE, BOB]),  # an empty form field is no filter
        ("identity=nobody", []),
    ],
)
def test_filters(client: TestClient, auth: Auth, query: str, expected: list[str]) -> None:
    r = client.get(f"/api/sessions?{query}", headers=bearer(auth.token()))
    assert r.status_code == 200, r.text
    assert [s["id"] for s in r.json()] == expected


def test_since_and_until_accept_iso_8601(client: TestClient, auth: Auth) -> None:
    two_days_ago = datetime.fromtimestamp(NOW - 2 * 86400, UTC)
    for since in (two_days_ago.isoformat(), two_days_ago.strftime("%Y-%m-%dT%H:%M:%SZ")):
        r = client.get("/api/sessions", params={"since": since}, headers=bearer(auth.token()))
        assert [s["id"] for s in r.json()] == [CAROL, ALICE], since
    naive_utc = datetime.fromtimestamp(NOW - 2 * 86400, UTC).replace(tzinfo=None).isoformat()
    r = client.get("/api/sessions", params={"until": naive_utc}, headers=bearer(auth.token()))
    assert [s["id"] for s in r.json()] == [BOB]


@pytest.mark.parametrize(
    "query,parameter",
    [
        ("since=yesterday", "since"),
        ("until=7 days", "until"),
        ("since=1h&until=2h", "until"),
        ("outcome=maybe", "outcome"),
        ("limit=0", "limit"),
        ("limit=5000", "limit"),
        ("limit=ten", "limit"),
        ("identty=alice", "identty"),
    ],
)
def test_bad_parameters_are_400_naming_them(
    client: TestClient, auth: Auth, query: str, parameter: str
) -> None:
    r = client.get(f"/api/sessions?{query}", headers=bearer(auth.token()))
    assert r.status_code == 400
    body = r.json()
    assert body["parameter"] == parameter and body["error"].startswith(f"{parameter}:")


def test_one_session_with_statements(client: TestClient, auth: Auth) -> None:
    r = client.get(f"/api/sessions/{ALICE}", headers=bearer(auth.token()))
    assert r.status_code == 200
    doc = r.json()
    assert doc["session"]["id"] == ALICE and doc["session"]["subject"] == "alice"
    stmts = doc["statements"]
    assert [s["seq"] for s in stmts] == [1, 2, 3]
    assert stmts[0]["columns"] == ["id", "email"] and stmts[0]["result_rows"][1] == ["2", None]
    assert stmts[1]["forwarded"] is False and stmts[1]["reasons"] == ["DDL is not allowed for agents"]
    assert stmts[2]["params"] == ["7"] and stmts[2]["error_sqlstate"] == "42P01"


def test_session_by_id_prefix_and_unknown_id(client: TestClient, auth: Auth) -> None:
    headers = bearer(auth.token())
    assert client.get("/api/sessions/a11ce", headers=headers).json()["session"]["id"] == ALICE
    r = client.get("/api/sessions/ffffffff", headers=headers)
    assert r.status_code == 404 and "ffffffff" in r.json()["error"]
    assert client.get("/sessions/ffffffff", headers=headers).status_code == 404


def test_ambiguous_prefix_is_400(client: TestClient, auth: Auth, store_url: str) -> None:
    store = SessionStore(store_url)
    store.write([session_start("a11ce999-0000-4000-8000-000000000009", NOW, "alice", "demo")])
    store.close()
    r = client.get("/api/sessions/a11ce", headers=bearer(auth.token()))
    assert r.status_code == 400 and "ambiguous" in r.json()["error"]


def test_recording_not_enabled(auth: Auth) -> None:
    app = create_app(store_url=None, authenticator=auth.authenticator, auditor_groups=("auditors",))
    with TestClient(app) as c:
        r = c.get("/api/sessions", headers=bearer(auth.token()))
        assert r.status_code == 503 and "not enabled" in r.json()["error"]
        page = c.get("/sessions", headers=bearer(auth.token()))
        assert "session recording is not enabled in this gateway&#x27;s configuration" in page.text
    close_app(app)


def test_unreadable_store_is_503_and_recovers(tmp_path: Path, auth: Auth) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    app = create_app(
        store_url=str(blocker / "sessions.db"), authenticator=auth.authenticator, auditor_groups=("auditors",)
    )
    with TestClient(app) as c:
        r = c.get("/api/sessions", headers=bearer(auth.token()))
        assert r.status_code == 503 and "cannot read the session store" in r.json()["error"]
        blocker.unlink()
        assert c.get("/api/sessions", headers=bearer(auth.token())).json() == []
    close_app(app)


# ---------------------------------------------------------------------------- pages


def test_sessions_page_lists_and_filters(client: TestClient, auth: Auth) -> None:
    r = client.get("/sessions", headers=bearer(auth.token()))
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    ids = re.findall(r'<tr data-session-id="([^"]+)"', r.text)
    assert ids == [CAROL, ALICE, BOB]
    assert f'href="/sessions/{ALICE}"' in r.text
    r = client.get("/sessions?identity=alice&outcome=error", headers=bearer(auth.token()))
    assert re.findall(r'<tr data-session-id="([^"]+)"', r.text) == [ALICE]
    assert 'value="alice"' in r.text and '<option value="error" selected>' in r.text
    r = client.get("/sessions?since=soon", headers=bearer(auth.token()))
    assert r.status_code == 400 and "since:" in r.text


def test_session_page_shows_statements(client: TestClient, auth: Auth) -> None:
    r = client.get(f"/sessions/{ALICE}", headers=bearer(auth.token()))
    text = r.text
    assert re.findall(r'data-statement-seq="(\d+)"', text) == ["1", "2", "3"]
    assert '<span class="badge action-mask" data-role="action">mask</span>' in text
    assert '<span class="badge action-deny" data-role="action">deny</span>' in text
    assert "not forwarded" in text and "DDL is not allowed for agents" in text
    assert "<code>SELECT 2</code>" in text and "2 row(s)" in text and "2.5 ms" in text
    assert (
        "<th>email</th>" in text
        and "<td>a***@example.com</td>" in text
        and '<td class="null">NULL</td>' in text
    )
    assert "<code>42P01</code> relation &quot;missing&quot; does not exist" in text
    assert '<span class="sql-keyword">DROP</span>' in text
    assert "$1 = &quot;7&quot;" in text
    assert 'id="replay-start"' in text and '<option value="max">max</option>' in text


def test_recorded_text_is_rendered_inert(client: TestClient, auth: Auth) -> None:
    """Recorded SQL, identities, app names, reasons, errors and results are attacker-controlled."""
    headers = bearer(auth.token())
    for path in ("/sessions", f"/sessions/{CAROL}"):
        text = client.get(path, headers=headers).text
        assert "pwned" in text or path == "/sessions"
        # The only script element is the page's own, carrying the nonce.
        assert len(re.findall(r"<script", text, re.I)) == (1 if path != "/sessions" else 0)
        assert "<img" not in text and "<b>" not in text and "</li><script" not in text
        assert "carol&lt;script&gt;window.pwned=2&lt;/script&gt;" in text
    text = client.get(f"/sessions/{CAROL}", headers=headers).text
    assert "&lt;script&gt;window.pwned = 1&lt;/script&gt;" in text  # the SQL
    assert "&lt;script&gt;window.pwned = 3&lt;/script&gt;" in text  # a result value
    assert "&lt;/li&gt;&lt;script&gt;window.pwned=4" in text  # a reason
    assert "&lt;script&gt;window.pwned=5&lt;/script&gt;" in text  # an error message
    assert "&lt;b&gt;x&lt;/b&gt;" in text  # a column name


def test_pages_have_a_strict_csp_with_a_fresh_nonce(client: TestClient, auth: Auth) -> None:
    headers = bearer(auth.token())
    nonces = []
    for _ in range(2):
        r = client.get(f"/sessions/{ALICE}", headers=headers)
        csp = r.headers["content-security-policy"]
        m = re.fullmatch(
            r"default-src 'none'; script-src 'nonce-([\w-]+)'; style-src 'nonce-\1'; "
            r"form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
            csp,
        )
        assert m, csp
        nonces.append(m.group(1))
        assert f'<script nonce="{m.group(1)}">' in r.text and f'<style nonce="{m.group(1)}">' in r.text
        assert "http://" not in r.text and "https://" not in r.text  # no external assets
        assert r.headers["x-content-type-options"] == "nosniff" and r.headers["cache-control"] == "no-store"
    assert nonces[0] != nonces[1]
    for path in ("/api/sessions", "/healthz", "/no-such-route"):
        r = client.get(path, headers=headers)
        assert r.headers["content-security-policy"].startswith("default-src 'none'"), path
        assert r.headers["x-frame-options"] == "DENY"


def test_long_sessions_are_paged(client: TestClient, auth: Auth, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("enforcer.api.app.STATEMENTS_PER_PAGE", 2)
    headers = bearer(auth.token())
    first = client.get(f"/sessions/{ALICE}", headers=headers).text
    assert re.findall(r'data-statement-seq="(\d+)"', first) == ["1", "2"]
    assert "Statements 1 to 2 of 3" in first and f'href="/sessions/{ALICE}?page=2"' in first
    second = client.get(f"/sessions/{ALICE}?page=2", headers=headers).text
    assert re.findall(r'data-statement-seq="(\d+)"', second) == ["3"]
    assert 'id="page-previous"' in second and 'id="page-next"' not in second
    for bad in ("page=3", "page=0", "page=x", "pgae=2"):
        assert client.get(f"/sessions/{ALICE}?{bad}", headers=headers).status_code == 400, bad
