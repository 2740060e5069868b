"""``tradeflow backtest``, ``optimize``, ``montecarlo`` and ``lookahead`` (entry points of the group
``tradeflow.commands``, see :mod:`tradeflow.commands`).

Only the options live here (``tradeflow --help`` imports this module); the work is in
:mod:`tradeflow_backtest.research`, imported when a command runs. ``tradeflow backtest``'s
options and ``--json`` output are design.md's. Exit status: 0 done, 1 failed (no candles, the
candle-builder unreachable, a worker failed; and for ``lookahead``: a look-ahead was found),
2 a bad option or input (the message names the option).
"""

from __future__ import annotations

import argparse
from decimal import Decimal, InvalidOperation
from pathlib import Path

from tradeflow.commands import json_object_option, time_option
from tradeflow.timeframes import TIMEFRAMES

EXIT_STATUS = "Exit status: 0 done, 1 failed (e.g. no candles in the range), 2 a bad option or input."
RUN_DESCRIPTION = ("Candles come from the database through the candle-builder's API (TRADEFLOW_CANDLE_BUILDER_URL, "
                   "default http://127.0.0.1:8002) or from --candles FILE, a CSV with the header "
                   "ts,open,high,low,close,volume (ts: epoch ms or ISO 8601). Times: ISO 8601 (UTC unless an offset "
                   "is given), epoch milliseconds, or 'now'. The run is stored on the strategy service "
                   "(TRADEFLOW_STRATEGY_URL, default http://127.0.0.1:8003; key from TRADEFLOW_API_KEYS) unless "
                   "--no-store; when the service cannot be reached the command says so and still prints its result. "
                   "User strategies: TRADEFLOW_STRATEGY_PATHS.")


def _decimal(minimum: Decimal, *, strict: bool = False):
    def parse(text: str) -> Decimal:
        try:
            value = Decimal(text)
        except InvalidOperation:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not value.is_finite() or value < minimum or (strict and value == minimum):
            raise argparse.ArgumentTypeError(f"must be {'above' if strict else 'at least'} {minimum}, got {text}")
        return value
    return parse


