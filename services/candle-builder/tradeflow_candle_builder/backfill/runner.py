"""One backfill: fetch (or read), write idempotently, rebuild exactly what changed.

Trades go through :meth:`CandleStore.write_ticks_new_minutes` (what is already stored is left
alone); only the minutes that got a new trade are rebuilt, each once, when no later page can add
to it, so a backfill yields the candles, and revisions, the live path would have made, and a
second run of the same backfill changes nothing. Exchanges without trade history give 1m
candles instead (``fetch_ohlcv``), merged so that an equal candle is left alone. At the end the
higher timeframes are refreshed over the range.

An instrument registered with a trading-session calendar (docs/adr/0008) gets no 1m candle for
a minute outside its sessions (its trades there are still stored), and the ``session_candles``
buckets holding the minutes that changed are rebuilt at the end (see ``backfill/sessions.py``).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from tradeflow.marketdata import tick_rejection_reason
from tradeflow.messages import Candle, Tick
from tradeflow.settings import redact_url
from tradeflow.time import NS_PER_MS
from tradeflow.trades.receive_clock import ReceiveClock
from tradeflow.trades.replay_csv import RejectedLine, ReplayFileError, parse_replay_lines
from tradeflow_db import SchemaNotReadyError
from tradeflow_exchanges.ccxt_trades import in_exchange_order, trade_to_tick

from tradeflow_candle_builder.adapters.candle_store import REQUIRED_REVISION, CandleStore
from tradeflow_candle_builder.backfill.exchange_history import (
    TRADE_PAGE_LIMIT,
    ExchangeHistory,
    ExchangeUnavailable,
    UnknownSymbol,
    usable_ohlcv,
)
from tradeflow_candle_builder.backfill.plan import (
    MINUTE_MS,
    OhlcvPageCursor,
    PagingStuck,
    TradePageCursor,
    complete_minutes,
    format_ms,
    minute_start_ms,
)
from tradeflow_candle_builder.backfill.progress import BackfillProgress
from tradeflow_candle_builder.backfill.sessions import SessionBackfill, load_session_backfill
from tradeflow_candle_builder.backfill.settings import BackfillSettings

SOURCES = ("auto", "trades", "ohlcv")
RECOMPUTE_CHUNK = 500  # minutes per recompute statement
FILE_BATCH = 5_000  # replay-file ticks per write


class BackfillInputError(ValueError):
    """A bad argument; the message names the option (exit status 2)."""


class BackfillFailed(RuntimeError):
    """The backfill could not be done (database or exchange unreachable, ...)."""


class NoTradeHistory(Exception):
    """The exchange serves no trades for a past range."""


@dataclass(frozen=True)
class BackfillJob:
    exchange: str  # as given by --exchange: a TRADEFLOW_EXCHANGES name or a ccxt id
    symbol: str
    since_ms: int
    until_ms: int
    source: str = "auto"  # trades | ohlcv | auto
    file: Path | None = None
    show_progress: bool = True


@dataclass
class BackfillReport:
    exchange: str
    symbol: str
    since_ms: int
    until_ms: int
    source: str = ""
    fetched: int = 0  # trades read from the exchange or the file (in range, of this symbol)
    new: int = 0
    rejected: int = 0  # invalid trades or file lines
    skipped: int = 0  # file lines of other markets or outside the range
    minutes_recomputed: int = 0
    candles_written: int = 0  # ohlcv source: 1m candles inserted or corrected
    outside_sessions: int = 0  # session instruments: trades (stored) or 1m candles (dropped) in no session
    session_candles: int | None = None  # session instruments: session_candles buckets rebuilt
    duration_s: float = 0.0

    def summary(self) -> str:
        what = (f"1m candles fetched {self.fetched}, written {self.candles_written}" if self.source == "ohlcv"
                else f"trades fetched {self.fetched}, new {self.new}, minutes recomputed {self.minutes_recomputed}")
        extra = "".join(f", {name} {count}" for name, count in (("rejected", self.rejected), ("skipped", self.skipped),
                                                                 ("outside sessions", self.outside_sessions))
                        if count)
        if self.session_candles is not None:
            extra += f", session candles rebuilt {self.session_candles}"
        return (f"backfill {self.exchange} {self.symbol} {format_ms(self.since_ms)} .. {format_ms(self.until_ms)} "
                f"from {self.source}: {what}{extra}, duration {self.duration_s:.1f}s")


async def run_backfill(job: BackfillJob, settings: BackfillSettings) -> BackfillReport:
    """Do ``job``; raises BackfillInputError (bad argument) or BackfillFailed."""
    started = time.monotonic()
    report = BackfillReport(job.exchange, job.symbol, job.since_ms, job.until_ms)
    history = None
    if job.file is None:
        feed = _exchange_settings(settings, job.exchange)
        try:
            history = ExchangeHistory(feed)
        except ValueError as exc:  # e.g. a urls override that names no URL
            raise BackfillFailed(f"TRADEFLOW_EXCHANGES: {exc}") from None
    try:
        if history is not None:
            await _checked(history.check_symbol(job.symbol))
        store = await _started_store(settings)
        try:
            progress = BackfillProgress(job.until_ms - job.since_ms, f"{job.exchange} {job.symbol}",
                                        enabled=job.show_progress)
            if history is not None:
                history.notify = progress.note
            try:
                exchange = job.exchange if history is None else history.exchange_name
                sessions = await load_session_backfill(store, exchange, job.symbol)
                backfill = _Backfill(store, job, report, progress, sessions)
                async with backfill.rebuilding_sessions():
                    if history is None:
                        await backfill.from_file(job.file)
                    else:
                        await _checked(backfill.from_exchange(history))
                await store.refresh_higher_timeframes(
                    exchange, job.symbol, job.since_ms * NS_PER_MS, job.until_ms * NS_PER_MS,
                )
            finally:
                progress.close()
        finally:
            await store.stop()
    finally:
        if history is not None:
            await history.close()
    report.duration_s = time.monotonic() - started
    return report


def _exchange_settings(settings: BackfillSettings, name: str):
    from tradeflow_exchanges.ccxt_client import ExchangeFeedSettings, find_exchange

    configured = find_exchange(settings.exchanges, name)
    if configured is not None:
        return configured
    try:
        return ExchangeFeedSettings(id=name)
    except ValueError:
        names = ", ".join(sorted({f.exchange_name for f in settings.exchanges})) or "none"
        raise BackfillInputError(
            f"--exchange: {name!r} is neither an exchange of TRADEFLOW_EXCHANGES (configured: {names}) "
            "nor a ccxt exchange id (e.g. binance, kraken)"
        ) from None


async def _checked(awaitable):
    try:
        return await awaitable
    except UnknownSymbol as exc:
        raise BackfillInputError(f"--symbol: {exc}") from None
    except (ExchangeUnavailable, PagingStuck) as exc:
        raise BackfillFailed(str(exc)) from None
    except NoTradeHistory as exc:
        raise BackfillFailed(f"{exc}; use --source ohlcv for 1m candles instead") from None


async def _started_store(settings: BackfillSettings) -> CandleStore:
    store = CandleStore(settings.libpq_url, max_connections=2, connect_timeout_s=5.0,
                        required_revision=REQUIRED_REVISION)
    try:
        await store.start()
    except SchemaNotReadyError as exc:  # says which revision and to run `tradeflow db upgrade`
        raise BackfillFailed(str(exc)) from None
    except Exception as exc:  # PoolTimeout or a refused connection: say which database
        raise BackfillFailed(
            f"cannot reach the database {redact_url(settings.libpq_url)} (TRADEFLOW_DATABASE_URL): "
            f"{type(exc).__name__}: {str(exc).strip()[:300]}"
        ) from None
    return store


def _open_replay_file(path: Path) -> TextIO:
    # Read line by line from the event loop: a CLI run has nothing else to serve meanwhile.
    return open(path, newline="", encoding="utf-8")  # newline="": the csv module handles line ends


class _Backfill:
    def __init__(self, store: CandleStore, job: BackfillJob, report: BackfillReport, progress: BackfillProgress,
                 sessions: SessionBackfill | None) -> None:
        self.store = store
        self.job = job
        self.report = report
        self.progress = progress
        self.sessions = sessions  # None: a 24/7 instrument
        self.clock = ReceiveClock()  # arrival order = the order trades are read = exchange order
        self.pending: set[int] = set()  # minute starts (ms) with new ticks, not rebuilt yet

    # --- from an exchange -----------------------------------------------------------------

    async def from_exchange(self, history: ExchangeHistory) -> None:
        source = self.job.source
        if source == "trades" and not history.serves_trades:
            raise NoTradeHistory(f"{history.exchange_name} serves no trades through ccxt")
        if source in ("ohlcv", "auto") and not history.serves_ohlcv and not history.serves_trades:
            raise BackfillFailed(f"{history.exchange_name} serves neither trades nor 1m candles through ccxt")
        if source == "ohlcv" and not history.serves_ohlcv:
            raise BackfillInputError(f"--source ohlcv: {history.exchange_name} serves no 1m candles through ccxt")
        if source == "ohlcv" or (source == "auto" and not history.serves_trades):
            await self._ohlcv(history)
            return
        try:
            await self._trades(history)
        except NoTradeHistory:
            if source == "trades" or not history.serves_ohlcv:
                raise
            await self._ohlcv(history)  # auto: nothing was written yet, see TradePageCursor.ignores_time_range

    async def _trades(self, history: ExchangeHistory) -> None:
        job, report = self.job, self.report
        report.source = "trades"
        exchange = history.exchange_name
        cursor = TradePageCursor(job.since_ms, job.until_ms, history.trade_window_ms)
        async with self._rebuilding_on_stop(exchange):
            await self._trade_pages(history, cursor)
        await self._rebuild(sorted(self.pending), exchange)

    async def _trade_pages(self, history: ExchangeHistory, cursor: TradePageCursor) -> None:
        job, report, exchange = self.job, self.report, history.exchange_name
        while not cursor.done:
            request = cursor.request()
            page = await history.trades(job.symbol, request.since_ms, request.end_ms, TRADE_PAGE_LIMIT)
            if cursor.ignores_time_range(page):
                raise NoTradeHistory(f"{exchange} answers with recent trades only, not those of "
                                     f"{format_ms(request.since_ms)} .. {format_ms(request.end_ms)}")
            fresh = cursor.accept(page, TRADE_PAGE_LIMIT)
            ticks = [trade_to_tick(exchange, trade, self.clock.next()) for trade in in_exchange_order(fresh)
                     if trade.get("symbol") == job.symbol]
            await self._write(ticks)
            await self._rebuild(complete_minutes(self.pending, cursor.position_ms), exchange)
            self.progress.update(cursor.covered_ms, report.fetched, report.new)

    async def _ohlcv(self, history: ExchangeHistory) -> None:
        job, report = self.job, self.report
        report.source = "ohlcv"
        cursor = OhlcvPageCursor(job.since_ms, job.until_ms)
        while not cursor.done:
            page = usable_ohlcv(await history.ohlcv_1m(job.symbol, cursor.position_ms, job.until_ms))
            rows = cursor.accept(page)
            candles = [
                Candle(exchange=history.exchange_name, symbol=job.symbol, timeframe="1m",
                       ts_start=ts * NS_PER_MS, ts_end=(ts + MINUTE_MS) * NS_PER_MS, open=float(o), high=float(h),
                       low=float(lo), close=float(c), volume=float(v), trades=0, revision=0)  # 0: count unknown
                for ts, o, h, lo, c, v, *_ in rows
            ]
            report.fetched += len(candles)
            if self.sessions is not None:  # like the live path: no candle for a minute outside the sessions
                inside = [c for c in candles if self.sessions.counts(c.ts_start // NS_PER_MS)]
                report.outside_sessions += len(candles) - len(inside)
                candles = inside
            written = await self.store.merge_candles_1m(candles)
            report.candles_written += len(written)
            if self.sessions is not None:
                self.sessions.changed(minute_ns // NS_PER_MS for _exchange, _symbol, minute_ns in written)
            self.progress.update(cursor.covered_ms, report.fetched, report.candles_written)

    # --- from a replay file ---------------------------------------------------------------

    async def from_file(self, path: Path) -> None:
        job, report = self.job, self.report
        report.source = f"file {path}"
        try:
            async with self._rebuilding_on_stop(job.exchange):
                await self._file_batches(path)
        except ReplayFileError as exc:
            raise BackfillInputError(f"--file {path}: {exc}") from None
        except OSError as exc:
            raise BackfillInputError(f"--file {path}: {exc.strerror or exc}") from None
        # A file need not be in time order: every minute is complete only at the end.
        await self._rebuild(sorted(self.pending), job.exchange)
        self.progress.update(job.until_ms - job.since_ms, report.fetched, report.new)

    async def _file_batches(self, path: Path) -> None:
        job, report = self.job, self.report
        covered_until = job.since_ms
        batch: list[Tick] = []
        with _open_replay_file(path) as lines:
            for item in parse_replay_lines(lines, self.clock):
                if isinstance(item, RejectedLine):
                    report.rejected += 1
                    continue
                ts_ms = item.ts_event // NS_PER_MS
                if item.exchange != job.exchange or item.symbol != job.symbol or not job.since_ms <= ts_ms < job.until_ms:
                    report.skipped += 1
                    continue
                batch.append(item)
                covered_until = max(covered_until, ts_ms)
                if len(batch) >= FILE_BATCH:
                    await self._write(batch, validated=True)
                    batch = []
                    self.progress.update(covered_until - job.since_ms, report.fetched, report.new)
        await self._write(batch, validated=True)

    @contextlib.asynccontextmanager
    async def _rebuilding_on_stop(self, exchange: str):
        """On any stop (Ctrl-C, exchange or file failure), rebuild the minutes that already got new
        ticks: a rerun finds those ticks stored, so it would not rebuild their minutes itself."""
        try:
            yield
        except BaseException:
            with contextlib.suppress(Exception):  # the original failure is the one to report
                await self._rebuild(sorted(self.pending), exchange)
            raise

    @contextlib.asynccontextmanager
    async def rebuilding_sessions(self):
        """At the end, and on any stop, rebuild the session buckets of the minutes that changed:
        a rerun would find those minutes unchanged and not rebuild their buckets itself."""
        try:
            yield
        except BaseException:
            with contextlib.suppress(Exception):  # the original failure is the one to report
                await self._rebuild_sessions()
            raise
        await self._rebuild_sessions()

    async def _rebuild_sessions(self) -> None:
        if self.sessions is not None:
            self.report.session_candles = (self.report.session_candles or 0) + await self.sessions.rebuild()

    # --- writes -----------------------------------------------------------------------------

    async def _write(self, ticks: Iterable[Tick], *, validated: bool = False) -> None:
        now_ns = time.time_ns()
        valid = []
        for tick in ticks:
            self.report.fetched += 1
            if validated or tick_rejection_reason(tick, now_ns) is None:
                valid.append(tick)
            else:
                self.report.rejected += 1
        new, minutes = await self.store.write_ticks_new_minutes(valid)
        self.report.new += new
        minutes_ms = {minute_ns // NS_PER_MS for _exchange, _symbol, minute_ns in minutes}
        if self.sessions is not None:
            # Stored, but (like the live path) in no candle: their minutes are not rebuilt.
            self.report.outside_sessions += sum(
                1 for tick in valid if not self.sessions.counts(minute_start_ms(tick.ts_event // NS_PER_MS)))
            minutes_ms = {m for m in minutes_ms if self.sessions.counts(m)}
        self.pending.update(minutes_ms)

    async def _rebuild(self, minutes_ms: list[int], exchange: str) -> None:
        for i in range(0, len(minutes_ms), RECOMPUTE_CHUNK):
            chunk = minutes_ms[i : i + RECOMPUTE_CHUNK]
            rebuilt = await self.store.recompute_candles_1m(
                (exchange, self.job.symbol, minute * NS_PER_MS) for minute in chunk
            )
            self.report.minutes_recomputed += len(rebuilt)
            self.pending.difference_update(chunk)
            if self.sessions is not None:
                self.sessions.changed(candle.ts_start // NS_PER_MS for candle in rebuilt)
