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
from enforcer.approvals.service import ApprovalService
from enforcer.approvals.store import ApprovalStore
from tests.unit.api.conftest import Auth
from tests.unit.api.held import held
from tests.unit.api.recorded import ALICE

with warnings.catch_warnings():
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient

SPEC = yaml.safe_load((Path(__file__).resolve().parents[3] / "docs" / "openapi.yaml").read_text())


def _validator(ref: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator({"$ref": ref, "components": SPEC["components"]})


@pytest.fixture
def client(store_url: str, auth: Auth, approvals: ApprovalService) -> Iterator[TestClient]:
    app = create_app(
        store_url=store_url,
        authenticator=auth.authenticator,
        auditor_groups=("auditors",),
        approvals=approvals,
    )
    with TestClient(app, headers={"Authorization": f"Bearer {auth.token()}"}) as c:
        yield c
    close_app(app)


def test_every_json_route_is_documented(client: TestClient) -> None:
    app: Any = client.app
    documented = {
        (path, method.upper())
        for path, ops in SPEC["paths"].items()
        for method in ops
        if method != "parameters"
    }
    served = {
        (r.path.replace("{session_id}", "{id}").replace("{approval_id}", "{id}"), method)
        for r in app.routes
        if isinstance(r, Route) and (r.path.startswith("/api/") or r.path == "/healthz")
        for method in r.methods or ()
        if method != "HEAD"
    }
    assert served == documented


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


def test_approval_responses_match_the_schemas(
    client: TestClient, auth: Auth, approval_store: ApprovalStore
) -> None:
    approval = _validator("#/components/schemas/Approval")
    error = _validator("#/components/schemas/Error")
    dba = {"Authorization": f"Bearer {auth.token('dora', ('dba',))}"}
    first = held(approval_store)
    second = held(approval_store, params=None, reasons=[])
    _validator("#/components/schemas/ApprovalList").validate(client.get("/api/approvals?state=all").json())
    approval.validate(client.get(f"/api/approvals/{first.id}").json())
    approved = client.post(f"/api/approvals/{first.id}/approve", json={"reason": "ok"}, headers=dba)
    assert approved.status_code == 200
    approval.validate(approved.json())
    rejected = client.post(f"/api/approvals/{second.id}/reject", json={"reason": "no"}, headers=dba)
    approval.validate(rejected.json())
    assert rejected.json()["params"] is None and rejected.json()["decided_at"] is not None
    for r in (
        client.post(f"/api/approvals/{first.id}/approve", headers=dba),  # 409
        client.post(f"/api/approvals/{first.id}/approve"),  # 403: an auditor is no approver
        client.get("/api/approvals/apr_0"),  # 404
        client.post("/api/approvals/apr_0/approve", content=b"x" * 20_000, headers=dba),  # 413
    ):
        assert r.status_code in (403, 404, 409, 413)
        error.validate(r.json())
    bad = client.post(f"/api/approvals/{second.id}/reject", json={}, headers=dba).json()
    _validator("#/components/responses/BadParameter/content/application~1json/schema").validate(bad)
    decision = _validator("#/components/schemas/Decision")
    assert decision.is_valid({"reason": "x" * 1000}) and decision.is_valid({})
    assert not decision.is_valid({"reason": "x" * 1001}) and not decision.is_valid({"approve": True})


def test_approval_schema_is_strict(approval_store: ApprovalStore) -> None:
    doc = held(approval_store).to_document()
    assert _validator("#/components/schemas/Approval").is_valid(doc)
    assert not _validator("#/components/schemas/Approval").is_valid({**doc, "binding": "abc"})
    assert not _validator("#/components/schemas/Approval").is_valid({**doc, "state": "maybe"})
