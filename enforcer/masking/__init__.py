"""Masking: no real value of a masked column reaches the client, by any path.

Two independent layers. The rewriter (:func:`rewrite`) replaces every protected relation a
statement reads with a sub-select projecting masked expressions, so everything derived from it
(expressions, aggregates, whole rows, COPY, RETURNING, error texts) sees masked values. The wire
masker (:class:`ResultMasker`) masks any result field whose provenance (RowDescription table OID
and attribute number) is a masked column that still arrives unmasked. Catalog facts come from
the upstream through :class:`CatalogCache`. Whatever cannot be guaranteed raises
:class:`MaskingError`: the gateway denies. Design and limits: ``docs/masking.md``.

Imports ``analysis`` (function lists) and ``wire`` (codecs); never ``proxy`` or ``policy``.
"""

from enforcer.masking.catalog import (
    Catalog,
    CatalogCache,
    CatalogUnavailable,
    Column,
    Relation,
    load_catalog,
    parse_search_path,
)
from enforcer.masking.plan import STRATEGIES, ColumnMask, HmacKey, MaskingError, MaskPlan
from enforcer.masking.protection import Protection
from enforcer.masking.rewrite import MaskedColumn, Rewritten, rewrite
from enforcer.masking.strategies import ValueMasker, mask_sql
from enforcer.masking.wire import ResultMasker, WireMasks

__all__ = [
    "STRATEGIES",
    "Catalog",
    "CatalogCache",
    "CatalogUnavailable",
    "Column",
    "ColumnMask",
    "HmacKey",
    "MaskPlan",
    "MaskedColumn",
    "MaskingError",
    "Protection",
    "Relation",
    "ResultMasker",
    "Rewritten",
    "ValueMasker",
    "WireMasks",
    "load_catalog",
    "mask_sql",
    "parse_search_path",
    "rewrite",
]
