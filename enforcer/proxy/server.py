"""The listener: accepts clients, bounds their number, routes cancels, shuts down gracefully.

Owns: listening sockets, the set of live sessions, cancel routing between
worker processes, and the drain on SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import ssl
from pathlib import Path
from typing import TYPE_CHECKING

from enforcer.config import Config
from enforcer.identity import Authenticator
from enforcer.proxy.busypoll import BusyPoll
from enforcer.proxy.cancel import CancelRegistry
from enforcer.proxy.gate import AllowAllGate, StatementGate
from enforcer.proxy.session import ClientSession
from enforcer.proxy.tls import server_context
from enforcer.proxy.upstream import send_cancel
from enforcer.wire import CancelRequest, ProtocolError, decode_untyped, untyped_length

if TYPE_CHECKING:
    from enforcer.approvals.service import ApprovalService
    from enforcer.audit.decision_log import DecisionLog
    from enforcer.audit.sessions import SessionRecorder

log = logging.getLogger("pgwarden.server")

#: Connections still negotiating TLS/startup beyond max_clients are tolerated up to this many,
#: so that refused clients get a readable 53300 instead of a reset.
_NEGOTIATION_HEADROOM = 64


class Gateway:
    def __init__(
        self,
        config: Config,
        authenticator: Authenticator,
        gate: StatementGate | None = None,
        *,
        recorder: SessionRecorder | None = None,
        decision_log: DecisionLog | None = None,
        approvals: ApprovalService | None = None,
        worker_index: int = 0,
        worker_count: int = 1,
        run_dir: Path | None = None,
        reuse_port: bool = False,
    ) -> None:
        self.config = config
        self.authenticator = authenticator
        self.gate: StatementGate = gate or AllowAllGate()
        #: Session recording (audit.sessions) and the on-disk decision log for statement outcomes.
        self.recorder = recorder
        self.decision_log = decision_log
        self.approvals = approvals
        self.cancels = CancelRegistry(worker_index)
        self.worker_index = worker_index
        self.worker_count = worker_count
        self.run_dir = run_dir
        self.reuse_port = reuse_port
        self.server_ssl: ssl.SSLContext | None = (
            server_context(config.listener.tls) if config.listener.tls is not None else None
        )
        self.sessions: set[asyncio.Task[None]] = set()
        #: Sessions past startup, bounded by listener.max_clients (see ClientSession.admit).
        self.admitted = 0
        self._sockets: list[socket.socket] = []
        self._accept_tasks: list[asyncio.Task[None]] = []
        self._cancel_server: asyncio.AbstractServer | None = None
        self._stopping = asyncio.Event()
        self._stopped = asyncio.Event()
        self.ports: list[int] = []
        #: One per event loop, shared by the sessions' relays (made in start(), on the loop).
        self.busy_poll: BusyPoll | None = None

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    # ------------------------------------------------------------------ listening
    def _bind(self) -> None:
        lst = self.config.listener
        infos = socket.getaddrinfo(lst.host, lst.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        seen = set()
        for family, type_, proto, _, addr in infos:
            if (family, addr) in seen:
                continue
            seen.add((family, addr))
            sock = socket.socket(family, type_, proto)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if self.reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(addr)
            sock.listen(512)
            sock.setblocking(False)
            self._sockets.append(sock)
            self.ports.append(sock.getsockname()[1])

    def _bind_mcp(self) -> socket.socket | None:
        """The local socket of `pgwarden mcp` (worker 0 only: a Unix path has one listener)."""
        path = self.config.listener.mcp_socket
        if path is None or self.worker_index != 0:
            return None
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        path.parent.mkdir(parents=True, exist_ok=True)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)  # created 0600: only the gateway's own user may connect
        try:
            sock.bind(str(path))
        finally:
            os.umask(old)
        sock.listen(128)
        sock.setblocking(False)
        return sock

    async def start(self) -> None:
        self._bind()
        loop = asyncio.get_running_loop()
        if self.config.listener.busy_poll > 0:
            self.busy_poll = BusyPoll(loop, self.config.listener.busy_poll)
        for sock in self._sockets:
            self._accept_tasks.append(loop.create_task(self._accept_loop(sock)))
        mcp = self._bind_mcp()
        if mcp is not None:
            self._sockets.append(mcp)
            self._accept_tasks.append(loop.create_task(self._accept_loop(mcp, channel="mcp")))
        if self.run_dir is not None and self.worker_count > 1:
            path = self.run_dir / f"cancel-{self.worker_index}.sock"
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            self._cancel_server = await asyncio.start_unix_server(self._peer_cancel, path=str(path))
        log.info(
            "listening",
            extra={
                "event": "listening",
                "fields": {
                    "host": self.config.listener.host,
                    "ports": self.ports,
                    "tls": self.server_ssl is not None,
                    "worker": self.worker_index,
                },
            },
        )

    async def _accept_loop(self, lsock: socket.socket, channel: str = "postgres") -> None:
        loop = asyncio.get_running_loop()
        while not self._stopping.is_set():
            try:
                conn, addr = await loop.sock_accept(lsock)
            except OSError as exc:
                if self._stopping.is_set():
                    return
                log.warning("accept failed: %s", exc, extra={"event": "accept_failed"})
                await asyncio.sleep(0.05)
                continue
            conn.setblocking(False)
            if conn.family in (socket.AF_INET, socket.AF_INET6):
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            peer = f"{addr[0]}:{addr[1]}" if isinstance(addr, tuple) else f"{channel}:local"
            if len(self.sessions) >= self.config.listener.max_clients + _NEGOTIATION_HEADROOM:
                # Far over the limit: do not even spend a TLS handshake on it.
                conn.close()
                log.warning(
                    "too many connections", extra={"event": "too_many_clients", "fields": {"client": peer}}
                )
                continue
            session = ClientSession(self, conn, peer, channel=channel)
            task = loop.create_task(session.run(), name=f"session-{session.id}")
            self.sessions.add(task)
            task.add_done_callback(self._session_done)

    def _session_done(self, task: asyncio.Task[None]) -> None:
        self.sessions.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error(
                "session crashed",
                exc_info=task.exception(),
                extra={"event": "session_crashed"},
            )

    # ------------------------------------------------------------------ cancels
    async def handle_cancel(self, msg: CancelRequest) -> None:
        owner = CancelRegistry.owner_of(msg.process_id)
        if owner != self.worker_index:
            await self._forward_cancel(owner, msg)
            return
        target = self.cancels.lookup(msg.process_id, msg.secret_key)
        if target is None:
            log.info("cancel with unknown key dropped", extra={"event": "cancel_unknown_key"})
            return
        if self.approvals is not None and self.approvals.cancel_session(target.session_id):
            # A statement waiting for a person is withdrawn; the cancel still goes upstream for
            # anything pipelined before it that is running there (harmless when nothing is).
            log.info("cancel withdrew a held statement", extra={"event": "cancel_withdrew_approval"})
        log.info(
            "cancel forwarded", extra={"event": "cancel", "fields": {"connection": target.connection.name}}
        )
        await send_cancel(target.connection, target.process_id, target.secret_key)

    async def _forward_cancel(self, owner: int, msg: CancelRequest) -> None:
        if self.run_dir is None or owner >= self.worker_count:
            log.info("cancel for unknown worker dropped", extra={"event": "cancel_unknown_key"})
            return
        try:
            _, writer = await asyncio.open_unix_connection(str(self.run_dir / f"cancel-{owner}.sock"))
            writer.write(msg.encode())
            await writer.drain()
            writer.close()
        except OSError as exc:
            log.warning(
                "cancel hand-over to worker %d failed: %s", owner, exc, extra={"event": "cancel_failed"}
            )

    async def _peer_cancel(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            length = untyped_length(await reader.readexactly(4))
            msg = decode_untyped(await reader.readexactly(length - 4))
            if (
                isinstance(msg, CancelRequest)
                and CancelRegistry.owner_of(msg.process_id) == self.worker_index
            ):
                await self.handle_cancel(msg)
        except (ProtocolError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            # Shutdown cancels in-flight hand-overs. Python 3.11's start_unix_server
            # reports a cancelled handler as an unhandled exception, so end quietly.
            return
        finally:
            writer.close()

    # ------------------------------------------------------------------ shutdown
    async def shutdown(self) -> None:
        """Stop accepting, let sessions finish within shutdown_grace, then end the rest."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        if self.approvals is not None:
            # Statements still waiting for a person are abandoned, not withdrawn: the request
            # survives the restart and an approval can still run it when the client re-sends it.
            self.approvals.shutting_down = True
        for t in self._accept_tasks:
            t.cancel()
        for s in self._sockets:
            s.close()
        if self._cancel_server is not None:
            self._cancel_server.close()
        grace = self.config.listener.shutdown_grace
        log.info(
            "draining",
            extra={"event": "draining", "fields": {"sessions": len(self.sessions), "grace_s": grace}},
        )
        if self.sessions:
            await asyncio.wait(set(self.sessions), timeout=grace or None)
        for t in list(self.sessions):
            t.cancel()
        if self.sessions:
            await asyncio.wait(set(self.sessions), timeout=5)
        log.info("stopped", extra={"event": "stopped"})
        self._stopped.set()

    async def serve_forever(self, *, handle_signals: bool = True) -> None:
        """Serve until SIGTERM/SIGINT (or :meth:`shutdown`) and the drain has finished."""
        await self.start()
        if handle_signals:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, lambda: loop.create_task(self.shutdown()))
        await self._stopped.wait()


def worker_environment(run_dir: Path, index: int, count: int) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        PGWARDEN_RUN_DIR=str(run_dir), PGWARDEN_WORKER_INDEX=str(index), PGWARDEN_WORKER_COUNT=str(count)
    )
    # Workers' metrics are aggregated by worker 0's /metrics (prometheus-client multiprocess mode).
    metrics_dir = run_dir / "metrics"
    metrics_dir.mkdir(exist_ok=True)
    env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    return env
