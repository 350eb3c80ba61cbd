"""Classification of libpg_query statement nodes: kind, command tag and statement-level traits.

For every statement node type this module knows the facts ``kind`` (our coarse class), the
``command_tag`` Postgres assigns to it (``CreateCommandTag()`` in ``tcop/utility.c``), whether
Postgres logs it as DDL (``log_statement = ddl``; that is our ``ddl`` flag), the access mode of
relations the statement names directly (``CREATE INDEX ON t`` -> ``ddl``, ``VACUUM t`` ->
``maintenance``) and whether it runs code we cannot see (DO, CALL, CREATE FUNCTION ...).

It looks only at the statement node's own fields; it never walks the tree (``walker.py`` does)
and has no opinion on what a policy should decide. A node type it does not know is kind
``unknown`` with command tag ``UNKNOWN``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final


@dataclass(frozen=True, slots=True)
class StatementClass:
    kind: str
    access: str = "read"
    """Access mode of relations the statement names directly (outside any query it contains)."""
    ddl: bool = False
    """Postgres logs the statement under ``log_statement = ddl``."""
    runs_code: bool = False
    """The statement runs or installs code whose SQL is not in the parse tree."""


_DDL = StatementClass("ddl", "ddl", ddl=True)
_DDL_CODE = StatementClass("ddl", "ddl", ddl=True, runs_code=True)
_GRANT = StatementClass("grant", "grant", ddl=True)
_MAINTENANCE = StatementClass("maintenance", "maintenance")
_UTILITY = StatementClass("utility")

STATEMENT_CLASSES: Final[Mapping[str, StatementClass]] = {
    "SelectStmt": StatementClass("select"),
    "InsertStmt": StatementClass("insert"),
    "UpdateStmt": StatementClass("update"),
    "DeleteStmt": StatementClass("delete"),
    "MergeStmt": StatementClass("merge"),
    "CopyStmt": StatementClass("copy"),
    "ExplainStmt": StatementClass("explain"),
    "PrepareStmt": StatementClass("prepare", runs_code=True),
    "ExecuteStmt": StatementClass("execute", runs_code=True),
    "DeallocateStmt": StatementClass("deallocate"),
    "DoStmt": StatementClass("do", runs_code=True),
    "CallStmt": StatementClass("call", runs_code=True),
    "LockStmt": StatementClass("lock", "lock"),
    "TruncateStmt": StatementClass("truncate", "truncate"),
    "TransactionStmt": StatementClass("transaction"),
    "VariableSetStmt": StatementClass("set"),
    "VariableShowStmt": StatementClass("show"),
    "ListenStmt": StatementClass("listen"),
    "UnlistenStmt": StatementClass("listen"),
    "NotifyStmt": StatementClass("notify"),
    "DiscardStmt": StatementClass("discard"),
    "GrantStmt": _GRANT,
    "GrantRoleStmt": _GRANT,
    "AlterDefaultPrivilegesStmt": _GRANT,
    "VacuumStmt": _MAINTENANCE,
    "ClusterStmt": _MAINTENANCE,
    "ReindexStmt": _MAINTENANCE,
    "CheckPointStmt": _MAINTENANCE,
    "RefreshMatViewStmt": StatementClass("maintenance", "refresh", ddl=True),
    "DeclareCursorStmt": _UTILITY,
    "FetchStmt": _UTILITY,
    "ClosePortalStmt": _UTILITY,
    "ConstraintsSetStmt": _UTILITY,
    "LoadStmt": StatementClass("utility", runs_code=True),
    "CommentStmt": StatementClass("ddl", "comment", ddl=True),
    "SecLabelStmt": _DDL,
    "AlterSystemStmt": _DDL,
    "CreateFunctionStmt": _DDL_CODE,
    "CreateExtensionStmt": _DDL_CODE,
    "AlterExtensionStmt": _DDL_CODE,
    **{
        name: _DDL
        for name in (
            "AlterCollationStmt",
            "AlterDatabaseRefreshCollStmt",
            "AlterDatabaseSetStmt",
            "AlterDatabaseStmt",
            "AlterDomainStmt",
            "AlterEnumStmt",
            "AlterEventTrigStmt",
            "AlterExtensionContentsStmt",
            "AlterFdwStmt",
            "AlterForeignServerStmt",
            "AlterFunctionStmt",
            "AlterObjectDependsStmt",
            "AlterObjectSchemaStmt",
            "AlterOpFamilyStmt",
            "AlterOperatorStmt",
            "AlterOwnerStmt",
            "AlterPolicyStmt",
            "AlterPublicationStmt",
            "AlterRoleSetStmt",
            "AlterRoleStmt",
            "AlterSeqStmt",
            "AlterStatsStmt",
            "AlterSubscriptionStmt",
            "AlterTSConfigurationStmt",
            "AlterTSDictionaryStmt",
            "AlterTableMoveAllStmt",
            "AlterTableSpaceOptionsStmt",
            "AlterTableStmt",
            "AlterTypeStmt",
            "AlterUserMappingStmt",
            "CompositeTypeStmt",
            "CreateAmStmt",
            "CreateCastStmt",
            "CreateConversionStmt",
            "CreateDomainStmt",
            "CreateEnumStmt",
            "CreateEventTrigStmt",
            "CreateFdwStmt",
            "CreateForeignServerStmt",
            "CreateForeignTableStmt",
            "CreateOpClassStmt",
            "CreateOpFamilyStmt",
            "CreatePLangStmt",
            "CreatePolicyStmt",
            "CreatePublicationStmt",
            "CreateRangeStmt",
            "CreateRoleStmt",
            "CreateSchemaStmt",
            "CreateSeqStmt",
            "CreateStatsStmt",
            "CreateStmt",
            "CreateSubscriptionStmt",
            "CreateTableAsStmt",
            "CreateTableSpaceStmt",
            "CreateTransformStmt",
            "CreateTrigStmt",
            "CreateUserMappingStmt",
            "CreatedbStmt",
            "DefineStmt",
            "DropOwnedStmt",
            "DropRoleStmt",
            "DropStmt",
            "DropSubscriptionStmt",
            "DropTableSpaceStmt",
            "DropUserMappingStmt",
            "DropdbStmt",
            "ImportForeignSchemaStmt",
            "IndexStmt",
            "ReassignOwnedStmt",
            "RenameStmt",
            "RuleStmt",
            "ViewStmt",
        )
    },
}

DDL_NODES: Final[frozenset[str]] = frozenset(name for name, cls in STATEMENT_CLASSES.items() if cls.ddl)
CODE_RUNNING_NODES: Final[frozenset[str]] = frozenset(
    name for name, cls in STATEMENT_CLASSES.items() if cls.runs_code
)

# Statements Postgres plans and executes itself; everything else is a "utility" statement.
OPTIMIZABLE_NODES: Final[frozenset[str]] = frozenset(
    {"SelectStmt", "InsertStmt", "UpdateStmt", "DeleteStmt", "MergeStmt"}
)

UNKNOWN = StatementClass("unknown")

# ObjectType -> the words Postgres uses for it in command tags.
OBJECT_WORDS: Final[Mapping[str, str]] = {
    "OBJECT_ACCESS_METHOD": "ACCESS METHOD",
    "OBJECT_AGGREGATE": "AGGREGATE",
    "OBJECT_CAST": "CAST",
    "OBJECT_COLLATION": "COLLATION",
    "OBJECT_CONVERSION": "CONVERSION",
    "OBJECT_DATABASE": "DATABASE",
    "OBJECT_DOMAIN": "DOMAIN",
    "OBJECT_EVENT_TRIGGER": "EVENT TRIGGER",
    "OBJECT_EXTENSION": "EXTENSION",
    "OBJECT_FDW": "FOREIGN DATA WRAPPER",
    "OBJECT_FOREIGN_SERVER": "SERVER",
    "OBJECT_FOREIGN_TABLE": "FOREIGN TABLE",
    "OBJECT_FUNCTION": "FUNCTION",
    "OBJECT_INDEX": "INDEX",
    "OBJECT_LANGUAGE": "LANGUAGE",
    "OBJECT_LARGEOBJECT": "LARGE OBJECT",
    "OBJECT_MATVIEW": "MATERIALIZED VIEW",
    "OBJECT_OPCLASS": "OPERATOR CLASS",
    "OBJECT_OPERATOR": "OPERATOR",
    "OBJECT_OPFAMILY": "OPERATOR FAMILY",
    "OBJECT_POLICY": "POLICY",
    "OBJECT_PROCEDURE": "PROCEDURE",
    "OBJECT_PUBLICATION": "PUBLICATION",
    "OBJECT_ROLE": "ROLE",
    "OBJECT_ROUTINE": "ROUTINE",
    "OBJECT_RULE": "RULE",
    "OBJECT_SCHEMA": "SCHEMA",
    "OBJECT_SEQUENCE": "SEQUENCE",
    "OBJECT_STATISTIC_EXT": "STATISTICS",
    "OBJECT_SUBSCRIPTION": "SUBSCRIPTION",
    "OBJECT_TABLE": "TABLE",
    "OBJECT_TABLESPACE": "TABLESPACE",
    "OBJECT_TRANSFORM": "TRANSFORM",
    "OBJECT_TRIGGER": "TRIGGER",
    "OBJECT_TSCONFIGURATION": "TEXT SEARCH CONFIGURATION",
    "OBJECT_TSDICTIONARY": "TEXT SEARCH DICTIONARY",
    "OBJECT_TSPARSER": "TEXT SEARCH PARSER",
    "OBJECT_TSTEMPLATE": "TEXT SEARCH TEMPLATE",
    "OBJECT_TYPE": "TYPE",
    "OBJECT_VIEW": "VIEW",
}

# Sub-objects whose ALTER is reported as an ALTER of their owner.
_ALTER_OWNER_OBJECT: Final[Mapping[str, str]] = {
    "OBJECT_ATTRIBUTE": "OBJECT_TYPE",
    "OBJECT_COLUMN": "OBJECT_TABLE",
    "OBJECT_TABCONSTRAINT": "OBJECT_TABLE",
    "OBJECT_DOMCONSTRAINT": "OBJECT_DOMAIN",
}

_FIXED_TAGS: Final[Mapping[str, str]] = {
    "InsertStmt": "INSERT",
    "UpdateStmt": "UPDATE",
    "DeleteStmt": "DELETE",
    "MergeStmt": "MERGE",
    "CopyStmt": "COPY",
    "ExplainStmt": "EXPLAIN",
    "PrepareStmt": "PREPARE",
    "ExecuteStmt": "EXECUTE",
    "DoStmt": "DO",
    "CallStmt": "CALL",
    "LockStmt": "LOCK TABLE",
    "TruncateStmt": "TRUNCATE TABLE",
    "VariableShowStmt": "SHOW",
    "ListenStmt": "LISTEN",
    "UnlistenStmt": "UNLISTEN",
    "NotifyStmt": "NOTIFY",
    "ClusterStmt": "CLUSTER",
    "ReindexStmt": "REINDEX",
    "CheckPointStmt": "CHECKPOINT",
    "RefreshMatViewStmt": "REFRESH MATERIALIZED VIEW",
    "DeclareCursorStmt": "DECLARE CURSOR",
    "ConstraintsSetStmt": "SET CONSTRAINTS",
    "LoadStmt": "LOAD",
    "CommentStmt": "COMMENT",
    "SecLabelStmt": "SECURITY LABEL",
    "AlterSystemStmt": "ALTER SYSTEM",
    "AlterDefaultPrivilegesStmt": "ALTER DEFAULT PRIVILEGES",
    "CreateStmt": "CREATE TABLE",
    "CreateForeignTableStmt": "CREATE FOREIGN TABLE",
    "ViewStmt": "CREATE VIEW",
    "IndexStmt": "CREATE INDEX",
    "RuleStmt": "CREATE RULE",
    "CreateTrigStmt": "CREATE TRIGGER",
    "CreateEventTrigStmt": "CREATE EVENT TRIGGER",
    "AlterEventTrigStmt": "ALTER EVENT TRIGGER",
    "CreateSchemaStmt": "CREATE SCHEMA",
    "CreateExtensionStmt": "CREATE EXTENSION",
    "AlterExtensionStmt": "ALTER EXTENSION",
    "AlterExtensionContentsStmt": "ALTER EXTENSION",
    "CreateSeqStmt": "CREATE SEQUENCE",
    "AlterSeqStmt": "ALTER SEQUENCE",
    "CreateRoleStmt": "CREATE ROLE",
    "AlterRoleStmt": "ALTER ROLE",
    "AlterRoleSetStmt": "ALTER ROLE",
    "DropRoleStmt": "DROP ROLE",
    "CreatedbStmt": "CREATE DATABASE",
    "AlterDatabaseStmt": "ALTER DATABASE",
    "AlterDatabaseSetStmt": "ALTER DATABASE",
    "AlterDatabaseRefreshCollStmt": "ALTER DATABASE",
    "DropdbStmt": "DROP DATABASE",
    "CreateTableSpaceStmt": "CREATE TABLESPACE",
    "DropTableSpaceStmt": "DROP TABLESPACE",
    "AlterTableSpaceOptionsStmt": "ALTER TABLESPACE",
    "CreateFdwStmt": "CREATE FOREIGN DATA WRAPPER",
    "AlterFdwStmt": "ALTER FOREIGN DATA WRAPPER",
    "CreateForeignServerStmt": "CREATE SERVER",
    "AlterForeignServerStmt": "ALTER SERVER",
    "CreateUserMappingStmt": "CREATE USER MAPPING",
    "AlterUserMappingStmt": "ALTER USER MAPPING",
    "DropUserMappingStmt": "DROP USER MAPPING",
    "ImportForeignSchemaStmt": "IMPORT FOREIGN SCHEMA",
    "CreatePolicyStmt": "CREATE POLICY",
    "AlterPolicyStmt": "ALTER POLICY",
    "CreatePublicationStmt": "CREATE PUBLICATION",
    "AlterPublicationStmt": "ALTER PUBLICATION",
    "CreateSubscriptionStmt": "CREATE SUBSCRIPTION",
    "AlterSubscriptionStmt": "ALTER SUBSCRIPTION",
    "DropSubscriptionStmt": "DROP SUBSCRIPTION",
    "CreateDomainStmt": "CREATE DOMAIN",
    "AlterDomainStmt": "ALTER DOMAIN",
    "CompositeTypeStmt": "CREATE TYPE",
    "CreateEnumStmt": "CREATE TYPE",
    "CreateRangeStmt": "CREATE TYPE",
    "AlterEnumStmt": "ALTER TYPE",
    "AlterTypeStmt": "ALTER TYPE",
    "CreateCastStmt": "CREATE CAST",
    "CreateConversionStmt": "CREATE CONVERSION",
    "CreateOpClassStmt": "CREATE OPERATOR CLASS",
    "CreateOpFamilyStmt": "CREATE OPERATOR FAMILY",
    "AlterOpFamilyStmt": "ALTER OPERATOR FAMILY",
    "AlterOperatorStmt": "ALTER OPERATOR",
    "CreateTransformStmt": "CREATE TRANSFORM",
    "CreateAmStmt": "CREATE ACCESS METHOD",
    "CreateStatsStmt": "CREATE STATISTICS",
    "AlterStatsStmt": "ALTER STATISTICS",
    "CreatePLangStmt": "CREATE LANGUAGE",
    "AlterCollationStmt": "ALTER COLLATION",
    "AlterTSDictionaryStmt": "ALTER TEXT SEARCH DICTIONARY",
    "AlterTSConfigurationStmt": "ALTER TEXT SEARCH CONFIGURATION",
    "ReassignOwnedStmt": "REASSIGN OWNED",
    "DropOwnedStmt": "DROP OWNED",
}

_TRANSACTION_TAGS: Final[Mapping[str, str]] = {
    "TRANS_STMT_BEGIN": "BEGIN",
    "TRANS_STMT_START": "START TRANSACTION",
    "TRANS_STMT_COMMIT": "COMMIT",
    "TRANS_STMT_ROLLBACK": "ROLLBACK",
    "TRANS_STMT_SAVEPOINT": "SAVEPOINT",
    "TRANS_STMT_RELEASE": "RELEASE",
    "TRANS_STMT_ROLLBACK_TO": "ROLLBACK",
    "TRANS_STMT_PREPARE": "PREPARE TRANSACTION",
    "TRANS_STMT_COMMIT_PREPARED": "COMMIT PREPARED",
    "TRANS_STMT_ROLLBACK_PREPARED": "ROLLBACK PREPARED",
}

_DISCARD_TAGS: Final[Mapping[str, str]] = {
    "DISCARD_ALL": "DISCARD ALL",
    "DISCARD_PLANS": "DISCARD PLANS",
    "DISCARD_TEMP": "DISCARD TEMP",
    "DISCARD_SEQUENCES": "DISCARD SEQUENCES",
}

UNKNOWN_TAG: Final = "UNKNOWN"


def statement_class(node: str) -> StatementClass:
    return STATEMENT_CLASSES.get(node, UNKNOWN)


def is_select_into(node: str, body: Mapping[str, Any]) -> bool:
    """``SELECT ... INTO t``: Postgres turns it into CREATE TABLE AS (a DDL utility statement)."""
    return node == "SelectStmt" and bool(body.get("intoClause"))


def statement_kind(node: str, body: Mapping[str, Any]) -> str:
    if is_select_into(node, body):
        return "ddl"
    return statement_class(node).kind


def is_utility(node: str, body: Mapping[str, Any]) -> bool:
    return node not in OPTIMIZABLE_NODES or is_select_into(node, body)


def _alter_tag(object_type: Any) -> str:
    object_type = _ALTER_OWNER_OBJECT.get(object_type, object_type)
    words = OBJECT_WORDS.get(object_type)
    return f"ALTER {words}" if words else UNKNOWN_TAG


def command_tag(node: str, body: Mapping[str, Any]) -> str:
    """The command tag Postgres assigns to the statement (``CreateCommandTag()``).

    On the wire, CREATE TABLE AS, SELECT INTO and CREATE MATERIALIZED VIEW complete with
    ``SELECT n``; the tag here is the statement's own tag (what event triggers see).
    """
    fixed = _FIXED_TAGS.get(node)
    if fixed is not None:
        return fixed
    if node == "SelectStmt":
        return "SELECT INTO" if is_select_into(node, body) else "SELECT"
    if node == "VariableSetStmt":
        return "RESET" if body.get("kind") in ("VAR_RESET", "VAR_RESET_ALL") else "SET"
    if node == "TransactionStmt":
        return _TRANSACTION_TAGS.get(body.get("kind", ""), UNKNOWN_TAG)
    if node == "DiscardStmt":
        return _DISCARD_TAGS.get(body.get("target", ""), UNKNOWN_TAG)
    if node == "DeallocateStmt":
        return "DEALLOCATE ALL" if body.get("isall") or not body.get("name") else "DEALLOCATE"
    if node == "ClosePortalStmt":
        return "CLOSE CURSOR" if body.get("portalname") else "CLOSE CURSOR ALL"
    if node == "FetchStmt":
        return "MOVE" if body.get("ismove") else "FETCH"
    if node == "VacuumStmt":
        return "VACUUM" if body.get("is_vacuumcmd") else "ANALYZE"
    if node in ("GrantStmt", "GrantRoleStmt"):
        prefix = "GRANT" if body.get("is_grant") else "REVOKE"
        return f"{prefix} ROLE" if node == "GrantRoleStmt" else prefix
    if node == "CreateTableAsStmt":
        if body.get("objtype") == "OBJECT_MATVIEW":
            return "CREATE MATERIALIZED VIEW"
        return "SELECT INTO" if body.get("is_select_into") else "CREATE TABLE AS"
    if node == "CreateFunctionStmt":
        return "CREATE PROCEDURE" if body.get("is_procedure") else "CREATE FUNCTION"
    if node == "AlterFunctionStmt":
        return _alter_tag(body.get("objtype", "OBJECT_FUNCTION"))
    if node == "DefineStmt":
        words = OBJECT_WORDS.get(body.get("kind", ""))
        return f"CREATE {words}" if words else UNKNOWN_TAG
    if node == "DropStmt":
        words = OBJECT_WORDS.get(body.get("removeType", ""))
        return f"DROP {words}" if words else UNKNOWN_TAG
    if node == "RenameStmt":
        rename_type = body.get("renameType")
        if rename_type == "OBJECT_COLUMN":
            return _alter_tag(body.get("relationType"))
        return _alter_tag(rename_type)
    if node in ("AlterTableStmt", "AlterTableMoveAllStmt"):
        return _alter_tag(body.get("objtype"))
    if node in ("AlterObjectSchemaStmt", "AlterOwnerStmt", "AlterObjectDependsStmt"):
        return _alter_tag(body.get("objectType"))
    return UNKNOWN_TAG
