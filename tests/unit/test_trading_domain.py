"""The pure trading domain: ids, the order state table, positions, balances, the fill rule, accounts."""

from __future__ import annotations

from decimal import Decimal as D

import pytest
from tradeflow.messages import Fill, Order
from tradeflow.settings import CommonSettings, load_settings
from tradeflow_trading.accounts import AccountConfig, AccountsSettings
from tradeflow_trading.fees import FeeSchedule
from tradeflow_trading.fills import FillRule, limit_reached
from tradeflow_trading.ids import (
    client_order_id_for_manual,
    client_order_id_for_protective_exit,
    client_order_id_for_signal,
    is_valid_client_order_id,
    signal_id,
)
from tradeflow_trading.money import quantize_down, to_decimal
from tradeflow_trading.orders import TERMINAL, TRANSITIONS, IllegalTransition, OrderState
from tradeflow_trading.positions import Balances, Position, split_symbol

T0 = 1_700_000_040_000_000_000


def order(**overrides) -> Order:
    fields = dict(client_order_id="c1", account_id="a1", exchange="paper", symbol="BTC/USDT", side="buy",
                  order_type="market", quantity=D("2"), ts_event=T0)
    fields.update(overrides)
    return Order(**fields)


def fill(side: str, quantity: str, price: str, fee: str = "0", n: int = 0, **overrides) -> Fill:
    fields = dict(fill_id=f"f{n}", client_order_id="c1", account_id="a1", exchange="paper", symbol="BTC/USDT",
                  side=side, quantity=D(quantity), price=D(price), fee=D(fee), fee_currency="USDT", ts_event=T0 + n)
    fields.update(overrides)
    return Fill(**fields)


# --- ids ------------------------------------------------------------------------------------

def test_signal_id_is_the_designs_format_with_the_candle_start_in_ms():
    assert signal_id("s1", "binance", "BTC/USDT", "1h", 1_700_000_000_000_000_000, "enter_long") == \
        "s1:binance:BTC/USDT:1h:1700000000000:enter_long"


def test_client_order_ids_are_deterministic_distinct_and_accepted_by_every_exchange():
    sid = signal_id("s1", "binance", "BTC/USDT", "1h", 1_700_000_000_000_000_000, "enter_long")
    ids = {
        client_order_id_for_signal(sid),
        client_order_id_for_signal(sid.replace("enter_long", "exit")),
        client_order_id_for_protective_exit("a1", "binance", "BTC/USDT", T0, "stop_loss"),
        client_order_id_for_protective_exit("a1", "binance", "BTC/USDT", T0, "take_profit"),
        client_order_id_for_manual("a1", "req-1"),
    }
    assert len(ids) == 5
    assert client_order_id_for_signal(sid) == client_order_id_for_signal(sid)
    for value in ids:
        assert is_valid_client_order_id(value) and len(value) == 32 and value.isalnum()  # OKX: alphanumerics only


# --- order states -----------------------------------------------------------------------------

def test_every_terminal_state_refuses_every_move_and_open_states_can_end():
    for terminal in TERMINAL:
        assert TRANSITIONS[terminal] == frozenset()
    assert TERMINAL == {"filled", "canceled", "rejected", "expired"}
    for status in ("submitted", "accepted", "partially_filled"):
        assert {"canceled", "expired"} <= TRANSITIONS[status]


def test_an_order_moves_along_the_table_and_numbers_its_transitions():
    state = OrderState(order(quantity=D("2")))
    state = state.move("accepted", exchange_order_id="x1")
    state = state.fill(D("0.5"), D("100"))
    assert (state.status, state.seq, state.remaining_quantity) == ("partially_filled", 3, D("1.5"))
    state = state.fill(D("1.5"), D("104"))
    assert (state.status, state.seq, state.filled_quantity) == ("filled", 4, D("2"))
    assert state.average_price == D("103")  # (0.5 x 100 + 1.5 x 104) / 2, exact
    event = state.event(T0)
    assert (event.status, event.seq, event.exchange_order_id, event.average_price) == ("filled", 4, "x1", D("103"))


