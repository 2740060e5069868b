"""What a ``tradeflow`` subcommand is, for the packages that contribute one.

The operator command (package ``tradeflow_ops``) knows no service: every subcommand, its own
included, is registered under the entry-point group ``tradeflow.commands`` as a function
``add_parser(subparsers)`` that adds an ``argparse`` subparser and sets ``handler`` (a function
of the parsed arguments returning the exit status). Modules behind these entry points must
be cheap to import (``tradeflow --help`` loads them all): heavy imports go inside handlers.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

COMMANDS_GROUP = "tradeflow.commands"


class CliError(Exception):
    """An operator-facing failure; its text is printed as is and the command exits non-zero."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def json_object_option(text: str) -> dict[str, Any]:
    """An argparse ``type`` for options that take a JSON object (``--params '{"fast": 10}'``)."""
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object like {{\"fast\": 10}}, got {text!r}")
    return value


def time_option(text: str) -> int:
    """An argparse ``type`` for time options (``--since``, ``--until``): epoch milliseconds, from
    ``now``, epoch ms or ISO 8601 (no offset: UTC), :func:`tradeflow.time.parse_time_option`."""
    import time

    from tradeflow.time import NS_PER_MS, parse_time_option

    try:
        return parse_time_option(text, now_ms=time.time_ns() // NS_PER_MS)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
