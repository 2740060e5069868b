"""``tradeflow replay FILE``: publish a replay CSV to md.ticks.v1 and report skipped lines."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from tradeflow.commands import CliError
from tradeflow.settings import CommonSettings, load_settings
from tradeflow.topics import MD_TICKS


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    replay = subparsers.add_parser(
        "replay", help="publish a CSV (ts,exchange,symbol,price,amount,side,trade_id) to md.ticks.v1"
    )
    replay.add_argument("file", type=Path)
    replay.add_argument("--topic", default=None,
                        help="publish to this topic instead of md.ticks.v1 (a staging copy, a test's own topic)")
    replay.set_defaults(handler=replay_file)


def replay_file(args: argparse.Namespace) -> int:
    from tradeflow_ingest.replay import publish_replay_file  # the ingest service owns the file format

    if not args.file.is_file():
        raise CliError(f"{args.file}: no such file")
    settings = load_settings(CommonSettings)
    report = asyncio.run(publish_replay_file(args.file, settings, topic=args.topic or MD_TICKS.name))
    print(report.summary())
    if report.published == 0:
        raise CliError(f"{args.file}: nothing could be published", exit_code=2)
    return 0