def test_illegal_transitions_are_refused_and_the_state_is_kept():
    canceled = OrderState(order()).move("canceled", reason="user")
    with pytest.raises(IllegalTransition, match="canceled -> filled"):
        canceled.fill(D("2"), D("100"))
    with pytest.raises(IllegalTransition):
        canceled.move("accepted")
    with pytest.raises(ValueError, match="exceed"):
        OrderState(order(quantity=D("1"))).fill(D("1.5"), D("100"))


# --- positions and balances ---------------------------------------------------------------------

def test_position_average_realized_and_unrealized_pnl_are_exact():
    position = Position.fold("a1", "paper", "BTC/USDT", [
        fill("buy", "1", "100.10", "0.1001", 1),
        fill("buy", "3", "100.30", "0.3009", 2),
        fill("sell", "2", "101.00", "0.202", 3),
    ])
    assert position.quantity == D("2")
    assert position.average_price == D("100.25")  # (100.10 + 3 x 100.30) / 4
    assert position.realized_pnl == D("1.50")  # (101.00 - 100.25) x 2
    assert position.fees["USDT"] == D("0.6030")
    assert position.unrealized_pnl(D("99.25")) == D("-2.00")
    assert position.opened_at == T0 + 1


def test_a_fill_that_crosses_zero_closes_one_side_and_opens_the_other_at_its_price():
    position = Position.fold("a1", "paper", "BTC/USDT", [fill("buy", "1", "100", n=1), fill("sell", "3", "110", n=2)])
    assert (position.quantity, position.average_price, position.realized_pnl) == (D("-2"), D("110"), D("10"))
    assert position.opened_at == T0 + 2
    flat = position.apply(fill("buy", "2", "105", n=3))
    assert (flat.quantity, flat.realized_pnl, flat.is_flat, flat.opened_at) == (D("0"), D("20"), True, 0)


def test_balances_follow_the_cash_of_each_fill_and_its_fee():
    balances = Balances.of({"USDT": "1000"})
    balances = balances.apply(fill("buy", "0.5", "1000", "0.5", 1)).apply(fill("sell", "0.25", "1100", "0.275", 2))
    assert balances.get("USDT") == D("1000") - D("500") - D("0.5") + D("275") - D("0.275")
    assert balances.get("BTC") == D("0.25")


def test_symbols_split_into_base_and_quote():
    assert split_symbol("ETH/USDT") == ("ETH", "USDT")
    assert split_symbol("BTC/USDT:USDT") == ("BTC", "USDT")
    with pytest.raises(ValueError):
        split_symbol("BTCUSDT")


# --- the fill rule ---------------------------------------------------------------------------------

def test_market_fill_moves_the_price_against_the_order_and_charges_the_taker_fee():
    rule = FillRule(fees=FeeSchedule(maker=D("0.0002"), taker=D("0.001")), slippage_bps=D("5"))
    buy = rule.market(order(side="buy", quantity=D("2")), D("100"))
    sell = rule.market(order(side="sell", quantity=D("2")), D("100"))
    assert (buy.price, buy.quantity, buy.fee, buy.liquidity) == (D("100.05"), D("2"), D("0.2001"), "taker")
    assert (sell.price, sell.fee) == (D("99.95"), D("0.1999"))


def test_a_quote_sized_market_buy_spends_at_most_its_amount_including_the_fee():
    rule = FillRule(fees=FeeSchedule(maker=D("0.001"), taker=D("0.001")))
    quote = rule.market(order(quantity=None, quote_quantity=D("10000")), D("30000.1"))
    assert quote.quantity == quantize_down(D("10000") / (D("30000.1") * D("1.001")), D("1e-8"))
    assert quote.quantity * quote.price + quote.fee <= D("10000")
    assert D("10000") - (quote.quantity * quote.price + quote.fee) < D("30000.1") * D("1e-8") * D("1.001")
    assert rule.market(order(quantity=None, quote_quantity=D("0.0000001")), D("30000")) is None


