"""Signals to order requests (sizing, exits, targets, bad input) and what an account book folds."""

from __future__ import annotations

from decimal import Decimal as D

import pytest
from tradeflow.messages import Fill, OrderEvent, Signal
from tradeflow_risk.domain import requests
from tradeflow_risk.domain.account import AccountBook
from tradeflow_risk.domain.market_rules import UNKNOWN_MARKET, MarketRules
from tradeflow_risk.domain.reasons import Rejection
from tradeflow_trading.accounts import AccountConfig
from tradeflow_trading.ids import client_order_id_for_protective_exit, client_order_id_for_signal
from tradeflow_trading.sizing import FractionOfCash, VolatilityTarget

S = 1_000_000_000
T = 1_772_445_600 * S


def book(cash: str = "1000", **balances: str) -> AccountBook:
    config = AccountConfig(id="a", exchange="x", balances={"USDT": cash, **balances}, fees={"maker": "0", "taker": "0"})
    return AccountBook(config, "USDT")


def signal(intent: str = "enter_long", quantity: str | None = None, price: str | None = "100", ts: int = T,
           **extra) -> Signal:
    return Signal(signal_id=f"inst:x:BTC/USDT:1m:{ts // 1_000_000}:{intent}", account_id="a", strategy_id="inst",
                  exchange="x", symbol="BTC/USDT", intent=intent, quantity=D(quantity) if quantity else None,
                  price=D(price) if price else None, ts_event=ts, **extra)


def fill(side: str, quantity: str, price: str = "100", order: str = "o", n: int = 0, strategy: str = "inst") -> Fill:
    return Fill(fill_id=f"f{n}", client_order_id=order, account_id="a", exchange="x", symbol="BTC/USDT", side=side,
                quantity=D(quantity), price=D(price), fee=D("0.1"), fee_currency="USDT", strategy_id=strategy,
                ts_event=T + n)


def sized(method, equity: str = "1000", atr: str | None = None) -> requests.SizingContext:
    return requests.SizingContext(method, D(equity), D(atr) if atr else None, None)


def test_an_entry_without_quantity_is_sized_all_cash_by_default_as_a_quote_sized_market_buy():
    result = requests.from_signal(signal(), book(), None, UNKNOWN_MARKET, sized(FractionOfCash()))
    assert (result.side, result.order_type, result.quote_quantity, result.quantity) == ("buy", "market", D(1000), None)
    assert result.client_order_id == client_order_id_for_signal(signal().signal_id)
    assert (result.decision_price, result.ts_event, result.reduce_only) == (D(100), T, False)
    short = requests.from_signal(signal("enter_short"), book(), None, MarketRules(amount_step=D("0.1")),
                                 sized(VolatilityTarget(risk_fraction=D("0.01"), atr_multiple=D(3)), atr="1.5"))
    assert (short.side, short.quantity) == ("sell", D("2.2"))  # 10 / 4.5, cut to 0.1
    failed = requests.from_signal(signal(), book(), None, UNKNOWN_MARKET, sized(VolatilityTarget(risk_fraction=D("0.01"))))
    assert isinstance(failed, Rejection) and failed.reason == "sizing_failed"


