"""Where a feed resumes a symbol that another replica served until now (pure value)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ResumePoint:
    """Fetch the symbol's trades from ``since_ms`` (inclusive), skipping ``published_ids``,
    which are already on md.ticks.v1."""

    since_ms: int
    published_ids: frozenset[str]
