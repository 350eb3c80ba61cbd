"""The `pgwarden` command line."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer

from enforcer.audit.decision_log import DecisionLog, DecisionLogError
from enforcer.config import Config, ConfigError, load_config, parse_duration
from enforcer.policy.engine import PolicyError

if TYPE_CHECKING:
    from enforcer.api.client import ApprovalsClient
    from enforcer.api.server import ApiServer
    from enforcer.approvals.service import ApprovalService
    from enforcer.audit.decision_log import DecisionLog
    from enforcer.audit.sessions import SessionStore
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
audit_app = typer.Typer(no_args_is_help=True, help="Verify and query the audit trail.")
sessions_app = typer.Typer(no_args_is_help=True, help="List, show and replay recorded sessions.")
app.add_typer(config_app, name="config")
app.add_typer(audit_app, name="audit")
app.add_typer(sessions_app, name="sessions")
approvals_app = typer.Typer(
    no_args_is_help=True, help="List, show, approve and reject held statements (through the gateway's API)."
)
app.add_typer(approvals_app, name="approvals")

ConfigOpt = Annotated[
    Path, typer.Option("--config", "-c", envvar="PGWARDEN_CONFIG", help="The gateway's YAML configuration.")
]
OptionalConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", "-c", envvar="PGWARDEN_CONFIG", help="The gateway's YAML configuration."),
]
LogDirOpt = Annotated[
    Path | None, typer.Option("--dir", help="The decision log directory (audit.decision_log.dir).")
]


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"pgwarden: error: {message}", err=True)
    return typer.Exit(code)


def _load(path: Path) -> Config:
    try:
        return load_config(path)
    except ConfigError as exc:
        raise _fail(str(exc)) from None


def open_decision_log(config: Config, labels: dict[str, str], *, worker_index: int = 0) -> DecisionLog:
    """This process's decision log stream (``<instance>-w<worker>``), or an in-memory one."""
    from enforcer.audit.decision_log import DecisionLog

    dl = config.audit.decision_log
    if dl is None:
        return DecisionLog(None, labels=labels)
    return DecisionLog(
        dl.dir,
        stream=f"{config.audit.instance}-w{worker_index}",
        labels=labels,
        rotate_size=dl.rotate_size,
        fsync=dl.fsync,
        fsync_interval=dl.fsync_interval,
        retention=dl.retention,
        fail_open=dl.on_failure == "forward",
    )


def build_policy_gate(config: Config, *, worker_index: int = 0) -> PolicyGate:
    """The policy engine the configuration names, with its decision log, as a statement gate."""
    from enforcer.policy.engine import EmbeddedEngine, OPAEngine, PolicyEngine
    from enforcer.proxy.policy_gate import PolicyGate, choose_cache_key

    pc = config.policy
    engine: PolicyEngine
    if pc.engine == "opa":
        assert pc.opa is not None
        engine = OPAEngine(pc.opa.url, timeout=pc.opa.timeout, unix_socket=pc.opa.unix_socket)
    else:
        engine = EmbeddedEngine(list(pc.paths))
    labels = {
        "app": "pgwarden",
        "engine": engine.name,
        "policy_version": engine.version,
        "instance": config.audit.instance,
    }
    decision_log = open_decision_log(config, labels, worker_index=worker_index)
    masking = None
    if config.masking is not None:
        from enforcer.proxy.masking_gate import MaskingEnforcer

        masking = MaskingEnforcer(config.masking, config.connections)
    texts = engine.texts if isinstance(engine, EmbeddedEngine) else []
    cache_key = choose_cache_key(pc.decision_cache_key, texts) if texts else "exact"
    return PolicyGate(
        engine,
        decision_log,
        cache_ttl=pc.decision_cache_ttl,
        cache_key=cache_key,
        record_ast=config.audit.record_ast,
        masking=masking,
    )


def _copy_soon(decision_log: DecisionLog) -> Callable[[], None]:
    """The decision log's hook: copy journalled records into the segment on the loop's next
    turn, that is right after the statement that stored them was forwarded."""
    loop = asyncio.get_running_loop()
    loop_thread = threading.get_ident()

    def copy() -> None:
        try:
            decision_log.write_pending()
        except DecisionLogError as exc:  # the records are in the journal; the chain now refuses
            logging.getLogger("pgwarden.audit").error("%s", exc, extra={"event": "decision_log_failed"})

    def schedule() -> None:
        if threading.get_ident() == loop_thread:
            loop.call_soon(copy)
        else:  # an approval decided on another thread
            loop.call_soon_threadsafe(copy)

    return schedule


