"""What a ``tradeflow`` subcommand is, for the packages that contribute one.

The operator command (package ``tradeflow_ops``) knows no service: every subcommand, its own
included, is registered under the entry-point group ``tradeflow.commands`` as a function
``add_parser(subparsers)`` that adds an ``argparse`` subparser and sets ``handler`` (a function
of the parsed arguments returning the exit status). Modules behind these entry points must
be cheap to import (``tradeflow --help`` loads them all): heavy imports go inside handlers.
"""

from __future__ import annotations

COMMANDS_GROUP = "tradeflow.commands"


class CliError(Exception):
    """An operator-facing failure; its text is printed as is and the command exits non-zero."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code
