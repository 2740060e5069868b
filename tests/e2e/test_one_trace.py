"""End to end: one trace from the trade to the notification (docs/adr/0023).

Five services run as processes (``tradeflow run``), and ``tradeflow replay`` publishes a small
replay file, all exporting OTLP/HTTP to an in-process receiver. The file makes an ``sma_cross``
(fast 2, slow 3) enter long on one candle; risk approves the order, execution fills it on the
next trade (paper), and the notifier delivers the fill to a webhook. The fill's delivery span
must lead, parent by parent, back to the replay's publishing span:

ingest publish (replay) -> candle-builder candle -> strategy signal -> risk decide ->
execution order -> execution fill -> notifier deliver webhook

with the decisions on the spans (risk's decision, the fill price, the delivery outcome); the
strategy's call to the candle-builder's API and its JSON log lines are in the same trace.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
import pytest
from tradeflow.admin import ensure_topics
from tradeflow.messages import Fill
from tradeflow.topics import (
    EXEC_FILLS,
    EXEC_ORDERS,
    MD_CANDLES,
    MD_TICKS,
    RISK_EVENTS,
    RISK_ORDERS,
    STRATEGY_SIGNALS,
)

from tests.e2e.service_process import BIN, ServiceProcess, free_port
from tests.fakes.fake_notification_receivers import FakeReceivers
from tests.fakes.otlp_receiver import OtlpReceiver
from tests.trading_topics import read_topic

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

START = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
# Minute closes 100, 99, 98, 97, 101: with fast 2 / slow 3 the means cross upwards on the 10:04
# candle (F 99 > S 98.67, F 97.5 <= S 98 before) and nowhere else; minute 10:05 (rising on)
# holds the trade the order fills at (the first at or after 10:05:00) and closes the 10:04 one.
CLOSES = [100, 99, 98, 97, 101, 102, 102.5]
FILL_PRICE = Decimal("101.5")

CHAIN = [("replay", "ingest publish"), ("candle-builder", "candle-builder candle"), ("strategy", "strategy signal"),
         ("risk", "risk decide"), ("execution", "execution order"), ("execution", "execution fill"),
         ("notifier", "notifier deliver webhook")]


def write_replay(path, exchange: str, symbol: str) -> None:
    lines = ["ts,exchange,symbol,price,amount,side,trade_id"]
    n = 0
    for minute, close in enumerate(CLOSES):
        base = START + timedelta(minutes=minute)
        prices = [close + 0.5, close - 0.5, close]
        seconds = [10, 30, 50]
        if minute == 5:
            prices, seconds = [float(FILL_PRICE), close + 0.25, close], [1, 30, 50]
        for second, price in zip(seconds, prices, strict=True):
            n += 1
            ms = int((base + timedelta(seconds=second)).timestamp() * 1000)
            lines.append(f"{ms},{exchange},{symbol},{price},0.5,buy,t{n}")
    path.write_text("\n".join(lines) + "\n")


async def test_one_trace_runs_from_the_trade_to_the_notification(service_env, api_key, unique_name, tmp_path):
    bootstrap = service_env["TRADEFLOW_KAFKA_BOOTSTRAP"]
    u = unique_name[-8:]
    exchange, symbol, account = f"trace{u}", "BTC/USDT", f"trace-{u}"
    topics = {spec.name: f"{spec.name}-{unique_name}"
              for spec in (MD_TICKS, MD_CANDLES, STRATEGY_SIGNALS, RISK_ORDERS, RISK_EVENTS, EXEC_ORDERS, EXEC_FILLS)}
    await ensure_topics(bootstrap, [dataclasses.replace(spec, name=topics[spec.name]) for spec in (
        MD_TICKS, MD_CANDLES, STRATEGY_SIGNALS, RISK_ORDERS, RISK_EVENTS, EXEC_ORDERS, EXEC_FILLS)])
    otlp = await OtlpReceiver().start()
    receivers = await FakeReceivers().start()
    webhook = receivers.channels(prefix=f"t{u}-")["webhook"]
    ports = {name: free_port() for name in ("candle-builder", "strategy", "risk", "execution", "notifier")}
    common = {**os.environ, **service_env, "TRADEFLOW_LOG_FORMAT": "json",
              "TRADEFLOW_OTLP_ENDPOINT": otlp.endpoint, "TRADEFLOW_TRACE_SAMPLER": "parentbased_traceidratio",
              "TRADEFLOW_TRACE_SAMPLE_RATIO": "1.0", "OTEL_BSP_SCHEDULE_DELAY": "200",
              "TRADEFLOW_CANDLE_BUILDER_URL": f"http://127.0.0.1:{ports['candle-builder']}",
              "TRADEFLOW_ACCOUNTS": json.dumps([{"id": account, "exchange": exchange, "mode": "paper",
                                                 "balances": {"USDT": "10000"},
                                                 "fees": {"maker": "0.001", "taker": "0.001"}, "slippage_bps": 0}])}
    own = {
        "candle-builder": {"TICKS_TOPIC": topics["md.ticks.v1"], "CANDLES_TOPIC": topics["md.candles.v1"],
                           "TICK_RETENTION_DAYS": "36500"},
        "strategy": {"TOPIC_CANDLES": topics["md.candles.v1"], "TOPIC_FILLS": topics["exec.fills.v1"],
                     "TOPIC_SIGNALS": topics["strategy.signals.v1"], "INSTANCE_REFRESH_S": "0.2"},
        "risk": {"SIGNALS_TOPIC": topics["strategy.signals.v1"], "EXEC_ORDERS_TOPIC": topics["exec.orders.v1"],
                 "EXEC_FILLS_TOPIC": topics["exec.fills.v1"], "CANDLES_TOPIC": topics["md.candles.v1"],
                 "TICKS_TOPIC": topics["md.ticks.v1"], "ORDERS_TOPIC": topics["risk.orders.v1"],
                 "EVENTS_TOPIC": topics["risk.events.v1"]},
        "execution": {"ORDERS_TOPIC": topics["risk.orders.v1"], "RISK_EVENTS_TOPIC": topics["risk.events.v1"],
                      "TICKS_TOPIC": topics["md.ticks.v1"], "ORDER_EVENTS_TOPIC": topics["exec.orders.v1"],
                      "FILLS_TOPIC": topics["exec.fills.v1"]},
        "notifier": {"ORDERS_TOPIC": topics["exec.orders.v1"], "FILLS_TOPIC": topics["exec.fills.v1"],
                     "RISK_TOPIC": topics["risk.events.v1"], "ALERTS_TOPIC": f"ops.alerts.v1-{unique_name}",
                     "CHANNELS": json.dumps([webhook]),
                     "ROUTES": json.dumps([{"channel": webhook["id"], "events": ["fill"]}]),
                     "POLL_INTERVAL_S": "0.1"},
    }
    services = {}
    for name, port in ports.items():
        prefix = f"TRADEFLOW_{name.upper().replace('-', '_')}_"
        env = {**common, "TRADEFLOW_HTTP_PORT": str(port), f"{prefix}CONSUMER_GROUP": f"{name}-{unique_name}",
               **{prefix + key: value for key, value in own[name].items()}}
        services[name] = ServiceProcess(name, env, port, tmp_path / f"{name}.log")
    try:
        for service in services.values():
            service.start()
        async with httpx.AsyncClient(headers={"Authorization": f"Bearer {api_key}"}) as client:
            for service in services.values():
                await service.wait_ready(client, 90)
            strategy = services["strategy"].base
            created = await client.post(f"{strategy}/v1/strategies", json={
                "id": f"sma-{u}", "strategy": "sma_cross", "account_id": account, "exchange": exchange,
                "symbols": [symbol], "timeframe": "1m", "params": {"fast": 2, "slow": 3}, "enabled": True})
            assert created.status_code == 201, created.text
            for _ in range(150):  # the engine applies instances by polling: until it runs ours
                metrics = (await client.get(f"{strategy}/metrics")).text
                if 'tradeflow_strategy_instances{state="running"} 1.0' in metrics:
                    break
                await asyncio.sleep(0.2)
            else:
                raise AssertionError("the strategy engine did not start the instance")

            replay_file = tmp_path / "trades.csv"
            write_replay(replay_file, exchange, symbol)
            # Not subprocess.run: the receiver runs on this event loop and must answer the replay's export.
            replay = await asyncio.create_subprocess_exec(
                str(BIN / "tradeflow"), "replay", str(replay_file), "--topic", topics["md.ticks.v1"], env=common,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
            out, err = await asyncio.wait_for(replay.communicate(), 60)
            assert replay.returncode == 0, err.decode()[-3000:]
            assert f"published {len(CLOSES) * 3} ticks" in out.decode()

            [fill] = await read_topic(bootstrap, topics["exec.fills.v1"], Fill, lambda m: len(m) >= 1, timeout_s=90)
            assert fill.price == FILL_PRICE and fill.account_id == account
            await receivers.wait_for(lambda r: len(r.by_service("webhook")) >= 1, 30)

            def delivered(receiver: OtlpReceiver) -> bool:
                return any(s.name == "notifier deliver webhook" and s.attributes.get("tradeflow.channel.id")
                           == webhook["id"] for s in receiver.spans)

            await otlp.wait_for(delivered, 30, "the delivery span")
            [delivery] = [s for s in otlp.spans if s.name == "notifier deliver webhook"
                          and s.attributes["tradeflow.channel.id"] == webhook["id"]]

            def chain_complete(receiver: OtlpReceiver) -> bool:
                return len(receiver.ancestry(delivery)) >= len(CHAIN)

            await otlp.wait_for(chain_complete, 30, "every span of the chain")
            chain = otlp.ancestry(delivery)
            assert [(s.service, s.name) for s in chain] == CHAIN, [(s.service, s.name, s.span_id, s.parent_span_id)
                                                                   for s in chain]
            assert len({s.trace_id for s in chain}) == 1 and chain[0].parent_span_id == ""
            publish, candle, signal, decide, order, filled, deliver = chain
            assert publish.attributes["tradeflow.exchange"] == exchange
            assert publish.attributes["messaging.destination.name"] == topics["md.ticks.v1"]
            assert candle.attributes["tradeflow.market"] == f"{exchange}:{symbol}"
            assert candle.attributes["tradeflow.candle.close_trade_traced"] is True
            assert signal.attributes["tradeflow.strategy.instance"] == f"sma-{u}"
            assert decide.attributes["tradeflow.risk.decision"] == "approved"
            assert decide.attributes["tradeflow.outcome"] == "approved"
            assert decide.attributes["tradeflow.client_order_id"] == fill.client_order_id
            assert order.attributes["tradeflow.client_order_id"] == fill.client_order_id
            assert filled.attributes["tradeflow.fill.price"] == str(fill.price)
            assert filled.attributes["tradeflow.fill.fee"] == str(fill.fee)
            assert deliver.attributes["tradeflow.delivery.outcome"] == "delivered"
            assert deliver.attributes["tradeflow.event.kind"] == "fill"

            # The strategy's warm-up call to the candle-builder carries the trace too: the
            # candle-builder's request span is in the same trace, under a strategy span.
            trace_id = publish.trace_id

            def warm_up_requests(receiver: OtlpReceiver) -> list:
                return [s for s in receiver.spans if s.service == "candle-builder" and s.name == "GET /v1/candles"
                        and s.trace_id == trace_id]

            def warm_up_with_parent(receiver: OtlpReceiver) -> bool:
                # Each service exports on its own schedule: the strategy's span may come later.
                spans = receiver.by_id()
                return any(s.parent_span_id in spans for s in warm_up_requests(receiver))

            await otlp.wait_for(warm_up_with_parent, 30, "the warm-up request and the strategy span above it")
            spans = otlp.by_id()
            [warm_up] = warm_up_requests(otlp)
            assert spans[warm_up.parent_span_id].service == "strategy"
            # ... and the services' JSON log lines written inside the trace carry its id
            lines = [json.loads(line) for line in services["strategy"].log.read_text().splitlines()
                     if line.startswith("{")]
            in_trace = [line for line in lines if line.get("trace_id") == trace_id]
            assert any("warmed up" in line["message"] for line in in_trace), lines[-20:]
            assert all(line["service"] == "strategy" and len(line["span_id"]) == 16 for line in in_trace)
    finally:
        for service in services.values():
            if service.proc is not None:
                service.stop()
        await receivers.stop()
        await otlp.stop()
