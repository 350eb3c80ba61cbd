"""The facts document of one statement, assembled from a walk of its JSON AST.

:func:`statement_document` runs a :class:`~enforcer.analysis.walker.FactWalker` over one
statement, walks the body of an EXPLAIN or PREPARE as a statement of its own (its document is
nested under ``explain.body`` / ``prepare.body`` and its facts are merged into the outer
statement's, so ``EXPLAIN ANALYZE DELETE ...`` shows the delete), and turns the collected sets into
the sorted, de-duplicated JSON-able document described in ``docs/statement-facts.md``.

It never parses the whole message (``analyser.py`` does) and never decides anything.
"""

from __future__ import annotations

from typing import Any

from pglast import parser

from .statements import command_tag, is_utility, statement_kind
from .walker import FactWalker, Json


def _unwrap(node: Any) -> tuple[str, Json]:
    if isinstance(node, dict) and len(node) == 1:
        ((node_type, body),) = node.items()
        if isinstance(body, dict):
            return str(node_type), body
    return "", {}


def _fingerprint(text: str) -> str:
    try:
        return str(parser.fingerprint(text))
    except Exception:  # informational only; the text parsed already, so this should not happen
        return ""


_COMMENT_TOKENS = frozenset({"C_COMMENT", "SQL_COMMENT"})


def _skip_parenthesised(tokens: list[parser.Token], index: int) -> int:
    """Index of the token after the ``)`` matching the ``(`` at ``index``."""
    depth = 0
    for position in range(index, len(tokens)):
        name = tokens[position].name
        if name == "ASCII_40":
            depth += 1
        elif name == "ASCII_41":
            depth -= 1
            if depth == 0:
                return position + 1
    return len(tokens)


def body_text(text: str, node_type: str) -> str:
    """The text of the statement inside ``EXPLAIN [options] body`` / ``PREPARE name [(types)] AS body``.

    Found with Postgres's own scanner (so comments and quoting cannot confuse it); falls back to
    the whole text if the expected shape is not found.
    """
    try:
        tokens = [token for token in parser.scan(text) if token.name not in _COMMENT_TOKENS]
    except Exception:
        return text
    index = 1
    if node_type == "ExplainStmt":
        if index < len(tokens) and tokens[index].name == "ASCII_40":
            index = _skip_parenthesised(tokens, index)
        else:
            while index < len(tokens) and tokens[index].name in ("ANALYZE", "ANALYSE", "VERBOSE"):
                index += 1
    elif node_type == "PrepareStmt":
        index = 2
        if index < len(tokens) and tokens[index].name == "ASCII_40":
            index = _skip_parenthesised(tokens, index)
        if index < len(tokens) and tokens[index].name == "AS":
            index += 1
        else:
            return text
    else:
        return text
    if index >= len(tokens):
        return text
    return text[tokens[index].start :].strip()


def _absorb(outer: FactWalker, inner: FactWalker) -> None:
    """Merge the facts of an EXPLAIN/PREPARE body into the statement that contains it."""
    outer.relations |= inner.relations
    outer.columns |= inner.columns
    outer.functions |= inner.functions
    outer.writes |= inner.writes
    outer.settings |= inner.settings
    outer.role_changes.extend(inner.role_changes)
    outer.executes.extend(inner.executes)
    if outer.deallocate is None:
        outer.deallocate = inner.deallocate
    for flag in (
        "ddl",
        "dynamic",
        "copy_program",
        "session_settings",
        "select_into",
        "locks",
        "side_effects",
        "explain_analyze",
    ):
        if getattr(inner, flag):
            setattr(outer, flag, True)


def _role_change(changes: list[tuple[str, str | None]]) -> dict[str, Any] | None:
    if not changes:
        return None
    via, role = changes[0]
    if any(other != role for _, other in changes[1:]):
        role = None  # several different role changes: which one wins is not knowable here
    return {"via": via, "role": role}


def _key(value: str | None) -> tuple[bool, str]:
    return (value is not None, value or "")


def statement_document(node: Any, text: str, index: int) -> tuple[dict[str, Any], FactWalker]:
    """The facts document of one statement (without ``ast``), and the walker holding its facts."""
    node_type, body = _unwrap(node)
    walker = FactWalker()
    walker.walk(node)

    explain: dict[str, Any] | None = None
    if walker.explain is not None:
        query, analyze = walker.explain
        inner_document, inner = statement_document(query, body_text(text, "ExplainStmt"), 0)
        _absorb(walker, inner)
        explain = {"analyze": analyze, "body": inner_document}
    prepare: dict[str, Any] | None = None
    if walker.prepare is not None:
        name, query = walker.prepare
        inner_document, inner = statement_document(query, body_text(text, "PrepareStmt"), 0)
        _absorb(walker, inner)
        prepare = {"name": name, "body": inner_document}

    writes = sorted(walker.writes, key=lambda w: (_key(w[0]), w[1], w[2], w[3]))
    modifies_data = bool(writes)
    role_change = _role_change(walker.role_changes)
    flags = {
        "writes": modifies_data or walker.ddl,
        "ddl": walker.ddl,
        "is_utility": is_utility(node_type, body),
        "executes_dynamic_sql": walker.dynamic,
        "copy_program": walker.copy_program,
        "sets_role": role_change is not None,
        "changes_session_setting": walker.session_settings,
        "select_into": walker.select_into,
        "transaction_control": node_type == "TransactionStmt",
        "has_where": all(
            has_where for _, _, kind, has_where in writes if kind in ("update", "delete", "merge")
        ),
        "modifies_data": modifies_data,
        "explain_analyze": walker.explain_analyze,
        "locks": walker.locks,
        "side_effect_functions": walker.side_effects,
    }
    document: dict[str, Any] = {
        "index": index,
        "text": text,
        "node": node_type or "Unknown",
        "kind": statement_kind(node_type, body),
        "command_tag": command_tag(node_type, body),
        "fingerprint": _fingerprint(text),
        "relations": [
            {"schema": schema, "name": name, "access": access}
            for schema, name, access in sorted(walker.relations, key=lambda r: (_key(r[0]), r[1], r[2]))
        ],
        "columns": [
            {"schema": schema, "relation": relation, "name": name, "context": context}
            for schema, relation, name, context in sorted(
                walker.columns, key=lambda c: (_key(c[0]), _key(c[1]), c[2], c[3])
            )
        ],
        "functions": [
            {"schema": schema, "name": name, "qualified": f"{schema}.{name}" if schema else name}
            for schema, name in sorted(walker.functions, key=lambda f: (_key(f[0]), f[1]))
        ],
        "flags": flags,
        "writes": [
            {"schema": schema, "name": name, "kind": kind, "has_where": has_where}
            for schema, name, kind, has_where in writes
        ],
        "settings": [
            {"name": name, "value": value, "via": via}
            for name, value, via in sorted(walker.settings, key=lambda s: (s[0], s[2], _key(s[1])))
        ],
        "role_change": role_change,
        "prepare": prepare,
        "execute": {"name": walker.executes[0]} if walker.executes else None,
        "deallocate": (
            {"name": walker.deallocate[0], "all": walker.deallocate[1]} if walker.deallocate else None
        ),
        "explain": explain,
        "copy": walker.copy,
    }
    return document, walker
