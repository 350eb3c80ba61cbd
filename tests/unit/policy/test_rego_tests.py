"""The Rego test runner behind `pgwarden policy test`: loading, discovery, outcomes, coverage, opa."""

from __future__ import annotations

import io
import json
import os
import stat
from pathlib import Path

import pytest

from enforcer.policy import rego_tests
from enforcer.policy.rego_tests import (
    Outcome,
    build_engine,
    discover_tests,
    format_duration,
    load_tree,
    run_policy_tests,
)

REPO = Path(__file__).resolve().parents[3]
SHIPPED = REPO / "policies" / "rego"

PASSING = """package demo_test

import rego.v1

test_one_is_one if 1 == 1
"""


@pytest.fixture(autouse=True)
def no_opa(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests run the embedded engine only, unless a test puts a fake opa in place."""
    monkeypatch.setattr(rego_tests, "find_opa", lambda: None)


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def run(paths: list[Path], **kwargs: bool) -> tuple[int, str]:
    out = io.StringIO()
    status = run_policy_tests(paths, out=out, **kwargs)
    return status, out.getvalue()


# --- the shipped policies ----------------------------------------------------


def test_shipped_policies_pass() -> None:
    status, output = run([SHIPPED])
    assert status == 0, output
    summary = output.strip().splitlines()[-1]
    passed, total = summary.removeprefix("PASS: ").split("/")
    assert passed == total and int(total) >= 150
    assert "FAIL" not in output and "ERROR" not in output


def test_shipped_policies_verbose_lists_every_test() -> None:
    status, output = run([SHIPPED], verbose=True)
    assert status == 0
    assert "data.pgwarden.decision_test.test_allow_document: PASS (" in output
    assert f"{SHIPPED / 'pgwarden' / 'access_test.rego'}:" in output
    assert "opa is not on PATH" in output


def test_shipped_data_lands_under_data_pgwarden_config() -> None:
    tree = load_tree([SHIPPED])
    assert tree.errors == []
    config = tree.data["pgwarden"]["config"]
    assert set(config) == {"access", "danger", "masking", "review"}
    assert config["masking"]["column_labels"]["public.customers.email"] == ["pii.email"]


def test_shipped_coverage_names_every_policy_file() -> None:
    status, output = run([SHIPPED], coverage=True)
    assert status == 0
    coverage = output.split("Coverage", 1)[1]
    for name in ("decision", "statement", "access", "danger", "masking", "review"):
        assert f"{SHIPPED / 'pgwarden' / name}.rego" in coverage
    assert "total" in coverage and "%" in coverage


# --- outcomes ----------------------------------------------------------------


def test_failing_test_returns_1_and_prints_fail(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "demo_test.rego": PASSING + "\ntest_broken if 1 == 2\n",
        },
    )
    status, output = run([tmp_path])
    assert status == 1
    assert "data.demo_test.test_broken: FAIL (" in output
    assert "  undefined" in output
    assert "test_one_is_one" not in output  # passing tests are listed only with verbose
    assert output.rstrip().endswith("PASS: 1/2\nFAIL: 1/2")
    assert f"{tmp_path / 'demo_test.rego'}:" in output


def test_non_true_value_is_a_failure(tmp_path: Path) -> None:
    write(tmp_path, {"t.rego": "package t\n\nimport rego.v1\n\ntest_value := 7\n"})
    status, output = run([tmp_path])
    assert status == 1
    assert "data.t.test_value: FAIL" in output and "evaluated to 7" in output


def test_evaluation_error_is_an_error(tmp_path: Path) -> None:
    write(tmp_path, {"t.rego": "package t\n\nimport rego.v1\n\ntest_divide if 1 / 0 == 1\n"})
    status, output = run([tmp_path])
    assert status == 1
    assert "data.t.test_divide: ERROR" in output
    assert "divide by zero" in output
    assert "Stack backtrace" not in output
    assert "ERROR: 1/1" in output


def test_prints_shown_for_failures(tmp_path: Path) -> None:
    policy = 'package t\n\nimport rego.v1\n\ntest_p if {\n\tprint("seen", 42)\n\tfalse\n}\n'
    write(tmp_path, {"t.rego": policy})
    status, output = run([tmp_path])
    assert status == 1
    assert "seen 42" in output


def test_todo_tests_are_skipped(tmp_path: Path) -> None:
    write(tmp_path, {"demo_test.rego": PASSING + "\ntodo_test_later if false\n"})
    status, output = run([tmp_path], verbose=True)
    assert status == 0
    assert "data.demo_test.todo_test_later: SKIPPED" in output
    assert "SKIPPED: 1/2" in output


def test_functions_and_sets_named_test_are_not_tests(tmp_path: Path) -> None:
    write(
        tmp_path,
        {"t.rego": PASSING + '\ntest_helper(x) := x\n\ntest_names contains "a"\n\ndefault test_d := true\n'},
    )
    tree = load_tree([tmp_path])
    names = [c.name for c in discover_tests(build_engine(tree), tree.modules)]
    assert names == ["test_one_is_one", "test_d"]


def test_no_tests_is_a_failure(tmp_path: Path) -> None:
    write(tmp_path, {"p.rego": "package p\n\nimport rego.v1\n\nallow := true\n"})
    status, output = run([tmp_path])
    assert status == 1
    assert "no tests found" in output


# --- loading -----------------------------------------------------------------


def test_syntax_error_is_reported_with_the_file_name(tmp_path: Path) -> None:
    broken = "package broken\n\nimport rego.v1\n\np if {\n"
    write(tmp_path, {"ok_test.rego": PASSING, "sub/broken.rego": broken})
    status, output = run([tmp_path])
    assert status == 1
    assert "error occurred while loading" in output
    error_lines = [line for line in output.splitlines() if line.startswith("ERROR:")]
    assert len(error_lines) == 1
    assert str(tmp_path / "sub" / "broken.rego") in output
    assert "PASS" not in output  # like opa: nothing runs when a module does not compile


def test_rego_v0_syntax_is_an_error(tmp_path: Path) -> None:
    write(tmp_path, {"old.rego": "package old\n\np { true }\n"})
    status, output = run([tmp_path])
    assert status == 1
    assert "old.rego" in output and "`if` keyword is required" in output


def test_missing_path_is_an_error(tmp_path: Path) -> None:
    status, output = run([tmp_path / "nowhere"])
    assert status == 1
    assert f"{tmp_path / 'nowhere'}: no such file or directory" in output


def test_data_files_land_at_their_directory(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "data.json": json.dumps({"top": 1}),
            "shop/data.json": json.dumps({"config": {"enabled": True}}),
            "shop/eu/data.yaml": "region: eu\nprices: [1, 2]\n",
            "shop/notes.json": json.dumps({"ignored": True}),
            "shop/shop_test.rego": """package shop_test

import rego.v1

test_root if data.top == 1

test_nested if data.shop.config.enabled == true

test_yaml if data.shop.eu.region == "eu"

test_other_json_is_not_data if not data.shop.ignored
""",
        },
    )
    status, output = run([tmp_path], verbose=True)
    assert status == 0, output
    assert "PASS: 4/4" in output


def test_booleans_in_data_stay_booleans(tmp_path: Path) -> None:
    # regorus's Python conversion turns True into 1; the runner loads data as JSON.
    write(
        tmp_path,
        {
            "d/data.json": json.dumps({"flag": True}),
            "t.rego": "package t\n\nimport rego.v1\n\ntest_bool if is_boolean(data.d.flag)\n",
        },
    )
    assert run([tmp_path])[0] == 0


def test_conflicting_data_is_a_merge_error(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "a/data.json": json.dumps({"x": 1}),
            "a/data.yaml": "x: 2\n",
            "t.rego": PASSING,
        },
    )
    status, output = run([tmp_path])
    assert status == 1
    assert "merge error: data.a.x is already defined" in output


def test_unparsable_data_is_an_error(tmp_path: Path) -> None:
    write(tmp_path, {"a/data.json": "{not json", "t.rego": PASSING})
    status, output = run([tmp_path])
    assert status == 1
    assert f"{tmp_path / 'a' / 'data.json'}: cannot parse data" in output


def test_root_data_must_be_an_object(tmp_path: Path) -> None:
    write(tmp_path, {"data.json": "[1, 2]", "t.rego": PASSING})
    status, output = run([tmp_path])
    assert status == 1
    assert "must hold an object" in output


def test_files_can_be_named_directly(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "values.json": json.dumps({"answer": 42}),
            "t.rego": "package t\n\nimport rego.v1\n\ntest_answer if data.answer == 42\n",
        },
    )
    status, output = run([tmp_path / "t.rego", tmp_path / "values.json"])
    assert status == 0, output


def test_text_discovery_matches_ast_discovery() -> None:
    tree = load_tree([SHIPPED])
    engine = build_engine(tree)
    from_ast = discover_tests(engine, tree.modules)
    from_text = rego_tests._cases_from_text(tree.modules)
    assert {c.rule for c in from_ast} == {c.rule for c in from_text}
    assert all(c.rule.startswith("data.pgwarden.") for c in from_ast)


# --- coverage ----------------------------------------------------------------


def test_coverage_names_the_files(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "p/policy.rego": """package p

import rego.v1

allow if input.user == "alice"

unused if input.user == "bob"
""",
            "p/policy_test.rego": """package p_test

import rego.v1

test_alice if data.p.allow with input.user as "alice"
""",
        },
    )
    status, output = run([tmp_path], coverage=True, verbose=True)
    assert status == 0, output
    coverage = output.split("Coverage", 1)[1]
    policy_line = next(line for line in coverage.splitlines() if "policy.rego" in line and "%" in line)
    assert str(tmp_path / "p" / "policy.rego") in policy_line
    assert "100.0%" not in policy_line  # `unused` was never evaluated
    assert "not covered: lines 7" in coverage
    assert str(tmp_path / "p" / "policy_test.rego") in coverage


# --- opa ---------------------------------------------------------------------


def fake_opa(directory: Path, *, exit_status: int) -> Path:
    script = directory / "opa"
    script.write_text(f'#!/bin/sh\necho "fake opa $*"\nexit {exit_status}\n')
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return script


def test_opa_failure_is_folded_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path / "policies", {"demo_test.rego": PASSING})
    opa = fake_opa(tmp_path, exit_status=2)
    monkeypatch.setattr(rego_tests, "find_opa", lambda: str(opa))
    status, output = run([tmp_path / "policies"])
    assert status == 1
    assert "PASS: 1/1" in output
    assert f"fake opa test {tmp_path / 'policies'}" in output


def test_opa_passing_keeps_status_0(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path / "policies", {"demo_test.rego": PASSING})
    opa = fake_opa(tmp_path, exit_status=0)
    monkeypatch.setattr(rego_tests, "find_opa", lambda: str(opa))
    status, output = run([tmp_path / "policies"], verbose=True)
    assert status == 0
    assert "fake opa test --verbose" in output


def test_find_opa_uses_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.undo()  # the real find_opa
    fake_opa(tmp_path, exit_status=0)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ.get('PATH', '')}")
    assert rego_tests.find_opa() == str(tmp_path / "opa")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert rego_tests.find_opa() is None


def test_opa_that_cannot_start_is_a_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path / "policies", {"demo_test.rego": PASSING})
    monkeypatch.setattr(rego_tests, "find_opa", lambda: str(tmp_path / "missing-opa"))
    status, output = run([tmp_path / "policies"])
    assert status == 1
    assert "opa test could not run" in output


# --- formatting --------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.000_812_4, "812.4µs"), (0.0031, "3.1ms"), (1.234, "1.23s")],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_outcome_values_match_opa() -> None:
    assert [o.value for o in Outcome] == ["PASS", "FAIL", "ERROR", "SKIPPED"]
