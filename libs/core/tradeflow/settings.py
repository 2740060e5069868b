"""Configuration from ``TRADEFLOW_*`` environment variables, validated at start.

Every service subclasses :class:`ServiceSettings`. A bad value stops the service before it
does anything, with a message that names the environment variable (see
:func:`load_settings`). Secrets come from the environment or mounted files (``*_FILE``
variables resolved by pydantic-settings' ``secrets_dir``), never from code, and are
``SecretStr`` so they do not show up in logs or reprs.
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal, TypeVar

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "TRADEFLOW_"
DEFAULT_KAFKA_BOOTSTRAP = "127.0.0.1:19092"
DEFAULT_DATABASE_URL = "postgresql://tradeflow@127.0.0.1:55432/tradeflow"

_HOSTPORT = re.compile(r"^[A-Za-z0-9_.\-\[\]:]+:\d{1,5}$")


def json_list(value: Any, what: str) -> Any:
    """A setting given as JSON text (``TRADEFLOW_ACCOUNTS='[...]'``) as a list; other values as given.

    For a "before" validator of a list-of-models field declared ``Annotated[list[M], NoDecode]``:
    text that is not JSON becomes a validation error naming the setting (and ``what`` it should
    be) instead of a traceback; blank text is an empty list.
    """
    if isinstance(value, str):
        try:
            return json.loads(value) if value.strip() else []
        except ValueError as exc:
            raise ValueError(f"must be a JSON list of {what}: {exc}") from None
    return value


def redact_url(url: str) -> str:
    """``postgresql://user:secret@host/db`` -> ``postgresql://user:***@host/db`` (for output and logs)."""
    return re.sub(r"(://[^:/@]+):[^@/]*@", r"\1:***@", url)


class ConfigurationError(SystemExit):
    """Raised at start when settings are invalid; its text names each bad variable."""


class CommonSettings(BaseSettings):
    """Settings shared by services and the operator CLI."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        extra="ignore",
        case_sensitive=False,
        secrets_dir=None,
    )

    environment: Literal["local", "test", "staging", "production"] = "local"
    kafka_bootstrap: str = DEFAULT_KAFKA_BOOTSTRAP
    kafka_client_id: str = "tradeflow"
    # Tansu (the local broker) refuses idempotent/transactional producers; production
    # Kafka must have them on (enforced below).
    kafka_idempotent_producer: bool = False
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    database_url: SecretStr = SecretStr(DEFAULT_DATABASE_URL)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "text"] = "json"
    otlp_endpoint: str | None = Field(default=None, description="OTLP/HTTP traces endpoint; off when empty")

    @field_validator("kafka_bootstrap")
    @classmethod
    def _bootstrap_is_host_port_list(cls, value: str) -> str:
        servers = [s.strip() for s in value.split(",") if s.strip()]
        if not servers or not all(_HOSTPORT.match(s) for s in servers):
            raise ValueError("must be a comma-separated list of host:port, e.g. 127.0.0.1:19092")
        return ",".join(servers)

    @field_validator("database_url")
    @classmethod
    def _database_url_is_postgres(cls, value: SecretStr) -> SecretStr:
        url = value.get_secret_value()
        if not re.match(r"^postgresql(\+psycopg)?://", url):
            raise ValueError("must be a postgresql:// URL, e.g. postgresql://tradeflow@127.0.0.1:55432/tradeflow")
        return value

    @field_validator("otlp_endpoint")
    @classmethod
    def _otlp_is_url(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        if not re.match(r"^https?://", value):
            raise ValueError("must be an http(s) URL of an OTLP/HTTP collector")
        return value

    @model_validator(mode="after")
    def _refuse_unsafe_production(self) -> CommonSettings:
        if self.environment != "production":
            return self
        problems = []
        if not self.kafka_idempotent_producer:
            problems.append(f"{ENV_PREFIX}KAFKA_IDEMPOTENT_PRODUCER must be true in production")
        if self.database_url.get_secret_value() == DEFAULT_DATABASE_URL:
            problems.append(f"{ENV_PREFIX}DATABASE_URL must be set in production (the local default is refused)")
        if self.kafka_bootstrap == DEFAULT_KAFKA_BOOTSTRAP:
            problems.append(f"{ENV_PREFIX}KAFKA_BOOTSTRAP must be set in production (the local default is refused)")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def sqlalchemy_url(self) -> str:
        """The database URL with the psycopg 3 driver named, as SQLAlchemy wants it."""
        url = self.database_url.get_secret_value()
        return re.sub(r"^postgresql(\+psycopg)?://", "postgresql+psycopg://", url)

    @property
    def libpq_url(self) -> str:
        return re.sub(r"^postgresql\+psycopg://", "postgresql://", self.database_url.get_secret_value())


class ServiceSettings(CommonSettings):
    """Settings every long-running service has."""

    http_host: str = "0.0.0.0"
    http_port: int = Field(default=0, ge=0, le=65535, description="0 means the service's default port")
    instance_id: str | None = None
    consumer_session_timeout_ms: int = Field(default=10_000, ge=1_000, le=300_000)
    consumer_heartbeat_interval_ms: int = Field(default=1_000, ge=100, le=60_000)
    producer_linger_ms: int = Field(default=5, ge=0, le=1_000)
    producer_max_batch_bytes: int = Field(default=512 * 1024, ge=16 * 1024, le=16 * 1024 * 1024)
    shutdown_timeout_s: float = Field(default=20.0, gt=0, le=300)


S = TypeVar("S", bound=CommonSettings)


def describe_errors(error: ValidationError, settings_type: type[CommonSettings]) -> str:
    """Turn pydantic's errors into lines naming the environment variable of each setting."""
    prefix = settings_type.model_config.get("env_prefix", ENV_PREFIX)
    lines = []
    for err in error.errors():
        loc = [str(p) for p in err.get("loc", ()) if p != "__root__"]
        msg = err.get("msg", "invalid").removeprefix("Value error, ")
        if loc:
            lines.append(f"{prefix}{loc[0].upper()}: {msg} (got {err.get('input')!r})"
                         if loc[0].lower() not in {"database_url", "kafka_sasl_password"}
                         else f"{prefix}{loc[0].upper()}: {msg}")
        else:
            lines.append(msg)
    return "invalid configuration:\n  " + "\n  ".join(lines)


def load_settings(settings_type: type[S], **overrides) -> S:
    """Read settings from the environment; on error exit with a message naming the variable."""
    try:
        return settings_type(**overrides)
    except ValidationError as exc:
        raise ConfigurationError(describe_errors(exc, settings_type)) from None
