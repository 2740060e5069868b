"""Local infrastructure without Docker: a Tansu broker and a private PostgreSQL(+TimescaleDB) cluster."""

from tradeflow.infra.errors import InfraError
from tradeflow.infra.local import ComponentStatus, InfraStatus, LocalInfra
from tradeflow.infra.settings import InfraSettings

__all__ = ["ComponentStatus", "InfraError", "InfraSettings", "InfraStatus", "LocalInfra"]
