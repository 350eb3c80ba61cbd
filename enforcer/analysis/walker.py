"""The walk over one statement's libpg_query JSON AST that collects its facts.

:class:`FactWalker` visits every dict and list of the JSON tree -- generically, so that a node type
it has no rule for still has its children visited and any relation (``RangeVar``) or function call
(``FuncCall``) inside is still found. A few dozen node types have rules that give those finds
their meaning: which clause a column appears in, which relation an alias stands for, which CTE
name shadows a table, which relation a statement writes and whether the write is bounded by a
WHERE, which settings and role a statement changes.

The walk is iterative (an explicit stack, children pushed in reverse so they are processed in
document order), so its depth is bounded by the parser's, not by Python's recursion limit. It
never builds pglast node objects, never looks at a catalog and never decides: it records what the
text says. Bodies of EXPLAIN and PREPARE are not walked here; ``document.py`` walks them as
statements of their own and merges their facts.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from .known_functions import DYNAMIC_SQL_FUNCTIONS, LOCK_FUNCTIONS, is_side_effect_function
from .node_fields import TYPED_FIELDS
from .scope import RelationName, Scope
from .statements import CODE_RUNNING_NODES, DDL_NODES, STATEMENT_CLASSES, command_tag

Json = dict[str, Any]

RelationFact = tuple[str | None, str, str]
"""(schema, name, access)"""
ColumnFact = tuple[str | None, str | None, str, str]
"""(schema, relation, column, context)"""
FunctionFact = tuple[str | None, str]
"""(schema, name)"""
WriteFact = tuple[str | None, str, str, bool]
"""(schema, name, kind, has_where)"""
SettingFact = tuple[str, str | None, str]
"""(name, value, via)"""

# Nodes that cannot contain anything the walk looks for.
_LEAVES: Final = frozenset(
    {
        "A_Const",
        "A_Star",
        "Alias",
        "BitString",
        "Boolean",
        "CurrentOfExpr",
        "Float",
        "Integer",
        "ParamRef",
        "RoleSpec",
        "SQLValueFunction",
        "SetToDefault",
        "String",
    }
)

# Object types whose DROP/COMMENT/SECURITY LABEL name is a relation ...
_RELATION_OBJECTS: Final = frozenset(
    {
        "OBJECT_TABLE",
        "OBJECT_VIEW",
        "OBJECT_MATVIEW",
        "OBJECT_INDEX",
        "OBJECT_SEQUENCE",
        "OBJECT_FOREIGN_TABLE",
    }
)
# ... or a relation followed by the name of something on it (trigger, rule, policy, column).
_RELATION_MEMBER_OBJECTS: Final = frozenset(
    {"OBJECT_TRIGGER", "OBJECT_RULE", "OBJECT_POLICY", "OBJECT_TABCONSTRAINT", "OBJECT_COLUMN"}
)

_FALSE_WORDS: Final = frozenset({"false", "fals", "fal", "fa", "f", "no", "n", "off", "of", "0"})

_SELECT_FIELDS: Final = frozenset(
    {
        "withClause",
        "op",
        "all",
        "larg",
        "rarg",
        "fromClause",
        "targetList",
        "intoClause",
        "whereClause",
        "groupClause",
        "groupDistinct",
        "havingClause",
        "windowClause",
        "sortClause",
        "distinctClause",
        "valuesLists",
        "limitCount",
        "limitOffset",
        "limitOption",
        "lockingClause",
    }
)
_SELECT_CLAUSES: Final = (
    ("whereClause", "where"),
    ("groupClause", "group"),
    ("havingClause", "having"),
    ("windowClause", "window"),
    ("valuesLists", "select"),
    ("distinctClause", "distinct"),
    ("sortClause", "order"),
    ("limitCount", "select"),
    ("limitOffset", "select"),
)


class _Ctx:
    """Where the walk is: clause, default access mode, name scope and a few modifiers."""

    __slots__ = ("access", "barrier", "clause", "from_scope", "in_function", "scope", "via")

    def __init__(
        self,
        clause: str,
        access: str,
        scope: Scope | None,
        from_scope: Scope | None,
        in_function: bool,
        barrier: bool,
        via: str | None,
    ) -> None:
        self.clause = clause
        self.access = access  # access mode of a relation named here
        self.scope = scope  # innermost query level
        self.from_scope = from_scope  # set while walking FROM items: where aliases are registered
        self.in_function = in_function  # inside the arguments of a function call
        self.barrier = barrier  # a query level started here cannot see the enclosing FROM aliases
        self.via = via  # statement through which a nested SET applies (ALTER ROLE ... SET)

    def query(self, scope: Scope) -> _Ctx:
        return _Ctx("select", "read", scope, None, False, False, None)

    def at(self, clause: str) -> _Ctx:
        return _Ctx(clause, self.access, self.scope, None, False, False, self.via)

    def from_items(self, scope: Scope) -> _Ctx:
        return _Ctx("select", "read", scope, scope, False, False, None)

    def function_args(self) -> _Ctx:
        return _Ctx(self.clause, self.access, self.scope, None, True, False, self.via)

    def with_access(self, access: str) -> _Ctx:
        return _Ctx(
            self.clause, access, self.scope, self.from_scope, self.in_function, self.barrier, self.via
        )

    def with_via(self, via: str) -> _Ctx:
        return _Ctx(
            self.clause, self.access, self.scope, self.from_scope, self.in_function, self.barrier, via
        )

    def subquery(self, barrier: bool) -> _Ctx:
        return _Ctx(self.clause, self.access, self.scope, None, self.in_function, barrier, self.via)


_ROOT: Final = _Ctx("select", "read", None, None, False, False, None)

_Handler = Callable[["FactWalker", str, Any, _Ctx], None]


def _strings(nodes: Any) -> list[str]:
    """The ``sval`` of each ``String`` node in a list (names, qualified names)."""
    out: list[str] = []
    if isinstance(nodes, list):
        for node in nodes:
            if isinstance(node, dict):
                string = node.get("String")
                if isinstance(string, dict):
                    out.append(str(string.get("sval", "")))
    return out


def _name_list(node: Any) -> list[str]:
    """A qualified name written as ``{"List": {"items": [String...]}}``, a bare list or a String."""
    if isinstance(node, list):
        return _strings(node)
    if isinstance(node, dict):
        if "List" in node:
            inner = node["List"]
            return _strings(inner.get("items")) if isinstance(inner, dict) else []
        return _strings([node])
    return []


def _qualified(names: list[str]) -> RelationName:
    return (names[-2] if len(names) > 1 else None, names[-1])


def _range_var_name(body: Any) -> RelationName | None:
    if isinstance(body, dict):
        if "RangeVar" in body and len(body) == 1:
            body = body["RangeVar"]
        name = body.get("relname") if isinstance(body, dict) else None
        if isinstance(name, str):
            schema = body.get("schemaname")
            return (schema if isinstance(schema, str) else None, name)
    return None


def _alias_name(body: Json) -> str | None:
    alias = body.get("alias")
    if isinstance(alias, dict):
        name = alias.get("aliasname")
        if isinstance(name, str):
            return name
    return None


def constant_text(node: Any) -> str | None:
    """The text of a constant (``'x'``, ``1``, ``'x'::text``); ``None`` for anything else."""
    while isinstance(node, dict):
        if "TypeCast" in node:
            cast = node["TypeCast"]
            node = cast.get("arg") if isinstance(cast, dict) else None
            continue
        if "NamedArgExpr" in node:
            named = node["NamedArgExpr"]
            node = named.get("arg") if isinstance(named, dict) else None
            continue
        const = node.get("A_Const")
        if not isinstance(const, dict) or const.get("isnull"):
            return None
        for key in ("sval", "fval", "bsval"):
            if key in const:
                value = const[key]
                return str(value.get(key, "")) if isinstance(value, dict) else None
        if "ival" in const:
            value = const["ival"]
            return str(value.get("ival", 0)) if isinstance(value, dict) else None
        if "boolval" in const:
            value = const["boolval"]
            return "true" if isinstance(value, dict) and value.get("boolval") else "false"
        return None
    return None


def defelem_is_true(arg: Any) -> bool:
    """Postgres's ``defGetBoolean`` read fail-closed: true unless the argument clearly says false."""
    if arg is None:
        return True
    if isinstance(arg, dict):
        if "Boolean" in arg:
            value = arg["Boolean"]
            return bool(isinstance(value, dict) and value.get("boolval"))
        if "Integer" in arg:
            value = arg["Integer"]
            return not (isinstance(value, dict) and value.get("ival", 0) == 0)
        if "String" in arg:
            value = arg["String"]
            text = str(value.get("sval", "")) if isinstance(value, dict) else ""
            return text.strip().lower() not in _FALSE_WORDS
        constant = constant_text(arg)
        if constant is not None:
            return constant.strip().lower() not in _FALSE_WORDS
    return True


