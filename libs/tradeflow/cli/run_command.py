"""``tradeflow run SERVICE``: run one installed service (entry point group ``tradeflow.services``)."""

from __future__ import annotations

import argparse
from importlib.metadata import entry_points

from tradeflow.cli.errors import CliError

SERVICES_GROUP = "tradeflow.services"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    run = subparsers.add_parser("run", help="run a service in the foreground (SIGTERM/Ctrl-C stops it cleanly)")
    run.add_argument("service", help="service name, e.g. ingest or candle-builder")
    run.set_defaults(handler=run_service_command)


def installed_services() -> list[str]:
    return sorted(ep.name for ep in entry_points(group=SERVICES_GROUP))


def service_definition(name: str):
    """The ServiceDefinition registered under ``name``; CliError naming the installed ones otherwise."""
    matches = [ep for ep in entry_points(group=SERVICES_GROUP) if ep.name == name]
    if not matches:
        raise CliError(f"unknown service {name!r}; installed: {', '.join(installed_services()) or 'none'}")
    from tradeflow.service import ServiceDefinition

    definition = matches[0].load()
    if not isinstance(definition, ServiceDefinition):
        raise CliError(f"entry point {matches[0].value} of service {name!r} is not a ServiceDefinition "
                       "(stale install? run `make setup`)")
    return definition


def run_service_command(args: argparse.Namespace) -> int:
    from tradeflow.service import run_service

    run_service(service_definition(args.service))
    return 0
