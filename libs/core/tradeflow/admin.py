"""Kept for existing imports: topic administration lives in :mod:`tradeflow.bus.admin`."""

from tradeflow.bus.admin import (
    DLQ_RETENTION_MS,
    TopicInfo,
    TopicsExist,
    broker_metadata_error,
    describe_topics,
    dlq_spec,
    ensure_topics,
    list_topics,
)

__all__ = ["DLQ_RETENTION_MS", "TopicInfo", "TopicsExist", "broker_metadata_error", "describe_topics", "dlq_spec",
           "ensure_topics", "list_topics"]