async def _serve(config: Config, gateway: Gateway, gate: PolicyGate, oidc: OIDCVerifier | None) -> None:
    """Serve until SIGTERM; SIGHUP reloads policies and data (a broken policy keeps the old one)."""
    from enforcer.policy.engine import EmbeddedEngine

    log = logging.getLogger("pgwarden.server")

    reloading = asyncio.Lock()

    async def reload(why: str) -> None:
        if not isinstance(gate.engine, EmbeddedEngine):
            log.info(
                "%s: the OPA engine reloads its own bundles", why, extra={"event": "policy_reload_skipped"}
            )
            return
        async with reloading:
            try:
                # On the loop's thread: a regorus engine may only be used by the thread that made it.
                engine = EmbeddedEngine(list(config.policy.paths))
            except PolicyError as exc:
                log.error(
                    "policy reload (%s) rejected, keeping version %s: %s",
                    why,
                    gate.engine.version,
                    exc,
                    extra={"event": "policy_reload_failed"},
                )
                return
            old = gate.engine.version
            if engine.version == old:
                return
            gate.replace_engine(engine)
            log.info(
                "policies reloaded (%s)",
                why,
                extra={"event": "policy_reloaded", "fields": {"from": old, "to": engine.version}},
            )

    def policy_files() -> tuple[tuple[str, int, int], ...]:
        found = []
        for root in config.policy.paths:
            for path in sorted(root.rglob("*")):
                if path.suffix in (".rego", ".json", ".yaml", ".yml") and path.is_file():
                    st = path.stat()
                    found.append((str(path), st.st_mtime_ns, st.st_size))
        return tuple(found)

    async def watch_policies() -> None:
        """Reload when a policy or data file changes (a broken edit keeps the working version)."""
        seen = await asyncio.to_thread(policy_files)
        while True:
            await asyncio.sleep(config.policy.watch_interval)
            try:
                now = await asyncio.to_thread(policy_files)
            except OSError:
                continue  # a file vanished mid-scan (an editor's rename): look again next time
            if now != seen:
                seen = now
                await reload("policy files changed")

    async def flush_decision_log() -> None:
        # Outcome records wait in memory for at most this long; fsync: interval also covers a
        # gateway that goes quiet after a burst.
        log_ = gate.decision_log
        last_sync = asyncio.get_running_loop().time()
        while True:
            await asyncio.sleep(0.2)
            try:
                log_.write_pending()
                if (
                    log_.fsync_mode == "interval"
                    and asyncio.get_running_loop().time() - last_sync >= log_.fsync_interval
                ):
                    last_sync = asyncio.get_running_loop().time()
                    await asyncio.to_thread(log_.flush)
            except DecisionLogError as exc:
                log.error("%s", exc, extra={"event": "decision_log_failed"})

    prefetch = asyncio.ensure_future(oidc.prefetch()) if oidc is not None else None  # warm, do not block
    flusher = None
    if gate.decision_log.directory:
        gate.decision_log.sync_in_background = True
        gate.decision_log.copy_soon = _copy_soon(gate.decision_log)
        flusher = asyncio.ensure_future(flush_decision_log())
    asyncio.get_running_loop().add_signal_handler(
        signal.SIGHUP, lambda: asyncio.ensure_future(reload("SIGHUP"))
    )
    watcher = None
    if config.policy.watch_interval > 0 and config.policy.engine == "embedded":
        watcher = asyncio.ensure_future(watch_policies())
    api = None
    approvals = gateway.approvals
    try:
        if approvals is not None:
            await approvals.start()
            if approvals.notifier is not None:
                await approvals.notifier.start()
        api = await _start_api(config, gateway)
        await gateway.serve_forever()
    finally:
        if api is not None:
            await _stop_api(api)
        if approvals is not None:
            await approvals.stop()
            if approvals.notifier is not None:
                await approvals.notifier.stop()
        if prefetch is not None:
            prefetch.cancel()
        if flusher is not None:
            flusher.cancel()
        if watcher is not None:
            watcher.cancel()
        if oidc is not None:
            await oidc.aclose()
        if gateway.recorder is not None:
            await asyncio.to_thread(gateway.recorder.close)
        if gate.masking is not None:
            await gate.masking.close()
        gate.decision_log.close()


