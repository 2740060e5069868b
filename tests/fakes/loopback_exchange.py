"""What every fake exchange shares: an aiohttp app on a free loopback port, started and stopped
(restartable on the same port, its trade history kept), and the websockets it can drop."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from tradeflow_ops.infra.processes import free_port


class LoopbackExchange:
    """Base of the fakes: subclasses add their routes and keep their websocket clients in
    ``_subscribers`` (objects with the connection as ``ws``)."""

    def __init__(self) -> None:
        self.port = free_port()
        self._subscribers: list[Any] = []
        self._runner: web.AppRunner | None = None

    def add_routes(self, app: web.Application) -> None:
        raise NotImplementedError

    async def start(self) -> None:
        app = web.Application()
        self.add_routes(app)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True).start()

    async def stop(self) -> None:
        """Close every websocket and the listener (the trade history is kept for a restart)."""
        await self.drop_websockets()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def drop_websockets(self) -> None:
        """Close every websocket connection (what a network blip or a server restart looks like)."""
        subscribers, self._subscribers = self._subscribers, []
        for subscriber in subscribers:
            await subscriber.ws.close(code=1001, message=b"going away")
