"""The channels and routes created through the API (tables ``notifier_channels``, ``notifier_routes``).

A channel is stored as its public fields in clear and its secrets as one Fernet token
(:class:`SecretBox`); a channel whose secrets no longer decrypt is reported, not served.
Deleting a channel fails its pending deliveries in the same transaction ("channel deleted"),
so nothing waits for a channel that is gone.
"""

from __future__ import annotations

from dataclasses import dataclass

from psycopg.errors import UniqueViolation
from psycopg.types.json import Jsonb
from tradeflow_db import Database

from tradeflow_notifier.adapters.secret_box import SecretBox, SecretsUnreadable
from tradeflow_notifier.domain.channels import (
    ChannelSpec,
    InvalidChannel,
    parse_channel,
    public_fields,
    secret_fields,
)
from tradeflow_notifier.domain.routes import Route


class ChannelExists(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class StoredChannels:
    channels: list[ChannelSpec]
    unreadable: dict[str, str]  # channel id -> why it cannot be used


class ChannelStore:
    def __init__(self, database: Database, secret_box: SecretBox) -> None:
        self._database = database
        self._box = secret_box

    async def load(self) -> tuple[StoredChannels, list[Route]]:
        async with self._database.connection() as conn:
            rows = await (await conn.execute(
                "SELECT id, settings, secrets FROM notifier_channels ORDER BY id")).fetchall()
            route_rows = await (await conn.execute("SELECT route FROM notifier_routes ORDER BY position")).fetchall()
        channels, unreadable = [], {}
        for channel_id, settings, secrets in rows:
            try:
                values = dict(settings)
                if secrets is not None:
                    values.update(self._box.decrypt(bytes(secrets)))
                channels.append(parse_channel(values))
            except (SecretsUnreadable, InvalidChannel) as exc:
                unreadable[channel_id] = str(exc)
        return StoredChannels(channels, unreadable), [Route.model_validate(r[0]) for r in route_rows]

    async def add(self, channel: ChannelSpec) -> None:
        secrets = secret_fields(channel)
        token = self._box.encrypt(secrets) if secrets else None
        try:
            async with self._database.connection() as conn:
                await conn.execute(
                    "INSERT INTO notifier_channels (id, kind, settings, secrets) VALUES (%s, %s, %s, %s)",
                    (channel.id, channel.kind, Jsonb(public_fields(channel)), token))
        except UniqueViolation:
            raise ChannelExists(channel.id) from None

    async def delete(self, channel_id: str) -> bool:
        async with self._database.transaction() as conn:
            deleted = (await conn.execute("DELETE FROM notifier_channels WHERE id = %s", (channel_id,))).rowcount
            if deleted:
                await conn.execute(
                    "UPDATE notifier_deliveries SET status = 'failed', last_error = 'channel deleted', "
                    "lease_until = NULL, updated_at = now() WHERE channel_id = %s AND status = 'pending'",
                    (channel_id,))
        return bool(deleted)

    async def replace_routes(self, routes: list[Route]) -> None:
        async with self._database.transaction() as conn:
            await conn.execute("DELETE FROM notifier_routes")
            async with conn.cursor() as cursor:
                await cursor.executemany(
                    "INSERT INTO notifier_routes (position, route) VALUES (%s, %s)",
                    [(i, Jsonb(r.model_dump(mode="json"))) for i, r in enumerate(routes)])
