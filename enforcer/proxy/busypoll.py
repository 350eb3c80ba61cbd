"""Busy polling: keep the event loop polling for a short while after traffic, instead of sleeping.

A gateway at one client's pace sleeps twice per statement: once while Postgres runs it, once
while the client reads the answer and sends the next. Every sleep ends in a wake-up, and on a
virtual machine an idle vCPU halts: waking it goes through the hypervisor and costs tens of
microseconds (on the benchmark VM, with guest halt polling off, they cost 25-40% of
pgbench's c=1 rate through the gateway).

While active, :class:`BusyPoll` keeps one callback on the loop's ready queue, so the loop
polls its sockets with a zero timeout instead of blocking. Activity (the relay calls
:meth:`BusyPoll.kick` on every read) extends the window; once ``window`` passes with no read,
the loop blocks as usual, so an idle gateway uses no CPU. The price is CPU while traffic
flows: a worker with a steady stream of statements less than ``window`` apart shows 100% of
one core. ``listener.busy_poll: 0`` turns it off. The same idea as the kernel's halt polling
(haltpoll) and Seastar's ``--idle-poll-time-us``.

Polling only pays while a CPU is free. When the CPUs are all busy (several workers, Postgres
and the clients on few cores), a polling worker takes CPU time from the processes it waits
for. The kernel then preempts it: while polling, the loop reads its thread's involuntary
context switches every few milliseconds. When the count grew by ``_CONTENDED`` or more in
``_STRIKES`` such periods in a row, it stops polling and does not start again for a back-off
that doubles (from ``_BACKOFF`` to ``_MAX_BACKOFF``) while the contention lasts, so that a
saturated worker polls about 3% of the time. One contended period is not enough: even with a
CPU free, a polling worker is preempted in bursts now and then (seen: every second or so, up
to 20 ms long; the cause was not identified). A burst shorter than ``_STRIKES`` periods (48
ms) is ignored, and a longer one costs one back-off. With 5 periods instead of 12, one
client's rate through the gateway fell by about 5% on the benchmark VM.
"""

from __future__ import annotations

import asyncio
import resource
from collections.abc import Callable
from time import monotonic_ns

from enforcer import metrics

#: How often (ns of polling) the involuntary context switches are read, and how many make a
#: contended CPU. At one client's pace on the benchmark VM, a polling worker was preempted 0
#: or 1 times in 99% of 4 ms periods, apart from the bursts (14-42 per period); with four
#: clients and two workers on two cores, 20-58 times in every period.
_CHECK_EVERY = 4_000_000
_CONTENDED = 8
_STRIKES = 12
#: How long (ns) polling stays off after the CPU was found contended, doubling up to the maximum.
_BACKOFF = 100_000_000
_MAX_BACKOFF = 1_600_000_000


def preemptions() -> int:
    """Involuntary context switches of the calling thread so far."""
    return resource.getrusage(resource.RUSAGE_THREAD).ru_nivcsw


class BusyPoll:
    """One per event loop; see the module docstring."""

    __slots__ = (
        "_backoff",
        "_check_at",
        "_clock",
        "_deadline",
        "_loop",
        "_preemptions",
        "_resume_at",
        "_seen",
        "_spinning",
        "_started",
        "_strikes",
        "_switches",
        "_window_ns",
    )

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        window: float,
        *,
        clock: Callable[[], int] = monotonic_ns,
        preempted: Callable[[], int] = preemptions,
    ) -> None:
        if window <= 0:
            raise ValueError("busy polling needs a positive window")
        self._loop = loop
        self._window_ns = int(window * 1e9)
        self._clock = clock
        self._preemptions = preempted
        self._spinning = False
        self._seen = False
        self._deadline = 0
        self._started = 0
        self._check_at = 0
        self._switches = 0
        self._strikes = 0
        self._resume_at = 0
        self._backoff = _BACKOFF

    @property
    def spinning(self) -> bool:
        return self._spinning

    @property
    def backing_off(self) -> bool:
        return self._clock() < self._resume_at

    def kick(self) -> None:
        """Traffic: poll for at least another window. Runs on every read, so it only sets a flag
        while polling; the polling callback reads the clock."""
        if self._spinning:
            self._seen = True
            return
        now = self._clock()
        if now < self._resume_at:
            return  # the CPU was contended a moment ago: sleep as usual
        self._spinning = True
        self._seen = False
        self._started = now
        self._deadline = now + self._window_ns
        self._check_at = now + _CHECK_EVERY
        self._switches = self._preemptions()
        self._loop.call_soon(self._poll)

    def _poll(self) -> None:
        now = self._clock()
        if now >= self._check_at:
            switches = self._preemptions()
            if switches - self._switches >= _CONTENDED:
                self._strikes += 1
            else:
                self._strikes = 0
                self._backoff = _BACKOFF
            self._switches = switches
            self._check_at = now + _CHECK_EVERY
            if self._strikes >= _STRIKES:
                self._resume_at = now + self._backoff
                self._backoff = min(self._backoff * 2, _MAX_BACKOFF)
                self._stop(now)
                return
        if self._seen:
            self._seen = False
            self._deadline = now + self._window_ns
        elif now >= self._deadline:
            self._stop(now)
            return
        self._loop.call_soon(self._poll)

    def _stop(self, now: int) -> None:
        self._spinning = False
        metrics.BUSY_POLL_SECONDS.inc((now - self._started) / 1e9)
