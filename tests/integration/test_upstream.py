"""Upstream connections: SCRAM, md5 and cleartext authentication, TLS verify modes."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from enforcer.proxy.tls import write_dev_certificate
from tests.integration.wireclient import WireClient

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def gw(gateway_factory, upstream, workdir: Path, tmp_path_factory):
    other = tmp_path_factory.mktemp("otherca")
    write_dev_certificate(other / "ca.crt", other / "ca.key", ["127.0.0.1"])
    ca = str(workdir / "pgtls" / "server.crt")
    return gateway_factory(
        connections={
            "md5": upstream.connection(user="app_md5"),
            "plain": upstream.connection(user="app_plain"),
            "tls_require": upstream.connection(sslmode="require"),
            "tls_verify_full": upstream.connection(sslmode="verify-full", sslrootcert=ca),
            "tls_verify_ca": upstream.connection(sslmode="verify-ca", sslrootcert=ca),
            "tls_wrong_ca": upstream.connection(sslmode="verify-ca", sslrootcert=str(other / "ca.crt")),
            "tls_wrong_host": upstream.connection(host="localhost", sslmode="verify-full", sslrootcert=ca),
        }
    )


@pytest.mark.parametrize("name,role", [("demo", "app"), ("md5", "app_md5"), ("plain", "app_plain")])
def test_auth_methods(gw, name: str, role: str) -> None:
    with psycopg.connect(gw.dsn(dbname=name)) as conn:
        assert conn.execute("SELECT current_user").fetchone() == (role,)


@pytest.mark.parametrize("name", ["tls_require", "tls_verify_full", "tls_verify_ca"])
def test_upstream_tls_modes(gw, name: str) -> None:
    with psycopg.connect(gw.dsn(dbname=name)) as conn:
        assert conn.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone() == (True,)


@pytest.mark.parametrize("name", ["tls_wrong_ca", "tls_wrong_host"])
def test_upstream_tls_verification_failures(gw, name: str) -> None:
    c = WireClient(gw.port)
    err = c.login("ci-bot", gw.token(), database=name)[-1]
    assert err.sqlstate == "08001" and "TLS handshake failed" in err.message
