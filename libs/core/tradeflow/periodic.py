"""A periodic task: one piece of work every ``interval_s``, as a service Component.

What the services wrote by hand several times (``while True: await asyncio.sleep(interval);
try: ... except Exception: log.exception(...)``), with one behaviour everywhere:

- the first run comes after ``first_delay_s`` (default: one interval; 0 runs at once), each
  next one ``interval_s`` after the previous run *ended* (runs never overlap), or what
  ``next_delay_s()`` answers then, where the delay depends on the state (retry sooner until loaded);
- a run that raises is logged (with its traceback, under the task's name and
  ``failure_message``) and the next run comes as usual: a periodic task never dies of an error;
- a run that returns :data:`STOP` ends the task (e.g. nothing to watch in this storage mode);
- :meth:`wake` cuts the current wait short (new work arrived): the next run comes at once;
- :meth:`stop` cancels the wait or the run in progress and returns once the task has ended
  (the Component lifecycle, :class:`tradeflow.service.BackgroundTask`).

Either pass the work as ``action`` (an async or plain function of no arguments), or subclass
and override :meth:`run_once`.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Final

from tradeflow.service import BackgroundTask

log = logging.getLogger(__name__)

STOP: Final = object()  # returned by a run: no further runs


class PeriodicTask(BackgroundTask):
    """Runs :meth:`run_once` every ``interval_s`` from start until stopped (see the module)."""

    def __init__(self, name: str | None = None, action: Callable[[], Awaitable[Any] | Any] | None = None, *,
                 interval_s: float, first_delay_s: float | None = None,
                 failure_message: str = "periodic run failed; the next run retries",
                 next_delay_s: Callable[[], float] | None = None,
                 sleep: Callable[[float], Awaitable[None]] | None = None) -> None:
        super().__init__()
        if interval_s <= 0:
            raise ValueError(f"interval_s must be positive, got {interval_s}")
        if first_delay_s is not None and first_delay_s < 0:
            raise ValueError(f"first_delay_s must not be negative, got {first_delay_s}")
        if name is not None:
            self.name = name
        self._action = action
        self.interval_s = interval_s
        self.first_delay_s = interval_s if first_delay_s is None else first_delay_s
        self._failure_message = failure_message
        self._sleep = sleep
        self._next_delay_s = next_delay_s
        self._wakeup = asyncio.Event()
        self.runs = 0  # completed runs (failed ones included)
        self.failures = 0

    def wake(self) -> None:
        """Run now rather than at the end of the current wait (a run in progress is followed by
        another one at once)."""
        self._wakeup.set()

    async def _wait(self, delay_s: float) -> None:
        if self._sleep is None:
            try:
                await asyncio.wait_for(self._wakeup.wait(), delay_s)
            except TimeoutError:
                pass
        elif not self._wakeup.is_set():  # an injected sleep (a service's Clock): wake() still cuts it short
            woken = asyncio.ensure_future(self._wakeup.wait())
            slept = asyncio.ensure_future(self._sleep(delay_s))
            try:
                await asyncio.wait((woken, slept), return_when=asyncio.FIRST_COMPLETED)
            finally:
                woken.cancel()
                slept.cancel()
        self._wakeup.clear()

    async def run_once(self) -> Any:
        """One run of the work; return :data:`STOP` to end the task."""
        if self._action is None:
            raise NotImplementedError(f"{type(self).__name__}: pass an action or override run_once")
        result = self._action()
        return await result if inspect.isawaitable(result) else result

    async def run(self) -> None:
        delay = self.first_delay_s
        while True:
            if delay > 0:
                await self._wait(delay)
            try:
                result = await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - logged; the next run comes as usual
                self.failures += 1
                log.exception("%s: %s", self.name, self._failure_message)
                result = None
            finally:
                self.runs += 1
            if result is STOP:
                return
            delay = self.interval_s if self._next_delay_s is None else self._next_delay_s()
