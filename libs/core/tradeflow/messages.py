"""Message types for every topic in shared/design.md.

Values on the wire are these msgspec Structs encoded as MessagePack maps. Each type has a
schema name with a version (``Tick/1``) carried in the ``schema`` header. Compatible change:
add a field *with a default* at the end. Anything else is a new type version and a new
``.v2`` topic. Messages are immutable (``frozen=True``): a handler can pass them on safely.

Time is integer nanoseconds since the epoch, UTC. Order prices, quantities, fees and P&L are
``Decimal`` (encoded as strings, exact); market data is float64.
"""

from __future__ import annotations

from decimal import Decimal
from typing import ClassVar, Literal

import msgspec


class Message(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=False):
    """Base of all wire messages. ``SCHEMA`` is ``Name/version``."""

    SCHEMA: ClassVar[str] = ""


# --- market data -----------------------------------------------------------------------------


class Tick(Message, frozen=True, kw_only=True):
    """One trade. Key: ``exchange:symbol``.

    ``side`` is ``buy`` or ``sell`` (the taker side); anything else is invalid input.
    Validation lives in the consumers' domain code so that a bad tick gets a precise reason
    and goes to the DLQ instead of failing at decode time.
    """

    SCHEMA: ClassVar[str] = "Tick/1"
    exchange: str
    symbol: str
    trade_id: str
    price: float
    amount: float
    side: str
    ts_event: int
    ts_recv: int


Timeframe = Literal["1m", "5m", "15m", "1h", "4h", "1d", "1w"]


class Candle(Message, frozen=True, kw_only=True):
    """One closed (or, with ``revision`` > 0, corrected) candle. Key: ``exchange:symbol``.

    Covers [ts_start, ts_end). ``revision`` 0 is the first emission; a correction after a
    late trade carries a higher revision and replaces earlier ones.
    """

    SCHEMA: ClassVar[str] = "Candle/1"
    exchange: str
    symbol: str
    timeframe: str
    ts_start: int
    ts_end: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    trades: int
    revision: int = 0


# --- trading ---------------------------------------------------------------------------------
#
# The trading path's identities (design.md): a signal id is deterministic from the candle that
# caused it; risk derives the order's client order id from the signal id; execution creates at
# most one order per client order id; a fill is applied once by its fill id. The helpers that
# build these ids live in tradeflow_trading.ids, shared by the services and the backtest.

Side = Literal["buy", "sell"]
Intent = Literal["enter_long", "enter_short", "exit", "target"]
OrderType = Literal["market", "limit"]
TimeInForce = Literal["GTC", "IOC", "FOK", "GTD"]
OrderOrigin = Literal["signal", "manual", "protective"]


class Signal(Message, frozen=True, kw_only=True):
    """A strategy's intent after a closed candle. Key: account id.

    ``signal_id`` is ``<instance>:<exchange>:<symbol>:<timeframe>:<candle ts_start ms>:<intent>``;
    ``ts_event`` is the deciding candle's end. ``quantity`` (base units) is optional: without it
    risk sizes the order. ``target_quantity`` is the wanted position for intent ``target``.
    ``price`` is the price the strategy decided on (the candle's close), for sizing and for
    slippage against the decision.
    """

    SCHEMA: ClassVar[str] = "Signal/1"
    signal_id: str
    account_id: str
    strategy_id: str  # the strategy instance id
    strategy: str = ""  # the strategy's catalog name, e.g. sma_cross
    exchange: str
    symbol: str
    timeframe: str = ""
    intent: Intent
    quantity: Decimal | None = None
    target_quantity: Decimal | None = None
    price: Decimal | None = None
    reason: str = ""
    ts_event: int


class Order(Message, frozen=True, kw_only=True):
    """An order approved by risk. Key: account id.

    ``client_order_id`` is deterministic (from the signal id, the protective trigger, or the
    manual request) so a redelivered decision cannot produce a second order. Exactly one of
    ``quantity`` (base units) and ``quote_quantity`` (quote currency to spend: market buys
    sized by cash, filled as ``quote / price`` less fees) is set. ``ts_event`` is the time the
    order is valid from: a market order fills at the first trade at or after it.
    """

    SCHEMA: ClassVar[str] = "Order/1"
    client_order_id: str
    account_id: str
    exchange: str
    symbol: str
    side: Side
    order_type: OrderType
    quantity: Decimal | None = None
    quote_quantity: Decimal | None = None
    limit_price: Decimal | None = None
    time_in_force: TimeInForce = "GTC"
    expires_at: int | None = None  # ns; time in force GTD
    reduce_only: bool = False
    origin: OrderOrigin = "signal"
    signal_id: str = ""
    strategy_id: str = ""
    decision_price: Decimal | None = None
    ts_event: int


OrderStatus = Literal[
    "submitted", "accepted", "partially_filled", "filled", "canceled", "rejected", "expired"
]


