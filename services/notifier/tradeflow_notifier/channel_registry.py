"""The channels and routes in force: TRADEFLOW_NOTIFIER_CHANNELS/ROUTES plus those of the API.

Environment channels (``source: config``) live only in memory: their secrets never reach the
database, and they cannot be deleted through the API (change the environment instead). API
channels are stored encrypted (``source: api``). The routes in force are the environment's
followed by the API's; ``PUT /v1/routes`` replaces the API's. Every replica reloads the stored
ones every ``refresh_s`` (and at once after its own changes), so all replicas converge.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from tradeflow.clock import SYSTEM_CLOCK, Clock
from tradeflow.periodic import PeriodicTask

from tradeflow_notifier.adapters.channel_store import ChannelExists, ChannelStore
from tradeflow_notifier.domain.channels import ChannelSpec, masked
from tradeflow_notifier.domain.planning import Routing
from tradeflow_notifier.domain.routes import Route, parse_routes

log = logging.getLogger(__name__)


class ChannelConflict(ValueError):
    """The request conflicts with what exists (409); the text says what."""


class ChannelRegistry:
    name = "channel-registry"

    def __init__(self, store: ChannelStore, config_channels: Sequence[ChannelSpec], config_routes: Sequence[Route],
                 refresh_s: float, clock: Clock = SYSTEM_CLOCK) -> None:
        self._store = store
        self._config_channels = {c.id: c for c in config_channels}
        self._config_routes = list(config_routes)
        # The database may be away: the last snapshot stays in force until a refresh succeeds.
        self._refresher = PeriodicTask("channel-registry-refresh", self.reload, interval_s=refresh_s,
                                       failure_message="reloading channels and routes failed; keeping the previous ones",
                                       sleep=clock.sleep)
        self._api_channels: dict[str, ChannelSpec] = {}
        self._api_routes: list[Route] = []
        self.unreadable: dict[str, str] = {}
        self._routing = Routing(dict(self._config_channels), list(self._config_routes))
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        await self.reload()
        await self._refresher.start()

    async def stop(self) -> None:
        await self._refresher.stop()

    async def reload(self) -> None:
        stored, routes = await self._store.load()
        for channel_id, why in stored.unreadable.items():
            if channel_id not in self.unreadable:
                log.error("channel %s cannot be used: %s", channel_id, why)
        self.unreadable = stored.unreadable
        self._api_channels = {c.id: c for c in stored.channels if c.id not in self._config_channels}
        self._api_routes = routes
        self._routing = Routing({**self._api_channels, **self._config_channels}, [*self._config_routes, *routes])

    # --- reading --------------------------------------------------------------------------------

    @property
    def routing(self) -> Routing:
        return self._routing

    def channel(self, channel_id: str) -> ChannelSpec | None:
        return self._routing.channels.get(channel_id)

    def source(self, channel_id: str) -> str:
        return "config" if channel_id in self._config_channels else "api"

    def known_ids(self) -> list[str]:
        return sorted({*self._routing.channels, *self.unreadable})

    def describe(self, channel: ChannelSpec) -> dict[str, Any]:
        return {**masked(channel), "source": self.source(channel.id)}

    def channels_view(self) -> list[dict[str, Any]]:
        shown = [self.describe(c) for _, c in sorted(self._routing.channels.items())]
        shown.extend({"id": cid, "source": "api", "error": why} for cid, why in sorted(self.unreadable.items()))
        return shown

    def routes_view(self) -> list[dict[str, Any]]:
        return ([{**r.model_dump(mode="json"), "source": "config"} for r in self._config_routes]
                + [{**r.model_dump(mode="json"), "source": "api"} for r in self._api_routes])

    # --- changes (the API) ----------------------------------------------------------------------

    async def create(self, channel: ChannelSpec) -> None:
        async with self._lock:
            if channel.id in self._config_channels:
                raise ChannelConflict(f"channel {channel.id!r} is defined in TRADEFLOW_NOTIFIER_CHANNELS")
            try:
                await self._store.add(channel)
            except ChannelExists:
                raise ChannelConflict(f"channel {channel.id!r} exists; delete it first to redefine it") from None
            await self.reload()

    async def delete(self, channel_id: str) -> bool:
        async with self._lock:
            if channel_id in self._config_channels:
                raise ChannelConflict(f"channel {channel_id!r} is defined in TRADEFLOW_NOTIFIER_CHANNELS; "
                                      "remove it there")
            await self.reload()
            using = [i for i, r in enumerate(self._api_routes) if r.channel == channel_id]
            if using:
                raise ChannelConflict(f"channel {channel_id!r} is used by routes {using} (of the API's); "
                                      "PUT /v1/routes without them first")
            deleted = await self._store.delete(channel_id)
            await self.reload()
            return deleted

    async def replace_routes(self, data: Any) -> None:
        """Replace the API's routes; InvalidRoutes naming ``routes[i].field`` when one is wrong."""
        async with self._lock:
            await self.reload()
            routes = parse_routes(data, known_channels=self._routing.channels)
            await self._store.replace_routes(routes)
            await self.reload()
