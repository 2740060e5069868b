"""The trading path's identities (design.md, "The trading path: identity and exactly-once effects").

Every id is a pure function of what caused it, so a redelivered or recomputed input yields the
same id and the downstream unique keys turn at-least-once delivery into exactly-once effects:

- signal id: ``<instance>:<exchange>:<symbol>:<timeframe>:<candle ts_start ms>:<intent>``
- client order id: 32 lowercase hex digits of SHA-256 over the order's cause (a signal id, a
  protective trigger, a manual request). Design: at most 32 characters of ``[A-Za-z0-9_-]``;
  hex alone also passes OKX (alphanumerics only) and reads as a short UUID for Kraken.
- paper fill id: the client order id and the trade that filled it.
"""

from __future__ import annotations

import hashlib
import re

from tradeflow.time import NS_PER_MS

CLIENT_ORDER_ID_LENGTH = 32
CLIENT_ORDER_ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,32}$")


def signal_id(instance_id: str, exchange: str, symbol: str, timeframe: str, candle_ts_start_ns: int,
              intent: str) -> str:
    """The design's deterministic signal id; the candle is named by its start in epoch ms."""
    return f"{instance_id}:{exchange}:{symbol}:{timeframe}:{candle_ts_start_ns // NS_PER_MS}:{intent}"


def _digest(cause: str) -> str:
    return hashlib.sha256(cause.encode()).hexdigest()[:CLIENT_ORDER_ID_LENGTH]


def client_order_id_for_signal(signal_id_: str) -> str:
    """The order of a signal: the same signal id always gives the same client order id."""
    return _digest(f"signal:{signal_id_}")


def client_order_id_for_protective_exit(account_id: str, exchange: str, symbol: str, position_opened_ns: int,
                                        trigger: str) -> str:
    """One exit per position and trigger (stop_loss, take_profit, trailing_stop)."""
    return _digest(f"protective:{account_id}:{exchange}:{symbol}:{position_opened_ns}:{trigger}")


def client_order_id_for_manual(account_id: str, request_id: str) -> str:
    """A manual order (POST /v1/orders): the caller's request id makes a retried request idempotent."""
    return _digest(f"manual:{account_id}:{request_id}")


def is_valid_client_order_id(value: str) -> bool:
    return bool(CLIENT_ORDER_ID_PATTERN.match(value))


def paper_fill_id(client_order_id: str, trade_id: str) -> str:
    """A paper fill is named by its order and the trade (or candle) that filled it."""
    return f"{client_order_id}:{trade_id}"
