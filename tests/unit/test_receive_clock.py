"""ts_recv stamps: strictly increasing, close to the wall clock."""

from __future__ import annotations

from itertools import pairwise

from tradeflow.trades.receive_clock import ReceiveClock


def test_stamps_follow_the_wall_clock_when_it_moves_forward():
    readings = iter([100, 250, 900])
    clock = ReceiveClock(now_ns=lambda: next(readings))
    assert [clock.next() for _ in range(3)] == [100, 250, 900]


def test_stamps_never_repeat_or_go_back_when_the_wall_clock_stalls_or_steps_back():
    readings = iter([1000, 1000, 1000, 990, 5, 2000, 2000])
    clock = ReceiveClock(now_ns=lambda: next(readings))
    assert [clock.next() for _ in range(7)] == [1000, 1001, 1002, 1003, 1004, 2000, 2001]


def test_real_clock_stamps_strictly_increase_in_a_tight_loop():
    clock = ReceiveClock()
    stamps = [clock.next() for _ in range(10_000)]
    assert all(later > earlier for earlier, later in pairwise(stamps))
