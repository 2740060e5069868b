"""Holds back a trade whose price jumps too far from the symbol's last accepted price (pure)."""

from __future__ import annotations

DEFAULT_MAX_DEVIATION = 0.5  # a fraction of the last accepted price


class PriceGuard:
    """Per (exchange, symbol), the last accepted price; a trade more than ``max_deviation`` away
    from it is refused (a fat-finger print or a parse error would otherwise move every candle
    and signal). The first price of a symbol is accepted: there is nothing to compare it with.
    """

    def __init__(self, max_deviation: float = DEFAULT_MAX_DEVIATION) -> None:
        if not max_deviation > 0:
            raise ValueError(f"max_deviation must be positive, got {max_deviation}")
        self._max_deviation = max_deviation
        self._last: dict[tuple[str, str], float] = {}

    def check(self, exchange: str, symbol: str, price: float) -> str | None:
        """None when ``price`` is accepted (it becomes the reference), else the rejection reason."""
        last = self._last.get((exchange, symbol))
        if last is not None:
            deviation = (price - last) / last
            if abs(deviation) > self._max_deviation:
                return (f"price_deviation: {price:g} is {deviation:+.1%} from the last accepted "
                        f"{last:g} (limit {self._max_deviation:.0%})")
        self._last[(exchange, symbol)] = price
        return None
