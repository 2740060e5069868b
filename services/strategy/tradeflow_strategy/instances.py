"""What the instance API does: validate, store, apply here at once, and assemble an instance's status.

The other replicas apply a change on their next sync (:mod:`tradeflow_strategy.instance_sync`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tradeflow_trading.accounts import AccountConfig
from tradeflow_trading.strategy.loader import StrategyCatalog

from tradeflow_strategy.adapters.instance_store import InstanceStore
from tradeflow_strategy.domain.instances import InstanceDefinition, InstanceRecord, validate_definition
from tradeflow_strategy.domain.market_status import FILLING, READY, WAITING, WARMING
from tradeflow_strategy.engine import StrategyEngine
from tradeflow_strategy.instance_sync import InstanceSync


class InstanceConflict(Exception):
    """An instance with this id exists with another definition."""


def instance_json(record: InstanceRecord) -> dict[str, Any]:
    d = record.definition
    return {"id": d.id, "strategy": d.strategy, "account_id": d.account_id, "exchange": d.exchange,
            "symbols": list(d.symbols), "timeframe": d.timeframe, "params": dict(d.params), "enabled": d.enabled,
            "state": record.state, "error": record.error, "created_at": record.created_at,
            "updated_at": record.updated_at}


def overall(state: str, markets: Sequence[dict[str, Any]]) -> str:
    """One word for the instance: failed, paused, or how its markets stand (warming first)."""
    if state != "running":
        return state
    states = {m["state"] for m in markets}
    for word in (WARMING, WAITING, FILLING):
        if word in states:
            return word
    return READY


class InstanceService:
    def __init__(self, store: InstanceStore, catalog: StrategyCatalog, accounts: Sequence[AccountConfig],
                 engine: StrategyEngine, sync: InstanceSync) -> None:
        self._store = store
        self._catalog = catalog
        self._accounts = accounts
        self._engine = engine
        self._sync = sync

    def catalog(self) -> list[dict[str, Any]]:
        """Every strategy with its description and parameter schema, where it comes from (a
        file's version is its content digest), and the error of its file's newest version when
        that did not load (the previous one runs)."""
        entries = []
        for entry in self._catalog.entries():
            item = entry.strategy.catalog_entry() | {"name": entry.name, "source": entry.source,
                                                     "version": entry.version or None}
            if entry.source in self._catalog.errors:
                item["load_error"] = self._catalog.errors[entry.source]
            entries.append(item)
        return entries

    def validate(self, body: dict[str, Any]) -> InstanceDefinition:
        """Raises :class:`tradeflow_strategy.domain.instances.InstanceError` naming the field."""
        return validate_definition(body, strategy_type=self._catalog.get, accounts=self._accounts)

    async def create(self, definition: InstanceDefinition) -> tuple[InstanceRecord, bool]:
        """(the instance, created now). A repeat with the same binding is no change (the stored
        instance is returned as it is, paused or not); another binding is a conflict."""
        record, created = await self._store.create(definition)
        if not created:
            if not record.definition.same_binding(definition):
                raise InstanceConflict(f"instance {definition.id!r} exists with another definition; "
                                       "delete it first to change it")
            return record, False
        await self._sync.refresh()
        return record, True

    async def create_if_missing(self, definition: InstanceDefinition) -> tuple[InstanceRecord, bool]:
        """(the instance, created now); one with this id is left as it is, whatever its definition."""
        return await self._store.create(definition)

    async def list(self) -> list[InstanceRecord]:
        return await self._store.list()

    async def detail(self, instance_id: str) -> dict[str, Any] | None:
        record = await self._store.get(instance_id)
        if record is None:
            return None
        stored = {m["symbol"]: m for m in await self._store.market_status(instance_id)}
        markets = [stored.get(symbol) or {"exchange": record.definition.exchange, "symbol": symbol,
                                          "state": WAITING, "candles": 0, "last_candle": None, "last_signals": [],
                                          "position": None, "error": None}
                   for symbol in record.definition.symbols]
        if record.state != "running":
            for market in markets:  # nothing runs: what a market last showed is history
                market["state"] = record.state
        return instance_json(record) | {"status": overall(record.state, markets),
                                        "code_error": self._code_error(record), "markets": markets}

    def _code_error(self, record: InstanceRecord) -> str | None:
        """Why new code of the instance's strategy does not run (this replica's files)."""
        engine_error = self._engine.code_error(record.id)
        if engine_error:
            return engine_error
        for entry in self._catalog.entries():
            if entry.name == record.definition.strategy and entry.source in self._catalog.errors:
                return f"{entry.source}: {self._catalog.errors[entry.source]} (the previous version runs)"
        return None

    async def set_enabled(self, instance_id: str, enabled: bool) -> InstanceRecord | None:
        record = await self._store.set_enabled(instance_id, enabled)
        if record is not None:
            await self._sync.refresh()
        return record

    async def delete(self, instance_id: str) -> bool:
        deleted = await self._store.delete(instance_id)
        if deleted:
            await self._sync.refresh()
        return deleted
