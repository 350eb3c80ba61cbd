"""Refusals as an agent reads them: what happened, why, and what it may do instead.

Owns: the text of every tool error that comes from the gateway or Postgres (a denial, a
rejection, an approval that timed out, a refused token, a syntax error, an unreachable gateway).
Never: hides the gateway's own words (its message, DETAIL with the decision id, and HINT are kept
verbatim); suggests retrying what the policy decided.
"""

from __future__ import annotations

from enforcer.mcp.gateway_client import GatewayRefusal

_TOKEN = (
    "Get a fresh token (`pgwarden token issue`, or your identity provider) and give it to the MCP "
    "server (stdio: the PGWARDEN_TOKEN environment variable or PGWARDEN_TOKEN_FILE; HTTP: the "
    "Authorization: Bearer header)."
)


def _advice(err: GatewayRefusal) -> str:
    state, message = err.sqlstate, err.message
    if state in ("28P01", "28000"):
        return "The gateway did not accept this identity. " + _TOKEN
    if state == "42501":
        if "rejected this statement" in message:
            return (
                "A person rejected it. Do not send it again unchanged; read their reason, and change "
                "the statement or ask them."
            )
        if "needs approval" in message:
            return (
                "This statement needs a person's approval, but approvals are not enabled on this "
                "gateway, so it cannot run through pgwarden; ask its operators."
            )
        if "masked columns" in message:
            return (
                "The policy masks columns this statement reads, and this gateway cannot mask results "
                "yet. `describe_table` shows which columns are masked for you; use `explain` to find a "
                "query the policy allows without masking."
            )
        if "cannot record" in message or "could not be obtained" in message:
            return "The gateway could not decide or record this statement; try again later."
        return (
            "This is the policy's decision, not a transient error: do not retry the same statement. "
            "Use `explain` to check a variant before running it (for example with a WHERE clause, "
            "or reading fewer tables or columns), or ask a person to change the policy."
        )
    if state == "57014":
        if "not decided within" in message:
            return (
                "Nobody decided in time. The request stays open until it expires: if a person "
                "approves it later, send the identical query again (same SQL and parameters) and it "
                "runs once."
            )
        return "The statement was cancelled; it did not run."
    if state == "42601":
        return "Fix the SQL: pgwarden parses statements with Postgres's own parser."
    if state in ("42P01", "3F000"):
        return "`list_schemas` and `list_tables` show what exists."
    if state == "42703":
        return "`describe_table` shows the columns of a table."
    if state == "26000":
        return "Send the statement itself; prepared statements are per gateway session."
    if state == "3D000":
        return "The MCP server names a connection the gateway does not have; check its --connection."
    if state.startswith("08") or state in ("57P01", "57P05", "53300"):
        return "The gateway or the database is unavailable right now; try again later."
    if state == "25P02":
        return "A transaction was aborted; each tool call runs on its own, so just retry without it."
    return "This is an error from Postgres; fix the statement and try again."


def refusal_text(err: GatewayRefusal) -> str:
    """The tool error text for a refusal: the gateway's words, then what the agent may do."""
    lines = [err.message]
    if err.detail:
        lines.append(f"DETAIL: {err.detail}")
    if err.hint:
        lines.append(f"HINT: {err.hint}")
    lines.append(f"(SQLSTATE {err.sqlstate})")
    lines.append(f"What you can do: {_advice(err)}")
    return "\n".join(lines)


def token_refused_text(reason: str) -> str:
    return f"pgwarden refused the token: {reason}\nWhat you can do: {_TOKEN}"
