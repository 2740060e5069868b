"""Configuration from ``TRADEFLOW_*`` environment variables, validated at start.

Every service subclasses :class:`ServiceSettings` and names itself in ``service_name``. How a
variable is named (ADR 0014): a field declared by the shared bases (:class:`CommonSettings`,
:class:`ServiceSettings`, shared mixins in libs such as ``ExchangeListSettings``) is read from
``TRADEFLOW_<FIELD>`` with the same meaning in every service; a field the service declares
itself, and the per-service ``consumer_group``, from ``TRADEFLOW_<SERVICE>_<FIELD>`` (``-`` in
the service name becomes ``_``), e.g. ``TRADEFLOW_CANDLE_BUILDER_TICK_RETENTION_DAYS``. So a
shared environment (a ConfigMap, compose's common block) cannot set one service's field for
another. :func:`environment_variable` gives the name of any field.

A bad value stops the service before it does anything, with a message that names the
environment variable (see :func:`load_settings`). Secrets come from the environment or mounted
files (e.g. ``TRADEFLOW_API_KEYS_FILE``), never from code, and are ``SecretStr`` so they do not
show up in logs or reprs.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar, get_args

from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_core import InitErrorDetails, PydanticCustomError
from pydantic_settings import BaseSettings, EnvSettingsSource, PydanticBaseSettingsSource, SettingsConfigDict

ENV_PREFIX = "TRADEFLOW_"
DEFAULT_KAFKA_BOOTSTRAP = "127.0.0.1:19092"
DEFAULT_DATABASE_URL = "postgresql://tradeflow@127.0.0.1:55432/tradeflow"

_HOSTPORT = re.compile(r"^[A-Za-z0-9_.\-\[\]:]+:\d{1,5}$")
_SERVICE_NAME = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
MIN_API_KEY_LENGTH = 16


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

    environment: Literal["local", "test", "staging", "production"] = Field(
        default="local", description="production refuses the local defaults and needs API keys and the "
                                     "idempotent producer; local and test allow a service without API keys")
    kafka_bootstrap: str = Field(default=DEFAULT_KAFKA_BOOTSTRAP, description="Kafka brokers, host:port,...")
    kafka_client_id: str = Field(default="tradeflow", description="client id prefix in the broker's logs and quotas")
    # Tansu (the local broker) refuses idempotent/transactional producers; production
    # Kafka must have them on (enforced below).
    kafka_idempotent_producer: bool = Field(
        default=False, description="idempotent producers (required in production; the local broker refuses them)")
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        default="PLAINTEXT", description="how clients talk to the brokers")
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = Field(
        default=None, description="SASL mechanism with the SASL_* protocols")
    kafka_sasl_username: str | None = Field(default=None, description="SASL user")
    kafka_sasl_password: SecretStr | None = Field(default=None, description="SASL password (environment or a mounted file)")
    database_url: SecretStr = Field(
        default=SecretStr(DEFAULT_DATABASE_URL),
        description="postgresql:// URL of the database (default: the local one of `tradeflow infra up`)")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(default="INFO", description="lowest level logged")
    log_format: Literal["json", "text"] = Field(
        default="json", description="json: one object per line with trace_id, span_id and correlation_id; "
                                    "text: for a terminal")
    otlp_endpoint: str | None = Field(default=None, description="OTLP/HTTP traces endpoint; off when empty")
    trace_sampler: Literal[
        "parentbased_traceidratio", "parentbased_always_on", "parentbased_always_off",
        "traceidratio", "always_on", "always_off",
    ] = Field(default="parentbased_traceidratio",
              description="which traces are recorded (OpenTelemetry's sampler names); parentbased_* follow the "
                          "sampling decision carried in the incoming traceparent")
    trace_sample_ratio: float = Field(
        default=1.0, ge=0.0, le=1.0,
        description="fraction of new traces recorded by the traceidratio samplers (1.0: all)")

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


def read_mounted_file(path: Path, where: str) -> str:
    """The text of a mounted secret file (a Kubernetes Secret volume, a Docker secret); the error
    names ``where`` (the setting) and the path, never the content."""
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{where}: cannot read {path}: {type(exc).__name__}") from None


def read_secret_file(path: Path, where: str) -> SecretStr:
    """A single secret from a mounted file: its text without the surrounding whitespace (the
    trailing newline an editor or ``kubectl create secret --from-file`` leaves); empty is an error."""
    value = read_mounted_file(path, where).strip()
    if not value:
        raise ValueError(f"{where}: {path} is empty")
    return SecretStr(value)


class ApiKeySettings(BaseModel):
    """``TRADEFLOW_API_KEYS`` and ``TRADEFLOW_API_KEYS_FILE``: the keys a service accepts on
    state-changing requests, and the key a tool presents to one (its first). Mixed into
    :class:`ServiceSettings` and into the settings of tools that call the services."""

    api_keys: SecretStr | None = Field(
        default=None, description="API keys for state-changing requests, comma-separated (Authorization: Bearer)")
    api_keys_file: Path | None = Field(
        default=None, description="a mounted file with more API keys, one per line (# starts a comment)")

    @model_validator(mode="after")
    def _api_keys_are_usable(self) -> ApiKeySettings:
        self.configured_api_keys()  # raises naming the variable
        return self

    def configured_api_keys(self) -> tuple[SecretStr, ...]:
        """The keys of ``TRADEFLOW_API_KEYS`` and of the file ``TRADEFLOW_API_KEYS_FILE``, in that order.

        A key is at least MIN_API_KEY_LENGTH characters without spaces or commas; the errors
        name the variable and the key's position, never the key."""
        keys: list[tuple[str, str]] = []
        if self.api_keys is not None:
            variable = environment_variable(type(self), "api_keys")
            keys += [(f"{variable} (key {n})", key.strip())
                     for n, key in enumerate(self.api_keys.get_secret_value().split(","), 1) if key.strip()]
        if self.api_keys_file is not None:
            variable = environment_variable(type(self), "api_keys_file")
            text = read_mounted_file(self.api_keys_file, variable)
            lines = [(n, line.strip()) for n, line in enumerate(text.splitlines(), 1)]
            file_keys = [(f"{variable} ({self.api_keys_file} line {n})", line)
                         for n, line in lines if line and not line.startswith("#")]
            if not file_keys:
                raise ValueError(f"{variable}: {self.api_keys_file} holds no key")
            keys += file_keys
        for where, key in keys:
            if len(key) < MIN_API_KEY_LENGTH or re.search(r"[\s,]", key):
                raise ValueError(f"{where}: an API key needs at least {MIN_API_KEY_LENGTH} characters and "
                                 "no spaces or commas")
        return tuple(SecretStr(key) for _, key in keys)

    def bearer_headers(self) -> dict[str, str]:
        """``Authorization: Bearer <the first key>`` for a client's requests; empty without keys."""
        keys = self.configured_api_keys()
        return {"Authorization": f"Bearer {keys[0].get_secret_value()}"} if keys else {}


