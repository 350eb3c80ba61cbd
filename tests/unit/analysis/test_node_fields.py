"""The static tables of the analysis agree with the Postgres grammar pglast embeds."""

from __future__ import annotations

import inspect
from typing import Any

import pglast.ast

from enforcer.analysis.node_fields import TYPED_FIELDS
from enforcer.analysis.statements import STATEMENT_CLASSES, UNKNOWN_TAG, command_tag, statement_kind

# Statement node types that never appear at top level of a parse of SQL text.
NOT_TOP_LEVEL = {"RawStmt", "PLAssignStmt", "ReturnStmt", "SetOperationStmt", "ReplicaIdentityStmt"}


def _node_classes() -> dict[str, type]:
    return {
        name: cls
        for name, cls in inspect.getmembers(pglast.ast, inspect.isclass)
        if isinstance(getattr(cls, "__slots__", None), dict)
    }


def expected_typed_fields() -> dict[str, dict[str, str]]:
    classes = _node_classes()
    table: dict[str, dict[str, str]] = {}
    for name, cls in sorted(classes.items()):
        slots: dict[str, Any] = getattr(cls, "__slots__", {})
        for field, info in slots.items():
            c_type = info.c_type.rstrip("*")
            if c_type in classes and c_type not in ("Node", "List", "Expr", "ValUnion"):
                table.setdefault(name, {})[field] = c_type
    return table


def test_typed_fields_match_pglast() -> None:
    # On failure (a pglast upgrade), regenerate node_fields.TYPED_FIELDS from expected_typed_fields().
    assert expected_typed_fields() == TYPED_FIELDS


def test_typed_fields_know_the_fields_that_hide_relations() -> None:
    assert TYPED_FIELDS["InsertStmt"]["relation"] == "RangeVar"
    assert TYPED_FIELDS["SelectStmt"]["larg"] == "SelectStmt"
    assert TYPED_FIELDS["SelectStmt"]["intoClause"] == "IntoClause"
    assert TYPED_FIELDS["CallStmt"]["funccall"] == "FuncCall"


def test_every_statement_node_is_classified() -> None:
    statements = {name for name in _node_classes() if name.endswith("Stmt")} - NOT_TOP_LEVEL
    missing = statements - set(STATEMENT_CLASSES)
    assert not missing, f"unclassified statement nodes: {sorted(missing)}"
    assert set(STATEMENT_CLASSES) <= statements | {"CreateForeignTableStmt"}


def test_every_classified_statement_has_a_command_tag() -> None:
    # Tags that depend on fields (object type, is_grant...) are exercised by the corpus; here every
    # node type must at least produce some tag with typical field values.
    typical = {
        "removeType": "OBJECT_TABLE",
        "renameType": "OBJECT_TABLE",
        "objtype": "OBJECT_TABLE",
        "objectType": "OBJECT_TABLE",
        "kind": "OBJECT_AGGREGATE",
        "target": "DISCARD_ALL",
    }
    for node in STATEMENT_CLASSES:
        body = dict(typical)
        if node == "TransactionStmt":
            body["kind"] = "TRANS_STMT_BEGIN"
        assert command_tag(node, body) != UNKNOWN_TAG, node
        assert statement_kind(node, body) != "unknown", node


def test_unknown_node_is_unknown() -> None:
    assert command_tag("FutureStmt", {}) == UNKNOWN_TAG
    assert statement_kind("FutureStmt", {}) == "unknown"
