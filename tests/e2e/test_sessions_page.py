"""The auditor's session pages in a real browser, served by a real gateway process.

The gateway runs `pgwarden run` with an ``api`` section and a session store that already
holds recorded sessions (no upstream is needed to browse them); headless Chromium signs in
with a gateway token through the /login form, browses, replays and looks for injected script.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from enforcer.audit.sessions import SessionEnd, SessionStart, SessionStore, StatementEvent
from enforcer.config import GatewayTokenConfig
from enforcer.identity.gateway_tokens import GatewayTokens, generate_key
from tests.e2e.conftest import CHROMIUM, browser_page, free_port, gateway_config, running_gateway

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium"),
]

REPLAYED = "e2e00000-0000-4000-8000-00000000000a"
INJECTED = "e2e00000-0000-4000-8000-00000000000b"
REPLAYED_SQL = [
    "BEGIN",
    "SELECT id, email FROM customers WHERE id = 1",
    "UPDATE customers SET email = 'x@example.com'",
    "ROLLBACK",
]
#: Offsets of the statements from the first, in seconds: replay at 1x takes 1.6 s.
OFFSETS = [0.0, 0.4, 0.8, 1.6]
INJECTED_SQL = "SELECT '<script>window.pwned = 1</script><img src=x onerror=\"window.pwned = 2\">'"


def _start(sid: str, started: float, subject: str, app: str) -> SessionStart:
    return SessionStart(
        id=sid,
        instance="e2e",
        started_at=started,
        subject=subject,
        issuer="pgwarden",
        groups=["agents"],
        user_name="app",
        connection="demo",
        database="demo",
        client_addr="127.0.0.1",
        application_name=app,
        tls=True,
    )


def _record(url: str) -> None:
    t0 = time.time() - 600
    items: list[SessionStart | StatementEvent | SessionEnd] = [_start(REPLAYED, t0, "alice", "psql")]
    for seq, (sql, offset) in enumerate(zip(REPLAYED_SQL, OFFSETS, strict=True), 1):
        denied = sql.startswith("UPDATE")
        items.append(
            StatementEvent(
                REPLAYED,
                seq,
                t0 + 1 + offset,
                1.5,
                "simple",
                sql,
                action="deny" if denied else "allow",
                reasons=["writes need approval"] if denied else [],
                forwarded=not denied,
                error_sqlstate="42501" if denied else "",
                error_message="denied by policy" if denied else "",
                command_tag="" if denied else sql.split()[0],
            )
        )
    items += [
        SessionEnd(REPLAYED, t0 + 5, "client_terminated"),
        _start(
            INJECTED, t0 + 60, "mallory<script>window.pwned = 3</script>", '<img src=x onerror="pwned=4">'
        ),
        StatementEvent(
            INJECTED,
            1,
            t0 + 61,
            0.5,
            "simple",
            INJECTED_SQL,
            action="allow",
            command_tag="SELECT 1",
            rows=1,
            columns=["?column?"],
            result_rows=[['<script>window.pwned = 5</script><img src=x onerror="window.pwned = 6">']],
        ),
    ]
    store = SessionStore(url)
    store.write(items)
    store.close()


@dataclass
class Api:
    url: str
    tokens: GatewayTokens

    def token(self, subject: str = "audrey", groups: tuple[str, ...] = ("auditors",)) -> str:
        return self.tokens.issue(subject, list(groups), 600)


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    d = tmp_path_factory.mktemp("e2e-api")
    generate_key(d / "token.key")
    (d / "pw").write_text("unused")
    _record(str(d / "sessions.db"))
    cfg = gateway_config(free_port(), audit={"sessions": "sessions.db"})
    with running_gateway(d, cfg) as url:
        yield Api(url, GatewayTokens(GatewayTokenConfig(signing_key_file=d / "token.key")))


@pytest.fixture
def page(browser: Any, api: Api) -> Iterator[Any]:
    with browser_page(browser, api.url) as pg:
        yield pg


def sign_in(page: Any, api: Api, path: str = "/sessions") -> None:
    page.goto(path)
    assert "/login" in page.url  # not signed in yet: sent to the form
    page.fill("#token", api.token())
    page.click("#login-submit")
    page.wait_for_url(f"**{path}")


def test_sign_in_browse_and_replay(page: Any, api: Api) -> None:
    sign_in(page, api)
    cookie = next(c for c in page.context.cookies() if c["name"] == "pgwarden_token")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert page.evaluate("document.cookie") == ""  # script cannot read the token
    assert page.locator("#auditor").inner_text() == "audrey"
    rows = page.locator("tr[data-session-id]")
    assert [rows.nth(i).get_attribute("data-session-id") for i in range(rows.count())] == [INJECTED, REPLAYED]

    page.click(f'tr[data-session-id="{REPLAYED}"] a')
    page.wait_for_url(f"**/sessions/{REPLAYED}")
    items = page.locator("li[data-statement-seq]")
    assert [items.nth(i).get_attribute("data-statement-seq") for i in range(4)] == ["1", "2", "3", "4"]
    assert [items.nth(i).locator("pre.sql").inner_text() for i in range(4)] == REPLAYED_SQL
    assert items.nth(2).locator('[data-role="action"]').inner_text() == "deny"
    assert "writes need approval" in items.nth(2).inner_text()

    # Record the order in which statements become visible again.
    page.evaluate(
        """() => {
        window.__revealed = [];
        new MutationObserver((changes) => changes.forEach((c) => {
            if (!c.target.hidden) { window.__revealed.push(c.target.dataset.statementSeq); }
        })).observe(document.getElementById("statements"),
                    {subtree: true, attributes: true, attributeFilter: ["hidden"]});
        }"""
    )
    page.select_option("#replay-speed", "max")
    page.click("#replay-start")
    page.wait_for_selector('#statements[data-replay-state="done"]')
    assert page.evaluate("window.__revealed") == ["1", "2", "3", "4"]
    assert all(items.nth(i).is_visible() for i in range(4))

    # At 1x the original pacing holds: right after the start only the first statement is shown.
    page.select_option("#replay-speed", "1")
    page.click("#replay-start")
    page.wait_for_selector('#statements[data-replay-state="playing"]')
    items.nth(0).wait_for(state="visible")
    assert not items.nth(3).is_visible()  # due 1.6 s after the first
    page.click("#replay-stop")
    assert page.get_attribute("#statements", "data-replay-state") == "stopped"
    assert all(items.nth(i).is_visible() for i in range(4))

    page.click("text=Sign out")
    page.wait_for_url("**/login?reason=signed_out")
    page.goto("/sessions")
    assert "/login" in page.url
    assert page.problems == []  # no script or style was blocked by the CSP


def test_recorded_script_does_not_run(page: Any, api: Api) -> None:
    sign_in(page, api, f"/sessions/{INJECTED}")
    assert page.evaluate("typeof window.pwned") == "undefined"
    assert page.locator("#session-identity").inner_text() == "mallory<script>window.pwned = 3</script>"
    assert page.locator('li[data-statement-seq="1"] pre.sql').inner_text() == INJECTED_SQL
    cell = page.locator("table.result td").first.inner_text()
    assert cell == '<script>window.pwned = 5</script><img src=x onerror="window.pwned = 6">'
    assert page.locator("main img").count() == 0
    page.select_option("#replay-speed", "max")
    page.click("#replay-start")
    page.wait_for_selector('#statements[data-replay-state="done"]')
    page.goto("/sessions")
    assert page.evaluate("typeof window.pwned") == "undefined"
    assert page.problems == []


def test_non_auditor_cannot_sign_in(page: Any, api: Api) -> None:
    page.goto("/login")
    page.fill("#token", api.token("ci-bot", ("agents",)))
    page.click("#login-submit")
    assert "not an auditor" in page.locator("#login-message").inner_text()
    assert page.context.cookies() == []
