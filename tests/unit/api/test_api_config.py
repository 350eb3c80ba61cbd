"""The ``api`` configuration section: parsed, defaulted, and refused with the key and the fix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from enforcer.config import ApiConfig, ConfigError, parse_config


def _config(tmp_path: Path, api: Any = None) -> dict[str, Any]:
    (tmp_path / "token.key").write_text("unused: only its existence is checked here")
    (tmp_path / "pw").write_text("secret")
    raw: dict[str, Any] = {
        "listener": {"host": "127.0.0.1", "port": 0, "insecure_loopback_dev": True},
        "gateway_tokens": {"signing_key_file": "token.key"},
        "connections": {"demo": {"database": "demo", "user": "app", "password_file": "pw"}},
    }
    if api is not None:
        raw["api"] = api
    return raw


def test_absent_means_no_api(tmp_path: Path) -> None:
    assert parse_config(_config(tmp_path), base=tmp_path).api is None


@pytest.mark.parametrize(
    "section,expected",
    [
        ({"listen": "127.0.0.1:8080"}, ApiConfig("127.0.0.1", 8080, ("auditors",))),
        (
            {"listen": "[::1]:9000", "auditor_groups": ["sec", "audit"]},
            ApiConfig("::1", 9000, ("sec", "audit")),
        ),
        ({"listen": "localhost:80"}, ApiConfig("localhost", 80, ("auditors",))),
    ],
)
def test_parsed(tmp_path: Path, section: dict[str, Any], expected: ApiConfig) -> None:
    assert parse_config(_config(tmp_path, section), base=tmp_path).api == expected


@pytest.mark.parametrize(
    "section,fragment",
    [
        ({}, "api.listen: required"),
        ({"listen": 8080}, "api.listen: expected a non-empty string"),
        ({"listen": "8080"}, "api.listen: expected host:port such as 127.0.0.1:8080"),
        ({"listen": "127.0.0.1:0"}, "api.listen: expected host:port"),
        ({"listen": "127.0.0.1:70000"}, "api.listen: expected host:port"),
        ({"listen": "::1:8080"}, "(or [::1]:8080)"),
        ({"listen": "127.0.0.1:8080", "auditor_groups": []}, "api.auditor_groups: expected a non-empty list"),
        ({"listen": "127.0.0.1:8080", "auditor_groups": "auditors"}, "api.auditor_groups"),
        ({"listen": "127.0.0.1:8080", "auditor_groups": [""]}, "api.auditor_groups"),
        (
            {"listen": "127.0.0.1:8080", "port": 1},
            "api: unknown key(s) port; allowed keys are auditor_groups, listen",
        ),
        ("127.0.0.1:8080", "api: expected a mapping"),
    ],
)
def test_refused(tmp_path: Path, section: Any, fragment: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(_config(tmp_path, section), base=tmp_path)
    assert fragment in str(err.value)
