"""Which storage modes (docs/adr/0003) this machine can run, and which fixture serves each.

Known at collection time, so tests can be parametrized by mode:

* the session's local cluster (``database_url``) runs whatever TimescaleDB build is installed for
  PostgreSQL 15: licensed when its TSL module is there, Apache when only the core is, plain
  PostgreSQL without the extension;
* ``plain_postgres_url`` is always plain PostgreSQL (same cluster, migrated without TimescaleDB);
* ``licensed_url`` is PGlite with TimescaleDB (tests/licensed_timescaledb.py), used for the
  licensed mode when the local cluster is not licensed and PGlite is installed.

Tests take the modes that are available and assert each mode's own behaviour.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from tradeflow_ops.infra.postgres import pg_tool

from tests.licensed_timescaledb import unavailable_reason

LICENSED = "timescaledb"
APACHE = "timescaledb-apache"
POSTGRES = "postgres"


@dataclass(frozen=True)
class ModeSource:
    mode: str  # the storage mode the fixture's database is migrated in
    fixture: str  # the session fixture that returns its URL
    id: str  # the test id


def local_cluster_mode() -> str:
    """The mode the local cluster's default database gets from the installed extension."""
    try:
        libdir = subprocess.run([pg_tool("pg_config"), "--pkglibdir"], capture_output=True, text=True,
                                check=True).stdout.strip()
        sharedir = subprocess.run([pg_tool("pg_config"), "--sharedir"], capture_output=True, text=True,
                                  check=True).stdout.strip()
    except Exception:  # noqa: BLE001 - no PostgreSQL: the fixtures will fail with the reason
        return POSTGRES
    if not (Path(sharedir) / "extension" / "timescaledb.control").exists():
        return POSTGRES
    return LICENSED if any(Path(libdir).glob("timescaledb-tsl-*.so")) else APACHE


def available_modes() -> list[ModeSource]:
    local = local_cluster_mode()
    sources = [ModeSource(local, "database_url", local if local != POSTGRES else "postgres-local"),
               ModeSource(POSTGRES, "plain_postgres_url", POSTGRES)]
    if local != LICENSED and unavailable_reason() is None:
        sources.append(ModeSource(LICENSED, "licensed_url", f"{LICENSED}-pglite"))
    return sources


def modes_where(predicate) -> list[ModeSource]:
    return [source for source in available_modes() if predicate(source.mode)]


def licensed_mode_note() -> str:
    """One line for the test report header: how (or whether) the licensed mode runs here."""
    if local_cluster_mode() == LICENSED:
        return "licensed TimescaleDB: the local cluster's build"
    reason = unavailable_reason()
    if reason is None:
        return "licensed TimescaleDB: PGlite + TimescaleDB (WebAssembly), see docs/adr/0011"
    return f"licensed TimescaleDB: NOT RUN ({reason})"
