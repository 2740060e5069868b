"""The `tradeflow` command line: argument handling and its pure parts (no servers here)."""

from __future__ import annotations

import msgspec
import pytest
from tradeflow.bus import Record
from tradeflow.codec import encode
from tradeflow.messages import Candle, Tick
from tradeflow.settings import redact_url
from tradeflow.topics import MD_TICKS
from tradeflow_ops.cli.candle_table import MarketView
from tradeflow_ops.cli.main import build_parser, main
from tradeflow_ops.cli.topics_commands import message_as_json

MINUTE_NS = 60 * 10**9
T0 = 1_700_000_040 * 10**9  # 2023-11-14 22:14:00 UTC, a minute boundary


def candle(symbol="BTC/USDT", ts_start=T0, timeframe="1m", close=101.0, revision=0, trades=3) -> Candle:
    return Candle(exchange="synthetic", symbol=symbol, timeframe=timeframe, ts_start=ts_start,
                  ts_end=ts_start + MINUTE_NS, open=100.0, high=102.5, low=99.25, close=close,
                  volume=1.5, trades=trades, revision=revision)


def exit_code_and_stderr(argv, capsys) -> tuple[int, str]:
    with pytest.raises(SystemExit) as caught:
        main(argv)
    return caught.value.code, capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "complaint"),
    [
        (["demo", "--symbols", "0"], "argument --symbols: must be between 1 and 10000"),
        (["demo", "--duration", "soon"], "argument --duration: expected a number"),
        (["demo", "--rate", "0"], "argument --rate: must be between"),
        (["topics", "tail", "md.ticks.v1", "--max", "0"], "argument --max: must be at least 1"),
        (["infra"], "the following arguments are required"),
        (["infra", "restart"], "invalid choice: 'restart'"),
        (["fly"], "invalid choice: 'fly'"),
        (["backfill", "--exchange", "binance", "--symbol", "BTC/USDT", "--since", "soon", "--until", "now"],
         "argument --since: expected ISO 8601"),
        (["backfill", "--exchange", "binance", "--since", "2024-01-01", "--until", "now"],
         "the following arguments are required: --symbol"),
        (["backfill", "--exchange", "x", "--symbol", "A/B", "--since", "0", "--until", "1", "--source", "books"],
         "argument --source: invalid choice: 'books'"),
    ],
)
def test_bad_arguments_exit_2_with_a_usage_message(argv, complaint, capsys):
    code, err = exit_code_and_stderr(argv, capsys)
    assert code == 2
    assert complaint in err
    assert "Traceback" not in err


def test_every_documented_command_parses():
    parser = build_parser()
    for argv in (
        ["infra", "up"], ["infra", "down", "--purge"], ["infra", "status"], ["db", "upgrade"],
        ["run", "ingest"], ["replay", "ticks.csv"], ["topics", "list"], ["topics", "describe", "md.ticks.v1"],
        ["topics", "tail", "md.ticks.v1.dlq", "--from-beginning", "--max", "5"],
        ["demo", "--symbols", "5", "--duration", "30", "--rate", "50"],
        ["backfill", "--exchange", "binance", "--symbol", "BTC/USDT", "--since", "2024-03-01", "--until", "now",
         "--source", "ohlcv"],
        ["backfill", "--exchange", "x", "--symbol", "A/B", "--since", "0", "--until", "1", "--file", "t.csv"],
    ):
        assert callable(parser.parse_args(argv).handler), argv
    demo = parser.parse_args(["demo"])
    assert (demo.symbols, demo.duration, demo.rate) == (20, None, 200.0)


def test_a_backfill_range_that_runs_backwards_exits_2_naming_the_option(capsys):
    code = main(["backfill", "--exchange", "binance", "--symbol", "BTC/USDT",
                 "--since", "2024-03-02", "--until", "2024-03-01"])
    assert code == 2
    assert "--until (2024-03-01T00:00:00.000Z) must be after --since" in capsys.readouterr().err


def test_the_command_line_stays_light_to_import():
    import subprocess
    import sys

    heavy = ("ccxt", "tqdm", "psycopg_pool", "tradeflow_candle_builder.backfill.runner")
    probe = f"import sys, tradeflow_ops.cli.main; print([m for m in {heavy!r} if m in sys.modules])"
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"