def build_approvals(config: Config, gate: PolicyGate, *, worker_index: int = 0) -> ApprovalService | None:
    """The approval service (``approvals`` in the configuration), attached to the policy gate."""
    ac = config.approvals
    if ac is None:
        return None
    from enforcer.approvals.notify import Notifier
    from enforcer.approvals.service import ApprovalService, ApprovalSettings
    from enforcer.approvals.store import ApprovalStore, ApprovalStoreError

    try:
        store = ApprovalStore(ac.store)
        notifier = None
        if ac.mqtt is not None or ac.webhooks:
            notifier = Notifier(mqtt=ac.mqtt, webhooks=ac.webhooks, public_url=ac.public_url)
    except (ApprovalStoreError, ConfigError) as exc:
        raise _fail(str(exc)) from None
    settings = ApprovalSettings(
        default_timeout=ac.timeout,
        validity=ac.validity,
        poll_interval=ac.poll_interval,
        public_url=ac.public_url,
        instance=f"{config.audit.instance}-w{worker_index}",
    )
    service = ApprovalService(
        store,
        settings,
        decision_log=gate.decision_log if gate.decision_log.directory is not None else None,
        notifier=notifier,
    )
    gate.approvals = service
    return service


async def _start_api(config: Config, gateway: Gateway) -> ApiServer | None:
    """The auditor pages and JSON API (``api`` in the configuration), served by worker 0 only."""
    import ipaddress
    import logging

    from enforcer.api.app import create_app
    from enforcer.api.server import serve_api

    if config.api is None or gateway.worker_index != 0:
        return None
    host, port = config.api.listen_host, config.api.listen_port

    async def readiness() -> list[str]:
        problems = []
        if not gateway.ports or gateway.stopping:
            problems.append("the listener is not accepting connections")
        log = gateway.decision_log
        if log is not None and not log.writable:
            problems.append("the decision log cannot be written")
        if gateway.approvals is not None:
            try:
                await asyncio.to_thread(gateway.approvals.store.state_of, ["readyz"])
            except Exception as exc:
                problems.append(f"the approval store does not answer: {exc}")
        if gateway.recorder is not None and gateway.recorder.failing:
            problems.append("the session store does not accept writes")
        return problems

    app = create_app(
        store_url=config.audit.sessions_store,
        authenticator=gateway.authenticator,
        auditor_groups=config.api.auditor_groups,
        approvals=gateway.approvals,
        readiness=readiness,
    )
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        logging.getLogger("pgwarden.api").warning(
            "the API serves plain HTTP on %s and auditors send it tokens; put a TLS-terminating proxy "
            "in front of it",
            host,
            extra={"event": "api_not_loopback"},
        )
    try:
        return await serve_api(app, host, port)
    except OSError as exc:
        raise _fail(f"api.listen: cannot listen on {host}:{port}: {exc.strerror or exc}") from None


async def _stop_api(api: ApiServer) -> None:
    from enforcer.api.app import close_app

    await api.stop()
    await asyncio.to_thread(close_app, api.app)


