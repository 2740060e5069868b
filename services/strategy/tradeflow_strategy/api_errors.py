"""The answer of an API route whose database query failed: 503, the cause logged, not shown."""

from __future__ import annotations

import logging

from fastapi import HTTPException

log = logging.getLogger(__name__)


def database_unavailable(exc: Exception, what: str) -> HTTPException:
    log.warning("%s query failed: %s: %s", what, type(exc).__name__, exc)
    return HTTPException(status_code=503, detail="database unavailable, try again")
