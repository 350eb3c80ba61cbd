"""Refusals as the agent reads them: the gateway's words kept, and what to do instead."""

from __future__ import annotations

from enforcer.mcp.advice import refusal_text, token_refused_text
from enforcer.mcp.gateway_client import GatewayRefusal
from enforcer.wire import ErrorResponse


def refusal(sqlstate: str, message: str, detail: str | None = None, hint: str | None = None) -> str:
    return refusal_text(GatewayRefusal(ErrorResponse.build(sqlstate, message, detail=detail, hint=hint)))


def test_a_denial_keeps_the_reasons_and_the_decision_id_and_says_not_to_retry() -> None:
    text = refusal(
        "42501",
        "pgwarden denied this statement: DELETE without WHERE on public.orders is destructive",
        detail="decision id 0193abc",
    )
    lines = text.splitlines()
    assert lines[0] == "pgwarden denied this statement: DELETE without WHERE on public.orders is destructive"
    assert lines[1] == "DETAIL: decision id 0193abc" and lines[2] == "(SQLSTATE 42501)"
    assert "do not retry the same statement" in lines[3] and "`explain`" in lines[3]


def test_each_kind_of_refusal_has_its_own_advice() -> None:
    rejected = refusal("42501", "pgwarden: alice rejected this statement (approval apr_1): not today")
    assert "Do not send it again unchanged" in rejected
    masked = refusal(
        "42501",
        "pgwarden: this statement would return masked columns (public.customers.ssn), but result "
        "masking is not enabled on this gateway, so it was not run",
    )
    assert "`describe_table`" in masked
    no_approvals = refusal(
        "42501", "pgwarden: this statement needs approval (x), but approvals are not enabled"
    )
    assert "operators" in no_approvals
    timed_out = refusal("57014", "approval apr_1 was not decided within 5m")
    assert "send the identical query again" in timed_out
    assert "Fix the SQL" in refusal("42601", 'syntax error at or near "SELEC"')
    assert "`list_tables`" in refusal("42P01", 'relation "nope" does not exist')
    assert "`describe_table`" in refusal("42703", 'column "nope" does not exist')
    assert "fresh token" in refusal("28P01", "token is expired")
    assert "try again later" in refusal("08006", "the upstream server closed the connection unexpectedly")
    hinted = refusal("22012", "division by zero", hint="do not divide by zero")
    assert "HINT: do not divide by zero" in hinted and "error from Postgres" in hinted


def test_token_refusal_names_where_the_token_goes() -> None:
    text = token_refused_text("token is expired")
    assert text.startswith("pgwarden refused the token: token is expired")
    assert "PGWARDEN_TOKEN" in text and "Authorization: Bearer" in text
