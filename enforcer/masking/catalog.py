"""What the upstream catalog says about relations, columns, types, views and functions.

Owns: the frozen :class:`Catalog` snapshot masking decides on, the SQL that loads it through a
control connection (:func:`load_catalog`), and :class:`CatalogCache`, one snapshot per upstream
connection name refreshed on a TTL and on :meth:`CatalogCache.invalidate` (after DDL).
Never: decides what to mask, or runs anything but catalog reads on the control connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

import psycopg

RelationKind = Literal["table", "partitioned", "view", "matview", "foreign"]

_KINDS: dict[str, RelationKind] = {
    "r": "table",
    "p": "partitioned",
    "v": "view",
    "m": "matview",
    "f": "foreign",
}

#: Schemas whose relations are the server's own: known by name (so that resolution matches
#: Postgres), never masked, columns not loaded.
SYSTEM_SCHEMAS = ("pg_catalog", "information_schema")


@dataclass(frozen=True)
class Column:
    """One live (not dropped) column.

    ``type_sql`` is ``format_type(atttypid, atttypmod)`` as printed with an empty search path
    (types outside ``pg_catalog`` come schema-qualified). ``base_type_oid`` and ``category`` are
    the type's after following domains to their base (``category`` is ``pg_type.typcategory``:
    ``S`` string, ``N`` numeric, ...). ``type_schema`` is the schema of the column's own type.
    """

    name: str
    attnum: int
    type_oid: int
    typmod: int
    type_sql: str
    base_type_oid: int
    category: str
    type_schema: str = "pg_catalog"
    generated: bool = False


@dataclass(frozen=True)
class Relation:
    """A table, partitioned table, view, materialized view or foreign table.

    For views and materialized views: ``definition`` is ``pg_get_viewdef`` printed with an empty
    search path (every name outside ``pg_catalog`` schema-qualified), ``depends_on`` the
    (relation oid, attnum) pairs its rule reads (attnum 0: the whole relation), and
    ``untrusted_calls`` the ``schema.name`` of functions it calls whose body pgwarden cannot see.
    ``parents`` are inheritance / partition parents; ``generated_from`` maps a generated column's
    attnum to the attnums it is computed from.
    """

    oid: int
    schema: str
    name: str
    kind: RelationKind
    columns: tuple[Column, ...]
    definition: str | None = None
    security_barrier: bool = False
    depends_on: tuple[tuple[int, int], ...] = ()
    untrusted_calls: tuple[str, ...] = ()
    parents: tuple[int, ...] = ()
    generated_from: tuple[tuple[int, tuple[int, ...]], ...] = ()

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"

    @cached_property
    def _by_name(self) -> dict[str, Column]:
        return {c.name: c for c in self.columns}

    @cached_property
    def _by_attnum(self) -> dict[int, Column]:
        return {c.attnum: c for c in self.columns}

    def column(self, name: str) -> Column | None:
        return self._by_name.get(name)

    def column_at(self, attnum: int) -> Column | None:
        return self._by_attnum.get(attnum)


@dataclass(frozen=True)
class Catalog:
    """A snapshot of one upstream database's catalog, as masking needs it.

    ``untrusted_functions`` are ``(schema, name)`` of functions outside ``pg_catalog`` written in
    a language other than C or internal (SQL, PL/pgSQL, ...), plus aggregates built on such
    functions: their bodies can read any table. ``untrusted_operators`` and
    ``untrusted_cast_types`` name operators and cast target types implemented by such functions.
    ``search_path`` is the control connection's (the role's and database's default) as a list.
    """

    relations: tuple[Relation, ...]
    system_relations: frozenset[tuple[str, str]] = frozenset()
    untrusted_functions: frozenset[tuple[str, str]] = frozenset()
    untrusted_operators: frozenset[tuple[str, str]] = frozenset()
    untrusted_cast_types: frozenset[str] = frozenset()
    search_path: tuple[str, ...] = ("$user", "public")
    current_user: str = ""
    database: str = ""
    server_version_num: int = 0
    loaded_at: float = field(default=0.0, compare=False)

    @cached_property
    def _by_name(self) -> dict[tuple[str, str], Relation]:
        return {(r.schema, r.name): r for r in self.relations}

    @cached_property
    def _by_oid(self) -> dict[int, Relation]:
        return {r.oid: r for r in self.relations}

    @cached_property
    def _untrusted_function_names(self) -> frozenset[str]:
        return frozenset(name for _, name in self.untrusted_functions)

    @cached_property
    def _untrusted_operator_names(self) -> frozenset[str]:
        return frozenset(name for _, name in self.untrusted_operators)

    @cached_property
    def schemas(self) -> frozenset[str]:
        return frozenset(r.schema for r in self.relations) | frozenset(s for s, _ in self.system_relations)

    def relation(self, schema: str, name: str) -> Relation | None:
        return self._by_name.get((schema, name))

    def by_oid(self, oid: int) -> Relation | None:
        return self._by_oid.get(oid)

    def is_system(self, schema: str, name: str) -> bool:
        return (schema, name) in self.system_relations

    def function_untrusted(self, schema: str | None, name: str) -> bool:
        """Whether a call of ``name`` (in ``schema``, or unqualified) may reach an untrusted body."""
        if schema is None:
            return name in self._untrusted_function_names
        return (schema, name) in self.untrusted_functions

    def operator_untrusted(self, schema: str | None, name: str) -> bool:
        if schema is None:
            return name in self._untrusted_operator_names
        return (schema, name) in self.untrusted_operators


def parse_search_path(setting: str) -> tuple[str, ...]:
    """``SHOW search_path`` text -> schema names, split as Postgres does (``SplitIdentifierString``).

    Quoted names keep their case (``"$user"`` becomes ``$user``), unquoted ones are folded to
    lower case.
    """
    out: list[str] = []
    i, n = 0, len(setting)
    while i < n:
        while i < n and setting[i].isspace():
            i += 1
        if i >= n:
            break
        if setting[i] == '"':
            name = ""
            i += 1
            while i < n:
                if setting[i] == '"':
                    if setting[i + 1 : i + 2] == '"':
                        name += '"'
                        i += 2
                        continue
                    i += 1
                    break
                name += setting[i]
                i += 1
        else:
            start = i
            while i < n and setting[i] != "," and not setting[i].isspace():
                i += 1
            name = setting[start:i].lower()
        while i < n and setting[i].isspace():
            i += 1
        if i < n and setting[i] == ",":
            i += 1
        if name:
            out.append(name)
    return tuple(out)


# --------------------------------------------------------------------------- loading

_TRUSTED_LANGUAGES = "SELECT oid FROM pg_catalog.pg_language WHERE lanname IN ('internal', 'c')"
_USER_NAMESPACE = (
    "n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_toast'"
    " AND n.nspname !~ '^pg_temp_'"
)

SESSION_SQL = (
    "SELECT current_user::text, current_database()::text, current_setting('search_path'),"
    " current_setting('server_version_num')::int"
)

RELATIONS_SQL = f"""
SELECT c.oid::int8, n.nspname::text, c.relname::text, c.relkind::text,
       COALESCE(c.reloptions, '{{}}')::text[],
       CASE WHEN c.relkind IN ('v', 'm') THEN pg_catalog.pg_get_viewdef(c.oid) END
FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') AND {_USER_NAMESPACE}
ORDER BY 1
"""

COLUMNS_SQL = f"""
WITH RECURSIVE cols AS (
    SELECT a.attrelid, a.attnum, a.attname, a.atttypid, a.atttypmod, a.attgenerated
    FROM pg_catalog.pg_attribute a
    JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
    JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') AND {_USER_NAMESPACE}
      AND a.attnum > 0 AND NOT a.attisdropped
), chain AS (
    SELECT t.oid AS start, t.oid AS cur, t.typtype, t.typbasetype, t.typcategory, 0 AS depth
    FROM pg_catalog.pg_type t WHERE t.oid IN (SELECT atttypid FROM cols)
    UNION ALL
    SELECT ch.start, b.oid, b.typtype, b.typbasetype, b.typcategory, ch.depth + 1
    FROM chain ch JOIN pg_catalog.pg_type b ON b.oid = ch.typbasetype
    WHERE ch.typtype = 'd' AND ch.depth < 64
)
SELECT cols.attrelid::int8, cols.attnum::int, cols.attname::text, cols.atttypid::int8, cols.atttypmod,
       pg_catalog.format_type(cols.atttypid, cols.atttypmod), base.cur::int8, base.typcategory::text,
       tn.nspname::text, cols.attgenerated::text
