"""``tradeflow backtest``, ``optimize``, ``montecarlo`` and ``lookahead`` as a user runs them: options,
design.md's JSON output, exit codes, and every run stored on the strategy service's /v1/backtests."""

from __future__ import annotations

import json
import secrets

import pytest
from tradeflow.time import parse_time_ns
from tradeflow_backtest.data import write_candles_csv
from tradeflow_backtest.walkforward import parse_walk_forward, windows
from tradeflow_ops.cli.main import main

from tests.research_problems import valley_and_peak, write_strategies
from tests.research_store import BacktestsEndpoint
from tests.strategy_candles import T0, random_walk

SINCE, UNTIL = "2026-01-05T00:00Z", "2026-01-12T00:00Z"  # T0 is 2026-01-05 00:00 UTC


@pytest.fixture
def candles_file(tmp_path):
    path = tmp_path / "candles.csv"
    with path.open("w") as out:
        write_candles_csv(random_walk(24 * 7, 21, tf="1h", volatility=0.01), out)
    return path


@pytest.fixture
def store(monkeypatch):
    key = secrets.token_urlsafe(24)
    with BacktestsEndpoint(key) as endpoint:
        monkeypatch.setenv("TRADEFLOW_STRATEGY_URL", endpoint.url)
        monkeypatch.setenv("TRADEFLOW_API_KEYS", f"{key},{secrets.token_urlsafe(24)}")  # the first key is used
        yield endpoint


def run(argv, capsys) -> tuple[int, str, str]:
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def backtest_argv(candles_file, *more, params='{"fast": 3, "slow": 8}'):
    return ["backtest", "--strategy", "sma_cross", "--params", params, "--exchange", "binance", "--symbol",
            "BTC/USDT", "--timeframe", "1h", "--since", SINCE, "--until", UNTIL, "--candles", str(candles_file),
            "--no-progress", *more]


def test_backtest_json_has_the_designed_shape_and_the_run_is_stored(candles_file, store, capsys):
    code, out, err = run(backtest_argv(candles_file, "--json", "--fee-bps", "5", "--slippage-bps", "2",
                                       "--cash", "2500"), capsys)
    assert code == 0, err
    output = json.loads(out)  # stdout is the JSON alone
    assert set(output) == {"trades", "metrics", "equity"}
    assert set(output["metrics"]) == {"total_return", "sharpe", "sortino", "max_drawdown", "win_rate",
                                      "profit_factor", "trades"}
    assert output["trades"] and all(set(t) == {"entry_ts", "entry_price", "exit_ts", "exit_price", "quantity",
                                               "pnl", "fees"} for t in output["trades"])
    assert output["metrics"]["trades"] == len(output["trades"])
    assert len(output["equity"]) == 24 * 7 and output["equity"][0]["ts"] == "2026-01-05T01:00:00.000Z"
    (stored,) = store.posted
    assert stored["kind"] == "backtest" and stored["strategy"] == "sma_cross"
    assert stored["params"] == {"fast": 3, "slow": 8}
    assert stored["markets"] == [{"exchange": "binance", "symbol": "BTC/USDT"}]
    assert (stored["timeframe"], stored["since"], stored["until"]) == ("1h", "2026-01-05T00:00:00.000Z",
                                                                        "2026-01-12T00:00:00.000Z")
    assert stored["settings"] == {"cash": "2500", "fee_bps": "5", "slippage_bps": "2"}
    assert stored["trades"] == output["trades"] and stored["equity"] == output["equity"]
    assert {k: stored["metrics"][k] for k in output["metrics"]} == output["metrics"]
    assert "stored on the strategy service as run-1" in err


def test_an_unreachable_strategy_service_is_said_and_the_result_still_printed(candles_file, monkeypatch, capsys):
    monkeypatch.setenv("TRADEFLOW_STRATEGY_URL", "http://127.0.0.1:9")
    code, out, err = run(backtest_argv(candles_file, "--json"), capsys)
    assert code == 0
    assert set(json.loads(out)) == {"trades", "metrics", "equity"}
    assert "tradeflow backtest: not stored: strategy service at http://127.0.0.1:9 unreachable" in err
    code, out, err = run(backtest_argv(candles_file, "--json", "--no-store"), capsys)
    assert code == 0 and "stored" not in err


