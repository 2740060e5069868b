"""Account states: ``active``, ``reducing`` (only what reduces passes), ``halted`` (nothing passes).

An account is halted while its kill switch is engaged or a loss limit broke with the action
``halt``; reducing while a loss limit broke with the action ``reduce``; active otherwise.

- ``max_daily_loss``: equity (marked to market) at or below the equity at the start of the UTC
  day (of the account's event time) minus the limit. Cleared by the next day, or by a resume.
- ``max_drawdown_pct``: equity at or below its peak less the percentage. Cleared only by a resume.
- A ``halt`` breach engages the kill switch (execution cancels the open orders); a resume
  disengages a kill switch that a breach engaged, never one an operator engaged.
- A resume (the operator) starts the day's loss and the peak from the current equity, so the
  same breach does not fire again at once; nothing resumes an account by itself the same day.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from tradeflow_risk.domain import reasons
from tradeflow_risk.domain.account import NS_PER_DAY, AccountControl, Breach, TradingState
from tradeflow_risk.domain.limits import RiskLimits
from tradeflow_risk.domain.reasons import text

HUNDRED = Decimal(100)


@dataclass(frozen=True, slots=True)
class StateChange:
    """What changed and why; the service turns it into RiskEvents (and persists the control)."""

    before: TradingState
    after: TradingState
    reason: str
    message: str
    kill_switch: bool | None = None  # the kill switch was engaged (True) or disengaged (False) by this change
    breach: bool = False  # a limit broke (RiskEvent kind limit_breach)
    details: dict[str, str] = field(default_factory=dict)
    severity: str | None = None  # the RiskEvent's severity when not the one of the state after


def drawdown_pct(control: AccountControl, equity: Decimal) -> Decimal:
    peak = control.equity_peak
    if peak is None or peak <= 0 or equity >= peak:
        return Decimal(0)
    return (peak - equity) / peak * HUNDRED


def daily_pnl(control: AccountControl, equity: Decimal) -> Decimal:
    return equity - control.day_start_equity if control.day_start_equity is not None else Decimal(0)


def _engage_for(control: AccountControl, breach: Breach) -> bool:
    if breach.action == "halt" and not control.kill_switch:
        control.kill_switch, control.kill_switch_reason, control.kill_switch_auto = True, breach.reason, True
        return True
    return False


def _release_auto_kill_switch(control: AccountControl) -> bool:
    if control.kill_switch and control.kill_switch_auto and not any(
            b.action == "halt" for b in control.breaches.values()):
        control.kill_switch, control.kill_switch_reason, control.kill_switch_auto = False, "", False
        return True
    return False


def observe_equity(control: AccountControl, limits: RiskLimits, equity: Decimal, ts_event: int) -> list[StateChange]:
    """The account's equity at its event time ``ts_event``: new day, new peak, broken loss limits."""
    changes: list[StateChange] = []
    day = ts_event // NS_PER_DAY
    if control.day is None or control.day_start_equity is None:
        control.day, control.day_start_equity = day, equity
    elif day > control.day:
        control.day, control.day_start_equity = day, equity
        if reasons.MAX_DAILY_LOSS in control.breaches:
            before = control.state
            del control.breaches[reasons.MAX_DAILY_LOSS]
            released = _release_auto_kill_switch(control)
            changes.append(StateChange(before, control.state, reasons.NEW_DAY,
                                       "a new UTC day: the daily loss limit is cleared",
                                       kill_switch=False if released else None))
    if control.equity_peak is None or equity > control.equity_peak:
        control.equity_peak = equity

    loss = -daily_pnl(control, equity)
    if (limits.max_daily_loss is not None and loss >= limits.max_daily_loss
            and reasons.MAX_DAILY_LOSS not in control.breaches):
        message = f"daily loss {text(loss)} reached max_daily_loss {text(limits.max_daily_loss)}"
        changes.append(_breach(control, limits, reasons.MAX_DAILY_LOSS, message, ts_event,
                               loss=text(loss), limit=text(limits.max_daily_loss), equity=text(equity),
                               day_start_equity=text(control.day_start_equity)))
    drawdown = drawdown_pct(control, equity)
    if (limits.max_drawdown_pct is not None and drawdown >= limits.max_drawdown_pct
            and reasons.MAX_DRAWDOWN_PCT not in control.breaches):
        shown = drawdown.quantize(Decimal("0.01"))
        message = f"drawdown {shown}% reached max_drawdown_pct {text(limits.max_drawdown_pct)}%"
        changes.append(_breach(control, limits, reasons.MAX_DRAWDOWN_PCT, message, ts_event,
                               drawdown_pct=text(shown), limit=text(limits.max_drawdown_pct), equity=text(equity),
                               equity_peak=text(control.equity_peak)))
    return changes


