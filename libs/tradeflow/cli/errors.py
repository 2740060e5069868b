"""How the CLI reports failures: one clear line (plus detail lines where they help), no traceback."""

from __future__ import annotations

from tradeflow.infra.postgres import redact_url


class CliError(Exception):
    """An operator-facing failure; its text is printed as is and the command exits non-zero."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def summarize(exc: BaseException) -> str:
    """The first meaningful line of an unexpected exception, with any URL password hidden."""
    text = next((line.strip() for line in str(exc).splitlines() if line.strip()), "")
    return redact_url(f"{type(exc).__name__}: {text}" if text else type(exc).__name__)
