"""A candle continues the trace of its close trade (docs/adr/0023), through the running
candle-builder: the last trade by event time, not the last to arrive nor the one that closed it."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime

import pytest
from tradeflow.admin import ensure_topics
from tradeflow.bus import Producer
from tradeflow.codec import decode, header_value
from tradeflow.messages import Candle, Tick
from tradeflow.settings import CommonSettings
from tradeflow.telemetry import Telemetry
from tradeflow.topics import MD_CANDLES, MD_TICKS, market_key
from tradeflow_candle_builder.settings import CandleBuilderSettings

from tests.fakes.otlp_receiver import OtlpReceiver
from tests.integration.candle_builder_app import running_candle_builder, written_through
from tests.integration.test_candle_builder_service import consume

pytestmark = pytest.mark.integration
S = 1_000_000_000
T0 = int(datetime(2026, 3, 2, 10, 0, tzinfo=UTC).timestamp()) * S


def traceparent(n: int, sampled: bool = True) -> str:
    return f"00-{n:032x}-{n:016x}-{'01' if sampled else '00'}"


@pytest.mark.parametrize(("tracing", "sampled"), [(False, True), (True, True), (True, False)],
                         ids=["passed-on", "own-span", "not-sampled-upstream"])
async def test_a_candle_continues_the_trace_of_its_close_trade(kafka_bootstrap, database_url, unique_name, tracing,
                                                               sampled, monkeypatch):
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "100")  # spans leave 0.1 s after they end
    receiver = await OtlpReceiver().start() if tracing else None
    exchange = f"ct{unique_name[-8:]}"
    settings = CandleBuilderSettings(
        kafka_bootstrap=kafka_bootstrap, database_url=database_url, environment="test",
        ticks_topic=f"ticks-{unique_name}", candles_topic=f"candles-{unique_name}",
        consumer_group=f"cb-{unique_name}", consumer_session_timeout_ms=6000, candle_grace_ms=2000,
        idle_close_ms=60_000, tick_retention_days=36_500, otlp_endpoint=receiver.endpoint if receiver else None)
    await ensure_topics(kafka_bootstrap, [dataclasses.replace(MD_TICKS, name=settings.ticks_topic),
                                          dataclasses.replace(MD_CANDLES, name=settings.candles_topic)])

    def tick(n: int, second: int, price: float) -> Tick:
        return Tick(exchange=exchange, symbol="BTC/USDT", trade_id=str(n), price=price, amount=1.0, side="buy",
                    ts_event=T0 + second * S, ts_recv=T0 + n)

    # Each "ingest batch" has its own traceparent. The 10:00 candle's close is trade 2 (10:00:55),
    # published in batch 2; trade 3 (10:00:30) arrives after it; trade 4 (10:01:10, batch 4) closes it.
    batches = [(1, [tick(1, 10, 100.0)]), (2, [tick(2, 55, 103.0)]), (3, [tick(3, 30, 101.0)]),
               (4, [tick(4, 70, 104.0)])]
    publisher_settings = CommonSettings(kafka_bootstrap=kafka_bootstrap)
    producer = Producer(publisher_settings, Telemetry("test-ticks", publisher_settings), client_id="test-ticks")
    await producer.start()
    try:
        for n, trades in batches:
            await asyncio.gather(*(producer.send(settings.ticks_topic, market_key(t.exchange, t.symbol), t,
                                                 headers=[("traceparent", traceparent(n, sampled).encode())])
                                   for t in trades))
    finally:
        await producer.stop()
    try:
        async with running_candle_builder(settings) as (client, pipeline):
            await written_through(pipeline, 4)
            records = await consume(kafka_bootstrap, settings.candles_topic, lambda rs: any(
                decode(Candle, r.value).timeframe == "1m" for r in rs), 30)
            answer = await client.get("/v1/candles", params={"exchange": exchange, "symbol": "BTC/USDT",
                                                             "timeframe": "1m"})
            assert answer.status_code == 200 and answer.json()[0]["close"] == 103.0
        [minute] = [r for r in records if decode(Candle, r.value).timeframe == "1m"]
        assert decode(Candle, minute.value).close == 103.0
        carried = header_value(minute.headers, "traceparent")
        if not tracing:
            assert carried == traceparent(2)  # passed on as it came: the close trade's
            return
        _, trace_id, span_id, flags = carried.split("-")
        assert trace_id == f"{2:032x}"
        if not sampled:
            # parentbased_traceidratio follows the trade's decision: the trace goes on, unrecorded
            assert int(flags, 16) & 1 == 0
            # nothing of this trace is recorded, while a new trace (the API request, ratio 1.0) is
            await receiver.wait_for(lambda r: any(s.name == "GET /v1/candles" for s in r.spans), 15, "the request")
            assert not [s for s in receiver.spans if s.trace_id == trace_id]
            return
        await receiver.wait_for(lambda r: any(s.span_id == span_id for s in r.spans), 15, "the candle's span")
        [span] = [s for s in receiver.spans if s.span_id == span_id]
        assert (span.service, span.name) == ("candle-builder", "candle-builder candle")
        assert span.parent_span_id == f"{2:016x}" and span.trace_id == trace_id
        assert span.attributes["tradeflow.market"] == f"{exchange}:BTC/USDT"
        assert span.attributes["tradeflow.candle.close"] == 103.0
        assert "1m" in span.attributes["tradeflow.candle.timeframes"]
    finally:
        if receiver is not None:
            await receiver.stop()
