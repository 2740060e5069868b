"""How the CLI reports failures: one clear line (plus detail lines where they help), no traceback."""

from __future__ import annotations

from tradeflow.commands import CliError
from tradeflow.settings import redact_url

__all__ = ["CliError", "summarize"]


def summarize(exc: BaseException) -> str:
    """The first meaningful line of an unexpected exception, with any URL password hidden."""
    text = next((line.strip() for line in str(exc).splitlines() if line.strip()), "")
    return redact_url(f"{type(exc).__name__}: {text}" if text else type(exc).__name__)
