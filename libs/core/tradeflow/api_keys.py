"""API keys on every state-changing request (POST, PUT, PATCH, DELETE), as design.md asks.

A request that changes state carries ``Authorization: Bearer <key>``; the key must be one of the
service's (``TRADEFLOW_API_KEYS``, ``TRADEFLOW_API_KEYS_FILE``). Anything else is a 401 with a
message. Reads (GET, HEAD), the probes and websockets are open. Keys are compared in constant
time (SHA-256 of both sides, then ``hmac.compare_digest`` against every configured key), kept
only as digests here, and never logged: a refusal logs the method, path and reason only. A
refusal happens before routing, so the request metrics count it with ``route="unmatched"``.

:func:`create_service_app` installs :class:`ApiKeyMiddleware` and :func:`document_api_keys`;
services do nothing to be covered.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Sequence

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from pydantic import SecretStr

log = logging.getLogger(__name__)

MUTATING_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
KEY_SETTINGS = "TRADEFLOW_API_KEYS or TRADEFLOW_API_KEYS_FILE"
SECURITY_SCHEME = "apiKey"


class ApiKeys:
    """The configured keys, as SHA-256 digests; ``accepts`` compares in constant time."""

    def __init__(self, keys: Sequence[SecretStr]) -> None:
        self._digests = tuple(_digest(key.get_secret_value()) for key in keys)

    def __len__(self) -> int:
        return len(self._digests)

    def __repr__(self) -> str:
        return f"ApiKeys({len(self._digests)} configured)"

    def accepts(self, presented: str) -> bool:
        digest = _digest(presented)
        accepted = False
        for known in self._digests:  # no early exit: the time does not say which key matched
            accepted |= hmac.compare_digest(digest, known)
        return accepted


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).digest()


class ApiKeyMiddleware:
    """Plain ASGI: refuses a state-changing HTTP request without a valid key with 401 and a message."""

    def __init__(self, app, keys: ApiKeys) -> None:
        self.app = app
        self.keys = keys

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["method"] not in MUTATING_METHODS:
            await self.app(scope, receive, send)
            return
        problem = self._problem(scope)
        if problem is None:
            await self.app(scope, receive, send)
            return
        log.warning("refused %s %s: %s", scope["method"], scope.get("path", ""), problem)
        response = JSONResponse({"detail": problem}, status_code=401,
                                headers={"WWW-Authenticate": 'Bearer realm="tradeflow"'})
        await response(scope, receive, send)

    def _problem(self, scope) -> str | None:
        """Why the request is refused; None when its key is one of the service's."""
        if not self.keys:
            return f"no API key is configured for this service: state-changing requests need {KEY_SETTINGS}"
        header = next((value for name, value in scope.get("headers", ()) if name == b"authorization"), None)
        if header is None:
            return "missing API key: send 'Authorization: Bearer <key>'"
        scheme, _, key = header.decode("latin-1").partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            return "the Authorization header must be 'Bearer <key>'"
        if not self.keys.accepts(key.strip()):
            return "invalid API key"
        return None


def mutating_operations(app: FastAPI) -> list[str]:
    """``METHOD /path`` of every state-changing operation in ``app``'s OpenAPI document (the
    public view of its routes; a route hidden from the document is still guarded, not listed)."""
    return [f"{method.upper()} {path}" for path, item in app.openapi().get("paths", {}).items()
            for method in item if method.upper() in MUTATING_METHODS]


def document_api_keys(app: FastAPI) -> None:
    """Show the bearer scheme in the OpenAPI document, on the state-changing operations only."""
    build = app.openapi

    def openapi() -> dict:
        if app.openapi_schema:
            return app.openapi_schema
        schema = build()  # caches it in app.openapi_schema; the changes below go into that cache
        schemes = schema.setdefault("components", {}).setdefault("securitySchemes", {})
        schemes[SECURITY_SCHEME] = {
            "type": "http", "scheme": "bearer",
            "description": f"API key of the service ({KEY_SETTINGS}); required by POST, PUT, PATCH and DELETE",
        }
        for path_item in schema.get("paths", {}).values():
            for method, operation in path_item.items():
                if method.upper() in MUTATING_METHODS:
                    operation["security"] = [{SECURITY_SCHEME: []}]
                    operation.setdefault("responses", {}).setdefault(
                        "401", {"description": "missing or invalid API key"})
        return schema

    app.openapi = openapi
