"""Which partitions of the subscriptions topic this replica serves: a consumer group's say.

The ingest replicas form one consumer group over ``ingest.subscriptions.v1``, through the bus's
:class:`~tradeflow.bus.GroupMembership`: Kafka's group protocol gives each partition to exactly
one live member and, when a member leaves or stops heartbeating (``consumer_session_timeout_ms``),
hands its partitions to the others. The member reads nothing through the group (the records
come from the group-less :class:`SubscriptionLog`): the group is used for membership only.

Rebalances are eager: every member gives up its partitions (``on_revoked``, which must stop
serving them before it returns) before any member gets the new assignment (``on_assigned``),
so a subscription is never served by two live replicas at once.
"""

from __future__ import annotations

from tradeflow.bus import Bus
from tradeflow.bus.membership import PartitionsCallback
from tradeflow.topics import INGEST_SUBSCRIPTIONS


class SubscriptionOwnership:
    """A service Component: membership of the ingest replicas' group over the subscriptions topic."""

    def __init__(self, bus: Bus, *, group_id: str, client_id: str,
                 on_assigned: PartitionsCallback, on_revoked: PartitionsCallback) -> None:
        self.group_id = group_id
        self._membership = bus.membership(topic=INGEST_SUBSCRIPTIONS.name, group_id=group_id, client_id=client_id,
                                          on_assigned=on_assigned, on_revoked=on_revoked)

    @property
    def partitions(self) -> frozenset[int]:
        return self._membership.partitions

    async def start(self) -> None:
        await self._membership.start()

    async def stop(self) -> None:
        """Leave the group (its partitions go to the other replicas at once)."""
        await self._membership.stop()

    def has_assignment(self) -> bool:
        return self._membership.has_assignment()

    async def readiness(self) -> tuple[bool, str]:
        if self.has_assignment():
            return True, f"subscriptions group {self.group_id}: partitions {sorted(self.partitions)}"
        return False, f"subscriptions group {self.group_id}: not joined yet"
