"""The statement rewriter: every protected relation a statement reads becomes a masking sub-select.

Owns: :func:`rewrite` -- parse (pglast, Postgres's own grammar), replace each reference to a
relation with masked columns by ``(SELECT id, <mask>(email) AS email, ... FROM ONLY schema.rel)
AS <same alias>``, expand views that read masked data into their (rewritten) definition, mask what
writes return (RETURNING) and what COPY ... TO sends, then deparse. Everything the statement
derives -- expressions, aggregates, whole-row values, set operations, predicates -- then sees
masked values, because the real ones are never in scope.
Never: executes SQL or reads the catalog itself. Whatever it cannot rewrite soundly raises
:class:`MaskingError`: the gateway denies rather than leaks.

Name resolution follows Postgres: schema-qualified names as written, others through the search
path (``pg_catalog`` first unless listed), CTE names shadowing relations by Postgres's scoping
rules. A relation the catalog does not know is refused (``stale_catalog``): its contents cannot be
vouched for. After the rewrite a verification pass walks the whole tree and refuses any reference
to a protected relation that the rewrite did not handle, any function whose body pgwarden cannot
see, and the few built-ins that read other statements' text or table contents by name.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pglast import ast, enums, parse_sql
from pglast.parser import ParseError
from pglast.stream import RawStream

from enforcer.analysis import DYNAMIC_SQL_FUNCTIONS
from enforcer.masking.catalog import Catalog, Column, Relation
from enforcer.masking.plan import ColumnMask, MaskingError, MaskPlan
from enforcer.masking.protection import Protection
from enforcer.masking.strategies import column_kind, effective_strategy, mask_sql, quote_ident

# Relations whose contents reveal masked values or the rewritten statements (and with them the hash
# key's padded blocks): statistics (most common values, histograms) and statement texts.
FORBIDDEN_RELATIONS = frozenset(
    {
        "pg_stats",
        "pg_stats_ext",
        "pg_stats_ext_exprs",
        "pg_statistic",
        "pg_statistic_ext_data",
        "pg_stat_activity",
        "pg_prepared_statements",
        "pg_cursors",
        "pg_stat_statements",
        "pg_stat_statements_info",
    }
)

FORBIDDEN_FUNCTIONS = DYNAMIC_SQL_FUNCTIONS | frozenset(
    {
        "cursor_to_xml",
        "cursor_to_xmlschema",
        "current_query",
        "pg_stat_get_activity",
        "pg_stat_get_backend_activity",
        "pg_stat_statements",
        "pg_stat_statements_info",
        "pg_cursor",
        "pg_prepared_statement",
    }
)
FORBIDDEN_FUNCTION_PREFIXES = ("dblink", "pg_read_")

# Statements that carry relation names but never read rows into a result.
_NAME_ONLY_STATEMENTS: tuple[type[ast.Node], ...] = (
    ast.TransactionStmt,
    ast.VariableSetStmt,
    ast.VariableShowStmt,
    ast.DiscardStmt,
    ast.DeallocateStmt,
    ast.ListenStmt,
    ast.UnlistenStmt,
    ast.NotifyStmt,
    ast.CheckPointStmt,
    ast.ClosePortalStmt,
    ast.FetchStmt,
    ast.LockStmt,
    ast.TruncateStmt,
    ast.VacuumStmt,
    ast.ClusterStmt,
    ast.ReindexStmt,
    ast.DropStmt,
    ast.ConstraintsSetStmt,
    ast.CommentStmt,
)

# Definitions whose bodies are not executed now (a later read of the view is rewritten then; a
# later call of the function is refused as untrusted).
_DEFINITION_STATEMENTS: tuple[type[ast.Node], ...] = (ast.ViewStmt, ast.CreateFunctionStmt)

_MAX_VIEW_DEPTH = 32


@dataclass(frozen=True)
class MaskedColumn:
    """A column the rewrite masked (for the decision log; never a value)."""

    schema: str
    relation: str
    column: str
    strategy: str
    label: str

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.relation}.{self.column}"

    def to_document(self) -> dict[str, str]:
        return {"column": self.qualified, "strategy": self.strategy, "label": self.label}


@dataclass(frozen=True)
class Rewritten:
    """The result of :func:`rewrite`.

    ``sql`` is what to send upstream instead of the original (the original itself when nothing
    needed masking). ``masked`` lists the columns masked and how. ``scrub_errors`` is true when the
    statement writes a table with masked columns: its errors can quote real values (a constraint's
    "Failing row contains (...)"), so the wire masker must withhold error texts.
    """

    sql: str
    changed: bool
    masked: tuple[MaskedColumn, ...]
    scrub_errors: bool
    statements: int

    def masked_document(self) -> list[dict[str, str]]:
        return [m.to_document() for m in self.masked]


def rewrite(
    sql: str,
    plan: MaskPlan,
    catalog: Catalog,
    search_path: Sequence[str] | None = None,
    *,
    user: str | None = None,
) -> Rewritten:
    """Rewrite ``sql`` (one or more statements) so that no real value of a masked column is returned.

    ``search_path`` is the session's (``SHOW search_path`` split, e.g. ``["$user", "public"]``);
    ``None`` uses the role's default from the catalog. ``user`` replaces ``$user`` (default: the
    catalog's ``current_user``). ``$n`` parameters are kept, so the result can be sent in a Parse.
    Raises :class:`MaskingError` when masking cannot be guaranteed.
    """
    try:
        raws = parse_sql(sql)
    except ParseError as exc:
        raise MaskingError(f"the statement does not parse: {exc.args[0] if exc.args else exc}") from exc
    path = _effective_path(
        catalog.search_path if search_path is None else search_path, user or catalog.current_user
    )
    protection = Protection(plan, catalog)
    texts: list[str] = []
    masked: dict[tuple[str, str, str], MaskedColumn] = {}
    scrub = False
    changed = False
    for raw in raws:
        walker = _Walker(plan, catalog, protection, path)
        stmt = raw.stmt
        if stmt is None:
            continue
        walker.statement(stmt)
        walker.verify(stmt)
        scrub = scrub or walker.scrub_errors
        masked.update(walker.masked)
        if walker.changed:
            changed = True
            try:
                texts.append(str(RawStream()(stmt)))
            except Exception as exc:  # a printer pglast lacks: refuse rather than guess
                raise MaskingError(
                    f"the rewritten statement could not be printed ({type(exc).__name__})"
                ) from exc
        else:
            start = raw.stmt_location or 0
            end = start + raw.stmt_len if raw.stmt_len else len(sql)
            texts.append(sql[start:end].strip().rstrip(";").strip())
    if not changed:
        return Rewritten(sql, False, tuple(masked.values()), scrub, len(raws))
    out = "; ".join(texts)
    try:
        parse_sql(out)
    except ParseError as exc:  # pragma: no cover - a deparser bug; never send what we cannot parse
        raise MaskingError("the rewritten statement does not parse") from exc
    return Rewritten(out, True, tuple(sorted(masked.values(), key=_sort_key)), scrub, len(raws))


def _sort_key(m: MaskedColumn) -> tuple[str, str, str]:
    return (m.schema, m.relation, m.column)


def _effective_path(search_path: Sequence[str], user: str) -> list[str]:
    out: list[str] = []
    for schema in search_path:
        name = user if schema == "$user" else schema
        if name and name not in out:
            out.append(name)
    if "pg_catalog" not in out:
        out.insert(0, "pg_catalog")
    return out


# --------------------------------------------------------------------------- scopes


@dataclass
class _Target:
    """The relation a DML statement writes, when it has masked columns (its values are real)."""

    relation: Relation
    masks: Mapping[str, ColumnMask]


@dataclass
class _Item:
    """A FROM item as seen by column references: its reference name and column names."""

    refname: str | None
    columns: list[str] | None  # None: not known
    tainted: set[str] = field(default_factory=set)
    taint_all: bool = False
    qualname: tuple[str, str] | None = None  # unaliased relation: reachable as schema.rel.col
    replaced: bool = False  # a relation replaced by a sub-select: schema.rel.col must lose the schema
    target: _Target | None = None
    in_star: bool = True  # part of an unqualified * (not RETURNING's old/new)

    def has_taint(self) -> bool:
        return self.taint_all or bool(self.tainted)

    def column_tainted(self, name: str) -> bool:
        return self.taint_all or name in self.tainted


@dataclass
class _Cte:
    columns: list[str] | None
    tainted: set[str]
    taint_all: bool


@dataclass
class _Level:
    """One query level: its FROM items and the CTE names its WITH defines."""

    parent: _Level | None
    barrier: bool = False  # the parent level's FROM items are invisible (non-LATERAL sub-select)
    items: list[_Item] = field(default_factory=list)
    ctes: dict[str, _Cte] = field(default_factory=dict)
    merged_join: bool = False  # an unaliased JOIN ... USING / NATURAL (its * merges columns)

    def visible(self) -> Iterator[_Level]:
        """Levels whose FROM items a column reference here can see, innermost first."""
        level: _Level | None = self
        hidden = False
        while level is not None:
            if not hidden:
                yield level
            hidden = level.barrier
            level = level.parent

    def cte(self, name: str) -> _Cte | None:
        level: _Level | None = self
        while level is not None:
            if name in level.ctes:
                return level.ctes[name]
            level = level.parent
        return None

    def by_refname(self, name: str) -> _Item | None:
        for level in self.visible():
            for item in level.items:
                if item.refname == name:
                    return item
        return None

    def by_qualname(self, schema: str, name: str) -> _Item | None:
        for level in self.visible():
            for item in level.items:
                if item.qualname == (schema, name):
                    return item
        return None


@dataclass
class _Outputs:
    names: list[str] | None
    tainted: list[bool] | None

    @property
    def any_taint(self) -> bool:
        return self.tainted is None or any(self.tainted)

    def item(self, refname: str | None, alias: ast.Alias | None) -> _Item:
        names = _renamed(self.names, alias)
        tainted: set[str] = set()
        taint_all = self.tainted is None
        if names is not None and self.tainted is not None:
            tainted = {n for n, t in zip(names, self.tainted, strict=False) if t}
        return _Item(refname, names, tainted, taint_all)


_NO_OUTPUTS = _Outputs([], [])


def _renamed(names: list[str] | None, alias: ast.Alias | None) -> list[str] | None:
    given = _strs(alias.colnames or ()) if alias else []
    if not given:
        return None if names is None else list(names)
    if names is None:
        return None
    return given + names[len(given) :]


@dataclass
class _Ref:
    """What a column reference resolved to."""

    item: _Item | None
    column: str | None  # None: the whole row
    candidates: list[_Item] = field(default_factory=list)  # other items it might mean
    strip: int = 0  # leading name parts to drop (schema of a replaced relation)
    consumed: int = 1  # names (after ``strip``) that name the relation and column; more select fields

    def tainted(self) -> bool:
        hit = False
        if self.item is not None:
            hit = self.item.has_taint() if self.column is None else self.item.column_tainted(self.column)
        return hit or any(c.has_taint() for c in self.candidates)


@dataclass(frozen=True)
class _TargetCtx:
    """How references to the written table's masked columns are treated in the clause at hand.

    ``mask``: replaced by their masked form (RETURNING, WHERE, joins); ``set``: kept real when
    assigned to a column masked at least as strictly (rank >= their own), else masked.
    """

    kind: str
    allowed_rank: int = 0


_MASK = _TargetCtx("mask")


class _Flag:
    __slots__ = ("hit",)

    def __init__(self) -> None:
        self.hit = False


# --------------------------------------------------------------------------- the walker


class _Walker:
    """Rewrites one statement in place."""

    def __init__(self, plan: MaskPlan, catalog: Catalog, protection: Protection, path: list[str]) -> None:
        self.plan = plan
        self.catalog = catalog
        self.protection = protection
        self.paths = [path]
        # id -> node: holding the node keeps its id from being reused by a node created later.
        self.handled: dict[int, ast.Node] = {}
        self.masked: dict[tuple[str, str, str], MaskedColumn] = {}
        self.changed = False
        self.scrub_errors = False
        self.target_ctx: _TargetCtx | None = None
        self.view_depth = 0
        self.exempt = False
        #: ids of nodes pgwarden generated (mask expressions): ``verify`` does not check them.
        self.generated: dict[int, ast.Node] = {}
        #: Bumped whenever a reference is replaced by its masked form (output names must be kept).
        self.replacements = 0

    def parse_select(self, sql: str) -> ast.SelectStmt:
        stmt = _parse_select(sql)
        self.generated.update((id(n), n) for n in _walk(stmt))
        return stmt

    def parse_expr(self, sql: str) -> ast.Node:
        node = _parse_expr(sql)
        self.generated.update((id(n), n) for n in _walk(node))
        return node

    # ------------------------------------------------------------------ statements
    def statement(self, node: ast.Node) -> None:
        if isinstance(
            node, ast.SelectStmt | ast.InsertStmt | ast.UpdateStmt | ast.DeleteStmt | ast.MergeStmt
        ):
            self.query(node, None)
        elif isinstance(node, ast.CopyStmt):
            self.copy(node)
        elif isinstance(node, ast.ExplainStmt):
            assert node.query is not None
            self.statement(node.query)
            hashed = sorted(m.qualified for m in self.masked.values() if m.strategy == "hash")
            if hashed:
                raise MaskingError(
                    "EXPLAIN of a statement that hashes masked columns would show the hash key's "
                    f"material ({', '.join(hashed)})"
                )
        elif isinstance(node, ast.PrepareStmt | ast.DeclareCursorStmt):
            assert node.query is not None
            self.statement(node.query)
        elif isinstance(node, ast.CreateTableAsStmt):
            self.create_table_as(node)
        elif isinstance(node, ast.ExecuteStmt):
            node.params = self.exprs(node.params, _Level(None), predicate=False)
        elif isinstance(node, ast.DoStmt):
            raise MaskingError("DO runs code pgwarden cannot see, so masking cannot be guaranteed")
        elif isinstance(node, ast.CallStmt):
            raise MaskingError("CALL runs a procedure pgwarden cannot see, so masking cannot be guaranteed")
        elif isinstance(node, _DEFINITION_STATEMENTS):
            self.exempt = True
        elif isinstance(node, _NAME_ONLY_STATEMENTS):
            for child in _walk(node):
                if isinstance(child, ast.RangeVar):
                    self.handled[id(child)] = child
        # Anything else (DDL, GRANT, ...) is left as written; ``verify`` refuses it if it names a
        # protected relation.

    def create_table_as(self, node: ast.CreateTableAsStmt) -> None:
        if node.into is not None and node.into.rel is not None:
            self.handled[id(node.into.rel)] = node.into.rel
        query = node.query
        if query is None:
            return
        if isinstance(query, ast.ExecuteStmt):
            self.statement(query)
            return
        self.statement(query)
        if _enum(node.objtype) == int(enums.ObjectType.OBJECT_MATVIEW) and self.changed:
            raise MaskingError(
                "CREATE MATERIALIZED VIEW over masked columns would store their values; "
                "create it as a view, or label its columns and create it with an unmasked role"
            )

    def query(self, node: ast.Node, parent: _Level | None, barrier: bool = False) -> _Outputs:
        if isinstance(node, ast.SelectStmt):
            return self.select(node, parent, barrier)
        if isinstance(node, ast.InsertStmt | ast.UpdateStmt | ast.DeleteStmt | ast.MergeStmt):
            return self.dml(node, parent, barrier)
        raise MaskingError(f"a {type(node).__name__} in this position cannot be rewritten for masking")

    # ------------------------------------------------------------------ SELECT
    def select(self, node: ast.SelectStmt, parent: _Level | None, barrier: bool = False) -> _Outputs:
        level = _Level(parent, barrier)
        saved_target = self.target_ctx
        if node.withClause is not None:
            self.with_clause(node.withClause, level)
        if node.op is not None and _enum(node.op) != int(enums.SetOperation.SETOP_NONE):
            assert node.larg is not None and node.rarg is not None
            left = self.select(node.larg, level)
            right = self.select(node.rarg, level)
            outs = _merge(left, right)
            self.sort_and_limit(node, _Level(level, items=[outs.item(None, None)]), outs)
            return outs
        if node.valuesLists:
            rows = []
            taints: list[bool] = []
            for row in node.valuesLists:
                new_row = []
                for i, value in enumerate(row):
                    flag = _Flag()
                    new_row.append(self.expr(value, level, False, flag))
                    if i >= len(taints):
                        taints.append(False)
                    taints[i] = taints[i] or flag.hit
                rows.append(tuple(new_row))
            node.valuesLists = tuple(rows)
            outs = _Outputs([f"column{i + 1}" for i in range(len(taints))], taints)
            self.sort_and_limit(node, level, outs)
            return outs
        if node.fromClause:
            node.fromClause = tuple(self.from_item(item, level) for item in node.fromClause)
        node.targetList, outs = self.target_list(node.targetList or (), level)
        node.whereClause = self.expr(node.whereClause, level, True)
        if node.groupClause:
            node.groupClause = tuple(self.output_or_expr(g, level, outs, False) for g in node.groupClause)
        node.havingClause = self.expr(node.havingClause, level, True)
        if node.windowClause:
            node.windowClause = tuple(self.expr(w, level, True) for w in node.windowClause)
        if node.distinctClause:
            node.distinctClause = tuple(
                None if d is None else self.output_or_expr(d, level, outs, True) for d in node.distinctClause
            )
        self.sort_and_limit(node, level, outs)
        for clause in node.lockingClause or ():
            if isinstance(clause, ast.LockingClause):
                for rv in clause.lockedRels or ():
                    self.handled[id(rv)] = rv
        if node.intoClause is not None and node.intoClause.rel is not None:
            self.handled[id(node.intoClause.rel)] = node.intoClause.rel
        self.target_ctx = saved_target
        return outs

    def sort_and_limit(self, node: ast.SelectStmt, level: _Level, outs: _Outputs) -> None:
        if node.sortClause:
            sorts = []
            for sort in node.sortClause:
                if isinstance(sort, ast.SortBy):
                    sort.node = self.output_or_expr(sort.node, level, outs, True)
                sorts.append(sort)
            node.sortClause = tuple(sorts)
        node.limitCount = self.expr(node.limitCount, level, False)
        node.limitOffset = self.expr(node.limitOffset, level, False)

    def output_or_expr(self, node: Any, level: _Level, outs: _Outputs, output_first: bool) -> Any:
        """ORDER BY / GROUP BY / DISTINCT ON item: an output name, a position, or an expression.

        A bare name matching an output column means that column in ORDER BY and DISTINCT ON
        (``output_first``); in GROUP BY an input column of that name wins.
        """
        idx: int | None = None
        by_name = False
        if outs.names is not None:
            if isinstance(node, ast.A_Const) and isinstance(node.val, ast.Integer):
                idx = (node.val.ival or 0) - 1
            elif isinstance(node, ast.ColumnRef):
                single = _strs(node.fields)
                if len(single) == 1 and len(node.fields or ()) == 1 and single[0] in outs.names:
                    idx = outs.names.index(single[0])
                    by_name = True
        deny = self.plan.predicates == "deny"
        tainted = outs.tainted
        if deny and idx is not None and tainted is not None and 0 <= idx < len(tainted) and tainted[idx]:
            assert outs.names is not None
            raise self.deny_predicate(outs.names[idx])
        # Still walked (references to a written table's columns must be masked), but an output
        # name is not a predicate on an input column.
        return self.expr(node, level, not (by_name and output_first))

    def target_list(
        self, targets: Sequence[ast.Node], level: _Level
    ) -> tuple[tuple[ast.Node, ...], _Outputs]:
        out: list[ast.Node] = []
        names: list[str] | None = []
        tainted: list[bool] = []
        for target in targets:
            if not isinstance(target, ast.ResTarget):
                out.append(target)
                continue
            val = target.val
            if isinstance(val, ast.ColumnRef) and val.fields and isinstance(val.fields[-1], ast.A_Star):
                expansion = self.star(val, level)
                if expansion is None or names is None:
                    names = None
                else:
                    names.extend(n for n, _ in expansion)
                    tainted.extend(t for _, t in expansion)
                out.append(target)
                continue
            flag = _Flag()
            self.keep_name(target, level, flag)
            if names is not None:
                names.append(target.name or _colname(target.val))
                tainted.append(flag.hit)
            out.append(target)
        return tuple(out), _Outputs(names, tainted if names is not None else None)

    def keep_name(self, target: ast.ResTarget, level: _Level, flag: _Flag) -> None:
        """Walk a select-list entry; if a reference in it was masked, pin its original output name."""
        name, strength = _figure(target.val)
        before = self.replacements
        target.val = self.expr(target.val, level, False, flag)
        if self.replacements != before and target.name is None and name and strength > 0:
            target.name = name

    def star(self, ref: ast.ColumnRef, level: _Level) -> list[tuple[str, bool]] | None:
        """The (name, tainted) columns a ``*`` / ``t.*`` in a select list expands to."""
        names = _strs(ref.fields)
        if not names:
            items = [i for i in level.items if i.in_star]
        else:
            resolved = self.resolve(names, True, level)
            if resolved.strip:
                ref.fields = (ref.fields or ())[resolved.strip :]
                self.changed = True
            if resolved.item is not None and resolved.item.target is not None:
                raise MaskingError("a whole-row reference to the written table cannot be masked here")
            items = [resolved.item] if resolved.item is not None else []
            if resolved.item is None:
                return None
        out: list[tuple[str, bool]] = []
        for item in items:
            if item.columns is None:
                return None
            out.extend((c, item.column_tainted(c)) for c in item.columns)
        return out

    # ------------------------------------------------------------------ WITH
    def with_clause(self, clause: ast.WithClause, level: _Level) -> None:
        ctes = [c for c in clause.ctes or () if isinstance(c, ast.CommonTableExpr)]
        if clause.recursive:
            for cte in ctes:
                assert cte.ctename is not None
                given = _strs(cte.aliascolnames or ())
                level.ctes[cte.ctename] = _Cte(given or None, set(), True)
        for cte in ctes:
            assert cte.ctename is not None and cte.ctequery is not None
            outs = self.query(cte.ctequery, level, barrier=True)
            names = outs.names
            given = _strs(cte.aliascolnames or ())
            if given and names is not None:
                names = given + names[len(given) :]
            elif given:
                names = None
            tainted = outs.tainted
            extra: list[str] = []
            if isinstance(cte.search_clause, ast.CTESearchClause) and cte.search_clause.search_seq_column:
                extra.append(cte.search_clause.search_seq_column)
            if isinstance(cte.cycle_clause, ast.CTECycleClause):
                extra += [
                    n for n in (cte.cycle_clause.cycle_mark_column, cte.cycle_clause.cycle_path_column) if n
                ]
            if names is not None:
                names = names + extra
            taint_set = (
                {n for n, t in zip(names, tainted, strict=False) if t}
                if names is not None and tainted is not None
                else set()
            )
            level.ctes[cte.ctename] = _Cte(
                names, taint_set, tainted is None or (names is None and outs.any_taint)
            )

    # ------------------------------------------------------------------ FROM
    def from_item(self, node: ast.Node, level: _Level) -> ast.Node:
        if isinstance(node, ast.RangeVar):
            return self.range_var(node, level, None)
        if isinstance(node, ast.RangeTableSample):
            assert isinstance(node.relation, ast.RangeVar)
            node.args = self.exprs(node.args, level, predicate=False)
            node.repeatable = self.expr(node.repeatable, level, False)
            return self.range_var(node.relation, level, node)
        if isinstance(node, ast.RangeSubselect):
            assert node.subquery is not None
            outs = self.query(node.subquery, level, barrier=not node.lateral)
            level.items.append(outs.item(node.alias.aliasname if node.alias else None, node.alias))
            return node
        if isinstance(node, ast.JoinExpr):
            return self.join(node, level)
        if isinstance(node, ast.RangeFunction):
            flag = _Flag()
            functions = []
            for entry in node.functions or ():
                if isinstance(entry, tuple) and entry:
                    functions.append((self.expr(entry[0], level, False, flag), *entry[1:]))
                else:
                    functions.append(entry)
            node.functions = tuple(functions)
            refname = node.alias.aliasname if node.alias else None
            columns: list[str] | None = None
            if node.alias and node.alias.colnames:
                columns = _strs(node.alias.colnames)
            elif node.coldeflist:
                columns = [c.colname for c in node.coldeflist if isinstance(c, ast.ColumnDef) and c.colname]
            if refname is None and len(functions) == 1 and isinstance(functions[0][0], ast.FuncCall):
                fname = functions[0][0].funcname
                refname = fname[-1].sval if fname and isinstance(fname[-1], ast.String) else None
            level.items.append(_Item(refname, columns, set(), flag.hit))
            return node
        if isinstance(node, ast.RangeTableFunc):
            flag = _Flag()
            node.docexpr = self.expr(node.docexpr, level, False, flag)
            node.rowexpr = self.expr(node.rowexpr, level, False, flag)
            node.namespaces = self.exprs(node.namespaces, level, predicate=False, flag=flag)
            node.columns = self.exprs(node.columns, level, predicate=False, flag=flag)
            cols = [
                c.colname for c in node.columns or () if isinstance(c, ast.RangeTableFuncCol) and c.colname
            ]
            level.items.append(_Item(node.alias.aliasname if node.alias else None, cols, set(), flag.hit))
            return node
        # JSON_TABLE and whatever else may appear in FROM: walk it, columns unknown.
        flag = _Flag()
        new = self.expr(node, level, False, flag)
        alias = getattr(node, "alias", None)
        level.items.append(
            _Item(alias.aliasname if isinstance(alias, ast.Alias) else None, None, set(), flag.hit)
        )
        return new if isinstance(new, ast.Node) else node

    def join(self, node: ast.JoinExpr, level: _Level) -> ast.Node:
        before = len(level.items)
        assert node.larg is not None and node.rarg is not None
        node.larg = self.from_item(node.larg, level)
        node.rarg = self.from_item(node.rarg, level)
        children = level.items[before:]
        using = _strs(node.usingClause or ())
        if self.plan.predicates == "deny":
            for name in using:
                if any(c.column_tainted(name) for c in children if c.columns is None or name in c.columns):
                    raise self.deny_predicate(name)
        node.quals = self.expr(node.quals, level, True)
        if node.alias is not None:
            del level.items[before:]
            columns: list[str] | None = []
            tainted: set[str] = set()
            for child in children:
                if child.columns is None or columns is None:
                    columns = None
                else:
                    columns.extend(c for c in child.columns if not (c in using and c in columns))
                tainted |= child.tainted
            level.items.append(
                _Item(
                    node.alias.aliasname,
                    _renamed(columns, node.alias),
                    tainted,
                    any(c.taint_all for c in children),
                )
            )
        elif using or node.isNatural:
            level.merged_join = True
        if node.join_using_alias is not None:
            level.items.append(
                _Item(
                    node.join_using_alias.aliasname,
                    using,
                    {u for u in using if any(c.column_tainted(u) for c in children)},
                    in_star=False,
                )
            )
        return node

    def lookup(self, rv: ast.RangeVar) -> tuple[Relation | None, bool]:
        """(relation, is_system) for a relation name; (None, False) when unknown."""
        name = rv.relname or ""
        if rv.schemaname:
            rel = self.catalog.relation(rv.schemaname, name)
            if rel is not None:
                return rel, False
            return None, self.catalog.is_system(rv.schemaname, name)
        for schema in self.paths[-1]:
            rel = self.catalog.relation(schema, name)
            if rel is not None:
                return rel, False
            if self.catalog.is_system(schema, name):
                return None, True
        return None, False

    def range_var(self, rv: ast.RangeVar, level: _Level, sample: ast.RangeTableSample | None) -> ast.Node:
        self.handled[id(rv)] = rv
        name = rv.relname or ""
        alias = rv.alias
        refname = alias.aliasname if alias and alias.aliasname else name
        if not rv.schemaname:
            cte = level.cte(name)
            if cte is not None:
                names = _renamed(cte.columns, alias)
                tainted = set(cte.tainted)
                if names is not None and cte.columns is not None:
                    tainted = {names[i] for i, c in enumerate(cte.columns) if c in cte.tainted}
                level.items.append(_Item(refname, names, tainted, cte.taint_all))
                return sample or rv
        rel, system = self.lookup(rv)
        if system:
            if name in FORBIDDEN_RELATIONS:
                raise MaskingError(
                    f"{name} can reveal masked values or the rewritten statements; it cannot be read "
                    "while masking applies"
                )
            level.items.append(
                _Item(refname, None, qualname=None if alias else (rv.schemaname or "pg_catalog", name))
            )
            return sample or rv
        if rel is None:
            raise MaskingError(
                f"relation {_display(rv)} is not in pgwarden's catalog (new, temporary or missing), so its "
                "masking cannot be verified",
                stale_catalog=True,
            )
        if rel.name in FORBIDDEN_RELATIONS:
            raise MaskingError(
                f"{rel.qualified} can reveal masked values; it cannot be read while masking applies"
            )
        masks = self.protection.column_masks(rel)
        if rel.kind == "view":
            untrusted = [
                f for f in self.protection.untrusted_calls(rel) if f not in self.plan.trusted_functions
            ]
            if untrusted:
                raise MaskingError(
                    f"view {rel.qualified} calls {', '.join(untrusted)}, whose body pgwarden cannot see"
                )
            if self.protection.reads_masked(rel):
                if sample is not None:
                    raise MaskingError(f"TABLESAMPLE on view {rel.qualified} cannot be masked")
                return self.expand_view(rv, rel, masks, level)
            # A view with labels of its own that reads nothing masked is masked like a table:
            # it keeps running with its owner's rights and its own conditions.
        elif rel.kind == "matview" and not masks and self.protection.reads_masked(rel):
            raise MaskingError(
                f"materialized view {rel.qualified} stores values of masked columns but has no masking "
                "labels of its own; label its columns"
            )
        if masks:
            return self.masked_relation(rv, rel, masks, level, sample)
        columns = [c.name for c in rel.columns]
        level.items.append(
            _Item(refname, _renamed(columns, alias), qualname=None if alias else (rel.schema, rel.name))
        )
        return sample or rv

    def masked_relation(
        self,
        rv: ast.RangeVar,
        rel: Relation,
        masks: Mapping[str, ColumnMask],
        level: _Level,
        sample: ast.RangeTableSample | None,
    ) -> ast.Node:
        parts = []
        for col in rel.columns:
            mask = masks.get(col.name)
            if mask is None:
                parts.append(quote_ident(col.name))
            else:
                parts.append(
                    f"{self.mask_expr(quote_ident(col.name), mask, col, rel)} AS {quote_ident(col.name)}"
                )
        only = "" if rv.inh else "ONLY "
        sub = self.parse_select(
            f"SELECT {', '.join(parts)} FROM {only}{quote_ident(rel.schema)}.{quote_ident(rel.name)}"
        )
        assert sub.fromClause
        inner = sub.fromClause[0]
        assert isinstance(inner, ast.RangeVar)
        self.handled[id(inner)] = inner
        if sample is not None:
            sample.relation = inner
            sub.fromClause = (sample,)
        alias = rv.alias or ast.Alias(aliasname=rv.relname)
        names = _renamed([c.name for c in rel.columns], rv.alias) or []
        tainted = {names[i] for i, c in enumerate(rel.columns) if c.name in masks}
        return self._substitute(level, rv, rel, alias.aliasname, names, tainted, sub, alias)

    def expand_view(
        self, rv: ast.RangeVar, rel: Relation, masks: Mapping[str, ColumnMask], level: _Level
    ) -> ast.Node:
        if self.view_depth >= _MAX_VIEW_DEPTH:
            raise MaskingError(f"views nested too deeply under {rel.qualified}")
        if not rel.definition:
            raise MaskingError(f"the definition of view {rel.qualified} is not known")
        try:
            parsed = parse_sql(rel.definition)
        except ParseError as exc:
            raise MaskingError(f"the definition of view {rel.qualified} does not parse") from exc
        if len(parsed) != 1 or not isinstance(parsed[0].stmt, ast.SelectStmt):
            raise MaskingError(f"the definition of view {rel.qualified} is not a single query")
        body = parsed[0].stmt
        self.view_depth += 1
        self.paths.append(["pg_catalog"])  # the definition was printed with every other name qualified
        try:
            outs = self.select(body, None)
        finally:
            self.paths.pop()
            self.view_depth -= 1
        if rel.security_barrier and body.limitOffset is None and body.limitCount is None:
            # OFFSET 0 keeps the planner from pushing the caller's conditions into the view's
            # rows, as security_barrier does.
            body.limitOffset = ast.A_Const(isnull=False, val=ast.Integer(ival=0))
        colnames = [c.name for c in rel.columns]
        inner_alias = ast.Alias(aliasname=rel.name, colnames=tuple(ast.String(sval=c) for c in colnames))
        query: ast.SelectStmt = body
        tainted_cols = set()
        if outs.tainted is not None and len(outs.tainted) == len(colnames):
            tainted_cols = {c for c, t in zip(colnames, outs.tainted, strict=True) if t}
        else:
            tainted_cols = set(colnames)
        if masks:
            parts = []
            for col in rel.columns:
                mask = masks.get(col.name)
                ref = f"{quote_ident(rel.name)}.{quote_ident(col.name)}"
                parts.append(
                    ref
                    if mask is None
                    else f"{self.mask_expr(ref, mask, col, rel)} AS {quote_ident(col.name)}"
                )
            query = self.parse_select(f"SELECT {', '.join(parts)} FROM (SELECT 1) AS x")
            assert query.fromClause
            holder = query.fromClause[0]
            assert isinstance(holder, ast.RangeSubselect)
            holder.subquery = body
            holder.alias = inner_alias
            tainted_cols |= set(masks)
        user_cols = _strs(rv.alias.colnames if rv.alias else None)
        names = user_cols + colnames[len(user_cols) :]
        refname = (rv.alias.aliasname if rv.alias else rv.relname) or rel.name
        alias = ast.Alias(aliasname=refname, colnames=tuple(ast.String(sval=c) for c in names))
        tainted = {names[i] for i, c in enumerate(colnames) if c in tainted_cols}
        return self._substitute(level, rv, rel, refname, names, tainted, query, alias)

    def _substitute(
        self,
        level: _Level,
        rv: ast.RangeVar,
        rel: Relation,
        refname: str | None,
        names: list[str],
        tainted: set[str],
        subquery: ast.Node,
        alias: ast.Alias,
    ) -> ast.RangeSubselect:
        """``rv`` becomes the sub-select ``subquery AS alias``, known in ``level`` as ``refname``;
        unaliased, it still answers to the relation's qualified name."""
        level.items.append(
            _Item(
                refname,
                names,
                tainted,
                qualname=None if rv.alias else (rel.schema, rel.name),
                replaced=rv.alias is None,
            )
        )
        self.changed = True
        return ast.RangeSubselect(lateral=False, subquery=subquery, alias=alias)

    def mask_expr(self, value_sql: str, mask: ColumnMask, column: Column, rel: Relation) -> str:
        strategy = effective_strategy(mask.strategy, column_kind(column))
        key = (rel.schema, rel.name, column.name)
        self.masked[key] = MaskedColumn(rel.schema, rel.name, column.name, strategy, mask.label)
        return mask_sql(value_sql, mask, column, key=self.plan.hmac_key, redact_text=self.plan.redact_text)

    # ------------------------------------------------------------------ writes
    def dml(self, node: ast.Node, parent: _Level | None, barrier: bool = False) -> _Outputs:
        level = _Level(parent, barrier)
        saved = self.target_ctx
        try:
            return self._dml(node, level)
        finally:
            self.target_ctx = saved

    def _dml(self, node: ast.Node, level: _Level) -> _Outputs:
        with_clause = getattr(node, "withClause", None)
        if isinstance(with_clause, ast.WithClause):
            self.with_clause(with_clause, level)
        rv = getattr(node, "relation", None)
        assert isinstance(rv, ast.RangeVar)
        target_item = self.dml_target(rv)
        target = target_item.target
        if isinstance(node, ast.InsertStmt):
            if node.selectStmt is not None:
                self.target_ctx = None
                self.query(node.selectStmt, level, barrier=True)
            level.items.append(target_item)
            occ = node.onConflictClause
            if occ is not None:
                assert target_item.columns is not None
                excluded = _Item("excluded", list(target_item.columns), in_star=False)
                level.items.append(excluded)
                occ.targetList = self.assignments(occ.targetList, level, target)
                self.target_ctx = _MASK
                occ.whereClause = self.expr(occ.whereClause, level, True)
                level.items.remove(excluded)
        elif isinstance(node, ast.UpdateStmt):
            level.items.append(target_item)
            self.target_ctx = _MASK
            if node.fromClause:
                node.fromClause = tuple(self.from_item(i, level) for i in node.fromClause)
            node.targetList = self.assignments(node.targetList, level, target)
            self.target_ctx = _MASK
            node.whereClause = self.expr(node.whereClause, level, True)
        elif isinstance(node, ast.DeleteStmt):
            level.items.append(target_item)
            self.target_ctx = _MASK
            if node.usingClause:
                node.usingClause = tuple(self.from_item(i, level) for i in node.usingClause)
            node.whereClause = self.expr(node.whereClause, level, True)
        elif isinstance(node, ast.MergeStmt):
            self.target_ctx = _MASK
            assert node.sourceRelation is not None
            node.sourceRelation = self.from_item(node.sourceRelation, level)
            level.items.insert(0, target_item)
            node.joinCondition = self.expr(node.joinCondition, level, True)
            for when in node.mergeWhenClauses or ():
                if not isinstance(when, ast.MergeWhenClause):
                    continue
                self.target_ctx = _MASK
                when.condition = self.expr(when.condition, level, True)
                if _enum(when.commandType) == int(enums.CmdType.CMD_UPDATE):
                    when.targetList = self.assignments(when.targetList, level, target)
                else:
                    self.target_ctx = _MASK
                    when.values = self.exprs(when.values, level, predicate=False)
        else:  # pragma: no cover - callers dispatch only DML here
            raise MaskingError(f"{type(node).__name__} cannot be rewritten for masking")
        returning = getattr(node, "returningClause", None)
        if isinstance(returning, ast.ReturningClause):
            return self.returning(returning, level, target_item)
        return _NO_OUTPUTS

    def dml_target(self, rv: ast.RangeVar) -> _Item:
        self.handled[id(rv)] = rv
        name = rv.relname or ""
        refname = rv.alias.aliasname if rv.alias and rv.alias.aliasname else name
        rel, system = self.lookup(rv)
        if system:
            return _Item(refname, None)
        if rel is None:
            raise MaskingError(
                f"relation {_display(rv)} is not in pgwarden's catalog (new, temporary or missing), so its "
                "masking cannot be verified",
                stale_catalog=True,
            )
        masks = self.protection.column_masks(rel)
        if rel.kind in ("view", "matview") and (masks or self.protection.reads_masked(rel)):
            raise MaskingError(
                f"writes through view {rel.qualified}, which reads masked columns, cannot be masked"
            )
        target = _Target(rel, masks) if masks else None
        if masks:
            self.scrub_errors = True
        return _Item(
            refname,
            [c.name for c in rel.columns],
            set(masks),
            qualname=None if rv.alias else (rel.schema, rel.name),
            target=target,
        )

    def assignments(
        self, targets: Sequence[ast.Node] | None, level: _Level, target: _Target | None
    ) -> tuple[ast.Node, ...] | None:
        """SET clauses: a masked source stays real only when assigned to a column masked as strictly.

        ``UPDATE customers SET email = lower(email)`` keeps working on the real values, while
        ``SET created_at = birth_date`` (an unmasked column) stores the masked value instead of
        laundering the real one into a column that is returned unmasked.
        """
        if targets is None:
            return None

        def rank(name: str | None) -> int:
            if target is None or name is None:
                return 0
            m = target.masks.get(name)
            return 0 if m is None else m.rank

        group_rank: dict[int, int] = {}
        multi: list[ast.ResTarget] = [
            t for t in targets if isinstance(t, ast.ResTarget) and isinstance(t.val, ast.MultiAssignRef)
        ]
        # Rows of SET (a, b) = (...): consecutive ResTargets, colno 1..ncolumns, share one source.
        i = 0
        while i < len(multi):
            val = multi[i].val
            assert isinstance(val, ast.MultiAssignRef)
            n = max(val.ncolumns or 1, 1)
            members = multi[i : i + n]
            low = min(rank(m.name) for m in members)
            for m in members:
                group_rank[id(m)] = low
            i += n
        out: list[ast.Node] = []
        for t in targets:
            if not isinstance(t, ast.ResTarget):
                out.append(t)
                continue
            allowed = group_rank.get(id(t), rank(t.name))
            self.target_ctx = _TargetCtx("set", allowed)
            if t.indirection:
                t.indirection = self.exprs(t.indirection, level, predicate=False)
            if isinstance(t.val, ast.MultiAssignRef):
                t.val.source = self.expr(t.val.source, level, False)
            else:
                t.val = self.expr(t.val, level, False)
            out.append(t)
        self.target_ctx = _MASK
        return tuple(out)

    def returning(self, clause: ast.ReturningClause, level: _Level, target_item: _Item) -> _Outputs:
        old_name, new_name = "old", "new"
        for opt in clause.options or ():
            if isinstance(opt, ast.ReturningOption) and opt.value:
                if _enum(opt.option) == int(enums.ReturningOptionKind.RETURNING_OPTION_OLD):
                    old_name = opt.value
                else:
                    new_name = opt.value
        extra = []
        for alias in (old_name, new_name):
            if level.by_refname(alias) is None:
                extra.append(
                    _Item(
                        alias,
                        target_item.columns,
                        set(target_item.tainted),
                        target=target_item.target,
                        in_star=False,
                    )
                )
        level.items.extend(extra)
        self.target_ctx = _MASK
        out: list[ast.Node] = []
        names: list[str] | None = []
        tainted: list[bool] = []
        for rt in clause.exprs or ():
            if not isinstance(rt, ast.ResTarget):
                out.append(rt)
                continue
            val = rt.val
            if isinstance(val, ast.ColumnRef) and val.fields and isinstance(val.fields[-1], ast.A_Star):
                expanded, cols = self.returning_star(val, level, target_item)
                out.extend(expanded)
                if cols is None or names is None:
                    names = None
                else:
                    names.extend(n for n, _ in cols)
                    tainted.extend(t for _, t in cols)
                continue
            flag = _Flag()
            self.keep_name(rt, level, flag)
            if names is not None:
                names.append(rt.name or _colname(rt.val))
                tainted.append(flag.hit)
            out.append(rt)
        clause.exprs = tuple(out)
        for item in extra:
            level.items.remove(item)
        return _Outputs(names, tainted if names is not None else None)

    def returning_star(
        self, ref: ast.ColumnRef, level: _Level, target_item: _Item
    ) -> tuple[list[ast.Node], list[tuple[str, bool]] | None]:
        names = _strs(ref.fields)
        keep = ast.ResTarget(val=ref)
        if names:
            resolved = self.resolve(names, True, level)
            item = resolved.item
            if resolved.strip:
                ref.fields = (ref.fields or ())[resolved.strip :]
                self.changed = True
            if item is None:
                return [keep], None
            if item.target is None:
                found = None if item.columns is None else [(c, item.column_tainted(c)) for c in item.columns]
                return [keep], found
            return self.masked_columns(item), [(c, item.column_tainted(c)) for c in item.columns or ()]
        # Unqualified *: the written table's columns, then every FROM item's.
        if target_item.target is None:
            items = [i for i in level.items if i.in_star]
            if any(i.columns is None for i in items):
                return [keep], None
            return [keep], [(c, i.column_tainted(c)) for i in items for c in i.columns or ()]
        if level.merged_join:
            raise MaskingError("RETURNING * with a JOIN ... USING in FROM cannot be masked; list the columns")
        out = self.masked_columns(target_item)
        cols: list[tuple[str, bool]] | None = [
            (c, target_item.column_tainted(c)) for c in target_item.columns or ()
        ]
        for item in level.items:
            if item is target_item or not item.in_star:
                continue
            if item.refname is None:
                raise MaskingError("RETURNING * over an unnamed FROM item cannot be masked; list the columns")
            out.append(ast.ResTarget(val=ast.ColumnRef(fields=(ast.String(sval=item.refname), ast.A_Star()))))
            if item.columns is None or cols is None:
                cols = None
            else:
                cols.extend((c, item.column_tainted(c)) for c in item.columns)
        return out, cols

    def masked_columns(self, item: _Item) -> list[ast.Node]:
        """``t.*`` of a written table, each masked column in its masked form."""
        target = item.target
        assert target is not None and item.refname is not None
        rel = target.relation
        parts = []
        for col in rel.columns:
            ref = f"{quote_ident(item.refname)}.{quote_ident(col.name)}"
            mask = target.masks.get(col.name)
            parts.append(
                ref if mask is None else f"{self.mask_expr(ref, mask, col, rel)} AS {quote_ident(col.name)}"
            )
        self.changed = True
        return list(self.parse_select(f"SELECT {', '.join(parts)}").targetList or ())

    def masked_row(self, item: _Item) -> ast.Node:
        target = item.target
        assert target is not None and item.refname is not None
        rel = target.relation
        parts = []
        for col in rel.columns:
            ref = f"{quote_ident(item.refname)}.{quote_ident(col.name)}"
            mask = target.masks.get(col.name)
            parts.append(ref if mask is None else self.mask_expr(ref, mask, col, rel))
        self.changed = True
        return self.parse_expr(
            f"CAST(ROW({', '.join(parts)}) AS {quote_ident(rel.schema)}.{quote_ident(rel.name)})"
        )

    # ------------------------------------------------------------------ COPY
    def copy(self, node: ast.CopyStmt) -> None:
        if node.relation is not None:
            self.handled[id(node.relation)] = node.relation
        if node.is_from:
            return
        if node.query is not None:
            self.query(node.query, None)
            return
        rv = node.relation
        assert rv is not None
        rel, system = self.lookup(rv)
        if system:
            if (rv.relname or "") in FORBIDDEN_RELATIONS:
                raise MaskingError(f"{rv.relname} cannot be copied while masking applies")
            return
        if rel is None:
            raise MaskingError(
                f"relation {_display(rv)} is not in pgwarden's catalog, so its masking cannot be verified",
                stale_catalog=True,
            )
        if rel.kind != "table":
            return  # Postgres refuses COPY ... TO of views, materialized views and foreign tables
        masks = self.protection.column_masks(rel)
        if not masks:
            return
        wanted = _strs(node.attlist or ()) or [c.name for c in rel.columns]
        parts = []
        for name in wanted:
            col = rel.column(name)
            mask = masks.get(name)
            if col is None or mask is None:
                parts.append(quote_ident(name))
            else:
                parts.append(f"{self.mask_expr(quote_ident(name), mask, col, rel)} AS {quote_ident(name)}")
        query = self.parse_select(
            f"SELECT {', '.join(parts)} FROM ONLY {quote_ident(rel.schema)}.{quote_ident(rel.name)}"
        )
        assert query.fromClause
        self.handled[id(query.fromClause[0])] = query.fromClause[0]
        node.query = query
        node.relation = None
        node.attlist = None
        self.changed = True

    # ------------------------------------------------------------------ expressions
    def exprs(
        self, nodes: Sequence[Any] | None, level: _Level, *, predicate: bool, flag: _Flag | None = None
    ) -> Any:
        if nodes is None:
            return None
        return tuple(self.expr(n, level, predicate, flag) for n in nodes)

    def expr(self, node: Any, level: _Level, predicate: bool, flag: _Flag | None = None) -> Any:
        if node is None:
            return None
        if isinstance(node, tuple):
            return tuple(self.expr(n, level, predicate, flag) for n in node)
        if not isinstance(node, ast.Node):
            return node
        if isinstance(node, ast.ColumnRef):
            return self.column_ref(node, level, predicate, flag)
        if isinstance(node, ast.SubLink):
            node.testexpr = self.expr(node.testexpr, level, predicate, flag)
            assert node.subselect is not None
            saved = self.target_ctx
            outs = self.query(node.subselect, level)
            self.target_ctx = saved
            if outs.any_taint:
                if flag is not None:
                    flag.hit = True
                if predicate and self.plan.predicates == "deny":
                    raise self.deny_predicate("a sub-query over masked columns")
            return node
        if isinstance(
            node, ast.SelectStmt | ast.InsertStmt | ast.UpdateStmt | ast.DeleteStmt | ast.MergeStmt
        ):
            saved = self.target_ctx
            self.query(node, level)
            self.target_ctx = saved
            return node
        if isinstance(node, ast.FuncCall):
            node.args = self.expr(node.args, level, predicate, flag)
            node.agg_order = self.expr(node.agg_order, level, True, flag)
            node.agg_filter = self.expr(node.agg_filter, level, True, flag)
            node.over = self.expr(node.over, level, True, flag)
            return node
        if isinstance(node, ast.SortBy):
            node.node = self.expr(node.node, level, True, flag)
            return node
        if isinstance(node, ast.WindowDef):
            node.partitionClause = self.expr(node.partitionClause, level, True, flag)
            node.orderClause = self.expr(node.orderClause, level, True, flag)
            node.startOffset = self.expr(node.startOffset, level, False, flag)
            node.endOffset = self.expr(node.endOffset, level, False, flag)
            return node
        if isinstance(node, ast.RangeVar):
            return node  # left for ``verify``: a relation in an expression is not read here
        for name in _slots(node):
            value = getattr(node, name)
            if isinstance(value, ast.Node | tuple):
                new = self.expr(value, level, predicate, flag)
                if new is not value:
                    setattr(node, name, new)
        return node

    def column_ref(self, node: ast.ColumnRef, level: _Level, predicate: bool, flag: _Flag | None) -> ast.Node:
        fields = node.fields or ()
        star = bool(fields) and isinstance(fields[-1], ast.A_Star)
        names = _strs(fields)
        ref = self.resolve(names, star, level)
        if ref.strip:
            node.fields = fields[ref.strip :]
            self.changed = True
        tainted = ref.tainted()
        if tainted and flag is not None:
            flag.hit = True
        if tainted and predicate and self.plan.predicates == "deny":
            raise self.deny_predicate(".".join(names) or "*")
        item = ref.item
        if item is not None and item.target is not None:
            return self.target_ref(node, ref, item)
        for cand in ref.candidates:
            if cand.target is not None and (ref.column is None or ref.column in cand.target.masks):
                raise MaskingError(
                    f"cannot tell whether {'.'.join(names) or '*'} refers to masked table "
                    f"{cand.target.relation.qualified}; qualify the column"
                )
        return node

    def target_ref(self, node: ast.ColumnRef, ref: _Ref, item: _Item) -> ast.Node:
        target = item.target
        assert target is not None
        ctx = self.target_ctx
        if ctx is None:
            raise MaskingError(
                f"a reference to masked table {target.relation.qualified} appears where pgwarden cannot "
                "mask it"
            )
        if ref.column is None:
            if ctx.kind == "set" and all(m.rank <= ctx.allowed_rank for m in target.masks.values()):
                return node
            self.replacements += 1
            return self.masked_row(item)
        mask = target.masks.get(ref.column)
        if mask is None or (ctx.kind == "set" and mask.rank <= ctx.allowed_rank):
            return node
        col = target.relation.column(ref.column)
        assert col is not None and item.refname is not None
        value = f"{quote_ident(item.refname)}.{quote_ident(col.name)}"
        masked = self.parse_expr(self.mask_expr(value, mask, col, target.relation))
        self.changed = True
        self.replacements += 1
        # Trailing names select fields of a composite column: (masked).field
        rest = [f for f in (node.fields or ())[ref.consumed :] if isinstance(f, ast.String)]
        if rest:
            return ast.A_Indirection(arg=masked, indirection=tuple(rest))
        return masked

    def resolve(self, names: list[str], star: bool, level: _Level) -> _Ref:
        """Resolve a column reference's names as Postgres does (``transformColumnRef``).

        Schema-qualified forms are tried first (``s.t.c``, ``d.s.t.c``, ``s.t.*``), then
        ``t.c`` / ``t.*``, then a column of that name (whose further names select fields of a
        composite value).
        """
        n = len(names)
        if n == 0:  # a bare * inside an expression: every item of this level
            return _Ref(None, None, [i for i in level.items if i.in_star])
        forms: list[tuple[int, int]] = []  # (index of the schema name, names consumed)
        if star and n >= 2:
            forms.append((n - 2, n))  # [db.]schema.rel.*
        elif not star:
            if n >= 4:
                forms.append((n - 3, n))  # db.schema.rel.col
            if n >= 3:
                forms.append((0, 3))  # schema.rel.col
        for schema_at, consumed in forms:
            schema, rel = names[schema_at], names[schema_at + 1]
            item = level.by_qualname(schema, rel)
            if item is None:
                continue
            column = None if star and consumed == n else names[schema_at + 2]
            if item.replaced:
                if level.by_refname(rel) is not item:
                    raise MaskingError(
                        f"{'.'.join(names)} would be captured by another FROM item named {rel}"
                    )
                return _Ref(item, column, strip=schema_at + 1, consumed=consumed - schema_at - 1)
            return _Ref(item, column, consumed=consumed)
        if n == 1 and not star:
            return self._resolve_column(names[0], level)
        item = level.by_refname(names[0])
        if item is not None:
            if n == 1:
                return _Ref(item, None, consumed=1)
            return _Ref(item, names[1], consumed=2)
        return self._resolve_column(names[0], level)

    def _resolve_column(self, name: str, level: _Level) -> _Ref:
        pending: list[_Item] = []
        for lv in level.visible():
            definite = [i for i in lv.items if i.columns is not None and name in i.columns]
            unknown = [i for i in lv.items if i.columns is None]
            if definite:
                return _Ref(definite[0], name, pending + definite[1:] + unknown)
            pending.extend(unknown)
        item = level.by_refname(name)
        if item is not None:
            return _Ref(item, None, pending)
        return _Ref(None, name, pending)

    def deny_predicate(self, what: str) -> MaskingError:
        return MaskingError(
            f"{what} is masked; the policy does not allow filtering, joining, grouping or sorting on masked "
            "values"
        )

    # ------------------------------------------------------------------ verification
    def verify(self, stmt: ast.Node) -> None:
        """Refuse what the rewrite did not account for (the second look, over the final tree)."""
        if self.exempt:
            return
        for node in _walk(stmt):
            if id(node) in self.generated:
                continue
            if isinstance(node, ast.RangeVar):
                if id(node) in self.handled:
                    continue
                rel, _ = self.lookup(node)
                if rel is not None and (
                    self.protection.column_masks(rel) or self.protection.reads_masked(rel)
                ):
                    raise MaskingError(
                        f"{type(stmt).__name__.removesuffix('Stmt')} statements naming {rel.qualified} "
                        "cannot be masked"
                    )
            elif isinstance(node, ast.FuncCall):
                self.check_function(node.funcname or ())
            elif isinstance(node, ast.A_Expr):
                self.check_operator(node.name or ())
            elif isinstance(node, ast.TypeCast) and node.typeName is not None:
                tn = node.typeName.names or ()
                if tn and isinstance(tn[-1], ast.String) and tn[-1].sval in self.catalog.untrusted_cast_types:
                    raise MaskingError(f"a cast to {tn[-1].sval} runs a function pgwarden cannot see")

    def check_function(self, funcname: Sequence[ast.Node]) -> None:
        parts = _strs(funcname)
        if not parts:
            return
        name = parts[-1]
        schema = parts[-2] if len(parts) >= 2 else None
        if name in FORBIDDEN_FUNCTIONS or name.startswith(FORBIDDEN_FUNCTION_PREFIXES):
            raise MaskingError(f"{name}() can read data or statement texts past masking")
        if schema == "pg_catalog":
            return
        if self.catalog.function_untrusted(schema, name):
            trusted = self.plan.trusted_functions
            schemas = [schema] if schema else [s for s, n in self.catalog.untrusted_functions if n == name]
            if all(f"{s}.{name}" in trusted for s in schemas):
                return
            qualified = f"{schema}.{name}" if schema else name
            raise MaskingError(
                f"function {qualified} has a body pgwarden cannot see (it could read masked columns); "
                "it cannot be called while masking applies"
            )

    def check_operator(self, opname: Sequence[ast.Node]) -> None:
        parts = _strs(opname)
        if not parts:
            return
        schema = parts[-2] if len(parts) >= 2 else None
        if schema == "pg_catalog":
            return
        if self.catalog.operator_untrusted(schema, parts[-1]):
            raise MaskingError(f"operator {parts[-1]} runs a function pgwarden cannot see")


