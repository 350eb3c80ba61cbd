"""Busy polling: keep the event loop polling for a short while after traffic, instead of sleeping.

A gateway at one client's pace sleeps twice per statement: once while Postgres runs it, once
while the client reads the answer and sends the next. Every sleep ends in a wake-up, and on a
virtual machine an idle vCPU halts: waking it goes through the hypervisor and costs tens of
microseconds (on the benchmark VM, with guest halt polling off, two such wake-ups per
transaction halved pgbench's c=1 rate through any proxy, C or Python).

While active, :class:`BusyPoll` keeps one callback on the loop's ready queue, so the loop
polls its sockets with a zero timeout instead of blocking. Activity (the relay calls
:meth:`BusyPoll.kick` on every read) extends the window; once ``window`` passes with no read,
the loop blocks as usual, so an idle gateway uses no CPU. The price is CPU while traffic
flows: a worker with a steady stream of statements less than ``window`` apart shows 100% of
one core. ``listener.busy_poll: 0`` turns it off. The same idea as the kernel's halt polling
(haltpoll) and Seastar's ``--idle-poll-time-us``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from time import monotonic_ns

from enforcer import metrics


class BusyPoll:
    """One per event loop; see the module docstring."""

    __slots__ = ("_clock", "_deadline", "_loop", "_seen", "_spinning", "_started", "_window_ns")

    def __init__(
        self, loop: asyncio.AbstractEventLoop, window: float, *, clock: Callable[[], int] = monotonic_ns
    ) -> None:
        if window <= 0:
            raise ValueError("busy polling needs a positive window")
        self._loop = loop
        self._window_ns = int(window * 1e9)
        self._clock = clock
        self._spinning = False
        self._seen = False
        self._deadline = 0
        self._started = 0

    @property
    def spinning(self) -> bool:
        return self._spinning

    def kick(self) -> None:
        """Traffic: poll for at least another window. Runs on every read, so it only sets a flag
        while polling; the polling callback reads the clock."""
        if self._spinning:
            self._seen = True
            return
        self._spinning = True
        self._seen = False
        self._started = now = self._clock()
        self._deadline = now + self._window_ns
        self._loop.call_soon(self._poll)

    def _poll(self) -> None:
        now = self._clock()
        if self._seen:
            self._seen = False
            self._deadline = now + self._window_ns
        elif now >= self._deadline:
            self._spinning = False
            metrics.BUSY_POLL_SECONDS.inc((now - self._started) / 1e9)
            return
        self._loop.call_soon(self._poll)