def test_a_limit_order_fills_at_its_price_once_a_trade_reaches_it():
    rule = FillRule(fees=FeeSchedule(maker=D("0.0002"), taker=D("0.001")), slippage_bps=D("50"))
    buy = order(order_type="limit", limit_price=D("99.5"), quantity=D("1"))
    assert rule.limit(buy, D("99.6"), resting=True) is None
    hit = rule.limit(buy, D("99.5"), resting=True)
    assert (hit.price, hit.liquidity, hit.fee) == (D("99.5"), "maker", D("0.01990"))  # no slippage on limits
    assert rule.limit(buy, D("98"), resting=False).liquidity == "taker"
    assert limit_reached("sell", D("10"), D("10")) and not limit_reached("sell", D("10"), D("9.99"))


def test_partial_fills_are_capped_by_the_available_volume():
    rule = FillRule(fees=FeeSchedule(D(0), D(0)))
    quote = rule.market(order(quantity=D("5")), D("100"), available=D("1.234567891"))
    assert quote.quantity == D("1.23456789")
    fill_ = FillRule.to_fill(order(), quote, trade_id="t9", ts_event=T0 + 5)
    assert (fill_.fill_id, fill_.fee_currency, fill_.ts_event) == ("c1:t9", "USDT", T0 + 5)


def test_floats_become_the_decimal_they_print_as():
    assert to_decimal(0.1) == D("0.1")
    assert to_decimal(64123.5) == D("64123.5")
    with pytest.raises(ValueError):
        to_decimal(float("nan"))


# --- accounts --------------------------------------------------------------------------------------

class AccountsOnly(CommonSettings, AccountsSettings):
    pass


def test_accounts_come_from_json_with_exact_amounts(monkeypatch):
    monkeypatch.setenv("TRADEFLOW_ACCOUNTS", '[{"id": "paper-1", "exchange": "binance", "mode": "paper", '
                       '"balances": {"USDT": "10000.5", "BTC": 0.1}, "fees": {"maker": 0.0002, "taker": "0.001"}, '
                       '"slippage_bps": 2.5}]')
    settings = load_settings(AccountsOnly)
    account = settings.account("paper-1")
    assert account.balances == {"USDT": D("10000.5"), "BTC": D("0.1")}
    assert (account.fees.maker, account.fees.taker, account.slippage_bps) == (D("0.0002"), D("0.001"), D("2.5"))
    assert account.fill_rule().slipped(D("100"), "buy") == D("100.025")
    assert settings.account("nope") is None


@pytest.mark.parametrize("value, message", [
    ("not json", "TRADEFLOW_ACCOUNTS: must be a JSON list of accounts"),
    ('[{"id": "a", "exchange": "x"}, {"id": "a", "exchange": "y"}]', "account ids must be unique, repeated: a"),
    ('[{"id": "a", "exchange": "x", "balances": {"USDT": "-1"}}]', "balances must not be negative: USDT"),
    ('[{"id": "a", "exchange": "x", "mode": "dry"}]', "TRADEFLOW_ACCOUNTS"),
    ('[{"id": "a", "exchange": "x", "fees": {"taker": "0.5"}}]', "TRADEFLOW_ACCOUNTS"),
])
def test_a_bad_account_list_stops_the_service_naming_the_setting(monkeypatch, value, message):
    monkeypatch.setenv("TRADEFLOW_ACCOUNTS", value)
    with pytest.raises(SystemExit, match=message):
        load_settings(AccountsOnly)


def test_an_account_config_refuses_unknown_fields():
    with pytest.raises(ValueError):
        AccountConfig(id="a", exchange="x", leverage=10)