FROM cols
JOIN pg_catalog.pg_type t ON t.oid = cols.atttypid
JOIN pg_catalog.pg_namespace tn ON tn.oid = t.typnamespace
JOIN chain base ON base.start = cols.atttypid AND base.typtype <> 'd'
ORDER BY 1, 2
"""

VIEW_DEPENDENCIES_SQL = """
SELECT DISTINCT r.ev_class::int8, d.refobjid::int8, d.refobjsubid::int
FROM pg_catalog.pg_rewrite r
JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass AND d.objid = r.oid
WHERE d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.refobjid <> r.ev_class
"""

VIEW_FUNCTIONS_SQL = f"""
SELECT DISTINCT r.ev_class::int8, n.nspname::text, p.proname::text
FROM pg_catalog.pg_rewrite r
JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass AND d.objid = r.oid
JOIN pg_catalog.pg_proc p ON d.refclassid = 'pg_catalog.pg_proc'::pg_catalog.regclass AND p.oid = d.refobjid
JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
WHERE p.prolang NOT IN ({_TRUSTED_LANGUAGES}) AND n.nspname <> 'pg_catalog'
"""

GENERATED_SQL = """
SELECT d.objid::int8, d.objsubid::int, d.refobjsubid::int
FROM pg_catalog.pg_depend d
JOIN pg_catalog.pg_attribute a ON a.attrelid = d.objid AND a.attnum = d.objsubid
WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
  AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass
  AND d.objid = d.refobjid AND d.objsubid > 0 AND d.refobjsubid > 0 AND a.attgenerated <> ''
"""

INHERITS_SQL = "SELECT inhrelid::int8, inhparent::int8 FROM pg_catalog.pg_inherits"

SYSTEM_RELATIONS_SQL = """
SELECT n.nspname::text, c.relname::text
FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname IN ('pg_catalog', 'information_schema') AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
"""

UNTRUSTED_FUNCTIONS_SQL = f"""
SELECT DISTINCT n.nspname::text, p.proname::text
FROM pg_catalog.pg_proc p
JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
LEFT JOIN pg_catalog.pg_aggregate ag ON ag.aggfnoid = p.oid
WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND (
    p.prolang NOT IN ({_TRUSTED_LANGUAGES})
    OR EXISTS (
        SELECT 1 FROM pg_catalog.pg_proc s
        WHERE s.oid IN (ag.aggtransfn, ag.aggfinalfn, ag.aggcombinefn, ag.aggserialfn, ag.aggdeserialfn,
                        ag.aggmtransfn, ag.aggminvtransfn, ag.aggmfinalfn)
          AND s.prolang NOT IN ({_TRUSTED_LANGUAGES})
    )
)
"""

UNTRUSTED_OPERATORS_SQL = f"""
SELECT DISTINCT n.nspname::text, o.oprname::text
FROM pg_catalog.pg_operator o
JOIN pg_catalog.pg_namespace n ON n.oid = o.oprnamespace
JOIN pg_catalog.pg_proc p ON p.oid = o.oprcode
JOIN pg_catalog.pg_namespace pn ON pn.oid = p.pronamespace
WHERE p.prolang NOT IN ({_TRUSTED_LANGUAGES}) AND pn.nspname NOT IN ('pg_catalog', 'information_schema')
"""

UNTRUSTED_CASTS_SQL = f"""
SELECT DISTINCT t.typname::text
FROM pg_catalog.pg_cast c
JOIN pg_catalog.pg_proc p ON p.oid = c.castfunc
JOIN pg_catalog.pg_namespace pn ON pn.oid = p.pronamespace
JOIN pg_catalog.pg_type t ON t.oid = c.casttarget
WHERE c.castfunc <> 0 AND p.prolang NOT IN ({_TRUSTED_LANGUAGES})
  AND pn.nspname NOT IN ('pg_catalog', 'information_schema')
