"""``tradeflow db backup|restore``: the whole Tradeflow database with pg_dump's custom format.

What a backup holds: every table of the database (candles and ticks, the trading tables of risk,
execution, strategy and the notifier, the outboxes, the Alembic version, the optimiser's
``optuna`` schema), schema and data, in pg_dump's custom format (compressed; pg_restore can
list it and restore parts of it). The whole database rather than a list of tables: with
TimescaleDB a hypertable's rows live in chunk tables of ``_timescaledb_internal``, which a dump
of the named tables would leave out, and continuous aggregates have their own hidden tables.
TimescaleDB's documented way is a whole-database dump restored between
``timescaledb_pre_restore()`` and ``timescaledb_post_restore()``, which :func:`restore` does.

Restore goes into an empty database only (one without Tradeflow's schema): merging a backup into
live tables would mix two histories. The password of the URL goes to pg_dump/pg_restore through
``PGPASSWORD``, never on their command line (visible to ``ps``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tradeflow.settings import redact_url

PG_BINDIRS = (Path("/usr/lib/postgresql/15/bin"),)  # Debian's; then PATH


class BackupError(RuntimeError):
    """A backup or restore that could not be done; the text says why (no secrets)."""


@dataclass(frozen=True)
class BackupReport:
    path: Path
    bytes: int
    tables: int  # table data entries in the archive (chunks of hypertables counted one by one)
    timescaledb: bool


def pg_program(name: str, bindir: Path | None = None) -> str:
    """pg_dump/pg_restore: from ``bindir`` (``TRADEFLOW_PG_BINDIR``) if given, Debian's PostgreSQL 15,
    else the PATH.

    pg_dump must be at least the server's major version; point ``TRADEFLOW_PG_BINDIR`` at a newer
    client for a newer server (the timescaledb-ha image carries its own)."""
    if bindir is not None:
        program = Path(bindir) / name
        if not os.access(program, os.X_OK):
            raise BackupError(f"TRADEFLOW_PG_BINDIR: no {name} in {bindir}")
        return str(program)
    for directory in PG_BINDIRS:
        program = directory / name
        if os.access(program, os.X_OK):
            return str(program)
    found = shutil.which(name)
    if found is None:
        raise BackupError(f"{name} not found (install the PostgreSQL client, or set TRADEFLOW_PG_BINDIR)")
    return found


def _libpq(url: str) -> tuple[str, dict[str, str]]:
    """The URL without its password, and the environment that passes the password instead."""
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    params = conninfo_to_dict(url)
    password = params.pop("password", None)
    env = {**os.environ}
    if password is not None:
        env["PGPASSWORD"] = str(password)
    return make_conninfo(**{k: str(v) for k, v in params.items() if v is not None}), env


def _run(command: list[str], env: dict[str, str], what: str) -> subprocess.CompletedProcess:
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        detail = redact_url(result.stderr.strip())[-2000:] or f"exit code {result.returncode}"
        raise BackupError(f"{what} failed: {detail}")
    return result


def _archive_entries(path: Path, bindir: Path | None) -> list[str]:
    listing = _run([pg_program("pg_restore", bindir), "--list", str(path)], dict(os.environ), f"reading {path}")
    return [line for line in listing.stdout.splitlines() if line and not line.startswith(";")]


def backup(url: str, path: Path, bindir: Path | None = None) -> BackupReport:
    """Dump the database of ``url`` to ``path`` (custom format), atomically (a temporary file
    renamed once pg_dump succeeded)."""
    conninfo, env = _libpq(url)
    path = Path(path)
    partial = path.with_name(path.name + ".partial")
    try:
        _run([pg_program("pg_dump", bindir), "--format=custom", "--no-owner", "--no-privileges",
              f"--file={partial}", f"--dbname={conninfo}"], env, f"pg_dump of {redact_url(url)}")
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)
    entries = _archive_entries(path, bindir)
    return BackupReport(path, path.stat().st_size, sum(" TABLE DATA " in e for e in entries),
                        any(" EXTENSION " in e and e.rstrip().endswith("timescaledb") for e in entries))


def restore(path: Path, url: str, bindir: Path | None = None) -> BackupReport:
    """Restore the archive ``path`` into the (empty) database of ``url``."""
    import psycopg

    path = Path(path)
    if not path.is_file():
        raise BackupError(f"{path}: no such file")
    entries = _archive_entries(path, bindir)
    timescaledb = any(" EXTENSION " in e and e.rstrip().endswith("timescaledb") for e in entries)
    conninfo, env = _libpq(url)
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            holds = conn.execute("SELECT to_regclass('public.alembic_version') IS NOT NULL").fetchone()[0]
            if holds:
                raise BackupError(f"{redact_url(url)} already holds a Tradeflow schema: restore into an empty "
                                  "database (create one, or drop this one first)")
            if timescaledb:
                try:
                    conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
                except psycopg.Error as exc:
                    raise BackupError(f"the backup uses TimescaleDB but {redact_url(url)} cannot create the "
                                      f"extension: {str(exc).strip().splitlines()[0]}") from None
                conn.execute("SELECT timescaledb_pre_restore()")
    except psycopg.OperationalError as exc:
        raise BackupError(f"cannot connect to {redact_url(url)}: {redact_url(str(exc).strip())}") from None
    try:
        _run([pg_program("pg_restore", bindir), "--no-owner", "--no-privileges", "--exit-on-error",
              f"--dbname={conninfo}", str(path)], env, f"pg_restore into {redact_url(url)}")
    finally:
        if timescaledb:
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("SELECT timescaledb_post_restore()")
    return BackupReport(path, path.stat().st_size, sum(" TABLE DATA " in e for e in entries), timescaledb)
