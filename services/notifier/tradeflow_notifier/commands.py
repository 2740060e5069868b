"""``tradeflow notifier-key``: a new key for TRADEFLOW_NOTIFIER_SECRET_KEY (printed, not stored)."""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    command = subparsers.add_parser(
        "notifier-key", help="print a new Fernet key for TRADEFLOW_NOTIFIER_SECRET_KEY (rotation: put it first, "
                             "comma-separated, before the old one)")
    command.set_defaults(handler=print_key)


def print_key(args: argparse.Namespace) -> int:
    from cryptography.fernet import Fernet

    print(Fernet.generate_key().decode())
    return 0
