"""``tradeflow run SERVICE``: run one installed service (entry point group ``tradeflow.services``)."""

from __future__ import annotations

import argparse

from tradeflow_ops.cli.errors import CliError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    run = subparsers.add_parser("run", help="run a service in the foreground (SIGTERM/Ctrl-C stops it cleanly)")
    run.add_argument("service", help="service name, e.g. ingest or candle-builder")
    run.set_defaults(handler=run_service_command)


def service_definition(name: str):
    """The ServiceDefinition registered under ``name``; CliError naming the installed ones otherwise."""
    from tradeflow.service import UnknownServiceError
    from tradeflow.service import service_definition as lookup

    try:
        return lookup(name)
    except UnknownServiceError as exc:
        raise CliError(str(exc)) from None


def run_service_command(args: argparse.Namespace) -> int:
    from tradeflow.service import run_service

    run_service(service_definition(args.service))
    return 0