def test_an_entry_below_the_markets_minimum_size_is_rejected_not_approved():
    """The second entry of a holding account, sized from the cash an all-cash buy left (less
    than one quantity step at the price), could never fill: below_minimum_size, with its numbers."""
    holding = book("0.0004", BTC="0.15")
    dust = requests.from_signal(signal(price="64000"), holding, None, UNKNOWN_MARKET, sized(FractionOfCash()))
    assert isinstance(dust, Rejection) and dust.reason == "below_minimum_size"
    assert dust.message == ("fraction_of_cash: a buy of 0.0004 quote is less than one quantity step (0.00000001) "
                            "at 64000")
    assert dust.details == {"method": "fraction_of_cash", "equity": "1000", "free_cash": "0.0004",
                            "quote_quantity": "0.0004", "price": "64000", "step": "0.00000001"}
    # The same cash buys one step at a lower price: approved.
    assert requests.from_signal(signal(price="40000"), holding, None, UNKNOWN_MARKET,
                                sized(FractionOfCash())).quote_quantity == D("0.0004")
    # Where the exchange's markets are known: their minimum quantity and minimum notional too.
    rules = MarketRules(amount_step=D("0.00001"), min_amount=D("0.0001"), min_cost=D(5))
    small = requests.from_signal(signal(price="64000"), book("4"), None, rules, sized(FractionOfCash()))
    assert (small.reason, small.details["min_cost"]) == ("below_minimum_size", "5")
    assert "below the market's minimum quantity 0.0001" in small.message  # 4 / 64000 = 0.0000625
    assert requests.from_signal(signal(price="64000"), book("10"), None, rules, sized(FractionOfCash())).quote_quantity == D(10)
    # A short entry whose quantity rounds to nothing at the step is the same refusal.
    tiny = requests.from_signal(signal("enter_short", price="64000"), book("50", BTC="1"), None,
                                MarketRules(amount_step=D("0.001")), sized(FractionOfCash()))
    assert (tiny.reason, tiny.details["step"]) == ("below_minimum_size", "0.001")


def test_an_exit_sells_the_whole_position_less_exits_already_on_their_way():
    b = book()
    b.apply_fill(fill("buy", "3"))
    result = requests.from_signal(signal("exit"), b, None, UNKNOWN_MARKET, None)
    assert (result.side, result.quantity, result.reduce_only) == ("sell", D(3), True)
    b.track(result.to_order())
    again = requests.from_signal(signal("exit", ts=T + 60 * S), b, None, UNKNOWN_MARKET, None)
    assert again.reason == "nothing_to_exit"


def test_a_target_moves_the_position_and_says_when_it_only_reduces():
    b = book()
    b.apply_fill(fill("buy", "3"))
    down = requests.from_signal(signal("target", target_quantity=D(1)), b, None, UNKNOWN_MARKET, None)
    assert (down.side, down.quantity, down.reduce_only) == ("sell", D(2), True)
    up = requests.from_signal(signal("target", target_quantity=D(5)), b, None, UNKNOWN_MARKET, None)
    assert (up.side, up.quantity, up.reduce_only) == ("buy", D(2), False)
    across = requests.from_signal(signal("target", target_quantity=D(-1)), b, None, UNKNOWN_MARKET, None)
    assert (across.side, across.quantity, across.reduce_only) == ("sell", D(4), False)
    assert requests.from_signal(signal("target", target_quantity=D(3)), b, None, UNKNOWN_MARKET, None).reason == \
        "nothing_to_exit"
    assert requests.from_signal(signal("target"), b, None, UNKNOWN_MARKET, None).reason == "invalid_order"


def test_bad_signals_are_rejected_with_a_reason():
    b = book()
    assert requests.from_signal(signal(quantity="-1"), b, None, UNKNOWN_MARKET, None).reason == "invalid_quantity"
    assert requests.from_signal(signal(quantity="0"), b, None, UNKNOWN_MARKET, None).reason == "invalid_quantity"
    assert requests.from_signal(signal(quantity="1", price=None), b, None, UNKNOWN_MARKET, None).reason == "no_price"
    assert requests.from_signal(signal(quantity="1", price=None), b, D(99), UNKNOWN_MARKET, None).decision_price == D(99)
    assert requests.symbol_problem("y", "BTC/USDT", b, None).reason == "unknown_symbol"
    assert requests.symbol_problem("x", "BTCUSDT", b, None).reason == "unknown_symbol"
    assert requests.symbol_problem("x", "DOGE/USDT", b, frozenset({"BTC/USDT"})).details == {
        "symbol": "DOGE/USDT", "exchange": "x"}
    assert requests.symbol_problem("x", "BTC/USDT", b, None) is None
    assert requests.manual("a", "r", "x", "BTC/USDT", "buy", "limit", D(1), None, T, None).reason == "invalid_order"


