"""Which relations and columns a plan protects, once the catalog is taken into account.

Owns: the *effective* masks of a relation -- its own labels, the labels of the tables it inherits
from (partitions and inheritance children hold the same data), and generated columns computed
from a masked column -- and whether a view or materialized view reads masked data.
Never: parses statements or touches the wire. Both the rewriter and the wire masker use it, so
they agree on what is masked.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from enforcer.masking.catalog import Catalog, Column, Relation
from enforcer.masking.plan import ColumnMask, MaskPlan, stricter

_MAX_DEPTH = 64


class Protection:
    """A plan seen through a catalog. Cheap to build; memoises per relation."""

    def __init__(self, plan: MaskPlan, catalog: Catalog) -> None:
        self.plan = plan
        self.catalog = catalog
        self._masks: dict[int, Mapping[str, ColumnMask]] = {}
        self._reads: dict[int, bool] = {}

    def column_masks(self, rel: Relation) -> Mapping[str, ColumnMask]:
        """Masks of ``rel``'s columns by column name (empty: nothing to mask)."""
        found = self._masks.get(rel.oid)
        if found is None:
            found = MappingProxyType(self._compute_masks(rel, 0))
            self._masks[rel.oid] = found
        return found

    def _compute_masks(self, rel: Relation, depth: int) -> dict[str, ColumnMask]:
        masks: dict[str, ColumnMask] = {}
        names = {c.name for c in rel.columns}
        for col, m in self.plan.relation_masks(rel.schema, rel.name).items():
            if col in names:
                masks[col] = stricter(masks.get(col), m)
        if depth < _MAX_DEPTH:
            for parent_oid in rel.parents:
                parent = self.catalog.by_oid(parent_oid)
                if parent is None:
                    continue
                for col, m in self._compute_masks(parent, depth + 1).items():
                    if col in names:
                        masks[col] = stricter(masks.get(col), m)
        # A stored generated column computed from a masked column is a copy of it.
        for attnum, sources in rel.generated_from:
            gen = rel.column_at(attnum)
            if gen is None:
                continue
            for src_attnum in sources:
                src = rel.column_at(src_attnum)
                if src is not None and src.name in masks:
                    m = masks[src.name]
                    derived = ColumnMask(m.strategy, m.label or f"derived from {src.name}", m.keep)
                    masks[gen.name] = stricter(masks.get(gen.name), derived)
        return masks

    def column_mask_at(self, rel: Relation, attnum: int) -> tuple[ColumnMask, Column] | None:
        col = rel.column_at(attnum)
        if col is None:
            return None
        m = self.column_masks(rel).get(col.name)
        return None if m is None else (m, col)

    def reads_masked(self, rel: Relation) -> bool:
        """Whether a view or materialized view's definition reads masked data (transitively)."""
        return self._reads_masked(rel, 0)

    def _reads_masked(self, rel: Relation, depth: int) -> bool:
        if rel.kind not in ("view", "matview"):
            return False
        known = self._reads.get(rel.oid)
        if known is not None:
            return known
        if depth > _MAX_DEPTH:
            return True  # fail closed on absurd nesting
        self._reads[rel.oid] = False  # cycles cannot exist in Postgres; guard anyway
        result = False
        for ref_oid, attnum in rel.depends_on:
            ref = self.catalog.by_oid(ref_oid)
            if ref is None:
                continue
            masks = self.column_masks(ref)
            if masks:
                if attnum == 0:
                    result = True
                else:
                    col = ref.column_at(attnum)
                    result = col is None or col.name in masks
            if not result and ref.kind in ("view", "matview"):
                result = self._reads_masked(ref, depth + 1)
            if result:
                break
        self._reads[rel.oid] = result
        return result

    def untrusted_calls(self, rel: Relation) -> tuple[str, ...]:
        """Untrusted functions called by a view, directly or through the views it reads."""
        seen: set[int] = set()
        out: list[str] = []
        stack = [rel]
        while stack:
            r = stack.pop()
            if r.oid in seen or len(seen) > 10_000:
                continue
            seen.add(r.oid)
            if r.kind != "view":
                continue  # a materialized view's functions ran when it was refreshed, not now
            out.extend(r.untrusted_calls)
            for ref_oid, _ in r.depends_on:
                ref = self.catalog.by_oid(ref_oid)
                if ref is not None:
                    stack.append(ref)
        return tuple(sorted(set(out)))
