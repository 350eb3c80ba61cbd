"""The `pgwarden` command line."""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from enforcer.audit.decision_log import DecisionLogError
from enforcer.config import Config, ConfigError, load_config, parse_duration
from enforcer.policy.engine import PolicyError

if TYPE_CHECKING:
    from enforcer.identity.oidc import OIDCVerifier
    from enforcer.proxy.policy_gate import PolicyGate
    from enforcer.proxy.server import Gateway

app = typer.Typer(
    add_completion=False, no_args_is_help=True, help="pgwarden: a policy-as-code gateway for Postgres."
)
token_app = typer.Typer(no_args_is_help=True, help="Mint and manage gateway tokens.")
cert_app = typer.Typer(no_args_is_help=True, help="TLS certificates for development.")
config_app = typer.Typer(no_args_is_help=True, help="Validate configuration files.")
policy_app = typer.Typer(no_args_is_help=True, help="Work with Rego policies.")
app.add_typer(policy_app, name="policy")
app.add_typer(token_app, name="token")
app.add_typer(cert_app, name="cert")
app.add_typer(config_app, name="config")

ConfigOpt = Annotated[
    Path, typer.Option("--config", "-c", envvar="PGWARDEN_CONFIG", help="The gateway's YAML configuration.")
]


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"pgwarden: error: {message}", err=True)
    return typer.Exit(code)


def _load(path: Path) -> Config:
    try:
        return load_config(path)
    except ConfigError as exc:
        raise _fail(str(exc)) from None


def build_policy_gate(config: Config, *, worker_index: int = 0) -> PolicyGate:
    """The policy engine the configuration names, with its decision log, as a statement gate."""
    from enforcer.audit.decision_log import DecisionLog
    from enforcer.policy.engine import EmbeddedEngine, OPAEngine, PolicyEngine
    from enforcer.proxy.policy_gate import PolicyGate, choose_cache_key

    pc = config.policy
    engine: PolicyEngine
    if pc.engine == "opa":
        assert pc.opa is not None
        engine = OPAEngine(pc.opa.url, timeout=pc.opa.timeout, unix_socket=pc.opa.unix_socket)
    else:
        engine = EmbeddedEngine(list(pc.paths))
    log_path = config.audit.decision_log
    if log_path is not None and worker_index:
        log_path = log_path.with_name(f"{log_path.stem}.w{worker_index}{log_path.suffix}")
    labels = {"app": "pgwarden", "engine": engine.name, "policy_version": engine.version}
    texts = engine.texts if isinstance(engine, EmbeddedEngine) else []
    cache_key = choose_cache_key(pc.decision_cache_key, texts) if texts else "exact"
    return PolicyGate(
        engine,
        DecisionLog(log_path, labels),
        cache_ttl=pc.decision_cache_ttl,
        cache_key=cache_key,
        record_ast=config.audit.record_ast,
    )


async def _serve(config: Config, gateway: Gateway, gate: PolicyGate, oidc: OIDCVerifier | None) -> None:
    """Serve until SIGTERM; SIGHUP reloads policies and data (a broken policy keeps the old one)."""
    import logging

    from enforcer.policy.engine import EmbeddedEngine

    log = logging.getLogger("pgwarden.server")

    def reload() -> None:
        if not isinstance(gate.engine, EmbeddedEngine):
            log.info(
                "SIGHUP: the OPA engine reloads its own bundles", extra={"event": "policy_reload_skipped"}
            )
            return
        try:
            engine = EmbeddedEngine(list(config.policy.paths))
        except PolicyError as exc:
            log.error(
                "policy reload rejected, keeping version %s: %s",
                gate.engine.version,
                exc,
                extra={"event": "policy_reload_failed"},
            )
            return
        old = gate.engine.version
        gate.replace_engine(engine)
        log.info(
            "policies reloaded",
            extra={"event": "policy_reloaded", "fields": {"from": old, "to": engine.version}},
        )

    prefetch = asyncio.ensure_future(oidc.prefetch()) if oidc is not None else None  # warm, do not block
    asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, reload)
    try:
        await gateway.serve_forever()
    finally:
        if prefetch is not None:
            prefetch.cancel()
        if oidc is not None:
            await oidc.aclose()


