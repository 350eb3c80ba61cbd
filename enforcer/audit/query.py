"""Auditor queries over the decision log: its segments loaded into an in-memory DuckDB database.

Owns: reading every segment of a decision log directory (whatever shape each record's
``input`` has), the ``records``, ``decisions`` and ``outcomes`` views an auditor queries, the
filters of ``pgwarden audit query`` and its table, JSON and CSV output.
Never: writes to the log or anywhere else. The log is copied into memory first; after that
the database cannot touch the file system and accepts a single read-only query only.
It does not check the hash chain either: ``pgwarden audit verify`` does (a record that does
not parse is skipped here and counted in :attr:`AuditDatabase.unreadable_lines`).
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, TextIO

import duckdb

from enforcer.audit.decision_log import segments_of
from enforcer.audit.timespec import point_in_time
from enforcer.terminal import console as terminal_console
from enforcer.terminal import printable

ACTIONS = ("allow", "deny", "mask", "review")
OutputFormat = Literal["table", "json", "csv"]


# Every record line, with what the chain says about it. Lines that are not JSON objects (a torn
# last line of a killed gateway) were removed when loading.
_RECORDS = """
CREATE VIEW records AS
SELECT record->>'$.chain.stream' AS stream,
       TRY_CAST(record->>'$.chain.seq' AS BIGINT) AS seq,
       record->>'$.event' AS event,
       TRY_CAST(record->>'$.timestamp' AS TIMESTAMPTZ) AS ts,
       file,
       record
FROM log_lines
"""

_OUTCOMES = """
CREATE VIEW outcomes AS
SELECT record->>'$.decision_id' AS decision_id,
       ts, stream, seq,
       record->>'$.session' AS session,
       TRY_CAST(record->>'$.forwarded' AS BOOLEAN) AS forwarded,
       record->>'$.command_tag' AS command_tag,
       TRY_CAST(record->>'$.rows' AS BIGINT) AS "rows",
       TRY_CAST(record->>'$.duration_ms' AS DOUBLE) AS duration_ms,
       record->>'$.error.sqlstate' AS error_sqlstate,
       record->>'$.error.message' AS error_message,
       record
FROM records
WHERE event = 'outcome'
"""

# A record whose input could not be built (a statement that does not parse) has only
# input.statement, so who and where come from the enforcement member when the input lacks them.
# A prepared statement executed several times has several outcomes: the first one is joined.
_DECISIONS = """
CREATE VIEW decisions AS
WITH first_outcome AS (
    SELECT decision_id, "rows", duration_ms, error_sqlstate, error_message, command_tag,
           count(*) OVER (PARTITION BY decision_id) AS outcome_count
    FROM outcomes
    QUALIFY row_number() OVER (PARTITION BY decision_id ORDER BY ts, stream, seq) = 1
), d AS (
    SELECT record->>'$.decision_id' AS decision_id, ts, stream, seq, record
    FROM records
    WHERE event = 'decision'
)
SELECT d.decision_id,
       d.ts,
       coalesce(record->>'$.input.identity.subject', record->>'$.enforcement.subject') AS subject,
       record->>'$.input.identity.issuer' AS issuer,
       TRY_CAST(record->'$.input.identity.groups' AS VARCHAR[]) AS groups,
       coalesce(record->>'$.enforcement.session', record->>'$.input.session.id') AS session,
       coalesce(record->>'$.enforcement.connection', record->>'$.input.session.connection') AS connection,
       record->>'$.result.action' AS action,
       TRY_CAST(record->'$.result.reasons' AS VARCHAR[]) AS reasons,
       TRY_CAST(record->>'$.enforcement.forwarded' AS BOOLEAN) AS forwarded,
       TRY_CAST(record->>'$.enforcement.cached' AS BOOLEAN) AS cached,
       coalesce(record->>'$.enforcement.policy_version', record->>'$.labels.policy_version')
           AS policy_version,
       record->>'$.input.statement.text' AS statement,
       record->>'$.input.statement.kind' AS kind,
       record->>'$.input.statement.command_tag' AS command_tag,
       TRY_CAST(record->'$.input.statement.relations'
                AS STRUCT(schema VARCHAR, name VARCHAR, access VARCHAR)[]) AS relations,
       o."rows",
       o.duration_ms,
       o.error_sqlstate,
       o.error_message,
       o.command_tag AS outcome_command_tag,
       coalesce(o.outcome_count, 0) AS outcome_count,
       d.stream,
       d.seq,
       record
