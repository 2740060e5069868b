"""The backfill's progress bar on stderr: minutes of the range covered, trades fetched and new."""

from __future__ import annotations

import sys
from typing import TextIO

from tqdm import tqdm

MINUTE_MS = 60_000


class BackfillProgress:
    def __init__(self, total_ms: int, description: str, *, stream: TextIO | None = None, enabled: bool = True) -> None:
        self._stream = stream or sys.stderr
        self._bar = tqdm(
            total=max(1, -(-total_ms // MINUTE_MS)),
            desc=description,
            unit="min",
            file=self._stream,
            disable=not enabled,
            mininterval=0.5,
            bar_format="{desc}: {percentage:3.0f}%|{bar:24}| {n}/{total} min of the range "
                       "[{elapsed}<{remaining}{postfix}]",
        )

    def update(self, covered_ms: int, fetched: int, new: int) -> None:
        covered = min(self._bar.total, covered_ms // MINUTE_MS)
        self._bar.set_postfix_str(f"trades {fetched}, new {new}", refresh=False)
        self._bar.update(covered - self._bar.n)

    def note(self, text: str) -> None:
        """A line above the bar (e.g. a rate-limit wait), on the same stream."""
        tqdm.write(text, file=self._stream)  # also with the bar disabled (--no-progress)

    def close(self) -> None:
        self._bar.close()
