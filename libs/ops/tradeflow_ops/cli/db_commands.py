"""``tradeflow db upgrade|backup|restore``: migrations, and backups of the database of
TRADEFLOW_DATABASE_URL (see tradeflow_ops.backup)."""

from __future__ import annotations

import argparse
from pathlib import Path

from tradeflow.settings import CommonSettings, load_settings, redact_url

from tradeflow_ops.cli.errors import CliError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    db = subparsers.add_parser("db", help="database schema")
    actions = db.add_subparsers(dest="db_action", required=True, metavar="upgrade|backup|restore")
    upgrade = actions.add_parser("upgrade", help="migrate to the latest schema and print the storage mode")
    upgrade.set_defaults(handler=db_upgrade)
    backup = actions.add_parser(
        "backup", help="dump the whole database (candles, ticks, trading tables) to FILE, pg_dump custom format")
    backup.add_argument("file", type=Path)
    backup.set_defaults(handler=db_backup)
    restore = actions.add_parser(
        "restore", help="restore FILE into an empty database (TRADEFLOW_DATABASE_URL, or --database-url)")
    restore.add_argument("file", type=Path)
    restore.add_argument("--database-url", default=None,
                         help="the target database (default: TRADEFLOW_DATABASE_URL); it must be empty")
    restore.set_defaults(handler=db_restore)


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


def _describe(report) -> str:
    mode = "with TimescaleDB" if report.timescaledb else "plain PostgreSQL"
    return f"{report.path} ({report.bytes} bytes, {report.tables} table data entries, {mode})"


def db_backup(args: argparse.Namespace) -> int:
    from tradeflow_ops.backup import BackupError, backup
    from tradeflow_ops.settings import BackupSettings

    settings = load_settings(BackupSettings)
    try:
        report = backup(settings.libpq_url, args.file, settings.pg_bindir)
    except BackupError as exc:
        raise CliError(str(exc)) from None
    print(f"backed up {redact_url(settings.libpq_url)} to {_describe(report)}")
    return 0


def db_restore(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from tradeflow_ops.backup import BackupError, restore
    from tradeflow_ops.settings import BackupSettings

    settings = load_settings(BackupSettings)
    target = settings.libpq_url
    if args.database_url is not None:
        try:
            target = CommonSettings(database_url=args.database_url).libpq_url
        except ValidationError:
            raise CliError("--database-url: must be a postgresql:// URL") from None
    try:
        report = restore(args.file, target, settings.pg_bindir)
    except BackupError as exc:
        raise CliError(str(exc)) from None
    print(f"restored {_describe(report)} into {redact_url(target)}")
    return 0
