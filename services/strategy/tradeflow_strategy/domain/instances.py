"""Strategy instances: what one binds (design.md, "Strategies") and the checks a definition must pass.

An instance binds a strategy of the catalog to an account, an exchange, symbols, a timeframe
and parameters. Its id is the first part of every signal id it emits
(``<instance>:<exchange>:<symbol>:<timeframe>:<candle ms>:<intent>``), so it may not contain
``:``. Every refusal is an :class:`InstanceError` naming the field (``params.fast`` for a
parameter), which the API answers as 422.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tradeflow.markets import symbol_problem
from tradeflow.timeframes import check_timeframe_name
from tradeflow_trading.accounts import AccountConfig, find_account
from tradeflow_trading.strategy import ParameterError, Strategy, StrategyDefinitionError

INSTANCE_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
MAX_SYMBOLS = 1_000


class InstanceError(ValueError):
    """A definition the service refuses; ``field`` names what is wrong."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True, slots=True)
class InstanceDefinition:
    """One instance as stored (parameters completed with their defaults)."""

    id: str
    strategy: str
    account_id: str
    exchange: str
    symbols: tuple[str, ...]
    timeframe: str
    params: Mapping[str, Any] = field(default_factory=dict)
    enabled: bool = True

    def same_binding(self, other: InstanceDefinition) -> bool:
        """The same instance apart from being enabled (a repeated create is then no change)."""
        return (self.strategy, self.account_id, self.exchange, self.symbols, self.timeframe, dict(self.params)) == (
            other.strategy, other.account_id, other.exchange, other.symbols, other.timeframe, dict(other.params))


@dataclass(frozen=True, slots=True)
class InstanceRecord:
    """An instance as the database holds it: its definition, and the error that stopped it
    (a strategy that threw) until it is resumed. ``revision`` grows with every change, so a
    replica applies a record only when it changed."""

    definition: InstanceDefinition
    revision: int
    error: str | None = None
    created_at: str = ""
    updated_at: str = ""

    @property
    def id(self) -> str:
        return self.definition.id

    @property
    def state(self) -> str:
        """``failed`` (stopped by an error until resumed), ``paused`` or ``running``."""
        if self.error is not None:
            return "failed"
        return "running" if self.definition.enabled else "paused"


def validate_definition(body: Mapping[str, Any], *, strategy_type: Callable[[str], type[Strategy]],
                        accounts: Sequence[AccountConfig]) -> InstanceDefinition:
    """The instance ``body`` describes, checked against the catalog (``strategy_type(name)``
    raises ``KeyError`` with the known names) and the configured accounts."""
    instance_id = _text(body, "id")
    if not INSTANCE_ID_PATTERN.match(instance_id):
        raise InstanceError("id", "1-64 of letters, digits, '_', '.' and '-', starting with a letter or digit "
                                  f"(it starts every signal id), got {instance_id!r}")
    name = _text(body, "strategy")
    try:
        strategy = strategy_type(name)
    except KeyError as exc:
        raise InstanceError("strategy", str(exc)) from None
    account_id = _text(body, "account_id")
    account = find_account(accounts, account_id)
    if account is None:
        known = ", ".join(a.id for a in accounts) or "none (set TRADEFLOW_ACCOUNTS)"
        raise InstanceError("account_id", f"no account {account_id!r} is configured; known: {known}")
    exchange = _text(body, "exchange")
    if exchange != account.exchange:
        raise InstanceError("exchange", f"account {account.id!r} trades on {account.exchange!r}, not {exchange!r}")
    symbols = _symbols(body.get("symbols"))
    timeframe = _text(body, "timeframe")
    try:
        check_timeframe_name(timeframe)
    except ValueError as exc:
        raise InstanceError("timeframe", str(exc)) from None
    enabled = body.get("enabled", True)
    if not isinstance(enabled, bool):
        raise InstanceError("enabled", f"must be true or false, got {enabled!r}")
    params = check_strategy(strategy, body.get("params"), timeframe)
    return InstanceDefinition(instance_id, name, account_id, exchange, symbols, timeframe, params, enabled)


def check_strategy(strategy: type[Strategy], raw_params: Any, timeframe: str) -> dict[str, Any]:
    """The validated parameters; the strategy must also build with them on ``timeframe``
    (its informative timeframes above it, its ``setup`` and ``warmup`` working)."""
    if raw_params is None:
        raw_params = {}
    try:
        instance = strategy(raw_params)
    except ParameterError as exc:
        raise InstanceError(f"params.{exc.parameter}" if exc.parameter != "params" else "params",
                            exc.message) from None
    except Exception as exc:  # noqa: BLE001 - a strategy whose setup fails is refused with its error
        raise InstanceError("strategy", f"{strategy.name} cannot be built with these parameters: "
                                        f"{type(exc).__name__}: {exc}") from None
    try:
        instance.higher_timeframes(timeframe)
        warmup = int(instance.warmup())
    except StrategyDefinitionError as exc:
        raise InstanceError("timeframe", str(exc)) from None
    except Exception as exc:  # noqa: BLE001
        raise InstanceError("strategy", f"{strategy.name}: {type(exc).__name__}: {exc}") from None
    if warmup < 1:
        raise InstanceError("strategy", f"{strategy.name}.warmup() must be at least 1, got {warmup}")
    return dict(instance.params)


def _text(body: Mapping[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value:
        raise InstanceError(name, f"required, a non-empty string (got {value!r})")
    return value


def _symbols(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list | tuple) or not value:
        raise InstanceError("symbols", f"required, a non-empty list of symbols (got {value!r})")
    if len(value) > MAX_SYMBOLS:
        raise InstanceError("symbols", f"at most {MAX_SYMBOLS} symbols per instance, got {len(value)}")
    for symbol in value:
        # A market's symbol (tradeflow.markets), without ':' since it is a field of the signal id.
        if symbol_problem(symbol) is not None or ":" in symbol:
            raise InstanceError("symbols", f"each symbol is 1-64 letters, digits, '/', '_', '.', '+' or '-' "
                                           f"(no spaces, ':' or ','), got {symbol!r}")
    if len(set(value)) != len(value):
        repeated = sorted({s for s in value if value.count(s) > 1})
        raise InstanceError("symbols", f"listed twice: {', '.join(repeated)}")
    return tuple(value)
