"""The candle-builder app in the test process (real broker and database), for the integration tests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from tradeflow_candle_builder.bootstrap import SERVICE
from tradeflow_candle_builder.pipeline import CandlePipeline
from tradeflow_candle_builder.settings import CandleBuilderSettings


async def wait_ready(client: httpx.AsyncClient, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while (resp := await client.get("/readyz")).status_code != 200:
        assert time.monotonic() < deadline, resp.text
        await asyncio.sleep(0.2)


@asynccontextmanager
async def running_candle_builder(settings: CandleBuilderSettings) -> AsyncIterator[tuple[httpx.AsyncClient,
                                                                                         CandlePipeline]]:
    """The service started (ready: partitions assigned) until the block ends, then stopped
    gracefully: (a client of its API, sending the settings' first API key, its pipeline)."""
    app = SERVICE.create_app(settings)
    pipeline = next(c for c in app.state.runtime.components if isinstance(c, CandlePipeline))
    keys = settings.configured_api_keys()
    headers = {"Authorization": f"Bearer {keys[0].get_secret_value()}"} if keys else {}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://cb",
                                 headers=headers) as client:
        async with app.router.lifespan_context(app):
            await wait_ready(client)
            yield client, pipeline


async def written_through(pipeline: CandlePipeline, records: int, timeout_s: float = 30) -> None:
    """Until the pipeline has written (and emitted) the work of the first ``records`` records of
    its ticks topic (offsets count per partition from the topic's start)."""
    deadline = time.monotonic() + timeout_s
    while sum(pipeline.writer.written_offsets.values()) < records:
        assert time.monotonic() < deadline, f"written {pipeline.writer.written_offsets}, want {records} records"
        await asyncio.sleep(0.1)
    await pipeline.writer.drain()