def _run_gateway(
    config: Config, *, worker_index: int = 0, worker_count: int = 1, run_dir: Path | None = None
) -> None:
    import uvloop

    from enforcer import logs
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
        authenticator = IssuerRouter.from_config(config)
    except ValueError as exc:
        raise _fail(str(exc)) from None
    oidc = authenticator.oidc
    try:
        gate = build_policy_gate(config, worker_index=worker_index)
    except (PolicyError, DecisionLogError) as exc:
        raise _fail(str(exc)) from None
    approvals = build_approvals(config, gate, worker_index=worker_index)
    recorder = None
    if config.audit.sessions is not None:
        from enforcer.audit.sessions import SessionRecorder, SessionStore, StoreError

        try:
            recorder = SessionRecorder(SessionStore(config.audit.sessions.store))
        except StoreError as exc:
            raise _fail(str(exc)) from None
    gateway = Gateway(
        config,
        authenticator,
        gate,
        recorder=recorder,
        decision_log=gate.decision_log if gate.decision_log.directory is not None else None,
        approvals=approvals,
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
    api_port: Annotated[int, typer.Option(help="Port of the session and approval pages.")] = 8432,
    subject: Annotated[str, typer.Option(help="Identity of the demo token.")] = "demo-agent",
) -> None:
    """Start a local Postgres with demo data and the gateway in front of it (the embedded default)."""
    from enforcer.demo import default_demo_dir, prepare_demo
    from enforcer.identity.gateway_tokens import GatewayTokens
    from enforcer.localpg import LocalPostgresError

    root = directory or default_demo_dir()
    typer.echo(f"pgwarden demo: setting up in {root} (first run takes a few seconds) ...")
    try:
        setup = prepare_demo(root, gateway_port=port, api_port=api_port)
    except LocalPostgresError as exc:
        raise _fail(str(exc)) from None
    cfg = _load(setup.config_path)
    assert cfg.gateway_tokens is not None  # the demo configuration always has them
    token = GatewayTokens(cfg.gateway_tokens).issue(subject, ["agents"], parse_duration("12h", "ttl"))
    token_file = setup.root / "demo.token"
    token_file.write_text(token + "\n")
    os.chmod(token_file, 0o600)
    # A second person, who may approve the agent's writes and read the recorded sessions.
    reviewer = GatewayTokens(cfg.gateway_tokens).issue("demo-reviewer", ["dba", "auditors"], 12 * 3600)
    reviewer_file = setup.root / "reviewer.token"
    reviewer_file.write_text(reviewer + "\n")
    os.chmod(reviewer_file, 0o600)
    api = f"http://127.0.0.1:{setup.api_port}"
    typer.echo(
        "\nThe gateway is starting. In another terminal, connect through it as the agent with:\n\n"
        f'  PGPASSWORD="$(cat {token_file})" psql "host=127.0.0.1 port={port} dbname=demo '
        f'user={subject} sslmode=require"\n\n'
        "Try: SELECT * FROM customers;  (labelled columns come back masked)\n"
        "     UPDATE products SET price = 99 WHERE id = 1;  (held until someone approves it)\n"
        "     DELETE FROM orders;  (denied)\n\n"
        f"Approve or reject at {api}/approvals, and browse or replay sessions at {api}/sessions,\n"
        f"signing in with the reviewer's token ({reviewer_file}); or from a shell:\n"
        f'  PGWARDEN_TOKEN="$(cat {reviewer_file})" pgwarden approvals list -c {setup.config_path}\n\n'
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


@policy_app.command("check-config")
def policy_check_config(
    configs: Annotated[list[Path], typer.Argument(help="Gateway configuration files (YAML).")],
    policies: Annotated[
        Path | None,
        typer.Option("--policies", help="Rules directory (conftest layout; default: policies/conftest)."),
    ] = None,
    data: Annotated[
        list[Path] | None,
        typer.Option("--data", help="Policy data to check instead of the configuration's policy.paths."),
    ] = None,
) -> None:
    """Review configurations with conftest-style rules (deny/warn); exit 1 on any deny.

    Also runs `conftest test` when it is on PATH and reports any disagreement.
    """
    from enforcer.policy.config_check import (
        SHIPPED_CONFIG_RULES,
        ConfigCheckError,
        check_configs,
        write_report,
    )

    try:
        report = check_configs(configs, policies or SHIPPED_CONFIG_RULES, data=data)
    except ConfigCheckError as exc:
        raise _fail(str(exc)) from None
    write_report(report, sys.stdout)
    raise typer.Exit(0 if report.ok else 1)


@policy_app.command("replay")
def policy_replay(
    policies: Annotated[
        list[Path], typer.Option("--policies", help="The candidate policy directories (like policy.paths).")
    ],
    config: OptionalConfigOpt = None,
    directory: LogDirOpt = None,
    since: Annotated[str | None, typer.Option(help="At or after: ISO time or a duration ago (7d).")] = None,
    until: Annotated[str | None, typer.Option(help="At or before: ISO time or a duration ago.")] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="Only the newest N decisions.")] = None,
    examples: Annotated[int, typer.Option(min=0, help="Changed decisions to show.")] = 10,
    output: Annotated[Literal["table", "json"], typer.Option("--format")] = "table",
    fail_on_change: Annotated[
        bool, typer.Option("--fail-on-change", help="Exit 1 if any decision would change.")
    ] = False,
) -> None:
    """Re-decide recorded decisions under candidate policies and report what would change."""
    from enforcer.audit.timespec import point_in_time
    from enforcer.policy.engine import EmbeddedEngine
    from enforcer.policy.replay import replay_log, write_report
    from enforcer.proxy.policy_gate import pinned_setting_decision

    log_dir = _decision_log_dir(config, directory)
    try:
        window = [point_in_time(t) if t else None for t in (since, until)]
    except ValueError as exc:
        raise _fail(f"--since/--until: {exc}") from None
    try:
        engine = EmbeddedEngine(list(policies))
        report = replay_log(
            log_dir,
            engine,
            policies=policies,
            since=window[0],
            until=window[1],
            limit=limit,
            examples=examples,
            gateway_rule=pinned_setting_decision,
        )
    except (PolicyError, FileNotFoundError) as exc:
        raise _fail(str(exc)) from None
    write_report(report, sys.stdout, output)
    if fail_on_change and report.changed:
        raise typer.Exit(1)


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


