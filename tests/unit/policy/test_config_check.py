"""`pgwarden policy check-config`: the conftest rules of policies/conftest on real configuration files.

The files are in testdata/config-check/ (good.yaml passes, bad.yaml breaks every deny rule once,
policies/pgwarden/data.json grants DDL on production). Where conftest itself is needed, a stand-in
script plays it: it records the command line it was given and prints conftest's JSON output.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from enforcer.cli import app
from enforcer.policy.config_check import (
    SHIPPED_CONFIG_RULES,
    ConfigCheckError,
    check_configs,
    conftest_findings,
)

ROOT = Path(__file__).resolve().parents[3]
CASES = ROOT / "testdata" / "config-check"
runner = CliRunner()


@pytest.fixture(autouse=True)
def _in_repo(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)  # findings name files relative to the working directory


def messages(report_findings: list[tuple[str, str, str]], file: str, level: str) -> list[str]:
    return [m for f, lv, m in report_findings if f == file and lv == level]


def test_the_shipped_rules_are_the_ones_the_cli_uses() -> None:
    assert SHIPPED_CONFIG_RULES == ROOT / "policies" / "conftest"


def test_good_configuration_and_the_shipped_policy_data_pass() -> None:
    report = check_configs([Path("testdata/config-check/good.yaml")], SHIPPED_CONFIG_RULES, conftest="")
    assert [(c.file, c.namespace) for c in report.checked] == [
        ("testdata/config-check/good.yaml", "main"),
        ("policies/rego/pgwarden/data.json", "policy_data"),
    ]
    assert report.findings == [] and report.notes == [] and report.ok


def test_bad_configuration_is_refused_with_every_reason() -> None:
    report = check_configs([Path("testdata/config-check/bad.yaml")], SHIPPED_CONFIG_RULES, conftest="")
    found = [(f.file, f.level, f.message) for f in report.findings]
    denies = messages(found, "testdata/config-check/bad.yaml", "deny")
    keys = sorted(m.split(":", 1)[0] for m in denies)
    assert keys == [
        "approvals.notify.mqtt.password",
        "approvals.store",  # SQLite approvals while sessions are in Postgres
        "audit.decision_log.on_failure",
        "audit.sessions.store",  # a password in the URL
        "connections.prod.password",
        "connections.prod.roles[0].password",
        "connections.prod.sslmode",
        "connections.reporting.sslmode",  # production by its host
        "masking.hash_key",
    ]
    assert any("not require" in m for m in denies if m.startswith("connections.prod.sslmode"))
    warns = messages(found, "testdata/config-check/bad.yaml", "warn")
    assert sorted(m.split(":", 1)[0] for m in warns) == [
        "connections.reporting",
        "listener.insecure_loopback_dev",
    ]
    data_file = "testdata/config-check/policies/pgwarden/data.json"
    assert messages(found, data_file, "deny") == [
        "access.groups.dba.connections.prod.permissions.ddl: DDL must not be granted on a production "
        "connection (it is review); ship schema changes as reviewed migrations"
    ]
    assert [m.split(":")[0] for m in messages(found, data_file, "warn")] == [
        "access.groups.dba.connections.prod.permissions.truncate"
    ]
    assert not report.ok


def test_missing_decision_log_and_missing_policy_data() -> None:
    report = check_configs(
        [Path("testdata/config-check/no-decision-log.yaml")], SHIPPED_CONFIG_RULES, conftest=""
    )
    assert [f.message.split(":")[0] for f in report.failures] == ["audit.decision_log"]
    assert len(report.notes) == 1 and "does-not-exist was not checked" in report.notes[0]


def test_explicit_data_replaces_the_configured_policy_paths() -> None:
    report = check_configs(
        [Path("testdata/config-check/no-decision-log.yaml")],
        SHIPPED_CONFIG_RULES,
        data=[CASES / "policies"],
        conftest="",
    )
    assert report.notes == []
    assert [c.file for c in report.checked][1:] == ["testdata/config-check/policies/pgwarden/data.json"]


def test_cli_prints_conftest_style_lines_and_exits_1_on_deny() -> None:
    result = runner.invoke(app, ["policy", "check-config", "testdata/config-check/bad.yaml"])
    assert result.exit_code == 1, result.output
    lines = result.output.splitlines()
    assert (
        "FAIL - testdata/config-check/bad.yaml - main - masking.hash_key: an inline masking key lets anyone "
        "with the configuration reverse or forge hashed values; put it in a secret file and name it with "
        "masking.hash_key_file"
    ) in lines
    assert any(line.startswith("WARN - testdata/config-check/bad.yaml - main - listener.") for line in lines)
    assert lines[-1] == "2 file(s) checked: 10 failure(s), 3 warning(s)"


def test_cli_exits_0_on_warnings_only(tmp_path: Path) -> None:
    cfg = tmp_path / "dev.yaml"
    cfg.write_text(
        "listener: {host: 127.0.0.1, insecure_loopback_dev: true}\n"
        "connections: {demo: {database: demo, user: demo, password_env: PW}}\n"
        f"policy: {{paths: [{ROOT / 'policies' / 'rego'}]}}\n"
        "audit: {decision_log: {dir: decisions, on_failure: refuse}}\n"
    )
    result = runner.invoke(app, ["policy", "check-config", str(cfg)])
    assert result.exit_code == 0, result.output
    assert "0 failure(s), 1 warning(s)" in result.output


def test_cli_reports_rules_that_do_not_load(tmp_path: Path) -> None:
    (tmp_path / "broken.rego").write_text("package main\n\ndeny contains msg if {\n")
    result = runner.invoke(
        app, ["policy", "check-config", "testdata/config-check/good.yaml", "--policies", str(tmp_path)]
    )
    assert result.exit_code == 2
    assert "broken.rego does not compile" in result.output
    empty = tmp_path / "empty"
    empty.mkdir()
    result = runner.invoke(
        app, ["policy", "check-config", "testdata/config-check/good.yaml", "--policies", str(empty)]
    )
    assert result.exit_code == 2 and "no .rego policies found" in result.output
    result = runner.invoke(
        app, ["policy", "check-config", "testdata/config-check/good.yaml", "--policies", str(tmp_path / "no")]
    )
    assert result.exit_code == 2 and "does not exist; name one with --policies DIR" in result.output


def test_a_file_that_does_not_parse_is_an_error(tmp_path: Path) -> None:
    cfg = tmp_path / "x.yaml"
    cfg.write_text("connections: [unclosed\n")
    with pytest.raises(ConfigCheckError, match="does not parse"):
        check_configs([cfg], SHIPPED_CONFIG_RULES, conftest="")


# --- comparison with conftest (a stand-in plays the binary) -----------------------------------


def fake_conftest(tmp_path: Path, answers: dict[str, dict[str, list[str]]]) -> Path:
    """A `conftest` that logs its argv and answers per file with the given failures/warnings."""
    script = tmp_path / "conftest"
    log = tmp_path / "argv.jsonl"
    script.write_text(
        "#!/usr/bin/env python3\n"
        "import json, sys\n"
        f"answers = {json.dumps(answers)!r}\n"
        f"open({str(log)!r}, 'a').write(json.dumps(sys.argv[1:]) + '\\n')\n"
        "answers = json.loads(answers)\n"
        "file = sys.argv[-1]\n"
        "got = answers.get(file, {})\n"
        "ns = sys.argv[sys.argv.index('--namespace') + 1]\n"
        "print(json.dumps([{'filename': file, 'namespace': ns, 'successes': 0,\n"
        "    'failures': [{'msg': m} for m in got.get('failures', [])],\n"
        "    'warnings': [{'msg': m} for m in got.get('warnings', [])]}]))\n"
        "sys.exit(1 if got.get('failures') else 0)\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


def test_conftest_agreeing_is_silent_and_gets_the_right_command_line(tmp_path: Path) -> None:
    ours = check_configs([Path("testdata/config-check/bad.yaml")], SHIPPED_CONFIG_RULES, conftest="")
    answers: dict[str, dict[str, list[str]]] = {}
    for f in ours.findings:
        answers.setdefault(f.file, {}).setdefault("failures" if f.level == "deny" else "warnings", [])
        answers[f.file]["failures" if f.level == "deny" else "warnings"].append(f.message)
    binary = fake_conftest(tmp_path, answers)
    report = check_configs(
        [Path("testdata/config-check/bad.yaml")], SHIPPED_CONFIG_RULES, conftest=str(binary)
    )
    assert report.disagreements == [] and report.notes == []
    argv = [json.loads(line) for line in (tmp_path / "argv.jsonl").read_text().splitlines()]
    assert argv == [
        [
            "test",
            "--no-color",
            "--output",
            "json",
            "--parser",
            "yaml",
            "--policy",
            str(SHIPPED_CONFIG_RULES),
            "--namespace",
            "main",
            "testdata/config-check/bad.yaml",
        ],
        [
            "test",
            "--no-color",
            "--output",
            "json",
            "--parser",
            "json",
            "--policy",
            str(SHIPPED_CONFIG_RULES),
            "--namespace",
            "policy_data",
            "testdata/config-check/policies/pgwarden/data.json",
        ],
    ]


def test_conftest_disagreeing_is_reported_and_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    binary = fake_conftest(
        tmp_path,
        {"testdata/config-check/good.yaml": {"failures": ["something only conftest sees"]}},
    )
    monkeypatch.setenv("PATH", f"{binary.parent}{os.pathsep}{os.environ['PATH']}")
    result = runner.invoke(app, ["policy", "check-config", "testdata/config-check/good.yaml"])
    assert result.exit_code == 1, result.output
    assert (
        "DISAGREE - testdata/config-check/good.yaml (main): conftest and the embedded engine disagree"
        in result.output
    )
    assert "DISAGREE -   only conftest: deny something only conftest sees" in result.output
    assert result.output.splitlines()[-1].endswith("0 failure(s), 0 warning(s), conftest disagrees")


def test_conftest_without_json_output_is_an_error(tmp_path: Path) -> None:
    script = tmp_path / "conftest"
    script.write_text("#!/bin/sh\necho 'Error: unknown flag: --parser' >&2\nexit 1\n")
    script.chmod(0o755)
    with pytest.raises(ConfigCheckError, match="unknown flag: --parser"):
        conftest_findings(str(script), SHIPPED_CONFIG_RULES, CASES / "good.yaml", "main")
