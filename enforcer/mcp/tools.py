"""The MCP tools: query, list_schemas, list_tables, describe_table, explain, approval_status.

Owns: the tools' names, descriptions (what the model reads), arguments and JSON results, and the
mapping of every outcome to a result or a tool error the agent can act on.
Never: runs SQL except through the gateway (catalog reads included, so the policy decides on them
too); evaluates the policy except to *explain* (which runs nothing).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import ToolAnnotations

from enforcer import __version__
from enforcer.approvals.store import ApprovalStore, ApprovalStoreError
from enforcer.mcp.advice import refusal_text, token_refused_text
from enforcer.mcp.agents import AgentRegistry, AgentSession, GatewayTarget, Held, UnknownApproval
from enforcer.mcp.auth import TokenCheck, TokenRefused
from enforcer.mcp.explain import PolicyExplainer
from enforcer.mcp.gateway_client import GatewayError, GatewayRefusal, StatementResult
from enforcer.mcp.values import json_value, parameter_text
from enforcer.policy.decision import Decision, combine
from enforcer.policy.engine import PolicyError

log = logging.getLogger("pgwarden.mcp")

INSTRUCTIONS = """\
This server runs SQL on a Postgres database through pgwarden, a policy gateway. Every statement
is decided by the organisation's policy before it reaches the database: it runs, is refused (the
error says why and what to do instead), has columns masked, or waits for a person's approval.

- `query` runs one statement (use $1, $2, ... with `params` for values). Reads return rows.
  A statement that needs approval returns at once with state "pending" and an approval_id:
  poll `approval_status` with it (pass wait_seconds to wait a little); once a person approves,
  the statement runs exactly once and approval_status returns its result.
- `explain` shows the policy's decision for a statement without running it: check a write
  before you send it.
- `list_schemas`, `list_tables` and `describe_table` show what exists; describe_table also
  says which columns are masked for you.
- Each call runs on its own (autocommit): there are no transactions across calls.
"""

#: How long approval_status may wait for an outcome within one call.
MAX_STATUS_WAIT = 30.0
#: Rows the catalog tools return at most (they are small; the query cap is for data).
CATALOG_MAX_ROWS = 10_000

_LIST_SCHEMAS = """\
SELECT n.nspname AS name, pg_catalog.obj_description(n.oid, 'pg_namespace') AS description
FROM pg_catalog.pg_namespace n
WHERE n.nspname !~ '^pg_' AND n.nspname <> 'information_schema'
ORDER BY 1"""

_LIST_TABLES = """\
SELECT n.nspname AS schema, c.relname AS name,
       CASE c.relkind WHEN 'r' THEN 'table' WHEN 'p' THEN 'partitioned table' WHEN 'v' THEN 'view'
                      WHEN 'm' THEN 'materialized view' WHEN 'f' THEN 'foreign table' END AS kind,
       pg_catalog.obj_description(c.oid, 'pg_class') AS description
FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') AND {where}
ORDER BY 1, 2"""
_USER_SCHEMAS = "n.nspname !~ '^pg_' AND n.nspname <> 'information_schema'"

_TABLE = """\
SELECT n.nspname, c.relname,
       CASE c.relkind WHEN 'r' THEN 'table' WHEN 'p' THEN 'partitioned table' WHEN 'v' THEN 'view'
                      WHEN 'm' THEN 'materialized view' WHEN 'f' THEN 'foreign table'
                      ELSE c.relkind::text END,
       pg_catalog.obj_description(c.oid, 'pg_class')
FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.oid = $1::regclass"""

_COLUMNS = """\
SELECT a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod), NOT a.attnotnull,
       pg_catalog.pg_get_expr(d.adbin, d.adrelid), pg_catalog.col_description(a.attrelid, a.attnum)
