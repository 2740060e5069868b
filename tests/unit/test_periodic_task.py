"""tradeflow.periodic.PeriodicTask: runs every interval, survives errors (logged), stops cleanly."""

from __future__ import annotations

import asyncio
import logging

import pytest
from tradeflow.periodic import STOP, PeriodicTask


async def until(predicate, timeout_s: float = 5.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not predicate():  # noqa: ASYNC110 - polls what the task under test changes
            await asyncio.sleep(0.001)


async def test_runs_every_interval_after_a_first_delay_of_one_interval_by_default():
    calls: list[float] = []
    loop = asyncio.get_running_loop()
    task = PeriodicTask("ticker", lambda: calls.append(loop.time()), interval_s=0.02)
    started = loop.time()
    await task.start()
    await until(lambda: len(calls) >= 3)
    await task.stop()
    assert calls[0] - started >= 0.019  # not at once: one interval first
    assert all(b - a >= 0.019 for a, b in zip(calls, calls[1:], strict=False))
    assert task.runs >= 3 and task.failures == 0


async def test_a_failing_run_is_logged_with_the_name_and_the_next_run_comes(caplog):
    outcomes = iter([ValueError("database away"), None, None])
    done: list[int] = []

    async def flaky() -> None:
        outcome = next(outcomes)
        done.append(1)
        if outcome is not None:
            raise outcome

    task = PeriodicTask("registry-refresh", flaky, interval_s=0.01, first_delay_s=0,
                        failure_message="refresh failed; keeping the previous registry")
    with caplog.at_level(logging.ERROR, logger="tradeflow.periodic"):
        await task.start()
        await until(lambda: len(done) >= 3)
        await task.stop()
    failures = [r for r in caplog.records if r.name == "tradeflow.periodic"]
    assert len(failures) == 1 and task.failures == 1
    assert failures[0].getMessage() == "registry-refresh: refresh failed; keeping the previous registry"
    assert failures[0].exc_info[0] is ValueError  # with its traceback


async def test_stop_cancels_a_run_in_progress_and_the_wait_and_is_repeatable():
    entered = asyncio.Event()
    cancelled: list[bool] = []

    async def slow() -> None:
        entered.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    task = PeriodicTask("slow", slow, interval_s=60, first_delay_s=0)
    await task.start()
    await asyncio.wait_for(entered.wait(), 5)
    await asyncio.wait_for(task.stop(), 5)
    assert cancelled == [True]
    await task.stop()  # stopping again is harmless

    waiting = PeriodicTask("waiting", lambda: None, interval_s=60)
    await waiting.start()
    await asyncio.wait_for(waiting.stop(), 5)  # stopped during its first wait
    assert waiting.runs == 0


async def test_a_run_returning_stop_ends_the_task_and_a_subclass_overrides_run_once():
    class Countdown(PeriodicTask):
        name = "countdown"

        def __init__(self) -> None:
            super().__init__(interval_s=0.001, first_delay_s=0)
            self.left = 3

        async def run_once(self) -> object:
            self.left -= 1
            return STOP if self.left == 0 else None

    task = Countdown()
    await task.start()
    await asyncio.wait_for(task.wait(), 5)
    assert (task.left, task.runs, task.name) == (0, 3, "countdown")


def test_intervals_must_be_positive():
    with pytest.raises(ValueError, match="interval_s must be positive, got 0"):
        PeriodicTask("x", lambda: None, interval_s=0)
    with pytest.raises(ValueError, match="first_delay_s must not be negative"):
        PeriodicTask("x", lambda: None, interval_s=1, first_delay_s=-1)


async def test_the_next_delay_may_depend_on_the_state():
    loaded = [False]
    delays: list[float] = []

    async def recorded_sleep(seconds: float) -> None:
        delays.append(seconds)
        await asyncio.sleep(0)

    def refresh() -> None:
        if len(delays) >= 2:
            loaded[0] = True

    task = PeriodicTask("calendars", refresh, interval_s=60, first_delay_s=0, sleep=recorded_sleep,
                        next_delay_s=lambda: 60 if loaded[0] else 2.0)
    await task.start()
    await until(lambda: len(delays) >= 4)
    await task.stop()
    assert delays[:4] == [2.0, 2.0, 60, 60]  # sooner until loaded, then the interval


async def test_wake_cuts_the_wait_short_and_a_wake_during_a_run_runs_again_at_once():
    runs: list[int] = []
    release = asyncio.Event()

    async def work() -> None:
        runs.append(1)
        if len(runs) == 1:
            await release.wait()

    task = PeriodicTask("sync", work, interval_s=60)
    await task.start()
    task.wake()  # the first wait (one interval) ends at once
    await until(lambda: len(runs) == 1)
    task.wake()  # during the run: the next one follows it
    release.set()
    await until(lambda: len(runs) == 2)
    await asyncio.sleep(0.05)
    assert len(runs) == 2  # then it waits its interval again
    await task.stop()


async def test_wake_cuts_an_injected_sleep_short_and_the_clock_drives_the_interval():
    from tradeflow.testing import TestClock

    clock = TestClock()
    runs: list[float] = []
    task = PeriodicTask("sync", lambda: runs.append(clock.monotonic()), interval_s=60, sleep=clock.sleep)
    await task.start()
    await until(lambda: clock.sleepers == 1)
    task.wake()  # new work (fills stored): the run comes now, not after the clock's minute
    await until(lambda: len(runs) == 1)
    assert runs == [0.0]
    await until(lambda: clock.sleepers == 1)
    await clock.advance(59)
    assert len(runs) == 1
    await clock.advance(1)
    await until(lambda: len(runs) == 2)
    assert runs == [0.0, 60.0]
    await task.stop()
    assert clock.sleepers == 0  # the cancelled wait left no sleeper behind