"""


def _true_option(options: Iterable[str], name: str) -> bool:
    for opt in options:
        key, _, value = opt.partition("=")
        if key == name:
            return value.lower() in ("true", "on", "yes", "1", "t", "y")
    return False


async def _rows(conn: psycopg.AsyncConnection[Any], sql: str) -> list[tuple[Any, ...]]:
    async with conn.cursor() as cur:
        await cur.execute(sql)
        return list(await cur.fetchall())


async def load_catalog(conn: psycopg.AsyncConnection[Any], *, now: float | None = None) -> Catalog:
    """Read a :class:`Catalog` through ``conn`` (one read-only transaction, a dozen queries).

    The session's search path is read first; the rest runs with an empty search path so that
    view definitions and type names come back schema-qualified.
    """
    async with conn.transaction():
        await conn.execute("SET TRANSACTION READ ONLY")
        (user, database, search_path, version), *_ = await _rows(conn, SESSION_SQL)
        await _rows(conn, "SELECT pg_catalog.set_config('search_path', '', true)")
        rel_rows = await _rows(conn, RELATIONS_SQL)
        col_rows = await _rows(conn, COLUMNS_SQL)
        dep_rows = await _rows(conn, VIEW_DEPENDENCIES_SQL)
        fn_dep_rows = await _rows(conn, VIEW_FUNCTIONS_SQL)
        gen_rows = await _rows(conn, GENERATED_SQL)
        inh_rows = await _rows(conn, INHERITS_SQL)
        sys_rows = await _rows(conn, SYSTEM_RELATIONS_SQL)
        fn_rows = await _rows(conn, UNTRUSTED_FUNCTIONS_SQL)
        op_rows = await _rows(conn, UNTRUSTED_OPERATORS_SQL)
        cast_rows = await _rows(conn, UNTRUSTED_CASTS_SQL)
    return build_catalog(
        rel_rows,
        col_rows,
        dep_rows,
        fn_dep_rows,
        gen_rows,
        inh_rows,
        sys_rows,
        fn_rows,
        op_rows,
        cast_rows,
        user=str(user),
        database=str(database),
        search_path=str(search_path),
        server_version_num=int(version),
        loaded_at=time.monotonic() if now is None else now,
    )


def build_catalog(
    rel_rows: Iterable[tuple[Any, ...]],
    col_rows: Iterable[tuple[Any, ...]],
    dep_rows: Iterable[tuple[Any, ...]] = (),
    fn_dep_rows: Iterable[tuple[Any, ...]] = (),
    gen_rows: Iterable[tuple[Any, ...]] = (),
    inh_rows: Iterable[tuple[Any, ...]] = (),
    sys_rows: Iterable[tuple[Any, ...]] = (),
    fn_rows: Iterable[tuple[Any, ...]] = (),
    op_rows: Iterable[tuple[Any, ...]] = (),
    cast_rows: Iterable[tuple[Any, ...]] = (),
    *,
    user: str = "",
    database: str = "",
    search_path: str = '"$user", public',
    server_version_num: int = 0,
    loaded_at: float = 0.0,
) -> Catalog:
    """A :class:`Catalog` from the rows of the loading queries (in their column order)."""
    columns: dict[int, list[Column]] = {}
    for relid, attnum, name, typid, typmod, type_sql, base, category, type_schema, generated in col_rows:
        columns.setdefault(int(relid), []).append(
            Column(
                str(name),
                int(attnum),
                int(typid),
                int(typmod),
                str(type_sql),
                int(base),
                str(category),
                str(type_schema),
                bool(generated),
            )
        )
    deps: dict[int, set[tuple[int, int]]] = {}
    for view, ref, sub in dep_rows:
        deps.setdefault(int(view), set()).add((int(ref), int(sub)))
    calls: dict[int, set[str]] = {}
    for view, schema, fn in fn_dep_rows:
        calls.setdefault(int(view), set()).add(f"{schema}.{fn}")
    generated_from: dict[int, dict[int, set[int]]] = {}
    for relid, attnum, source in gen_rows:
        generated_from.setdefault(int(relid), {}).setdefault(int(attnum), set()).add(int(source))
    parents: dict[int, list[int]] = {}
    for child, parent in inh_rows:
        parents.setdefault(int(child), []).append(int(parent))
    relations = []
    for oid, schema, name, relkind, options, definition in rel_rows:
        oid = int(oid)
        relations.append(
            Relation(
                oid=oid,
                schema=str(schema),
                name=str(name),
                kind=_KINDS[str(relkind)],
                columns=tuple(sorted(columns.get(oid, ()), key=lambda c: c.attnum)),
                definition=None if definition is None else str(definition),
                security_barrier=_true_option(options or (), "security_barrier"),
                depends_on=tuple(sorted(deps.get(oid, ()))),
                untrusted_calls=tuple(sorted(calls.get(oid, ()))),
                parents=tuple(sorted(parents.get(oid, ()))),
                generated_from=tuple(
                    (att, tuple(sorted(srcs))) for att, srcs in sorted(generated_from.get(oid, {}).items())
                ),
            )
        )
    return Catalog(
        relations=tuple(relations),
        system_relations=frozenset((str(s), str(n)) for s, n in sys_rows),
        untrusted_functions=frozenset((str(s), str(n)) for s, n in fn_rows),
        untrusted_operators=frozenset((str(s), str(n)) for s, n in op_rows),
        untrusted_cast_types=frozenset(str(t) for (t,) in cast_rows),
        search_path=parse_search_path(search_path),
        current_user=user,
        database=database,
        server_version_num=server_version_num,
        loaded_at=loaded_at,
    )


# --------------------------------------------------------------------------- cache

Connector = Callable[[str], Awaitable[psycopg.AsyncConnection[Any]]]
"""Opens a control connection to the upstream named by its argument (autocommit is fine)."""


class CatalogUnavailable(Exception):
    """The catalog could not be loaded: masking cannot be guaranteed, the statement is denied."""

    sqlstate = "58000"


@dataclass
class _Entry:
    catalog: Catalog | None = None
    fresh_until: float = 0.0
    generation: int = 0
    conn: psycopg.AsyncConnection[Any] | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class CatalogCache:
    """One :class:`Catalog` per upstream connection name, with its own control connection.

    A snapshot is reused for ``ttl`` seconds, or until :meth:`invalidate` (call it after any DDL
    the gateway forwards; other writers' DDL is picked up by the TTL). Concurrent ``get`` calls for
    the same name share one load. A snapshot loaded while an invalidation happened is returned to
    the callers that waited for it but not kept as fresh.
    """

    def __init__(
        self, connect: Connector, *, ttl: float = 60.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if ttl < 0:
            raise ValueError("ttl must not be negative")
        self._connect = connect
        self._ttl = ttl
        self._clock = clock
        self._entries: dict[str, _Entry] = {}

    def _entry(self, name: str) -> _Entry:
        entry = self._entries.get(name)
        if entry is None:
            entry = self._entries[name] = _Entry()
        return entry

    def cached(self, name: str) -> Catalog | None:
        """The snapshot held for ``name`` if still fresh, without loading."""
        entry = self._entries.get(name)
        if entry is None or entry.catalog is None or self._clock() >= entry.fresh_until:
            return None
        return entry.catalog

    async def get(self, name: str) -> Catalog:
        entry = self._entry(name)
        if entry.catalog is not None and self._clock() < entry.fresh_until:
            return entry.catalog
        async with entry.lock:
            if entry.catalog is not None and self._clock() < entry.fresh_until:
                return entry.catalog
            generation = entry.generation
            try:
                if entry.conn is None or entry.conn.closed:
                    entry.conn = await self._connect(name)
                catalog = await load_catalog(entry.conn, now=self._clock())
            except Exception as exc:
                await self._drop_connection(entry)
                raise CatalogUnavailable(
                    f"the catalog of upstream {name!r} could not be read, so masking cannot be "
                    f"guaranteed ({type(exc).__name__})"
                ) from exc
            entry.catalog = catalog
            entry.fresh_until = self._clock() + self._ttl if entry.generation == generation else 0.0
            return catalog

    def invalidate(self, name: str | None = None) -> None:
        """Forget the snapshot of ``name`` (every name when ``None``): the next ``get`` reloads."""
        for key, entry in self._entries.items():
            if name is None or key == name:
                entry.fresh_until = 0.0
                entry.generation += 1

    async def close(self) -> None:
        for entry in self._entries.values():
            await self._drop_connection(entry)

    @staticmethod
    async def _drop_connection(entry: _Entry) -> None:
        conn, entry.conn = entry.conn, None
        if conn is not None and not conn.closed:
            with contextlib.suppress(Exception):  # closing a broken connection is best effort
                await conn.close()

    @property
    def names(self) -> Mapping[str, Catalog | None]:
        return {k: e.catalog for k, e in self._entries.items()}
