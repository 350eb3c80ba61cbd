"""``analyse()``: SQL text in, the facts of each of its statements out.

This is the entry point of the analysis layer. It parses the whole text once with Postgres's own
grammar (libpg_query through ``pglast.parser.parse_sql_json``, the C JSON path), splits it into
statements by the parser's own statement boundaries, and builds each statement's facts document
(``document.py``). It holds no state and caches nothing: the caller caches by exact bytes plus
session state. Every failure is an :class:`AnalysisError` (fail closed); nothing else escapes.
"""

from __future__ import annotations

import json
from typing import Any

from pglast import parser

from .document import statement_document
from .errors import (
    CHARACTER_NOT_IN_REPERTOIRE,
    INTERNAL_ERROR,
    STATEMENT_TOO_COMPLEX,
    AnalysisError,
)
from .facts import Analysis, StatementFacts


def _parse(sql: str) -> list[dict[str, Any]]:
    if "\x00" in sql:
        # libpg_query reads a C string: text after a NUL would silently not be analysed.
        raise AnalysisError(
            "invalid byte sequence: the statement contains a NUL character",
            sql.index("\x00") + 1,
            CHARACTER_NOT_IN_REPERTOIRE,
        )
    try:
        raw = parser.parse_sql_json(sql)
    except parser.ParseError as exc:
        message = str(exc.args[0]) if exc.args else "syntax error"
        location = exc.args[1] if len(exc.args) > 1 else None
        position = location + 1 if isinstance(location, int) and location >= 0 else None
        sqlstate = STATEMENT_TOO_COMPLEX if "stack depth" in message else None
        if sqlstate is not None:
            raise AnalysisError(message, position, sqlstate) from None
        raise AnalysisError(message, position) from None
    except UnicodeError as exc:
        position = exc.start + 1 if isinstance(exc, UnicodeEncodeError) else None
        raise AnalysisError(
            "invalid character: the statement is not valid Unicode", position, CHARACTER_NOT_IN_REPERTOIRE
        ) from None
    try:
        tree = json.loads(raw)
    except RecursionError:
        raise AnalysisError(
            "statement is too deeply nested to analyse", None, STATEMENT_TOO_COMPLEX
        ) from None
    statements = tree.get("stmts") if isinstance(tree, dict) else None
    if not isinstance(statements, list):
        raise AnalysisError("unexpected parser output", None, INTERNAL_ERROR)
    return statements


def _statement_text(sql: str, encoded: bytes | None, raw_statement: dict[str, Any]) -> str:
    """The statement's own text: libpg_query gives byte offsets; ``stmt_len`` 0 means "to the end"."""
    start = raw_statement.get("stmt_location", 0)
    length = raw_statement.get("stmt_len", 0)
    if encoded is None:
        text = sql[start : start + length] if length else sql[start:]
    else:
        chunk = encoded[start : start + length] if length else encoded[start:]
        text = chunk.decode("utf-8", errors="replace")
    return text.strip()


def analyse(sql: str) -> Analysis:
    """Parse ``sql`` with Postgres's grammar and return the facts of each statement in it.

    Raises :class:`AnalysisError` when the text does not parse (or cannot be analysed); an empty
    or comment-only text gives ``Analysis(statements=())``.
    """
    raw_statements = _parse(sql)
    encoded = None if sql.isascii() else sql.encode("utf-8")
    facts: list[StatementFacts] = []
    for index, raw_statement in enumerate(raw_statements):
        try:
            node = raw_statement["stmt"]
            text = _statement_text(sql, encoded, raw_statement)
            document, _ = statement_document(node, text, index)
        except RecursionError:
            raise AnalysisError(
                "statement is too deeply nested to analyse", None, STATEMENT_TOO_COMPLEX
            ) from None
        except AnalysisError:
            raise
        except Exception as exc:
            # An AST shape the walker did not expect: refuse rather than guess.
            raise AnalysisError(f"statement {index + 1} could not be analysed", None, INTERNAL_ERROR) from exc
        facts.append(StatementFacts(index=index, text=text, document=document, ast=node))
    return Analysis(statements=tuple(facts))