class OrderEvent(Message, frozen=True, kw_only=True):
    """An order state transition. Key: account id.

    ``seq`` numbers the transitions of one order from 1, so a consumer applies each once and
    in order. ``filled_quantity`` and ``average_price`` are cumulative.
    """

    SCHEMA: ClassVar[str] = "OrderEvent/1"
    client_order_id: str
    account_id: str
    exchange: str
    symbol: str
    side: Side | None = None
    status: OrderStatus
    seq: int = 0
    quantity: Decimal | None = None
    exchange_order_id: str = ""
    filled_quantity: Decimal = Decimal(0)
    average_price: Decimal | None = None
    reason: str = ""
    strategy_id: str = ""
    ts_event: int
    # Added with amendments (compatible: a defaulted field): the order's limit price as it
    # stands after this transition (an ``amended`` event carries the new one).
    limit_price: Decimal | None = None


class OrderAmendment(Message, frozen=True, kw_only=True):
    """A change of an open order's quantity and/or limit price, approved by risk. Key: account id.

    Carried on risk.orders.v1 next to :class:`Order` (told apart by the ``schema`` header).
    ``amendment_id`` is ``<client_order_id>:<n>`` (the order's n-th approved amendment), so a
    redelivered or replayed amendment is applied once. ``quantity`` and ``limit_price`` are the
    order's new values (None: unchanged); at least one is set. Execution answers on
    exec.orders.v1 with an OrderEvent of the same order: reason ``amended`` (new quantity and
    limit price) or ``amend_refused: ...`` (unchanged).
    """

    SCHEMA: ClassVar[str] = "OrderAmendment/1"
    amendment_id: str
    client_order_id: str
    account_id: str
    exchange: str
    symbol: str
    quantity: Decimal | None = None
    limit_price: Decimal | None = None
    reason: str = ""
    ts_event: int


class Fill(Message, frozen=True, kw_only=True):
    """A partial or full fill with its fee. Key: account id."""

    SCHEMA: ClassVar[str] = "Fill/1"
    fill_id: str
    client_order_id: str
    account_id: str
    exchange: str
    symbol: str
    side: Side
    quantity: Decimal
    price: Decimal
    fee: Decimal
    fee_currency: str
    liquidity: Literal["maker", "taker", "unknown"] = "unknown"
    strategy_id: str = ""
    ts_event: int


ReconciliationStatus = Literal["pending", "agreed", "mismatch"]


class AccountStatus(Message, frozen=True, kw_only=True):
    """A live account's reconciliation as execution last found it (ADR 0022). Key: account id.

    ``pending``: execution (re)started and has not reconciled the account yet; ``agreed``: a
    reconciliation succeeded and the exchange's balances agree with the fills; ``mismatch``: they
    differ in a way the fills cannot explain (``differences`` says how). Risk approves nothing for
    a live account whose newest status is not ``agreed``.
    """

    SCHEMA: ClassVar[str] = "AccountStatus/1"
    event_id: str
    account_id: str
    reconciliation: ReconciliationStatus
    differences: list[str] = []
    message: str = ""
    ts_event: int


RiskEventKind = Literal["rejection", "limit_breach", "state_change", "kill_switch", "protective_exit", "limits_changed"]


class RiskEvent(Message, frozen=True, kw_only=True):
    """Rejections, limit breaches, state and kill-switch changes. Key: account id.

    ``reason`` is a stable code (``max_order_notional``, ``kill_switch``, ...); ``message`` says
    it for humans with the numbers that broke it, which ``details`` also carries. ``state`` is
    the account's trading state after the event (``active``, ``reducing``, ``halted``).
    A kill-switch event has ``details["engaged"]`` ``"true"`` or ``"false"``.
    """

    SCHEMA: ClassVar[str] = "RiskEvent/1"
    event_id: str
    account_id: str
    kind: RiskEventKind
    reason: str
    message: str = ""
    severity: Literal["info", "warning", "critical"] = "warning"
    state: Literal["active", "reducing", "halted"] | None = None
    client_order_id: str = ""
    signal_id: str = ""
    details: dict[str, str] = {}
    ts_event: int


class Alert(Message, frozen=True, kw_only=True):
    """An operational alert (disconnect, lag, failure). Key: service name."""

    SCHEMA: ClassVar[str] = "Alert/1"
    service: str
    severity: Literal["info", "warning", "critical"]
    kind: str
    message: str
    labels: dict[str, str] = {}
    ts_event: int


# --- operations ------------------------------------------------------------------------------


class Subscription(Message, frozen=True, kw_only=True):
    """An exchange symbol that ingest serves. Key: ``exchange:symbol``.

    Topic ``ingest.subscriptions.v1`` is compacted: the newest record of a key is the state,
    and a record without value (a tombstone) removes the subscription. ``source`` is ``api``
    (POST /v1/subscriptions) or ``config`` (TRADEFLOW_EXCHANGES, re-asserted at every start).
    """

    SCHEMA: ClassVar[str] = "Subscription/1"
    exchange: str
    symbol: str
    source: Literal["api", "config"]
    ts_created: int


ALL_MESSAGE_TYPES: tuple[type[Message], ...] = (
    Tick,
    Candle,
    Signal,
    Order,
    OrderEvent,
    OrderAmendment,
    Fill,
    RiskEvent,
    Alert,
    Subscription,
)
