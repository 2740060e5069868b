"""What `tradeflow demo` runs comes from the installed services' definitions (their ServiceDemo):
which services, in which order, on which ports, with which settings and examples."""

from __future__ import annotations

import pytest
from tradeflow.service import DemoContext, service_definition
from tradeflow.settings import load_settings
from tradeflow_ops.cli.demo import plan_services, service_environment
from tradeflow_ops.cli.errors import CliError
from tradeflow_ops.cli.main import build_parser


def demo_args(*flags: str):
    return build_parser().parse_args(["demo", *flags])


def test_the_demo_runs_every_service_with_a_demo_part_in_pipeline_order_on_its_usual_port():
    assert [(d.name, port) for d, port in plan_services(demo_args())] == [("ingest", 8001), ("candle-builder", 8002),
                                                                          ("strategy", 8003)]


def test_ports_are_chosen_per_service_and_the_old_flags_still_work():
    planned = plan_services(demo_args("--port", "candle-builder=18002", "--ingest-port", "18001"))
    assert [(d.name, port) for d, port in planned] == [("ingest", 18001), ("candle-builder", 18002), ("strategy", 8003)]
    planned = plan_services(demo_args("--candles-port", "18012", "--port", "ingest=18011", "--port", "strategy=18013"))
    assert [(d.name, port) for d, port in planned] == [("ingest", 18011), ("candle-builder", 18012), ("strategy", 18013)]


def test_a_port_for_no_demo_service_or_one_port_for_two_is_refused():
    with pytest.raises(CliError, match="--port: no service 'nosuch' in the demo \\(it runs: ingest, candle-builder, "
                                       "strategy\\)"):
        plan_services(demo_args("--port", "nosuch=8009"))
    with pytest.raises(CliError, match="port 9000 is given to both ingest and candle-builder"):
        plan_services(demo_args("--port", "ingest=9000", "--port", "candle-builder=9000"))


@pytest.mark.parametrize(("value", "message"), [("8002", "expected SERVICE=PORT"), ("ingest=0", "must be between 1"),
                                                ("ingest=x", "expected a number")])
def test_a_malformed_port_flag_exits_2_with_the_reason(capsys, value, message):
    with pytest.raises(SystemExit) as exited:
        demo_args("--port", value)
    assert exited.value.code == 2 and message in capsys.readouterr().err


def test_each_service_gets_the_demo_key_and_its_own_demo_settings_under_its_own_variables(monkeypatch):
    args = demo_args("--symbols", "3", "--rate", "50")
    ingest, candle_builder = (service_definition(name) for name in ("ingest", "candle-builder"))
    env = service_environment(ingest, args, "demo-key-0123456789abcdef")
    assert env == {"TRADEFLOW_LOG_FORMAT": "text", "TRADEFLOW_API_KEYS": "demo-key-0123456789abcdef",
                   "TRADEFLOW_INGEST_SYNTHETIC_SYMBOLS": "3", "TRADEFLOW_INGEST_SYNTHETIC_RATE": "50.0"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = load_settings(ingest.settings_type)
    assert (settings.synthetic_symbols, settings.synthetic_rate, settings.log_format) == (3, 50.0, "text")
    assert [k.get_secret_value() for k in settings.configured_api_keys()] == ["demo-key-0123456789abcdef"]
    # The candle-builder has no demo settings of its own; it reads the same environment unharmed.
    assert service_environment(candle_builder, args, "k" * 20).keys() == {"TRADEFLOW_LOG_FORMAT", "TRADEFLOW_API_KEYS"}
    assert load_settings(candle_builder.settings_type).consumer_group == "candle-builder"


def test_the_examples_show_a_market_seen_and_a_ready_to_copy_request_with_the_key():
    context = DemoContext(base_url="http://127.0.0.1:18002", api_key="demo-key-0123456789abcdef",
                          exchange="synthetic", symbol="SYM00/USD")
    candles, register = service_definition("candle-builder").demo.examples(context)
    assert candles == "curl 'http://127.0.0.1:18002/v1/candles?exchange=synthetic&symbol=SYM00%2FUSD&timeframe=1m'"
    assert register.startswith("curl -X POST http://127.0.0.1:18002/v1/instruments "
                               "-H 'Authorization: Bearer demo-key-0123456789abcdef'")
    assert service_definition("ingest").demo.examples(context) == ["curl http://127.0.0.1:18002/v1/sources"]
