"""The daily report: P&L after fees, trades and win rate, drawdown and open positions from the
fills (the shared position arithmetic), and when reports are due across daylight saving."""

from __future__ import annotations

from datetime import UTC, datetime, time
from decimal import Decimal
from zoneinfo import ZoneInfo

from tradeflow_notifier.domain.daily_report import CurrencyPnl, OpenPosition, daily_report
from tradeflow_notifier.domain.events import Notification
from tradeflow_notifier.domain.rendering import render
from tradeflow_notifier.domain.report_schedule import last_period_end, next_period_end, period_start

from services.notifier.tests.unit.notifier_samples import fill, order_event

H = 3600 * 1_000_000_000
START = int(datetime(2026, 3, 1, tzinfo=UTC).timestamp()) * 1_000_000_000
END = START + 24 * H
D = Decimal


def trades():
    return [
        fill(fill_id="0", side="buy", symbol="BTC/USDT", quantity=D("1"), price=D("100"), fee=D("0.1"), ts_event=START - H),
        fill(fill_id="1", side="sell", symbol="BTC/USDT", quantity=D("0.5"), price=D("110"), fee=D("0.055"), ts_event=START + H),
        fill(fill_id="2", side="buy", symbol="ETH/USDT", quantity=D("1"), price=D("50"), fee=D("0.05"), ts_event=START + 2 * H),
        fill(fill_id="3", side="sell", symbol="BTC/USDT", quantity=D("0.5"), price=D("90"), fee=D("0.045"), ts_event=START + 3 * H),
        fill(fill_id="4", side="sell", symbol="ETH/USDT", quantity=D("1"), price=D("52"), fee=D("0.052"), ts_event=START + 4 * H),
        fill(fill_id="5", side="buy", symbol="BTC/USDT", quantity=D("0.2"), price=D("95"), fee=D("0.0002"),
             fee_currency="BTC", ts_event=START + 5 * H),
        fill(fill_id="6", side="sell", symbol="BTC/USDT", quantity=D("0.2"), price=D("200"), fee=D("1"), ts_event=END),
    ]


def orders():
    return [order_event(client_order_id=f"o{i}", status=status, ts_event=START + i * H)
            for i, status in enumerate(["submitted", "filled", "submitted", "filled", "canceled", "accepted"], 1)] + [
        order_event(client_order_id="late", status="rejected", ts_event=END)]


def test_the_report_of_a_day_of_trading():
    report = daily_report("alice", trades(), orders(), START, END)
    assert report.pnl == (
        CurrencyPnl("BTC", D("0"), D("0.0002"), D("-0.0002"), D("0.0002")),
        # realized +5 -5 +2 = 2; fees 0.055 + 0.05 + 0.045 + 0.052 = 0.202; the running net
        # peaks at 4.945 after the first sale and falls to -0.15 after the losing one: 5.095.
        CurrencyPnl("USDT", D("2"), D("0.202"), D("1.798"), D("5.095")),
    )
    assert (report.trades, report.closing_trades, report.wins, report.losses) == (5, 3, 2, 1)
    assert report.win_rate == D(2) / D(3)
    assert report.open_positions == (OpenPosition("binance", "BTC/USDT", "long", D("0.2"), D("95")),)
    assert report.orders == {"submitted": 2, "filled": 2, "canceled": 1, "rejected": 0, "expired": 0}


def test_the_report_text_in_the_readers_zone():
    report = daily_report("alice", trades(), orders(), START, END)
    note = Notification("report:alice:x", "report", "daily", "info", END, "alice", payload=report)
    text = render(note, "email", ZoneInfo("Europe/Berlin"))
    assert text.title == "Daily report alice 2026-03-01"
    assert text.body == (
        "Period: 2026-03-01 01:00:00 CET to 2026-03-02 01:00:00 CET\n"
        "P&L BTC: -0.0002 (realized 0, fees 0.0002)\nMax drawdown BTC: 0.0002\n"
        "P&L USDT: +1.798 (realized +2, fees 0.202)\nMax drawdown USDT: 5.095\n"
        "Trades: 5 fills, 3 closing: 2 won, 1 lost, win rate 66.7%\n"
        "Orders: submitted 2, filled 2, canceled 1, rejected 0, expired 0\n"
        "Open positions:\n  BTC/USDT (binance) long 0.2 @ 95\n")


def test_an_account_that_did_nothing_and_holds_nothing_has_an_empty_report():
    assert daily_report("bob", [], [], START, END).is_empty
    flat = [fill(fill_id="a", account_id="bob", side="buy", quantity=D("1"), price=D("1"), ts_event=START - 2 * H),
            fill(fill_id="b", account_id="bob", side="sell", quantity=D("1"), price=D("1"), ts_event=START - H)]
    assert daily_report("bob", flat, [], START, END).is_empty
    assert not daily_report("bob", flat[:1], [], START, END).is_empty  # still holds a position


def test_report_times_follow_the_local_clock_across_daylight_saving():
    berlin, at = ZoneInfo("Europe/Berlin"), time(8, 0)
    now = datetime(2026, 3, 29, 12, 0, tzinfo=UTC)  # the day Berlin moves to summer time
    end = last_period_end(now, at, berlin)
    assert end == datetime(2026, 3, 29, 6, 0, tzinfo=UTC)  # 08:00 CEST
    assert period_start(end, at, berlin) == datetime(2026, 3, 28, 7, 0, tzinfo=UTC)  # 08:00 CET: 23 hours
    assert next_period_end(now, at, berlin) == datetime(2026, 3, 30, 6, 0, tzinfo=UTC)
    assert last_period_end(datetime(2026, 3, 29, 5, 59, tzinfo=UTC), at, berlin) == datetime(2026, 3, 28, 7, 0, tzinfo=UTC)
