"""``tradeflow backfill``: trades of a past range (or 1m candles) into the candle store.

The work is the candle-builder's (``tradeflow_candle_builder.backfill``), imported when the
command runs so that ``tradeflow --help`` stays quick.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

from tradeflow.commands import CliError, time_option
from tradeflow.settings import load_settings
from tradeflow.time import NS_PER_MS

USAGE_ERROR = 2


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    backfill = subparsers.add_parser(
        "backfill",
        help="fetch a past range of trades (or 1m candles) of one market into the database and rebuild its candles",
        description="Times: ISO 8601 (UTC unless an offset is given, e.g. 2024-03-01T12:00Z), epoch "
        "milliseconds, or 'now'. The exchange is a name of TRADEFLOW_EXCHANGES (its URLs, sandbox and "
        "credentials are used) or a ccxt exchange id. Running the same backfill twice changes nothing.",
    )
    backfill.add_argument("--exchange", required=True, help="TRADEFLOW_EXCHANGES name or ccxt id, e.g. binance")
    backfill.add_argument("--symbol", required=True, help="unified symbol, e.g. BTC/USDT")
    backfill.add_argument("--since", required=True, type=_time_option, metavar="TIME", help="start (inclusive)")
    backfill.add_argument("--until", required=True, type=_time_option, metavar="TIME", help="end (exclusive)")
    backfill.add_argument("--source", choices=("auto", "trades", "ohlcv"), default="auto",
                          help="trades, 1m candles (fetch_ohlcv; trade counts unknown), or auto: trades "
                          "where the exchange serves their history, else candles (default)")
    backfill.add_argument("--file", type=Path, metavar="REPLAY.csv",
                          help="read the trades from a replay CSV instead of the exchange")
    backfill.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    backfill.set_defaults(handler=backfill_command)


_time_option = time_option  # epoch ms from now, epoch ms or ISO 8601 (tradeflow.time)


def backfill_command(args: argparse.Namespace) -> int:
    from tradeflow_candle_builder.backfill.plan import RangeError, check_range
    from tradeflow_candle_builder.backfill.runner import (
        BackfillFailed,
        BackfillInputError,
        BackfillJob,
        run_backfill,
    )
    from tradeflow_candle_builder.backfill.settings import BackfillSettings

    try:
        check_range(args.since, args.until, now_ms=time.time_ns() // NS_PER_MS)
    except RangeError as exc:
        raise CliError(str(exc), exit_code=USAGE_ERROR) from None
    if args.file is not None and args.source != "auto":
        raise CliError("--source: not used with --file (the file holds trades)", exit_code=USAGE_ERROR)
    if args.file is not None and not args.file.is_file():
        raise CliError(f"--file {args.file}: no such file", exit_code=USAGE_ERROR)
    settings = load_settings(BackfillSettings)
    job = BackfillJob(exchange=args.exchange, symbol=args.symbol, since_ms=args.since, until_ms=args.until,
                      source=args.source, file=args.file, show_progress=not args.no_progress)
    try:
        report = asyncio.run(run_backfill(job, settings))
    except BackfillInputError as exc:
        raise CliError(str(exc), exit_code=USAGE_ERROR) from None
    except BackfillFailed as exc:
        raise CliError(str(exc)) from None
    print(report.summary(), flush=True)
    sys.stderr.flush()
    return 0