def _run_gateway(
    config: Config, *, worker_index: int = 0, worker_count: int = 1, run_dir: Path | None = None
) -> None:
    import uvloop

    from enforcer import logs
    from enforcer.identity.gateway_tokens import GatewayTokens
    from enforcer.identity.router import IssuerRouter
    from enforcer.proxy.server import Gateway

    logs.configure(config.logging.level, config.logging.format)
    # The gateway allocates many short-lived, acyclic objects per statement (parse trees, documents);
    # with CPython's default thresholds the cyclic collector then runs every few statements and walks
    # every cached analysis. Freeze what start-up built and collect far less often (measured: about
    # +30% pgbench tps through the gateway).
    gc.collect()
    gc.freeze()
    gc.set_threshold(100_000, 50, 100)
    try:
        tokens = GatewayTokens(config.gateway_tokens) if config.gateway_tokens is not None else None
    except ValueError as exc:
        raise _fail(str(exc)) from None
    oidc = None
    if config.identity.oidc:
        from enforcer.identity.oidc import OIDCVerifier

        try:
            oidc = OIDCVerifier(list(config.identity.oidc))
        except ValueError as exc:
            raise _fail(str(exc)) from None
    authenticator = IssuerRouter(tokens, oidc)
    try:
        gate = build_policy_gate(config, worker_index=worker_index)
    except (PolicyError, DecisionLogError) as exc:
        raise _fail(str(exc)) from None
    gateway = Gateway(
        config,
        authenticator,
        gate,
        worker_index=worker_index,
        worker_count=worker_count,
        run_dir=run_dir,
        reuse_port=worker_count > 1,
    )
    try:
        uvloop.run(_serve(config, gateway, gate, oidc))
    except OSError as exc:
        raise _fail(
            f"cannot listen on {config.listener.host}:{config.listener.port}: {exc.strerror}"
        ) from None


@app.command()
def run(
    config: ConfigOpt,
    workers: Annotated[
        int, typer.Option(min=1, max=64, help="Processes sharing the port (SO_REUSEPORT).")
    ] = 1,
) -> None:
    """Run the gateway."""
    cfg = _load(config)
    env_index = os.environ.get("PGWARDEN_WORKER_INDEX")
    if env_index is not None:
        _run_gateway(
            cfg,
            worker_index=int(env_index),
            worker_count=int(os.environ["PGWARDEN_WORKER_COUNT"]),
            run_dir=Path(os.environ["PGWARDEN_RUN_DIR"]),
        )
        return
    if workers == 1:
        _run_gateway(cfg)
        return
    _supervise(config, workers)


def _supervise(config: Path, workers: int) -> None:
    """Start N worker processes on one port and forward SIGTERM/SIGINT to them."""
    from enforcer.proxy.server import worker_environment

    run_dir = Path(tempfile.mkdtemp(prefix="pgwarden-run-"))
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "enforcer.cli", "run", "--config", str(config)],
            env=worker_environment(run_dir, i, workers),
        )
        for i in range(workers)
    ]

    def forward(signum: int, _frame: object) -> None:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGHUP, forward)
    codes = [p.wait() for p in procs]
    bad = [c for c in codes if c not in (0, -signal.SIGTERM, -signal.SIGINT)]
    if bad:
        raise typer.Exit(1)


@app.command()
def demo(
    directory: Annotated[
        Path | None, typer.Option("--dir", help="Where the demo keeps its cluster, keys and config.")
    ] = None,
    port: Annotated[int, typer.Option(help="Gateway port.")] = 6432,
    subject: Annotated[str, typer.Option(help="Identity of the demo token.")] = "demo-agent",
) -> None:
    """Start a local Postgres with demo data and the gateway in front of it (the embedded default)."""
    from enforcer.demo import default_demo_dir, prepare_demo
    from enforcer.identity.gateway_tokens import GatewayTokens
    from enforcer.localpg import LocalPostgresError

    root = directory or default_demo_dir()
    typer.echo(f"pgwarden demo: setting up in {root} (first run takes a few seconds) ...")
    try:
        setup = prepare_demo(root, gateway_port=port)
    except LocalPostgresError as exc:
        raise _fail(str(exc)) from None
    cfg = _load(setup.config_path)
    assert cfg.gateway_tokens is not None  # the demo configuration always has them
    token = GatewayTokens(cfg.gateway_tokens).issue(subject, ["agents"], parse_duration("12h", "ttl"))
    token_file = setup.root / "demo.token"
    token_file.write_text(token + "\n")
    os.chmod(token_file, 0o600)
    typer.echo(
        "\nThe gateway is starting. In another terminal, connect through it with:\n\n"
        f'  PGPASSWORD="$(cat {token_file})" psql "host=127.0.0.1 port={port} dbname=demo '
        f'user={subject} sslmode=require"\n\n'
        f"Postgres (demo data) listens on 127.0.0.1:{setup.pg.port}; configuration: {setup.config_path}\n"
        "Stop with Ctrl-C (Postgres is stopped too).\n"
    )
    try:
        _run_gateway(cfg)
    finally:
        setup.pg.stop()


@token_app.command("issue")
def token_issue(
    config: ConfigOpt,
    subject: Annotated[str, typer.Option(help="The identity (the client connects with user=<subject>).")],
    groups: Annotated[str, typer.Option(help="Comma-separated groups.")] = "",
    ttl: Annotated[str, typer.Option(help="Lifetime, e.g. 15m (at most gateway_tokens.max_ttl).")] = "15m",
) -> None:
    """Mint a short-lived gateway token and print it."""
    from enforcer.identity.gateway_tokens import GatewayTokens

    cfg = _load(config)
    if cfg.gateway_tokens is None:
        raise _fail(f"{config} has no gateway_tokens section, so this gateway does not accept its own tokens")
    try:
        seconds = parse_duration(ttl, "--ttl")
        tok = GatewayTokens(cfg.gateway_tokens).issue(
            subject, [g.strip() for g in groups.split(",") if g.strip()], seconds
        )
    except (ValueError, ConfigError) as exc:
        raise _fail(str(exc)) from None
    typer.echo(tok)