class ServiceSettings(ApiKeySettings, CommonSettings):
    """Settings every long-running service has.

    A service's subclass sets ``service_name`` (its ``ServiceDefinition`` name): the fields it
    declares are then read from ``TRADEFLOW_<SERVICE>_<FIELD>``, and so is ``consumer_group``
    (one per service by nature; default: the service name). Everything else here is shared.
    """

    service_name: ClassVar[str] = ""
    # Declared here for every service, but each service's own: read under the service's prefix.
    per_service_fields: ClassVar[frozenset[str]] = frozenset({"consumer_group"})

    http_host: str = Field(default="0.0.0.0", description="address the REST API listens on")
    http_port: int = Field(default=0, ge=0, le=65535, description="0 means the service's default port")
    instance_id: str | None = Field(default=None, description="this replica's name (risk's market-data group, the "
                                                              "strategy's replica); default: from the host name")
    consumer_group: str | None = Field(
        default=None, min_length=1, max_length=255, pattern=r"^[A-Za-z0-9._-]+$",
        description="consumer group of the service's consumers (TRADEFLOW_<SERVICE>_CONSUMER_GROUP); "
                    "default: the service name")
    consumer_session_timeout_ms: int = Field(
        default=10_000, ge=1_000, le=300_000, description="a consumer silent this long leaves its group")
    consumer_heartbeat_interval_ms: int = Field(default=1_000, ge=100, le=60_000,
                                                description="consumer heartbeats to the group coordinator")
    consumer_fetch_max_wait_ms: int = Field(
        default=10, ge=1, le=500,
        description="longest the broker may hold a fetch with no data yet: Tansu answers such a fetch only at this "
                    "deadline, so it is a latency floor on every hop (the trading path's candle-to-fill); on Kafka it "
                    "only bounds idle polling (ADR 0019)")
    producer_linger_ms: int = Field(default=5, ge=0, le=1_000, description="how long a producer batch waits to fill")
    producer_max_batch_bytes: int = Field(default=512 * 1024, ge=16 * 1024, le=16 * 1024 * 1024,
                                          description="largest producer record batch per partition")
    shutdown_timeout_s: float = Field(default=20.0, gt=0, le=300,
                                      description="graceful stop budget after SIGTERM (finish batches, commit, flush)")

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.service_name and not _SERVICE_NAME.match(cls.service_name):
            raise TypeError(f"{cls.__name__}.service_name {cls.service_name!r}: lower-case letters, digits and '-'")

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        own = service_fields(cls) - per_service_fields(cls)
        if own and not cls.service_name:
            raise TypeError(f"{cls.__name__} declares settings ({', '.join(sorted(own))}) but no service_name: "
                            "set service_name so they are read as TRADEFLOW_<SERVICE>_<FIELD> (ADR 0014)")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        prefix = service_prefix(settings_cls)
        if prefix is None:
            return init_settings, env_settings, dotenv_settings, file_secret_settings
        own = service_fields(settings_cls)
        shared = set(settings_cls.model_fields) - own
        return (init_settings, _VariablesOf(settings_cls, ENV_PREFIX, shared),
                _VariablesOf(settings_cls, prefix, own, refuse_unscoped=True), dotenv_settings, file_secret_settings)

    @model_validator(mode="after")
    def _consumer_group_defaults_to_the_service(self) -> ServiceSettings:
        if self.consumer_group is None and self.service_name:
            self.consumer_group = self.service_name
        return self