FROM pg_catalog.pg_attribute a
LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum"""

_WHAT_HAPPENS = {
    "allow": "the gateway would run it",
    "deny": "the gateway would refuse it (do not send it)",
    "mask": "the gateway would mask the listed columns in the result (a gateway without result "
    "masking refuses it)",
    "review": "the gateway would hold it until a person approves it: `query` returns state pending "
    "with an approval id at once",
}


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def decision_document(decision: Decision) -> dict[str, Any]:
    doc = decision.to_document()
    doc["what_happens"] = _WHAT_HAPPENS.get(decision.action, "the gateway would refuse it")
    if decision.action == "review" and decision.review is not None:
        doc["what_happens"] += (
            f"; approvers: a member of {', '.join(decision.review.approvers) or 'an approver group'}"
        )
    return doc


@dataclass(frozen=True)
class EndpointSettings:
    target: GatewayTarget
    #: The real database name behind the connection (``session.database`` in the policy input).
    database: str
    max_rows: int = 500


class McpEndpoint:
    """The tools, bound to one gateway connection name and one way of learning the caller's token."""

    def __init__(
        self,
        settings: EndpointSettings,
        check: TokenCheck,
        token_source: Callable[[], str],
        explainer: PolicyExplainer,
        *,
        approvals_store: ApprovalStore | None = None,
        agents: AgentRegistry | None = None,
    ) -> None:
        self.settings = settings
        self.check = check
        self.token_source = token_source
        self.explainer = explainer
        self.approvals_store = approvals_store
        self.agents = agents or AgentRegistry(settings.target)

    # ------------------------------------------------------------------ who is calling
    async def _agent(self) -> AgentSession:
        try:
            token = self.token_source()
            identity = await self.check.verify(token)
        except TokenRefused as exc:
            raise ToolError(token_refused_text(exc.message)) from None
        return self.agents.session_for(identity, token)

    # ------------------------------------------------------------------ running SQL
    async def _run(
        self, agent: AgentSession, sql: str, params: list[Any] | None, max_rows: int
    ) -> StatementResult | Held:
        values = None if params is None else [parameter_text(p) for p in params]
        try:
            return await agent.run(sql, values, max_rows=max_rows)
        except GatewayRefusal as exc:
            raise ToolError(refusal_text(exc)) from None
        except GatewayError as exc:
            raise ToolError(
                f"pgwarden mcp could not complete the call: {exc}\nWhat you can do: if this was a write, "
                "check whether it took effect before sending it again; otherwise try again later."
            ) from None

    async def _rows(self, agent: AgentSession, sql: str, params: list[Any] | None = None) -> StatementResult:
        outcome = await self._run(agent, sql, params, CATALOG_MAX_ROWS)
        if isinstance(outcome, Held):
            raise ToolError(
                f"the policy holds this catalog read for a person's approval ({outcome.approval_id}); "
                "poll approval_status with that id for its result."
            )
        return outcome

    async def _result(self, agent: AgentSession, result: StatementResult) -> dict[str, Any]:
        names = await agent.type_names([c.type_oid for c in result.columns])
        oids = [c.type_oid for c in result.columns]
        doc: dict[str, Any] = {
            "state": "done",
            "command": result.command_tag,
            "columns": [{"name": c.name, "type": names[c.type_oid]} for c in result.columns],
            "rows": [[json_value(oid, v) for oid, v in zip(oids, row, strict=True)] for row in result.rows],
            "row_count": result.row_count,
            "returned_rows": len(result.rows),
            "truncated": result.truncated,
        }
        notes = []
        if result.truncated:
            notes.append(
                f"only the first {len(result.rows)} of {result.row_count} rows are returned; add a LIMIT, "
                "an ORDER BY or a narrower WHERE clause"
            )
        if result.statements > 1:
            doc["statements"] = result.statements
            notes.append("several statements were sent: this is the result of the last one")
        if notes:
            doc["note"] = "; ".join(notes)
        if result.notices:
            doc["notices"] = list(result.notices)
        return doc

    @staticmethod
    def _pending(held: Held) -> dict[str, Any]:
        return {
            "state": "pending",
            "approval_id": held.approval_id,
            "waiting_seconds": round(time.time() - held.since, 1),
            "message": (
                "The gateway holds this statement until a person approves or rejects it; it has not "
                f"run. Call approval_status with approval_id {held.approval_id!r} (wait_seconds lets it "
                "wait a little): once approved, the statement runs exactly once and approval_status "
                "returns its result. Do not send the statement again meanwhile."
            ),
            "notice": held.notice,
        }

    # ------------------------------------------------------------------ the tools
    async def query(
        self, sql: str, params: list[Any] | None = None, max_rows: int | None = None
    ) -> dict[str, Any]:
        """Run one SQL statement on the database, through the pgwarden policy gateway.

        Use $1, $2, ... placeholders with `params` for values (strings, numbers, booleans, null;
        objects and arrays are sent as JSON). Returns the columns (name, Postgres type), the rows
        (arrays of values in column order; numeric values as strings to keep their precision), the
        row count, and `truncated` when more rows exist than were returned (`max_rows`, at most the
        server's cap). A statement that needs a person's approval returns state "pending" with an
        approval_id at once: poll approval_status. A refused statement is an error explaining why
        and what to do instead.
        """
        agent = await self._agent()
        cap = self.settings.max_rows if max_rows is None else max(0, min(max_rows, self.settings.max_rows))
        outcome = await self._run(agent, sql, params, cap)
        if isinstance(outcome, Held):
            return self._pending(outcome)
        return await self._result(agent, outcome)

    async def approval_status(self, approval_id: str, wait_seconds: float = 0) -> dict[str, Any]:
        """The state of a statement held for approval (the approval_id that query returned).

        "pending" while nobody has decided; once approved, the statement runs exactly once and this
        returns its result (state "done", like query) - once, after which the id is forgotten. A
        rejection or a timeout is an error with the approver's reason. `wait_seconds` (up to 30)
        waits for an outcome before answering "pending".
        """
        agent = await self._agent()
        wait = max(0.0, min(float(wait_seconds), MAX_STATUS_WAIT))
        try:
            if wait:
                await agent.wait(approval_id, wait)
            outcome = agent.outcome(approval_id)
        except UnknownApproval:
            raise ToolError(await self._unknown_approval(agent, approval_id)) from None
        except GatewayRefusal as exc:
            raise ToolError(refusal_text(exc)) from None
        except GatewayError as exc:
            raise ToolError(
                f"the gateway session of {approval_id} broke off while it waited: {exc}\nWhat you can do: "
                "its outcome is unknown; check whether the statement took effect before sending it again."
            ) from None
        if isinstance(outcome, Held):
            doc = self._pending(outcome)
            doc["message"] = "Still waiting for a person to decide; call approval_status again later."
            return doc
        doc = await self._result(agent, outcome)
        doc["approval_id"] = approval_id
        return doc

    async def _unknown_approval(self, agent: AgentSession, approval_id: str) -> str:
        text = (
            f"this MCP server holds no statement {approval_id!r} for you: either its result was already "
            "returned (results are returned once), or it was held by another process or session."
        )
        if self.approvals_store is not None:
            try:
                req = await asyncio.to_thread(self.approvals_store.get, approval_id)
            except ApprovalStoreError as exc:
                log.info("approvals store lookup failed: %s", exc)
                req = None
            if req is not None and req.subject == agent.identity.subject:
                text += f" Its state at the gateway is {req.state!r}"
                if req.decided_by:
                    text += f" (decided by {req.decided_by}"
                    text += f": {req.decision_reason})" if req.decision_reason else ")"
                text += "."
                if req.state == "approved":
                    text += " Send the identical query again (same SQL and parameters) to run it once."
        return text

    async def list_schemas(self) -> dict[str, Any]:
        """The schemas of the database (without Postgres's own), with their descriptions."""
        agent = await self._agent()
        result = await self._rows(agent, _LIST_SCHEMAS)
        return {
            "schemas": [{"name": n, "description": d} for n, d in result.rows],
            "truncated": result.truncated,
        }

    async def list_tables(self, schema: str | None = None) -> dict[str, Any]:
        """Tables, views and materialized views: of one schema, or of every non-system schema."""
        agent = await self._agent()
        if schema is None:
            result = await self._rows(agent, _LIST_TABLES.format(where=_USER_SCHEMAS))
        else:
            result = await self._rows(agent, _LIST_TABLES.format(where="n.nspname = $1"), [schema])
        return {
            "tables": [{"schema": s, "name": n, "kind": k, "description": d} for s, n, k, d in result.rows],
            "truncated": result.truncated,
        }

    async def describe_table(self, table: str) -> dict[str, Any]:
        """The columns of a table or view (name, type, nullable, default), and which are masked for you.

        `table` is a name as in SQL: `orders`, `public.orders`, or quoted `"My Table"`. `masked`
        columns come back masked (or the statement is refused where the gateway cannot mask);
        `read_decision` is the policy's decision for `SELECT *` from it.
        """
        agent = await self._agent()
        head = await self._rows(agent, _TABLE, [table])
        if not head.rows:
            raise ToolError(f"no table {table!r}; `list_tables` shows what exists")
        schema, name, kind, description = head.rows[0]
        assert schema is not None and name is not None
        columns = await self._rows(agent, _COLUMNS, [table])
        decision = await self._decision(agent, f"SELECT * FROM {quote_ident(schema)}.{quote_ident(name)}")
        masks = {m.column: m for m in decision.masks}
        out = []
        for col, type_name, nullable, default, comment in columns.rows:
            assert col is not None
            mask = masks.get(f"{schema}.{name}.{col}") or masks.get(f"{name}.{col}") or masks.get(col)
            entry: dict[str, Any] = {
                "name": col,
                "type": type_name,
                "nullable": nullable == "t",
                "default": default,
                "masked": mask is not None,
            }
            if mask is not None:
                entry["mask"] = {"strategy": mask.strategy, "label": mask.label}
            if comment:
                entry["description"] = comment
            out.append(entry)
        return {
            "schema": schema,
            "name": name,
            "kind": kind,
            "description": description,
            "columns": out,
            "read_decision": {
                "action": decision.action,
                "reasons": list(decision.reasons),
                "what_happens": decision_document(decision)["what_happens"],
            },
        }

    async def _decision(self, agent: AgentSession, sql: str) -> Decision:
        return combine(e.decision for e in await self._explanations(agent, sql))

    async def _explanations(self, agent: AgentSession, sql: str) -> list[Any]:
        try:
            return await self.explainer.explain(
                sql,
                agent.identity,
                connection=self.settings.target.connection,
                database=self.settings.database,
                application_name=self.settings.target.application_name,
                parameters=agent.parameters,
            )
        except PolicyError as exc:
            raise ToolError(f"the policy could not be loaded to explain this: {exc}") from None

    async def explain(self, sql: str) -> dict[str, Any]:
        """The policy's decision for a statement WITHOUT running it (allow, deny, mask, review) and why.

        Use it to check a write or a risky read before sending it with query. The gateway decides
        again when the statement is actually sent; that decision is the one that counts.
        """
        agent = await self._agent()
        explanations = await self._explanations(agent, sql)
        overall = combine(e.decision for e in explanations)
        return {
            "decision": decision_document(overall),
            "statements": [
                {"sql": e.input.get("statement", {}).get("text", sql), **decision_document(e.decision)}
                for e in explanations
            ],
            "identity": {"subject": agent.identity.subject, "groups": list(agent.identity.groups)},
            "policy_version": self.explainer.version,
        }

    # ------------------------------------------------------------------ the server
    def build_server(self) -> MCPServer:
        server: MCPServer = MCPServer(
            "pgwarden", version=__version__, instructions=INSTRUCTIONS, log_level="WARNING"
        )
        read_only = ToolAnnotations(read_only_hint=True, open_world_hint=False)
        server.add_tool(self.query, name="query", annotations=ToolAnnotations(open_world_hint=False))
        server.add_tool(self.explain, name="explain", annotations=read_only)
        server.add_tool(self.approval_status, name="approval_status", annotations=read_only)
        server.add_tool(self.list_schemas, name="list_schemas", annotations=read_only)
        server.add_tool(self.list_tables, name="list_tables", annotations=read_only)
        server.add_tool(self.describe_table, name="describe_table", annotations=read_only)
        return server


def http_token() -> str:
    """The bearer token of the HTTP request being served (checked already by BearerTokenGate)."""
    token = get_access_token()
    if token is None:
        raise TokenRefused("this request carries no bearer token")
    return token.token
