"""A live account's reconciliation as execution reports it (exec.accounts.v1, ADR 0022): nothing of
the account is approved until execution reports agreement; a mismatch halts it; agreement lifts only
what reconciliation held (an operator's kill switch or a loss limit stays)."""

from __future__ import annotations

from decimal import Decimal as D

from tradeflow_risk.domain import gate
from tradeflow_risk.domain.account import AccountBook, AccountControl
from tradeflow_risk.domain.limits import RiskLimits
from tradeflow_risk.domain.market import MarketData
from tradeflow_risk.domain.market_rules import UNKNOWN_MARKET
from tradeflow_risk.domain.requests import OrderRequest
from tradeflow_risk.domain.states import observe_equity, reconciliation, resume, set_kill_switch
from tradeflow_trading.accounts import AccountConfig

S = 1_000_000_000
T = 1_772_445_600 * S


def live_book(mode: str = "live") -> AccountBook:
    config = AccountConfig(id="a", exchange="x", mode=mode, balances={"USDT": "10000"})
    b = AccountBook(config, "USDT")
    b.control.live = mode == "live"
    return b


def buy(n: int = 0, reduce_only: bool = False) -> OrderRequest:
    return OrderRequest(decision_id=f"d{n}", client_order_id=f"c{n}", account_id="a", exchange="x", symbol="BTC/USDT",
                        side="buy", order_type="market", ts_event=T, quantity=D(1), reduce_only=reduce_only,
                        origin="signal", decision_price=D(100))


def ctx() -> gate.GateContext:
    return gate.GateContext(RiskLimits(), UNKNOWN_MARKET, MarketData("1m", 3, 10), None, "")


def test_a_live_account_is_halted_until_execution_reports_its_first_agreement():
    b = live_book()
    assert b.control.reconciliation == "pending" and b.state == "halted"
    refused = gate.check(buy(), b, ctx())
    assert (refused.reason, refused.details) == ("account_not_reconciled", {"state": "halted",
                                                                            "reconciliation": "pending"})
    assert refused == gate.check(buy(reduce_only=True), b, ctx())  # nothing passes, exits neither
    assert b.control.reasons() == ["account_not_reconciled"]
    change = reconciliation(b.control, "agreed", "ok")
    assert (change.before, change.after, change.reason, change.severity) == ("halted", "active", "reconciled", "info")
    assert not isinstance(gate.check(buy(), b, ctx()), type(refused))
    assert reconciliation(b.control, "agreed", "ok") is None  # said once


def test_a_mismatch_halts_critically_and_agreement_lifts_it():
    b = live_book()
    reconciliation(b.control, "agreed", "")
    change = reconciliation(b.control, "mismatch", "balance BTC: the exchange has 1, the fills give 0")
    assert (change.after, change.reason, change.severity) == ("halted", "reconciliation_mismatch", "critical")
    assert change.details == {"reconciliation": "mismatch", "previous": "agreed"}
    assert b.control.reasons() == ["reconciliation_mismatch: balance BTC: the exchange has 1, the fills give 0"]
    refused = gate.check(buy(), b, ctx())
    assert refused.reason == "account_not_reconciled" and "balance BTC" in refused.message
    # The operator's resume does not lift what only execution can (nothing to resume here).
    assert resume(b.control, D(1000), "ops") is None and b.state == "halted"
    # A newer difference while still mismatched changes the message, not the state.
    assert reconciliation(b.control, "mismatch", "balance BTC: 2 vs 0") is None
    assert b.control.reconciliation_message == "balance BTC: 2 vs 0"
    lifted = reconciliation(b.control, "agreed", "")
    assert (lifted.before, lifted.after) == ("halted", "active")


def test_an_execution_restart_holds_the_account_again_with_a_warning():
    b = live_book()
    reconciliation(b.control, "agreed", "")
    held = reconciliation(b.control, "pending", "execution started")
    assert (held.after, held.reason, held.severity) == ("halted", "account_not_reconciled", "warning")


def test_agreement_never_lifts_an_operators_kill_switch_or_a_loss_limit():
    b = live_book()
    reconciliation(b.control, "mismatch", "d")
    set_kill_switch(b.control, True, "operator")
    change = reconciliation(b.control, "agreed", "")
    assert (change.before, change.after) == ("halted", "halted") and b.control.kill_switch
    assert gate.check(buy(), b, ctx()).reason == "kill_switch"
    control = AccountControl(live=True, reconciliation="agreed")
    observe_equity(control, RiskLimits(max_daily_loss=D(10)), D(100), T)
    observe_equity(control, RiskLimits(max_daily_loss=D(10)), D(80), T + S)
    reconciliation(control, "mismatch", "d")
    assert reconciliation(control, "agreed", "").after == "halted"  # the loss limit's halt stays


def test_a_paper_account_ignores_reconciliation_statuses():
    b = live_book("paper")
    assert b.state == "active" and reconciliation(b.control, "mismatch", "d") is None
    assert b.state == "active" and b.control.reconciliation == "pending"  # untouched, and never read
    assert not hasattr(gate.check(buy(), b, ctx()), "reason")


def test_an_unknown_status_changes_nothing():
    b = live_book()
    assert reconciliation(b.control, "maybe", "") is None and b.control.reconciliation == "pending"
