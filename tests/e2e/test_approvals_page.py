"""The approver's pages in a real browser, served by a real gateway process with approvals on.

Requests are written into the gateway's approval store by the test (as a held statement
would be) after the page is open, to prove the list is live; decisions are clicked in
headless Chromium and checked in the store.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from enforcer.approvals.store import ApprovalRequest, ApprovalStore
from enforcer.config import GatewayTokenConfig
from enforcer.identity.gateway_tokens import GatewayTokens, generate_key
from tests import approvals_client
from tests.e2e.conftest import CHROMIUM, browser_page, free_port, gateway_config, running_gateway
from tests.unit.api.held import held

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium"),
]

#: The list refreshes every 2 s; a new request must show up within one refresh and some slack.
LIVE_MS = 6000
INJECTED_SQL = (
    "UPDATE notes SET body = '<script>window.pwned = 1</script><img src=x onerror=\"window.pwned = 2\">'"
)


@dataclass
class Gateway:
    url: str
    tokens: GatewayTokens
    store: ApprovalStore

    def token(self, subject: str, groups: tuple[str, ...]) -> str:
        return self.tokens.issue(subject, list(groups), 600)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    d = tmp_path_factory.mktemp("e2e-approvals")
    generate_key(d / "token.key")
    (d / "pw").write_text("unused")
    cfg = gateway_config(free_port(), approvals={"store": "approvals.db"})
    with running_gateway(d, cfg) as url:
        store = ApprovalStore(str(d / "approvals.db"))  # the gateway created it at start
        try:
            yield Gateway(url, GatewayTokens(GatewayTokenConfig(signing_key_file=d / "token.key")), store)
        finally:
            store.close()


@pytest.fixture
def page(browser: Any, gateway: Gateway) -> Iterator[Any]:
    with browser_page(browser, gateway.url) as pg:
        yield pg


def sign_in(page: Any, gateway: Gateway, path: str = "/approvals", who: str = "dora") -> None:
    page.goto(path)
    assert "/login" in page.url  # not signed in yet: sent to the form
    page.fill("#token", gateway.token(who, ("dba",)))
    page.click("#login-submit")
    page.wait_for_url(f"**{path}")


def row(page: Any, req: ApprovalRequest) -> Any:
    return page.locator(f'tr[data-approval-id="{req.id}"]')


def appears_live(page: Any, req: ApprovalRequest) -> Any:
    """Wait for the request's row to arrive by the page's own refresh (no navigation)."""
    page.wait_for_selector(f'tr[data-approval-id="{req.id}"]', timeout=LIVE_MS)
    assert page.evaluate("window.__samePage") is True
    return row(page, req)


def open_list(page: Any, gateway: Gateway) -> None:
    sign_in(page, gateway)
    page.evaluate("window.__samePage = true")


def test_a_new_request_appears_and_is_approved(page: Any, gateway: Gateway) -> None:
    open_list(page, gateway)
    req = held(gateway.store, age=1)
    r = appears_live(page, req)
    assert r.locator("pre.sql").inner_text() == req.sql
    assert r.locator(".identity").inner_text() == "ci-bot"
    assert "writes to customers need a DBA's approval" in r.inner_text()
    assert '$1 = "x@example.com", $2 = "7"' in r.inner_text()
    assert r.locator(".sql-keyword").first.inner_text() == "UPDATE"  # highlighted on the server
    assert page.locator("#no-approvals").is_hidden()

    r.locator('button[data-decide="approve"]').click()
    page.wait_for_selector(f'tr[data-approval-id="{req.id}"][data-decided="approved"]')
    stored = gateway.store.get(req.id)
    assert stored is not None and (stored.state, stored.decided_by) == ("approved", "dora")
    assert r.locator('[data-live="state"]').inner_text() == "approved by dora"
    assert r.locator("button").count() == 0
    # The next refresh leaves the row decided here in place; nothing else arrives meanwhile.
    polls = int(page.get_attribute("#live-status", "data-polls"))
    page.wait_for_selector(f'#live-status[data-polls="{polls + 1}"]')
    assert row(page, req).get_attribute("data-decided") == "approved"
    assert page.problems == []


def test_reject_asks_for_a_reason(page: Any, gateway: Gateway) -> None:
    open_list(page, gateway)
    req = held(gateway.store, age=1)
    r = appears_live(page, req)
    form = r.locator("form.reject-form")
    assert form.is_hidden()
    r.locator('button[data-decide="reject"]').click()
    assert form.is_visible()
    r.locator('form.reject-form button[type="submit"]').click()  # empty: the browser asks for it
    assert r.locator("textarea:invalid").count() == 1 and r.locator(".outcome").inner_text() == ""
    r.locator("textarea").fill("use the nightly batch job for this")
    r.locator('form.reject-form button[type="submit"]').click()
    page.wait_for_selector(f'tr[data-approval-id="{req.id}"][data-decided="rejected"]')
    stored = gateway.store.get(req.id)
    assert stored is not None and stored.state == "rejected"
    assert (stored.decided_by, stored.decision_reason) == ("dora", "use the nightly batch job for this")
    assert "rejected: use the nightly batch job for this" in r.locator(".outcome").inner_text()
    assert page.problems == []


def test_a_typed_reason_survives_the_refresh(page: Any, gateway: Gateway) -> None:
    open_list(page, gateway)
    req = held(gateway.store, age=1)
    r = appears_live(page, req)
    r.locator('button[data-decide="reject"]').click()
    r.locator("textarea").fill("half-typed")
    polls = int(page.get_attribute("#live-status", "data-polls"))
    page.wait_for_selector(f'#live-status[data-polls="{polls + 1}"]')
    assert r.locator("textarea").input_value() == "half-typed" and r.locator("form.reject-form").is_visible()
    approvals_client.reject(gateway.url, gateway.token("leo", ("dba",)), req.id, reason="tidy up")


def test_own_requests_have_no_buttons(page: Any, gateway: Gateway) -> None:
    open_list(page, gateway)
    req = held(gateway.store, subject="dora", age=1)
    r = appears_live(page, req)
    assert r.locator("button").count() == 0
    assert "cannot approve their own request" in r.locator(".cannot-decide").inner_text()
    approvals_client.reject(gateway.url, gateway.token("leo", ("dba",)), req.id)


def test_a_decision_taken_elsewhere_meanwhile_is_shown(page: Any, gateway: Gateway) -> None:
    req = held(gateway.store, age=1)
    sign_in(page, gateway, f"/approvals/{req.id}")
    approvals_client.approve(gateway.url, gateway.token("leo", ("dba",)), req.id, reason="on call")
    page.click('button[data-decide="approve"]')
    outcome = page.locator('.outcome[data-outcome="refused"]')
    outcome.wait_for()
    assert outcome.inner_text() == f"approval {req.id} is approved, not pending"
    page.reload()
    assert page.locator("#approval-decided-by").inner_text() == "leo"
    assert page.locator("#approval-decision-reason").inner_text() == "on call"
    assert [p for p in page.problems if "409" not in p] == []  # the browser logs the refused fetch


def test_approve_on_the_request_page(page: Any, gateway: Gateway) -> None:
    req = held(gateway.store, age=1)
    sign_in(page, gateway, f"/approvals/{req.id}")
    assert page.locator("#approval-identity").inner_text() == "ci-bot"
    page.click('button[data-decide="approve"]')
    page.wait_for_selector('#approval[data-state="approved"]')  # the page reloads with the result
    assert page.locator("#approval-decided-by").inner_text() == "dora"
    assert gateway.store.get(req.id).state == "approved"  # type: ignore[union-attr]
    assert page.problems == []


def test_script_in_a_held_statement_is_inert(page: Any, gateway: Gateway) -> None:
    open_list(page, gateway)
    req = held(
        gateway.store,
        subject="mallory<script>window.pwned = 3</script>",
        sql=INJECTED_SQL,
        params=['<img src=x onerror="window.pwned = 4">'],
        reasons=["</li><script>window.pwned = 5</script>"],
        age=1,
    )
    r = appears_live(page, req)  # inserted by the live refresh
    assert r.locator("pre.sql").inner_text() == INJECTED_SQL
    assert r.locator(".identity").inner_text() == "mallory<script>window.pwned = 3</script>"
    assert "</li><script>window.pwned = 5</script>" in r.inner_text()
    assert page.locator("main img").count() == 0 and page.locator("main script").count() == 0
    page.goto(f"/approvals/{req.id}")
    assert page.locator("pre.sql").inner_text() == INJECTED_SQL
    assert page.locator("main img").count() == 0
    assert page.evaluate("typeof window.pwned") == "undefined"
    assert page.problems == []
    approvals_client.reject(gateway.url, gateway.token("leo", ("dba",)), req.id)
