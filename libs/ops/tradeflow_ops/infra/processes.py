"""Process and port helpers for the local infrastructure: liveness by pid, stopping by pid.

A recorded pid is only trusted together with the process start time read from /proc, so a
pid that the kernel recycled for an unrelated process is never signalled.
"""

from __future__ import annotations

import errno
import os
import signal
import socket
import time
from pathlib import Path


def process_start_ticks(pid: int) -> int | None:
    """The process start time (clock ticks since boot) from /proc, or None when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    fields = stat[stat.rfind(")") + 2 :].split()
    if fields[0] == "Z":  # a zombie has exited; only its exit status is left
        return None
    return int(fields[19])


def process_cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def reap_if_child(pid: int) -> None:
    """Collect the exit status when the process is our own child, so it does not linger as a zombie."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def is_same_process(pid: int, start_ticks: int | None) -> bool:
    """True when ``pid`` is alive and is the very process that was recorded (not a recycled pid)."""
    reap_if_child(pid)
    current = process_start_ticks(pid)
    return current is not None and (start_ticks is None or current == start_ticks)


def wait_until_gone(pid: int, start_ticks: int | None, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not is_same_process(pid, start_ticks):
            return True
        time.sleep(0.05)
    return not is_same_process(pid, start_ticks)


def terminate(pid: int, start_ticks: int | None, *, grace_s: float = 10.0) -> None:
    """SIGTERM, wait up to ``grace_s``, then SIGKILL — only if ``pid`` is still the recorded process."""
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        if not is_same_process(pid, start_ticks):
            return
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        except OSError as exc:  # pragma: no cover - e.g. EPERM on someone else's process
            if exc.errno != errno.ESRCH:
                raise
            return
        if wait_until_gone(pid, start_ticks, wait_s):
            return


def port_accepts_connections(host: str, port: int, timeout_s: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def free_port(host: str = "127.0.0.1") -> int:
    """A port that is free right now (the kernel's choice); for tests and ad-hoc clusters."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def log_tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:]) or f"(empty log at {path})"