FROM d LEFT JOIN first_outcome o ON o.decision_id = d.decision_id
"""

#: What ``pgwarden audit query`` lists without ``--sql`` (newest first).
LISTING_COLUMNS = (
    "ts",
    "decision_id",
    "subject",
    "session",
    "connection",
    "action",
    "forwarded",
    "statement",
    "rows",
    "duration_ms",
    "error_sqlstate",
    "reasons",
)
#: The narrower listing of the table format (JSON and CSV give every listing column).
TABLE_COLUMNS = ("ts", "subject", "session", "action", "statement", "rows", "duration_ms", "decision_id")


class QueryError(Exception):
    """The query cannot be run; the message names the problem and the fix."""


@dataclass(frozen=True)
class DecisionFilter:
    """The conditions of ``pgwarden audit query`` without ``--sql``; None matches everything."""

    identity: str | None = None
    action: str | None = None
    #: ``name`` or ``schema.name``; an unqualified reference matches any schema (the search path decided).
    relation: str | None = None
    #: A session id or a prefix of one.
    session: str | None = None
    connection: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int = 100


@dataclass(frozen=True)
class QueryResult:
    """The rows of one query, with their column names."""

    columns: tuple[str, ...]
    rows: list[tuple[Any, ...]]
    #: Columns whose values are JSON text (``record``): decoded in JSON output.
    json_columns: frozenset[str] = frozenset()

    def project(self, columns: tuple[str, ...]) -> QueryResult:
        """Only these columns, in this order."""
        index = [self.columns.index(c) for c in columns]
        rows = [tuple(row[i] for i in index) for row in self.rows]
        return QueryResult(columns, rows, self.json_columns & set(columns))

    def objects(self) -> list[dict[str, Any]]:
        """One dict per row, JSON columns decoded."""
        out = []
        for row in self.rows:
            obj = dict(zip(self.columns, row, strict=True))
            for name in self.json_columns:
                if isinstance(obj.get(name), str):
                    obj[name] = json.loads(obj[name])
            out.append(obj)
        return out


def parse_time(value: str, option: str, *, now: datetime | None = None) -> datetime:
    """An ISO-8601 timestamp (UTC unless it says otherwise), or a duration (``7d``) meaning that long ago."""
    try:
        ts = point_in_time(value, now=now.timestamp() if now is not None else None)
    except ValueError as exc:
        raise QueryError(f"{option}: {exc}") from None
    return datetime.fromtimestamp(ts, UTC)


def segment_files(directory: Path) -> list[Path]:
    """Every segment of every stream under a decision log directory (not anchors or lock files)."""
    if not directory.is_dir():
        raise QueryError(
            f"the decision log directory {directory} does not exist; pass the gateway's "
            "audit.decision_log.dir (with --config or --dir)"
        )
    try:
        streams = sorted(p for p in directory.iterdir() if p.is_dir())
        return [path for stream in streams for _, path in segments_of(stream)]
    except OSError as exc:
        raise QueryError(f"cannot read the decision log {directory}: {exc.strerror or exc}") from None


class AuditDatabase:
    """A decision log directory loaded into an in-memory DuckDB database, for read-only queries."""

    def __init__(self, directory: Path) -> None:
        files = segment_files(directory)
        if not files:
            raise QueryError(
                f"{directory} holds no decision log segments (<stream>/<number>.jsonl); is it the "
                "audit.decision_log.dir of a gateway that has run?"
            )
        self.directory = directory
        self.con = duckdb.connect(":memory:")
        try:
            self.con.execute("SET TimeZone = 'UTC'")
            self.con.execute(
                "CREATE TABLE log_lines AS SELECT filename AS file, json AS record "
                "FROM read_ndjson_objects($files, filename = true, ignore_errors = true)",
                {"files": [str(f) for f in files]},
            )
            bad = "record IS NULL OR json_type(record) <> 'OBJECT'"
            row = self.con.execute(
                f"SELECT count(*) FILTER (WHERE {bad}), count(*) FROM log_lines"
            ).fetchone()
            assert row is not None
            #: Lines that are not JSON objects (a torn last line, or damage ``audit verify`` reports).
            self.unreadable_lines: int = row[0]
            if row[0] == row[1]:
                raise QueryError(f"{directory} holds segment files but no readable records")
            self.con.execute(f"DELETE FROM log_lines WHERE {bad}")
            for view in (_RECORDS, _OUTCOMES, _DECISIONS):
                self.con.execute(view)
            # From here on nothing may read or write files, and no query may change that.
            self.con.execute("SET enable_external_access = false")
            self.con.execute("SET lock_configuration = true")
        except duckdb.Error as exc:
            self.con.close()
            raise QueryError(f"cannot load the decision log {directory}: {exc}") from None
        except QueryError:
            self.con.close()
            raise

    def __enter__(self) -> AuditDatabase:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.con.close()

    def _run(self, sql: str, params: dict[str, Any] | None = None) -> QueryResult:
        try:
            cursor = self.con.execute(sql, params)
            rows = cursor.fetchall()
        except duckdb.PermissionException as exc:
            raise QueryError(
                f"the query was refused: {exc}\nqueries may only read the views decisions, outcomes "
                "and records"
            ) from None
        except duckdb.Error as exc:
            raise QueryError(f"the query failed: {exc}") from None
        description = cursor.description or []
        columns = tuple(str(d[0]) for d in description)
        json_columns = frozenset(str(d[0]) for d in description if str(d[1]) == "JSON")
        return QueryResult(columns, rows, json_columns)

    def sql(self, query: str) -> QueryResult:
        """Run one read-only query (SELECT, WITH ... SELECT, FROM ..., VALUES, DESCRIBE, SHOW)."""
        try:
            statements = duckdb.extract_statements(query)
        except duckdb.Error as exc:
            raise QueryError(f"the SQL does not parse: {exc}") from None
        if len(statements) != 1:
            raise QueryError(f"give exactly one query; this SQL has {len(statements)} statements")
        kind = statements[0].type
        if kind != duckdb.StatementType.SELECT:
            raise QueryError(
                "only a read-only query (SELECT, WITH ... SELECT, FROM ...) may be run, "
                f"not a statement of type {kind.name}"
            )
        return self._run(query)

    def decisions(self, f: DecisionFilter) -> QueryResult:
        """The decisions matching every condition of ``f``, newest first."""
        if f.action is not None and f.action not in ACTIONS:
            raise QueryError(f"--action: {f.action!r} is not one of {', '.join(ACTIONS)}")
        where: list[str] = []
        params: dict[str, Any] = {"limit": f.limit}
        if f.identity is not None:
            where.append("subject = $identity")
            params["identity"] = f.identity
        if f.action is not None:
            where.append("action = $action")
            params["action"] = f.action
        if f.session is not None:
            where.append("starts_with(session, $session)")
            params["session"] = f.session
        if f.connection is not None:
            where.append("connection = $connection")
            params["connection"] = f.connection
        if f.since is not None:
            where.append("ts >= $since")
            params["since"] = f.since
        if f.until is not None:
            where.append("ts <= $until")
            params["until"] = f.until
        if f.relation is not None:
            schema, _, name = f.relation.strip().lower().rpartition(".")
            where.append(
                "EXISTS (SELECT 1 FROM unnest(relations) AS u(r) WHERE lower(r.name) = $rel_name "
                "AND ($rel_schema = '' OR r.schema IS NULL OR lower(r.schema) = $rel_schema))"
            )
            params["rel_name"] = name
            params["rel_schema"] = schema
        columns = ", ".join(f'"{c}"' for c in LISTING_COLUMNS)
        sql = f"SELECT {columns} FROM decisions"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY ts DESC, stream, seq DESC LIMIT $limit"
        return self._run(sql, params)


# ---------------------------------------------------------------------- output
def _json_default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    return str(value)


def _cell(value: Any, *, short_time: bool = False) -> str:
    """One value as text for CSV and table output."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.isoformat(sep=" ", timespec="seconds") if short_time else value.isoformat()
    if isinstance(value, list | dict | tuple):
        return json.dumps(value, separators=(",", ":"), default=_json_default)
    return str(value)


def write_result(result: QueryResult, fmt: OutputFormat, out: TextIO) -> None:
    """Write a result as a table (rich), a JSON list of objects, or CSV with a header row."""
    if fmt == "json":
        json.dump(result.objects(), out, indent=2, default=_json_default)
        out.write("\n")
    elif fmt == "csv":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(result.columns)
        writer.writerows([_cell(v) for v in row] for row in result.rows)
    else:
        from rich.table import Table
        from rich.text import Text

        table = Table(caption=f"{len(result.rows)} row(s)")
        for name in result.columns:
            table.add_column(name, overflow="fold")  # fold, never cut: an auditor needs whole values
        for row in result.rows:
            table.add_row(*(Text(printable(_cell(v, short_time=True))) for v in row))
        console = terminal_console(out, highlight=False)
        # Text cells: statements and reasons are data, and may contain [markup].
        console.print(table)
