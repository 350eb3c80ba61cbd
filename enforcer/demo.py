"""`pgwarden demo`: the embedded default, from nothing to a psql prompt through the gateway.

Owns: setting up a local Postgres with demo data, a development certificate, a
token signing key and a configuration file, all under one directory.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

import yaml

from enforcer.config import SHIPPED_POLICIES
from enforcer.identity.gateway_tokens import generate_key
from enforcer.localpg import LocalPostgres, free_port
from enforcer.proxy.tls import write_dev_certificate


def _reachable_by_postgres(path: Path) -> bool:
    """As root, the server runs as `postgres`, which must be able to traverse every parent directory."""
    if os.geteuid() != 0:
        return True
    p = path.resolve()
    return all(not parent.exists() or os.stat(parent).st_mode & 0o001 for parent in [p, *p.parents])


def default_demo_dir() -> Path:
    here = Path.cwd() / ".pgwarden" / "demo"
    return here if _reachable_by_postgres(here.parent.parent) else Path("/var/tmp/pgwarden-demo")


def demo_schema_sql() -> str:
    return (Path(__file__).resolve().parent.parent / "testdata" / "demo_schema.sql").read_text()


@dataclass
class DemoSetup:
    root: Path
    pg: LocalPostgres
    config_path: Path
    gateway_port: int
    api_port: int = 8432


def prepare_demo(
    root: Path, gateway_port: int = 6432, pg_port: int | None = None, api_port: int = 8432
) -> DemoSetup:
    """Create (once) and start the demo cluster; write keys, certificate and configuration."""
    root = root.resolve()
    root.mkdir(parents=True, exist_ok=True)
    state = root / "state.yaml"
    if state.exists():
        saved = yaml.safe_load(state.read_text())
        pg = LocalPostgres(root / "postgres", int(saved["pg_port"]), saved["superuser_password"])
    else:
        pg = LocalPostgres(root / "postgres", pg_port or free_port())
    if not pg.initialized:
        pg.init()
        pg.start()
        app_password = secrets.token_urlsafe(24)
        pg.psql(f"CREATE ROLE app LOGIN PASSWORD '{app_password}';\nCREATE DATABASE demo OWNER app;\n")
        pg.psql(demo_schema_sql(), database="demo", user="app", password=app_password)
        pw_file = root / "app.password"
        pw_file.write_text(app_password)
        os.chmod(pw_file, 0o600)
        fd = os.open(state, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            yaml.safe_dump({"pg_port": pg.port, "superuser_password": pg.superuser_password}, f)
    elif not pg.is_running():
        pg.start()
    key = root / "token.key"
    if not key.exists():
        generate_key(key)
    mask_key = root / "mask.key"
    if not mask_key.exists():
        fd = os.open(mask_key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32) + "\n")
    cert, tls_key = root / "tls" / "server.crt", root / "tls" / "server.key"
    if not cert.exists():
        write_dev_certificate(cert, tls_key, ["localhost", "127.0.0.1", "::1"])
    config = {
        "listener": {
            "host": "127.0.0.1",
            "port": gateway_port,
            "tls": {"cert": str(cert), "key": str(tls_key)},
        },
        "gateway_tokens": {"signing_key_file": str(key), "max_ttl": "12h"},
        "connections": {
            "demo": {
                "host": "127.0.0.1",
                "port": pg.port,
                "database": "demo",
                "user": "app",
                "password_file": str(root / "app.password"),
            }
        },
        "logging": {"level": "info", "format": "text"},
        "policy": {"engine": "embedded", "paths": [str(SHIPPED_POLICIES)]},
        "audit": {
            "decision_log": str(root / "audit" / "decisions"),
            "sessions": {"store": str(root / "audit" / "sessions.sqlite"), "record_rows": True},
        },
        # The whole product on one machine: session and approval pages, masked reads, held writes.
        "api": {"listen": f"127.0.0.1:{api_port}", "auditor_groups": ["auditors"]},
        "approvals": {"store": str(root / "audit" / "approvals.sqlite"), "timeout": "10m"},
        "masking": {"hash_key_file": str(mask_key)},
    }
    config_path = root / "pgwarden.yaml"
    config_path.write_text(
        "# Written by `pgwarden demo`; edit freely, it is rewritten on the next demo run.\n"
        + yaml.safe_dump(config, sort_keys=False)
    )
    return DemoSetup(root=root, pg=pg, config_path=config_path, gateway_port=gateway_port, api_port=api_port)
