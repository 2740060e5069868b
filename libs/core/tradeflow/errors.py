"""Errors shared across packages."""

from __future__ import annotations


class StartupError(RuntimeError):
    """A component cannot start for a reason the operator fixes (its text says what to do).

    The service runtime logs it as one line, without a traceback, and the service exits
    non-zero: e.g. ``tradeflow_db.SchemaNotReadyError`` (the database lacks a revision; run
    ``tradeflow db upgrade``).
    """