# --------------------------------------------------------------------------- helpers


def _merge(left: _Outputs, right: _Outputs) -> _Outputs:
    if left.tainted is None or right.tainted is None or len(left.tainted) != len(right.tainted):
        return _Outputs(left.names, None)
    return _Outputs(left.names, [a or b for a, b in zip(left.tainted, right.tainted, strict=True)])


def _strs(nodes: Sequence[Any] | None) -> list[str]:
    """The names in a list of String nodes (identifiers, column lists)."""
    return [n.sval or "" for n in nodes or () if isinstance(n, ast.String)]


def _enum(value: Any) -> int:
    return -1 if value is None else int(value)


def _slots(node: ast.Node) -> tuple[str, ...]:
    return tuple(getattr(type(node), "__slots__", ()))


def _display(rv: ast.RangeVar) -> str:
    return f"{rv.schemaname}.{rv.relname}" if rv.schemaname else str(rv.relname)


def _parse_select(sql: str) -> ast.SelectStmt:
    stmt = parse_sql(sql)[0].stmt
    assert isinstance(stmt, ast.SelectStmt)
    return stmt


def _parse_expr(sql: str) -> ast.Node:
    targets = _parse_select(f"SELECT {sql}").targetList or ()
    target = targets[0]
    assert isinstance(target, ast.ResTarget) and target.val is not None
    return target.val


