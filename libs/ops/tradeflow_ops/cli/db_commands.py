"""``tradeflow db upgrade``: run the schema migrations against TRADEFLOW_DATABASE_URL."""

from __future__ import annotations

import argparse

from tradeflow.settings import CommonSettings, load_settings, redact_url

from tradeflow_ops.cli.errors import CliError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    db = subparsers.add_parser("db", help="database schema")
    actions = db.add_subparsers(dest="db_action", required=True, metavar="upgrade")
    upgrade = actions.add_parser("upgrade", help="migrate to the latest schema and print the storage mode")
    upgrade.set_defaults(handler=db_upgrade)


def describe_capabilities(capabilities) -> str:
    yes_no = {True: "yes", False: "no"}
    version = f" {capabilities.timescaledb_version}" if capabilities.timescaledb_version else ""
    return (
        f"storage mode: {capabilities.mode}{version} (continuous aggregates: "
        f"{yes_no[capabilities.continuous_aggregates]}, compression: {yes_no[capabilities.compression]}, "
        f"policies: {yes_no[capabilities.policies]})"
    )


def db_upgrade(args: argparse.Namespace) -> int:
    from sqlalchemy.exc import OperationalError
    from tradeflow_db.migrate import upgrade  # lazily: alembic and sqlalchemy are slow to import

    settings = load_settings(CommonSettings)
    try:
        capabilities = upgrade(settings.libpq_url)
    except OperationalError as exc:  # cannot connect, or the server went away
        reason = str(exc.orig or exc).strip().splitlines()[0]
        raise CliError(f"cannot migrate {redact_url(settings.libpq_url)}: {redact_url(reason)}") from None
    print(f"migrated {redact_url(settings.libpq_url)} to the latest schema")
    print(describe_capabilities(capabilities))
    return 0