def _breach(control: AccountControl, limits: RiskLimits, reason: str, message: str, ts_event: int,
            **details: str) -> StateChange:
    before = control.state
    breach = Breach(reason, limits.breach_action, message, ts_event)
    control.breaches[reason] = breach
    engaged = _engage_for(control, breach)
    return StateChange(before, control.state, reason, message, kill_switch=True if engaged else None, breach=True,
                       details={**details, "action": limits.breach_action})


def resume(control: AccountControl, equity: Decimal, note: str) -> StateChange | None:
    """The operator resumes: breaches cleared, baselines restarted at ``equity``; None when nothing to do."""
    if not control.breaches and not (control.kill_switch and control.kill_switch_auto):
        return None
    before = control.state
    cleared = sorted(control.breaches)
    control.breaches.clear()
    released = _release_auto_kill_switch(control)
    control.day_start_equity = equity
    control.equity_peak = equity
    message = f"resumed by the operator ({note})" if note else "resumed by the operator"
    return StateChange(before, control.state, reasons.OPERATOR, message, kill_switch=False if released else None,
                       details={"cleared": ",".join(cleared), "equity": text(equity)})


def set_kill_switch(control: AccountControl, engaged: bool, reason: str) -> StateChange | None:
    """The operator engages or disengages the kill switch; None when it already is so."""
    if control.kill_switch == engaged:
        if engaged and control.kill_switch_auto:
            control.kill_switch_auto = False  # an operator now owns it: a resume must not release it
        return None
    before = control.state
    control.kill_switch, control.kill_switch_reason, control.kill_switch_auto = engaged, reason if engaged else "", False
    word = "engaged" if engaged else "disengaged"
    return StateChange(before, control.state, reasons.KILL_SWITCH, f"kill switch {word}: {reason}".rstrip(": "),
                       kill_switch=engaged)


RECONCILIATION_STATUSES = ("pending", "agreed", "mismatch")


def reconciliation(control: AccountControl, status: str, message: str) -> StateChange | None:
    """Execution's newest reconciliation status of a live account (ADR 0022); the state change it
    makes, None when the status did not change (or the account is paper, or the status unknown).

    ``mismatch`` halts the account (critical) and ``pending`` (execution restarted) holds it until
    the next ``agreed``; ``agreed`` lifts only what reconciliation held: a kill switch or a loss
    limit keeps the account where it is.
    """
    if not control.live or status not in RECONCILIATION_STATUSES:
        return None
    previous = control.reconciliation
    control.reconciliation_message = message
    if status == previous:
        return None
    before = control.state
    control.reconciliation = status
    if status == "mismatch":
        reason, severity = reasons.RECONCILIATION_MISMATCH, "critical"
        text_ = f"execution found the exchange's balances differ from the fills: {message}".rstrip(": ")
    elif status == "pending":
        reason, severity = reasons.ACCOUNT_NOT_RECONCILED, "warning"
        text_ = "execution has not reconciled the account since its start: nothing is approved until it has"
    else:
        reason, severity = reasons.RECONCILED, "info"
        text_ = "execution reconciled the account: the exchange agrees with the fills"
    return StateChange(before, control.state, reason, text_,
                       details={"reconciliation": status, "previous": previous}, severity=severity)