@app.command()
def mcp(
    config: ConfigOpt,
    transport: Annotated[
        Literal["stdio", "http"],
        typer.Option(help="stdio (one agent, token in PGWARDEN_TOKEN) or http (bearer token per request)."),
    ] = "stdio",
    connection: Annotated[
        str | None, typer.Option(help="Upstream connection for the agents' SQL (default: the only one).")
    ] = None,
    socket: Annotated[
        Path | None, typer.Option("--socket", help="The gateway's MCP socket (default: listener.mcp_socket).")
    ] = None,
    listen: Annotated[str, typer.Option(help="host:port to serve with --transport http.")] = "127.0.0.1:8765",
    max_rows: Annotated[int, typer.Option(min=1, max=100_000, help="Most rows a query returns.")] = 500,
) -> None:
    """Serve MCP tools to agents; their SQL runs through the gateway like any client's (docs/mcp.md)."""
    from enforcer.mcp.server import McpOptions, McpSetupError
    from enforcer.mcp.server import run as run_mcp

    cfg = _load(config)
    options = McpOptions(
        transport=transport, connection=connection, socket=socket, listen=listen, max_rows=max_rows
    )
    try:
        run_mcp(cfg, options)
    except McpSetupError as exc:
        raise _fail(str(exc)) from None


# ---------------------------------------------------------------------- audit trail


def _decision_log_dir(config: Path | None, directory: Path | None) -> Path:
    if directory is not None:
        return directory
    if config is None:
        raise _fail("name the decision log with --dir DIR or the gateway's --config FILE")
    dl = _load(config).audit.decision_log
    if dl is None:
        raise _fail(f"{config} has no audit.decision_log; the gateway keeps no decision log")
    return dl.dir


@audit_app.command("verify")
def audit_verify(
    config: OptionalConfigOpt = None,
    directory: LogDirOpt = None,
) -> None:
    """Check every hash chain of the decision log; name the first bad record (exit 1)."""
    from enforcer.audit.verify import verify_directory

    report = verify_directory(_decision_log_dir(config, directory))
    if report.problem:
        typer.echo(f"FAIL {report.problem}")
    for s in report.streams:
        if s.ok:
            state = "closed" if s.closed else "open (gateway running, or it stopped without closing)"
            anchored = f", anchored at segment {s.anchored_from}" if s.anchored_from else ""
            typer.echo(
                f"ok   {s.stream}: {s.records} records ({s.decisions} decisions) in {s.segments} segment(s), "
                f"seq {s.first_seq}..{s.last_seq}{anchored}, {state}"
            )
        else:
            typer.echo(f"FAIL {s.stream}: {s.problem}")
        for note in s.notes:
            typer.echo(f"     note: {note}")
    if not report.ok:
        raise typer.Exit(1)


