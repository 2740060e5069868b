"""docs/operations.md's configuration reference is the one the settings classes give (no drift)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tradeflow.settings import CommonSettings, ServiceSettings, environment_variables
from tradeflow_ops.config_reference import BEGIN, END, generate, replace_between_markers, service_settings

ROOT = Path(__file__).resolve().parents[2]
DOCUMENT = ROOT / "docs" / "operations.md"
SCRIPT = ROOT / "scripts" / "gen_config_reference.py"


def reference_section() -> str:
    text = DOCUMENT.read_text(encoding="utf-8")
    return text.split(BEGIN, 1)[1].split(END, 1)[0]


def test_the_documented_reference_is_what_the_settings_classes_give():
    document = DOCUMENT.read_text(encoding="utf-8")
    assert replace_between_markers(document, generate()) == document, (
        "docs/operations.md's configuration reference is out of date: run "
        ".venv/bin/python scripts/gen_config_reference.py")


def _all_settings_classes(root: type) -> set[type]:
    found = set()
    for sub in root.__subclasses__():
        found.add(sub)
        found |= _all_settings_classes(sub)
    return found


def test_every_variable_of_every_settings_class_is_in_the_reference():
    generate()  # imports every settings module it walks
    services = service_settings()
    assert {"ingest", "candle-builder", "strategy", "risk", "execution", "notifier"} <= set(services)
    section = reference_section()
    classes = {cls for cls in _all_settings_classes(CommonSettings) | {CommonSettings}
               if cls.__module__.startswith("tradeflow") and cls is not ServiceSettings}  # the base of the services
    assert set(services.values()) <= classes
    missing = {f"{cls.__name__}: {variable}" for cls in classes
               for variable in environment_variables(cls).values() if f"`{variable}`" not in section}
    assert not missing, sorted(missing)
    for name, settings_type in services.items():
        assert f"### {name} (`tradeflow run {name}`)" in section
        assert f"`{settings_type.__module__}.{settings_type.__name__}`" in section
    # a service's own variables carry its prefix; shared ones are listed once, under "Every process"
    assert section.count("| `TRADEFLOW_DATABASE_URL` |") == 1
    assert "| `TRADEFLOW_CANDLE_BUILDER_TICK_RETENTION_DAYS` | integer | `30` |" in section
    assert "| `TRADEFLOW_TRACE_SAMPLER` |" in section and "| `TRADEFLOW_PG_BINDIR` | path |" in section


def test_the_script_checks_and_rewrites_a_stale_copy(tmp_path):
    stale = tmp_path / "operations.md"
    text = DOCUMENT.read_text(encoding="utf-8")
    stale.write_text(text.replace("| `TRADEFLOW_TRACE_SAMPLE_RATIO` |", "| `TRADEFLOW_TRACE_RATIO` |"), encoding="utf-8")
    check = subprocess.run([sys.executable, str(SCRIPT), "--check", "--file", str(stale)], capture_output=True, text=True)
    assert check.returncode == 1 and "out of date" in check.stderr
    write = subprocess.run([sys.executable, str(SCRIPT), "--file", str(stale)], capture_output=True, text=True)
    assert write.returncode == 0, write.stderr
    assert stale.read_text(encoding="utf-8") == text
    current = subprocess.run([sys.executable, str(SCRIPT), "--check", "--file", str(stale)], capture_output=True,
                             text=True)
    assert current.returncode == 0, current.stderr