@token_app.command("keygen")
def token_keygen(
    path: Annotated[Path, typer.Argument(help="Where to write the Ed25519 private key.")],
) -> None:
    """Write a new token signing key (Ed25519, PEM, mode 0600)."""
    from enforcer.identity.gateway_tokens import generate_key

    if path.exists():
        raise _fail(f"{path} exists; remove it first (rotating the key invalidates every token)")
    generate_key(path)
    typer.echo(f"wrote {path}")


@cert_app.command("dev")
def cert_dev(
    out_dir: Annotated[
        Path, typer.Option("--out-dir", help="Directory for server.crt and server.key.")
    ] = Path("tls"),
    host: Annotated[list[str] | None, typer.Option(help="Host names / IPs for the certificate.")] = None,
    days: Annotated[int, typer.Option(min=1, max=825)] = 30,
) -> None:
    """Write a self-signed certificate for a development listener."""
    from enforcer.proxy.tls import write_dev_certificate

    cert, key = out_dir / "server.crt", out_dir / "server.key"
    write_dev_certificate(cert, key, host or ["localhost", "127.0.0.1", "::1"], days)
    typer.echo(f"wrote {cert} and {key} (self-signed, {days} days; for development only)")


@config_app.command("check")
def config_check(config: Annotated[Path, typer.Argument(help="The YAML file to validate.")]) -> None:
    """Validate a configuration file and report the first problem."""
    cfg = _load(config)
    typer.echo(f"{config}: ok ({len(cfg.connections)} connection(s): {', '.join(sorted(cfg.connections))})")


@policy_app.command("test")
def policy_test(
    paths: Annotated[list[Path], typer.Argument(help="Policy directories or files (with *_test.rego).")],
    coverage: Annotated[bool, typer.Option("--coverage", help="Report rule coverage per file.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="List every test.")] = False,
) -> None:
    """Run Rego unit tests (opa test conventions) on the embedded engine, and `opa test` if installed."""
    from enforcer.policy.rego_tests import run_policy_tests

    raise typer.Exit(run_policy_tests(paths, coverage=coverage, verbose=verbose))


@app.command()
def explain(
    sql: Annotated[str, typer.Argument(help="The SQL to decide on (not run).")],
    subject: Annotated[str, typer.Option("--as", help="Identity subject.")] = "ci-bot",
    groups: Annotated[str, typer.Option(help="Comma-separated groups.")] = "agents",
    connection: Annotated[str, typer.Option(help="Upstream connection name.")] = "demo",
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", envvar="PGWARDEN_CONFIG", help="Use this config's policy."),
    ] = None,
    policies: Annotated[
        list[Path] | None, typer.Option("--policies", help="Policy directories (default: the shipped ones).")
    ] = None,
    show_ast: Annotated[bool, typer.Option("--ast", help="Include the full AST in the input shown.")] = False,
) -> None:
    """Print the policy input document and the decision for a statement, without running it."""
    import json

    from enforcer.audit.decision_log import DecisionLog
    from enforcer.config import SHIPPED_POLICIES
    from enforcer.identity import Identity
    from enforcer.policy.engine import EmbeddedEngine, OPAEngine, PolicyEngine
    from enforcer.proxy.gate import SessionContext
    from enforcer.proxy.policy_gate import PolicyGate
    from enforcer.proxy.policy_gate import explain as explain_sql

    engine: PolicyEngine
    try:
        if config is not None and not policies:
            cfg = _load(config)
            if cfg.policy.engine == "opa" and cfg.policy.opa is not None:
                engine = OPAEngine(
                    cfg.policy.opa.url, timeout=cfg.policy.opa.timeout, unix_socket=cfg.policy.opa.unix_socket
                )
            else:
                engine = EmbeddedEngine(list(cfg.policy.paths))
        else:
            engine = EmbeddedEngine(list(policies or [SHIPPED_POLICIES]))
    except PolicyError as exc:
        raise _fail(str(exc)) from None
    identity = Identity(
        subject, "pgwarden-explain", tuple(g for g in groups.split(",") if g), "explain", time.time() + 900
    )
    ctx = SessionContext("explain", identity, connection, connection, "cli", False)
    gate = PolicyGate(engine, DecisionLog(None))
    results = asyncio.run(explain_sql(gate, ctx, sql))
    worst = "allow"
    for input_doc, decision in results:
        if not show_ast:
            input_doc.get("statement", {}).pop("ast", None)
        typer.echo(
            json.dumps({"input": input_doc, "decision": decision.to_document()}, indent=2, default=str)
        )
        if decision.action != "allow":
            worst = decision.action
    typer.echo(f"decision: {worst} (policy version {engine.version})", err=True)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