def test_a_refused_key_is_said_and_the_result_still_printed(candles_file, store, monkeypatch, capsys):
    monkeypatch.setenv("TRADEFLOW_API_KEYS", secrets.token_urlsafe(24))
    code, out, err = run(backtest_argv(candles_file), capsys)
    assert code == 0 and "total_return" in out
    assert "not stored: strategy service" in err and "answered 401" in err
    assert store.posted == [] and len(store.refused) == 1


@pytest.mark.parametrize(("change", "complaint"), [
    ({"--params": "{fast: 3}"}, "argument --params: not JSON"),
    ({"--params": '{"fast": 9, "slow": 8}'}, "--params: parameter 'fast': must be less than slow (8), got 9"),
    ({"--params": '{"fats": 3}'}, "--params: parameter 'fats': unknown parameter"),
    ({"--strategy": "sma_crosss"}, "--strategy: unknown strategy 'sma_crosss'"),
    ({"--timeframe": "2h"}, "argument --timeframe: invalid choice: '2h'"),
    ({"--since": "yesterday"}, "argument --since: expected ISO 8601"),
    ({"--until": "2026-01-01"}, "--until (2026-01-01T00:00:00.000Z) must be after --since"),
    ({"--cash": "0"}, "argument --cash: must be above 0"),
    ({"--fee-bps": "-1"}, "argument --fee-bps: must be at least 0"),
    ({"--candles": "/nonexistent.csv"}, "--candles /nonexistent.csv: no such file"),
])
def test_bad_options_exit_2_naming_the_option(candles_file, change, complaint, capsys):
    argv = backtest_argv(candles_file, "--no-store")
    for option, value in change.items():
        if option in argv:
            argv[argv.index(option) + 1] = value
        else:
            argv += [option, value]
    code, out, err = run(argv, capsys)
    assert code == 2, err
    assert complaint in err and out == "" and "Traceback" not in err


def test_a_broken_candle_file_exits_2_naming_the_line_and_an_empty_range_exits_1(tmp_path, candles_file, capsys):
    broken = tmp_path / "broken.csv"
    broken.write_text("ts,open,high,low,close,volume\n1767571200000,10,11,9,10,1\n1767574800000,10,11,9,ten,1\n")
    argv = backtest_argv(broken, "--no-store")
    code, _, err = run(argv, capsys)
    assert code == 2 and f"--candles {broken}: line 3: close is not a number: 'ten'" in err
    argv = backtest_argv(candles_file, "--no-store")
    argv[argv.index("--since") + 1], argv[argv.index("--until") + 1] = "2030-01-01", "2030-02-01"
    code, _, err = run(argv, capsys)
    assert code == 1 and "no 1h candles of binance BTC/USDT in the range" in err


def test_optimize_prints_the_table_and_best_parameters_and_stores_the_summary(tmp_path, store, capsys, monkeypatch):
    strategies = write_strategies(tmp_path)
    candles = tmp_path / "valley.csv"
    with candles.open("w") as out:
        write_candles_csv(valley_and_peak(), out)
    monkeypatch.setenv("TRADEFLOW_STRATEGY_PATHS", str(strategies))
    code, out, err = run(["optimize", "--strategy", "enter_exit_at", "--params", '{"entry": 8}',
                              "--space", '{"leave": {"low": 20, "high": 39}}', "--exchange", "binance", "--symbol",
                              "BTC/USDT", "--timeframe", "1m", "--since", "2026-01-05", "--until", "2026-01-06",
                              "--candles", str(candles), "--sampler", "grid", "--objective", "return", "--workers", "1",
                              "--storage", str(tmp_path / "study.journal"), "--fee-bps", "0", "--no-progress",
                              "--top", "3"], capsys)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("study enter_exit_at-binance-BTCUSDT-1m-grid-") and "20 complete" in lines[0]
    assert '{"entry": 8, "leave": 30}' in lines[2] and lines[2].split()[0] == "1"
    assert len([line for line in lines if line.strip()[:1].isdigit()]) == 3
    assert lines[-1] == 'best parameters: {"entry": 8, "leave": 30}'
    (stored,) = store.posted
    assert stored["kind"] == "optimize" and stored["params"] == {"entry": 8, "leave": 30}
    assert stored["settings"]["sampler"] == "grid" and stored["settings"]["trials"] == 20
    assert stored["summary"]["best"]["params"] == {"entry": 8, "leave": 30}
    assert [row["params"]["leave"] for row in stored["summary"]["results"]][0] == 30
    assert len(stored["trades"]) == 1 and stored["metrics"]["trades"] == 1


