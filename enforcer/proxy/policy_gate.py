"""The policy gate: analysis -> input document -> decision -> verdict -> decision record.

Owns: turning each SQL-carrying message into a decision of the policy engine,
the per-session memory the extended protocol and SQL-level PREPARE need
(which statement names and portals were allowed), the settings pgwarden pins,
caching, and writing the decision record before anything is forwarded.
Never: forwards what was not decided. Parse failures, engine errors, timeouts,
malformed decisions and decision-log failures all refuse the statement.

Caches:
- analysis: keyed by the exact statement text only, because parsing is a pure
  function of the bytes (it resolves no names); shared by all sessions.
- decisions: per session, keyed by the exact text, the protocol, the
  transaction status and a settings epoch that moves whenever an allowed
  statement changes session settings, the role or prepared statements; bounded
  by a TTL so that time-dependent policies are re-asked. Never keyed by
  fingerprint: fingerprints collide across schemas, names and role targets.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from enforcer import metrics
from enforcer.analysis import Analysis, AnalysisError, StatementFacts, analyse
from enforcer.analysis.normalise import normalise
from enforcer.audit.decision_log import (
    DecisionLog,
    DecisionLogError,
    decided_json,
    json_string,
    new_decision_id,
)
from enforcer.masking import CatalogUnavailable, MaskingError, MaskPlan
from enforcer.policy.decision import Decision, combine, fail_closed, parse_decision
from enforcer.policy.engine import PolicyEngine, PolicyError
from enforcer.proxy.gate import ALLOW, ResultTransformer, SessionContext, SQLMessage, Verdict
from enforcer.proxy.masking_gate import MaskOutcome, catalog_refusal
from enforcer.wire import BindHead, ErrorResponse, Execute, Parse, Query

if TYPE_CHECKING:
    from enforcer.approvals.service import ApprovalService
    from enforcer.proxy.masking_gate import MaskingEnforcer

log = logging.getLogger("pgwarden.policy")

#: Settings that change how SQL is lexed; pgwarden's parse must match Postgres's.
PINNED_SETTINGS = {"client_encoding": ("utf8", "unicode"), "standard_conforming_strings": ("on",)}
_CACHE_PER_SESSION = 512


# An analysis with its AST is ~30 KiB for a mid-sized SELECT: bound the worst case to ~60 MiB per worker.
@lru_cache(maxsize=2048)
def cached_analysis(text: str) -> Analysis | AnalysisError:
    try:
        return analyse(text)
    except AnalysisError as exc:
        return exc


#: Facts that do not depend on literal values' positions; everything else of the document is in the key.
_NOT_IN_FACTS_KEY = ("text", "ast", "fingerprint", "index")
# A policy that reads any of these can tell statements apart that have the same facts.
_READS_RAW_STATEMENT = re.compile(r"\.(text|ast|fingerprint)\b|\bwalk\(|statement\s*\[|json\.marshal\(")


@lru_cache(maxsize=4096)
def statement_jsons(text: str) -> tuple[str, ...] | None:
    """Per statement, the facts as sorted JSON without text/AST/fingerprint/index (None: no parse)."""
    analysis = cached_analysis(text)
    if isinstance(analysis, AnalysisError):
        return None
    return tuple(
        json.dumps(
            {k: v for k, v in f.document.items() if k not in _NOT_IN_FACTS_KEY},
            sort_keys=True,
            separators=(",", ":"),
            default=str,
        )
        for f in analysis.statements
    )


@lru_cache(maxsize=4096)
def session_effects(text: str) -> tuple[tuple[str, str], ...]:
    """What an allowed ``text`` changes in what the gate remembers, in statement order:
    ``("ddl", "")``, ``("setting", "")`` (a setting or the role), ``("prepare", name)``,
    ``("deallocate", name)`` or ``("deallocate_all", "")``. Derived once per text."""
    analysis = cached_analysis(text)
    if isinstance(analysis, AnalysisError):
        return ()
    effects: list[tuple[str, str]] = []
    for facts in analysis.statements:
        doc = facts.document
        flags = doc.get("flags", {})
        if flags.get("ddl"):
            effects.append(("ddl", ""))
        if flags.get("changes_session_setting") or flags.get("sets_role") or doc.get("role_change"):
            effects.append(("setting", ""))
        prepare = doc.get("prepare")
        if prepare:
            effects.append(("prepare", str(prepare.get("name"))))
        dealloc = doc.get("deallocate")
        if dealloc:
            if dealloc.get("all"):
                effects.append(("deallocate_all", ""))
            else:
                effects.append(("deallocate", str(dealloc.get("name"))))
    return tuple(effects)


def facts_key(text: str) -> str:
    """The statement facts minus text/AST: statements that differ only in literals share it."""
    jsons = statement_jsons(text)
    return "\0" + text if jsons is None else "\x1e".join(jsons)


#: Statement kinds whose facts come from identifiers and structure only, never from literal values.
_LITERAL_INDEPENDENT_KINDS = frozenset({"select", "insert", "update", "delete", "merge"})


@lru_cache(maxsize=8192)
def literal_independent(norm: str) -> bool:
    """True if analysing ``norm`` (literals replaced by $n) yields the facts of any of its instances."""
    analysis = cached_analysis(norm)
    if isinstance(analysis, AnalysisError) or len(analysis.statements) != 1:
        return False
    doc = analysis.statements[0].document
    flags = doc.get("flags", {})
    return (
        doc.get("kind") in _LITERAL_INDEPENDENT_KINDS
        and not doc.get("settings")
        and not doc.get("role_change")
        and not any(doc.get(k) for k in ("copy", "prepare", "execute", "deallocate", "explain"))
        and not flags.get("side_effect_functions")
        and not flags.get("executes_dynamic_sql")
        and not flags.get("sets_role")
        and not flags.get("changes_session_setting")
    )


def choose_cache_key(mode: str, policy_texts: list[str]) -> str:
    """``facts`` only when no policy module can see more than the facts; else ``exact``."""
    if mode != "auto":
        return mode
    return "exact" if any(_READS_RAW_STATEMENT.search(t) for t in policy_texts) else "facts"


@dataclass
class _Entry:
    """A decided message, remembered for the extended protocol and the decision cache."""

    decision: Decision
    verdict: Verdict
    #: Per statement: the result document and the evaluation time, for the decision records.
    results: list[tuple[dict[str, Any], int]]
    text: str
    created: float
    #: The result documents serialised once (every cached use records the same document).
    results_json: list[str] | None = None
    #: Serialised result, metrics and enforcement members per (statement, forwarded, cached, masks).
    decided: dict[tuple[int, bool, bool, str], bytes] = field(default_factory=dict)


@dataclass
class GateState:
    """Per-session memory of the gate."""

    statements: dict[str, _Entry] = field(default_factory=dict)  # protocol-level and SQL PREPAREd names
    portals: dict[str, _Entry] = field(default_factory=dict)
    cache: OrderedDict[tuple[str, str, str, int, int, str], _Entry] = field(default_factory=OrderedDict)
    epoch: int = 0
    identity_json: str | None = None
    session_json: tuple[Any, str] = (None, "")
    #: Per analysed text: (session state, per statement the input document around its text).
    input_parts: dict[str, tuple[Any, list[tuple[bytes, bytes, bytes]] | None]] = field(default_factory=dict)
    #: Masking: (policy version, the identity's plan under it; None = nothing masked), once asked.
    mask_plan: tuple[str, MaskPlan | None] | None = None
    #: Per prepared statement: its masking outcome, and the result description a Describe reported.
    masked: dict[str, MaskOutcome] = field(default_factory=dict)
    described: dict[str, tuple[Any, ...]] = field(default_factory=dict)


def _sql_of(msg: Query | Parse) -> str:
    return msg.sql if isinstance(msg, Query) else msg.query


class PolicyGate:
    def __init__(
        self,
        engine: PolicyEngine,
        decision_log: DecisionLog,
        *,
        cache_ttl: float = 60.0,
        cache_key: str = "exact",
        record_ast: bool = False,
        approvals: ApprovalService | None = None,
        masking: MaskingEnforcer | None = None,
    ) -> None:
        self.engine = engine
        #: Enforces ``mask`` decisions by rewriting; without it they are refused.
        self.masking = masking
        self.decision_log = decision_log
        #: Holds ``review`` decisions for a person; without it they are refused.
        self.approvals = approvals
        self.cache_ttl = cache_ttl
        self.cache_key = cache_key
        self.record_ast = record_ast

    # ------------------------------------------------------------------ entry point
    def decide(self, ctx: SessionContext, message: SQLMessage) -> Verdict | Awaitable[Verdict]:
        state: GateState = ctx.gate_state
        if state is None:
            state = ctx.gate_state = GateState()
        if isinstance(message, BindHead):
            return self._bind(ctx, state, message)
        if isinstance(message, Execute):
            entry = state.portals.get(message.portal)
            if entry is None:
                return _refuse("26000", f'portal "{message.portal}" was not bound through pgwarden')
            return entry.verdict if entry.verdict.refusal is not None else ALLOW
        protocol = "simple" if isinstance(message, Query) else "extended"
        if isinstance(message, Query):
            # A simple query destroys the unnamed statement and portal (as in Postgres).
            state.statements.pop("", None)
            state.portals.pop("", None)
        text = _sql_of(message)
        source = self._analysis_source(text)
        body = facts_key(source) if self.cache_key == "facts" else text
        key = (body, protocol, ctx.transaction_status, state.epoch, ctx.parameters_epoch, self.engine.version)
        entry = state.cache.get(key)
        if entry is not None and time.monotonic() - entry.created <= self.cache_ttl:
            state.cache.move_to_end(key)
            return self._finish(ctx, state, message, entry, protocol, source, cached=True)
        analysis = cached_analysis(source)
        if not self.engine.synchronous:
            return self._decide_async(ctx, state, message, text, source, protocol, key, analysis)
        entry = self._evaluate_sync(ctx, state, text, protocol, analysis, normalised=source != text)
        return self._remember_and_finish(ctx, state, message, key, entry, protocol, source)

    def _analysis_source(self, text: str) -> str:
        """The text to analyse: the statement itself, or its literal-normalised form when that is equivalent.

        With facts-keyed caching (the policy reads neither text nor AST), a single statement whose
        facts cannot depend on literal values is analysed in its normalised form (literals replaced
        by $n, as pg_stat_statements does), so that a client sending the same statement with
        different literals (psql scripts, simple-protocol drivers) is analysed once, not every time.
        """
        if self.cache_key != "facts" or self.record_ast:
            return text
        norm = normalise(text)
        return norm if norm is not None and norm != text and literal_independent(norm) else text

    def replace_engine(self, engine: PolicyEngine) -> None:
        """Use new policies from now on; cached decisions of the old version are never reused."""
        self.engine = engine
        self.decision_log.labels = {**self.decision_log.labels, "policy_version": engine.version}

    def _bind(self, ctx: SessionContext, state: GateState, message: BindHead) -> Verdict | Awaitable[Verdict]:
        entry = state.statements.get(message.statement)
        if entry is None:
            return _refuse(
                "26000",
                f'prepared statement "{message.statement}" was not prepared through pgwarden, '
                "so it cannot be executed",
            )
        state.portals[message.portal] = entry
        if entry.verdict.refusal is not None:
            return entry.verdict
        held_verdict = entry.verdict
        mask = state.masked.get(message.statement)
        if (
            mask is not None
            and self.masking is not None
            and (mask.changed or entry.decision.action == "mask")
        ):
            # Rows of a masked statement: the masker needs the statement's description, which a
            # Describe reported earlier (drivers such as asyncpg Describe once and Bind many times).
            full = message.full()
            masker = self.masking.result_masker(mask)
            masker.bind(full.result_formats, state.described.get(message.statement))
            held_verdict = Verdict(
                transformer=masker,
                decision_id=entry.verdict.decision_id,
                action=entry.verdict.action,
                reasons=entry.verdict.reasons,
                masked=entry.verdict.masked,
            )
        if entry.decision.action == "review" and self.approvals is not None:
            # The approval binds the parameters, which arrive with Bind: hold the Bind.
            bind = message.full()
            params = [
                None
                if v is None
                else (v.decode("utf-8", "replace") if bind.param_format(i) == 0 else "\\x" + v.hex())
                for i, v in enumerate(bind.params)
            ]
            return self._hold(ctx, entry.text, params, "extended", entry.decision, held_verdict)
        return held_verdict if held_verdict is not entry.verdict else ALLOW

    async def _hold(
        self,
        ctx: SessionContext,
        sql: str,
        params: list[str | None] | None,
        protocol: str,
        decision: Decision,
        verdict: Verdict,
    ) -> Verdict:
        assert self.approvals is not None
        refusal = await self.approvals.hold(
            ctx,
            sql=sql,
            params=params,
            protocol=protocol,
            decision=decision,
            decision_id=verdict.decision_id,
            notice=ctx.notice,
        )
        if refusal is None:
            return verdict
        return Verdict(
            refusal=refusal, decision_id=verdict.decision_id, action=verdict.action, reasons=verdict.reasons
        )

    async def _decide_async(
        self,
        ctx: SessionContext,
        state: GateState,
        message: Query | Parse,
        text: str,
        source: str,
        protocol: str,
        key: tuple[str, str, str, int, int, str],
        analysis: Analysis | AnalysisError,
    ) -> Verdict:
        entry = await self._evaluate(ctx, state, text, protocol, analysis, normalised=source != text)
        result = self._remember_and_finish(ctx, state, message, key, entry, protocol, source)
        return result if isinstance(result, Verdict) else await result

    # ------------------------------------------------------------------ evaluation
    def _inputs(
        self, ctx: SessionContext, protocol: str, analysis: Analysis, original_text: str | None = None
    ) -> list[tuple[StatementFacts, dict[str, Any]]]:
        """The input documents; ``original_text`` replaces the text of a normalised single statement."""
        identity = ctx.identity.to_document()
        session = self._session_document(ctx, protocol)
        count = len(analysis.statements)
        out = []
        for facts in analysis.statements:
            statement = facts.to_document(include_ast=True)
            if original_text is not None:
                statement["text"] = original_text
            statement["message"] = {"index": facts.index, "count": count}
            out.append((facts, {"identity": identity, "session": session, "statement": statement}))
        return out

    @staticmethod
    def _session_document(ctx: SessionContext, protocol: str) -> dict[str, Any]:
        return {
            "id": ctx.session_id,
            "connection": ctx.connection,
            "database": ctx.database,
            "client_addr": ctx.client_addr,
            "application_name": ctx.parameters.get("application_name", ctx.application_name),
            "tls": ctx.tls,
            "transaction_status": ctx.transaction_status,
            # An MCP tool call is one protocol for the policy, whatever the tool sends on the wire.
            "protocol": "mcp" if ctx.channel == "mcp" else protocol,
            "parameters": dict(ctx.parameters),
        }

    def _pre_decision(self, ctx: SessionContext, state: GateState, facts: StatementFacts) -> Decision | None:
        """Rules the gateway enforces itself, before and regardless of the policy."""
        doc = facts.document
        pinned = pinned_setting_decision(facts)
        if pinned is not None:
            return pinned
        execute = doc.get("execute")
        if execute:
            known = state.statements.get(str(execute.get("name")))
            if known is None:
                return Decision(
                    "deny", (f'EXECUTE of "{execute.get("name")}", which was not prepared through pgwarden',)
                )
            return known.decision
        return None

    def _evaluate_sync(
        self,
        ctx: SessionContext,
        state: GateState,
        text: str,
        protocol: str,
        analysis: Analysis | AnalysisError,
        *,
        normalised: bool = False,
    ) -> _Entry:
        """:meth:`_evaluate` for a synchronous engine, driven to completion without an event loop turn."""
        coro = self._evaluate(ctx, state, text, protocol, analysis, normalised=normalised)
        try:
            coro.send(None)
        except StopIteration as done:
            entry: _Entry = done.value
            return entry
        coro.close()
        raise RuntimeError("a synchronous policy engine suspended")

    async def _evaluate(
        self,
        ctx: SessionContext,
        state: GateState,
        text: str,
        protocol: str,
        analysis: Analysis | AnalysisError,
        *,
        normalised: bool = False,
    ) -> _Entry:
        if isinstance(analysis, AnalysisError):
            return self._entry_for_parse_error(ctx, text, protocol, analysis)
        decisions, results = [], []
        for facts, input_doc in self._inputs(ctx, protocol, analysis, text if normalised else None):
            started = time.perf_counter_ns()
            decision = self._pre_decision(ctx, state, facts)
            if decision is None:
                try:
                    if self.engine.synchronous:
                        raw = self.engine.evaluate_sync(input_doc)
                    else:
                        raw = await self.engine.evaluate(input_doc)
                    decision = parse_decision(raw)
                except PolicyError as exc:
                    log.error("policy engine failed: %s", exc, extra={"event": "policy_error"})
                    decision = fail_closed(str(exc))
            decisions.append(decision)
            results.append((decision.to_document(), time.perf_counter_ns() - started))
        return self._entry(decisions, results, text)

    def _entry_for_parse_error(
        self, ctx: SessionContext, text: str, protocol: str, exc: AnalysisError
    ) -> _Entry:
        decision = Decision("deny", (f"the statement does not parse ({exc}); denied (fail closed)",))
        entry = self._entry([decision], [(decision.to_document(), 0)], text)
        # Same grammar as Postgres, so the client gets the syntax error Postgres would have sent.
        entry.verdict = _refuse(
            "42601", str(exc), detail="pgwarden could not parse the statement, so it was not forwarded"
        )
        return entry

    def _entry(
        self, decisions: list[Decision], results: list[tuple[dict[str, Any], int]], text: str
    ) -> _Entry:
        combined = combine(decisions)
        verdict = _verdict(combined, holds_reviews=self.approvals is not None, masks=self.masking is not None)
        return _Entry(combined, verdict, results, text, time.monotonic())

    # ------------------------------------------------------------------ bookkeeping and records
    def _remember_and_finish(
        self,
        ctx: SessionContext,
        state: GateState,
        message: Query | Parse,
        key: tuple[str, str, str, int, int, str],
        entry: _Entry,
        protocol: str,
        source: str,
    ) -> Verdict | Awaitable[Verdict]:
        state.cache[key] = entry
        if len(state.cache) > _CACHE_PER_SESSION:
            state.cache.popitem(last=False)
        return self._finish(ctx, state, message, entry, protocol, source, cached=False)

    def _record_inputs(
        self, ctx: SessionContext, state: GateState, text: str, source: str, protocol: str
    ) -> list[Sequence[bytes]]:
        """The recorded ``"input":`` member of each statement, in pieces built from cached JSON.

        The AST is left out unless ``audit.record_ast`` is set: it is re-derivable from the
        recorded text with the same parser (OPA's decision logs erase input fields the same way).
        """
        # The session document changes only with the transaction status, reported parameters
        # or protocol: everything around the statement text is serialised once per such state.
        session_key = (ctx.transaction_status, ctx.parameters_epoch, protocol)
        parts = state.input_parts.get(source)
        if parts is None or parts[0] != session_key:
            parts = (session_key, self._input_parts(ctx, state, source, protocol))
            state.input_parts[source] = parts
            if len(state.input_parts) > _CACHE_PER_SESSION:
                del state.input_parts[next(iter(state.input_parts))]
        pieces = parts[1]
        if pieces is None:  # no parse: the recorded input is the text and the error
            analysis = cached_analysis(source)
            doc = {"statement": {"text": text, "parse_error": str(analysis)}}
            return [(b'"input":', json.dumps(doc).encode())]
        if source != text:  # normalised: always one statement, recorded as the client sent it
            head, _, tail = pieces[0]
            return [(head, json_string(text).encode(), tail)]
        return list(pieces)

    def _input_parts(
        self, ctx: SessionContext, state: GateState, source: str, protocol: str
    ) -> list[tuple[bytes, bytes, bytes]] | None:
        """Per statement of ``source``: the ``"input":`` member before the text, the text, and after it."""
        analysis = cached_analysis(source)
        jsons = statement_jsons(source)
        if isinstance(analysis, AnalysisError) or jsons is None:
            return None
        if state.identity_json is None:
            state.identity_json = json.dumps(ctx.identity.to_document(), separators=(",", ":"), default=str)
        session_key = (ctx.transaction_status, ctx.parameters_epoch, protocol)
        if state.session_json[0] != session_key:  # one serialisation per session state, for every text
            doc = self._session_document(ctx, protocol)
            state.session_json = (session_key, json.dumps(doc, separators=(",", ":"), default=str))
        session = state.session_json[1]
        head = (
            f'"input":{{"identity":{state.identity_json},"session":{session},"statement":{{"text":'.encode()
        )
        count = len(analysis.statements)
        out = []
        for facts, rest in zip(analysis.statements, jsons, strict=True):
            tail = (
                f',"index":{facts.index},'
                f'"fingerprint":{json.dumps(facts.document.get("fingerprint"))},'
                f'"message":{{"index":{facts.index},"count":{count}}},'
            )
            if self.record_ast:
                tail += f'"ast":{json.dumps(facts.ast, separators=(",", ":"))},'
            out.append((head, json_string(facts.text).encode(), f"{tail}{rest[1:]}}}".encode()))
        return out

    def _decided_json(
        self, ctx: SessionContext, entry: _Entry, i: int, *, forwarded: bool, cached: bool, masked: list[Any]
    ) -> bytes:
        """The serialised result, metrics and enforcement of statement ``i`` of a decision.

        A cached use records the same members every time: they are kept on the entry."""
        key = (i, forwarded, cached, json.dumps(masked, default=str) if masked else "")
        if cached:
            found = entry.decided.get(key)
            if found is not None:
                return found
        if entry.results_json is None:
            entry.results_json = [json.dumps(r, separators=(",", ":"), default=str) for r, _ in entry.results]
        enforcement: dict[str, Any] = {
            "session": ctx.session_id,
            "connection": ctx.connection,
            "subject": ctx.identity.subject,
            "message_action": entry.decision.action,
            "forwarded": forwarded,
            "statement_index": i,
            "cached": cached,
            "policy_version": self.engine.version,
        }
        if masked:
            enforcement["masked"] = masked
        eval_ns = entry.results[i][1]
        decided = decided_json(
            entry.results_json[i], {"timer_pgwarden_decision_ns": 0 if cached else eval_ns}, enforcement
        ).encode()
        if cached:
            entry.decided[key] = decided
        return decided

    def _finish(
        self,
        ctx: SessionContext,
        state: GateState,
        message: Query | Parse,
        entry: _Entry,
        protocol: str,
        source: str,
        *,
        cached: bool,
    ) -> Verdict | Awaitable[Verdict]:
        mask: MaskOutcome | None = None
        if self.masking is not None and entry.verdict.refusal is None:
            found = self._mask(ctx, state, _sql_of(message), source)
            if not (found is None or isinstance(found, MaskOutcome)):
                return self._finish_later(ctx, state, message, entry, protocol, source, cached, found)
            mask = found
        return self._finish_with(ctx, state, message, entry, protocol, source, cached, mask)

    async def _finish_later(
        self,
        ctx: SessionContext,
        state: GateState,
        message: Query | Parse,
        entry: _Entry,
        protocol: str,
        source: str,
        cached: bool,
        pending: Awaitable[MaskOutcome | None],
    ) -> Verdict:
        mask = await pending
        result = self._finish_with(ctx, state, message, entry, protocol, source, cached, mask)
        return result if isinstance(result, Verdict) else await result

    # ------------------------------------------------------------------ masking
    def _mask(
        self, ctx: SessionContext, state: GateState, text: str, source: str
    ) -> MaskOutcome | Awaitable[MaskOutcome | None] | None:
        """The masking outcome of a statement of this session; an awaitable when something must load."""
        masking = self.masking
        assert masking is not None
        if state.mask_plan is None or state.mask_plan[0] != self.engine.version:
            return self._mask_async(ctx, state, text, source)
        plan = state.mask_plan[1]
        if plan is None:
            return None
        catalog = masking.catalogs.cached(ctx.connection)
        if catalog is None:
            return self._mask_async(ctx, state, text, source)
        outcome = masking.outcome(text, plan, catalog, normalised=source)
        return self._mask_async(ctx, state, text, source, retry=True) if outcome.stale else outcome

    async def _mask_async(
        self, ctx: SessionContext, state: GateState, text: str, source: str, *, retry: bool = False
    ) -> MaskOutcome | None:
        masking = self.masking
        assert masking is not None
        try:
            if state.mask_plan is None or state.mask_plan[0] != self.engine.version:
                version = self.engine.version
                state.mask_plan = (version, await masking.identity_plan(self.engine, ctx))
            plan = state.mask_plan[1]
            if plan is None:
                return None
            if retry:
                masking.catalogs.invalidate(ctx.connection)
            catalog = await masking.catalogs.get(ctx.connection)
        except (PolicyError, MaskingError, CatalogUnavailable) as exc:
            log.error("masking unavailable: %s", exc, extra={"event": "masking_failed"})
            return MaskOutcome(refusal=catalog_refusal(exc))
        return masking.outcome(text, plan, catalog, normalised=source)

    def _finish_with(
        self,
        ctx: SessionContext,
        state: GateState,
        message: Query | Parse,
        entry: _Entry,
        protocol: str,
        source: str,
        cached: bool,
        mask: MaskOutcome | None,
    ) -> Verdict | Awaitable[Verdict]:
        verdict = entry.verdict
        text = _sql_of(message)
        if verdict.refusal is None and entry.decision.action == "mask" and mask is None:
            # The policy masks this statement but names no mask for the identity: fail closed.
            verdict = _refuse(
                "42501", "pgwarden: the policy asks for masks it does not name; the statement was not run"
            )
        elif mask is not None and mask.refusal is not None:
            verdict = Verdict(refusal=mask.refusal)
        masked = mask.record() if mask is not None and mask.refusal is None else []
        first_id = ""
        forwarded = verdict.refusal is None
        try:
            inputs = self._record_inputs(ctx, state, text, source, protocol)
            if len(inputs) != len(entry.results):
                raise AssertionError("one decision result per statement")
            for i, input_pieces in enumerate(inputs):
                decision_id = new_decision_id()
                first_id = first_id or decision_id
                decided = self._decided_json(ctx, entry, i, forwarded=forwarded, cached=cached, masked=masked)
                self.decision_log.write_serialised(decision_id, decided, input_pieces)
                if not cached:
                    metrics.DECISION_SECONDS.observe(entry.results[i][1] / 1e9)
        except DecisionLogError as exc:
            metrics.DECISION_LOG_FAILURES.inc()
            if not self.decision_log.fail_open:
                log.error("%s", exc, extra={"event": "decision_log_failed"})
                return _refuse(
                    "42501",
                    "pgwarden cannot record its decision, so the statement was not forwarded (fail closed)",
                    detail=str(exc),
                )
            log.error(
                "%s; FORWARDING WITHOUT A DECISION RECORD because audit.decision_log.on_failure is forward",
                exc,
                extra={"event": "decision_log_failed_open", "fields": {"session": ctx.session_id}},
            )
        if verdict.refusal is not None:
            verdict = _with_decision_id(verdict, first_id)
        counter = metrics.STATEMENT_COUNTERS.get((entry.decision.action, verdict.refusal is None))
        if counter is not None:
            counter.inc()
        replacement, transformer = None, verdict.transformer
        if verdict.refusal is None and mask is not None:
            replacement, transformer = self._masked_message(state, message, entry, mask)
        verdict = Verdict(
            refusal=verdict.refusal,
            transformer=transformer,
            notices=verdict.notices,
            replacement=replacement,
            decision_id=first_id,
            action=entry.decision.action,
            reasons=tuple(entry.decision.reasons),
            masked=tuple(f"{m.get('column')}:{m.get('strategy')}" for m in masked) if masked else (),
        )
        if isinstance(message, Parse):
            state.statements[message.name] = _remembered(entry, verdict)
            if mask is not None and verdict.refusal is None:
                state.masked[message.name] = mask
            else:
                state.masked.pop(message.name, None)
            state.described.pop(message.name, None)
        if verdict.refusal is None:
            self._track_session_effects(state, source, entry, ctx.connection)
            if (
                entry.decision.action == "review"
                and self.approvals is not None
                and isinstance(message, Query)
            ):
                return self._hold(ctx, text, None, "simple", entry.decision, verdict)
        return verdict

    def _masked_message(
        self, state: GateState, message: Query | Parse, entry: _Entry, mask: MaskOutcome
    ) -> tuple[bytes | None, ResultTransformer | None]:
        """The bytes to send instead (when rewritten) and the result masker (when anything is masked)."""
        masking = self.masking
        assert masking is not None and mask.rewritten is not None
        replacement = None
        if mask.changed:
            sql = mask.rewritten.sql
            if isinstance(message, Query):
                replacement = Query(sql).encode()
            else:
                replacement = Parse(message.name, sql, message.param_types).encode()
        if not (mask.changed or entry.decision.action == "mask"):
            return replacement, None
        if isinstance(message, Parse):
            name = message.name
            return replacement, masking.result_masker(
                mask, on_statement_fields=lambda fields: state.described.__setitem__(name, fields)
            )
        return replacement, masking.result_masker(mask)

    def _track_session_effects(self, state: GateState, source: str, entry: _Entry, connection: str) -> None:
        effects = session_effects(source)
        if not effects:
            return
        for kind, name in effects:
            if kind == "ddl":
                if self.masking is not None:
                    # The catalog the rewriter relies on is changing: read it again for what follows.
                    self.masking.catalogs.invalidate(connection)
            elif kind == "prepare":
                state.statements[name] = _remembered(entry, ALLOW)
            elif kind == "deallocate":
                state.statements.pop(name, None)
            elif kind == "deallocate_all":
                state.statements = {k: v for k, v in state.statements.items() if k == ""}
        if any(kind != "ddl" for kind, _ in effects):
            # Settings, roles and prepared statements are part of what a decision depended on.
            state.epoch += 1
            state.cache.clear()


def _remembered(entry: _Entry, verdict: Verdict) -> _Entry:
    return _Entry(entry.decision, verdict, [], entry.text, entry.created)


def pinned_setting_decision(facts: StatementFacts) -> Decision | None:
    """The deny the gateway itself gives a statement that would change a pinned setting, or None.

    Settings that change how SQL is lexed are pinned so that the gateway's parse cannot diverge
    from Postgres's; `pgwarden policy replay` applies the same rule to recorded statements."""
    for setting in _all_settings(facts.document):
        name = str(setting.get("name") or "").lower()
        allowed = PINNED_SETTINGS.get(name)
        value = setting.get("value")
        if name == "*":
            return Decision("deny", ("set_config with a computed setting name cannot be decided; denied",))
        if allowed is not None and (value is None or str(value).strip().lower() not in allowed):
            return Decision(
                "deny",
                (
                    f"{name} is pinned by pgwarden ({'/'.join(allowed)}): the gateway must lex SQL "
                    "exactly as Postgres does",
                ),
            )
    return None


def _all_settings(doc: Any) -> list[dict[str, Any]]:
    out = list(doc.get("settings") or [])
    for nested in ("prepare", "explain"):
        body = (doc.get(nested) or {}).get("body")
        if body:
            out.extend(_all_settings(body))
    return out


def _refuse(sqlstate: str, message: str, detail: str | None = None) -> Verdict:
    return Verdict(refusal=ErrorResponse.build(sqlstate, message, detail=detail))


def _verdict(decision: Decision, *, holds_reviews: bool = False, masks: bool = False) -> Verdict:
    reasons = "; ".join(decision.reasons)
    if (
        decision.action == "allow"
        or (decision.action == "review" and holds_reviews)
        or (decision.action == "mask" and masks)
    ):
        # A review is held when it reaches Query or Bind (see PolicyGate._hold), and a mask is
        # rewritten in _finish; neither is refused here.
        return ALLOW
    if decision.action == "deny":
        return _refuse("42501", f"pgwarden denied this statement: {reasons}")
    if decision.action == "review":
        return _refuse(
            "42501",
            f"pgwarden: this statement needs approval ({reasons}), but approvals are not enabled on this "
            "gateway, so it was not run",
        )
    columns = ", ".join(sorted({m.column for m in decision.masks}))
    return _refuse(
        "42501",
        f"pgwarden: this statement would return masked columns ({columns}), but result masking is not "
        "enabled on this gateway, so it was not run",
        detail="Select only columns without labels, or ask for masking to be enabled.",
    )


def _with_decision_id(verdict: Verdict, decision_id: str) -> Verdict:
    assert verdict.refusal is not None
    err = verdict.refusal
    fields = [(k, v) for k, v in err.fields if k != "D"]
    detail = err.field("D")
    fields.append(("D", f"decision id {decision_id}" + (f"; {detail}" if detail else "")))
    return Verdict(
        refusal=ErrorResponse(tuple(fields)), transformer=verdict.transformer, notices=verdict.notices
    )


async def explain(gate: PolicyGate, ctx: SessionContext, sql: str) -> list[tuple[dict[str, Any], Decision]]:
    """The input documents and decisions for ``sql`` without running it (``pgwarden explain``)."""
    analysis = cached_analysis(sql)
    if isinstance(analysis, AnalysisError):
        return [({"statement": {"text": sql, "parse_error": str(analysis)}}, fail_closed(str(analysis)))]
    state = ctx.gate_state if isinstance(ctx.gate_state, GateState) else GateState()
    out = []
    for facts, input_doc in gate._inputs(ctx, "simple", analysis):
        decision = gate._pre_decision(ctx, state, facts)
        if decision is None:
            try:
                decision = parse_decision(await gate.engine.evaluate(input_doc))
            except PolicyError as exc:
                decision = fail_closed(str(exc))
        out.append((input_doc, decision))
    return out
