"""Masked result streaming: rows/s through the gateway (2 of 6 columns masked) against direct.

Streams a table of N rows x 6 columns with psycopg, text and binary, directly from Postgres
and through pgwarden as an identity whose policy masks two of the columns (email: `email`,
ssn: `redact`). Appends a section to bench/RESULTS.md. Usage:

    .venv/bin/python bench/masking.py [--rows 1000000] [--repeat 3] [--out bench/RESULTS.md]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.run import wait_port  # noqa: E402
from enforcer.config import SHIPPED_POLICIES, load_config  # noqa: E402
from enforcer.identity.gateway_tokens import GatewayTokens, generate_key  # noqa: E402
from enforcer.localpg import LocalPostgres, free_port  # noqa: E402

QUERY = "SELECT id, name, email, ssn, amount, created FROM stream_rows"


def stream(dsn: str, binary: bool) -> tuple[int, float]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        start = time.perf_counter()
        n = 0
        with conn.cursor(binary=binary) as cur:
            cur.execute(QUERY)
            while rows := cur.fetchmany(10_000):
                n += len(rows)
        return n, time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "RESULTS.md")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="pgwarden-maskbench-", dir="/tmp"))
    os.chmod(work, 0o755)
    pg = LocalPostgres(work / "pg", free_port())
    gw = None
    try:
        pg.init()
        pg.start()
        password = secrets.token_urlsafe(18)
        pg.psql(f"CREATE ROLE app LOGIN PASSWORD '{password}'; CREATE DATABASE demo OWNER app;")
        pg.psql(
            "CREATE TABLE stream_rows (id int PRIMARY KEY, name text, email text, ssn text, "
            "amount numeric(10,2), created timestamptz);"
            f"INSERT INTO stream_rows SELECT g, 'name ' || g, 'user' || g || '@example.com', "
            f"lpad((g % 1000000000)::text, 9, '0'), g % 1000, now() FROM generate_series(1, {args.rows}) g;"
            "ALTER TABLE stream_rows OWNER TO app; ANALYZE stream_rows;",
            database="demo",
        )
        (work / "app.password").write_text(password)
        policies = work / "policies"
        shutil.copytree(SHIPPED_POLICIES, policies)
        data_file = policies / "pgwarden" / "data.json"
        data = json.loads(data_file.read_text())
        data["config"]["masking"]["column_labels"].update(
            {"public.stream_rows.email": ["pii.email"], "public.stream_rows.ssn": ["pii.national_id"]}
        )
        data_file.write_text(json.dumps(data))
        (work / "mask.key").write_text(secrets.token_hex(16))
        generate_key(work / "token.key")
        port = free_port()
        cfg = {
            "listener": {"host": "127.0.0.1", "port": port, "insecure_loopback_dev": True},
            "gateway_tokens": {"signing_key_file": str(work / "token.key"), "max_ttl": "1h"},
            "connections": {
                "demo": {
                    "host": "127.0.0.1",
                    "port": pg.port,
                    "database": "demo",
                    "user": "app",
                    "password_file": str(work / "app.password"),
                }
            },
            "logging": {"level": "warning"},
            "policy": {"paths": [str(policies)]},
            "masking": {"hash_key_file": str(work / "mask.key")},
            "audit": {"instance": "maskbench", "decision_log": str(work / "decisions")},
        }
        path = work / "gateway.yaml"
        path.write_text(yaml.safe_dump(cfg))
        gw = subprocess.Popen([sys.executable, "-m", "enforcer.cli", "run", "--config", str(path)], cwd=REPO)
        wait_port(port)
        token = GatewayTokens(load_config(path).gateway_tokens).issue("bench", ["agents"], 3600)
        direct = f"host=127.0.0.1 port={pg.port} dbname=demo user=app password={password} sslmode=disable"
        through = f"host=127.0.0.1 port={port} dbname=demo user=bench password={token} sslmode=disable"

        with psycopg.connect(through, autocommit=True) as conn:  # masked, as the identity sees it
            row = conn.execute(QUERY + " WHERE id = 1").fetchone()
        assert row is not None and row[2] != "user1@example.com" and row[3] != "000000001", row

        results = []
        for binary in (False, True):
            best: dict[str, float] = {}
            for _ in range(args.repeat):
                for name, dsn in (("direct", direct), ("pgwarden, 2 of 6 columns masked", through)):
                    n, secs = stream(dsn, binary)
                    assert n == args.rows
                    best[name] = max(best.get(name, 0.0), n / secs)
            d = best["direct"]
            for name, rate in best.items():
                results.append(("binary" if binary else "text", name, rate, rate / d))
                print(f"{'binary' if binary else 'text':6} {name:34} {rate:12.0f} rows/s {rate / d:.2f}x")
        write(args, results, row)
    finally:
        if gw is not None:
            gw.terminate()
            gw.wait(30)
        pg.stop("immediate")
        shutil.rmtree(work, ignore_errors=True)


def write(
    args: argparse.Namespace, results: list[tuple[str, str, float, float]], row: tuple[object, ...]
) -> None:
    marker = "## Masked result streaming"
    text = args.out.read_text() if args.out.exists() else ""
    if marker in text:
        text = text[: text.index(marker)].rstrip() + "\n\n"
    lines = [
        marker,
        "",
        f"`.venv/bin/python bench/masking.py --rows {args.rows} --repeat {args.repeat}` "
        f"({time.strftime('%Y-%m-%d')}): `{QUERY}` streamed with psycopg (fetchmany 10000), "
        "best of the repeats; through pgwarden as an agent whose policy masks `email` (email) and "
        "`ssn` (redact), so the statement is rewritten and every row passes the result masker.",
        "",
        f"A masked row as the client got it: `{row}`",
        "",
        "| format | target | rows/s | ratio |",
        "|---|---|---:|---:|",
    ]
    lines += [f"| {fmt} | {name} | {rate:,.0f} | {ratio:.2f} |" for fmt, name, rate, ratio in results]
    args.out.write_text(text + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
