"""The policy's decision for a statement without running it (the ``explain`` and ``describe_table`` tools).

Owns: evaluating the configured policy (the embedded engine on ``policy.paths``, or the co-located
OPA) in this process, on the same input document the gateway builds (``enforcer.proxy.policy_gate
.explain``), for the agent's verified identity and ``session.protocol = "mcp"``; reloading the
embedded policy when its files change, as the gateway does on SIGHUP.
Never: runs or records anything; an explanation is a preview, the gateway's decision at run time
is the one that counts (and the one that is recorded).
"""

from __future__ import annotations

import asyncio
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from enforcer.audit.decision_log import DecisionLog
from enforcer.config import PolicyConfig
from enforcer.identity import Identity
from enforcer.policy.decision import Decision
from enforcer.policy.engine import EmbeddedEngine, OPAEngine, PolicyEngine
from enforcer.proxy.gate import SessionContext
from enforcer.proxy.policy_gate import PolicyGate
from enforcer.proxy.policy_gate import explain as explain_statement


@dataclass(frozen=True)
class Explanation:
    input: dict[str, Any]
    decision: Decision


def _files_stamp(paths: tuple[Path, ...]) -> tuple[tuple[str, int, int], ...]:
    stamp = []
    for root in paths:
        walk = [(str(root.parent), [], [root.name])] if root.is_file() else os.walk(root)
        for directory, _, names in walk:
            for name in names:
                path = os.path.join(directory, name)
                try:
                    st = os.stat(path)
                except OSError:
                    continue
                stamp.append((path, st.st_mtime_ns, st.st_size))
    return tuple(sorted(stamp))


class PolicyExplainer:
    """The configured policy engine, for previews. Make it and use it on the event loop's thread:
    regorus engines cannot be used from another thread than the one that loaded them."""

    def __init__(self, policy: PolicyConfig) -> None:
        self.policy = policy
        self._stamp: tuple[tuple[str, int, int], ...] = ()
        self._gate = PolicyGate(self._load(), DecisionLog(None))

    def _load(self) -> PolicyEngine:
        pc = self.policy
        if pc.engine == "opa" and pc.opa is not None:
            return OPAEngine(pc.opa.url, timeout=pc.opa.timeout, unix_socket=pc.opa.unix_socket)
        self._stamp = _files_stamp(pc.paths)
        return EmbeddedEngine(list(pc.paths))

    @property
    def version(self) -> str:
        return self._gate.engine.version

    async def _current(self) -> PolicyGate:
        if isinstance(self._gate.engine, EmbeddedEngine):
            stamp = await asyncio.to_thread(_files_stamp, self.policy.paths)
            if stamp != self._stamp:
                # Loaded here, on the loop's thread (a few ms for the shipped policies): regorus
                # engines belong to the thread that made them, and one loaded on a worker thread
                # failed every later evaluation. A policy that does not load raises PolicyError.
                self._gate = PolicyGate(self._load(), DecisionLog(None))
        return self._gate

    async def explain(
        self,
        sql: str,
        identity: Identity,
        *,
        connection: str,
        database: str,
        application_name: str,
        parameters: dict[str, str],
    ) -> list[Explanation]:
        """One explanation per statement of ``sql``, as the gateway would decide them for this agent."""
        gate = await self._current()
        ctx = SessionContext(
            session_id=f"mcp-explain-{uuid.uuid4()}",
            identity=identity,
            connection=connection,
            database=database,
            client_addr="mcp:local",
            tls=False,
            application_name=application_name,
            parameters=dict(parameters),
            channel="mcp",
        )
        return [Explanation(doc, decision) for doc, decision in await explain_statement(gate, ctx, sql)]
