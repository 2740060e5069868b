#!/usr/bin/env python3
"""Write the configuration reference (every TRADEFLOW_ variable, from the settings classes) into
docs/operations.md between its markers; ``--check`` only says whether the file is current (exit 1
when not). The classes are found through the services' entry points and the settings modules of
the libs (tradeflow_ops.config_reference), so run it with the project's virtualenv:

    .venv/bin/python scripts/gen_config_reference.py [--check]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tradeflow_ops.config_reference import generate, replace_between_markers

DOCUMENT = Path(__file__).resolve().parent.parent / "docs" / "operations.md"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="do not write; exit 1 when the file is out of date")
    parser.add_argument("--file", type=Path, default=DOCUMENT)
    args = parser.parse_args()
    current = args.file.read_text(encoding="utf-8")
    wanted = replace_between_markers(current, generate())
    if args.check:
        if wanted != current:
            print(f"{args.file}: the configuration reference is out of date; run scripts/gen_config_reference.py",
                  file=sys.stderr)
            return 1
        print(f"{args.file}: the configuration reference is current")
        return 0
    if wanted != current:
        args.file.write_text(wanted, encoding="utf-8")
        print(f"{args.file}: configuration reference updated")
    else:
        print(f"{args.file}: already current")
    return 0


if __name__ == "__main__":
    sys.exit(main())
