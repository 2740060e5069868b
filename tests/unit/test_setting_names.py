"""Names in settings and request models: TopicName (tradeflow.topics) and TimeframeName (tradeflow.timeframes)."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ValidationError
from tradeflow.topics import MD_TICKS, TopicName, check_topic_name


class Topics(BaseModel):
    ticks_topic: TopicName = MD_TICKS.name


@pytest.mark.parametrize("name", ["md.ticks.v1", "test_a-1.ticks", "x" * 249])
def test_kafka_topic_names_are_taken(name):
    assert Topics(ticks_topic=name).ticks_topic == name == check_topic_name(name)


@pytest.mark.parametrize("name", ["", "md ticks", "md/ticks", "x" * 250, "md.ticks\n"])
def test_other_names_are_refused_saying_what_a_topic_name_is(name):
    with pytest.raises(ValidationError, match="must be a Kafka topic name: 1-249 of letters, digits"):
        Topics(ticks_topic=name)


def test_timeframe_names_share_the_timeframes_check():
    from tradeflow.timeframes import TimeframeName

    class Run(BaseModel):
        timeframe: TimeframeName

    assert Run(timeframe="4h").timeframe == "4h"
    with pytest.raises(ValidationError, match="unknown timeframe '2m'; known: 1m, 5m, 15m, 1h, 4h, 1d, 1w"):
        Run(timeframe="2m")