class _VariablesOf(EnvSettingsSource):
    """The environment variables of some fields only, all under one prefix.

    With ``refuse_unscoped``, a ``TRADEFLOW_<FIELD>`` set for one of these fields is refused
    naming the variable to set instead: it would otherwise be ignored without a word (a
    variable renamed by ADR 0014, or one meant for another service)."""

    def __init__(self, settings_cls: type[BaseSettings], prefix: str, fields: set[str] | frozenset[str], *,
                 refuse_unscoped: bool = False) -> None:
        super().__init__(settings_cls, env_prefix=prefix)
        self._fields = frozenset(fields)
        self._refuse_unscoped = refuse_unscoped

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        if field_name not in self._fields:
            return None, field_name, False
        return super().get_field_value(field, field_name)

    def __call__(self) -> dict[str, Any]:
        if self._refuse_unscoped:
            present = {variable.lower() for variable in self.env_vars}
            unscoped = sorted(name for name in self._fields if f"{ENV_PREFIX}{name}".lower() in present)
            if unscoped:
                service = getattr(self.settings_cls, "service_name", "")
                raise ValidationError.from_exception_data(self.settings_cls.__name__, [
                    InitErrorDetails(type=PydanticCustomError(
                        "unscoped_variable",
                        "{old} is not read by {service}: set {new} instead (ADR 0014)",
                        {"old": f"{ENV_PREFIX}{name.upper()}", "service": service,
                         "new": environment_variable(self.settings_cls, name)}), loc=(), input=None)
                    for name in unscoped])
        return super().__call__()


