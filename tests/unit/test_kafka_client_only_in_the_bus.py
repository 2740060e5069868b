"""Only the bus talks to the broker: no module outside libs/core/tradeflow/bus imports aiokafka."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BUS = ROOT / "libs" / "core" / "tradeflow" / "bus"


def kafka_imports(path: Path) -> list[int]:
    """Line numbers of the ``import aiokafka...`` / ``from aiokafka... import`` statements."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import) and any(a.name.split(".")[0] == "aiokafka" for a in node.names):
            lines.append(node.lineno)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "aiokafka":
            lines.append(node.lineno)
    return lines


def test_no_module_outside_the_bus_imports_a_kafka_client():
    offenders = []
    for folder in ("libs", "services"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            if BUS in path.parents or any(part in {".venv", "build", "node_modules"} for part in path.parts):
                continue
            offenders += [f"{path.relative_to(ROOT)}:{line}" for line in kafka_imports(path)]
    assert offenders == [], "import the bus (tradeflow.bus) instead of aiokafka:\n" + "\n".join(offenders)


def test_the_rule_finds_both_import_forms(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("import os\nimport aiokafka.errors\n\ndef f():\n    from aiokafka import TopicPartition\n")
    assert kafka_imports(module) == [2, 5]
