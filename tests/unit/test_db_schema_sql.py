"""The storage-mode decision and the DDL each mode gets (pure; no database).

These pin down the SQL each mode gets, the licensed one included. The migrations also run for
real in every mode available (tests/integration/test_db_migrations.py; the licensed mode on
PGlite + TimescaleDB, docs/adr/0011, which is not production's PostgreSQL/TimescaleDB pairing).
"""

from __future__ import annotations

import re

import pytest
from alembic.script import ScriptDirectory
from tradeflow_db.capabilities import (
    DatabaseCapabilities,
    TimescaleDBNotPreloadedError,
    capabilities_from_facts,
    is_preloaded,
)
from tradeflow_db.migrate import alembic_config

ORIGIN = "TIMESTAMPTZ '2000-01-03 00:00:00+00'"
EXPECTED_HIERARCHY = {
    "candles_5m": ("5 minutes", "candles_1m"),
    "candles_15m": ("15 minutes", "candles_5m"),
    "candles_1h": ("1 hour", "candles_15m"),
    "candles_4h": ("4 hours", "candles_1h"),
    "candles_1d": ("1 day", "candles_1h"),
    "candles_1w": ("7 days", "candles_1d"),
}


@pytest.fixture(scope="module")
def migration():
    """The first revision's module, loaded the way Alembic loads it."""
    return ScriptDirectory.from_config(alembic_config("postgresql://unused")).get_revision("0001").module


# --- capability detection ---------------------------------------------------------------------


def test_no_extension_in_the_database_means_plain_postgres():
    caps = capabilities_from_facts(None, "timescaledb", None)
    assert caps == DatabaseCapabilities("postgres", None, False, False, False)


def test_apache_license_has_hypertables_but_no_licensed_features():
    caps = capabilities_from_facts("2.19.3", "timescaledb", "apache")
    assert caps == DatabaseCapabilities("timescaledb-apache", "2.19.3", False, False, False)
    assert caps.hypertables


def test_timescale_license_has_continuous_aggregates_compression_and_policies():
    caps = capabilities_from_facts("2.17.2", "pg_stat_statements, timescaledb", "timescale")
    assert caps == DatabaseCapabilities("timescaledb", "2.17.2", True, True, True)


def test_installed_but_not_preloaded_is_an_error_that_says_how_to_fix_it():
    with pytest.raises(TimescaleDBNotPreloadedError, match="shared_preload_libraries"):
        capabilities_from_facts("2.19.3", "pg_stat_statements", None)


def test_a_library_loaded_without_preload_counts_by_the_license_it_reports():
    # PGlite (the tests' licensed TimescaleDB) cannot preload; its session has the library loaded.
    caps = capabilities_from_facts("2.23.0-dev", "", "timescale")
    assert caps == DatabaseCapabilities("timescaledb", "2.23.0-dev", True, True, True)


@pytest.mark.parametrize(
    ("setting", "expected"),
    [
        ("timescaledb", True),
        ("pg_stat_statements,timescaledb", True),
        ("'$libdir/timescaledb'", True),
        ('"timescaledb", auto_explain', True),
        ("timescaledb_toolkit", False),
        ("my_timescaledb", False),
        ("", False),
        (None, False),
    ],
)
def test_preload_list_parsing(setting, expected):
    assert is_preloaded(setting) is expected


# --- DDL per mode -----------------------------------------------------------------------------


def _creates(statements):
    return {re.search(r"CREATE (?:MATERIALIZED )?VIEW (\w+)", s).group(1): s for s in statements if "CREATE" in s}


def test_licensed_timescaledb_gets_hierarchical_real_time_continuous_aggregates(migration):
    statements = migration.higher_timeframe_ddl("timescaledb")
    creates = _creates(statements)
    assert list(creates) == list(EXPECTED_HIERARCHY)
    for relation, (width, parent) in EXPECTED_HIERARCHY.items():
        ddl = creates[relation]
        assert ddl.startswith(
            f"CREATE MATERIALIZED VIEW {relation} "
            "WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS SELECT "
        )
        assert ddl.endswith(" WITH NO DATA")  # allowed inside the migration's transaction
        assert f" FROM {parent} GROUP BY " in ddl
        bucket = f"time_bucket(INTERVAL '{width}', ts, {ORIGIN})"
        assert f"{bucket} AS ts" in ddl and ddl.count(bucket) == 2  # selected and grouped by
        assert "first(open, ts) AS open" in ddl and "last(close, ts) AS close" in ddl
        assert "sum(trades::integer) AS trades" in ddl
        policy = [s for s in statements if f"add_continuous_aggregate_policy('{relation}'" in s]
        assert len(policy) == 1, relation
        # A policy comes after the view it refreshes.
        assert statements.index(policy[0]) == statements.index(ddl) + 1