def service_prefix(settings_type: type[BaseSettings]) -> str | None:
    """``TRADEFLOW_<SERVICE>_`` for a service's settings class; None for the shared ones."""
    service = getattr(settings_type, "service_name", "")
    if not service:
        return None
    return f"{ENV_PREFIX}{service.upper().replace('-', '_')}_"


def service_fields(settings_type: type[BaseSettings]) -> frozenset[str]:
    """The fields read under the service's prefix: those not declared by a shared base, plus
    ``per_service_fields``. Shared bases are the pydantic models in the class's ancestry that
    are not ServiceSettings subclasses (CommonSettings, mixins), and ServiceSettings itself."""
    if not (isinstance(settings_type, type) and issubclass(settings_type, ServiceSettings)):
        return frozenset()
    shared: set[str] = set()
    for base in settings_type.__mro__[1:]:
        if issubclass(base, BaseModel) and (base is ServiceSettings or not issubclass(base, ServiceSettings)):
            shared |= set(base.model_fields)
    return frozenset(set(settings_type.model_fields) - shared) | per_service_fields(settings_type)


def per_service_fields(settings_type: type) -> frozenset[str]:
    """Fields a shared base declares but every service reads under its own prefix: the union of
    the ``per_service_fields`` of its bases (ServiceSettings: ``consumer_group``; a mixin such as
    tradeflow_db's DatabasePoolSettings: ``db_pool_size``)."""
    fields: set[str] = set()
    for base in settings_type.__mro__:
        fields |= base.__dict__.get("per_service_fields", frozenset())
    return frozenset(fields) & set(getattr(settings_type, "model_fields", ()))


def environment_variable(settings_type: type[BaseSettings], field_name: str) -> str:
    """The environment variable a field of ``settings_type`` is read from (ADR 0014)."""
    prefix = service_prefix(settings_type)
    if prefix is None or field_name not in service_fields(settings_type):
        prefix = settings_type.model_config.get("env_prefix", ENV_PREFIX)
    return f"{prefix}{field_name.upper()}"


def environment_variables(settings_type: type[BaseSettings]) -> dict[str, str]:
    """Every field of ``settings_type`` with its environment variable."""
    return {name: environment_variable(settings_type, name) for name in settings_type.model_fields}


S = TypeVar("S", bound=CommonSettings)


def describe_errors(error: ValidationError, settings_type: type[CommonSettings]) -> str:
    """Turn pydantic's errors into lines naming the environment variable of each setting
    (without the value of a secret)."""
    lines = []
    for err in error.errors():
        loc = [str(p) for p in err.get("loc", ()) if p != "__root__"]
        msg = err.get("msg", "invalid").removeprefix("Value error, ")
        if loc:
            variable = environment_variable(settings_type, loc[0])
            lines.append(f"{variable}: {msg}" if _is_secret(settings_type, loc[0])
                         else f"{variable}: {msg} (got {err.get('input')!r})")
        else:
            lines.append(msg)
    return "invalid configuration:\n  " + "\n  ".join(lines)


HOLDS_SECRETS = {"holds_secrets": True}  # json_schema_extra of a field whose value contains secrets


def _is_secret(settings_type: type[CommonSettings], field_name: str) -> bool:
    """A SecretStr field, or one marked HOLDS_SECRETS (e.g. TRADEFLOW_EXCHANGES, whose entries
    carry credentials): its value is never quoted in an error."""
    field = settings_type.model_fields.get(field_name)
    if field is None:
        return False
    return SecretStr in (field.annotation, *get_args(field.annotation)) or field.json_schema_extra == HOLDS_SECRETS


def load_settings(settings_type: type[S], **overrides) -> S:
    """Read settings from the environment; on error exit with a message naming the variable."""
    try:
        return settings_type(**overrides)
    except ValidationError as exc:
        raise ConfigurationError(describe_errors(exc, settings_type)) from None
