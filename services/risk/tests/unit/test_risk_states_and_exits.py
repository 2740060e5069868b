"""Account states (loss limits, kill switch, resume, a new day) and protective exits, in event time."""

from __future__ import annotations

from decimal import Decimal as D

import pytest
from tradeflow_risk.domain.account import NS_PER_DAY, AccountControl, Watermark
from tradeflow_risk.domain.limits import RiskLimits
from tradeflow_risk.domain.profiles import ProtectiveRules
from tradeflow_risk.domain.protective import exit_trigger, watermark_after
from tradeflow_risk.domain.states import drawdown_pct, observe_equity, resume, set_kill_switch
from tradeflow_trading.positions import Position

S = 1_000_000_000
DAY0 = 20_514 * NS_PER_DAY  # 2026-03-02 00:00 UTC
T = DAY0 + 10 * 3600 * S


def test_daily_loss_halts_with_the_kill_switch_and_the_next_day_clears_it():
    control, limits = AccountControl(), RiskLimits(max_daily_loss=D(100))
    assert observe_equity(control, limits, D(1000), T) == []
    assert (control.day_start_equity, control.equity_peak) == (D(1000), D(1000))
    assert observe_equity(control, limits, D("900.01"), T + S) == []
    (breach,) = observe_equity(control, limits, D(900), T + 2 * S)
    assert (breach.reason, breach.before, breach.after, breach.kill_switch, breach.breach) == (
        "max_daily_loss", "active", "halted", True, True)
    assert breach.details == {"loss": "100", "limit": "100", "equity": "900", "day_start_equity": "1000",
                              "action": "halt"}
    assert control.kill_switch and control.kill_switch_auto
    assert observe_equity(control, limits, D(800), T + 3 * S) == []  # already broken: said once
    # The next UTC day (of event time) clears the daily limit and the kill switch it engaged.
    (cleared,) = observe_equity(control, limits, D(800), DAY0 + NS_PER_DAY + S)
    assert (cleared.reason, cleared.after, cleared.kill_switch) == ("new_day", "active", False)
    assert control.day_start_equity == D(800) and not control.kill_switch


def test_drawdown_from_the_peak_reduces_when_so_configured_and_only_a_resume_clears_it():
    control, limits = AccountControl(), RiskLimits(max_drawdown_pct=D(10), breach_action="reduce")
    observe_equity(control, limits, D(1000), T)
    observe_equity(control, limits, D(1200), T + S)
    assert drawdown_pct(control, D(1100)) == D(100) / D(12)
    (breach,) = observe_equity(control, limits, D(1080), T + 2 * S)
    assert (breach.reason, breach.after, breach.kill_switch) == ("max_drawdown_pct", "reducing", None)
    assert breach.details["drawdown_pct"] == "10"
    assert observe_equity(control, limits, D(1300), DAY0 + 2 * NS_PER_DAY) == []  # a new day does not clear it
    assert control.state == "reducing"
    change = resume(control, D(1300), "ops")
    assert (change.after, change.details["cleared"]) == ("active", "max_drawdown_pct")
    assert control.equity_peak == D(1300) and resume(control, D(1300), "ops") is None


def test_an_operators_kill_switch_outlives_a_resume():
    control, limits = AccountControl(), RiskLimits(max_daily_loss=D(10))
    observe_equity(control, limits, D(100), T)
    observe_equity(control, limits, D(80), T + S)  # breach: kill switch engaged automatically
    assert set_kill_switch(control, True, "operator") is None and not control.kill_switch_auto  # now the operator's
    change = resume(control, D(80), "ops")
    assert (change.after, change.kill_switch, control.kill_switch) == ("halted", None, True)
    off = set_kill_switch(control, False, "")
    assert (off.before, off.after, off.kill_switch) == ("halted", "active", False)


def position(quantity: str, average: str = "100") -> Position:
    return Position("a", "x", "BTC/USDT", quantity=D(quantity), average_price=D(average), opened_at=T)


@pytest.mark.parametrize(("rules", "prices", "expected"), [
    ({"stop_loss": {"pct": "5"}}, [99, "95.01", 95], ("stop_loss", D(95))),
    ({"stop_loss": {"atr": "2"}}, [92], ("stop_loss", D(92))),
    ({"take_profit": {"pct": "10"}}, [105, 110], ("take_profit", D(110))),
    ({"trailing_stop": {"pct": "10"}}, [120, 130, "117.01", 117], ("trailing_stop", D(117))),
    ({"trailing_stop": {"atr": "3"}, "stop_loss": {"pct": "50"}}, [110, "98.01", 98], ("trailing_stop", D(98))),
])
def test_long_exits_fire_on_the_trade_that_reaches_their_level(rules, prices, expected):
    protective = ProtectiveRules.model_validate(rules)
    pos, watermark, fired = position("2"), None, []
    for price in map(D, map(str, prices)):
        watermark = watermark_after(watermark, pos, price)
        fired.append(exit_trigger(pos, protective, price, watermark, atr=D(4)))
    assert fired[:-1] == [None] * (len(prices) - 1) and fired[-1] == expected


def test_short_positions_mirror_the_levels_and_atr_rules_wait_for_an_atr():
    protective = ProtectiveRules.model_validate({"stop_loss": {"pct": "5"}, "take_profit": {"atr": "2"}})
    short = position("-1")
    watermark = watermark_after(None, short, D(104))
    assert exit_trigger(short, protective, D(104), watermark, atr=None) is None
    assert exit_trigger(short, protective, D(105), watermark, atr=None) == ("stop_loss", D(105))
    assert exit_trigger(short, protective, D(92), watermark, atr=None) is None  # no ATR: no take-profit yet
    assert exit_trigger(short, protective, D(92), watermark, atr=D(4)) == ("take_profit", D(92))


def test_a_watermark_starts_again_with_a_new_position():
    first = watermark_after(None, position("1"), D(120))
    assert first == Watermark(T, D(120), D(100))
    reopened = Position("a", "x", "BTC/USDT", quantity=D(1), average_price=D(90), opened_at=T + S)
    assert watermark_after(first, reopened, D(95)) == Watermark(T + S, D(95), D(90))


def test_exit_distances_take_exactly_one_of_pct_and_atr():
    with pytest.raises(ValueError, match="exactly one"):
        ProtectiveRules.model_validate({"stop_loss": {"pct": "5", "atr": "2"}})
    with pytest.raises(ValueError):
        ProtectiveRules.model_validate({"stop_loss": {"pct": "0"}})
