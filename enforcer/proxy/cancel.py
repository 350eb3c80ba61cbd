"""Cancel keys: each client session gets its own random BackendKeyData.

Owns: the mapping from the key a client knows to the upstream backend it
stands for. A CancelRequest with an unknown key is dropped silently, as
Postgres does, so keys cannot be probed.

With several worker processes sharing a port, a cancel may reach a worker that
does not own the session. The worker index is encoded in the process id's high
bits so the receiving worker can hand the request to its owner.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass

from enforcer.config import UpstreamConnection

WORKER_SHIFT = 22
MAX_WORKERS = 255


@dataclass(frozen=True)
class CancelTarget:
    connection: UpstreamConnection
    process_id: int
    secret_key: bytes
    #: The gateway session: a cancel while it waits for an approval withdraws the request.
    session_id: str = ""


class CancelRegistry:
    def __init__(self, worker_index: int = 0) -> None:
        if not 0 <= worker_index <= MAX_WORKERS:
            raise ValueError(f"worker index {worker_index} out of range")
        self.worker_index = worker_index
        self._keys: dict[int, tuple[bytes, CancelTarget]] = {}

    def register(self, target: CancelTarget) -> tuple[int, bytes]:
        while True:
            pid = (self.worker_index << WORKER_SHIFT) | secrets.randbits(WORKER_SHIFT)
            if pid and pid not in self._keys:
                break
        secret = secrets.token_bytes(4)
        self._keys[pid] = (secret, target)
        return pid, secret

    def unregister(self, pid: int) -> None:
        self._keys.pop(pid, None)

    def lookup(self, pid: int, secret: bytes) -> CancelTarget | None:
        entry = self._keys.get(pid)
        if entry is None or not hmac.compare_digest(entry[0], secret):
            return None
        return entry[1]

    @staticmethod
    def owner_of(pid: int) -> int:
        return (pid >> WORKER_SHIFT) & 0xFF
