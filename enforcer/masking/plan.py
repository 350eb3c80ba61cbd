"""The mask plan: which columns a statement must see masked, with which strategy, and the hash key.

Owns: :class:`MaskPlan` (built from a decision's masks plus gateway configuration), the strategy
names and their strictness, the keyed-hash key (:class:`HmacKey`) and :class:`MaskingError`, the
one way the masking layer refuses.
Never: reads the catalog, parses SQL or touches bytes of the wire; never takes a key from policy.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal, Protocol

STRATEGIES = ("redact", "partial", "email", "hash", "null")

#: Strictness, as in ``pgwarden.masking`` (policies/rego/pgwarden/masking.rego): when two masks meet
#: (a column labelled twice, a generated column derived from two masked columns) the higher wins.
STRATEGY_RANK = {"email": 1, "partial": 2, "hash": 3, "redact": 4, "null": 5}

#: SQLSTATE of a refusal: the statement is denied, as a policy deny is.
INSUFFICIENT_PRIVILEGE = "42501"

PredicateMode = Literal["filter", "deny"]

ColumnKey = tuple[str, str, str]
"""(schema, relation, column) exactly as the catalog spells them."""


class MaskingError(Exception):
    """Masking cannot be guaranteed for this statement: the gateway must deny it.

    ``reason`` is safe to show the client (it names relations, columns and constructs, never
    values or key material). ``stale_catalog`` is true when the statement names a relation the
    cached catalog does not know: refreshing the catalog and rewriting once more may succeed.
    """

    def __init__(self, reason: str, *, stale_catalog: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.stale_catalog = stale_catalog
        self.sqlstate = INSUFFICIENT_PRIVILEGE


class MaskLike(Protocol):
    """What :meth:`MaskPlan.from_masks` reads of a mask (``enforcer.policy.decision.Mask`` fits)."""

    @property
    def column(self) -> str: ...

    @property
    def label(self) -> str: ...

    @property
    def strategy(self) -> str: ...


_BLOCK = 64  # SHA-256 block size


@dataclass(frozen=True)
class HmacKey:
    """The secret of the ``hash`` strategy (HMAC-SHA256). Comes from configuration, never policy.

    Its ``repr`` never shows the secret. ``inner_block``/``outer_block`` are the key's padded
    blocks (K xor ipad, K xor opad): the rewritten SQL carries them as bytea literals so that
    Postgres computes the same HMAC with built-in ``sha256()`` -- see docs/masking.md for what
    that exposes.
    """

    secret: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if len(self.secret) < 16:
            raise ValueError("the masking hash key must be at least 16 bytes")

    def _padded(self) -> bytes:
        key = hashlib.sha256(self.secret).digest() if len(self.secret) > _BLOCK else self.secret
        return key.ljust(_BLOCK, b"\0")

    @property
    def inner_block(self) -> bytes:
        return bytes(b ^ 0x36 for b in self._padded())

    @property
    def outer_block(self) -> bytes:
        return bytes(b ^ 0x5C for b in self._padded())

    def digest(self, message: bytes) -> bytes:
        return hmac.new(self.secret, message, hashlib.sha256).digest()


@dataclass(frozen=True)
class ColumnMask:
    """How one column is masked. ``keep`` is the most characters ``partial`` leaves visible."""

    strategy: str
    label: str = ""
    keep: int = 4

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise MaskingError(f"unknown masking strategy {self.strategy!r}")
        if self.keep < 0:
            raise ValueError("partial masking cannot keep a negative number of characters")

    @property
    def rank(self) -> int:
        return STRATEGY_RANK[self.strategy]


def stricter(a: ColumnMask | None, b: ColumnMask) -> ColumnMask:
    """The stricter of two masks (``b`` on a tie)."""
    if a is None or b.rank >= a.rank:
        return b
    return a


@dataclass(frozen=True)
class MaskPlan:
    """Everything the rewriter and the wire masker need to know about one statement's masks.

    ``columns`` maps (schema, relation, column) to its mask; relations may be tables, views,
    materialized views or foreign tables (labels on views mask the view's own columns).
    ``predicates`` is the policy's choice for masked columns used in WHERE, JOIN, GROUP BY, ORDER
    BY...: ``filter`` (they compare masked values, the default and the only choice that needs no
    extra refusal) or ``deny`` (refuse such statements). ``trusted_functions`` lists
    ``schema.name`` of user-defined functions allowed although their body is not visible.
    """

    columns: Mapping[ColumnKey, ColumnMask]
    hmac_key: HmacKey | None = None
    predicates: PredicateMode = "filter"
    redact_text: str = "****"
    trusted_functions: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        object.__setattr__(self, "columns", MappingProxyType(dict(self.columns)))
        if self.predicates not in ("filter", "deny"):
            raise ValueError(f"predicates must be 'filter' or 'deny', not {self.predicates!r}")
        if self.hmac_key is None and any(m.strategy == "hash" for m in self.columns.values()):
            raise MaskingError(
                "masking strategy 'hash' needs a key (masking.hash_key in the gateway configuration)"
            )
        if "\0" in self.redact_text:
            raise ValueError("the redaction text cannot contain NUL")

    @classmethod
    def from_masks(
        cls,
        masks: Iterable[MaskLike],
        *,
        hmac_key: HmacKey | None = None,
        predicates: PredicateMode = "filter",
        redact_text: str = "****",
        keep: int = 4,
        trusted_functions: Iterable[str] = (),
    ) -> MaskPlan:
        """A plan from a decision's masks (``column`` is ``schema.relation.column``).

        The strictest strategy wins when a column appears twice.
        """
        columns: dict[ColumnKey, ColumnMask] = {}
        for m in masks:
            parts = m.column.split(".")
            if len(parts) != 3 or not all(parts):
                raise MaskingError(f"mask column {m.column!r} is not schema.relation.column")
            key = (parts[0], parts[1], parts[2])
            columns[key] = stricter(columns.get(key), ColumnMask(m.strategy, m.label, keep))
        return cls(
            columns,
            hmac_key=hmac_key,
            predicates=predicates,
            redact_text=redact_text,
            trusted_functions=frozenset(trusted_functions),
        )

    def relation_masks(self, schema: str, relation: str) -> dict[str, ColumnMask]:
        """The plan's masks of one relation, by column name (labels only; see ``Protection``)."""
        return {c: m for (s, r, c), m in self.columns.items() if s == schema and r == relation}