def _walk(node: Any) -> Iterator[ast.Node]:
    """Every node under ``node`` (itself included), depth first, without recursion."""
    stack = [node]
    while stack:
        cur = stack.pop()
        if isinstance(cur, tuple | list):
            stack.extend(cur)
        elif isinstance(cur, ast.Node):
            yield cur
            for name in _slots(cur):
                value = getattr(cur, name)
                if isinstance(value, ast.Node | tuple):
                    stack.append(value)


_SQLVALUE_NAMES = {
    0: "current_date",
    1: "current_time",
    2: "current_time",
    3: "current_timestamp",
    4: "current_timestamp",
    5: "localtime",
    6: "localtime",
    7: "localtimestamp",
    8: "localtimestamp",
    9: "current_role",
    10: "current_user",
    11: "user",
    12: "session_user",
    13: "current_catalog",
    14: "current_schema",
}


def _colname(node: Any) -> str:
    """The output name Postgres gives an unnamed select-list expression (``FigureColname``)."""
    name, _ = _figure(node)
    return name or "?column?"


def _figure(node: Any) -> tuple[str | None, int]:
    if isinstance(node, ast.ColumnRef):
        fields = node.fields or ()
        for f in reversed(fields):
            if isinstance(f, ast.String):
                return f.sval, 2
        return None, 0
    if isinstance(node, ast.A_Indirection):
        for ind in reversed(node.indirection or ()):
            if isinstance(ind, ast.String):
                return ind.sval, 2
        return _figure(node.arg)
    if isinstance(node, ast.FuncCall):
        fn = node.funcname or ()
        return (fn[-1].sval if fn and isinstance(fn[-1], ast.String) else None), 2
    if isinstance(node, ast.TypeCast):
        name, strength = _figure(node.arg)
        if strength <= 1 and node.typeName is not None and node.typeName.names:
            last = node.typeName.names[-1]
            if isinstance(last, ast.String):
                return last.sval, 1
        return name, strength
    if isinstance(node, ast.CollateClause):
        return _figure(node.arg)
    if isinstance(node, ast.CaseExpr):
        name, strength = _figure(node.defresult)
        if strength <= 1:
            return "case", 1
        return name, strength
    if isinstance(node, ast.A_ArrayExpr):
        return "array", 2
    if isinstance(node, ast.RowExpr):
        return "row", 2
    if isinstance(node, ast.CoalesceExpr):
        return "coalesce", 2
    if isinstance(node, ast.MinMaxExpr):
        return ("greatest" if _enum(node.op) == 0 else "least"), 2
    if isinstance(node, ast.SQLValueFunction):
        return _SQLVALUE_NAMES.get(_enum(node.op)), 2
    if isinstance(node, ast.GroupingFunc):
        return "grouping", 2
    if isinstance(node, ast.A_Expr) and _enum(node.kind) == int(enums.A_Expr_Kind.AEXPR_NULLIF):
        return "nullif", 2
    if isinstance(node, ast.SubLink):
        kind = _enum(node.subLinkType)
        if kind == int(enums.SubLinkType.EXISTS_SUBLINK):
            return "exists", 2
        if kind == int(enums.SubLinkType.ARRAY_SUBLINK):
            return "array", 2
        if kind in (int(enums.SubLinkType.EXPR_SUBLINK), int(enums.SubLinkType.MULTIEXPR_SUBLINK)):
            sub = node.subselect
            if isinstance(sub, ast.SelectStmt) and sub.targetList:
                first = sub.targetList[0]
                if isinstance(first, ast.ResTarget):
                    if first.name:
                        return first.name, 2
                    return _figure(first.val)
        return None, 0
    return None, 0
