"""pgbench -S against direct Postgres, pgbouncer (session mode) and the gateway, in one run.

Writes bench/RESULTS.md with tps and ratios to direct. Usage:

    .venv/bin/python bench/run.py [--seconds 5] [--rounds 3] [--scale 10] [--out bench/RESULTS.md]

Everything runs on this machine: one Postgres, pgbench as the load generator,
so the ratios (not the absolute tps) are what carries over between machines.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from enforcer.config import SHIPPED_POLICIES, load_config  # noqa: E402
from enforcer.identity.gateway_tokens import GatewayTokens, generate_key  # noqa: E402
from enforcer.localpg import LocalPostgres, free_port  # noqa: E402

ALLOW_ALL = REPO / "testdata" / "policies" / "allow_all"


def wait_port(port: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {port}")


def pgbench(env: dict[str, str], clients: int, mode: str, seconds: int) -> tuple[float, str]:
    cmd = [
        "pgbench",
        "-n",
        "-S",
        "-M",
        mode,
        "-c",
        str(clients),
        "-j",
        str(min(clients, 2)),
        "-T",
        str(seconds),
    ]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=seconds * 5 + 60)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {res.stderr}")
    m = re.search(r"tps = ([\d.]+) \(without initial connection time\)", res.stdout)
    if not m:
        raise RuntimeError(f"no tps in pgbench output:\n{res.stdout}")
    return float(m.group(1)), " ".join(cmd)


def start_pgbouncer(work: Path, pg: LocalPostgres, app_password: str) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    ini = work / "pgbouncer.ini"
    ini.write_text(
        "[databases]\n"
        f"demo = host=127.0.0.1 port={pg.port} dbname=demo user=app password={app_password}\n"
        "[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {port}\n"
        "auth_type = any\npool_mode = session\nmax_client_conn = 100\ndefault_pool_size = 20\n"
        "unix_socket_dir =\n"
    )
    for p in (ini,):
        os.chmod(p, 0o644)
    cmd = ["pgbouncer", str(ini)]
    if os.geteuid() == 0:
        cmd = ["runuser", "-u", "postgres", "--", *cmd]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port)
    return proc, port


def start_gateway(
    work: Path,
    pg: LocalPostgres,
    pwfile: Path,
    workers: int,
    policy: Path,
    name: str,
    sessions: bool,
    busy_poll: str | None = None,
) -> tuple[subprocess.Popen[bytes], int, GatewayTokens]:
    port = free_port()
    key = work / "token.key"
    if not key.exists():
        generate_key(key)
    cfg = {
        "listener": {
            "host": "127.0.0.1",
            "port": port,
            "insecure_loopback_dev": True,
            **({"busy_poll": busy_poll} if busy_poll is not None else {}),
        },
        "gateway_tokens": {"signing_key_file": str(key), "max_ttl": "1h"},
        "connections": {
            "demo": {
                "host": "127.0.0.1",
                "port": pg.port,
                "database": "demo",
                "user": "app",
                "password_file": str(pwfile),
            }
        },
        "logging": {"level": "warning"},
        "policy": {"paths": [str(policy)]},
        # The decision log is always on (hash chain, outcome records, fsync: interval);
        # session recording is measured separately.
        "audit": {
            "instance": name,
            "decision_log": str(work / f"decisions-{name}"),
            **({"sessions": str(work / f"sessions-{name}.sqlite")} if sessions else {}),
        },
    }
    path = work / f"gateway-{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    cmd = [sys.executable, "-m", "enforcer.cli", "run", "--config", str(path), "--workers", str(workers)]
    proc = subprocess.Popen(cmd, cwd=REPO)
    wait_port(port)
    time.sleep(0.5 * workers)
    return proc, port, GatewayTokens(load_config(path).gateway_tokens)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds per client count and mode")
    ap.add_argument("--scale", type=int, default=10)
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "RESULTS.md")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="pgwarden-bench-", dir="/tmp"))
    os.chmod(work, 0o755)
    pg = LocalPostgres(work / "pg", free_port())
    procs: list[subprocess.Popen[bytes]] = []
    try:
        pg.init()
        pg.start()
        app_password = secrets.token_urlsafe(18)
        pg.psql(f"CREATE ROLE app LOGIN PASSWORD '{app_password}'; CREATE DATABASE demo OWNER app;")
        pwfile = work / "app.password"
        pwfile.write_text(app_password)
        base = {**os.environ, "PGHOST": "127.0.0.1", "PGDATABASE": "demo", "PGSSLMODE": "disable"}
        direct = {**base, "PGPORT": str(pg.port), "PGUSER": "app", "PGPASSWORD": app_password}
        subprocess.run(
            ["pgbench", "-i", "-q", "-s", str(args.scale)], env=direct, check=True, capture_output=True
        )

        targets: dict[str, dict[str, str]] = {"direct": direct}
        if shutil.which("pgbouncer"):
            bouncer, bport = start_pgbouncer(work, pg, app_password)
            procs.append(bouncer)
            targets["pgbouncer (session)"] = {
                **base,
                "PGPORT": str(bport),
                "PGUSER": "app",
                "PGPASSWORD": "x",
            }
        # The floor of any Python proxy here: bytes copied both ways on uvloop, nothing else;
        # and the same with the gateway's default busy polling.
        for label, poll_us in (
            ("plain Python forwarder", "0"),
            ("plain Python forwarder, busy polling", "200"),
        ):
            fport = free_port()
            forwarder = [
                sys.executable,
                str(REPO / "bench" / "forwarder.py"),
                str(fport),
                str(pg.port),
                poll_us,
            ]
            procs.append(subprocess.Popen(forwarder))
            wait_port(fport)
            targets[label] = {**direct, "PGPORT": str(fport)}
        # The defaults (listener.busy_poll included) unless the label says otherwise.
        gateways = [
            ("pgwarden, allow-all policy", ALLOW_ALL, 1, False, None),
            ("pgwarden, shipped policy", SHIPPED_POLICIES, 1, False, None),
            ("pgwarden, shipped policy, busy_poll: 0", SHIPPED_POLICIES, 1, False, "0"),
            ("pgwarden, shipped + session recording", SHIPPED_POLICIES, 1, True, None),
            ("pgwarden, shipped policy, 2 workers", SHIPPED_POLICIES, 2, False, None),
        ]
        for i, (label, policy, workers, sessions, busy_poll) in enumerate(gateways):
            gw, gport, tokens = start_gateway(work, pg, pwfile, workers, policy, f"g{i}", sessions, busy_poll)
            procs.append(gw)
            token = tokens.issue("bench", ["agents"], 3600)
            targets[label] = {**base, "PGPORT": str(gport), "PGUSER": "bench", "PGPASSWORD": token}

        rows = []
        commands = set()
        for clients in (1, 4):
            for mode in ("simple", "prepared"):
                # Rounds interleave the targets, and each round's ratios are to that round's direct
                # run: this VM's speed drifts by tens of percent within minutes.
                tps_of: dict[str, list[float]] = {name: [] for name in targets}
                ratios: dict[str, list[float]] = {name: [] for name in targets}
                for _ in range(args.rounds):
                    tps_direct = 0.0
                    for name, env in targets.items():
                        tps, cmd = pgbench(env, clients, mode, args.seconds)
                        commands.add(cmd)
                        if name == "direct":
                            tps_direct = tps
                        tps_of[name].append(tps)
                        ratios[name].append(tps / tps_direct)
                        print(
                            f"c={clients} {mode:8} {name:40} {tps:10.1f} tps  {tps / tps_direct:.2f}x",
                            flush=True,
                        )
                for name in targets:
                    rows.append((clients, mode, name, statistics.median(tps_of[name]), ratios[name]))
        from bench.policy_cost import measure
        from bench.relay_cost import measure as measure_relay

        costs = measure(500)
        relay_costs = measure_relay(10000)
        write_results(args, rows, sorted(commands), costs, relay_costs)
    finally:
        for p in procs:
            p.terminate()
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
        pg.stop("immediate")
        shutil.rmtree(work, ignore_errors=True)


def write_results(
    args: argparse.Namespace,
    rows: list[tuple[int, str, str, float, list[float]]],
    commands: list[str],
    costs: list[tuple[str, str, float]],
    relay_costs: list[tuple[str, str, float]],
) -> None:
    cpu = platform.processor() or platform.machine()
    lines = [
        "# Benchmark results",
        "",
        f"Produced by `.venv/bin/python bench/run.py --seconds {args.seconds} --rounds {args.rounds} "
        f"--scale {args.scale}` on "
        f"{time.strftime('%Y-%m-%d')} ({os.cpu_count()} cores, {cpu}, "
        f"Python {platform.python_version()}).",
        "Postgres, pgbench, pgbouncer and the gateway share the machine: compare the ratios, "
        "not absolute tps. See bench/README.md for how to read them.",
        "The gateway listens in plaintext on loopback like direct and pgbouncer (pgbouncer: session",
        "mode, auth_type=any) and writes its decision log. 'allow-all policy' is",
        "testdata/policies/allow_all (every statement still analysed, decided and recorded);",
        "'shipped policy' is policies/rego with its default data (user bench in group agents).",
        "'plain Python forwarder' is bench/forwarder.py: uvloop copying bytes both ways with no",
        "framing, authentication, decisions or audit, the floor of any Python proxy on this machine;",
        "'busy polling' is the same with the gateway's default listener.busy_poll (200us). Every",
        "pgwarden target polls unless its label says 'busy_poll: 0'.",
        "",
        "## pgbench -S",
        "",
        f"Each target ran {args.rounds} times, interleaved; tps is the median, the ratio is the median of",
        "each round's ratio to that round's direct run, and the range is the lowest and highest of them.",
        "",
        "| clients | mode | target | tps | ratio to direct | range |",
        "|---:|---|---|---:|---:|---|",
    ]
    for clients, mode, name, tps, ratios in rows:
        lo, mid, hi = min(ratios), statistics.median(ratios), max(ratios)
        lines.append(f"| {clients} | {mode} | {name} | {tps:.0f} | {mid:.2f} | {lo:.2f}-{hi:.2f} |")
    lines += [
        "",
        "## Per-statement cost of analysis and decision",
        "",
        "Median microseconds per call (bench/policy_cost.py, same run). 'cached' means the",
        "per-session decision cache answered; the decision record is still written.",
        "",
        "| statement | stage | µs |",
        "|---|---|---:|",
    ]
    for label, stage, us in costs:
        lines.append(f"| {label} | {stage} | {us:.1f} |")
    lines += [
        "",
        "## The gateway's own work per transaction, in-process",
        "",
        "bench/relay_cost.py (same run): the relay fed pgbench's and Postgres's bytes in a hot loop,",
        "no sockets. A real run multiplies these figures: caches are cold after every context switch.",
        "Here the decision record is copied into its segment at once; a gateway copies it after forwarding.",
        "",
        "| configuration | mode | µs per transaction |",
        "|---|---|---:|",
    ]
    for label, mode, us in relay_costs:
        lines.append(f"| {label} | {mode} | {us:.1f} |")
    lines += ["", "pgbench commands (environment selects the target):", ""]
    lines += [f"    {c}" for c in commands]
    lines.append("")
    args.out.write_text("\n".join(lines))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