def test_an_unknown_service_lists_the_installed_ones(capsys):
    assert main(["run", "nonexistent"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("tradeflow run: unknown service 'nonexistent'; installed: ")
    assert "ingest" in err and "candle-builder" in err
    assert len(err.splitlines()) == 1


def test_an_unknown_topic_is_refused_before_connecting(capsys):
    assert main(["topics", "tail", "md.trades.v9"]) == 1
    err = capsys.readouterr().err
    assert "unknown topic 'md.trades.v9'" in err and "md.ticks.v1" in err


def test_replay_of_a_missing_file_is_one_line(tmp_path, capsys):
    assert main(["replay", str(tmp_path / "missing.csv")]) == 1
    assert capsys.readouterr().err.strip() == f"tradeflow replay: {tmp_path / 'missing.csv'}: no such file"


def test_urls_are_shown_without_their_password():
    assert redact_url("postgresql://trader:hunter2@db:5432/tradeflow") == "postgresql://trader:***@db:5432/tradeflow"
    assert redact_url("postgresql://tradeflow@127.0.0.1:55432/tradeflow") == "postgresql://tradeflow@127.0.0.1:55432/tradeflow"


def _record(topic: str, value: bytes, headers=()) -> Record:
    return Record(topic, 3, 42, "binance:BTC/USDT", value, tuple(headers), 1_700_000_000_000, b"binance:BTC/USDT",
                  value)


def test_tail_shows_a_decoded_message_as_json():
    tick = Tick(exchange="binance", symbol="BTC/USDT", trade_id="7", price=100.5, amount=0.25, side="buy",
                ts_event=T0, ts_recv=T0 + 1)
    line = message_as_json(_record("md.ticks.v1", encode(tick), [("schema", b"Tick/1")]), MD_TICKS)
    assert line["partition"] == 3 and line["offset"] == 42 and line["key"] == "binance:BTC/USDT"
    assert line["headers"] == {"schema": "Tick/1"}
    assert line["value"]["price"] == 100.5 and line["value"]["trade_id"] == "7"
    assert "value_hex" not in line


def test_tail_of_a_dlq_shows_the_reason_and_undecodable_bytes_as_hex():
    line = message_as_json(
        _record("md.ticks.v1.dlq", b"\xc1garbage", [("error-reason", b"decode: invalid msgpack")]), MD_TICKS
    )
    assert line["error_reason"] == "decode: invalid msgpack"
    assert line["value"] is None
    assert line["value_hex"] == "c167617262616765"
    assert line["decode_error"]


def test_the_demo_table_shows_the_latest_closed_1m_candle_per_market():
    view = MarketView()
    view.add_candle(candle("BTC/USDT", T0, close=101.0))
    view.add_candle(candle("BTC/USDT", T0 + MINUTE_NS, close=105.0))
    view.add_candle(candle("BTC/USDT", T0, close=99.0, revision=1))  # a correction of an older minute
    view.add_candle(candle("ETH/USDT", T0, close=0.000123))
    view.add_candle(candle("ETH/USDT", T0, timeframe="5m", close=7.0))  # other timeframes are not shown
    view.add_tick("synthetic:BTC/USDT")
    view.add_tick("synthetic:ETH/USDT")

    table = view.render().splitlines()
    assert table[0].startswith("md.ticks.v1: 2 ticks from 2 markets")
    assert table[1].split() == ["exchange", "symbol", "ts", "(1m", "bucket,", "UTC)", "open", "high", "low",
                                "close", "volume", "trades"]
    btc, eth = table[2].split(), table[3].split()
    assert btc[:4] == ["synthetic", "BTC/USDT", "2023-11-14", "22:15:00Z"] and btc[7] == "105.00"
    assert eth[1] == "ETH/USDT" and eth[7] == "0.000123"
    assert btc[-2:] == ["1.5000", "3"]


def test_the_demo_table_shows_only_markets_trading_now_once_ticks_arrive():
    view = MarketView()
    view.add_candle(candle("BTC/USDT"))
    view.add_candle(Candle(**{**msgspec.structs.asdict(candle("BTC/USDT")), "exchange": "replayed"}))
    assert [row.split()[0] for row in view.render().splitlines()[2:]] == ["replayed", "synthetic"]
    view.add_tick("synthetic:BTC/USDT")
    assert [row.split()[0] for row in view.render().splitlines()[2:]] == ["synthetic"]


def test_the_demo_table_says_when_no_candle_closed_yet():
    assert "no closed 1m candle yet" in MarketView().render()