def test_a_protective_exit_has_one_id_per_position_and_trigger():
    b = book()
    b.apply_fill(fill("buy", "2", n=7))
    position = b.position("BTC/USDT")
    request = requests.protective_exit(b, position, "stop_loss", D(95), T + 9, "inst")
    assert request.client_order_id == client_order_id_for_protective_exit("a", "x", "BTC/USDT", T + 7, "stop_loss")
    assert (request.quantity, request.side, request.origin, request.reduce_only) == (D(2), "sell", "protective", True)


def event(status: str, seq: int, filled: str = "0", order: str = "o") -> OrderEvent:
    return OrderEvent(client_order_id=order, account_id="a", exchange="x", symbol="BTC/USDT", side="buy", status=status,
                      seq=seq, filled_quantity=D(filled), ts_event=T)


@pytest.mark.parametrize("fill_first", [True, False])
def test_a_market_order_blocks_until_terminal_and_all_its_fills_are_applied(fill_first):
    b = book()
    order = requests.from_signal(signal(quantity="2"), b, None, UNKNOWN_MARKET, None).to_order()
    b.track(order)
    cid = order.client_order_id
    assert b.blocking_order() == cid
    b.apply_order_event(event("submitted", 1, order=cid))
    assert not b.apply_order_event(event("submitted", 1, order=cid))  # seen: applied once
    first, second = fill("buy", "1.5", order=cid, n=1), fill("buy", "0.5", order=cid, n=2)
    b.apply_fill(first)
    if fill_first:
        b.apply_fill(second)
        assert b.blocking_order() == cid  # all filled, not terminal yet
        b.apply_order_event(event("filled", 3, "2", order=cid))
    else:
        b.apply_order_event(event("filled", 3, "2", order=cid))
        assert b.blocking_order() == cid  # terminal, one fill still to come
        b.apply_fill(second)
    assert b.blocking_order() is None and b.orders == {}
    assert b.position("BTC/USDT").quantity == D(2) and b.balances.get("USDT") == D("799.8")


def test_closed_trades_feed_the_loss_streak_and_the_kelly_statistics():
    b = book()
    b.apply_fill(fill("buy", "1", "100", n=1))
    closed = [b.apply_fill(fill("sell", "1", "90", n=2))]
    b.apply_fill(fill("buy", "2", "100", n=3))
    closed.append(b.apply_fill(fill("sell", "2", "130", n=4)))
    assert [(c.pnl, c.strategy_id) for c in closed] == [(D("-10.2"), "inst"), (D("59.8"), "inst")]
    stats = b.stats["inst"]
    assert (stats.wins, stats.losses, stats.win_rate, stats.payoff_ratio) == (1, 1, D("0.5"), D("59.8") / D("10.2"))
    assert b.loss_streak == 0


def test_equity_counts_every_currency_at_its_mark():
    b = book(cash="1000", BTC="0.5", DOGE="1000")
    b.apply_fill(fill("buy", "1", "100"))
    marks = {"BTC/USDT": D(120)}
    assert b.equity(marks.get) == D("899.9") + D("1.5") * 120  # DOGE has no mark: counted 0
    assert b.equity(lambda s: None) == D("899.9") + D("1.5") * 100  # no mark: the position's average price


def test_the_rate_window_keeps_only_the_last_minute_of_event_time():
    b = book()
    for seconds in [0, 30, 59, 61, 200]:
        b.track(requests.from_signal(signal(quantity="1", ts=T + seconds * S), b, None, UNKNOWN_MARKET, None).to_order())
    assert b.orders_in_window(T + 200 * S) == 1 and b.order_times == [T + 200 * S]
