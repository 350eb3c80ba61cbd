"""Busy polling: the loop polls while traffic flows and sleeps once it stops."""

from __future__ import annotations

import asyncio

import pytest

from enforcer import metrics
from enforcer.proxy import busypoll
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


class FakePreemptions:
    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> int:
        return self.count


async def _poll_periods(
    clock: FakeClock, preempted: FakePreemptions, poll: BusyPoll, per_period: list[int]
) -> None:
    """Run one check period per entry, with that many preemptions in it; traffic keeps coming."""
    for n in per_period:
        preempted.count += n
        clock.advance(busypoll._CHECK_EVERY / 1e9)
        poll.kick()
        await _iterations(2)


async def test_polling_backs_off_while_the_cpu_is_contended() -> None:
    clock, preempted = FakeClock(), FakePreemptions()
    poll = BusyPoll(asyncio.get_running_loop(), WINDOW, clock=clock, preempted=preempted)
    poll.kick()
    contended = busypoll._CONTENDED
    # A burst shorter than the strikes needed is tolerated.
    await _poll_periods(clock, preempted, poll, [contended] * (busypoll._STRIKES - 1) + [0])
    assert poll.spinning and not poll.backing_off
    # Sustained preemption stops polling, and kicks do not restart it during the back-off.
    await _poll_periods(clock, preempted, poll, [contended] * busypoll._STRIKES)
    assert not poll.spinning and poll.backing_off
    poll.kick()
    assert not poll.spinning
    clock.advance(busypoll._BACKOFF / 1e9 / 2)
    poll.kick()
    assert not poll.spinning
    # After the back-off it polls again; still contended, it backs off twice as long.
    clock.advance(busypoll._BACKOFF / 1e9 / 2)
    poll.kick()
    assert poll.spinning
    await _poll_periods(clock, preempted, poll, [contended] * busypoll._STRIKES)
    assert not poll.spinning
    clock.advance(busypoll._BACKOFF / 1e9 * 1.5)
    poll.kick()
    assert not poll.spinning, "the second back-off is twice the first"
    clock.advance(busypoll._BACKOFF / 1e9 * 0.5)
    poll.kick()
    assert poll.spinning
    # A quiet period resets the back-off to its start.
    await _poll_periods(clock, preempted, poll, [0] + [contended] * busypoll._STRIKES)
    assert not poll.spinning
    clock.advance(busypoll._BACKOFF / 1e9)
    poll.kick()
    assert poll.spinning


async def test_a_long_back_off_is_capped() -> None:
    clock, preempted = FakeClock(), FakePreemptions()
    poll = BusyPoll(asyncio.get_running_loop(), WINDOW, clock=clock, preempted=preempted)
    for _ in range(10):
        clock.advance(busypoll._MAX_BACKOFF / 1e9)
        poll.kick()
        assert poll.spinning
        await _poll_periods(clock, preempted, poll, [busypoll._CONTENDED] * busypoll._STRIKES)
        assert not poll.spinning


def test_preemptions_are_those_of_the_calling_thread() -> None:
    assert busypoll.preemptions() >= 0
