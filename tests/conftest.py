"""Shared fixtures: a real throwaway Postgres and real gateway processes in front of it."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from enforcer.config import load_config
from enforcer.demo import demo_schema_sql
from enforcer.identity.gateway_tokens import GatewayTokens, generate_key
from enforcer.localpg import LocalPostgres, free_port
from enforcer.proxy.tls import write_dev_certificate

REPO = Path(__file__).resolve().parent.parent
ALLOW_ALL_POLICY = REPO / "testdata" / "policies" / "allow_all"
SHIPPED_POLICY = REPO / "policies" / "rego"


@dataclass
class Upstream:
    pg: LocalPostgres
    app_password: str
    password_file: Path

    @property
    def port(self) -> int:
        return self.pg.port

    def connection(self, **overrides: Any) -> dict[str, Any]:
        """A `connections.<name>` configuration entry for this Postgres (demo database, role app)."""
        return {
            "host": "127.0.0.1",
            "port": self.pg.port,
            "database": "demo",
            "user": "app",
            "password_file": str(self.password_file),
            **overrides,
        }

    def dsn(self, **extra: Any) -> str:
        parts = {
            "host": "127.0.0.1",
            "port": self.pg.port,
            "dbname": "demo",
            "user": "app",
            "password": self.app_password,
            **extra,
        }
        return conninfo(parts)


def conninfo(parts: dict[str, Any]) -> str:
    """A libpq connection string; values are quoted as libpq requires."""

    def quote(v: Any) -> str:
        s = str(v)
        return (
            "'" + s.replace("\\", "\\\\").replace("'", "\\'") + "'" if (not s or " " in s or "'" in s) else s
        )

    return " ".join(f"{k}={quote(v)}" for k, v in parts.items())


@pytest.fixture(scope="session")
def workdir() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="pgwarden-test-", dir="/tmp"))
    os.chmod(d, 0o755)
    yield d
    if not os.environ.get("PGWARDEN_KEEP_TEST_DIR"):
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def upstream(workdir: Path) -> Iterator[Upstream]:
    """A real Postgres (initdb into a temp dir, SCRAM required) with the demo schema."""
    pg = LocalPostgres(workdir / "pg", free_port())
    pg.init()
    # TLS for upstream verify modes; md5 and cleartext rules for the other auth methods.
    write_dev_certificate(workdir / "pgtls" / "server.crt", workdir / "pgtls" / "server.key", ["127.0.0.1"])
    pg.enable_ssl(workdir / "pgtls" / "server.crt", workdir / "pgtls" / "server.key")
    pg.prepend_hba("host all app_md5 127.0.0.1/32 md5", "host all app_plain 127.0.0.1/32 password")
    pg.start()
    app_password = secrets.token_urlsafe(18)
    pg.psql(
        f"CREATE ROLE app LOGIN PASSWORD '{app_password}'; CREATE DATABASE demo OWNER app;"
        "SET password_encryption = 'md5';"
        f"CREATE ROLE app_md5 LOGIN PASSWORD '{app_password}';"
        "RESET password_encryption;"
        f"CREATE ROLE app_plain LOGIN PASSWORD '{app_password}';"
        "GRANT CONNECT ON DATABASE demo TO app_md5, app_plain;"
    )
    pg.psql(demo_schema_sql(), database="demo", user="app", password=app_password)
    pwfile = workdir / "app.password"
    pwfile.write_text(app_password)
    os.chmod(pwfile, 0o600)
    try:
        yield Upstream(pg, app_password, pwfile)
    finally:
        pg.stop("immediate")


@dataclass
class GatewayProcess:
    config_path: Path
    log_path: Path
    port: int
    proc: subprocess.Popen[bytes]
    tokens: GatewayTokens
    cert: Path
    decision_log: Path | None = None
    session_store: Path | None = None

    def log_records(self) -> list[dict[str, Any]]:
        """Every decision-log record written so far (all workers' streams, each in chain order)."""
        assert self.decision_log is not None
        out = []
        for f in sorted(self.decision_log.glob("*/*.jsonl")):
            if f.name != "anchors.jsonl":
                # Only whole lines: a running gateway may be in the middle of writing the last one
                # (a reader can see part of a write(2) that spans pages), and a killed one may have
                # left it torn. Neither is a record yet.
                *whole, _partial = f.read_text().split("\n")
                out += [json.loads(line) for line in whole if line]
        return out

    def decisions(self) -> list[dict[str, Any]]:
        """Decision records written so far (all workers)."""
        return [r for r in self.log_records() if r.get("event") == "decision"]

    def outcomes(self) -> list[dict[str, Any]]:
        return [r for r in self.log_records() if r.get("event") == "outcome"]

    def token(self, subject: str = "ci-bot", groups: tuple[str, ...] = ("agents",), ttl: float = 900) -> str:
        return self.tokens.issue(subject, list(groups), ttl)

    def dsn(self, user: str = "ci-bot", dbname: str = "demo", sslmode: str = "require", **extra: Any) -> str:
        password = extra.pop("password", None) or self.token(user)
        parts = {
            "host": "127.0.0.1",
            "port": self.port,
            "dbname": dbname,
            "user": user,
            "password": password,
            "sslmode": sslmode,
            **extra,
        }
        return conninfo(parts)

    def env(self, user: str = "ci-bot", sslmode: str = "require") -> dict[str, str]:
        return {
            **os.environ,
            "PGHOST": "127.0.0.1",
            "PGPORT": str(self.port),
            "PGDATABASE": "demo",
            "PGUSER": user,
            "PGPASSWORD": self.token(user),
            "PGSSLMODE": sslmode,
        }

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = 15, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return int(self.proc.returncode)


def wait_port(port: int, proc: subprocess.Popen[bytes], log: Path, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"gateway exited with {proc.returncode}:\n{log.read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"gateway did not listen on {port}:\n{log.read_text()}")


@pytest.fixture(scope="session")
def gateway_factory(workdir: Path, upstream: Upstream) -> Iterator[Any]:
    key = workdir / "token.key"
    generate_key(key)
    cert, tls_key = workdir / "tls" / "server.crt", workdir / "tls" / "server.key"
    write_dev_certificate(cert, tls_key, ["localhost", "127.0.0.1"])
    started: list[GatewayProcess] = []

    def start(
        listener: dict[str, Any] | None = None,
        connections: dict[str, Any] | None = None,
        workers: int = 1,
        logging_format: str = "json",
        policy: dict[str, Any] | None = None,
        identity: dict[str, Any] | None = None,
        audit: dict[str, Any] | None = None,
        approvals: dict[str, Any] | None = None,
        api: dict[str, Any] | None = None,
        masking: dict[str, Any] | None = None,
    ) -> GatewayProcess:
        port = free_port()
        n = len(started)
        lst: dict[str, Any] = {
            "host": "127.0.0.1",
            "port": port,
            "tls": {"cert": str(cert), "key": str(tls_key)},
            "insecure_loopback_dev": True,
        }
        lst.update(listener or {})
        conns = {"demo": upstream.connection()}
        conns.update(connections or {})
        cfg = {
            "listener": lst,
            "gateway_tokens": {"signing_key_file": str(key), "max_ttl": "1h"},
            "connections": conns,
            "logging": {"level": "debug", "format": logging_format},
            "policy": policy or {"paths": [str(ALLOW_ALL_POLICY)]},
            "audit": {
                "decision_log": str(workdir / f"decisions-{n}"),
                "sessions": str(workdir / f"sessions-{n}.sqlite"),
                "instance": "test",
                **(audit or {}),
            },
            **({"identity": identity} if identity else {}),
            **({"approvals": approvals} if approvals else {}),
            **({"api": api} if api else {}),
            **({"masking": masking} if masking else {}),
        }
        path = workdir / f"gateway-{n}.yaml"
        path.write_text(yaml.safe_dump(cfg))
        log = workdir / f"gateway-{n}.log"
        cmd = [sys.executable, "-m", "enforcer.cli", "run", "--config", str(path)]
        if workers > 1:
            cmd += ["--workers", str(workers)]
        with open(log, "wb") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
        wait_port(port, proc, log)
        gw = GatewayProcess(
            path,
            log,
            port,
            proc,
            GatewayTokens(load_config(path).gateway_tokens),
            cert,
            decision_log=workdir / f"decisions-{n}",
            session_store=workdir / f"sessions-{n}.sqlite",
        )
        started.append(gw)
        return gw

    yield start
    crashed = []
    for gw in started:
        gw.stop()
        if "Traceback" in gw.logs():
            crashed.append(f"{gw.log_path}:\n{gw.logs()}")
    # Exceptions inside transport callbacks are only logged; make them fail the run.
    assert not crashed, "gateway logged tracebacks:\n" + "\n".join(crashed)


@pytest.fixture(scope="session")
def gateway(gateway_factory: Any) -> GatewayProcess:
    """The default gateway: TLS offered, plaintext allowed on loopback (dev listener)."""
    gw: GatewayProcess = gateway_factory()
    return gw
