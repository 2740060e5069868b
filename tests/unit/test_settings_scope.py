"""ADR 0014: how an environment variable names its service, checked over every installed service.

Shared settings (declared by the bases in libs) are ``TRADEFLOW_<FIELD>`` with one meaning; a
service's own settings, and its consumer group, are ``TRADEFLOW_<SERVICE>_<FIELD>``.
"""

from __future__ import annotations

from collections import defaultdict
from typing import ClassVar

import pytest
from pydantic import BaseModel, Field
from tradeflow.service import ServiceDefinition, installed_services, service_definition
from tradeflow.settings import (
    CommonSettings,
    ConfigurationError,
    ServiceSettings,
    environment_variable,
    environment_variables,
    load_settings,
    per_service_fields,
)

# Names fixed by shared/design.md: (service that owns it or None for shared, field).
DESIGN_VARIABLES = {
    "TRADEFLOW_KAFKA_BOOTSTRAP": (None, "kafka_bootstrap"),
    "TRADEFLOW_DATABASE_URL": (None, "database_url"),
    "TRADEFLOW_API_KEYS": (None, "api_keys"),
    "TRADEFLOW_EXCHANGES": (None, "exchanges"),
    "TRADEFLOW_ACCOUNTS": (None, "accounts"),
    "TRADEFLOW_STRATEGY_PATHS": ("strategy", "paths"),
    "TRADEFLOW_NOTIFIER_CHANNELS": ("notifier", "channels"),
    "TRADEFLOW_NOTIFIER_ROUTES": ("notifier", "routes"),
}


def definitions() -> list[ServiceDefinition]:
    return [service_definition(name) for name in installed_services()]


def declaring_classes(settings_type: type, field: str) -> list[type]:
    """Every class in ``settings_type``'s ancestry whose own body declares ``field``."""
    return [klass for klass in settings_type.__mro__ if field in vars(klass).get("__annotations__", {})]


def service_packages() -> set[str]:
    return {d.settings_type.__module__.split(".")[0] for d in definitions()}


def test_both_services_are_installed_and_name_their_settings():
    assert {"ingest", "candle-builder"} <= set(installed_services())
    for definition in definitions():
        assert definition.settings_type.service_name == definition.name


def test_a_variable_two_services_read_is_declared_once_outside_the_services():
    """Two services may each have a field of the same name (``ticks_topic``) as long as each reads
    it under its own prefix; a variable they both read must be one declaration, in libs."""
    owners: dict[str, set[type]] = defaultdict(set)
    readers: dict[str, set[str]] = defaultdict(set)
    for definition in definitions():
        for field, variable in environment_variables(definition.settings_type).items():
            owners[variable].update(declaring_classes(definition.settings_type, field))
            readers[variable].add(definition.name)
    packages = service_packages()
    for variable, services in readers.items():
        if len(services) < 2:
            continue
        (owner,) = owners[variable]  # declared once, overridden nowhere: one meaning
        assert owner.__module__.split(".")[0] not in packages, f"{variable}: declared by a service ({owner.__module__})"


def test_no_environment_variable_is_read_by_two_services_unless_it_is_shared():
    readers: dict[str, set[tuple[str, type]]] = defaultdict(set)
    for definition in definitions():
        for field, variable in environment_variables(definition.settings_type).items():
            original = declaring_classes(definition.settings_type, field)[-1]
            readers[variable].add((definition.name, original))
    for variable, read_by in readers.items():
        assert len({owner for _, owner in read_by}) == 1, f"{variable} means different things: {read_by}"


def test_own_settings_and_the_consumer_group_carry_the_service_name():
    for definition in definitions():
        settings_type, prefix = definition.settings_type, "TRADEFLOW_" + definition.name.upper().replace("-", "_") + "_"
        shared = set(ServiceSettings.model_fields) | {
            f for base in settings_type.__mro__[1:] if issubclass(base, BaseModel) and not issubclass(base, ServiceSettings)
            for f in base.model_fields}
        scoped = per_service_fields(settings_type)  # shared declarations read per service (consumer_group, ...)
        for field, variable in environment_variables(settings_type).items():
            if field in shared and field not in scoped:
                assert variable == f"TRADEFLOW_{field.upper()}", (definition.name, field)
            else:
                assert variable == f"{prefix}{field.upper()}", (definition.name, field)
        assert settings_type().consumer_group == definition.name


def test_names_fixed_by_the_design_are_read_under_exactly_those_names():
    for definition in definitions():
        for variable, (owner, field) in DESIGN_VARIABLES.items():
            if field in definition.settings_type.model_fields and owner in (None, definition.name):
                assert environment_variable(definition.settings_type, field) == variable


class _Alpha(ServiceSettings):
    service_name: ClassVar[str] = "alpha-svc"
    batch_size: int = Field(default=10, ge=1)


class _Beta(ServiceSettings):
    service_name: ClassVar[str] = "beta"
    batch_size: int = Field(default=20, ge=1)


def test_the_same_field_in_two_services_is_two_variables(monkeypatch):
    monkeypatch.setenv("TRADEFLOW_ALPHA_SVC_BATCH_SIZE", "11")
    monkeypatch.setenv("TRADEFLOW_BETA_CONSUMER_GROUP", "beta-blue")
    monkeypatch.setenv("TRADEFLOW_LOG_LEVEL", "DEBUG")  # shared: both read it
    alpha, beta = load_settings(_Alpha), load_settings(_Beta)
    assert (alpha.batch_size, beta.batch_size) == (11, 20)
    assert (alpha.consumer_group, beta.consumer_group) == ("alpha-svc", "beta-blue")
    assert alpha.log_level == beta.log_level == "DEBUG"


def test_an_unscoped_variable_for_a_services_own_field_is_refused_naming_the_right_one(monkeypatch):
    monkeypatch.setenv("TRADEFLOW_BATCH_SIZE", "5")
    monkeypatch.setenv("TRADEFLOW_CONSUMER_GROUP", "everyone")  # would put every service in one group
    with pytest.raises(ConfigurationError) as refused:
        load_settings(_Alpha)
    message = str(refused.value)
    assert "TRADEFLOW_BATCH_SIZE is not read by alpha-svc: set TRADEFLOW_ALPHA_SVC_BATCH_SIZE instead" in message
    assert "TRADEFLOW_CONSUMER_GROUP is not read by alpha-svc: set TRADEFLOW_ALPHA_SVC_CONSUMER_GROUP instead" in message
    load_settings(CommonSettings)  # tools have no service fields: nothing to refuse


def test_a_bad_scoped_value_names_the_scoped_variable(monkeypatch):
    monkeypatch.setenv("TRADEFLOW_ALPHA_SVC_BATCH_SIZE", "0")
    with pytest.raises(ConfigurationError, match="TRADEFLOW_ALPHA_SVC_BATCH_SIZE: Input should be greater"):
        load_settings(_Alpha)


def test_service_settings_with_own_fields_must_name_their_service():
    with pytest.raises(TypeError, match="declares settings \\(retries\\) but no service_name"):
        class _Nameless(ServiceSettings):
            retries: int = 3
    with pytest.raises(TypeError, match="service_name 'Bad_Name'"):
        class _BadName(ServiceSettings):
            service_name: ClassVar[str] = "Bad_Name"


def test_a_definition_refuses_the_settings_of_another_service():
    with pytest.raises(ValueError, match="its settings _Beta are those of service_name 'beta'"):
        ServiceDefinition("alpha-svc", 8099, _Beta, lambda settings: None)