def test_older_timescaledb_keeps_the_default_origin_which_is_the_same_monday(migration):
    ddl = _creates(migration.higher_timeframe_ddl("timescaledb", explicit_origin=False))["candles_1w"]
    assert "time_bucket(INTERVAL '7 days', ts) AS ts" in ddl
    assert "2000-01-03" not in ddl


@pytest.mark.parametrize(
    ("mode", "bucket_fn", "open_expr"),
    [
        ("timescaledb-apache", "time_bucket", "first(open, ts)"),
        ("postgres", "date_bin", "(array_agg(open ORDER BY ts))[1]"),
    ],
)
def test_other_modes_get_plain_views_straight_over_candles_1m(migration, mode, bucket_fn, open_expr):
    statements = migration.higher_timeframe_ddl(mode)
    creates = _creates(statements)
    assert list(creates) == list(EXPECTED_HIERARCHY)
    assert len(statements) == len(creates)  # no policies
    for relation, (width, _parent) in EXPECTED_HIERARCHY.items():
        ddl = creates[relation]
        assert ddl.startswith(f"CREATE VIEW {relation} AS SELECT ")
        assert " FROM candles_1m GROUP BY " in ddl
        assert f"{bucket_fn}(INTERVAL '{width}', ts, {ORIGIN}) AS ts" in ddl
        assert f"{open_expr} AS open" in ddl
        assert "timescaledb.continuous" not in ddl


def test_downgrade_drops_children_before_parents_with_the_matching_kind(migration):
    drops = migration.drop_higher_timeframe_ddl("timescaledb")
    assert drops[0] == "DROP MATERIALIZED VIEW IF EXISTS candles_1w"
    assert drops[-1] == "DROP MATERIALIZED VIEW IF EXISTS candles_5m"
    assert migration.drop_higher_timeframe_ddl("postgres")[0] == "DROP VIEW IF EXISTS candles_1w"


def test_only_timescaledb_modes_create_hypertables(migration):
    def hypertables(mode):
        return [s for s in migration.base_table_ddl(mode, "2.19.3") if "create_hypertable" in s]

    assert hypertables("postgres") == []
    ticks, candles = hypertables("timescaledb-apache")
    assert "'ticks'" in ticks and "INTERVAL '1 day'" in ticks
    assert "'candles_1m'" in candles and "INTERVAL '7 days'" in candles


# --- revision 0002: maintained tables instead of views ----------------------------------------


@pytest.fixture(scope="module")
def tables_migration():
    return ScriptDirectory.from_config(alembic_config("postgresql://unused")).get_revision("0002").module


def test_0002_leaves_continuous_aggregates_alone_and_applies_to_the_other_modes(tables_migration):
    assert tables_migration.down_revision == "0001"
    assert not tables_migration.maintains_tables("timescaledb")
    assert tables_migration.maintains_tables("timescaledb-apache")
    assert tables_migration.maintains_tables("postgres")


def test_0002_drops_views_children_first_then_creates_and_fills_tables_parents_first(tables_migration):
    ddl = tables_migration.upgrade_ddl()
    drops = [s for s in ddl if s.startswith("DROP VIEW")]
    assert drops == [f"DROP VIEW {r}" for r in reversed(EXPECTED_HIERARCHY)]
    filled_order = []
    for statement in ddl:
        if statement.startswith("CREATE TABLE"):
            relation = statement.split()[2]
            assert "PRIMARY KEY (exchange, symbol, ts)" in statement and "trades bigint" in statement
        elif statement.startswith("INSERT INTO"):
            relation = statement.split()[2]
            width, parent = EXPECTED_HIERARCHY[relation]
            assert f"date_bin(INTERVAL '{width}', ts, {ORIGIN})" in statement
            assert f"FROM {parent} GROUP BY" in statement
            assert parent == "candles_1m" or parent in filled_order, "a parent is filled before its children"
            filled_order.append(relation)
    assert filled_order == list(EXPECTED_HIERARCHY)


@pytest.mark.parametrize("mode", ["timescaledb-apache", "postgres"])
def test_0002_downgrade_restores_exactly_the_views_of_0001(migration, tables_migration, mode):
    ddl = tables_migration.downgrade_ddl(mode)
    assert ddl[:6] == [f"DROP TABLE {r}" for r in reversed(EXPECTED_HIERARCHY)]
    assert ddl[6:] == migration.higher_timeframe_ddl(mode)
