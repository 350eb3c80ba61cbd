"""psql and pgbench through the gateway give the same results as a direct connection."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

SCRIPT = r"""
\pset null '<null>'
SELECT 1 AS one, 'two' AS two; SELECT now() IS NOT NULL AS has_now;
SELECT id, full_name, email, birth_date FROM customers ORDER BY id;
BEGIN;
CREATE TEMP TABLE t (a int, b text);
INSERT INTO t SELECT g, repeat('x', g) FROM generate_series(1, 5) g;
UPDATE t SET b = upper(b) WHERE a > 3 RETURNING *;
SELECT * FROM t ORDER BY a;
SELECT 1/0;
SELECT 'in aborted transaction';
ROLLBACK;
SELECT count(*) FROM orders;
SELECT p.name, sum(o.quantity) FROM orders o JOIN products p ON p.id = o.product_id GROUP BY 1 ORDER BY 1;
DO $$ BEGIN RAISE NOTICE 'notice from DO'; END $$;
SELECT E'multi\nline', '{"a": [1, 2]}'::jsonb, ARRAY[1, NULL, 3], NULL::text;
;
SELECT 'after empty statement';
"""


def run_psql(env: dict[str, str], script: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["psql", "-X", "-At", "-f", "-", *args],
        input=script,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def direct_env(upstream) -> dict[str, str]:
    return {
        **os.environ,
        "PGHOST": "127.0.0.1",
        "PGPORT": str(upstream.port),
        "PGDATABASE": "demo",
        "PGUSER": "app",
        "PGPASSWORD": upstream.app_password,
        "PGSSLMODE": "disable",
    }


def test_psql_script_matches_direct(gateway, upstream) -> None:
    direct = run_psql(direct_env(upstream), SCRIPT)
    through = run_psql(gateway.env(), SCRIPT)
    assert through.stdout == direct.stdout
    # stderr names the input line; both must report the same errors and notices.
    assert through.stderr == direct.stderr
    assert "division by zero" in through.stderr
    assert "current transaction is aborted" in through.stderr
    assert "notice from DO" in through.stderr


def test_psql_multi_statement_single_message(gateway, upstream) -> None:
    # -c sends one Query message holding three statements.
    cmd = "SELECT 1; SELECT 2; SELECT 3"
    direct = subprocess.run(
        ["psql", "-X", "-At", "-c", cmd], capture_output=True, text=True, env=direct_env(upstream)
    )
    through = subprocess.run(
        ["psql", "-X", "-At", "-c", cmd], capture_output=True, text=True, env=gateway.env()
    )
    assert through.returncode == 0, through.stderr
    assert through.stdout == direct.stdout == "1\n2\n3\n"


def test_psql_copy_both_ways(gateway, tmp_path: Path) -> None:
    out = tmp_path / "customers.csv"
    env = gateway.env()
    res = run_psql(
        env, f"\\copy (SELECT id, email FROM customers ORDER BY id) TO '{out}' WITH (FORMAT csv)\n"
    )
    assert res.returncode == 0, res.stderr
    lines = out.read_text().splitlines()
    assert lines[0] == "1,ada@example.com" and len(lines) == 6
    script = (
        "CREATE TEMP TABLE imported (id int, email text);\n"
        f"\\copy imported FROM '{out}' WITH (FORMAT csv)\n"
        "SELECT count(*), min(email) FROM imported;\n"
    )
    res = run_psql(env, script)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip().splitlines()[-1] == "6|ada@example.com"


def test_psql_over_tls_reports_ssl(gateway) -> None:
    res = run_psql(gateway.env(sslmode="require"), "\\conninfo\n")
    assert res.returncode == 0, res.stderr
    assert "SSL connection" in res.stdout


@pytest.fixture(scope="module")
def pgbench_env(gateway):
    env = gateway.env()
    res = subprocess.run(
        ["pgbench", "-i", "-s", "1", "-q"], capture_output=True, text=True, env=env, timeout=300
    )
    assert res.returncode == 0, res.stderr
    return env


@pytest.mark.parametrize("mode", ["simple", "extended", "prepared"])
def test_pgbench_select_only(pgbench_env, mode: str) -> None:
    res = subprocess.run(
        ["pgbench", "-S", "-M", mode, "-c", "4", "-j", "2", "-t", "300", "-n"],
        capture_output=True,
        text=True,
        env=pgbench_env,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr
    assert "number of transactions actually processed: 1200/1200" in res.stdout
    assert "number of failed transactions: 0" in res.stdout


def test_pgbench_tpcb_writes(pgbench_env) -> None:
    res = subprocess.run(
        ["pgbench", "-M", "prepared", "-c", "2", "-t", "100", "-n"],
        capture_output=True,
        text=True,
        env=pgbench_env,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr
    assert "number of transactions actually processed: 200/200" in res.stdout


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_busy_polling_gateway_sleeps_once_traffic_stops(gateway, pgbench_env) -> None:
    """listener.busy_poll (on by default) polls only while statements flow: an idle gateway that
    kept polling would burn a core forever."""
    res = subprocess.run(
        ["pgbench", "-S", "-c", "1", "-t", "2000", "-n"],
        capture_output=True,
        text=True,
        env=pgbench_env,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr
    time.sleep(0.3)  # the decision log's flush and the tracker's batches run on timers
    before = _cpu_seconds(gateway.proc.pid)
    time.sleep(2)
    used = _cpu_seconds(gateway.proc.pid) - before
    assert used < 0.5, f"an idle gateway used {used:.2f} s of CPU in 2 s"
