"""The result types of analysis: :class:`StatementFacts` and :class:`Analysis`.

A ``StatementFacts`` carries the facts document of one statement (the JSON-able shape documented
in ``docs/statement-facts.md``) next to the statement's libpg_query JSON AST. These are the data
that cross from analysis to the policy layer; this module only defines them and never computes
facts. Documents are plain dicts and lists so that they serialise as they are; treat them as
read-only (the caller may cache an ``Analysis`` and hand the same documents out again).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

DOCUMENT_KEYS: Final[tuple[str, ...]] = (
    "index",
    "text",
    "node",
    "kind",
    "command_tag",
    "fingerprint",
    "relations",
    "columns",
    "functions",
    "flags",
    "writes",
    "settings",
    "role_change",
    "prepare",
    "execute",
    "deallocate",
    "explain",
    "copy",
)

FLAG_KEYS: Final[tuple[str, ...]] = (
    "writes",
    "ddl",
    "is_utility",
    "executes_dynamic_sql",
    "copy_program",
    "sets_role",
    "changes_session_setting",
    "select_into",
    "transaction_control",
    "has_where",
    "modifies_data",
    "explain_analyze",
    "locks",
    "side_effect_functions",
)

KINDS: Final[frozenset[str]] = frozenset(
    {
        "select",
        "insert",
        "update",
        "delete",
        "merge",
        "ddl",
        "utility",
        "transaction",
        "set",
        "show",
        "copy",
        "explain",
        "prepare",
        "execute",
        "deallocate",
        "do",
        "call",
        "lock",
        "truncate",
        "grant",
        "maintenance",
        "listen",
        "notify",
        "discard",
        "unknown",
    }
)

ACCESS_MODES: Final[frozenset[str]] = frozenset(
    {
        "read",
        "insert",
        "update",
        "delete",
        "merge",
        "truncate",
        "ddl",
        "lock",
        "copy_to",
        "copy_from",
        "maintenance",
        "grant",
        "refresh",
        "comment",
    }
)

COLUMN_CONTEXTS: Final[frozenset[str]] = frozenset(
    {
        "select",
        "where",
        "join",
        "group",
        "having",
        "order",
        "returning",
        "set",
        "insert",
        "window",
        "distinct",
        "function_arg",
        "star",
        "whole_row",
    }
)

WRITE_KINDS: Final[frozenset[str]] = frozenset(
    {"insert", "update", "delete", "merge", "truncate", "copy_from", "select_into"}
)


@dataclass(frozen=True)
class StatementFacts:
    """What one statement of a message does, as far as its parse tree tells."""

    index: int
    text: str
    document: Mapping[str, Any]
    ast: Mapping[str, Any]

    def to_document(self, include_ast: bool = True) -> dict[str, Any]:
        """The facts document, with the statement's JSON AST under ``"ast"`` unless excluded."""
        document = dict(self.document)
        if include_ast:
            document["ast"] = self.ast
        return document


@dataclass(frozen=True)
class Analysis:
    """The facts of every statement of one SQL string, in order (empty for comment-only text)."""

    statements: tuple[StatementFacts, ...]