def has_effective_where(node: Any) -> bool:
    """Whether a WHERE/ON condition can restrict rows: it names a column or is WHERE CURRENT OF.

    ``WHERE true``, ``WHERE 1 = 1`` or ``WHERE $1`` restrict nothing row by row, so they do not
    count (fail closed: an unbounded write must not pass as bounded).
    """
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if "ColumnRef" in item or "CurrentOfExpr" in item:
                return True
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


class FactWalker:
    """Collects the facts of one statement from its JSON AST (``walk``), into plain sets."""

    def __init__(self) -> None:
        self.relations: set[RelationFact] = set()
        self.columns: set[ColumnFact] = set()
        self.functions: set[FunctionFact] = set()
        self.writes: set[WriteFact] = set()
        self.settings: set[SettingFact] = set()
        self.role_changes: list[tuple[str, str | None]] = []
        self.executes: list[str] = []
        self.deallocate: tuple[str | None, bool] | None = None
        self.copy: Json | None = None
        self.explain: tuple[Any, bool] | None = None  # (query node, analyze)
        self.prepare: tuple[str, Any] | None = None  # (name, query node)
        self.ddl = False
        self.dynamic = False
        self.copy_program = False
        self.session_settings = False
        self.select_into = False
        self.locks = False
        self.side_effects = False
        self.explain_analyze = False
        self._stack: list[tuple[_Handler, str, Any, _Ctx]] = []

    # -- driving the walk ------------------------------------------------------------------

    def walk(self, node: Any) -> None:
        stack = self._stack
        self._push_value("", "", node, _ROOT)
        while stack:
            handler, node_type, body, ctx = stack.pop()
            handler(self, node_type, body, ctx)

    def _push_value(self, parent: str, field: str, value: Any, ctx: _Ctx) -> None:
        """Schedule a field value: a wrapped node, a bare typed struct, or a list of them."""
        if type(value) is dict:
            if not value:
                return
            typed = TYPED_FIELDS.get(parent)
            node_type = typed.get(field) if typed else None
            if node_type is not None:
                self._push_node(node_type, value, ctx)
                return
            if len(value) == 1:
                ((key, inner),) = value.items()
                if type(inner) is dict and key[:1].isupper():
                    self._push_node(key, inner, ctx)
                    return
            # A bare struct we have no type for: recognise a relation by its shape, else walk it.
            self._push_node("RangeVar" if "relname" in value else "", value, ctx)
        elif type(value) is list:
            for item in value:
                if type(item) is dict or type(item) is list:
                    self._push_value(parent, field, item, ctx)

    def _push_node(self, node_type: str, body: Json, ctx: _Ctx) -> None:
        if node_type in DDL_NODES:
            self.ddl = True
        if node_type in CODE_RUNNING_NODES:
            self.dynamic = True
        handler = _HANDLERS.get(node_type)
        if handler is None:
            if node_type in _LEAVES:
                return
            handler = FactWalker._generic
        self._stack.append((handler, node_type, body, ctx))

    def _push_fields(self, node_type: str, body: Json, ctx: _Ctx, skip: frozenset[str] = frozenset()) -> None:
        for key, value in body.items():
            if key not in skip and (type(value) is dict or type(value) is list):
                self._push_value(node_type, key, value, ctx)

    def _later(self, action: _Handler, name: str, data: Any, ctx: _Ctx) -> None:
        """Schedule ``action`` to run after everything scheduled before it in this handler."""
        self._stack.append((action, name, data, ctx))

    def _flip(self, mark: int) -> None:
        """Put what a handler scheduled since ``mark`` in processing order (the stack is LIFO)."""
        stack = self._stack
        if len(stack) - mark > 1:
            stack[mark:] = stack[mark:][::-1]

    def _generic(self, node_type: str, body: Json, ctx: _Ctx) -> None:
        statement = STATEMENT_CLASSES.get(node_type)
        if statement is not None and statement.access != ctx.access:
            ctx = ctx.with_access(statement.access)
        mark = len(self._stack)
        self._push_fields(node_type, body, ctx)
        self._flip(mark)

    # -- recording -------------------------------------------------------------------------

    def _relation(self, relation: RelationName, access: str) -> None:
        self.relations.add((relation[0], relation[1], access))

    def _column(self, relation: RelationName | None, name: str, context: str, ctx: _Ctx) -> None:
        schema, table = relation if relation is not None else (None, None)
        self.columns.add((schema, table, name, context))
        if ctx.in_function:
            self.columns.add((schema, table, name, "function_arg"))

    def _write(self, relation: RelationName, kind: str, has_where: bool) -> None:
        self.writes.add((relation[0], relation[1], kind, has_where))

    def _target(self, body: Json, field: str = "relation") -> tuple[RelationName, str]:
        """The relation a DML statement writes (a bare RangeVar) and the alias it goes by."""
        relation = _range_var_name(body.get(field)) or (None, "")
        alias = _alias_name(body[field]) if isinstance(body.get(field), dict) else None
        return relation, alias or relation[1]

    # -- queries ---------------------------------------------------------------------------

    def _with(self, with_clause: Any, scope: Scope, ctx: _Ctx) -> None:
        """Schedule the CTEs of a WITH clause, keeping each name visible where Postgres does.

        ``ctx`` carries a barrier: a CTE body cannot see the FROM items (or DML target) of the
        level that defines it, only the levels around it.
        """
        if not isinstance(with_clause, dict):
            return
        recursive = bool(with_clause.get("recursive"))
        ctes = [
            node.get("CommonTableExpr") for node in with_clause.get("ctes") or [] if isinstance(node, dict)
        ]
        if recursive:
            scope.ctes.update(cte["ctename"] for cte in ctes if isinstance(cte, dict) and "ctename" in cte)
        for cte in ctes:
            if not isinstance(cte, dict):
                continue
            self._push_value("CommonTableExpr", "ctequery", cte.get("ctequery"), ctx)
            self._push_fields("CommonTableExpr", cte, ctx, frozenset({"ctequery"}))
            if not recursive and isinstance(cte.get("ctename"), str):
                # A non-recursive CTE is visible to later CTEs and the main query, not to itself.
                self._later(FactWalker._define_cte, cte["ctename"], scope, ctx)

    def _define_cte(self, name: str, scope: Scope, ctx: _Ctx) -> None:
        scope.ctes.add(name)

    def _select(self, node_type: str, body: Json, ctx: _Ctx) -> None:
        scope = Scope(ctx.scope, ctx.barrier)
        query = ctx.query(scope)
        mark = len(self._stack)
        self._with(body.get("withClause"), scope, query.subquery(True))
        if body.get("op", "SETOP_NONE") != "SETOP_NONE":
            self._push_value(node_type, "larg", body.get("larg"), query)
            self._push_value(node_type, "rarg", body.get("rarg"), query)
        from_items = query.from_items(scope)
        for item in body.get("fromClause") or ():
            self._push_value(node_type, "fromClause", item, from_items)
        select = query.at("select")
        for target in body.get("targetList") or ():
            result = target.get("ResTarget") if isinstance(target, dict) else None
            if isinstance(result, dict) and isinstance(result.get("name"), str):
                scope.outputs.add(result["name"])
            self._push_value(node_type, "targetList", target, select)
        into = body.get("intoClause")
        if isinstance(into, dict):
            self.select_into = True
            self._push_value(node_type, "intoClause", into, query)
        for field, clause in _SELECT_CLAUSES:
            value = body.get(field)
            if value:
                self._push_value(node_type, field, value, query.at(clause))
        if body.get("lockingClause"):
            self._push_value(node_type, "lockingClause", body["lockingClause"], query)
        self._push_fields(node_type, body, query, _SELECT_FIELDS)
        self._flip(mark)

    def _into(self, node_type: str, body: Json, ctx: _Ctx) -> None:
        relation = _range_var_name(body.get("rel"))
        if relation is not None:
            self.ddl = True  # SELECT INTO / CREATE TABLE AS create the table
            self._relation(relation, "ddl")
            if not body.get("skipData"):
                self._relation(relation, "insert")
                self._write(relation, "select_into", False)
        mark = len(self._stack)
        self._push_fields(node_type, body, ctx.with_access("ddl"), frozenset({"rel"}))
        self._flip(mark)

    def _locking(self, node_type: str, body: Json, ctx: _Ctx) -> None:
        self.locks = True
        scope = ctx.scope
        locked = body.get("lockedRels") or []
        if not locked and scope is not None:
            for relation in scope.items:
                if relation is not None:
                    self._relation(relation, "lock")
        for node in locked:
            named = _range_var_name(node)
            if named is None:
                continue
            found, relation = scope.lookup(named[1]) if scope is not None else (False, None)
            if found:
                if relation is not None:
                    self._relation(relation, "lock")
            else:
                self._relation(named, "lock")

    def _set_targets(self, targets: Any, relation: RelationName, ctx: _Ctx, context: str) -> None:
        """``SET col = expr`` / insert column lists: the column is the target's, the expr a read."""
        value_ctx = ctx.at("select")
        for node in targets or ():
            target = node.get("ResTarget") if isinstance(node, dict) else None
            if not isinstance(target, dict):
                self._push_value("", "", node, value_ctx)
                continue
            if isinstance(target.get("name"), str):
                self._column(relation, target["name"], context, value_ctx)
            self._push_fields("ResTarget", target, value_ctx, frozenset({"name"}))

    def _returning(self, body: Json, scope: Scope, ctx: _Ctx) -> None:
        returning = body.get("returningClause")
        exprs = returning.get("exprs") if isinstance(returning, dict) else body.get("returningList")
        if not exprs:
            return
        relation = scope.target
        if relation is not None:
            self._relation(relation, "read")
            scope.add_alias("old", relation)
            scope.add_alias("new", relation)
            if isinstance(returning, dict):
                for option in returning.get("options") or ():
                    value = (
                        option.get("ReturningOption", {}).get("value") if isinstance(option, dict) else None
                    )
                    if isinstance(value, str):
                        scope.aliases[value] = relation
        self._push_value("ReturningClause", "exprs", exprs, ctx.at("returning"))

    def _dml_scope(self, body: Json, ctx: _Ctx) -> tuple[Scope, _Ctx, RelationName]:
        scope = Scope(ctx.scope, ctx.barrier)
        relation, alias = self._target(body)
        scope.target = relation
        scope.add_item(alias, relation)
        return scope, ctx.query(scope), relation

    def _insert(self, node_type: str, body: Json, ctx: _Ctx) -> None:
        scope, query, relation = self._dml_scope(body, ctx)
        self._relation(relation, "insert")
        self._write(relation, "insert", False)
        mark = len(self._stack)
        self._with(body.get("withClause"), scope, query.subquery(True))
        if body.get("cols"):
            self._set_targets(body["cols"], relation, query, "insert")
        else:
            self._column(relation, "*", "insert", query)
        if body.get("selectStmt"):
            # The source rows cannot refer to the target: a barrier hides its alias.
            self._push_value(node_type, "selectStmt", body["selectStmt"], query.subquery(True))
        conflict = body.get("onConflictClause")
        if isinstance(conflict, dict):
            self._on_conflict(conflict, scope, query)
        self._returning(body, scope, query)
        skip = frozenset(
            {"relation", "withClause", "cols", "selectStmt", "onConflictClause", "returningClause"}
        )
        self._push_fields(node_type, body, query, skip | {"returningList"})
        self._flip(mark)

    def _on_conflict(self, conflict: Json, scope: Scope, ctx: _Ctx) -> None:
        relation = scope.target
        if relation is None:
            return
        scope.add_alias("excluded", relation)
        self._push_value("OnConflictClause", "infer", conflict.get("infer"), ctx.at("where"))
        if conflict.get("action") == "ONCONFLICT_UPDATE":
            where = conflict.get("whereClause")
            self._relation(relation, "update")
            self._relation(relation, "read")
            self._write(relation, "update", has_effective_where(where))
            self._set_targets(conflict.get("targetList"), relation, ctx, "set")
            if where:
                self._push_value("OnConflictClause", "whereClause", where, ctx.at("where"))
        rest = frozenset({"infer", "targetList", "whereClause"})
        self._push_fields("OnConflictClause", conflict, ctx, rest)

    def _update(self, node_type: str, body: Json, ctx: _Ctx) -> None:
        scope, query, relation = self._dml_scope(body, ctx)
        where = body.get("whereClause")
        self._relation(relation, "update")
        if where or body.get("returningClause") or body.get("returningList"):
            self._relation(relation, "read")
        self._write(relation, "update", has_effective_where(where))
        mark = len(self._stack)
        self._with(body.get("withClause"), scope, query.subquery(True))
        for item in body.get("fromClause") or ():
            self._push_value(node_type, "fromClause", item, query.from_items(scope))
        self._set_targets(body.get("targetList"), relation, query, "set")
        if where:
            self._push_value(node_type, "whereClause", where, query.at("where"))
        self._returning(body, scope, query)
        skip = frozenset(
            {"relation", "withClause", "fromClause", "targetList", "whereClause", "returningClause"}
        )
        self._push_fields(node_type, body, query, skip | {"returningList"})
        self._flip(mark)

    def _delete(self, node_type: str, body: Json, ctx: _Ctx) -> None:
        scope, query, relation = self._dml_scope(body, ctx)
        where = body.get("whereClause")
        self._relation(relation, "delete")
        if where or body.get("returningClause") or body.get("returningList"):
            self._relation(relation, "read")
        self._write(relation, "delete", has_effective_where(where))
        mark = len(self._stack)
        self._with(body.get("withClause"), scope, query.subquery(True))
        for item in body.get("usingClause") or ():
            self._push_value(node_type, "usingClause", item, query.from_items(scope))
        if where:
            self._push_value(node_type, "whereClause", where, query.at("where"))
        self._returning(body, scope, query)
        skip = frozenset({"relation", "withClause", "usingClause", "whereClause", "returningClause"})
        self._push_fields(node_type, body, query, skip | {"returningList"})
        self._flip(mark)

    def _merge(self, node_type: str, body: Json, ctx: _Ctx) -> None:
        scope, query, relation = self._dml_scope(body, ctx)
        join = body.get("joinCondition")
        self._relation(relation, "merge")
        self._relation(relation, "read")
        self._write(relation, "merge", has_effective_where(join))
        mark = len(self._stack)
        self._with(body.get("withClause"), scope, query.subquery(True))
        self._push_value(node_type, "sourceRelation", body.get("sourceRelation"), query.from_items(scope))
        self._push_value(node_type, "joinCondition", join, query.at("join"))
        for node in body.get("mergeWhenClauses") or ():
            when = node.get("MergeWhenClause") if isinstance(node, dict) else None
            if not isinstance(when, dict):
                self._push_value(node_type, "mergeWhenClauses", node, query)
                continue
            command = when.get("commandType")
            if command == "CMD_UPDATE":
                self._relation(relation, "update")
                self._set_targets(when.get("targetList"), relation, query, "set")
            elif command == "CMD_INSERT":
                self._relation(relation, "insert")
                if when.get("targetList"):
                    self._set_targets(when.get("targetList"), relation, query, "insert")
                else:
                    self._column(relation, "*", "insert", query)
                self._push_value("MergeWhenClause", "values", when.get("values"), query.at("select"))
            elif command == "CMD_DELETE":
                self._relation(relation, "delete")
            self._push_value("MergeWhenClause", "condition", when.get("condition"), query.at("where"))
            rest = frozenset({"targetList", "values", "condition"})
            self._push_fields("MergeWhenClause", when, query, rest)
        self._returning(body, scope, query)
        skip = frozenset(
            {
                "relation",
                "withClause",
                "sourceRelation",
                "joinCondition",
                "mergeWhenClauses",
                "returningClause",
            }
        )
        self._push_fields(node_type, body, query, skip | {"returningList"})
        self._flip(mark)

    # -- FROM items ------------------------------------------------------------------------

    def _range_var(self, node_type: str, body: Json, ctx: _Ctx) -> None:
        name = body.get("relname")
        if not isinstance(name, str):
            self._generic(node_type, body, ctx)
            return
        schema = body.get("schemaname")
        relation: RelationName = (schema if isinstance(schema, str) else None, name)
        alias = _alias_name(body) or name
        scope = ctx.scope
        if relation[0] is None and scope is not None and scope.is_cte(name):
            if ctx.from_scope is not None:
                ctx.from_scope.add_item(alias, None)
            return
        self._relation(relation, ctx.access)
        if ctx.from_scope is not None:
            ctx.from_scope.add_item(alias, relation)

    def _join(self, node_type: str, body: Json, ctx: _Ctx) -> None:
        mark = len(self._stack)
        self._push_value(node_type, "larg", body.get("larg"), ctx)
        self._push_value(node_type, "rarg", body.get("rarg"), ctx)
        joined = ctx.at("join")
        self._push_value(node_type, "quals", body.get("quals"), joined)
        for name in _strings(body.get("usingClause")):
            self._column(None, name, "join", joined)
        for field in ("alias", "join_using_alias"):
            alias = body.get(field)
            if isinstance(alias, dict) and isinstance(alias.get("aliasname"), str):
                self._later(FactWalker._register_alias, alias["aliasname"], None, ctx)
        self._push_fields(node_type, body, joined, frozenset({"larg", "rarg", "quals"}))
        self._flip(mark)

    def _register_alias(self, alias: str, relation: RelationName | None, ctx: _Ctx) -> None:
        if ctx.from_scope is not None:
            ctx.from_scope.add_alias(alias, relation)

    def _register_item(self, alias: str, relation: RelationName | None, ctx: _Ctx) -> None:
        if ctx.from_scope is not None:
            ctx.from_scope.add_item(alias, relation)

    def _range_subselect(self, node_type: str, body: Json, ctx: _Ctx) -> None:
        mark = len(self._stack)
        # Without LATERAL the sub-select cannot see its sibling FROM items.
        inner = ctx.subquery(barrier=not body.get("lateral"))
        self._push_value(node_type, "subquery", body.get("subquery"), inner)
        self._later(FactWalker._register_item, _alias_name(body) or "", None, ctx)
        self._push_fields(node_type, body, ctx.at("select"), frozenset({"subquery"}))
        self._flip(mark)

    def _range_derived(self, node_type: str, body: Json, ctx: _Ctx) -> None:
        """Functions, XMLTABLE, JSON_TABLE in FROM: their arguments are read, their rows derived."""
        mark = len(self._stack)
        self._push_fields(node_type, body, ctx.at("select"))
        self._later(FactWalker._register_item, _alias_name(body) or "", None, ctx)
        self._flip(mark)

    def _range_tablesample(self, node_type: str, body: Json, ctx: _Ctx) -> None:
        mark = len(self._stack)
        self._push_value(node_type, "relation", body.get("relation"), ctx)
        self._push_fields(node_type, body, ctx.at("select"), frozenset({"relation"}))
        self._flip(mark)

    # -- expressions -----------------------------------------------------------------------

    def _column_ref(self, node_type: str, body: Json, ctx: _Ctx) -> None:
        names: list[str] = []
        star = False
        for field in body.get("fields") or ():
            if isinstance(field, dict):
                if "String" in field:
                    names.append(str(field["String"].get("sval", "")))
                elif "A_Star" in field:
                    star = True
        scope = ctx.scope
        if star:
            if names:
                self._column(self._qualifier(names, scope), "*", "star", ctx)
            else:
                self._star(scope, ctx)
            return
        if not names:
            return
        if len(names) == 1:
            name = names[0]
            relation: RelationName | None = None
            if scope is not None:
                if ctx.clause == "order" and name in scope.outputs:
                    return  # ORDER BY an output column's name: already recorded in the select list
                found, aliased = scope.lookup(name)
                if found:
                    self._column(aliased, "*", "whole_row", ctx)
                    return
                relation = scope.single_relation()
            self._column(relation, name, ctx.clause, ctx)
        elif len(names) == 2:
            self._column(self._qualifier(names[:1], scope), names[1], ctx.clause, ctx)
        elif len(names) == 3 and scope is not None and scope.lookup(names[0])[0]:
            # alias.composite_column.field
            self._column(scope.lookup(names[0])[1], names[1], ctx.clause, ctx)
        else:
            self._column(_qualified(names[:-1]), names[-1], ctx.clause, ctx)

    def _qualifier(self, names: list[str], scope: Scope | None) -> RelationName | None:
        if len(names) == 1 and scope is not None:
            found, relation = scope.lookup(names[0])
            if found:
                return relation
        return _qualified(names)

    def _star(self, scope: Scope | None, ctx: _Ctx) -> None:
        items = scope.items if scope is not None else []
        if not items or any(item is None for item in items):
            self._column(None, "*", "star", ctx)
        for item in items:
            if item is not None:
                self._column(item, "*", "star", ctx)

    def _func_call(self, node_type: str, body: Json, ctx: _Ctx) -> None:
        names = _strings(body.get("funcname"))
        if names:
            name = names[-1]
            self.functions.add((names[-2] if len(names) > 1 else None, name))
            if is_side_effect_function(name):
                self.side_effects = True
            if name in DYNAMIC_SQL_FUNCTIONS:
                self.dynamic = True
            if name in LOCK_FUNCTIONS:
                self.locks = True
            if name == "set_config":
                self._set_config(body.get("args") or [])
        mark = len(self._stack)
        arguments = ctx.function_args()
        self._push_value(node_type, "args", body.get("args"), arguments)
        self._push_value(node_type, "agg_order", body.get("agg_order"), arguments)
        self._push_fields(node_type, body, ctx, frozenset({"funcname", "args", "agg_order"}))
        self._flip(mark)

    def _window_def(self, node_type: str, body: Json, ctx: _Ctx) -> None:
        mark = len(self._stack)
        window = ctx.at("window")
        self._push_value(node_type, "partitionClause", body.get("partitionClause"), window)
        self._push_value(node_type, "orderClause", body.get("orderClause"), window)
        self._push_fields(node_type, body, ctx, frozenset({"partitionClause", "orderClause"}))
        self._flip(mark)

    def _index_stmt(self, node_type: str, body: Json, ctx: _Ctx) -> None:
        """CREATE INDEX: its columns and expressions belong to the indexed table."""
        relation = _range_var_name(body.get("relation"))
        if relation is None:
            self._generic(node_type, body, ctx)
            return
        self._relation(relation, "ddl")
        scope = Scope(ctx.scope)
        scope.target = relation
        scope.add_item(relation[1], relation)
        inner = _Ctx("select", "ddl", scope, None, False, False, ctx.via)
        mark = len(self._stack)
        self._push_value(node_type, "indexParams", body.get("indexParams"), inner)
        self._push_value(node_type, "indexIncludingParams", body.get("indexIncludingParams"), inner)
        self._push_value(node_type, "whereClause", body.get("whereClause"), inner.at("where"))
        rest = frozenset({"relation", "indexParams", "indexIncludingParams", "whereClause"})
        self._push_fields(node_type, body, inner, rest)
        self._flip(mark)

    def _table_scoped(self, node_type: str, body: Json, ctx: _Ctx) -> None:
        """DDL on one table (CREATE/ALTER TABLE, triggers, rules, policies): its expressions'
        columns belong to that table, and NEW/OLD in triggers and rules stand for its rows."""
        field = _TABLE_FIELDS[node_type]
        relation = _range_var_name(body.get(field))
        if relation is None:
            self._generic(node_type, body, ctx)
            return
        access = STATEMENT_CLASSES[node_type].access
        self._relation(relation, access)
        scope = Scope(ctx.scope)
        scope.target = relation
        scope.add_item(relation[1], relation)
        if node_type in ("CreateTrigStmt", "RuleStmt"):
            scope.add_alias("new", relation)
            scope.add_alias("old", relation)
        inner = _Ctx("select", access, scope, None, False, False, ctx.via)
        mark = len(self._stack)
        self._push_fields(node_type, body, inner, frozenset({field}))
        self._flip(mark)

    def _index_elem(self, node_type: str, body: Json, ctx: _Ctx) -> None:
        # ON CONFLICT (col) and CREATE INDEX (col): a column of the target.
        scope = ctx.scope
        if isinstance(body.get("name"), str) and scope is not None and scope.target is not None:
            self._column(scope.target, body["name"], ctx.clause, ctx)
        self._generic(node_type, body, ctx)

    # -- utility statements ----------------------------------------------------------------

    def _copy(self, node_type: str, body: Json, ctx: _Ctx) -> None:
        is_from = bool(body.get("is_from"))
        program = bool(body.get("is_program"))
        filename = body.get("filename")
        self.copy = {
            "direction": "from" if is_from else "to",
            "program": program,
            "file": filename if isinstance(filename, str) else None,
            "stdio": filename is None,
            "query": bool(body.get("query")),
        }
        self.copy_program = self.copy_program or program
        scope = Scope(ctx.scope)
        query = ctx.query(scope)
        relation = _range_var_name(body.get("relation"))
        if relation is not None:
            scope.target = relation
            scope.add_item(relation[1], relation)
            columns = _strings(body.get("attlist")) or ["*"]
            if is_from:
                self._relation(relation, "copy_from")
                self._relation(relation, "insert")
                self._write(relation, "copy_from", False)
            else:
                self._relation(relation, "copy_to")
                self._relation(relation, "read")
            for column in columns:
                if column == "*":
                    self._column(relation, "*", "insert" if is_from else "star", query)
                else:
                    self._column(relation, column, "insert" if is_from else "select", query)
        mark = len(self._stack)
        self._push_value(node_type, "query", body.get("query"), query)
        self._push_value(node_type, "whereClause", body.get("whereClause"), query.at("where"))
        self._push_fields(node_type, body, query, frozenset({"relation", "query", "whereClause", "attlist"}))
        self._flip(mark)

    def _explain(self, node_type: str, body: Json, ctx: _Ctx) -> None:
        analyze = False
        for option in body.get("options") or ():
            elem = option.get("DefElem") if isinstance(option, dict) else None
            if isinstance(elem, dict) and elem.get("defname") in ("analyze", "analyse"):
                analyze = analyze or defelem_is_true(elem.get("arg"))
        if analyze:
            self.explain_analyze = True
            self.dynamic = True
        if self.explain is None:
            self.explain = (body.get("query"), analyze)
        # The explained statement is walked as a statement of its own by document.py.

    def _prepare(self, node_type: str, body: Json, ctx: _Ctx) -> None:
        if self.prepare is None:
            self.prepare = (str(body.get("name", "")), body.get("query"))
        mark = len(self._stack)
        self._push_fields(node_type, body, ctx, frozenset({"query"}))
        self._flip(mark)

    def _execute(self, node_type: str, body: Json, ctx: _Ctx) -> None:
        self.executes.append(str(body.get("name", "")))
        self._generic(node_type, body, ctx)

    def _deallocate(self, node_type: str, body: Json, ctx: _Ctx) -> None:
        name = body.get("name")
        everything = bool(body.get("isall")) or not isinstance(name, str)
        self.deallocate = (None if everything else name, everything)

    def _discard(self, node_type: str, body: Json, ctx: _Ctx) -> None:
        if body.get("target") == "DISCARD_ALL":
            # DISCARD ALL = CLOSE ALL; SET SESSION AUTHORIZATION DEFAULT; RESET ALL; DEALLOCATE ALL; ...
            self.deallocate = (None, True)
            self.settings.add(("all", None, "RESET ALL"))
            self.role_changes.append(("SET SESSION AUTHORIZATION", None))
            self.session_settings = True

    def _lock(self, node_type: str, body: Json, ctx: _Ctx) -> None:
        self.locks = True
        for node in body.get("relations") or ():
            relation = _range_var_name(node)
            if relation is not None:
                self._relation(relation, "lock")

    def _truncate(self, node_type: str, body: Json, ctx: _Ctx) -> None:
        for node in body.get("relations") or ():
            relation = _range_var_name(node)
            if relation is not None:
                self._relation(relation, "truncate")
                self._write(relation, "truncate", False)

    def _named_object(self, node_type: str, body: Json, ctx: _Ctx) -> None:
        """DROP / COMMENT ON / SECURITY LABEL ON: objects named by plain name lists."""
        if node_type == "DropStmt":
            object_type = body.get("removeType")
            objects = body.get("objects") or []
        else:
            object_type = body.get("objtype")
            objects = [body.get("object")]
        access = STATEMENT_CLASSES[node_type].access
        for node in objects:
            names = _name_list(node)
            if object_type in _RELATION_OBJECTS and names:
                self._relation(_qualified(names), access)
            elif object_type in _RELATION_MEMBER_OBJECTS and len(names) > 1:
                self._relation(_qualified(names[:-1]), access)
        self._generic(node_type, body, ctx)

    def _import_foreign_schema(self, node_type: str, body: Json, ctx: _Ctx) -> None:
        # LIMIT TO (a, b) names remote tables; the statement creates local_schema.a and .b.
        local_schema = body.get("local_schema")
        if body.get("list_type") == "FDW_IMPORT_SCHEMA_LIMIT_TO":
            for node in body.get("table_list") or ():
                relation = _range_var_name(node)
                if relation is not None:
                    schema = local_schema if isinstance(local_schema, str) else None
                    self._relation((schema, relation[1]), "ddl")
        mark = len(self._stack)
        self._push_fields(node_type, body, ctx.with_access("ddl"), frozenset({"table_list"}))
        self._flip(mark)

    def _create_table_as(self, node_type: str, body: Json, ctx: _Ctx) -> None:
        if body.get("is_select_into"):
            self.select_into = True
        self._generic(node_type, body, ctx)

    def _with_setting_via(self, node_type: str, body: Json, ctx: _Ctx) -> None:
        """Statements whose SET clauses configure a role, database, server or function."""
        via = _SETTING_VIA.get(node_type) or command_tag(node_type, body)
        self._generic(node_type, body, ctx.with_via(via))

    # -- settings and roles ----------------------------------------------------------------

    def _variable_set(self, node_type: str, body: Json, ctx: _Ctx) -> None:
        kind = body.get("kind", "")
        name = str(body.get("name", "")).lower()
        entries: list[tuple[str, str | None]]
        if kind == "VAR_SET_MULTI":
            entries = _multi_settings(name, body.get("args") or [])
        elif kind == "VAR_RESET_ALL":
            entries = [("all", None)]  # "*" is reserved for a name that cannot be known
        elif kind == "VAR_SET_VALUE":
            entries = [(name, _render_values(body.get("args") or []))]
        else:
            entries = [(name, None)]
        if ctx.via is not None:
            for setting, value in entries:
                self.settings.add((setting, value, ctx.via))
            return
        local = bool(body.get("is_local"))
        if kind == "VAR_RESET":
            via = "RESET"
        elif kind == "VAR_RESET_ALL":
            via = "RESET ALL"
        elif kind == "VAR_SET_MULTI" and name == "transaction":
            via = "SET LOCAL"  # SET TRANSACTION ... sets transaction_* for this transaction only
        else:
            via = "SET LOCAL" if local else "SET"
        self.session_settings = True
        for setting, value in entries:
            self.settings.add((setting, value, via))
        value = entries[0][1] if kind == "VAR_SET_VALUE" else None
        if name == "role":
            if value == "none":
                value = None  # SET ROLE NONE: back to the session user
            role_via = "RESET ROLE" if kind == "VAR_RESET" else "SET LOCAL ROLE" if local else "SET ROLE"
            self.role_changes.append((role_via, value))
        elif name == "session_authorization":
            auth_via = "SET LOCAL SESSION AUTHORIZATION" if local else "SET SESSION AUTHORIZATION"
            self.role_changes.append((auth_via, value))

    def _transaction(self, node_type: str, body: Json, ctx: _Ctx) -> None:
        # BEGIN ISOLATION LEVEL x / READ WRITE: the same as SET LOCAL transaction_isolation = x.
        for option in body.get("options") or ():
            elem = option.get("DefElem") if isinstance(option, dict) else None
            if isinstance(elem, dict) and isinstance(elem.get("defname"), str):
                self.settings.add((elem["defname"], _option_value(elem), "SET LOCAL"))
                self.session_settings = True

    def _set_config(self, args: list[Any]) -> None:
        positional: list[Any] = []
        named: dict[str, Any] = {}
        for arg in args:
            named_arg = arg.get("NamedArgExpr") if isinstance(arg, dict) else None
            if isinstance(named_arg, dict):
                named[str(named_arg.get("name", ""))] = named_arg.get("arg")
            else:
                positional.append(arg)
        name_node = named.get("setting_name", positional[0] if positional else None)
        value_node = named.get("new_value", positional[1] if len(positional) > 1 else None)
        name_text = constant_text(name_node)
        name = name_text.lower() if name_text is not None else "*"
        value = constant_text(value_node)
        self.settings.add((name, value, "set_config"))
        self.session_settings = True
        if name in ("role", "session_authorization", "*"):
            role = value if name != "*" and value != "none" else None
            self.role_changes.append(("set_config", role))


