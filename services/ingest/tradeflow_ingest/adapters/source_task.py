"""How a tick source's background task is stopped (shared by every source)."""

from __future__ import annotations

import asyncio


async def stop_source_task(task: asyncio.Task | None, stopping: asyncio.Event) -> None:
    """Ask the task to finish what it has in hand (``stopping``) and wait for it.

    If the caller is cancelled while waiting (a shutdown timeout), the task is cancelled too,
    so nothing keeps publishing after the service has stopped.
    """
    if task is None:
        return
    stopping.set()
    try:
        await task
    except asyncio.CancelledError:
        task.cancel()
        raise
