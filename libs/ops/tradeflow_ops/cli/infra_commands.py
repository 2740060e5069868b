"""``tradeflow infra up|down|status``: the local broker and database."""

from __future__ import annotations

import argparse

from tradeflow.settings import load_settings

from tradeflow_ops.infra import InfraSettings, LocalInfra


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    infra = subparsers.add_parser("infra", help="local broker (Tansu) and database (PostgreSQL + TimescaleDB)")
    actions = infra.add_subparsers(dest="infra_action", required=True, metavar="up|down|status")
    up = actions.add_parser("up", help="start what is not running yet (idempotent)")
    up.set_defaults(handler=infra_up)
    down = actions.add_parser("down", help="stop what `infra up` started")
    down.add_argument("--purge", action="store_true", help="also delete the local database cluster (all data)")
    down.set_defaults(handler=infra_down)
    status = actions.add_parser("status", help="what runs, and the settings to use")
    status.set_defaults(handler=infra_status)


def local_infra() -> LocalInfra:
    return LocalInfra.from_settings(load_settings(InfraSettings))


def say_external(infra: LocalInfra) -> None:
    """Tell the operator which component comes from the environment and is not started here."""
    if infra.external_kafka_bootstrap:
        print(f"kafka: using TRADEFLOW_KAFKA_BOOTSTRAP={infra.external_kafka_bootstrap} (not starting a local broker)")
    if infra.external_database_url:
        print("postgres: using TRADEFLOW_DATABASE_URL from the environment (not starting a local database)")


def infra_up(args: argparse.Namespace) -> int:
    infra = local_infra()
    say_external(infra)
    status = infra.up()
    print(f"started: {', '.join(status.started)}" if status.started else "already running; nothing started")
    print(status.describe())
    return 0


def infra_down(args: argparse.Namespace) -> int:
    infra = local_infra()
    say_external(infra)
    stopped = infra.down(purge=args.purge)
    print(f"stopped: {', '.join(stopped)}" if stopped else "nothing to stop")
    if args.purge:
        print(f"deleted the local database cluster under {infra.cluster.root}")
    return 0


def infra_status(args: argparse.Namespace) -> int:
    status = local_infra().status()
    print(status.describe())
    return 0 if status.ready else 3  # 3, like `pg_ctl status` when the server is not running
