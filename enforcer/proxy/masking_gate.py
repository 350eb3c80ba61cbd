"""Masking in the data path: which sessions are masked, the rewritten statement, the result masker.

Owns: the gateway's side of ``mask``: the identity's mask plan (from the policy's
``pgwarden/masking/identity_masks``, so that every statement of a masked identity is rewritten,
not only those naming a labelled table), the upstream catalogs (one control connection per
upstream, :class:`enforcer.masking.CatalogCache`), a cache of rewrites, and the per-statement
outcome the policy gate turns into a verdict: the text to send instead, the result masker, the
masked columns for the decision record, or the refusal.
Never: forwards a statement of a masked identity that was not rewritten or found not to need it;
any doubt (catalog unreadable, a construct the rewriter does not understand) is a refusal.
"""

from __future__ import annotations

import json
import logging
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from enforcer import metrics
from enforcer.masking import (
    Catalog,
    CatalogCache,
    CatalogUnavailable,
    HmacKey,
    MaskingError,
    MaskPlan,
    ResultMasker,
    Rewritten,
    WireMasks,
    rewrite,
)
from enforcer.policy.decision import Mask
from enforcer.wire import ErrorResponse

if TYPE_CHECKING:
    import psycopg

    from enforcer.config import MaskingConfig, UpstreamConnection
    from enforcer.policy.engine import PolicyEngine
    from enforcer.proxy.gate import SessionContext

log = logging.getLogger("pgwarden.masking")

IDENTITY_MASKS_RULE = "pgwarden/masking/identity_masks"
#: "filter" or "deny": what a masked column in WHERE/JOIN/GROUP BY/ORDER BY does for this identity.
PREDICATES_RULE = "pgwarden/masking/predicates"
_REWRITE_CACHE = 4096


@dataclass(frozen=True)
class MaskOutcome:
    """What masking does to one Query/Parse of a masked session."""

    refusal: ErrorResponse | None = None
    rewritten: Rewritten | None = None
    plan: MaskPlan | None = None
    catalog: Catalog | None = None
    #: The refusal came from a relation the catalog snapshot does not know: reload and try again.
    stale: bool = False

    @property
    def changed(self) -> bool:
        return self.rewritten is not None and self.rewritten.changed

    def record(self) -> list[dict[str, str]]:
        """For the decision record: which columns were masked, how (never values)."""
        return self.rewritten.masked_document() if self.rewritten is not None else []


