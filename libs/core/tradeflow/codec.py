"""MessagePack encoding of messages and the headers that describe them."""

from __future__ import annotations

from functools import cache
from typing import TypeVar

import msgspec

from tradeflow.messages import ALL_MESSAGE_TYPES, Message

CONTENT_TYPE = "application/x-msgpack"
HEADER_CONTENT_TYPE = "content-type"
HEADER_SCHEMA = "schema"
HEADER_TRACEPARENT = "traceparent"
HEADER_ERROR = "error"
HEADER_ERROR_REASON = "error-reason"
HEADER_SOURCE_TOPIC = "source-topic"
HEADER_SOURCE_PARTITION = "source-partition"
HEADER_SOURCE_OFFSET = "source-offset"

_SCHEMAS: dict[str, type[Message]] = {t.SCHEMA: t for t in ALL_MESSAGE_TYPES}
_encoder = msgspec.msgpack.Encoder()
M = TypeVar("M", bound=Message)


class DecodeError(ValueError):
    """Bytes that are not a valid message of the expected schema."""


def schema_of(message_type: type[Message]) -> str:
    return message_type.SCHEMA


def type_for_schema(schema: str) -> type[Message]:
    try:
        return _SCHEMAS[schema]
    except KeyError:
        raise DecodeError(f"unknown schema {schema!r}") from None


def encode(message: Message) -> bytes:
    return _encoder.encode(message)


@cache
def decoder_for(message_type: type[Message]) -> msgspec.msgpack.Decoder:
    return msgspec.msgpack.Decoder(message_type)


def decode(message_type: type[M], data: bytes) -> M:
    try:
        return decoder_for(message_type).decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise DecodeError(str(exc)) from exc


def message_headers(message_type: type[Message], traceparent: str | None = None) -> list[tuple[str, bytes]]:
    headers = [
        (HEADER_CONTENT_TYPE, CONTENT_TYPE.encode()),
        (HEADER_SCHEMA, message_type.SCHEMA.encode()),
    ]
    if traceparent:
        headers.append((HEADER_TRACEPARENT, traceparent.encode()))
    return headers


def header_value(headers: list[tuple[str, bytes]] | tuple | None, name: str) -> str | None:
    for key, value in headers or ():
        if key == name:
            return value.decode("utf-8", "replace") if value is not None else None
    return None
