"""Shape checks every facts document must pass, whatever the statement."""

from __future__ import annotations

import json
from typing import Any

from enforcer.analysis.facts import (
    ACCESS_MODES,
    COLUMN_CONTEXTS,
    DOCUMENT_KEYS,
    FLAG_KEYS,
    KINDS,
    WRITE_KINDS,
)


def _unique(entries: list[dict[str, Any]]) -> bool:
    return len({json.dumps(entry, sort_keys=True) for entry in entries}) == len(entries)


def check_invariants(document: dict[str, Any], nested: bool = False) -> None:
    assert list(document) == list(DOCUMENT_KEYS), sorted(set(document) ^ set(DOCUMENT_KEYS))
    assert isinstance(document["index"], int) and document["index"] >= 0
    if nested:
        assert document["index"] == 0
    assert isinstance(document["text"], str)
    assert isinstance(document["node"], str) and document["node"]
    assert document["kind"] in KINDS
    assert isinstance(document["command_tag"], str) and document["command_tag"]
    assert isinstance(document["fingerprint"], str)

    flags = document["flags"]
    assert list(flags) == list(FLAG_KEYS)
    assert all(isinstance(value, bool) for value in flags.values())

    for entry in document["relations"]:
        assert set(entry) == {"schema", "name", "access"}
        assert entry["access"] in ACCESS_MODES
        assert isinstance(entry["name"], str) and entry["name"]
        assert entry["schema"] is None or isinstance(entry["schema"], str)
    for entry in document["columns"]:
        assert set(entry) == {"schema", "relation", "name", "context"}
        assert entry["context"] in COLUMN_CONTEXTS
        assert entry["schema"] is None or entry["relation"] is not None
    for entry in document["functions"]:
        assert set(entry) == {"schema", "name", "qualified"}
        expected = f"{entry['schema']}.{entry['name']}" if entry["schema"] else entry["name"]
        assert entry["qualified"] == expected
    for entry in document["writes"]:
        assert set(entry) == {"schema", "name", "kind", "has_where"}
        assert entry["kind"] in WRITE_KINDS
        assert isinstance(entry["has_where"], bool)
    for entry in document["settings"]:
        assert set(entry) == {"name", "value", "via"}
        assert entry["name"] == entry["name"].lower()
    for key in ("relations", "columns", "functions", "writes", "settings"):
        assert _unique(document[key]), key

    # Flags agree with the lists they summarise.
    assert flags["modifies_data"] == bool(document["writes"])
    assert flags["writes"] == (flags["modifies_data"] or flags["ddl"])
    assert flags["sets_role"] == (document["role_change"] is not None)
    bounded = [w["has_where"] for w in document["writes"] if w["kind"] in ("update", "delete", "merge")]
    assert flags["has_where"] == all(bounded)
    assert flags["transaction_control"] == (document["node"] == "TransactionStmt")
    if document["explain"] is not None and document["explain"]["analyze"]:
        assert flags["explain_analyze"] and flags["executes_dynamic_sql"]
    if document["copy"] is not None:
        assert set(document["copy"]) == {"direction", "program", "file", "stdio", "query"}
        assert flags["copy_program"] == document["copy"]["program"]
    if document["role_change"] is not None:
        assert set(document["role_change"]) == {"via", "role"}
    if document["deallocate"] is not None:
        assert set(document["deallocate"]) == {"name", "all"}
    if document["execute"] is not None:
        assert set(document["execute"]) == {"name"}

    for key in ("explain", "prepare"):
        if document[key] is not None:
            body = document[key]["body"]
            check_invariants(body, nested=True)
            # The body's facts are merged into the outer statement's.
            for list_key in ("relations", "columns", "functions", "writes", "settings"):
                for entry in body[list_key]:
                    assert entry in document[list_key], (key, list_key, entry)
            for flag in ("ddl", "modifies_data", "side_effect_functions", "locks", "executes_dynamic_sql"):
                assert flags[flag] or not body["flags"][flag], (key, flag)

    json.dumps(document)
