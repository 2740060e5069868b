"""Local infrastructure without Docker: a Tansu broker and a private PostgreSQL(+TimescaleDB) cluster."""

from tradeflow_ops.infra.errors import InfraError
from tradeflow_ops.infra.local import ComponentStatus, InfraStatus, LocalInfra
from tradeflow_ops.infra.settings import InfraSettings

__all__ = ["ComponentStatus", "InfraError", "InfraSettings", "InfraStatus", "LocalInfra"]
