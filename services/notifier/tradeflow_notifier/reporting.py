"""The daily report per account, at ``TRADEFLOW_NOTIFIER_REPORT_TIME`` in its time zone.

At start the latest period that has ended is reported (if it was not already: a restart after
the report time catches up, once), then each period when it ends. Accounts reported are those
with fills (they may hold positions) or order events in the period; an account with nothing
to say (no fills, no orders, nothing open) gets no message. The report's event id is
``report:<account>:<period end>``, so several replicas, or a restart, send it once.
"""

from __future__ import annotations

import logging
from datetime import datetime, time
from zoneinfo import ZoneInfo

from tradeflow.clock import SYSTEM_CLOCK, Clock
from tradeflow.service import BackgroundTask
from tradeflow.time import NS_PER_S, datetime_to_ns, ns_to_datetime

from tradeflow_notifier.adapters.trading_facts import TradingFacts
from tradeflow_notifier.domain.daily_report import daily_report
from tradeflow_notifier.domain.events import Notification
from tradeflow_notifier.domain.report_schedule import last_period_end, next_period_end, period_start
from tradeflow_notifier.intake import Intake

log = logging.getLogger(__name__)
MAX_SLEEP_S = 60.0  # wake at least this often: clock changes and suspends do not delay a report long
RETRY_S = 30.0


def _ns(moment: datetime) -> int:
    return datetime_to_ns(moment) // NS_PER_S * NS_PER_S  # whole seconds


class DailyReports(BackgroundTask):
    name = "daily-reports"

    def __init__(self, facts: TradingFacts, intake: Intake, at: time, zone: ZoneInfo,
                 clock: Clock = SYSTEM_CLOCK) -> None:
        super().__init__()
        self._facts = facts
        self._intake = intake
        self._at = at
        self._zone = zone
        self._clock = clock
        self._reported_until: datetime | None = None

    async def run(self) -> None:
        while True:
            end = last_period_end(self._now(), self._at, self._zone)
            if self._reported_until != end:
                try:
                    await self.send_reports(end)
                    self._reported_until = end
                except Exception:  # noqa: BLE001 - the database may be away: try again soon
                    log.exception("daily reports for the period ending %s failed; retrying", end.isoformat())
                    await self._clock.sleep(RETRY_S)
                    continue
            wait_s = (next_period_end(self._now(), self._at, self._zone) - self._now()).total_seconds()
            await self._clock.sleep(min(MAX_SLEEP_S, max(0.05, wait_s)))

    def _now(self) -> datetime:
        return ns_to_datetime(self._clock.now_ns())

    async def send_reports(self, end: datetime) -> int:
        """The reports of the period ending at ``end`` (UTC); the number of deliveries stored."""
        start_ns, end_ns = _ns(period_start(end, self._at, self._zone)), _ns(end)
        stored = 0
        for account_id in await self._facts.active_accounts(start_ns, end_ns):
            report = daily_report(account_id, await self._facts.fills(account_id, end_ns),
                                  await self._facts.order_events(account_id, start_ns, end_ns), start_ns, end_ns)
            if report.is_empty:
                continue
            notification = Notification(f"report:{account_id}:{end.isoformat()}", "report", "daily", "info", end_ns,
                                        account_id, payload=report)
            stored += await self._intake.accept_notification(notification)
        if stored:
            log.info("daily reports of the period ending %s: %d deliveries", end.isoformat(), stored)
        return stored