def _int_at_least(minimum: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value
    return parse


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


_time = time_option  # epoch ms from now, epoch ms or ISO 8601 (tradeflow.time)


def _walk_forward(text: str) -> tuple[int, int]:
    from tradeflow_backtest.walkforward import parse_walk_forward

    try:
        return parse_walk_forward(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_run_options(parser: argparse.ArgumentParser, *, params_help: str) -> None:
    """The options of a run: strategy, market, range, candles, account (design.md's backtest options)."""
    parser.add_argument("--strategy", required=True, metavar="NAME", help="a strategy of the catalog, e.g. sma_cross")
    parser.add_argument("--params", required=True, type=json_object_option, metavar="JSON", help=params_help)
    parser.add_argument("--exchange", required=True, metavar="X", help="exchange of the market, e.g. binance")
    parser.add_argument("--symbol", required=True, metavar="S", help="unified symbol, e.g. BTC/USDT")
    parser.add_argument("--timeframe", required=True, choices=tuple(TIMEFRAMES), metavar="TF",
                        help=f"candle timeframe: {', '.join(TIMEFRAMES)}")
    parser.add_argument("--since", required=True, type=_time, metavar="T", help="first candle start (inclusive)")
    parser.add_argument("--until", required=True, type=_time, metavar="T", help="end of the range (exclusive)")
    parser.add_argument("--candles", type=Path, metavar="FILE", help="read the candles from this CSV file")
    parser.add_argument("--cash", type=_decimal(Decimal(0), strict=True), default=Decimal(10_000), metavar="N",
                        help="starting cash in the quote currency (default 10000)")
    parser.add_argument("--fee-bps", type=_decimal(Decimal(0)), default=Decimal(10), metavar="N",
                        help="maker and taker fee in basis points of the notional (default 10)")
    parser.add_argument("--slippage-bps", type=_decimal(Decimal(0)), default=Decimal(0), metavar="N",
                        help="market orders fill this many basis points worse (default 0)")
    parser.add_argument("--no-store", action="store_true", help="do not store the run on the strategy service")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """``tradeflow backtest``."""
    parser = subparsers.add_parser(
        "backtest", help="run a strategy over candle history through the shared fill rule",
        description=f"{RUN_DESCRIPTION} By default each entry buys with all available cash. {EXIT_STATUS}")
    add_run_options(parser, params_help='the strategy\'s parameters, e.g. \'{"fast": 10, "slow": 30}\'')
    parser.add_argument("--json", action="store_true",
                        help='print {"trades": [...], "metrics": {...}, "equity": [...]} (design.md)')
    parser.add_argument("--report", type=Path, metavar="FILE.html", help="write a self-contained HTML report")
    parser.set_defaults(handler=_handler("backtest_command"))


def add_optimize_parser(subparsers: argparse._SubParsersAction) -> None:
    """``tradeflow optimize``."""
    from tradeflow_backtest.optimize import SAMPLERS  # names only, no Optuna

    parser = subparsers.add_parser(
        "optimize", help="search a strategy's parameters (grid, random, TPE, CMA-ES, NSGA-II, particle swarm)",
        description=f"{RUN_DESCRIPTION} The study lives in --storage: a journal file (default "
        ".tradeflow/optuna.journal, this machine's processes) or postgresql://... (Optuna's tables in the schema "
        "'optuna'): run the same command on other machines with the same --storage and --study to add workers. "
        "Running the same command again continues an interrupted study up to --trials. {EXIT_STATUS}")
    add_run_options(parser, params_help="parameters held fixed (not searched), e.g. '{\"slow\": 30}'")
    parser.add_argument("--space", type=json_object_option, metavar="JSON", default=None,
                        help='narrow the searched ranges: \'{"fast": {"low": 5, "high": 50, "step": 5}, '
                             '"mode": {"choices": ["a", "b"]}}\' (default: the declared ranges)')
    parser.add_argument("--sampler", choices=SAMPLERS, default="tpe", help="search method (default tpe)")
    parser.add_argument("--objective", default="sharpe", metavar="EXPR",
                        help="sharpe, sortino, calmar, return, or an expression over the metrics such as "
                             "'sharpe * (1 - max_drawdown)' (maximised; default sharpe)")
    parser.add_argument("--min-trades", type=_int_at_least(0), default=1, metavar="N",
                        help="trials with fewer trades are rejected (default 1)")
    parser.add_argument("--trials", type=_int_at_least(1), metavar="N",
                        help="size of the study: finished trials to reach (default 100; a grid: its size)")
    parser.add_argument("--workers", type=_int_at_least(1), metavar="N",
                        help="worker processes on this machine (default: every core)")
    parser.add_argument("--storage", metavar="URL|FILE", help="postgresql://..., 'database' (the one of "
                        "TRADEFLOW_DATABASE_URL), or a journal file path (default .tradeflow/optuna.journal)")
    parser.add_argument("--study", metavar="NAME", help="study name (default: derived from the job, so the same "
                        "command resumes the same study)")
    parser.add_argument("--seed", type=_int_at_least(0), metavar="N", help="sampler seed (worker k uses N + k)")
    parser.add_argument("--population", type=_int_at_least(2), metavar="N",
                        help="NSGA-II's generation size (default 50) or the particle swarm's size (default 10)")
    parser.add_argument("--walk-forward", type=_walk_forward, metavar="TRAIN/TEST",
                        help="walk-forward analysis with these windows, e.g. 90d/30d (units m, h, d, w)")
    parser.add_argument("--top", type=_int_at_least(1), default=10, metavar="N", help="rows of the results table")
    parser.add_argument("--json", action="store_true", help="print the outcome as JSON")
    parser.add_argument("--report", type=Path, metavar="FILE.html",
                        help="HTML report of the best parameters (walk-forward: of the stitched out-of-sample run)")
    parser.set_defaults(handler=_handler("optimize_command"))


def add_montecarlo_parser(subparsers: argparse._SubParsersAction) -> None:
    """``tradeflow montecarlo``."""
    parser = subparsers.add_parser(
        "montecarlo", help="resample a backtest's trades: distributions of return and drawdown, probability of ruin",
        description=f"Runs the backtest, then resamples its closed trades --simulations times: 'shuffle' reorders "
        "them, 'bootstrap' draws them with replacement. Ruin: the equity after some trade at or below "
        f"--ruin-level times the starting cash. {RUN_DESCRIPTION} {EXIT_STATUS}")
    add_run_options(parser, params_help="the strategy's parameters")
    parser.add_argument("--simulations", type=_int_at_least(1), default=1000, metavar="N", help="default 1000")
    parser.add_argument("--seed", type=_int_at_least(0), default=0, metavar="N", help="default 0")
    parser.add_argument("--method", choices=("shuffle", "bootstrap", "both"), default="both", help="default both")
    parser.add_argument("--confidence", type=_fraction, default=0.95, metavar="F",
                        help="central interval reported (default 0.95)")
    parser.add_argument("--ruin-level", type=_fraction, default=0.5, metavar="F",
                        help="ruin: equity at or below this fraction of the starting cash (default 0.5)")
    parser.add_argument("--json", action="store_true", help="print the distributions as JSON")
    parser.set_defaults(handler=_handler("montecarlo_command"))


def add_lookahead_parser(subparsers: argparse._SubParsersAction) -> None:
    """``tradeflow lookahead``."""
    parser = subparsers.add_parser(
        "lookahead", help="check that a strategy's signals do not change when future candles are removed",
        description="Runs the strategy on the whole history and on histories cut right after its signals (and at "
        "even intervals), and reports every signal on the candles both saw that differs. Exit status 1 when a "
        f"look-ahead is found. {RUN_DESCRIPTION}")
    add_run_options(parser, params_help="the strategy's parameters")
    parser.add_argument("--max-signals", type=_int_at_least(1), default=50, metavar="N",
                        help="cut after at most N signals, spread over the history (default 50)")
    parser.add_argument("--extra-cuts", type=_int_at_least(0), default=10, metavar="N",
                        help="evenly spaced cuts besides (default 10)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.set_defaults(handler=_handler("lookahead_command"))


def _handler(name: str):
    def run(args: argparse.Namespace) -> int:
        from tradeflow_backtest import research

        return getattr(research, name)(args)
    return run
