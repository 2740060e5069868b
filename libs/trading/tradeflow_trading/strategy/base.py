"""The strategy base classes: write a strategy once, run it live and in the backtest.

Two kinds, because the two known answers each fit a kind of strategy (docs/adr/0017):

- :class:`VectorStrategy` (freqtrade's ``populate_*``): ``decide(data)`` turns columns of
  candles into boolean columns ``enter_long`` / ``exit``, one row per candle. The backtest
  calls it once on the whole history (one year of 1m candles through ``sma_cross`` in tens of
  milliseconds); live, the runner calls it on the last ``warmup()`` candles and takes the last
  row. A decision must depend on those ``warmup()`` candles only (the SDK's indicators are
  window-exact, so they do), and then both give bit-identical decisions: checked by
  :func:`tradeflow_trading.strategy.parity.compare` and the tests of every example.
- :class:`EventStrategy` (nautilus' handlers): ``on_candle(ctx)`` is called for each closed
  candle, one at a time, and may keep state on ``self`` (grids, DCA schedules); it sees its
  position from fills and emits intents through ``ctx``. The backtest runs the same handler in
  a loop (hundreds of thousands of candles per second, see bench/backtest.py).

Both declare parameters (:mod:`.params`), a warm-up (candles of the instance's timeframe the
first meaningful decision needs) and informative higher timeframes with the candles they need
of each. A decision sees closed candles only, and a higher-timeframe candle only once it has
closed (its end at or before the deciding candle's end).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Hashable, Mapping, MutableMapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np
from tradeflow.timeframes import Timeframe, timeframe

from tradeflow_trading.strategy.candles import CandleFrame, on_base, visible_counts
from tradeflow_trading.strategy.params import (
    Dimension,
    Param,
    Params,
    declared_params,
    params_schema,
    search_space,
    validate_params,
)

if TYPE_CHECKING:
    from tradeflow.messages import Fill

    from tradeflow_trading.strategy.context import StrategyContext

StrategyKind = Literal["vector", "event"]


class StrategyDefinitionError(TypeError):
    """A strategy class (or its binding to a timeframe) that cannot run; the message says why."""


class Strategy:
    """Base of every strategy. Subclass :class:`VectorStrategy` or :class:`EventStrategy`.

    Class attributes: ``name`` (catalog name; the entry-point name when packaged),
    ``description`` (default: the docstring's first paragraph) and the declared parameters.
    An instance holds validated ``params``; ``setup()`` runs after them.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    kind: ClassVar[StrategyKind]
    parameters: ClassVar[dict[str, Param]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.parameters = declared_params(cls)
        doc = vars(cls).get("__doc__")
        if "description" not in vars(cls) and doc:  # its own docstring, not a base class's
            cls.description = inspect.cleandoc(doc).split("\n\n", 1)[0].replace("\n", " ")

    def __init__(self, params: Mapping[str, Any] | None = None) -> None:
        self.params: Params = self.validate_params(params)
        self.setup()

    # --- declarations -------------------------------------------------------------------------

    @classmethod
    def validate_params(cls, raw: Mapping[str, Any] | None) -> Params:
        """``raw`` checked and completed with defaults; :class:`ParameterError` names the culprit."""
        params = validate_params(cls.parameters, raw)
        cls.check_params(params)
        return params

    @classmethod
    def check_params(cls, params: Params) -> None:
        """Rules across parameters; raise :class:`ParameterError` naming one (override)."""

    @classmethod
    def params_schema(cls) -> dict[str, Any]:
        return params_schema(cls.parameters)

    @classmethod
    def search_space(cls) -> list[Dimension]:
        return search_space(cls.parameters)

    @classmethod
    def catalog_entry(cls) -> dict[str, Any]:
        """What ``GET /v1/strategies/catalog`` lists for this strategy."""
        return {"name": cls.name, "description": cls.description, "kind": cls.kind, "params": cls.params_schema()}

    def setup(self) -> None:
        """Called once the parameters are set (override to derive constants or initial state)."""

    def warmup(self) -> int:
        """Candles of the instance's timeframe the decision on a candle depends on (>= 1)."""
        return 1

    def informative(self) -> dict[str, int]:
        """Higher timeframes read, each with the number of its closed candles needed."""
        return {}

    def higher_timeframes(self, base: str) -> dict[Timeframe, int]:
        """``informative()`` checked against the instance's timeframe ``base``."""
        base_tf = timeframe(base)
        checked: dict[Timeframe, int] = {}
        for name, count in self.informative().items():
            try:
                tf = timeframe(name)
            except ValueError as exc:
                raise StrategyDefinitionError(f"{self.name}: informative {exc}") from None
            nests = tf.length_ns % base_tf.length_ns == 0 and (tf.origin_ns - base_tf.origin_ns) % base_tf.length_ns == 0
            if tf.length_ns <= base_tf.length_ns or not nests:
                raise StrategyDefinitionError(
                    f"{self.name}: informative timeframe {name} must be higher than the instance's {base} and "
                    f"made of whole {base} candles")
            if count < 1:
                raise StrategyDefinitionError(f"{self.name}: informative {name} needs at least 1 candle, got {count}")
            checked[tf] = count
        return checked


# --- vectorised strategies ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Decisions:
    """Per candle: enter long, exit (a row with both is an exit only). Reasons go with the intents."""

    enter_long: np.ndarray
    exit: np.ndarray
    enter_reason: str = ""
    exit_reason: str = ""


class StrategyData:
    """What ``decide`` reads: the candles of the instance's timeframe and of its informative ones.

    ``higher(tf)`` holds closed higher candles only; :meth:`on_base` spreads a per-higher-candle
    column over the base candles so that each base candle sees the newest higher candle closed
    by its end and nothing later. ``memo`` caches a computation across runs of the backtest on
    the same candles (an optimiser's trials share their indicators); live it just computes.
    """

    __slots__ = ("candles", "_higher", "_counts", "_memo")

    def __init__(self, candles: CandleFrame, higher: Mapping[str, CandleFrame] | None = None,
                 memo: MutableMapping[Hashable, Any] | None = None) -> None:
        self.candles = candles
        self._higher = dict(higher or {})
        self._counts: dict[str, np.ndarray] = {}
        self._memo = memo

    @property
    def open(self) -> np.ndarray:
        return self.candles.open

    @property
    def high(self) -> np.ndarray:
        return self.candles.high

    @property
    def low(self) -> np.ndarray:
        return self.candles.low

    @property
    def close(self) -> np.ndarray:
        return self.candles.close

    @property
    def volume(self) -> np.ndarray:
        return self.candles.volume

    def __len__(self) -> int:
        return len(self.candles)

    def higher(self, timeframe_: str) -> CandleFrame:
        try:
            return self._higher[timeframe_]
        except KeyError:
            raise StrategyDefinitionError(
                f"higher timeframe {timeframe_!r} was not declared in informative() "
                f"(declared: {', '.join(self._higher) or 'none'})") from None

    def on_base(self, timeframe_: str, values: np.ndarray) -> np.ndarray:
        counts = self._counts.get(timeframe_)
        if counts is None:
            counts = self._counts[timeframe_] = visible_counts(self.candles.ts_end, self.higher(timeframe_).ts_end)
        return on_base(values, counts)

    def memo(self, key: Hashable, compute: Callable[[], Any]) -> Any:
        if self._memo is None:
            return compute()
        try:
            return self._memo[key]
        except KeyError:
            value = self._memo[key] = compute()
            return value


class VectorStrategy(Strategy):
    """A strategy whose decisions are columns computed from columns of candles."""

    kind: ClassVar[StrategyKind] = "vector"

    def decide(self, data: StrategyData) -> Decisions:
        raise NotImplementedError


class EventStrategy(Strategy):
    """A strategy called once per closed candle, keeping its own state on ``self``.

    ``ctx`` gives the candle, the recent candles (``ctx.candles``, the last ``warmup()``),
    closed higher candles, the position from fills, the parameters and a logger, and takes the
    intents (``ctx.enter_long``, ``ctx.exit``, ``ctx.target``). During warm-up the handler runs
    so its state builds up, and its intents are dropped (``ctx.warming_up`` says so).
    """

    kind: ClassVar[StrategyKind] = "event"

    def on_candle(self, ctx: StrategyContext) -> None:
        raise NotImplementedError

    def on_fill(self, ctx: StrategyContext, fill: Fill) -> None:
        """A fill of this instance's orders, already folded into ``ctx.position`` (override)."""