def _render_values(args: list[Any]) -> str | None:
    values = [constant_text(arg) for arg in args]
    if not values or any(value is None for value in values):
        return None
    return ", ".join(value for value in values if value is not None)


_TRANSACTION_BOOLEANS: Final = frozenset(
    {
        "transaction_read_only",
        "transaction_deferrable",
        "default_transaction_read_only",
        "default_transaction_deferrable",
    }
)


def _option_value(elem: Json) -> str | None:
    value = constant_text(elem.get("arg"))
    if value is not None and elem.get("defname") in _TRANSACTION_BOOLEANS:
        return "off" if value in ("0", "false") else "on"
    return value


def _multi_settings(name: str, args: list[Any]) -> list[tuple[str, str | None]]:
    """SET TRANSACTION / SET SESSION CHARACTERISTICS AS TRANSACTION: one entry per option."""
    prefix = "default_" if name == "session characteristics" else ""
    entries: list[tuple[str, str | None]] = []
    for arg in args:
        elem = arg.get("DefElem") if isinstance(arg, dict) else None
        if isinstance(elem, dict) and isinstance(elem.get("defname"), str):
            setting = prefix + elem["defname"]
            value = _option_value({"defname": setting, "arg": elem.get("arg")})
            entries.append((setting, value))
    return entries or [(name, None)]


