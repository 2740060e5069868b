"""Invalid configuration stops a command at start with a message naming the TRADEFLOW_ variable."""

from __future__ import annotations

from pathlib import Path

import pytest
from tradeflow.settings import CommonSettings, ConfigurationError, load_settings
from tradeflow_ops.cli.main import main
from tradeflow_ops.infra import InfraSettings, LocalInfra


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    for name in ("KAFKA_BOOTSTRAP", "DATABASE_URL", "ENVIRONMENT", "KAFKA_IDEMPOTENT_PRODUCER", "INFRA_DIR",
                 "INFRA_KAFKA_PORT", "INFRA_DB_PORT"):
        monkeypatch.delenv(f"TRADEFLOW_{name}", raising=False)


@pytest.mark.parametrize("value", ["kafka", "127.0.0.1", "127.0.0.1:19092;kafka:9092", "host:port", " "])
def test_a_bad_kafka_bootstrap_is_refused_naming_the_variable(monkeypatch, value):
    monkeypatch.setenv("TRADEFLOW_KAFKA_BOOTSTRAP", value)
    with pytest.raises(ConfigurationError, match="TRADEFLOW_KAFKA_BOOTSTRAP: must be a comma-separated list"):
        load_settings(CommonSettings)


def test_a_bad_database_url_is_refused_without_echoing_its_secret(monkeypatch):
    monkeypatch.setenv("TRADEFLOW_DATABASE_URL", "mysql://trader:hunter2@db.internal/tradeflow")
    with pytest.raises(ConfigurationError) as caught:
        load_settings(CommonSettings)
    assert "TRADEFLOW_DATABASE_URL: must be a postgresql:// URL" in str(caught.value)
    assert "hunter2" not in str(caught.value)


def test_production_refuses_the_local_defaults_naming_each_variable(monkeypatch):
    monkeypatch.setenv("TRADEFLOW_ENVIRONMENT", "production")
    with pytest.raises(ConfigurationError) as caught:
        load_settings(CommonSettings)
    message = str(caught.value)
    for variable in ("TRADEFLOW_KAFKA_IDEMPOTENT_PRODUCER", "TRADEFLOW_DATABASE_URL", "TRADEFLOW_KAFKA_BOOTSTRAP"):
        assert variable in message


def test_production_with_real_addresses_is_accepted(monkeypatch):
    monkeypatch.setenv("TRADEFLOW_ENVIRONMENT", "production")
    monkeypatch.setenv("TRADEFLOW_KAFKA_IDEMPOTENT_PRODUCER", "true")
    monkeypatch.setenv("TRADEFLOW_KAFKA_BOOTSTRAP", "kafka-0.kafka:9092,kafka-1.kafka:9092")
    monkeypatch.setenv("TRADEFLOW_DATABASE_URL", "postgresql://tradeflow:s3cret@timescale:5432/tradeflow")
    settings = load_settings(CommonSettings)
    assert settings.kafka_bootstrap == "kafka-0.kafka:9092,kafka-1.kafka:9092"


def test_the_cli_exits_with_status_2_and_one_message_naming_the_variable(monkeypatch, capsys):
    monkeypatch.setenv("TRADEFLOW_KAFKA_BOOTSTRAP", "not-a-host-port")
    assert main(["infra", "status"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tradeflow infra: invalid configuration:")
    assert "TRADEFLOW_KAFKA_BOOTSTRAP" in err and "Traceback" not in err


def test_infra_port_out_of_range_names_the_variable(monkeypatch, capsys):
    monkeypatch.setenv("TRADEFLOW_INFRA_DB_PORT", "80")
    assert main(["infra", "up"]) == 2
    assert "TRADEFLOW_INFRA_DB_PORT" in capsys.readouterr().err


def test_infra_dir_defaults_under_the_home_directory_and_expands_tilde(monkeypatch):
    assert load_settings(InfraSettings).infra_dir == Path.home() / ".local" / "state" / "tradeflow"
    monkeypatch.setenv("TRADEFLOW_INFRA_DIR", "~/elsewhere")
    assert load_settings(InfraSettings).infra_dir == Path.home() / "elsewhere"


def test_the_local_defaults_are_managed_and_anything_else_is_external(monkeypatch, tmp_path):
    monkeypatch.setenv("TRADEFLOW_INFRA_DIR", str(tmp_path))
    local = LocalInfra.from_settings(load_settings(InfraSettings))
    assert (local.external_kafka_bootstrap, local.external_database_url) == (None, None)
    assert local.kafka_bootstrap == "127.0.0.1:19092"
    assert (local.kafka_port, local.db_port) == (19092, 55432)

    monkeypatch.setenv("TRADEFLOW_KAFKA_BOOTSTRAP", "kafka.internal:9092")
    external = LocalInfra.from_settings(load_settings(InfraSettings))
    assert external.external_kafka_bootstrap == "kafka.internal:9092"
    assert external.kafka_bootstrap == "kafka.internal:9092"
    assert external.external_database_url is None


def test_other_local_ports_are_still_managed(monkeypatch, tmp_path):
    monkeypatch.setenv("TRADEFLOW_INFRA_DIR", str(tmp_path))
    monkeypatch.setenv("TRADEFLOW_INFRA_KAFKA_PORT", "29192")
    monkeypatch.setenv("TRADEFLOW_KAFKA_BOOTSTRAP", "127.0.0.1:29192")
    monkeypatch.setenv("TRADEFLOW_INFRA_DB_PORT", "55492")
    monkeypatch.setenv("TRADEFLOW_DATABASE_URL", "postgresql://tradeflow@127.0.0.1:55492/tradeflow")
    infra = LocalInfra.from_settings(load_settings(InfraSettings))
    assert (infra.external_kafka_bootstrap, infra.external_database_url) == (None, None)
    assert (infra.kafka_port, infra.db_port) == (29192, 55492)
