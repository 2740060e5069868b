"""Wiring of the live brokers (ADR 0022): one ccxt client and :class:`LiveBroker` per live account,
the component that starts their rounds once the service has loaded, and their readiness entry."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

from tradeflow.clock import SYSTEM_CLOCK, Clock
from tradeflow.service import ReadinessCheck
from tradeflow.telemetry import Telemetry
from tradeflow_exchanges.ccxt_client import create_ccxt_exchange, find_exchange
from tradeflow_exchanges.circuit_breaker import CircuitBreaker
from tradeflow_exchanges.reconnect_budget import ReconnectBudget

from tradeflow_execution.adapters.live_broker import LiveBroker, LiveHost, LiveTimings
from tradeflow_execution.live_metrics import LiveMetrics
from tradeflow_execution.settings import ExecutionSettings

log = logging.getLogger(__name__)

# ccxt options a trading client needs on top of the feed's (tradeflow_exchanges defaults).
LIVE_OPTIONS: Mapping[str, Mapping[str, object]] = {
    "binance": {"warnOnFetchOpenOrdersWithoutSymbol": False, "defaultType": "spot", "fetchMargins": False},
}


def create_live_brokers(settings: ExecutionSettings, telemetry: Telemetry,
                        clock: Clock = SYSTEM_CLOCK) -> dict[str, LiveBroker]:
    """The broker of every live account; credentials, sandbox and URLs from its exchange's entry.
    Made, not connected: ccxt opens its session on the first request."""
    metrics = LiveMetrics(telemetry)
    timings = LiveTimings(
        poll_interval_s=settings.live_poll_interval_s, in_flight_interval_s=settings.in_flight_interval_s,
        in_flight_threshold_s=settings.in_flight_threshold_s, in_flight_retries=settings.in_flight_retries,
        request_timeout_s=settings.live_request_timeout_s, fills_lookback_s=settings.fills_lookback_s,
        balance_checks=settings.balance_checks, reconcile_interval_s=settings.reconcile_interval_s,
        user_stream=settings.live_user_stream, stream_poll_interval_s=settings.live_stream_poll_interval_s)
    brokers: dict[str, LiveBroker] = {}
    for account in settings.accounts:
        if account.mode != "live":
            continue
        feed = find_exchange(settings.exchanges, account.exchange)
        if feed is None or feed.api_key is None:
            raise ValueError(f"TRADEFLOW_EXCHANGES: live account {account.id!r} needs api_key and secret in the "
                             f"entry of {account.exchange!r}")
        feed = feed.model_copy(update={"options": {**LIVE_OPTIONS.get(feed.id, {}), **feed.options}})
        exchange = create_ccxt_exchange(feed)
        if exchange.requiredCredentials.get("password") and feed.password is None:
            raise ValueError(f"TRADEFLOW_EXCHANGES: live account {account.id!r} needs password (the API key's "
                             f"passphrase) in the entry of {account.exchange!r}")
        exchange.timeout = int(settings.live_request_timeout_s * 1000)
        exchange.enableLastJsonResponse = True  # an answer ccxt cannot parse is read entry by entry
        symbols = {m.symbol for m in settings.markets if m.exchange == account.exchange} | set(feed.symbols)
        brokers[account.id] = LiveBroker(
            account, exchange, symbols=sorted(symbols), timings=timings, metrics=metrics,
            breaker=CircuitBreaker(feed.breaker_failures, feed.breaker_cool_down_s),
            rate_limit_wait_s=feed.rate_limit_wait_s,
            reconnect_budget=ReconnectBudget(feed.max_reconnects, feed.reconnect_window_s), clock=clock)
    return brokers


class LiveBrokers:
    """Starts every live broker's rounds after the service loaded its state (the first round is the
    account's first reconciliation) and waits up to ``ready_wait_s`` for those reconciliations before
    the consumer starts (an order for an account not reconciled yet is rejected ``account_not_ready``);
    stops them before the service stops."""

    name = "live-brokers"

    def __init__(self, brokers: Mapping[str, LiveBroker], host: LiveHost, ready_wait_s: float = 30.0) -> None:
        self._brokers = dict(brokers)
        self._host = host
        self._ready_wait_s = ready_wait_s

    async def start(self) -> None:
        for broker in self._brokers.values():
            broker.attach(self._host)
            await broker.start()
        waits = [broker.wait_ready(self._ready_wait_s) for broker in self._brokers.values()]
        for account_id, ready in zip(self._brokers, await asyncio.gather(*waits), strict=True):
            if not ready:
                log.warning("live account %s not reconciled after %.0f s (%s): its orders are rejected until it is",
                            account_id, self._ready_wait_s, self._brokers[account_id].last_error)

    async def stop(self) -> None:
        for broker in self._brokers.values():
            await broker.stop()


def live_readiness(brokers: Mapping[str, LiveBroker], host) -> ReadinessCheck:
    """``live-accounts``: ready once every live account's first reconciliation succeeded (an account
    halted by a balance difference is named in the detail; the API stays reachable for its operator)."""

    async def probe() -> tuple[bool, str]:
        waiting = [f"{a}: {b.last_error or 'not reconciled'}" for a, b in sorted(brokers.items()) if not b.ready]
        halted = [f"{a}: halted ({'; '.join(host.mismatch(a))})" for a in sorted(brokers) if host.mismatch(a)]
        if waiting:
            return False, "; ".join(waiting + halted)
        return True, "; ".join([f"{len(brokers)} live accounts reconciled", *halted])

    return ReadinessCheck("live-accounts", probe)
