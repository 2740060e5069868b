"""In-process fan-out of candles to the connected stream clients.

Each client has its own bounded queue of ready-to-send frames. :meth:`CandleBroadcaster.publish`
never waits: it encodes a candle once and puts it in the queue of every client subscribed to its
(exchange, symbol, timeframe). A client whose queue is full is too slow to keep up: it is
dropped on the spot (its queue emptied, its handler told to close the socket with 1013) rather
than slowing the feed for everyone or growing memory without bound.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from tradeflow.messages import Candle
from tradeflow.telemetry import Telemetry

from tradeflow_candle_builder.stream.frames import StreamKey, candle_frame, stream_key

TOO_SLOW = None  # the last "frame" of a dropped client


class StreamClient:
    """One connection's subscription and its queue of frames to send."""

    __slots__ = ("keys", "_queue", "dropped")

    def __init__(self, keys: frozenset[StreamKey], queue_size: int) -> None:
        self.keys = keys
        # One slot more than the frames it may hold: room for the TOO_SLOW marker.
        self._queue: asyncio.Queue[str | None] = asyncio.Queue(maxsize=queue_size + 1)
        self.dropped = False

    async def next_frame(self) -> str | None:
        """The next frame to send, or ``TOO_SLOW`` when the client was dropped."""
        return await self._queue.get()

    def _offer(self, frame: str) -> bool:
        if self._queue.qsize() >= self._queue.maxsize - 1:
            return False
        self._queue.put_nowait(frame)
        return True

    def _drop(self) -> None:
        self.dropped = True
        while not self._queue.empty():  # free the backlog now, not when the socket closes
            self._queue.get_nowait()
        self._queue.put_nowait(TOO_SLOW)


class CandleBroadcaster:
    """Subscriptions by stream key; candles in, frames out to every subscriber's queue."""

    def __init__(self, telemetry: Telemetry, *, client_queue: int) -> None:
        if client_queue < 1:
            raise ValueError("client_queue must be at least 1")
        self._client_queue = client_queue
        self._by_key: dict[StreamKey, set[StreamClient]] = {}
        self._clients: set[StreamClient] = set()
        self._connected = telemetry.gauge("tradeflow_stream_clients", "Connected candle stream clients")
        self._pushed = telemetry.counter("tradeflow_stream_candles_pushed_total", "Candle frames sent to stream clients")
        self._slow = telemetry.counter(
            "tradeflow_stream_clients_dropped_total", "Stream clients disconnected for not keeping up (code 1013)")

    @property
    def client_count(self) -> int:
        return len(self._clients)

    def subscribe(self, keys: Iterable[StreamKey]) -> StreamClient:
        client = StreamClient(frozenset(keys), self._client_queue)
        for key in client.keys:
            self._by_key.setdefault(key, set()).add(client)
        self._clients.add(client)
        self._connected.inc()
        return client

    def unsubscribe(self, client: StreamClient) -> None:
        """Forget a client (idempotent: a dropped client's handler unsubscribes it again)."""
        if client not in self._clients:
            return
        self._clients.discard(client)
        for key in client.keys:
            subscribers = self._by_key.get(key)
            if subscribers is not None:
                subscribers.discard(client)
                if not subscribers:
                    del self._by_key[key]
        self._connected.dec()

    def publish(self, candle: Candle) -> None:
        """Queue the candle for its subscribers; never blocks (slow clients are dropped)."""
        subscribers = self._by_key.get(stream_key(candle))
        if not subscribers:
            return
        frame = candle_frame(candle)  # encoded once for every subscriber
        too_slow = [client for client in subscribers if not client._offer(frame)]
        for client in too_slow:
            self.unsubscribe(client)
            client._drop()
            self._slow.inc()

    def delivered(self, frames: int = 1) -> None:
        """A client's handler sent ``frames`` frames to its socket."""
        self._pushed.inc(frames)
