"""``TRADEFLOW_STRATEGY_INSTANCES``: instances declared in the configuration, created at start when missing.

For deployments that declare their instances (a ConfigMap) and for ``tradeflow demo``. Each
entry is a ``POST /v1/strategies`` body, checked the same way; a bad one stops the service
naming the variable and the entry. An instance that exists is left alone, so changes made
through the API (pause, resume) win.
"""

from __future__ import annotations

import logging

from tradeflow.settings import ConfigurationError, environment_variable

from tradeflow_strategy.domain.instances import InstanceError
from tradeflow_strategy.instances import InstanceService
from tradeflow_strategy.settings import StrategySettings

log = logging.getLogger(__name__)


class SeedInstances:
    """A service Component that runs once at start (after the database, before the sync)."""

    name = "seed-instances"

    def __init__(self, settings: StrategySettings, service: InstanceService) -> None:
        self._settings = settings
        self._service = service

    async def start(self) -> None:
        if not self._settings.instances:
            return
        variable = environment_variable(type(self._settings), "instances")
        definitions = []
        for position, body in enumerate(self._settings.instances, 1):
            try:
                definitions.append(self._service.validate(body))
            except InstanceError as exc:
                raise ConfigurationError(f"invalid configuration:\n  {variable} (entry {position}): {exc}") from None
        for definition in definitions:
            _, created = await self._service.create_if_missing(definition)
            if created:
                log.info("instance %s created from %s", definition.id, variable)

    async def stop(self) -> None:
        return None
