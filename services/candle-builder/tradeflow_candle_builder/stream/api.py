"""``/v1/stream/candles``: a websocket pushing closed and corrected candles as JSON text frames.

``?keys=binance:BTC/USDT,binance:ETH/USDT&timeframes=1m,1h`` (``timeframes`` defaults to 1m).
The socket is accepted first, then a bad parameter closes it with code 1008 and a reason that
starts with the parameter's name: browsers can read a close reason but not the body of a
refused upgrade. A client too slow to keep up is closed with 1013 (try again later).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from fastapi import APIRouter, WebSocket
from starlette.websockets import WebSocketDisconnect

from tradeflow_candle_builder.stream.broadcaster import TOO_SLOW, CandleBroadcaster, StreamClient
from tradeflow_candle_builder.stream.frames import InvalidSubscription, parse_subscription

log = logging.getLogger(__name__)

POLICY_VIOLATION = 1008
TRY_AGAIN_LATER = 1013
MAX_REASON_BYTES = 123  # the websocket protocol's limit for a close reason
TOO_SLOW_REASON = "client too slow: its send queue filled up; reconnect and read faster"


def close_reason(text: str) -> str:
    return text.encode()[:MAX_REASON_BYTES].decode(errors="ignore")


def create_stream_router(broadcaster: CandleBroadcaster) -> APIRouter:
    router = APIRouter(prefix="/v1/stream", tags=["stream"])

    @router.websocket("/candles")
    async def stream_candles(websocket: WebSocket) -> None:
        await websocket.accept()
        params = websocket.query_params
        try:
            keys = parse_subscription(params.get("keys"), params.get("timeframes"))
        except InvalidSubscription as exc:
            await websocket.close(code=POLICY_VIOLATION, reason=close_reason(str(exc)))
            return
        client = broadcaster.subscribe(keys)
        try:
            await _serve(websocket, client, broadcaster)
        finally:
            broadcaster.unsubscribe(client)

    return router


async def _serve(websocket: WebSocket, client: StreamClient, broadcaster: CandleBroadcaster) -> None:
    """Send the client's frames until it leaves or is dropped; incoming messages are ignored."""
    sender = asyncio.create_task(_send_frames(websocket, client, broadcaster))
    listener = asyncio.create_task(_until_disconnect(websocket))
    try:
        await asyncio.wait((sender, listener), return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (sender, listener):
            task.cancel()
        await asyncio.gather(sender, listener, return_exceptions=True)


async def _send_frames(websocket: WebSocket, client: StreamClient, broadcaster: CandleBroadcaster) -> None:
    while True:
        frame = await client.next_frame()
        if frame is TOO_SLOW:
            log.info("closing a candle stream client that did not keep up")
            with contextlib.suppress(Exception):  # it may be gone already
                await websocket.close(code=TRY_AGAIN_LATER, reason=TOO_SLOW_REASON)
            return
        try:
            await websocket.send_text(frame)
        except (WebSocketDisconnect, OSError, RuntimeError):
            return  # the client went away mid-send
        broadcaster.delivered()


async def _until_disconnect(websocket: WebSocket) -> None:
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
