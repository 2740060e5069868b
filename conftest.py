"""The repository's pytest configuration, for every test wherever it lives (tests/, services/*/tests/):
session fixtures with a REAL Tansu broker and a REAL PostgreSQL(+TimescaleDB) cluster, and the
rule that unit tests (any directory named ``unit``) start no servers.

Both run on free loopback ports in a fresh temporary directory (so a `make demo` on the default
ports is left alone), are started only when a test asks for them, and are stopped by pid at the
end of the session, also when tests fail. If either cannot start, every test that needs it
fails with the server's log tail: nothing is skipped.

Fixtures: ``kafka_bootstrap``, ``database_url`` (migrated, with TimescaleDB when installed),
``plain_postgres_url`` (migrated without TimescaleDB: the plain-PostgreSQL mode),
``licensed_url`` (the licensed TimescaleDB in PGlite, tests/licensed_timescaledb.py: requested only
through tests/database_modes.py, which offers it when it is installed), ``service_env``
(TRADEFLOW_* variables for service subprocesses, the API key included), ``api_key`` (the
session's key for state-changing requests, generated), ``private_broker`` (a broker of one test,
which it may restart) and ``unique_name`` (fresh per test).
"""

from __future__ import annotations

import atexit
import os
import re
import secrets
import shutil
import signal
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from tradeflow_ops.infra import InfraError, LocalInfra
from tradeflow_ops.infra.processes import free_port, process_start_ticks

from tests.database_modes import licensed_mode_note
from tests.licensed_timescaledb import PGliteTimescaleDB, stop_recorded

INFRA_FIXTURES = {"kafka_bootstrap", "database_url", "plain_postgres_url", "licensed_url", "service_env",
                  "local_infra", "private_broker"}
PLAIN_DATABASE = "tradeflow_plain"
STATE_DIR_PREFIX = "tradeflow-tests-"
OWNER_FILE = "owner.pid"  # the pytest process that owns the servers in this state dir

# The suite must not pick up a developer's exported TRADEFLOW_* settings (e.g. from
# `tradeflow infra status`): tests set what they need explicitly.
for _name in [n for n in os.environ if n.upper().startswith("TRADEFLOW_")]:
    del os.environ[_name]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests that use the servers are integration tests; unit tests may not start servers."""
    misplaced = []
    for item in items:
        uses_infra = INFRA_FIXTURES.intersection(getattr(item, "fixturenames", ()))
        if uses_infra:
            item.add_marker(pytest.mark.integration)
            if "unit" in Path(str(item.path)).parts[:-1]:
                misplaced.append(f"{item.nodeid} (uses {', '.join(sorted(uses_infra))})")
    if misplaced:
        raise pytest.UsageError("unit tests must not start servers; move these to an integration directory "
                                "(tests/integration, services/<name>/tests/integration):\n  " + "\n  ".join(misplaced))


def pytest_report_header(config: pytest.Config) -> str:
    return licensed_mode_note()


def pytest_configure(config: pytest.Config) -> None:
    # A CI timeout or `kill` sends SIGTERM: turn it into an interrupt so fixture teardown still
    # stops the servers (they run in their own sessions and would otherwise outlive the run).
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _interrupt)


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _stop_abandoned_test_infra() -> None:
    """Stop the servers of earlier test sessions that died without their teardown (e.g. SIGKILL)."""
    for state_dir in Path(tempfile.gettempdir()).glob(f"{STATE_DIR_PREFIX}*"):
        try:
            owner = int((state_dir / OWNER_FILE).read_text())
        except (FileNotFoundError, ValueError):
            continue
        if process_start_ticks(owner) is None:
            stop_recorded(state_dir)
            LocalInfra(state_dir).down()
            shutil.rmtree(state_dir, ignore_errors=True)


def _owned_state_dir() -> Path:
    """A fresh LocalInfra state directory owned by this pytest process (see _stop_abandoned_test_infra).

    Under /tmp and traversable (0711) so the `postgres` OS user can reach its cluster directory
    when the suite runs as root; pytest's own tmp dirs are private to the current user.
    """
    state_dir = Path(tempfile.mkdtemp(prefix=STATE_DIR_PREFIX, dir=tempfile.gettempdir()))
    state_dir.chmod(0o711)
    (state_dir / OWNER_FILE).write_text(str(os.getpid()))
    return state_dir


@pytest.fixture(scope="session")
def local_infra() -> Iterator[LocalInfra]:
    """The session's LocalInfra (nothing started yet); stopped by pid and deleted at session end."""
    _stop_abandoned_test_infra()
    state_dir = _owned_state_dir()
    infra = LocalInfra(state_dir, kafka_port=free_port(), db_port=free_port())
    stopped = False

    def stop() -> None:
        nonlocal stopped
        if not stopped:
            stopped = True
            infra.down()
            shutil.rmtree(state_dir, ignore_errors=True)

    atexit.register(stop)  # also when the session is interrupted before fixture teardown
    try:
        yield infra
    finally:
        stop()


