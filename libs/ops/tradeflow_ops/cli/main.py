"""``tradeflow``: the operator command line. Each subcommand lives in its own module, found
through the entry-point group ``tradeflow.commands`` (see :mod:`tradeflow.commands`).

Failures print one clear line (then detail lines such as a server's log tail where they help)
and exit non-zero; ``--traceback`` shows the Python traceback for bug reports.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
from collections.abc import Sequence
from importlib.metadata import entry_points

from tradeflow.commands import COMMANDS_GROUP
from tradeflow.settings import ConfigurationError

from tradeflow_ops.cli.errors import CliError, summarize
from tradeflow_ops.infra import InfraError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tradeflow",
        description="Tradeflow operator commands. Configuration: TRADEFLOW_* environment variables "
        "(e.g. TRADEFLOW_KAFKA_BOOTSTRAP, TRADEFLOW_DATABASE_URL); defaults are the local infrastructure.",
    )
    parser.add_argument("--traceback", action="store_true", help="show the Python traceback of a failure")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    # Every subcommand, these tools' own and the services' (replay, backfill, ...), comes from the
    # entry-point group: this module knows no service by name.
    for entry_point in sorted(entry_points(group=COMMANDS_GROUP), key=lambda ep: ep.name):
        entry_point.load()(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    where = f"tradeflow {args.command}"
    if args.command != "run":  # a service configures its own logging; here, results go to stdout
        logging.basicConfig(level=logging.ERROR, format=f"{where}: %(name)s: %(message)s")
    try:
        return args.handler(args)
    except ConfigurationError as exc:  # names each bad TRADEFLOW_ variable
        print(f"{where}: {exc}", file=sys.stderr)
        return 2
    except (CliError, InfraError) as exc:
        if args.traceback:
            traceback.print_exc()
        print(f"{where}: {exc}", file=sys.stderr)
        return exc.exit_code if isinstance(exc, CliError) else 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # e.g. `tradeflow topics tail X | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as exc:
        if args.traceback:
            traceback.print_exc()
        print(f"{where}: error: {summarize(exc)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
