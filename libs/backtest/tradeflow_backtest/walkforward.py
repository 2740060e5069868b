"""Walk-forward analysis: optimise in sample, test on the next out-of-sample window, stitch.

Windows (``--walk-forward TRAIN/TEST``, e.g. ``90d/30d``) roll over ``[since, until)`` by the
test length: window k trains on ``[since + k*TEST, since + k*TEST + TRAIN)`` and tests on the
``TEST`` that follows, ``[train end, train end + TEST)``. Test windows therefore follow each
other without a gap or an overlap and cover ``[since + TRAIN, until)``; the last one is cut
at ``until`` when the range does not hold a whole one (and dropped when it would be empty).
All bounds are half-open, like candles: a candle belongs to the window its start is in.

Out of sample, the strategy warms up on the candles before the test window (its
``warmup()`` count, as live: decisions on them are dropped, an event strategy's handler runs
with its intents dropped) and trades from the first test candle on; so every test candle can
decide, and nothing before the window trades. A position open at a window's end is valued
at its last close; the next window starts flat with that equity (the stitched curve
compounds the windows).

**Efficiency** (walk-forward efficiency, Pardo): the annualised out-of-sample return over
the annualised in-sample return, ``annualised = total return x (365 days / window span)``;
per window, and overall as the stitched out-of-sample annualised return over the mean of the
in-sample ones. Undefined (null) when the in-sample figure is not positive.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from tradeflow.timeframes import DAY_NS, HOUR_NS, MINUTE_NS, WEEK_NS
from tradeflow_trading.strategy.base import EventStrategy, Strategy, StrategyData, VectorStrategy

YEAR_NS = 365 * DAY_NS
_UNITS = {"m": MINUTE_NS, "h": HOUR_NS, "d": DAY_NS, "w": WEEK_NS}
_DURATION = re.compile(r"(\d+)([mhdw])")


@dataclass(frozen=True, slots=True)
class Window:
    """One walk-forward step: train on [train_start, train_end), test on [train_end, test_end)."""

    index: int
    train_start: int
    train_end: int
    test_end: int

    @property
    def test_start(self) -> int:
        return self.train_end


def parse_duration(text: str) -> int:
    """``90d``, ``12h``, ``2w``, ``30m`` as nanoseconds."""
    match = _DURATION.fullmatch(text.strip())
    if not match or int(match.group(1)) == 0:
        raise ValueError(f"expected a positive duration like 90d, 12h, 2w or 30m, got {text!r}")
    return int(match.group(1)) * _UNITS[match.group(2)]


def parse_walk_forward(text: str) -> tuple[int, int]:
    """``TRAIN/TEST`` (e.g. ``90d/30d``) as two durations in nanoseconds."""
    train, sep, test = text.partition("/")
    if not sep:
        raise ValueError(f"expected TRAIN/TEST windows like 90d/30d, got {text!r}")
    return parse_duration(train), parse_duration(test)


def windows(since_ns: int, until_ns: int, train_ns: int, test_ns: int) -> list[Window]:
    """The windows of ``[since, until)`` (see the module docstring); empty when not even one fits."""
    out = []
    k = 0
    while True:
        train_start = since_ns + k * test_ns
        train_end = train_start + train_ns
        if train_end >= until_ns:
            return out
        out.append(Window(k, train_start, train_end, min(train_end + test_ns, until_ns)))
        k += 1


def annualised(total_return: float, span_ns: int) -> float | None:
    return total_return * YEAR_NS / span_ns if span_ns > 0 else None


def efficiency(out_of_sample: float | None, in_sample: float | None) -> float | None:
    if out_of_sample is None or in_sample is None or in_sample <= 0:
        return None
    return out_of_sample / in_sample


def trading_from(strategy_type: type[Strategy], start_ns: int) -> type[Strategy]:
    """``strategy_type`` deciding nothing on candles that start before ``start_ns`` (they warm it up)."""
    if issubclass(strategy_type, VectorStrategy):
        def decide(self, data: StrategyData):
            decisions = strategy_type.decide(self, data)
            before = data.candles.ts_start < start_ns
            enter, leave = decisions.enter_long.copy(), decisions.exit.copy()
            enter[before] = False
            leave[before] = False
            return type(decisions)(enter, leave, decisions.enter_reason, decisions.exit_reason)

        return type(strategy_type.__name__, (strategy_type,), {"decide": decide, "__module__": strategy_type.__module__,
                                                                "__doc__": strategy_type.__doc__})
    if issubclass(strategy_type, EventStrategy):
        def on_candle(self, ctx):
            ctx.warming_up = ctx.candle.ts_start < start_ns  # as the live runner's warm-up says it
            strategy_type.on_candle(self, ctx)
            if ctx.warming_up:
                ctx.intents.clear()

        return type(strategy_type.__name__, (strategy_type,), {"on_candle": on_candle,
                                                                "__module__": strategy_type.__module__,
                                                                "__doc__": strategy_type.__doc__})
    raise TypeError(f"{strategy_type.__name__} is neither a VectorStrategy nor an EventStrategy")


def stitch(pieces: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate (times, equity) pieces of consecutive windows (each already starting from the
    previous one's end equity)."""
    if not pieces:
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    return (np.concatenate([p[0] for p in pieces]).astype(np.int64), np.concatenate([p[1] for p in pieces]))


def window_json(window: Window, best_params: Mapping[str, Any], in_sample: Mapping[str, Any],
                out_of_sample: Mapping[str, Any], eff: float | None) -> dict[str, Any]:
    from tradeflow.time import format_time_ms

    return {"index": window.index, "train_start": format_time_ms(window.train_start),
            "train_end": format_time_ms(window.train_end), "test_start": format_time_ms(window.test_start),
            "test_end": format_time_ms(window.test_end), "params": dict(best_params),
            "in_sample": dict(in_sample), "out_of_sample": dict(out_of_sample), "efficiency": eff}
