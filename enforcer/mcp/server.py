"""Running `pgwarden mcp`: from the gateway's configuration to an MCP server on stdio or HTTP.

Owns: choosing the gateway socket and connection, building the token check with the gateway's own
authenticator (gateway tokens and trusted OIDC issuers from the same configuration), the
transports (stdio: one agent whose token comes from the environment; streamable HTTP: a bearer
token on every request), and closing every gateway session on the way out (the gateway then
withdraws statements still held for approval).
Never: listens beyond loopback without saying so; writes anything but MCP messages to stdout.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import signal
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import uvicorn

from enforcer.config import Config
from enforcer.identity.model import Authenticator
from enforcer.mcp.agents import AgentRegistry, GatewayTarget
from enforcer.mcp.auth import BearerTokenGate, StdioToken, TokenCheck, TokenRefused
from enforcer.mcp.explain import PolicyExplainer
from enforcer.mcp.tools import EndpointSettings, McpEndpoint, http_token

log = logging.getLogger("pgwarden.mcp")

_SWEEP_INTERVAL = 60.0


class McpSetupError(Exception):
    """`pgwarden mcp` cannot start; the message names the option or key and the fix."""


@dataclass(frozen=True)
class McpOptions:
    transport: Literal["stdio", "http"] = "stdio"
    connection: str | None = None
    socket: Path | None = None
    listen: str = "127.0.0.1:8765"
    max_rows: int = 500
    application_name: str = "pgwarden-mcp"
    idle_timeout: float = 900.0


def parse_listen(value: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port``."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise McpSetupError(f"--listen {value!r}: use host:port, e.g. 127.0.0.1:8765 or [::1]:8765")
    return host.removeprefix("[").removesuffix("]"), int(port)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def choose_target(config: Config, options: McpOptions) -> tuple[GatewayTarget, str]:
    """The gateway socket and connection name (with its real database name) the agents' SQL goes to."""
    socket_path = options.socket or config.listener.mcp_socket
    if socket_path is None:
        raise McpSetupError(
            "the gateway has no listener.mcp_socket: set it in the gateway's configuration (and restart "
            "the gateway), or pass --socket PATH"
        )
    names = sorted(config.connections)
    name = options.connection
    if name is None:
        if len(names) != 1:
            raise McpSetupError(
                f"choose the upstream connection with --connection (one of: {', '.join(names)})"
            )
        name = names[0]
    conn = config.connections.get(name)
    if conn is None:
        raise McpSetupError(
            f"--connection {name!r} is not configured on the gateway; use one of: {', '.join(names)}"
        )
    target = GatewayTarget(socket_path, name, application_name=options.application_name)
    return target, conn.database


def build_authenticator(config: Config) -> tuple[Authenticator, Callable[[], object] | None]:
    """The gateway's own token verification (and an async closer for the OIDC verifier, if any)."""
    from enforcer.identity.router import IssuerRouter

    try:
        router = IssuerRouter.from_config(config)
    except ValueError as exc:
        raise McpSetupError(str(exc)) from None
    oidc = router.oidc
    return router, (oidc.aclose if oidc is not None else None)


def build_endpoint(
    config: Config, options: McpOptions, token_source: Callable[[], str]
) -> tuple[McpEndpoint, Callable[[], object] | None]:
    from enforcer.policy.engine import PolicyError

    target, database = choose_target(config, options)
    authenticator, closer = build_authenticator(config)
    try:
        explainer = PolicyExplainer(config.policy)
    except PolicyError as exc:
        raise McpSetupError(str(exc)) from None
    store = None
    if config.approvals is not None:
        from enforcer.approvals.store import ApprovalStore, ApprovalStoreError

        try:
            store = ApprovalStore(config.approvals.store)
        except ApprovalStoreError as exc:
            log.warning("approval_status cannot look up requests in the approvals store: %s", exc)
    endpoint = McpEndpoint(
        EndpointSettings(target, database, options.max_rows),
        TokenCheck(authenticator),
        token_source,
        explainer,
        approvals_store=store,
        agents=AgentRegistry(target, idle_timeout=options.idle_timeout),
    )
    return endpoint, closer


async def _sweep(agents: AgentRegistry) -> None:
    while True:
        await asyncio.sleep(_SWEEP_INTERVAL)
        await agents.sweep()


async def _shutdown(endpoint: McpEndpoint, closer: Callable[[], object] | None) -> None:
    await endpoint.agents.close()
    if closer is not None:
        result = closer()
        if asyncio.iscoroutine(result):
            await result
    if endpoint.approvals_store is not None:
        endpoint.approvals_store.close()


async def serve_stdio(config: Config, options: McpOptions) -> None:
    """One agent on stdin/stdout; its token from PGWARDEN_TOKEN or PGWARDEN_TOKEN_FILE."""
    token = StdioToken()
    endpoint, closer = build_endpoint(config, options, token.current)
    try:
        identity = await endpoint.check.verify(token.current())
        log.info(
            "serving MCP on stdio for %s (connection %s)",
            identity.subject,
            endpoint.settings.target.connection,
            extra={"event": "mcp_started", "fields": {"transport": "stdio", "subject": identity.subject}},
        )
    except TokenRefused as exc:
        # Keep serving: each tool call then tells the agent (and its user) what is wrong.
        log.error("the agent's token is refused: %s", exc.message, extra={"event": "mcp_token_refused"})
    server = endpoint.build_server()
    main = asyncio.current_task()
    loop = asyncio.get_running_loop()
    if main is not None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, main.cancel)
    sweeper = asyncio.ensure_future(_sweep(endpoint.agents))
    try:
        await server.run_stdio_async()
    except asyncio.CancelledError:
        pass
    finally:
        sweeper.cancel()
        await _shutdown(endpoint, closer)


class _HttpServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # serve_http handles SIGTERM/SIGINT: uvicorn's own handling re-raises the signal when it has
        # served, which would end the process before held statements are withdrawn.
        yield


async def serve_http(config: Config, options: McpOptions) -> None:
    """Streamable HTTP on ``--listen``; every request needs ``Authorization: Bearer <token>``."""
    host, port = parse_listen(options.listen)
    endpoint, closer = build_endpoint(config, options, http_token)
    server = endpoint.build_server()
    app = BearerTokenGate(server.streamable_http_app(host=host), endpoint.check)
    if not _is_loopback(host):
        log.warning(
            "the MCP endpoint serves plain HTTP on %s and agents send it tokens; put a TLS-terminating "
            "proxy in front of it",
            host,
            extra={"event": "mcp_not_loopback"},
        )

    uv = _HttpServer(uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on"))

    def stop() -> None:
        uv.should_exit = True

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop)
    sweeper = asyncio.ensure_future(_sweep(endpoint.agents))
    log.info(
        "serving MCP on http://%s:%d/mcp (connection %s)",
        host,
        port,
        endpoint.settings.target.connection,
        extra={"event": "mcp_started", "fields": {"transport": "http", "listen": options.listen}},
    )
    try:
        await uv.serve()
    finally:
        sweeper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sweeper
        await _shutdown(endpoint, closer)


def run(config: Config, options: McpOptions) -> None:
    """`pgwarden mcp`: serve until stdin closes (stdio) or SIGTERM/SIGINT (both)."""
    from enforcer import logs

    logs.configure(config.logging.level, config.logging.format)  # stderr: stdout carries MCP on stdio
    serve = serve_stdio if options.transport == "stdio" else serve_http
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(config, options))