@audit_app.command("recover")
def audit_recover(
    config: OptionalConfigOpt = None,
    directory: LogDirOpt = None,
) -> None:
    """Append the records a stopped gateway left in its journal to its last segment.

    A gateway stores each decision record in its stream's journal before it forwards the
    statement, and copies it into the segment right after; killed in between, it leaves
    records only in the journal. It recovers them itself when it starts again; this does
    the same for a gateway that stays stopped (exit 1 if a stream could not be recovered).
    """
    from enforcer.audit.decision_log import recover_stream

    root = _decision_log_dir(config, directory)
    if not root.is_dir():
        raise _fail(f"{root} is not a directory; pass the decision log directory (audit.decision_log.dir)")
    failed = False
    for stream_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        try:
            count = recover_stream(stream_dir)
        except (DecisionLogError, OSError) as exc:
            typer.echo(f"FAIL {stream_dir.name}: {exc}")
            failed = True
            continue
        what = f"recovered {count} record(s) from the journal" if count else "nothing to recover"
        typer.echo(f"ok   {stream_dir.name}: {what}")
    if failed:
        raise typer.Exit(1)


@audit_app.command("query")
def audit_query(
    config: OptionalConfigOpt = None,
    directory: LogDirOpt = None,
    identity: Annotated[str | None, typer.Option(help="Only decisions on this identity subject.")] = None,
    action: Annotated[
        Literal["allow", "deny", "mask", "review"] | None,
        typer.Option(help="Only decisions with this action."),
    ] = None,
    relation: Annotated[
        str | None, typer.Option(help="Only statements on this table: name or schema.name.")
    ] = None,
    session: Annotated[str | None, typer.Option(help="Only this session (id or a prefix).")] = None,
    connection: Annotated[str | None, typer.Option(help="Only this upstream connection.")] = None,
    since: Annotated[str | None, typer.Option(help="At or after: ISO time or a duration ago (7d).")] = None,
    until: Annotated[str | None, typer.Option(help="At or before: ISO time or a duration ago.")] = None,
    limit: Annotated[
        int | None, typer.Option(min=1, help="At most this many, newest first (default 100).")
    ] = None,
    sql: Annotated[
        str | None,
        typer.Option(help="Run this read-only query over the views decisions, outcomes and records instead."),
    ] = None,
    output: Annotated[Literal["table", "json", "csv"], typer.Option("--format")] = "table",
) -> None:
    """Decisions from the decision log, filtered, or any SQL query over it (DuckDB)."""
    from enforcer.audit.query import (
        TABLE_COLUMNS,
        AuditDatabase,
        DecisionFilter,
        QueryError,
        parse_time,
        write_result,
    )

    filters: dict[str, object] = {
        "--identity": identity,
        "--action": action,
        "--relation": relation,
        "--session": session,
        "--connection": connection,
        "--since": since,
        "--until": until,
        "--limit": limit,
    }
    if sql is not None and any(v is not None for v in filters.values()):
        given = ", ".join(k for k, v in filters.items() if v is not None)
        raise _fail(f"--sql cannot be combined with {given}; put the conditions in the query")
    log_dir = _decision_log_dir(config, directory)
    try:
        with AuditDatabase(log_dir) as db:
            if db.unreadable_lines:
                typer.echo(
                    f"pgwarden: warning: skipped {db.unreadable_lines} unreadable line(s) of {log_dir} "
                    "(a torn last record, or damage: run `pgwarden audit verify`)",
                    err=True,
                )
            if sql is not None:
                result = db.sql(sql)
            else:
                result = db.decisions(
                    DecisionFilter(
                        identity=identity,
                        action=action,
                        relation=relation,
                        session=session,
                        connection=connection,
                        since=parse_time(since, "--since") if since else None,
                        until=parse_time(until, "--until") if until else None,
                        limit=100 if limit is None else limit,
                    )
                )
                if output == "table":
                    result = result.project(TABLE_COLUMNS)
    except QueryError as exc:
        raise _fail(str(exc)) from None
    write_result(result, output, sys.stdout)


def _session_store(config: Path | None, store: str | None) -> SessionStore:
    from enforcer.audit.sessions import SessionStore, StoreError
    from enforcer.store_url import is_postgres_url

    if store is None:
        if config is None:
            raise _fail("name the session store with --store PATH|URL or the gateway's --config FILE")
        store = _load(config).audit.sessions_store
        if store is None:
            raise _fail(f"{config} has no audit.sessions; this gateway does not record sessions")
    elif not is_postgres_url(store) and not Path(store.removeprefix("sqlite:")).exists():
        raise _fail(f"no session store at {store}")
    try:
        return SessionStore(store)
    except StoreError as exc:
        raise _fail(str(exc)) from None


StoreOpt = Annotated[
    str | None, typer.Option("--store", help="The session store: a SQLite file or a postgresql:// URL.")
]


