"""The root conftest.py's rule holds wherever tests live: a unit test may not start servers."""

from __future__ import annotations

from pathlib import Path

pytest_plugins = ("pytester",)

ROOT_CONFTEST = Path(__file__).resolve().parents[2] / "conftest.py"
USES_THE_BROKER = "def test_publishes(kafka_bootstrap):\n    pass\n"


def test_a_service_unit_test_that_starts_a_server_is_refused_and_an_integration_one_is_marked(pytester):
    pytester.makeconftest(ROOT_CONFTEST.read_text())
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = session\n")
    pytester.mkdir("services")
    for kind in ("unit", "integration"):
        folder = pytester.path / "services" / "some-service" / "tests" / kind
        folder.mkdir(parents=True)
        (folder / "test_publishing.py").write_text(USES_THE_BROKER)  # same file name twice: importlib mode

    refused = pytester.runpytest("--import-mode=importlib", "--collect-only", "services")
    assert refused.ret != 0
    refused.stderr.fnmatch_lines(["*unit tests must not start servers*",
                                  "*services/some-service/tests/unit/test_publishing.py::test_publishes*"])

    allowed = pytester.runpytest("--import-mode=importlib", "--collect-only", "-m", "integration",
                                 "services/some-service/tests/integration")
    assert allowed.ret == 0
    allowed.stdout.fnmatch_lines(["*1 test collected*"])