def _start(infra: LocalInfra, **components: bool) -> None:
    try:
        infra.up(**components)
    except InfraError as exc:
        pytest.fail(f"local infrastructure for the tests could not start:\n{exc}", pytrace=False)


@pytest.fixture(scope="session")
def kafka_bootstrap(local_infra: LocalInfra) -> str:
    """``127.0.0.1:PORT`` of a real, empty Tansu broker (in-memory) for this session."""
    _start(local_infra, kafka=True, postgres=False)
    return local_infra.kafka_bootstrap


@pytest.fixture(scope="session")
def database_url(local_infra: LocalInfra) -> str:
    """A migrated database; uses TimescaleDB when the extension is installed."""
    from tradeflow_db.migrate import upgrade  # the db package is only needed by tests that use it

    _start(local_infra, kafka=False, postgres=True)
    url = local_infra.database_url
    upgrade(url)
    return url


@pytest.fixture(scope="session")
def plain_postgres_url(local_infra: LocalInfra) -> str:
    """A second migrated database in the same cluster that does not use TimescaleDB."""
    from tradeflow_db.migrate import upgrade

    _start(local_infra, kafka=False, postgres=True)
    url = local_infra.create_database(PLAIN_DATABASE)
    upgrade(url, use_timescaledb=False)
    return url


@pytest.fixture
def private_broker() -> Iterator[LocalInfra]:
    """A real Tansu broker of this test alone, on its own free loopback port (``.kafka_bootstrap``).

    The test may restart it: ``down(components=["kafka"])`` then ``up(postgres=False)``; Tansu
    keeps everything in memory, so the restarted broker has no topics, records or committed
    offsets (as after ``tradeflow infra down``/``up``). Stopped by pid at the end.
    """
    state_dir = _owned_state_dir()
    infra = LocalInfra(state_dir, kafka_port=free_port(), db_port=free_port())
    try:
        _start(infra, kafka=True, postgres=False)
        yield infra
    finally:
        infra.down()
        shutil.rmtree(state_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def licensed_url(local_infra: LocalInfra) -> Iterator[str]:
    """A migrated database in the licensed mode: PGlite + TimescaleDB (continuous aggregates).

    One database per process, shared by the session's tests like ``database_url``; stopped by
    pid at the end of the session."""
    from tradeflow_db.migrate import upgrade

    server = PGliteTimescaleDB(free_port(), local_infra.state_dir)
    try:
        url = server.start()
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        caps = upgrade(url)
        assert caps.mode == "timescaledb", f"PGlite migrated as {caps.mode!r}, not the licensed mode"
        yield url
    finally:
        server.stop()


@pytest.fixture(scope="session")
def api_key() -> str:
    """The session's API key (design.md: tests generate one); send it as ``Authorization: Bearer``."""
    return secrets.token_urlsafe(32)


@pytest.fixture(scope="session")
def service_env(kafka_bootstrap: str, database_url: str, api_key: str) -> dict[str, str]:
    """TRADEFLOW_* variables for a service subprocess: ``env={**os.environ, **service_env, ...}``."""
    return {
        "TRADEFLOW_ENVIRONMENT": "test",
        "TRADEFLOW_API_KEYS": api_key,
        "TRADEFLOW_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "TRADEFLOW_DATABASE_URL": database_url,
        # Tansu completes a group join after about half the session timeout: keep it short.
        "TRADEFLOW_CONSUMER_SESSION_TIMEOUT_MS": "6000",
        "TRADEFLOW_LOG_FORMAT": "json",
    }


@pytest.fixture
def unique_name(request: pytest.FixtureRequest) -> str:
    """A fresh name per test (valid as a Kafka topic or group name), readable in broker logs."""
    test = re.sub(r"[^A-Za-z0-9._-]+", "-", request.node.name)[:40].strip("-.")
    return f"{test}-{uuid.uuid4().hex[:8]}"
