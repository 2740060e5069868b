"""From consumed records to the service layer: the one module that knows the bus.

Today's :class:`tradeflow.bus.Consumer` calls one handler with a batch of several topics; this
splits it by topic (orders and their amendments, trades, risk events) and hands each part to the service. Undecodable
bytes never get here: the consumer dead-letters them.
"""

from __future__ import annotations

from tradeflow.bus import Record
from tradeflow.codec import HEADER_TRACEPARENT
from tradeflow.messages import OrderAmendment

from tradeflow_execution.domain.paper_exchange import LoggedTrade
from tradeflow_execution.service import ExecutionService, IncomingOrder


class ExecutionConsumption:
    def __init__(self, service: ExecutionService, *, orders_topic: str, risk_events_topic: str,
                 ticks_topic: str) -> None:
        self._service = service
        self._orders_topic = orders_topic
        self._risk_events_topic = risk_events_topic
        self._ticks_topic = ticks_topic

    @property
    def topics(self) -> tuple[str, str, str]:
        return (self._orders_topic, self._risk_events_topic, self._ticks_topic)

    async def handle(self, records: list[Record]) -> None:
        """The Consumer's handler. Trades first (an order of the same batch then finds them in
        the trade window instead of reading them back), then orders, then kill switches; the
        paper fills do not depend on this order (docs/adr/0019)."""
        orders, amendments, trades, events = [], [], [], []
        for record in records:
            topic = record.topic
            if topic == self._ticks_topic:
                trades.append(LoggedTrade(record.value, record.partition, record.offset))
            elif topic == self._orders_topic and isinstance(record.value, OrderAmendment):
                amendments.append(record.value)  # after the orders: an order and its amendment may share a batch
            elif topic == self._orders_topic:
                orders.append(IncomingOrder(record.value, record.header(HEADER_TRACEPARENT)))
            elif topic == self._risk_events_topic:
                events.append(record.value)
        if trades:
            await self._service.handle_trades(trades)
        if orders:
            await self._service.handle_orders(orders)
        if amendments:
            await self._service.handle_amendments(amendments)
        if events:
            await self._service.handle_risk_events(events)
