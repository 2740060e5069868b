"""Settings of the local infrastructure commands (``tradeflow infra``, ``tradeflow demo``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator
from tradeflow.settings import CommonSettings

DEFAULT_KAFKA_PORT = 19092
DEFAULT_DB_PORT = 55432


def default_infra_dir() -> Path:
    return Path.home() / ".local" / "state" / "tradeflow"


class InfraSettings(CommonSettings):
    infra_dir: Path = Field(
        default_factory=default_infra_dir,
        description="where `tradeflow infra` keeps the broker log, the database cluster and its pids",
    )
    # Ports of the local broker and database; change them (together with TRADEFLOW_KAFKA_BOOTSTRAP /
    # TRADEFLOW_DATABASE_URL) to run a second local setup next to the default one.
    infra_kafka_port: int = Field(default=DEFAULT_KAFKA_PORT, ge=1024, le=65535,
                                  description="port of the local broker (`tradeflow infra up`)")
    infra_db_port: int = Field(default=DEFAULT_DB_PORT, ge=1024, le=65535,
                               description="port of the local PostgreSQL cluster (`tradeflow infra up`)")

    @field_validator("infra_dir")
    @classmethod
    def _expand_home(cls, value: Path) -> Path:
        return value.expanduser()

    @property
    def local_kafka_bootstrap(self) -> str:
        return f"127.0.0.1:{self.infra_kafka_port}"

    @property
    def local_database_url(self) -> str:
        return f"postgresql://tradeflow@127.0.0.1:{self.infra_db_port}/tradeflow"
