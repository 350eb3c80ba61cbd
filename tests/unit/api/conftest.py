"""Real stores (recorded sessions, approval requests) and real gateway tokens to read them with."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from enforcer.approvals.service import ApprovalService, ApprovalSettings
from enforcer.approvals.store import ApprovalStore
from enforcer.audit.sessions import SessionStore
from enforcer.config import GatewayTokenConfig
from enforcer.identity.gateway_tokens import GatewayTokens, generate_key
from enforcer.identity.router import IssuerRouter
from tests.unit.api.recorded import recorded_sessions


@dataclass
class Auth:
    tokens: GatewayTokens
    authenticator: IssuerRouter

    def token(
        self, subject: str = "audrey", groups: tuple[str, ...] = ("auditors",), ttl: float = 600
    ) -> str:
        return self.tokens.issue(subject, list(groups), ttl)


@pytest.fixture
def auth(tmp_path: Path) -> Auth:
    generate_key(tmp_path / "token.key")
    tokens = GatewayTokens(GatewayTokenConfig(signing_key_file=tmp_path / "token.key"))
    return Auth(tokens, IssuerRouter(tokens))


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    url = str(tmp_path / "sessions.db")
    store = SessionStore(url)
    store.write(recorded_sessions())
    store.close()
    return url


@pytest.fixture
def approval_store(tmp_path: Path) -> Iterator[ApprovalStore]:
    store = ApprovalStore(str(tmp_path / "approvals.db"))
    yield store
    store.close()


@pytest.fixture
def approvals(approval_store: ApprovalStore) -> ApprovalService:
    """A real approval service over a real SQLite store (nothing waits on it: decisions only)."""
    return ApprovalService(approval_store, ApprovalSettings(instance="gw-test-w0"))
