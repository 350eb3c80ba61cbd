"""Name resolution inside one statement: which FROM item, CTE or relation a name refers to.

A :class:`Scope` is one query level (a SELECT, or the target level of INSERT/UPDATE/DELETE/MERGE/
COPY). It records the CTE names the level defines, the aliases of its FROM items (a base relation,
or ``None`` for a derived table: sub-select, function, CTE reference, join alias) and its output
column names. Lookups follow Postgres's visibility rules closely enough for policy facts: CTE
names are visible in every nested level; FROM aliases are visible in nested levels (correlated
sub-queries) except across a *barrier* -- a non-LATERAL sub-select in FROM cannot see its
siblings, and the source query of an INSERT cannot see the target.

Resolution here is syntactic (no catalog): an unqualified column is attributed to a table only
when the level has exactly one FROM item, a base relation, and no outer level could supply the
name. This module never records facts; ``walker.py`` does.
"""

from __future__ import annotations

RelationName = tuple[str | None, str]
"""(schema as written or None, relation name)."""


class Scope:
    __slots__ = ("aliases", "barrier", "ctes", "items", "outputs", "parent", "target")

    def __init__(self, parent: Scope | None, barrier: bool = False) -> None:
        self.parent = parent
        self.barrier = barrier
        self.ctes: set[str] = set()
        self.aliases: dict[str, RelationName | None] = {}
        self.items: list[RelationName | None] = []
        self.outputs: set[str] = set()
        self.target: RelationName | None = None

    def add_item(self, alias: str, relation: RelationName | None) -> None:
        """A FROM item (or DML target): visible by ``alias`` and counted for ``*`` expansion."""
        self.aliases[alias] = relation
        self.items.append(relation)

    def add_alias(self, alias: str, relation: RelationName | None) -> None:
        """A name that refers to rows without being a FROM item of its own (join alias, EXCLUDED)."""
        self.aliases.setdefault(alias, relation)

    def lookup(self, name: str) -> tuple[bool, RelationName | None]:
        """Whether ``name`` is a visible FROM alias, and the base relation it stands for."""
        scope: Scope | None = self
        hidden = False
        while scope is not None:
            if not hidden and name in scope.aliases:
                return True, scope.aliases[name]
            hidden = scope.barrier
            scope = scope.parent
        return False, None

    def is_cte(self, name: str) -> bool:
        scope: Scope | None = self
        while scope is not None:
            if name in scope.ctes:
                return True
            scope = scope.parent
        return False

    def outer_has_aliases(self) -> bool:
        child = self
        scope = self.parent
        while scope is not None:
            if not child.barrier and scope.aliases:
                return True
            child, scope = scope, scope.parent
        return False

    def single_relation(self) -> RelationName | None:
        """The relation an unqualified column must belong to, when syntax alone decides it."""
        if len(self.items) == 1 and self.items[0] is not None and not self.outer_has_aliases():
            return self.items[0]
        return None
