"""The pgwarden command line: every command, and errors that name the problem and the fix."""

from __future__ import annotations

import json
from pathlib import Path

import jwt
import pytest
import yaml
from typer.testing import CliRunner

from enforcer.cli import app

runner = CliRunner()


@pytest.fixture
def config(tmp_path: Path) -> Path:
    assert runner.invoke(app, ["token", "keygen", str(tmp_path / "token.key")]).exit_code == 0
    (tmp_path / "pw").write_text("secret")
    cfg = {
        "listener": {"host": "127.0.0.1", "port": 0, "insecure_loopback_dev": True},
        "gateway_tokens": {"signing_key_file": "token.key", "max_ttl": "1h"},
        "connections": {"demo": {"database": "demo", "user": "app", "password_file": "pw"}},
    }
    path = tmp_path / "pgwarden.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_config_check(config: Path) -> None:
    res = runner.invoke(app, ["config", "check", str(config)])
    assert res.exit_code == 0 and "1 connection(s): demo" in res.output
    raw = yaml.safe_load(config.read_text())
    raw["listener"]["max_clients"] = "lots"
    config.write_text(yaml.safe_dump(raw))
    res = runner.invoke(app, ["config", "check", str(config)])
    assert res.exit_code == 2 and "listener.max_clients" in res.output


def test_token_issue(config: Path) -> None:
    res = runner.invoke(
        app, ["token", "issue", "-c", str(config), "--subject", "ci-bot", "--groups", "agents,ci"]
    )
    assert res.exit_code == 0, res.output
    claims = jwt.decode(res.output.strip(), options={"verify_signature": False})
    assert claims["sub"] == "ci-bot" and claims["groups"] == ["agents", "ci"]
    assert claims["exp"] - claims["iat"] == 900
    res = runner.invoke(app, ["token", "issue", "-c", str(config), "--subject", "x", "--ttl", "2h"])
    assert res.exit_code == 2 and "max_ttl" in res.output


def test_token_keygen_refuses_to_overwrite(config: Path) -> None:
    res = runner.invoke(app, ["token", "keygen", str(config.parent / "token.key")])
    assert res.exit_code == 2 and "invalidates every token" in res.output


def test_cert_dev(tmp_path: Path) -> None:
    res = runner.invoke(app, ["cert", "dev", "--out-dir", str(tmp_path / "tls"), "--host", "db.local"])
    assert res.exit_code == 0
    assert (tmp_path / "tls" / "server.crt").read_text().startswith("-----BEGIN CERTIFICATE-----")
    assert (tmp_path / "tls" / "server.key").stat().st_mode & 0o777 == 0o600


def test_explain_prints_input_and_decision() -> None:
    res = runner.invoke(app, ["explain", "DELETE FROM orders", "--as", "ci-bot", "--groups", "agents"])
    assert res.exit_code == 0, res.output
    body = res.stdout[: res.stdout.rindex("}") + 1]
    doc = json.loads(body)
    assert doc["decision"]["action"] == "deny"
    assert doc["input"]["statement"]["kind"] == "delete" and "ast" not in doc["input"]["statement"]


def test_run_refuses_a_broken_policy(config: Path, tmp_path: Path) -> None:
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "p.rego").write_text("package pgwarden\nthis is not rego\n")
    raw = yaml.safe_load(config.read_text())
    raw["policy"] = {"paths": [str(tmp_path / "bad")]}
    config.write_text(yaml.safe_dump(raw))
    res = runner.invoke(app, ["run", "--config", str(config)])
    assert res.exit_code == 2 and "does not compile" in res.output


def test_run_refuses_a_missing_config(tmp_path: Path) -> None:
    res = runner.invoke(app, ["run", "--config", str(tmp_path / "nope.yaml")])
    assert res.exit_code == 2 and "cannot read configuration file" in res.output
