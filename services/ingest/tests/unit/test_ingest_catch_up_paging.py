"""When a forward REST catch-up goes on, and how, decided from what the exchange said (pure)."""

from __future__ import annotations

from tradeflow_ingest.domain.catch_up_paging import (
    BINANCE_WINDOW_MS,
    CaughtUp,
    PageRequest,
    Stuck,
    forward_paging,
    kraken_last,
    reaches,
)

NOW_MS = 1_700_000_100_000


def trade(trade_id: int, ts_ms: int, info=None) -> dict:
    return {"id": str(trade_id), "timestamp": ts_ms, "symbol": "BTC/USD", "price": 1.0, "amount": 1.0,
            "side": "buy", "info": info if info is not None else {}}


def kraken_page(first_id: int, count: int, ts_ms: int, last_ns: int | None) -> list[dict]:
    """A page as ccxt's kraken fetch_trades returns it: raw rows as ``info``, Kraken's ``last``
    appended to the last row."""
    page = []
    for i in range(count):
        row = ["1.0", "1.0", (ts_ms + i) / 1000, "b", "m", "", first_id + i]
        page.append(trade(first_id + i, ts_ms + i, row))
    if page and last_ns is not None:
        page[-1]["info"].append(str(last_ns))
    return page


def test_kraken_is_asked_in_nanoseconds_from_the_cursors_millisecond_without_ccxt_filtering():
    paging = forward_paging("kraken", 1000)
    first = paging.first(1_700_000_000_913, NOW_MS)
    # ccxt's own `since` would be sent as whole seconds (…000) and the page then filtered by ccxt
    assert first == PageRequest(None, 1000, {"since": "1700000000912999999"})


def test_a_full_kraken_page_goes_on_from_krakens_last_and_a_short_one_is_caught_up():
    paging = forward_paging("kraken", 1000)
    first = paging.first(1_700_000_000_913, NOW_MS)
    full = kraken_page(1, 1000, 1_700_000_000_913, last_ns=1_700_000_001_912_345_678)
    assert paging.after(first, full, NOW_MS) == PageRequest(None, 1000, {"since": "1700000001912345678"})
    assert paging.after(first, full[:614], NOW_MS) == CaughtUp()


def test_a_full_kraken_page_without_a_moving_last_is_stuck_not_caught_up():
    paging = forward_paging("kraken", 1000)
    first = paging.first(1_700_000_000_913, NOW_MS)
    assert isinstance(paging.after(first, kraken_page(1, 1000, 1_700_000_000_913, last_ns=None), NOW_MS), Stuck)
    unmoved = kraken_page(1, 1000, 1_700_000_000_913, last_ns=1_700_000_000_912_999_999)
    assert isinstance(paging.after(first, unmoved, NOW_MS), Stuck)


def test_krakens_last_is_found_whichever_trade_ccxts_sort_put_last():
    page = kraken_page(999, 2, 1_700_000_000_000, last_ns=42)
    page = [page[1], page[0]]  # ids compared as text: "1000" sorts before "999"
    assert kraken_last(page) == 42
    assert kraken_last([]) is None


def test_binance_pages_by_time_first_then_by_aggregate_id():
    paging = forward_paging("binance", 1000)
    since = NOW_MS - 5_000
    first = paging.first(since, NOW_MS)
    assert first == PageRequest(since, 1000, {"until": since + BINANCE_WINDOW_MS})
    full = [trade(500 + i, since + i // 100) for i in range(1000)]
    assert paging.after(first, full, NOW_MS) == PageRequest(None, 1000, {"fromId": "1500"})
    by_id = PageRequest(None, 1000, {"fromId": "1500"})
    assert paging.after(by_id, [trade(1500 + i, since + 10) for i in range(1000)], NOW_MS) == PageRequest(
        None, 1000, {"fromId": "2500"})
    assert paging.after(by_id, [trade(1500, since + 10)], NOW_MS) == CaughtUp()


def test_a_short_binance_page_is_caught_up_only_when_its_hour_reaches_now():
    paging = forward_paging("binance", 1000)
    recent = paging.first(NOW_MS - 5_000, NOW_MS)
    assert paging.after(recent, [trade(7, NOW_MS - 4_000)], NOW_MS) == CaughtUp()
    # a cursor two hours old: the first hour had 3 trades, later hours may have more
    old_since = NOW_MS - 7_200_000
    old = paging.first(old_since, NOW_MS)
    assert paging.after(old, [trade(7, old_since + 1), trade(8, old_since + 2), trade(9, old_since + 3)],
                        NOW_MS) == PageRequest(None, 1000, {"fromId": "10"})
    # an hour without trades, long past: the next hour
    assert paging.after(old, [], NOW_MS) == PageRequest(
        old_since + BINANCE_WINDOW_MS + 1, 1000, {"until": old_since + 2 * BINANCE_WINDOW_MS + 1})


def test_other_exchanges_page_by_time_and_a_full_page_of_one_millisecond_is_stuck():
    paging = forward_paging("bitstamp", 100)
    first = paging.first(1_000, NOW_MS)
    assert first == PageRequest(1_000, 100, {})
    assert paging.after(first, [trade(i, 1_000 + i // 10) for i in range(100)], NOW_MS) == PageRequest(1_009, 100, {})
    assert paging.after(first, [trade(i, 1_000) for i in range(50)], NOW_MS) == CaughtUp()
    assert isinstance(paging.after(first, [trade(i, 1_000) for i in range(100)], NOW_MS), Stuck)


def test_a_page_reaches_the_websockets_trade_when_it_holds_it_or_a_later_millisecond():
    target = trade(105, 2_000)
    assert reaches([trade(104, 1_999), trade(105, 2_000)], target)
    assert reaches([trade(103, 1_999), trade(110, 2_001)], target)
    assert not reaches([trade(103, 1_999), trade(104, 2_000)], target)  # the same ms may hold more
    assert not reaches([], target)