class MaskingEnforcer:
    def __init__(self, config: MaskingConfig, connections: dict[str, UpstreamConnection]) -> None:
        self.config = config
        self.connections = connections
        key = config.hash_key()
        self.key = HmacKey(key) if key is not None else None
        self.catalogs = CatalogCache(self._connect, ttl=config.catalog_ttl)
        self._wire: dict[tuple[int, int], tuple[MaskPlan, Catalog, WireMasks]] = {}
        # Values keep the plan and catalog they were made with: a key's id() is only trusted while
        # the object it names is alive and the same one.
        self._rewrites: OrderedDict[
            tuple[str, int, int], tuple[MaskPlan, Catalog, Rewritten | MaskingError]
        ] = OrderedDict()
        self._plans: dict[str, MaskPlan] = {}

    async def _connect(self, name: str) -> psycopg.AsyncConnection[Any]:
        import psycopg

        conn = self.connections[name]
        kwargs: dict[str, Any] = {
            "host": conn.host,
            "port": conn.port,
            "dbname": conn.database,
            "user": conn.user,
            "sslmode": conn.sslmode,
            "connect_timeout": max(1, int(conn.connect_timeout)),
            "application_name": "pgwarden-catalog",
        }
        password = conn.password.read()
        if password is not None:
            kwargs["password"] = password
        if conn.sslrootcert is not None:
            kwargs["sslrootcert"] = str(conn.sslrootcert)
        return await psycopg.AsyncConnection.connect(autocommit=True, **kwargs)

    async def close(self) -> None:
        await self.catalogs.close()

    # ------------------------------------------------------------------ the identity's plan
    def plan_from(self, raw: Any, predicates: Any = None) -> MaskPlan | None:
        """The plan for the policy's ``identity_masks`` answer (None: the identity sees everything).

        ``predicates`` is the policy's choice for this identity; absent, ``masking.predicates``."""
        if not raw:
            return None
        if predicates is None:
            predicates = self.config.predicates
        if predicates not in ("filter", "deny"):
            raise MaskingError(f"the policy's masking predicates mode {predicates!r} is not filter or deny")
        if not isinstance(raw, list) or not all(isinstance(m, dict) for m in raw):
            raise MaskingError("the policy's identity_masks is not a list of masks")
        # Identities with the same masks share one plan, and so its rewrites.
        key = json.dumps([raw, predicates], sort_keys=True)
        known = self._plans.get(key)
        if known is not None:
            return known
        if len(self._plans) > 256:
            self._plans.clear()
        masks = [Mask(str(m.get("column")), str(m.get("label", "")), str(m.get("strategy"))) for m in raw]
        plan = self._plans[key] = MaskPlan.from_masks(
            masks,
            hmac_key=self.key,
            predicates="deny" if predicates == "deny" else "filter",
            redact_text=self.config.redact_text,
            keep=self.config.partial_keep,
            trusted_functions=self.config.trusted_functions,
        )
        return plan

    async def identity_plan(self, engine: PolicyEngine, ctx: SessionContext) -> MaskPlan | None:
        doc = {"identity": ctx.identity.to_document()}
        raw = await engine.evaluate_rule(IDENTITY_MASKS_RULE, doc)
        if not raw:
            return None
        return self.plan_from(raw, await engine.evaluate_rule(PREDICATES_RULE, doc))

    # ------------------------------------------------------------------ statements
    def _rewrite(self, text: str, plan: MaskPlan, catalog: Catalog) -> Rewritten | MaskingError:
        key = (text, id(plan), id(catalog))
        hit = self._rewrites.get(key)
        if hit is not None and hit[0] is plan and hit[1] is catalog:
            self._rewrites.move_to_end(key)
            return hit[2]
        try:
            result: Rewritten | MaskingError = rewrite(text, plan, catalog)
        except MaskingError as exc:
            result = exc
        self._rewrites[key] = (plan, catalog, result)
        if len(self._rewrites) > _REWRITE_CACHE:
            self._rewrites.popitem(last=False)
        return result

    def outcome(
        self, text: str, plan: MaskPlan, catalog: Catalog, *, normalised: str | None = None
    ) -> MaskOutcome:
        """Rewrite ``text``, or find that nothing needs rewriting.

        ``normalised`` is the statement with its literals replaced by ``$n`` when the gateway knows
        its meaning does not depend on them: if that form needs no rewrite, neither does this one,
        so literal-only variants (psql scripts, simple-protocol drivers) are rewritten once."""
        if normalised is not None and normalised != text:
            general = self._rewrite(normalised, plan, catalog)
            if isinstance(general, Rewritten) and not general.changed:
                return MaskOutcome(rewritten=general, plan=plan, catalog=catalog)
        result = self._rewrite(text, plan, catalog)
        if isinstance(result, MaskingError):
            return MaskOutcome(
                refusal=ErrorResponse.build(
                    result.sqlstate,
                    f"pgwarden: masking cannot be guaranteed for this statement, so it was not run: "
                    f"{result.reason}",
                    hint="Select what you need from tables directly; labelled columns come back masked.",
                ),
                plan=plan,
                catalog=catalog,
                stale=result.stale_catalog,
            )
        if result.changed:
            for m in result.masked_document():
                metrics.MASKED_FIELDS.labels(strategy=str(m.get("strategy", ""))).inc()
        return MaskOutcome(rewritten=result, plan=plan, catalog=catalog)

    def wire_masks(self, plan: MaskPlan, catalog: Catalog) -> WireMasks:
        key = (id(plan), id(catalog))
        hit = self._wire.get(key)
        if hit is not None and hit[0] is plan and hit[1] is catalog:
            return hit[2]
        if len(self._wire) > 64:
            self._wire.clear()
        masks = WireMasks.build(plan, catalog)
        self._wire[key] = (plan, catalog, masks)
        return masks

    def result_masker(self, outcome: MaskOutcome, **kw: Any) -> ResultMasker:
        assert outcome.plan is not None and outcome.catalog is not None
        return ResultMasker(self.wire_masks(outcome.plan, outcome.catalog), rewritten=outcome.rewritten, **kw)


def catalog_refusal(exc: CatalogUnavailable | Exception) -> ErrorResponse:
    return ErrorResponse.build(
        "42501",
        f"pgwarden: {exc}; the statement was not run (fail closed)",
        hint="The gateway log has the cause; the catalog is read again on the next statement.",
    )
