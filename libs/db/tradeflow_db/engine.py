"""SQLAlchemy 2 engines on the psycopg 3 driver.

Operators write plain ``postgresql://`` URLs (libpq style); SQLAlchemy needs the driver
named (``postgresql+psycopg://``), otherwise it picks psycopg2, which we do not install.
"""

from __future__ import annotations

import re
from typing import Any

import sqlalchemy
import sqlalchemy.ext.asyncio

_SCHEME = re.compile(r"^(postgresql|postgres)(\+[a-z0-9_]+)?://")


def sqlalchemy_url(url: str) -> str:
    """``url`` with the psycopg 3 driver named; refuses anything that is not PostgreSQL."""
    if not _SCHEME.match(url):
        raise ValueError("database URL must start with postgresql:// (or postgresql+psycopg://)")
    return _SCHEME.sub("postgresql+psycopg://", url, count=1)


def libpq_url(url: str) -> str:
    """``url`` as libpq (and psycopg.connect) accept it: no driver suffix in the scheme."""
    if not _SCHEME.match(url):
        raise ValueError("database URL must start with postgresql:// (or postgresql+psycopg://)")
    return _SCHEME.sub("postgresql://", url, count=1)


def create_engine(url: str, **kwargs: Any) -> sqlalchemy.Engine:
    """A synchronous engine (migrations, operator commands)."""
    kwargs.setdefault("pool_pre_ping", True)
    return sqlalchemy.create_engine(sqlalchemy_url(url), **kwargs)


def create_async_engine(url: str, **kwargs: Any) -> sqlalchemy.ext.asyncio.AsyncEngine:
    """An asyncio engine (services that use the ORM/Core outside their hot path)."""
    kwargs.setdefault("pool_pre_ping", True)
    return sqlalchemy.ext.asyncio.create_async_engine(sqlalchemy_url(url), **kwargs)