_TABLE_FIELDS: Final = {
    "CreateStmt": "relation",
    "AlterTableStmt": "relation",
    "CreateTrigStmt": "relation",
    "RuleStmt": "relation",
    "CreatePolicyStmt": "table",
    "AlterPolicyStmt": "table",
}

_SETTING_VIA: Final = {
    "AlterRoleSetStmt": "ALTER ROLE",
    "AlterDatabaseSetStmt": "ALTER DATABASE",
    "AlterSystemStmt": "ALTER SYSTEM",
}

_HANDLERS: Final[dict[str, _Handler]] = {
    "SelectStmt": FactWalker._select,
    "InsertStmt": FactWalker._insert,
    "UpdateStmt": FactWalker._update,
    "DeleteStmt": FactWalker._delete,
    "MergeStmt": FactWalker._merge,
    "IntoClause": FactWalker._into,
    "LockingClause": FactWalker._locking,
    "RangeVar": FactWalker._range_var,
    "JoinExpr": FactWalker._join,
    "RangeSubselect": FactWalker._range_subselect,
    "RangeFunction": FactWalker._range_derived,
    "RangeTableFunc": FactWalker._range_derived,
    "JsonTable": FactWalker._range_derived,
    "RangeTableSample": FactWalker._range_tablesample,
    "ColumnRef": FactWalker._column_ref,
    "FuncCall": FactWalker._func_call,
    "WindowDef": FactWalker._window_def,
    "IndexElem": FactWalker._index_elem,
    "IndexStmt": FactWalker._index_stmt,
    **dict.fromkeys(_TABLE_FIELDS, FactWalker._table_scoped),
    "CopyStmt": FactWalker._copy,
    "ExplainStmt": FactWalker._explain,
    "PrepareStmt": FactWalker._prepare,
    "ExecuteStmt": FactWalker._execute,
    "DeallocateStmt": FactWalker._deallocate,
    "DiscardStmt": FactWalker._discard,
    "LockStmt": FactWalker._lock,
    "TruncateStmt": FactWalker._truncate,
    "DropStmt": FactWalker._named_object,
    "CommentStmt": FactWalker._named_object,
    "SecLabelStmt": FactWalker._named_object,
    "ImportForeignSchemaStmt": FactWalker._import_foreign_schema,
    "CreateTableAsStmt": FactWalker._create_table_as,
    "CreateFunctionStmt": FactWalker._with_setting_via,
    "AlterFunctionStmt": FactWalker._with_setting_via,
    "AlterRoleSetStmt": FactWalker._with_setting_via,
    "AlterDatabaseSetStmt": FactWalker._with_setting_via,
    "AlterSystemStmt": FactWalker._with_setting_via,
    "VariableSetStmt": FactWalker._variable_set,
    "TransactionStmt": FactWalker._transaction,
}
