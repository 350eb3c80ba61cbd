"""docs/openapi.yaml describes every JSON route, and real responses validate against it."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from starlette.exceptions import StarletteDeprecationWarning
from starlette.routing import Route

from enforcer.api.app import close_app, create_app
from tests.unit.api.conftest import Auth
from tests.unit.api.recorded import ALICE

with warnings.catch_warnings():
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient

SPEC = yaml.safe_load((Path(__file__).resolve().parents[3] / "docs" / "openapi.yaml").read_text())


def _validator(ref: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator({"$ref": ref, "components": SPEC["components"]})


@pytest.fixture
def client(store_url: str, auth: Auth) -> Iterator[TestClient]:
    app = create_app(store_url=store_url, authenticator=auth.authenticator, auditor_groups=("auditors",))
    with TestClient(app, headers={"Authorization": f"Bearer {auth.token()}"}) as c:
        yield c
    close_app(app)


def test_every_json_route_is_documented(client: TestClient) -> None:
    app: Any = client.app
    routes = {r.path.replace("{session_id}", "{id}") for r in app.routes if isinstance(r, Route)}
    json_routes = {p for p in routes if p.startswith("/api/")} | {"/healthz"}
    assert json_routes == set(SPEC["paths"])


def test_responses_match_the_schemas(client: TestClient) -> None:
    _validator("#/components/schemas/SessionList").validate(client.get("/api/sessions").json())
    _validator("#/components/schemas/SessionDetail").validate(client.get(f"/api/sessions/{ALICE}").json())
    error = _validator("#/components/schemas/Error")
    error.validate(client.get("/api/sessions/nope").json())
    error.validate(client.get("/api/sessions", headers={"Authorization": "Bearer x"}).json())
    bad = client.get("/api/sessions?limit=0").json()
    _validator("#/components/responses/BadParameter/content/application~1json/schema").validate(bad)


def test_schemas_are_strict() -> None:
    """An undocumented field in a response would fail the test above."""
    detail = {"session": {"id": "x"}, "statements": [], "extra": 1}
    assert not _validator("#/components/schemas/SessionDetail").is_valid(detail)
    summary = _listed_session() | {"surprise": True}
    assert not _validator("#/components/schemas/SessionSummary").is_valid(summary)
    assert _validator("#/components/schemas/SessionSummary").is_valid(_listed_session())


def _listed_session() -> dict[str, Any]:
    return {
        "id": "x",
        "instance": "i",
        "started_at": 1.0,
        "ended_at": None,
        "subject": "s",
        "issuer": "pgwarden",
        "groups": [],
        "user_name": "app",
        "connection": "demo",
        "database": "demo",
        "client_addr": "127.0.0.1",
        "application_name": "",
        "tls": False,
        "protocol": "postgres",
        "end_reason": None,
        "statements": 0,
        "refused": 0,
        "errors": 0,
    }
