"""Busy polling: the loop polls while traffic flows and sleeps once it stops."""

from __future__ import annotations

import asyncio

import pytest

from enforcer import metrics
from enforcer.proxy.busypoll import BusyPoll

WINDOW = 0.0002  # 200 µs, in the fake clock's nanoseconds below


class FakeClock:
    def __init__(self) -> None:
        self.ns = 1_000_000_000
        self.reads = 0

    def __call__(self) -> int:
        self.reads += 1
        return self.ns

    def advance(self, seconds: float) -> None:
        self.ns += int(seconds * 1e9)


async def _iterations(n: int) -> None:
    """Let the loop run n iterations (each runs the polling callback once while it is active)."""
    for _ in range(n):
        await asyncio.sleep(0)


async def test_polls_while_kicked_and_stops_a_window_after_the_last_kick() -> None:
    clock = FakeClock()
    poll = BusyPoll(asyncio.get_running_loop(), WINDOW, clock=clock)
    assert not poll.spinning
    poll.kick()
    assert poll.spinning
    await _iterations(5)
    assert poll.spinning  # no time has passed
    clock.advance(WINDOW * 0.9)
    poll.kick()  # traffic inside the window extends it from now
    await _iterations(2)
    clock.advance(WINDOW * 0.9)
    await _iterations(2)
    assert poll.spinning, "a kick must extend the window"
    clock.advance(WINDOW * 0.2)
    await _iterations(2)
    assert not poll.spinning, "a window without traffic must end the polling"


async def test_no_callback_is_left_on_the_loop_once_it_stops() -> None:
    clock = FakeClock()
    loop = asyncio.get_running_loop()
    poll = BusyPoll(loop, WINDOW, clock=clock)
    poll.kick()
    clock.advance(WINDOW)
    await _iterations(2)
    assert not poll.spinning
    ready = getattr(loop, "_ready", None)  # the default loop's ready queue
    if ready is not None:
        assert not any(getattr(h, "_callback", None) == poll._poll for h in ready)
    poll.kick()  # and a later kick starts it again
    assert poll.spinning
    clock.advance(WINDOW)
    await _iterations(2)
    assert not poll.spinning


async def test_kicks_while_polling_schedule_nothing_more() -> None:
    clock = FakeClock()
    poll = BusyPoll(asyncio.get_running_loop(), WINDOW, clock=clock)
    poll.kick()
    reads = clock.reads
    for _ in range(100):
        poll.kick()
    assert clock.reads == reads, "a kick while polling only sets a flag"
    await _iterations(3)
    # One chain of callbacks, one clock read per loop iteration, however many kicks there were.
    assert clock.reads - reads <= 4


async def test_polling_time_is_counted() -> None:
    clock = FakeClock()
    poll = BusyPoll(asyncio.get_running_loop(), WINDOW, clock=clock)
    before = metrics.BUSY_POLL_SECONDS._value.get()
    poll.kick()
    clock.advance(WINDOW * 3)
    await _iterations(2)
    assert not poll.spinning
    assert metrics.BUSY_POLL_SECONDS._value.get() - before == pytest.approx(WINDOW * 3)


def test_a_window_must_be_positive() -> None:
    loop = asyncio.new_event_loop()
    try:
        with pytest.raises(ValueError):
            BusyPoll(loop, 0)
    finally:
        loop.close()
