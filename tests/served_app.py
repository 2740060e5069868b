"""A FastAPI app served by uvicorn on a free loopback port inside the test process."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import uvicorn
from fastapi import FastAPI
from tradeflow_ops.infra.processes import free_port


@asynccontextmanager
async def served(app: FastAPI, *, ready_timeout_s: float = 30.0) -> AsyncIterator[str]:
    """``app`` (lifespan included) until its /readyz answers 200; yields its base URL. Stopped on exit."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="on"))
    task = asyncio.create_task(server.serve())
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=base) as http:
            deadline = time.monotonic() + ready_timeout_s
            while True:
                if task.done():
                    task.result()
                    raise AssertionError("the server stopped at start")
                try:
                    if (await http.get("/readyz")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, f"not ready in {ready_timeout_s} s"
                await asyncio.sleep(0.2)
        yield base
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 30)