@sessions_app.command("list")
def sessions_list(
    config: OptionalConfigOpt = None,
    store: StoreOpt = None,
    identity: Annotated[str | None, typer.Option(help="Only sessions of this subject.")] = None,
    connection: Annotated[str | None, typer.Option(help="Only sessions on this connection.")] = None,
    since: Annotated[
        str | None, typer.Option(help="Started at or after: ISO time or a duration (7d).")
    ] = None,
    until: Annotated[str | None, typer.Option(help="Started before: ISO time or a duration.")] = None,
    outcome: Annotated[
        str | None, typer.Option(help="ok, refused (a statement was refused) or error.")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many, newest first.")] = 50,
    output: Annotated[str, typer.Option("--format", help="table or json.")] = "table",
) -> None:
    """Recorded sessions, newest first."""
    from enforcer.audit.replay import parse_when, render_session_list
    from enforcer.audit.sessions import StoreError

    s = _session_store(config, store)
    try:
        rows = s.list_sessions(
            identity=identity,
            connection=connection,
            since=parse_when(since, "--since") if since else None,
            until=parse_when(until, "--until") if until else None,
            outcome=outcome,
            limit=limit,
        )
    except (StoreError, ValueError) as exc:
        raise _fail(str(exc)) from None
    if output == "json":
        typer.echo(json.dumps(rows, indent=2))
    else:
        render_session_list(rows)


def _recorded_session(
    config: Path | None, store: str | None, session_id: str
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A recorded session (id or unique prefix) and its statements, or a CLI error naming the fix."""
    from enforcer.audit.sessions import StoreError

    s = _session_store(config, store)
    try:
        session = s.get_session(session_id)
    except StoreError as exc:
        raise _fail(str(exc)) from None
    if session is None:
        raise _fail(f"no recorded session {session_id!r}; `pgwarden sessions list` shows them", code=1)
    return session, s.statements(session["id"])


@sessions_app.command("show")
def sessions_show(
    session_id: Annotated[str, typer.Argument(help="The session id (or a unique prefix).")],
    config: OptionalConfigOpt = None,
    store: StoreOpt = None,
    output: Annotated[str, typer.Option("--format", help="text or json.")] = "text",
) -> None:
    """One session: who, from where, and every statement with its decision and result."""
    from enforcer.audit.replay import render_session

    session, statements = _recorded_session(config, store, session_id)
    if output == "json":
        typer.echo(json.dumps({"session": session, "statements": statements}, indent=2))
    else:
        render_session(session, statements, speed=None)


@sessions_app.command("replay")
def sessions_replay(
    session_id: Annotated[str, typer.Argument(help="The session id (or a unique prefix).")],
    config: OptionalConfigOpt = None,
    store: StoreOpt = None,
    speed: Annotated[str, typer.Option(help="1 (original pacing), 10 (ten times faster) or max.")] = "1",
) -> None:
    """Play a session back on the terminal with its original pacing."""
    from enforcer.audit.replay import render_session

    if speed == "max":
        factor = 0.0
    else:
        try:
            factor = float(speed)
        except ValueError:
            raise _fail(f"--speed {speed!r}: use 1, 10, another positive number, or max") from None
        if factor <= 0:
            raise _fail(f"--speed {speed!r}: use a positive number or max")
    session, statements = _recorded_session(config, store, session_id)
    render_session(session, statements, speed=factor)


# ---------------------------------------------------------------------- approvals

ApiUrlOpt = Annotated[
    str | None,
    typer.Option(
        "--url",
        help="The gateway's API, e.g. http://127.0.0.1:8080 (default: approvals.public_url of --config, "
        "else http://<api.listen>).",
    ),
]
TokenOpt = Annotated[
    str | None,
    typer.Option(
        "--token", help="A token of an approver or auditor (default: $PGWARDEN_TOKEN).", show_default=False
    ),
]


def _approvals_client(config: Path | None, url: str | None, token: str | None) -> ApprovalsClient:
    from enforcer.api.client import ApprovalsClient

    token = token or os.environ.get("PGWARDEN_TOKEN")
    if not token:
        raise _fail(
            "no token: set PGWARDEN_TOKEN or pass --token with a token of an approver "
            "(`pgwarden token issue --subject you --groups <approver group>` mints one)"
        )
    if url is None:
        if config is None:
            raise _fail("name the gateway's API with --url URL or the gateway's --config FILE")
        cfg = _load(config)
        if cfg.approvals is not None and cfg.approvals.public_url:
            url = cfg.approvals.public_url
        elif cfg.api is not None:
            host = cfg.api.listen_host
            host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
            url = (
                f"http://[{host}]:{cfg.api.listen_port}"
                if ":" in host
                else f"http://{host}:{cfg.api.listen_port}"
            )
        else:
            raise _fail(f"{config} has no api section, so the gateway serves no API; pass --url")
    if not url.startswith(("http://", "https://")):
        raise _fail(f"--url {url!r}: expected an http:// or https:// URL")
    return ApprovalsClient(url, token.strip())


@approvals_app.command("list")
def approvals_list(
    config: OptionalConfigOpt = None,
    url: ApiUrlOpt = None,
    token: TokenOpt = None,
    state: Annotated[
        str | None,
        typer.Option(
            help="pending, timed_out, abandoned, approved, executed, rejected, withdrawn, expired, "
            "several comma-separated, or all (default: those awaiting a decision)."
        ),
    ] = None,
    limit: Annotated[
        int | None, typer.Option(min=1, max=1000, help="At most this many, newest first.")
    ] = None,
    output: Annotated[Literal["table", "json"], typer.Option("--format")] = "table",
) -> None:
    """Approval requests you may see (as an approver or auditor), newest first."""
    from enforcer.api.client import ApiError, render_list

    try:
        with _approvals_client(config, url, token) as client:
            docs = client.list_requests(state, limit)
    except ApiError as exc:
        raise _fail(exc.message, exc.exit_code) from None
    if output == "json":
        typer.echo(json.dumps(docs, indent=2))
    else:
        render_list(docs)


@approvals_app.command("show")
def approvals_show(
    approval_id: Annotated[str, typer.Argument(help="The approval id (apr_...).")],
    config: OptionalConfigOpt = None,
    url: ApiUrlOpt = None,
    token: TokenOpt = None,
    output: Annotated[Literal["text", "json"], typer.Option("--format")] = "text",
) -> None:
    """One approval request: the statement, why it is held, and what became of it."""
    from enforcer.api.client import ApiError, render_request

    try:
        with _approvals_client(config, url, token) as client:
            doc = client.get(approval_id)
    except ApiError as exc:
        raise _fail(exc.message, exc.exit_code) from None
    if output == "json":
        typer.echo(json.dumps(doc, indent=2))
    else:
        render_request(doc)


def _decide(
    approval_id: str, config: Path | None, url: str | None, token: str | None, *, approve: bool, reason: str
) -> None:
    from enforcer.api.client import ApiError
    from enforcer.terminal import printable

    try:
        with _approvals_client(config, url, token) as client:
            doc = client.decide(approval_id, approve=approve, reason=reason)
    except ApiError as exc:
        raise _fail(exc.message, exc.exit_code) from None
    why = f": {doc['decision_reason']}" if doc.get("decision_reason") else ""
    typer.echo(printable(f"{doc['id']} {doc['state']} by {doc['decided_by']}{why}", one_line=True))


ReasonOpt = Annotated[
    str, typer.Option("--reason", help="Why; the requester sees it (at most 1000 characters).")
]


@approvals_app.command("approve")
def approvals_approve(
    approval_id: Annotated[str, typer.Argument(help="The approval id (apr_...).")],
    config: OptionalConfigOpt = None,
    url: ApiUrlOpt = None,
    token: TokenOpt = None,
    reason: ReasonOpt = "",
) -> None:
    """Approve a held statement: it runs once (now if the client still waits, else when re-sent)."""
    _decide(approval_id, config, url, token, approve=True, reason=reason)


@approvals_app.command("reject")
def approvals_reject(
    approval_id: Annotated[str, typer.Argument(help="The approval id (apr_...).")],
    config: OptionalConfigOpt = None,
    url: ApiUrlOpt = None,
    token: TokenOpt = None,
    reason: ReasonOpt = "",
) -> None:
    """Reject a held statement; the client gets an error with your reason."""
    if not reason.strip():
        raise _fail("reject needs --reason TEXT: the requester sees it in the error")
    _decide(approval_id, config, url, token, approve=False, reason=reason)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
