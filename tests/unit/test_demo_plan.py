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


REST = [("risk", 8004), ("execution", 8005), ("notifier", 8006)]


def test_the_demo_runs_every_service_with_a_demo_part_in_pipeline_order_on_its_usual_port():
    assert [(d.name, port) for d, port in plan_services(demo_args())] == [("ingest", 8001), ("candle-builder", 8002),
                                                                          ("strategy", 8003), *REST]


def test_ports_are_chosen_per_service_and_the_old_flags_still_work():
    planned = plan_services(demo_args("--port", "candle-builder=18002", "--ingest-port", "18001"))
    assert [(d.name, port) for d, port in planned] == [("ingest", 18001), ("candle-builder", 18002), ("strategy", 8003),
                                                       *REST]
    planned = plan_services(demo_args("--candles-port", "18012", "--port", "ingest=18011", "--port", "strategy=18013"))
    assert [(d.name, port) for d, port in planned] == [("ingest", 18011), ("candle-builder", 18012),
                                                       ("strategy", 18013), *REST]


def test_a_port_for_no_demo_service_or_one_port_for_two_is_refused():
    with pytest.raises(CliError, match="--port: no service 'nosuch' in the demo \\(it runs: ingest, candle-builder, "
                                       "strategy, risk, execution, notifier\\)"):
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
    args = demo_args("--symbols", "3", "--rate", "50", "--speed", "20", "--exchange", "simex")
    ingest, candle_builder = (service_definition(name) for name in ("ingest", "candle-builder"))
    env = service_environment(ingest, args, "demo-key-0123456789abcdef")
    assert env == {"TRADEFLOW_LOG_FORMAT": "text", "TRADEFLOW_API_KEYS": "demo-key-0123456789abcdef",
                   "TRADEFLOW_INGEST_SYNTHETIC_SYMBOLS": "3", "TRADEFLOW_INGEST_SYNTHETIC_RATE": "50.0",
                   "TRADEFLOW_INGEST_SYNTHETIC_EXCHANGE": "simex", "TRADEFLOW_INGEST_SYNTHETIC_SPEED": "20.0",
                   # the first 10 minutes of the demo go through 19 x 10 minutes of history
                   "TRADEFLOW_INGEST_SYNTHETIC_HISTORY_S": "11400.0"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = load_settings(ingest.settings_type)
    assert (settings.synthetic_symbols, settings.synthetic_rate, settings.log_format) == (3, 50.0, "text")
    assert (settings.synthetic_exchange, settings.synthetic_speed, settings.synthetic_history_s) == ("simex", 20, 11400)
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


def test_strategy_risk_and_execution_share_the_demo_paper_account_and_load_their_demo_settings(monkeypatch):
    args = demo_args("--symbols", "3", "--exchange", "simex")
    loaded = {}
    for name in ("strategy", "risk", "execution"):
        definition = service_definition(name)
        env = service_environment(definition, args, "demo-key-0123456789abcdef")
        with monkeypatch.context() as patched:
            for variable, value in env.items():
                patched.setenv(variable, value)
            loaded[name] = load_settings(definition.settings_type)
    accounts = {name: settings.accounts for name, settings in loaded.items()}
    assert accounts["strategy"] == accounts["risk"] == accounts["execution"]
    (account,) = accounts["execution"]
    assert (account.id, account.exchange, account.mode, account.balances) == ("paper-demo", "simex", "paper",
                                                                               {"USD": 10000})
    instances = loaded["strategy"].instances
    assert {(i["strategy"], i["exchange"], i["account_id"]) for i in instances} == {("sma_cross", "simex", "paper-demo")}
    assert instances[0]["symbols"] == ["SYM00/USD", "SYM01/USD", "SYM02/USD"]
    assert loaded["risk"].account_profiles["paper-demo"].sizing.method == "fraction_of_equity"