def test_walk_forward_windows_and_stitched_equity_through_the_command(tmp_path, store, capsys):
    candles = tmp_path / "walk.csv"
    with candles.open("w") as out:
        write_candles_csv(random_walk(24 * 30, 31, tf="1h", volatility=0.01), out)
    code, out, err = run(["optimize", "--strategy", "sma_cross", "--params", "{}", "--space",
                          '{"fast": {"low": 2, "high": 6, "step": 2}, "slow": {"low": 8, "high": 16, "step": 4}}',
                          "--exchange", "binance", "--symbol", "BTC/USDT", "--timeframe", "1h", "--since",
                          "2026-01-05", "--until", "2026-02-04", "--candles", str(candles), "--sampler", "grid",
                          "--workers", "1", "--storage", str(tmp_path / "wf.journal"), "--walk-forward", "7d/5d",
                          "--objective", "return", "--min-trades", "0", "--json", "--no-progress"], capsys)
    assert code == 0, err
    result = json.loads(out)
    expected = windows(T0, T0 + 30 * 24 * 3600 * 10**9, *parse_walk_forward("7d/5d"))
    assert [(parse_time_ns(w["train_start"]), parse_time_ns(w["test_start"]),
             parse_time_ns(w["test_end"])) for w in result["windows"]] == \
        [(w.train_start, w.test_start, w.test_end) for w in expected]
    assert len(expected) == 5 and expected[-1].test_end - expected[-1].test_start == 3 * 24 * 3600 * 10**9
    # Stitched out-of-sample equity: one point per test candle (at its end), in order, nothing from training only.
    ends = [parse_time_ns(p["ts"]) for p in result["equity"]]
    assert ends == sorted(set(ends))
    assert ends[0] == expected[0].test_start + 3600 * 10**9 and ends[-1] == expected[-1].test_end
    assert len(ends) == (expected[-1].test_end - expected[0].test_start) // (3600 * 10**9)
    # Each window starts from the equity the previous one ended with.
    for before, after in zip(result["windows"], result["windows"][1:], strict=False):
        last = next(p["equity"] for p in reversed(result["equity"]) if p["ts"] <= before["test_end"])
        first = next(p["equity"] for p in result["equity"] if p["ts"] > after["test_start"])
        assert abs(first / last - 1) < 0.2  # continuous: no reset to the starting cash
    for trade in result["trades"]:
        entry = parse_time_ns(trade["entry_ts"])
        assert any(w.test_start <= entry < w.test_end for w in expected)  # out-of-sample trades only
    assert set(result["out_of_sample"]) >= {"total_return", "sharpe", "max_drawdown", "trades"}
    (stored,) = store.posted
    assert stored["kind"] == "walk_forward" and stored["summary"]["windows"] == result["windows"]
    assert stored["equity"] == result["equity"]


def test_montecarlo_is_reproducible_and_stored(candles_file, store, capsys):
    argv = backtest_argv(candles_file, "--json", "--simulations", "300", "--seed", "5")
    argv[0] = "montecarlo"
    code, first, err = run(argv, capsys)
    assert code == 0, err
    code, again, _ = run(argv, capsys)
    assert first == again
    result = json.loads(first)
    assert set(result["methods"]) == {"shuffle", "bootstrap"}
    for method in result["methods"].values():
        low, high = method["total_return"]["interval"]
        assert low <= method["total_return"]["percentiles"]["p50"] <= high
        assert 0 <= method["probability_of_ruin"] <= 1
    assert [r["kind"] for r in store.posted] == ["montecarlo", "montecarlo"]
    assert store.posted[0]["summary"]["methods"] == result["methods"]


def test_lookahead_exit_status_says_whether_a_strategy_reads_the_future(tmp_path, candles_file, capsys, monkeypatch):
    monkeypatch.setenv("TRADEFLOW_STRATEGY_PATHS", str(write_strategies(tmp_path)))
    argv = backtest_argv(candles_file)
    argv[0] = "lookahead"
    code, out, _ = run(argv, capsys)
    assert code == 0 and "sma_cross: no look-ahead" in out
    argv[argv.index("--strategy") + 1], argv[argv.index("--params") + 1] = "peeks_ahead", "{}"
    code, out, _ = run(argv, capsys)
    assert code == 1 and "peeks_ahead: LOOK-AHEAD" in out
