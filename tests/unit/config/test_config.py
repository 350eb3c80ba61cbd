"""Configuration validation: errors name the key and the fix."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from enforcer.config import ConfigError, load_config, parse_config, parse_duration, parse_size
from enforcer.identity.gateway_tokens import generate_key
from enforcer.proxy.tls import write_dev_certificate

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def base(tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    generate_key(tmp_path / "token.key")
    write_dev_certificate(tmp_path / "tls" / "server.crt", tmp_path / "tls" / "server.key", ["localhost"])
    raw = yaml.safe_load((REPO / "testdata" / "pgwarden.example.yaml").read_text())
    return tmp_path, raw


def test_example_config_is_valid(base: tuple[Path, dict[str, Any]]) -> None:
    tmp, _ = base
    shutil.copy(REPO / "testdata" / "pgwarden.example.yaml", tmp / "pgwarden.yaml")
    cfg = load_config(tmp / "pgwarden.yaml")
    assert cfg.listener.max_message_size == 64 * 1024 * 1024
    assert cfg.listener.idle_in_transaction_timeout == 300
    assert cfg.listener.busy_poll == pytest.approx(0.0002)
    assert cfg.connections["demo"].password.env == "PGWARDEN_DEMO_PASSWORD"
    assert "PGWARDEN_DEMO_PASSWORD" in repr(cfg.connections["demo"].password)
    dl = cfg.audit.decision_log
    assert dl is not None and dl.dir == tmp / "data" / "decisions" and dl.retention == 90 * 86400
    assert cfg.audit.sessions_store == str(tmp / "data" / "sessions.sqlite")
    assert cfg.approvals is not None and cfg.approvals.timeout == 300 and cfg.approvals.validity == 3600
    assert cfg.approvals.public_url == "http://127.0.0.1:8080"  # from api.listen
    assert cfg.approvals.mqtt is not None and cfg.approvals.webhooks[0].format == "slack"


@pytest.mark.parametrize(
    "mutate,expected",
    [
        (lambda r: r["listener"].update(tls=None), "pgwarden cert dev"),
        (lambda r: r["listener"].update(tls=None, insecure_loopback_dev=True, host="0.0.0.0"), "loopback"),
        (lambda r: r["listener"].update(port="six"), "listener.port"),
        (lambda r: r["listener"].update(startup_timeout="soon"), "listener.startup_timeout"),
        (lambda r: r["listener"].update(colour="blue"), "unknown key(s) colour"),
        (lambda r: r["listener"].update(busy_poll="20ms"), "listener.busy_poll: '20ms' is longer than 10ms"),
        (lambda r: r["listener"].update(busy_poll="-1"), "listener.busy_poll"),
        (lambda r: r["connections"]["demo"].update(password="hunter2"), "inline passwords"),
        (lambda r: r["connections"]["demo"].update(sslmode="prefer"), "connections.demo.sslmode"),
        (lambda r: r["connections"]["demo"].pop("database"), "connections.demo.database: required"),
        (lambda r: r["connections"]["demo"].update(password_file="a.pw"), "only one of password_env"),
        (
            lambda r: (
                r["connections"]["demo"].pop("password_env")
                and r["connections"]["demo"].update(password_file="nope.pw")
            ),
            "does not exist",
        ),
        (lambda r: r.update(connections={}), "at least one upstream connection"),
        (lambda r: r["gateway_tokens"].pop("signing_key_file"), "pgwarden token keygen"),
        (lambda r: r["logging"].update(format="xml"), "logging.format"),
        (lambda r: r["audit"].update(decision_log="d.jsonl"), "names a file"),
        (lambda r: r["audit"]["decision_log"].update(fsync="sometimes"), "audit.decision_log.fsync"),
        (lambda r: r["audit"]["decision_log"].update(on_failure="ignore"), "refuse, forward"),
        (lambda r: r["audit"]["decision_log"].update(rotate_size="1KiB"), "at least 4KiB"),
        (lambda r: r["audit"].update(instance="../x"), "audit.instance"),
        (lambda r: r["audit"]["sessions"].update(store="postgresql://u:pw@h/db"), "PGPASSWORD"),
        (lambda r: r["audit"]["sessions"].update(store=""), "audit.sessions.store: missing"),
        (lambda r: r["approvals"].update(timeout="2h"), "validity at least the timeout"),
        (lambda r: r["approvals"].pop("store"), "approvals.store: missing"),
        (lambda r: r["approvals"]["notify"]["webhooks"][0].update(format="teams"), "json, slack"),
        (lambda r: r["approvals"]["notify"]["webhooks"][0].update(url="ftp://x"), "http(s) URL"),
        (lambda r: r["approvals"]["notify"]["mqtt"].update(qos=2), "unknown key(s) qos"),
        (lambda r: r["approvals"].update(store="postgresql://a:b@h/db"), "PGPASSWORD"),
    ],
)
def test_errors_name_key_and_fix(base: tuple[Path, dict[str, Any]], mutate: Any, expected: str) -> None:
    tmp, raw = base
    mutate(raw)
    with pytest.raises(ConfigError) as info:
        parse_config(raw, base=tmp)
    assert expected in str(info.value)


def test_insecure_loopback_dev_allows_no_tls(base: tuple[Path, dict[str, Any]]) -> None:
    tmp, raw = base
    raw["listener"].update(tls=None, insecure_loopback_dev=True, host="::1")
    assert parse_config(raw, base=tmp).listener.tls is None


def test_broken_yaml_and_missing_file(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("listener: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(tmp_path / "bad.yaml")
    with pytest.raises(ConfigError, match="cannot read configuration file"):
        load_config(tmp_path / "missing.yaml")


def test_busy_poll_default_and_off(base: tuple[Path, dict[str, Any]]) -> None:
    tmp, raw = base
    raw["listener"].pop("busy_poll", None)
    assert parse_config(raw, base=tmp).listener.busy_poll == pytest.approx(0.0002)
    raw["listener"]["busy_poll"] = 0
    assert parse_config(raw, base=tmp).listener.busy_poll == 0
    raw["listener"]["busy_poll"] = "50us"
    assert parse_config(raw, base=tmp).listener.busy_poll == pytest.approx(0.00005)


def test_durations_and_sizes() -> None:
    assert parse_duration("250ms", "k") == 0.25
    assert parse_duration("200us", "k") == pytest.approx(0.0002)
    assert parse_duration("15m", "k") == 900
    assert parse_duration(3, "k") == 3
    assert parse_size("64KiB", "k") == 65536
    assert parse_size(10, "k") == 10
    for bad in ("-1s", "1 fortnight", True, -5):
        with pytest.raises(ConfigError):
            parse_duration(bad, "k")
    for bad in (0, "0", "1TB", False):
        with pytest.raises(ConfigError):
            parse_size(bad, "k")


def test_gateway_tokens_optional_only_with_oidc(base: tuple[Path, dict[str, Any]]) -> None:
    tmp, raw = base
    raw.pop("gateway_tokens")
    with pytest.raises(ConfigError, match=r"required unless identity\.oidc"):
        parse_config(raw, base=tmp)
    raw["identity"] = {
        "oidc": [{"name": "okta", "issuer": "https://acme.okta.com", "audiences": ["pgwarden"]}]
    }
    cfg = parse_config(raw, base=tmp)
    assert cfg.gateway_tokens is None and cfg.identity.oidc[0].name == "okta"
