"""The annotated SQL corpus under ``testdata/sql/``: loading cases and checking facts against them.

Corpus format (plain SQL files, runnable with psql; annotations are comments)::

    -- @case select.where-in-subquery
    -- @expect kind: select
    -- @expect relations: [customers:read, orders:read]
    -- @expect flags: {writes: false}
    SELECT * FROM customers WHERE id IN (SELECT customer_id FROM orders);

A case starts at ``-- @case <name>`` and runs to the next one. Lines starting with ``-- @`` are
annotations; every other line (other comments included) is the case's SQL text. Annotations:

``-- @expect key: value``
    YAML for one key of statement 0's expected facts; ``@expect[i]`` for statement ``i``.
``-- @statements N``
    the number of statements (default: highest ``@expect`` index + 1).
``-- @error text`` / ``-- @sqlstate code``
    ``analyse`` must raise AnalysisError whose message contains ``text`` / with that SQLSTATE.

Keys compare as follows. ``relations``, ``columns``, ``functions`` and ``writes`` are sets in a
compact notation -- ``[schema.]name:access``, ``[[schema.]relation.]column@context``,
``[schema.]name``, ``[schema.]name:kind:where|nowhere`` -- compared exactly; the suffixes
``_include`` and ``_exclude`` check a subset / absence instead. ``settings`` is an exact list of
``{name, value, via}`` maps (value defaults to null). ``flags`` and every other mapping compare
as a subset; ``body`` (of ``explain``/``prepare``) is checked as a nested expectation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

CORPUS_DIR = Path(__file__).resolve().parents[3] / "testdata" / "sql"


@dataclass
class Case:
    file: str
    name: str
    line: int
    sql: str = ""
    expect: dict[int, dict[str, Any]] = field(default_factory=dict)
    statements: int | None = None
    error: str | None = None
    sqlstate: str | None = None

    @property
    def id(self) -> str:
        return f"{self.file}:{self.name}"

    @property
    def statement_count(self) -> int:
        if self.statements is not None:
            return self.statements
        return max(self.expect, default=0) + 1


def _annotation(case: Case, text: str, where: str) -> None:
    keyword, _, rest = text.partition(" ")
    if keyword.startswith("expect"):
        index = int(keyword[len("expect[") : -1]) if keyword.startswith("expect[") else 0
        parsed = yaml.safe_load(rest)
        if not isinstance(parsed, dict) or len(parsed) != 1:
            raise ValueError(f"{where}: @expect wants one 'key: value', got {rest!r}")
        ((key, value),) = parsed.items()
        expected = case.expect.setdefault(index, {})
        if key in expected and isinstance(expected[key], list) and isinstance(value, list):
            expected[key] = expected[key] + value
        else:
            expected[key] = value
    elif keyword == "statements":
        case.statements = int(rest)
    elif keyword == "error":
        case.error = rest.strip()
    elif keyword == "sqlstate":
        case.sqlstate = rest.strip()
    else:
        raise ValueError(f"{where}: unknown annotation @{keyword}")


def load_file(path: Path) -> list[Case]:
    cases: list[Case] = []
    current: Case | None = None
    sql_lines: list[str] = []

    def finish() -> None:
        if current is not None:
            current.sql = "\n".join(sql_lines).strip()
            if not current.sql and current.error is None:
                raise ValueError(f"{path.name}:{current.line}: case {current.name} has no SQL")
            cases.append(current)

    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        stripped = line.strip()
        if stripped.startswith("-- @case "):
            finish()
            current = Case(file=path.name, name=stripped[len("-- @case ") :].strip(), line=number)
            sql_lines = []
        elif stripped.startswith("-- @"):
            if current is None:
                raise ValueError(f"{path.name}:{number}: annotation before the first @case")
            _annotation(current, stripped[len("-- @") :], f"{path.name}:{number}")
        elif current is not None:
            sql_lines.append(line)
    finish()
    return cases


def load_corpus(directory: Path = CORPUS_DIR) -> list[Case]:
    cases = [case for path in sorted(directory.glob("*.sql")) for case in load_file(path)]
    seen: set[str] = set()
    for case in cases:
        if case.id in seen:
            raise ValueError(f"duplicate corpus case {case.id}")
        seen.add(case.id)
    return cases


# -- compact notations ---------------------------------------------------------------------------


def relation_key(entry: dict[str, Any]) -> str:
    schema = f"{entry['schema']}." if entry["schema"] else ""
    return f"{schema}{entry['name']}:{entry['access']}"


def column_key(entry: dict[str, Any]) -> str:
    prefix = ""
    if entry["relation"] is not None:
        prefix = f"{entry['relation']}."
        if entry["schema"] is not None:
            prefix = f"{entry['schema']}.{prefix}"
    return f"{prefix}{entry['name']}@{entry['context']}"


def function_key(entry: dict[str, Any]) -> str:
    return str(entry["qualified"])


def write_key(entry: dict[str, Any]) -> str:
    schema = f"{entry['schema']}." if entry["schema"] else ""
    return f"{schema}{entry['name']}:{entry['kind']}:{'where' if entry['has_where'] else 'nowhere'}"


SET_KEYS = {"relations": relation_key, "columns": column_key, "functions": function_key, "writes": write_key}


def _subset(actual: Any, expected: Any, path: str, problems: list[str]) -> None:
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            problems.append(f"{path}: expected a mapping, got {actual!r}")
            return
        for key, value in expected.items():
            if key not in actual:
                problems.append(f"{path}.{key}: missing")
            elif key == "body":
                problems.extend(check_document(actual[key], value, f"{path}.body."))
            else:
                _subset(actual[key], value, f"{path}.{key}", problems)
    elif actual != expected:
        problems.append(f"{path}: expected {expected!r}, got {actual!r}")


def check_document(document: dict[str, Any], expected: dict[str, Any], path: str = "") -> list[str]:
    """Differences between a facts document and a corpus expectation (empty when it matches)."""
    problems: list[str] = []
    for key, value in expected.items():
        base, _, mode = key.partition("_")
        if base in SET_KEYS and mode in ("", "include", "exclude"):
            actual = {SET_KEYS[base](entry) for entry in document[base]}
            wanted = {str(item) for item in value or []}
            if mode == "" and actual != wanted:
                problems.append(
                    f"{path}{base}: missing {sorted(wanted - actual)}, unexpected {sorted(actual - wanted)}"
                )
            elif mode == "include" and not wanted <= actual:
                problems.append(f"{path}{base}: missing {sorted(wanted - actual)} (have {sorted(actual)})")
            elif mode == "exclude" and wanted & actual:
                problems.append(f"{path}{base}: unexpected {sorted(wanted & actual)}")
        elif key == "settings":
            actual_settings = sorted((s["name"], s["value"] or "", s["via"]) for s in document["settings"])
            wanted_settings = sorted((s["name"], s.get("value") or "", s["via"]) for s in value)
            if actual_settings != wanted_settings:
                problems.append(f"{path}settings: expected {wanted_settings}, got {actual_settings}")
        elif key not in document:
            problems.append(f"{path}{key}: not a facts key")
        else:
            _subset(document[key], value, f"{path}{key}", problems)
    return problems
